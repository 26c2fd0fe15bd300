"""Family 3, API Gateway: the default execute-api endpoint left open behind a custom domain,
integrations that skip TLS verification, and credentials written into request mappings.

Relations between resources (mapping -> API, integration -> VPC link -> load balancer ->
listener -> certificate) come from property dependencies, as in reachability.py, because
ids are unknown during a first preview.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator, Optional
from urllib.parse import parse_qsl, urlparse

from pulumi_policy import Severity

from ._framework import (
    FAMILY_BASELINE, Finding, Resource, Stack, StackResource, cannot_check, resource_policy, stack_policy,
    violation,
)
from . import openapi_security
from ._wire import as_bool, as_dict, as_list, is_unknown
from .public_endpoints import LB_V2_TYPES, LISTENER_TYPES

REST_API = "aws:apigateway/restApi:RestApi"
BASE_PATH_MAPPING = "aws:apigateway/basePathMapping:BasePathMapping"
V2_API = "aws:apigatewayv2/api:Api"
V2_API_MAPPING = "aws:apigatewayv2/apiMapping:ApiMapping"
INTEGRATION = "aws:apigateway/integration:Integration"
V2_INTEGRATION = "aws:apigatewayv2/integration:Integration"
METHOD = "aws:apigateway/method:Method"
VPC_LINK = "aws:apigateway/vpcLink:VpcLink"
CERTIFICATE = "aws:acm/certificate:Certificate"
LISTENER_CERTIFICATE_TYPES = ("aws:lb/listenerCertificate:ListenerCertificate",
                              "aws:alb/listenerCertificate:ListenerCertificate")


# ---- execute-api endpoint behind a custom domain --------------------------------------------

def _body_disables(body: Any) -> Optional[bool]:
    # An OpenAPI body can carry x-amazon-apigateway-endpoint-configuration.disableExecuteApiEndpoint.
    if not isinstance(body, str) or is_unknown(body):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = as_dict(as_dict(document).get("x-amazon-apigateway-endpoint-configuration")).get(
        "disableExecuteApiEndpoint")
    return value if isinstance(value, bool) else None


_API_CARRIERS = {"aws:apigateway/stage:Stage": "restApi", "aws:apigateway/deployment:Deployment": "restApi",
                 "aws:apigatewayv2/stage:Stage": "apiId", "aws:apigatewayv2/deployment:Deployment": "apiId"}


def _check_execute_api(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    fix = ("set disable_execute_api_endpoint=True on the API so clients can only come through the "
           "custom domain (and its TLS policy, WAF and mTLS)")
    # An apigatewayv2 ApiMapping maps REST APIs as well as HTTP APIs to a domain (its api_id
    # takes either), so both mapping kinds are followed to both API kinds.
    for mapping_type, prop in ((BASE_PATH_MAPPING, "restApi"), (V2_API_MAPPING, "apiId")):
        for mapping in stack.of_type(mapping_type):
            apis = stack.referenced(mapping, prop, REST_API, V2_API)
            # rest_api=stage.rest_api (or deployment.rest_api): one hop through what was mapped.
            for hop in stack.referenced(mapping, prop, *_API_CARRIERS):
                apis += [api for api in stack.referenced(hop, _API_CARRIERS[hop.type], REST_API, V2_API)
                         if api not in apis]
            if not apis:
                yield mapping.urn, cannot_check(
                    prop, "names an API this program does not declare (or by a literal id), so whether "
                    "its execute-api endpoint is disabled")
                continue
            for api in apis:
                disabled = as_bool(api.props.get("disableExecuteApiEndpoint"))
                if disabled is None:
                    disabled = _body_disables(api.props.get("body"))
                if is_unknown(disabled):
                    yield api.urn, cannot_check("disableExecuteApiEndpoint")
                elif disabled is not True:
                    yield api.urn, violation(
                        "disableExecuteApiEndpoint", api.props.get("disableExecuteApiEndpoint"),
                        f"the API is mapped to a custom domain ({mapping.name}) but its default "
                        "https://<id>.execute-api.<region>.amazonaws.com endpoint still answers, a second "
                        "door that skips whatever the domain enforces", fix)


EXECUTE_API_ENDPOINT_DISABLED = stack_policy(
    name="execute-api-endpoint-disabled",
    family=FAMILY_BASELINE,
    description="A REST or HTTP API mapped to a custom domain (base path or API mapping) disables its "
                "default execute-api endpoint.",
    resource_types=(BASE_PATH_MAPPING, REST_API, V2_API_MAPPING, V2_API) + tuple(_API_CARRIERS),
    check=_check_execute_api,
    remediation="disable_execute_api_endpoint=True once a custom domain serves the API.",
    severity=Severity.MEDIUM,
)


# ---- TLS verification on integrations -------------------------------------------------------

def _skips_verification(integration: StackResource) -> Any:
    config = integration.props.get("tlsConfig")
    if is_unknown(config):
        return config
    return as_bool(as_dict(config).get("insecureSkipVerification"))


def _private_ca_certificates(stack: Stack, integration: StackResource) -> list[StackResource]:
    """Private-CA ACM certificates on the load balancer the integration reaches, or whose
    domain is the integration's host: the reason verification cannot succeed."""
    certificates = [c for c in stack.of_type(CERTIFICATE)
                    if isinstance(c.props.get("certificateAuthorityArn"), str)]
    if not certificates:
        return []
    found: list[StackResource] = []
    for link in stack.referenced(integration, "connectionId", VPC_LINK):
        for lb in stack.referenced(link, "targetArn", *LB_V2_TYPES):
            for listener in stack.referencing(lb, "loadBalancerArn", *LISTENER_TYPES):
                holders = [listener] + stack.referencing(listener, "listenerArn", *LISTENER_CERTIFICATE_TYPES)
                for holder in holders:
                    found += [c for c in stack.referenced(holder, "certificateArn", CERTIFICATE)
                              if c in certificates]
    uri = integration.props.get("uri")
    host = urlparse(uri).hostname if isinstance(uri, str) and not is_unknown(uri) else None
    if host:
        found += [c for c in certificates if c.props.get("domainName") == host]
    return list({c.urn: c for c in found}.values())


