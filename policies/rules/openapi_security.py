"""OpenAPI bodies as API Gateway reads them: which operations it really authenticates, and
which integrations reach their backend over the internet.

Only what the gateway enforces counts (API Gateway extensions to OpenAPI:
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-swagger-extensions.html):
- an `x-amazon-apigateway-authorizer` on the scheme (Lambda, Cognito, JWT);
- `x-amazon-apigateway-authtype: awsSigv4` (IAM), or `x-amazon-apigateway-auth: {type: AWS_IAM}`
  on the operation;
- REST APIs only: an apiKey scheme for the `x-api-key` header (the API key; HTTP APIs have
  no API keys), or any apiKey scheme when `x-amazon-apigateway-api-key-source` is AUTHORIZER
  and the scheme carries an authorizer.
A scheme that is declared but not required by the operation, a plain OAuth2/OpenID/HTTP
bearer scheme without an authorizer (documentation only), and an empty `{}` alternative in
a requirement (anonymous allowed) are no authentication.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import yaml

from ._wire import as_dict

HTTP_VERBS = ("get", "put", "post", "delete", "options", "head", "patch", "trace",
              "x-amazon-apigateway-any-method")


def parse(body: Any) -> Optional[dict]:
    """The document, None when there is no body, or "unreadable" when it cannot be parsed."""
    if not isinstance(body, str) or not body.strip():
        return None
    try:
        document = json.loads(body)
    except ValueError:
        try:
            document = yaml.safe_load(body)
        except yaml.YAMLError:
            return "unreadable"  # type: ignore[return-value]
    return document if isinstance(document, dict) else "unreadable"  # type: ignore[return-value]


def operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    """(route, verb, operation) for every HTTP operation in the document."""
    for route, item in as_dict(document.get("paths")).items():
        for verb, operation in as_dict(item).items():
            if str(verb).lower() in HTTP_VERBS and isinstance(operation, dict):
                yield str(route), str(verb), operation


def _schemes(document: dict) -> dict:
    schemes = dict(as_dict(document.get("securityDefinitions")))  # Swagger 2.0
    schemes.update(as_dict(as_dict(document.get("components")).get("securitySchemes")))  # OpenAPI 3
    return schemes


def _scheme_enforced(scheme: Any, rest: bool) -> bool:
    scheme = as_dict(scheme)
    if scheme.get("x-amazon-apigateway-authorizer"):
        return True
    if str(scheme.get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4":
        return True
    if rest and str(scheme.get("type", "")).lower() == "apikey":
        return (str(scheme.get("in", "")).lower() == "header"
                and str(scheme.get("name", "")).lower() == "x-api-key")
    return False


def operation_authenticated(document: dict, operation: dict, rest: bool) -> bool:
    """Whether API Gateway refuses an anonymous caller of this operation."""
    auth_type = as_dict(operation.get("x-amazon-apigateway-auth")).get("type")
    if auth_type is not None and str(auth_type).upper() == "AWS_IAM":
        return True
    security = operation["security"] if "security" in operation else document.get("security")
    if not isinstance(security, list) or not security:
        return False
    schemes = _schemes(document)
    # Alternatives: every one must demand something the gateway enforces (an empty one is anonymous).
    for requirement in security:
        if not isinstance(requirement, dict) or not any(
                _scheme_enforced(schemes.get(name), rest) for name in requirement):
            return False
    return True


def internet_integration(operation: dict) -> Optional[dict]:
    """The operation's x-amazon-apigateway-integration when it reaches an HTTP backend over the
    internet (not through a VPC link)."""
    integration = as_dict(operation.get("x-amazon-apigateway-integration"))
    kind = str(integration.get("type", "")).lower()
    if kind in ("http", "http_proxy") and str(integration.get("connectionType", "INTERNET")).upper() != "VPC_LINK":
        return integration
    return None


def is_mock(operation: dict) -> bool:
    return str(as_dict(operation.get("x-amazon-apigateway-integration")).get("type", "")).lower() == "mock"

