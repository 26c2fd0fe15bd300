"""Errors the gateway itself answers, in the OpenAI error shape, as plain data.

API Gateway answers a request without calling a model when it refuses a key, throttles,
meters a quota, times out or cannot reach the integration. By default those answers are
`{"message": "Forbidden"}`-style bodies that the OpenAI SDKs cannot parse into their error
classes. Every gateway response here is rewritten to

    {"error": {"message": ..., "type": ..., "param": null, "code": <response type>,
               "request_id": "$context.requestId"}}

with an `X-Request-Id` header carrying the same id, so a client can quote it and an
operator finds the request in the access log. `code` is always the API Gateway response
type (`THROTTLED`, `QUOTA_EXCEEDED`, ...): docs/CLIENTS.md and tools/client_policy.py key
their retry decisions on it (a `QUOTA_EXCEEDED` 429 is never retried).

Status codes (the guide: 401/403 for keys, 429 for limits, 413 for size, 5xx for the
server side):
- INVALID_API_KEY -> 403. API Gateway raises this one type both for a missing and for a
  wrong `x-api-key` (measured on AWS: "apiKeyRequired, key missing or unknown -> 403
  {"message":"Forbidden"}, INVALID_API_KEY", ministackorg/ministack#1746), so one status
  serves both; 403 keeps API Gateway's own answer and what tools/smoke.py checks.
- UNAUTHORIZED -> 401: a Cognito or Lambda authorizer found no valid bearer token.
- MISSING_AUTHENTICATION_TOKEN -> 404: with API keys and no IAM auth, API Gateway raises it
  only for routes the API does not have (an admin route such as /health, a wrong base
  URL), and "not found" is what the client must fix (AWS console walkthrough "Set up a
  gateway response": "changes the status code from the default (403) to 404 because this
  error message occurs when a client calls an unsupported or invalid resource").
- THROTTLED and QUOTA_EXCEEDED -> 429 with `Retry-After`; REQUEST_TOO_LARGE -> 413;
  INTEGRATION_TIMEOUT -> 504; INTEGRATION_FAILURE -> 503 + Retry-After (no healthy model
  server: the guide's "503 for temporary overload or if the model is not loaded").
- A model scaled to zero has no registered target behind its NLB. AWS documents what API
  Gateway then answers through a VPC link: HTTP 500, "Execution failed due to configuration
  error" when "the registered target for the target group is unhealthy, or isn't in use"
  (AWS re:Post knowledge center, "api-gateway-500-error-vpc"), which is the
  API_CONFIGURATION_ERROR type; connection failures to the NLB are INTEGRATION_FAILURE.
  Both answer 503 + Retry-After here ("the model is not loaded" is the guide's 503). When a
  model of the API can be cold (`cold_start_possible`), Retry-After is COLD_RETRY_AFTER_S and
  the message says the model may be starting; docs/CLIENTS.md says how long to keep trying.
  A genuine misconfiguration also answers 503: the 5XX alarm is what catches it.
- DEFAULT_4XX / DEFAULT_5XX keep the status of whichever type fired: setting a status on a
  DEFAULT_* response would replace the status of every type without its own entry.

Template rules (AWS "x-amazon-apigateway-gateway-responses.responseTemplates"): bodies are
not VTL, only simple `$context` substitution; `$context.error.messageString` is already a
quoted JSON string. Header values are mapping expressions: a literal in single quotes, or
a source such as `context.requestId` without quotes (AWS "Parameter mapping source
reference for REST APIs": `context.name`, static values `'static_value'`; aws/aws-cdk#23037
reverted forced quoting because context variables "must be provided without quotes").
API Gateway also sets `x-amzn-RequestId` on every response, the same id.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

REQUEST_ID = "$context.requestId"
MESSAGE_STRING = "$context.error.messageString"
RESPONSE_TYPE = "$context.error.responseType"
# The id API Gateway assigned to the request, as a header mapping source (no quotes).
REQUEST_ID_SOURCE = "context.requestId"
JSON = "application/json"

# A per-key token bucket refills every second: one second is when a retry can succeed.
THROTTLED_RETRY_AFTER_S = 1
# A quota resets at the start of the plan's next period (day, week or month, UTC); the
# gateway cannot compute the remaining time, so it says "not soon": an hour is longer than
# any client policy waits (tools/client_policy.py gives up beyond 30 s).
QUOTA_RETRY_AFTER_S = 3600
# Model servers come back within a health-check interval or two, or a replica starts.
UNAVAILABLE_RETRY_AFTER_S = 5
# A model starting from zero: minutes (components/ec2/wake.py, model_service.py), so a
# client that polls every 30 s neither hammers the gateway nor waits long after it is up.
COLD_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class GatewayResponseSpec:
    """One `aws.apigateway.Response`, before it is bound to a REST API."""

    response_type: str
    # None: keep the status of the response type that fired (DEFAULT_4XX / DEFAULT_5XX).
    status_code: Optional[str]
    # Header name -> mapping expression ('literal' or a source such as context.requestId).
    headers: dict[str, str]
    # The application/json body template.
    template: str
    error_type: str = ""
    retry_after_s: Optional[int] = None

    @property
    def response_parameters(self) -> dict[str, str]:
        return {f"gatewayresponse.header.{name}": value for name, value in self.headers.items()}

    @property
    def response_templates(self) -> dict[str, str]:
        return {JSON: self.template}

    def definition(self) -> dict:
        """Everything API Gateway stores for this response (the redeploy hash covers it)."""
        return {"response_type": self.response_type, "status_code": self.status_code,
                "response_parameters": self.response_parameters,
                "response_templates": self.response_templates}


def literal(value: str | int) -> str:
    """A static header value as API Gateway wants it: inside single quotes."""
    text = str(value)
    if "'" in text:
        raise ValueError(f"header literal {text!r} cannot contain a single quote")
    return f"'{text}'"


def error_body(*, message: str, error_type: str, code: str, request_id: str,
               message_is_json: bool = False) -> str:
    """The OpenAI error object as a JSON text; `message_is_json` embeds a JSON string as is."""
    fields = [
        ("message", message if message_is_json else json.dumps(message)),
        ("type", json.dumps(error_type)),
        ("param", "null"),
        ("code", json.dumps(code)),
        ("request_id", json.dumps(request_id)),
    ]
    inner = ", ".join(f"{json.dumps(name)}: {value}" for name, value in fields)
    return "{\"error\": {" + inner + "}}"


def _spec(response_type: str, status: Optional[int], error_type: str, message: str, *,
          retry_after_s: Optional[int] = None, from_gateway_message: bool = False,
          code: Optional[str] = None) -> GatewayResponseSpec:
    if "$" in message:
        raise ValueError(f"{response_type}: a static message must not contain '$' (it would be substituted)")
    headers = {"X-Request-Id": REQUEST_ID_SOURCE}
    if retry_after_s is not None:
        headers["Retry-After"] = literal(retry_after_s)
    template = error_body(
        message=MESSAGE_STRING if from_gateway_message else message,
        message_is_json=from_gateway_message,
        error_type=error_type,
        code=code or response_type,
        request_id=REQUEST_ID,
    )
    return GatewayResponseSpec(response_type=response_type,
                               status_code=None if status is None else str(status),
                               headers=headers, template=template, error_type=error_type,
                               retry_after_s=retry_after_s)


def render_gateway_responses(*, max_request_bytes: int, integration_timeout_ms: int,
                             streaming: bool, cold_start_possible: bool = False) -> list[GatewayResponseSpec]:
    """Every gateway response the API customises, in a stable order."""
    retry_unavailable = COLD_RETRY_AFTER_S if cold_start_possible else UNAVAILABLE_RETRY_AFTER_S
    unavailable = ("No model server could take the request (none healthy, or all restarting"
                   + (", or the model is starting from zero after being idle" if cold_start_possible else "")
                   + "). Retry after the Retry-After seconds, with backoff.")
    timeout_s = integration_timeout_ms / 1000
    timeout_text = f"{timeout_s:g} s"
    timeout_advice = ("lower max_tokens or shorten the prompt" if streaming
                      else "stream the response (stream=true) or lower max_tokens")
    return [
        _spec("INVALID_API_KEY", 403, "authentication_error",
              "Missing or invalid API key: send the key issued to you in the x-api-key header."),
        _spec("UNAUTHORIZED", 401, "authentication_error",
              "Missing or invalid bearer token: send a valid token in the Authorization header."),
        _spec("ACCESS_DENIED", 403, "permission_error",
              "The authorizer denied this request for your identity."),
        _spec("MISSING_AUTHENTICATION_TOKEN", 404, "invalid_request_error",
              "No such route. Use the base URL <api_endpoint>/<model>/v1 and the OpenAI routes "
              "under it, such as /chat/completions, /completions and /models."),
        _spec("RESOURCE_NOT_FOUND", 404, "invalid_request_error",
              "No such resource on this API."),
        _spec("THROTTLED", 429, "rate_limit_error",
              "Too many requests for your API key or for this model. Retry after the "
              "Retry-After seconds, with exponential backoff and jitter.",
              retry_after_s=THROTTLED_RETRY_AFTER_S),
        _spec("QUOTA_EXCEEDED", 429, "insufficient_quota",
              "The request quota of your API key is used up for the current period. It resets "
              "at the start of the next period (UTC); retrying sooner fails.",
              retry_after_s=QUOTA_RETRY_AFTER_S),
        _spec("REQUEST_TOO_LARGE", 413, "invalid_request_error",
              f"The request body is larger than this API accepts ({max_request_bytes} bytes). "
              "Shorten the prompt or the conversation history."),
        _spec("WAF_FILTERED", 403, "permission_error",
              "The request was blocked by the web application firewall. Quote request_id if "
              "you believe this is a mistake."),
        _spec("INTEGRATION_TIMEOUT", 504, "timeout_error",
              f"The model did not answer within {timeout_text}; {timeout_advice}. Retrying "
              "with backoff is safe."),
        _spec("INTEGRATION_FAILURE", 503, "server_error", unavailable, retry_after_s=retry_unavailable),
        _spec("API_CONFIGURATION_ERROR", 503, "server_error", unavailable, retry_after_s=retry_unavailable),
        _spec("DEFAULT_4XX", None, "invalid_request_error", "", from_gateway_message=True,
              code=RESPONSE_TYPE),
        _spec("DEFAULT_5XX", None, "server_error", "", from_gateway_message=True,
              code=RESPONSE_TYPE),
    ]


# Default statuses API Gateway gives the types above when a response does not set one
# (AWS "Gateway response types for API Gateway").
DEFAULT_STATUS = {
    "INVALID_API_KEY": 403, "UNAUTHORIZED": 401, "ACCESS_DENIED": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403, "RESOURCE_NOT_FOUND": 404, "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429, "REQUEST_TOO_LARGE": 413, "WAF_FILTERED": 403,
    "INTEGRATION_TIMEOUT": 504, "INTEGRATION_FAILURE": 504, "BAD_REQUEST_BODY": 400,
    "BAD_REQUEST_PARAMETERS": 400, "UNSUPPORTED_MEDIA_TYPE": 415, "API_CONFIGURATION_ERROR": 500,
    "AUTHORIZER_FAILURE": 500, "AUTHORIZER_CONFIGURATION_ERROR": 500,
}


@dataclass(frozen=True)
class RenderedResponse:
    """What a client receives, after API Gateway substitutes the context variables."""

    status: int
    headers: dict[str, str]
    body: dict = field(default_factory=dict)


_CONTEXT_VARIABLE = re.compile(r"\$context\.[A-Za-z.]+")


def render_as_sent(spec: GatewayResponseSpec, *, request_id: str, gateway_message: str,
                   fired_type: Optional[str] = None, method_headers: Optional[dict] = None) -> RenderedResponse:
    """Substitute what API Gateway substitutes, for tests and offline checks.

    `fired_type` is the response type that actually fired (for DEFAULT_4XX/5XX); the body
    must then parse as JSON, or the template is broken.
    """
    fired = fired_type or spec.response_type
    values = {
        REQUEST_ID: request_id,
        MESSAGE_STRING: json.dumps(gateway_message),
        RESPONSE_TYPE: fired,
    }

    def substitute(match: re.Match) -> str:
        name = match.group(0)
        if name not in values:
            raise ValueError(f"{spec.response_type}: template uses unsupported variable {name}")
        return values[name]

    body = json.loads(_CONTEXT_VARIABLE.sub(substitute, spec.template))
    headers: dict[str, str] = {}
    for name, expression in spec.headers.items():
        if expression.startswith("'") and expression.endswith("'"):
            headers[name] = expression[1:-1]
        elif expression == REQUEST_ID_SOURCE:
            headers[name] = request_id
        elif expression.startswith("method.request.header.") and method_headers is not None:
            headers[name] = method_headers.get(expression.split(".", 3)[3], "")
        else:
            raise ValueError(f"{spec.response_type}: header {name} maps {expression!r}, "
                             "which is neither a quoted literal nor a known source")
    status = int(spec.status_code) if spec.status_code else DEFAULT_STATUS.get(fired, 500 if fired.endswith("5XX") else 400)
    return RenderedResponse(status=status, headers=headers, body=body)