_TLS_FIX = ("set tls_config.insecure_skip_verification=False and serve a certificate from a public CA "
            "(ACM) on the backend")


def _body_tls_findings(stack: Stack, want_private_ca: bool) -> Iterator[tuple[str, Finding]]:
    """x-amazon-apigateway-integration.tlsConfig in an OpenAPI body: the same setting, declared
    in the API instead of an Integration resource. A private CA is recognised by the backend
    host named in the integration's uri."""
    certificates = [c for c in stack.of_type(CERTIFICATE) if isinstance(c.props.get("certificateAuthorityArn"), str)]
    for api in stack.of_type(REST_API):
        body = api.props.get("body")
        if is_unknown(body):
            if not want_private_ca:
                yield api.urn, cannot_check("body")
            continue
        document = openapi_security.parse(body)
        if not isinstance(document, dict):
            continue
        for route, verb, operation in openapi_security.operations(document):
            integration = as_dict(operation.get("x-amazon-apigateway-integration"))
            skip = as_bool(as_dict(integration.get("tlsConfig")).get("insecureSkipVerification"))
            if skip is not True:
                continue
            path = f"body.paths[\"{route}\"].{verb}.x-amazon-apigateway-integration.tlsConfig.insecureSkipVerification"
            uri = integration.get("uri")
            host = urlparse(uri).hostname if isinstance(uri, str) else None
            private = [c for c in certificates if host and c.props.get("domainName") == host]
            if want_private_ca and private:
                yield api.urn, violation(
                    path, True,
                    f"the backend presents a certificate from a private CA ({private[0].name}), which API "
                    "Gateway does not trust, so verification has to be skipped",
                    "accepted while the backend uses a private CA; to remove it, serve a public ACM "
                    "certificate on the backend")
            elif not want_private_ca and not private:
                yield api.urn, violation(
                    path, True,
                    "API Gateway then accepts any certificate from the backend, so whoever can answer for "
                    "the backend's address reads prompts and the credentials the gateway forwards", _TLS_FIX)


def _tls_findings(stack: Stack, want_private_ca: bool) -> Iterator[tuple[str, Finding]]:
    yield from _body_tls_findings(stack, want_private_ca)
    for integration in stack.of_type(INTEGRATION):
        skips = _skips_verification(integration)
        if is_unknown(skips):
            if not want_private_ca:
                yield integration.urn, cannot_check("tlsConfig.insecureSkipVerification")
            continue
        if skips is not True:
            continue
        private = _private_ca_certificates(stack, integration)
        if want_private_ca and private:
            yield integration.urn, violation(
                "tlsConfig.insecureSkipVerification", True,
                f"the backend presents a certificate from a private CA ({private[0].name}), which API "
                "Gateway does not trust, so verification has to be skipped; API Gateway still checks the "
                "certificate's expiry and host name, and the VPC link keeps the hop private (AWS API "
                "Gateway developer guide, x-amazon-apigateway-integration.tlsConfig)",
                "accepted while the backend uses a private CA; to remove it, serve a public ACM "
                "certificate on the load balancer")
        elif not want_private_ca and not private:
            yield integration.urn, violation(
                "tlsConfig.insecureSkipVerification", True,
                "API Gateway then accepts any certificate from the backend, so whoever can answer for "
                "the backend's address reads prompts and the credentials the gateway forwards", _TLS_FIX)


