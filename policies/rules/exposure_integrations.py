"""Family 1, per resource: an API Gateway integration that reaches its backend over the
internet exposes that backend.

An HTTP/HTTP_PROXY integration without a VPC link (connectionType INTERNET, the default)
calls the backend at a public address, so the backend has to accept connections from the
internet: it is presumably public, and whoever finds it skips the gateway's authentication,
metering and WAF. Private integrations go through a VPC link to an internal load balancer
(https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-private-integration.html,
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-private.html).
AWS service, Lambda and MOCK integrations have no such backend. Third-party APIs that
authenticate their callers themselves can be listed in `allowedBackendHosts`.
"""
from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import urlsplit

from . import openapi_security
from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import is_unknown

REST_INTEGRATION = "aws:apigateway/integration:Integration"
V2_INTEGRATION = "aws:apigatewayv2/integration:Integration"
BODY_TYPES = ("aws:apigateway/restApi:RestApi", "aws:apigateway/restApiPut:RestApiPut", "aws:apigatewayv2/api:Api")

_FIX = ("integrate through a VPC link to an internal load balancer (connection_type=\"VPC_LINK\" with "
        "connection_id), or use a Lambda/AWS integration; a third-party API that authenticates its "
        "callers can be listed in this policy's allowedBackendHosts")
_WHY = ("it reaches its backend over the internet (no VPC link), so the backend accepts connections from "
        "the internet: it is presumably public, and callers who find it skip the gateway's "
        "authentication, metering and WAF")


def _host(uri: Any) -> str:
    try:
        return (urlsplit(str(uri)).hostname or "").lower()
    except ValueError:
        return ""


def _allowed(uri: Any, config: dict) -> bool:
    host = _host(uri)
    allowed = {str(h).lower() for h in config.get("allowedBackendHosts") or []}
    return bool(host) and host in allowed


def _judge(kind: Any, connection: Any, uri: Any, paths: tuple[str, str, str], config: dict) -> Iterator[Finding]:
    kind_path, connection_path, uri_path = paths
    if is_unknown(kind):
        yield unknown(kind_path, _FIX)
        return
    if str(kind or "").upper() not in ("HTTP", "HTTP_PROXY"):
        return
    if is_unknown(connection):
        yield unknown(connection_path, _FIX)
        return
    if str(connection or "INTERNET").upper() == "VPC_LINK":
        return
    if is_unknown(uri):
        yield unknown(uri_path, _FIX, why="the integration reaches its backend over the internet and the "
                      "backend's address is unknown during preview, so it cannot be matched against "
                      "allowedBackendHosts and the guardrail fails closed")
        return
    if _allowed(uri, config):
        return
    yield violation(connection_path, connection or "INTERNET", f"{_WHY} (backend {json.dumps(str(uri))})", _FIX)


def _check_body(res: Resource, config: dict) -> Iterator[Finding]:
    body = res.props.get("body")
    if body is None:
        return
    if is_unknown(body):
        yield unknown("body", _FIX)
        return
    document = openapi_security.parse(body)
    if not isinstance(document, dict):
        return  # unreadable bodies are reported by the authentication rules
    for route, verb, operation in openapi_security.operations(document):
        integration = openapi_security.internet_integration(operation)
        if integration is None or _allowed(integration.get("uri"), config):
            continue
        yield violation(f"body.paths[{json.dumps(route)}].{verb}.x-amazon-apigateway-integration.connectionType",
                        integration.get("connectionType", "INTERNET"),
                        f"{_WHY} (backend {json.dumps(str(integration.get('uri', '')))})", _FIX)


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == REST_INTEGRATION:
        yield from _judge(res.get("type"), res.get("connectionType"), res.get("uri"),
                          ("type", "connectionType", "uri"), config)
    elif res.type == V2_INTEGRATION:
        yield from _judge(res.get("integrationType"), res.get("connectionType"), res.get("integrationUri"),
                          ("integrationType", "connectionType", "integrationUri"), config)
    else:
        yield from _check_body(res, config)


INTEGRATION_PRIVATE_BACKEND = resource_policy(
    name="integration-private-backend",
    family=FAMILY_EXPOSURE,
    description="API Gateway HTTP integrations (REST, HTTP API, and x-amazon-apigateway-integration in "
                "OpenAPI bodies) reach their backend through a VPC link, not over the internet: a "
                "backend the gateway reaches over the internet is itself public.",
    resource_types=(REST_INTEGRATION, V2_INTEGRATION, *BODY_TYPES),
    check=_check,
    config_schema={"allowedBackendHosts": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[A-Za-z0-9.-]+$"},
        "default": [],
        "description": "Host names of third-party APIs that authenticate their callers themselves and "
                       "may be integrated over the internet (exact host, no wildcards).",
    }},
    remediation="Use connection_type VPC_LINK to an internal load balancer for HTTP integrations.",
)

POLICIES = [INTEGRATION_PRIVATE_BACKEND]
