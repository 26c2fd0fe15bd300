"""Gateway responses: what a client receives when API Gateway answers without a model.

The templates are rendered as API Gateway renders them (context variables substituted),
then read with the same code the smoke test and the client retry policy use, so a
template the SDKs cannot parse, or a 429 the policy would misjudge, fails here.
"""
from __future__ import annotations

import json

import pytest
import requests

from components.gateway.responses import (
    GatewayResponseSpec,
    QUOTA_RETRY_AFTER_S,
    REQUEST_ID_SOURCE,
    render_as_sent,
    render_gateway_responses,
)
from tools.client_policy import is_quota_exhausted, parse_retry_after
from tools.smoke import inspect_error_body

REQUEST_ID = "c0ffee12-3456-4789-abcd-ef0123456789"
MAX_BYTES = 196_608


@pytest.fixture(scope="module")
def specs() -> dict[str, GatewayResponseSpec]:
    rendered = render_gateway_responses(max_request_bytes=MAX_BYTES, integration_timeout_ms=300_000,
                                        streaming=True)
    return {spec.response_type: spec for spec in rendered}


def sent(spec: GatewayResponseSpec, *, fired: str | None = None,
         message: str = 'Gateway said "no" \u2014 ünïcode') -> requests.Response:
    """The HTTP response a client gets, as a `requests.Response`."""
    rendered = render_as_sent(spec, request_id=REQUEST_ID, gateway_message=message, fired_type=fired)
    response = requests.Response()
    response.status_code = rendered.status
    response.headers.update({"Content-Type": "application/json", **rendered.headers})
    response._content = json.dumps(rendered.body).encode()
    return response


EXPECTED_STATUS = {
    "INVALID_API_KEY": 403,
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "MISSING_AUTHENTICATION_TOKEN": 404,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "WAF_FILTERED": 403,
    "INTEGRATION_TIMEOUT": 504,
    "INTEGRATION_FAILURE": 503,
}


@pytest.mark.parametrize("response_type,status", sorted(EXPECTED_STATUS.items()))
def test_each_gateway_response_has_its_status(specs, response_type, status):
    assert sent(specs[response_type]).status_code == status


def test_a_missing_or_wrong_key_is_refused_with_403_the_status_the_smoke_test_expects(specs):
    # API Gateway raises INVALID_API_KEY for both a missing and a wrong x-api-key.
    response = sent(specs["INVALID_API_KEY"])
    assert response.status_code == 403
    body = response.json()["error"]
    assert "x-api-key" in body["message"]
    assert body["code"] == "INVALID_API_KEY"


def test_every_response_is_an_openai_error_with_the_request_id_in_body_and_header(specs):
    for response_type, spec in specs.items():
        response = sent(spec, fired="BAD_REQUEST_BODY" if response_type == "DEFAULT_4XX"
                        else "AUTHORIZER_FAILURE" if response_type == "DEFAULT_5XX" else None)
        ok, description = inspect_error_body(response)
        assert ok, f"{response_type}: {description}"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code", "request_id"}
        assert error["request_id"] == REQUEST_ID
        assert response.headers["X-Request-Id"] == REQUEST_ID, response_type


def test_throttled_429_carries_a_retry_after_the_client_policy_honours(specs):
    response = sent(specs["THROTTLED"])
    assert response.status_code == 429
    assert parse_retry_after(response.headers["Retry-After"]) == 1.0
    assert not is_quota_exhausted(response)
    assert response.json()["error"]["code"] == "THROTTLED"


def test_quota_exceeded_429_says_not_soon_and_is_never_retried(specs):
    response = sent(specs["QUOTA_EXCEEDED"])
    assert response.status_code == 429
    assert parse_retry_after(response.headers["Retry-After"]) == QUOTA_RETRY_AFTER_S
    assert is_quota_exhausted(response)


def test_too_large_names_the_byte_limit(specs):
    error = sent(specs["REQUEST_TOO_LARGE"]).json()["error"]
    assert str(MAX_BYTES) in error["message"]


def test_integration_timeout_names_the_inventory_timeout(specs):
    assert "300 s" in sent(specs["INTEGRATION_TIMEOUT"]).json()["error"]["message"]


def test_buffered_timeouts_advise_streaming():
    specs = {s.response_type: s for s in render_gateway_responses(
        max_request_bytes=MAX_BYTES, integration_timeout_ms=29_000, streaming=False)}
    message = sent(specs["INTEGRATION_TIMEOUT"]).json()["error"]["message"]
    assert "29 s" in message and "stream=true" in message


def test_default_families_pass_the_gateway_message_and_type_through_and_keep_the_status(specs):
    for family, fired, status in (("DEFAULT_4XX", "BAD_REQUEST_BODY", 400),
                                  ("DEFAULT_5XX", "AUTHORIZER_FAILURE", 500)):
        spec = specs[family]
        # A status on DEFAULT_* would replace the status of every type without its own entry.
        assert spec.status_code is None
        response = sent(spec, fired=fired, message='Invalid "body"\n')
        assert response.status_code == status
        error = response.json()["error"]
        assert error["message"] == 'Invalid "body"\n'
        assert error["code"] == fired


def test_header_values_are_quoted_literals_or_the_request_id_source(specs):
    for spec in specs.values():
        for name, value in spec.response_parameters.items():
            assert name.startswith("gatewayresponse.header.")
            assert value == REQUEST_ID_SOURCE or (value.startswith("'") and value.endswith("'")), (
                spec.response_type, name, value)


def test_static_messages_contain_nothing_api_gateway_would_substitute(specs):
    for spec in specs.values():
        leftover = spec.template
        for variable in ("$context.requestId", "$context.error.messageString",
                         "$context.error.responseType"):
            leftover = leftover.replace(variable, "")
        assert "$" not in leftover, spec.response_type


def test_unknown_context_variables_in_a_template_are_caught():
    broken = GatewayResponseSpec("THROTTLED", "429", {"X-Request-Id": REQUEST_ID_SOURCE},
                                 '{"error": {"request_id": "$context.requestIdd"}}')
    with pytest.raises(ValueError, match="unsupported variable"):
        render_as_sent(broken, request_id=REQUEST_ID, gateway_message="x")