INTEGRATION_TLS_VERIFIED = stack_policy(
    name="integration-tls-verified",
    family=FAMILY_BASELINE,
    description="REST API integrations (Integration resources and the integrations of an OpenAPI body) do "
                "not skip TLS verification (tlsConfig.insecureSkipVerification), unless the backend's "
                "certificate is from a private CA (reported by integration-tls-private-ca instead).",
    resource_types=(INTEGRATION, REST_API, VPC_LINK, CERTIFICATE) + LISTENER_TYPES,
    check=lambda stack, config: _tls_findings(stack, want_private_ca=False),
    remediation="Verify backend certificates; use a public CA on the backend.",
)

INTEGRATION_TLS_PRIVATE_CA = stack_policy(
    name="integration-tls-private-ca",
    family=FAMILY_BASELINE,
    description="Advisory: an integration skips TLS verification because its backend's certificate "
                "comes from a private CA (API Gateway trusts only public CAs); the message says which.",
    resource_types=(INTEGRATION, REST_API, VPC_LINK, CERTIFICATE) + LISTENER_TYPES,
    check=lambda stack, config: _tls_findings(stack, want_private_ca=True),
    remediation="Serve a public ACM certificate on the backend to verify it end to end.",
    severity=Severity.LOW,
)


# ---- literal credentials in request parameters ----------------------------------------------

# Header and query names that carry credentials (RFC 9110 Authorization/Proxy-Authorization,
# API key headers, session cookies, token-ish names).
_CREDENTIAL_NAME = re.compile(
    r"(^|[-_.])(authorization|proxy-authorization|cookie|x-api-key|api[-_]?key|apikey|"
    r"[\w-]*token|[\w-]*secret|password|passwd|credentials?|signature|x-amz-security-token)$",
    re.IGNORECASE)
_CREDENTIAL_VALUE = re.compile(r"^\s*(bearer|basic|token|apikey|api-key|digest)\s+\S", re.IGNORECASE)
# REST: a static value is quoted ('...'); anything else is a mapping expression such as
# method.request.header.X, context.authorizer.x or stageVariables.x.
# HTTP APIs: a value without a $-variable is static.


_PLACEHOLDERS = frozenset({"", "none", "null", "-", "redacted", "n/a"})


def _static_value(resource_type: str, value: Any) -> Optional[str]:
    if not isinstance(value, str) or is_unknown(value):
        return None
    text = value.strip()
    if resource_type == V2_INTEGRATION:
        return None if "$" in text else text
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return text[1:-1]
    return None


_LITERAL_WHY = ("a static credential in the integration configuration is readable by every principal "
                "with apigateway:GET in the account, shows in exports and plan diffs, and never rotates")
_LITERAL_FIX = ("map it from the request (method.request.header.X), the authorizer "
                "(context.authorizer.X) or drop it; if the backend needs its own credential, issue it "
                "per request (Lambda authorizer context) or rotate it on a schedule")
_REDACTED = "a static literal (value redacted)"


def _credential_name(key: Any) -> bool:
    return bool(_CREDENTIAL_NAME.search(str(key).rsplit(".", 1)[-1].rsplit(":", 1)[-1]))


def _parameter_findings(kind: str, parameters: Any, where: str) -> Iterator[Finding]:
    """Request parameter mappings: a quoted literal (REST) or a value without a variable
    (HTTP API) on a credential header or query string, or any Bearer/Basic literal."""
    if is_unknown(parameters):
        yield cannot_check(where)
        return
    for key, value in as_dict(parameters).items():
        path = f"{where}[\"{key}\"]"
        if is_unknown(value):
            if _credential_name(key):
                yield cannot_check(path)
            continue
        static = _static_value(kind, value)
        # A placeholder that blanks the caller's header ('none', '-', '') carries nothing.
        if static is None or static.strip().lower() in _PLACEHOLDERS:
            continue
        if _credential_name(key) or _CREDENTIAL_VALUE.match(static):
            yield violation(path, None, _LITERAL_WHY, _LITERAL_FIX, rendered=_REDACTED)


def _uri_findings(uri: Any, where: str) -> Iterator[Finding]:
    """A backend URI with a password (https://user:secret@host) or a credential-named query
    parameter with a literal value (?api_key=sk-...)."""
    if not isinstance(uri, str) or is_unknown(uri):
        return
    try:
        parsed = urlparse(uri.strip())
        password = parsed.password
    except ValueError:
        return
    if password and not _templated(password):
        yield violation(f"{where} (user information)", None, _LITERAL_WHY,
                        "remove the user name and password from the URI; " + _LITERAL_FIX, rendered=_REDACTED)
    for name, value in parse_qsl(parsed.query, keep_blank_values=True):
        if _credential_name(name) and value.strip() and not _templated(value) \
                and value.strip().lower() not in _PLACEHOLDERS:
            yield violation(f"{where} (query parameter {name})", None, _LITERAL_WHY,
                            "remove it from the URI; " + _LITERAL_FIX, rendered=_REDACTED)


def _templated(text: str) -> bool:
    # {proxy}, ${stageVariables.x}, $context.x: a value mapped at request time.
    return "$" in text or "{" in text


# Mapping templates (Velocity): a header override or a body field set to a literal credential.
# API Gateway developer guide, "Override your API's request and response parameters and status
# codes" ($context.requestOverride.header.<name>).
_TEMPLATE_OVERRIDE = re.compile(
    r"\$context\.requestOverride\.(?:header|querystring)\.([\w-]+)\s*=\s*(['\"])(.*?)\2", re.IGNORECASE)
_TEMPLATE_FIELD = re.compile(r"(['\"])([\w.-]+)\1\s*:\s*(['\"])(.*?)\3")
_TEMPLATE_BEARER = re.compile(r"(['\"])\s*(bearer|basic)\s+[^'\"$\s]{8,}\s*\1", re.IGNORECASE)


def _template_findings(templates: Any, where: str) -> Iterator[Finding]:
    if is_unknown(templates):
        yield cannot_check(where)
        return
    for content_type, template in as_dict(templates).items():
        path = f"{where}[\"{content_type}\"]"
        if is_unknown(template):
            yield cannot_check(path)
            continue
        if not isinstance(template, str):
            continue
        literal = False
        for match in _TEMPLATE_OVERRIDE.finditer(template):
            value = match.group(3)
            if not _templated(value) and value.strip().lower() not in _PLACEHOLDERS and (
                    _credential_name(match.group(1)) or _CREDENTIAL_VALUE.match(value)):
                literal = True
        for match in _TEMPLATE_FIELD.finditer(template):
            value = match.group(4)
            if _credential_name(match.group(2)) and value.strip() and not _templated(value) \
                    and value.strip().lower() not in _PLACEHOLDERS:
                literal = True
        if literal or _TEMPLATE_BEARER.search(template):
            yield violation(path, None, _LITERAL_WHY, _LITERAL_FIX, rendered=_REDACTED)


def _body_findings(kind: str, body: Any) -> Iterator[Finding]:
    """x-amazon-apigateway-integration objects of an OpenAPI body: the same three places."""
    if is_unknown(body):
        yield cannot_check("body")
        return
    document = openapi_security.parse(body)
    if not isinstance(document, dict):
        return  # no body, or one the Family 1 rules already refuse as unreadable
    for route, verb, operation in openapi_security.operations(document):
        integration = as_dict(operation.get("x-amazon-apigateway-integration"))
        where = f"body.paths[\"{route}\"].{verb}.x-amazon-apigateway-integration"
        yield from _parameter_findings(kind, integration.get("requestParameters"), f"{where}.requestParameters")
        yield from _uri_findings(integration.get("uri"), f"{where}.uri")
        yield from _template_findings(integration.get("requestTemplates"), f"{where}.requestTemplates")


def _check_literal_credentials(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type in (REST_API, V2_API):
        yield from _body_findings(INTEGRATION if res.type == REST_API else V2_INTEGRATION, res.get("body"))
        return
    yield from _parameter_findings(res.type, res.get("requestParameters"), "requestParameters")
    if res.type == METHOD:
        return
    uri_path = "uri" if res.type == INTEGRATION else "integrationUri"
    yield from _uri_findings(res.get(uri_path), uri_path)
    yield from _template_findings(res.get("requestTemplates"), "requestTemplates")


NO_LITERAL_CREDENTIALS = resource_policy(
    name="no-literal-credentials",
    family=FAMILY_BASELINE,
    description="Integration and method request parameters carry no static credential (a quoted "
                "literal, or an HTTP API value without a variable, on an Authorization/API key/token "
                "header or query string, or any 'Bearer ...'/'Basic ...' literal); neither do backend "
                "URIs (user:password@, credential query parameters), mapping templates (header "
                "overrides, credential fields) or the integrations of an OpenAPI body.",
    resource_types=(INTEGRATION, METHOD, V2_INTEGRATION, REST_API, V2_API),
    check=_check_literal_credentials,
    remediation="Map credentials from the request or the authorizer; never write them into the API.",
)


# ---- Cognito methods that accept ID tokens ----------------------------------------------------

# With no scopes on a COGNITO_USER_POOLS method, API Gateway accepts the pool's ID tokens; with
# scopes it accepts only an access token that carries one (AWS "Integrate a REST API with an
# Amazon Cognito user pool"; CloudFormation AWS::ApiGateway::Method AuthorizationScopes).
_SCOPES_WHY = ("a Cognito-authorized method without authorization scopes accepts ID tokens, which "
               "every app client of the user pool receives for any signed-in user, so the pool's "
               "whole population can call it; scopes demand an access token granted for this API")
_SCOPES_FIX = ("set authorization_scopes to the custom scopes (<resource server>/<scope>) the API's "
               "callers are granted, and have clients send that access token")


def _scope_list(value: Any) -> list:
    return [s for s in as_list(value) if is_unknown(s) or (isinstance(s, str) and s.strip())]


def _cognito_schemes(document: dict) -> set[str]:
    schemes = dict(as_dict(document.get("securityDefinitions")))
    schemes.update(as_dict(as_dict(document.get("components")).get("securitySchemes")))
    return {name for name, scheme in schemes.items()
            if str(as_dict(as_dict(scheme).get("x-amazon-apigateway-authorizer")).get("type", "")).lower()
            == "cognito_user_pools"}


def _check_cognito_scopes(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == METHOD:
        authorization = res.get("authorization")
        if is_unknown(authorization):
            yield cannot_check("authorization")
            return
        if str(authorization).upper() != "COGNITO_USER_POOLS":
            return
        scopes = res.get("authorizationScopes")
        if is_unknown(scopes):
            yield cannot_check("authorizationScopes")
        elif not _scope_list(scopes):
            yield violation("authorizationScopes", scopes, _SCOPES_WHY, _SCOPES_FIX)
        return
    body = res.get("body")
    if is_unknown(body):
        yield cannot_check("body")
        return
    document = openapi_security.parse(body)
    if not isinstance(document, dict):
        return  # no body, or one the Family 1 rules already refuse as unreadable
    cognito = _cognito_schemes(document)
    if not cognito:
        return
    for route, verb, operation in openapi_security.operations(document):
        security = operation["security"] if "security" in operation else document.get("security")
        for requirement in as_list(security):
            for scheme in sorted(set(as_dict(requirement)) & cognito):
                if not _scope_list(as_dict(requirement)[scheme]):
                    yield violation(
                        f"body.paths[\"{route}\"].{verb}.security.{scheme}", [], _SCOPES_WHY,
                        "list the custom scopes in the operation's security requirement "
                        f"({scheme}: [<resource server>/<scope>]), and have clients send that access token")


COGNITO_ACCESS_TOKEN_SCOPES = resource_policy(
    name="cognito-access-token-scopes",
    family=FAMILY_BASELINE,
    description="REST API methods authorized by a Cognito user pool require authorization scopes "
                "(Method authorizationScopes, or the scopes of a cognito_user_pools security requirement "
                "in an OpenAPI body), so they accept access tokens granted for the API, not ID tokens.",
    resource_types=(METHOD, REST_API),
    check=_check_cognito_scopes,
    remediation="Set authorization_scopes on every COGNITO_USER_POOLS method; clients send an access token.",
)


POLICIES = [EXECUTE_API_ENDPOINT_DISABLED, INTEGRATION_TLS_VERIFIED, INTEGRATION_TLS_PRIVATE_CA,
            NO_LITERAL_CREDENTIALS, COGNITO_ACCESS_TOKEN_SCOPES]
