"""Semantics, not keywords, for APIs and load balancers, through the analyzer protocol:
internet integrations expose their backend, OpenAPI security counts only when the gateway
enforces it, and an ALB authenticate action that allows anonymous requests is no auth."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from tests.policy_helpers import (
    HTTP_API, LISTENER, LISTENER_RULE, REST_API, expect_clean, expect_violation, judge, pack, unknown_of,
)

__all__ = ["pack"]

INTEGRATION = "integration-private-backend"
REST_INTEGRATION = "aws:apigateway/integration:Integration"
V2_INTEGRATION = "aws:apigatewayv2/integration:Integration"
REST_API_PUT = "aws:apigateway/restApiPut:RestApiPut"
_CERT = "arn:aws:acm:us-east-1:1:certificate/x"


def _method(api, name="post"):
    return aws.apigateway.Method(name, rest_api=api.id, resource_id=api.root_resource_id, http_method="POST",
                                 authorization="AWS_IAM")


# ---- integrations over the internet --------------------------------------------------------------

def rest_http_proxy_default_connection():
    api = aws.apigateway.RestApi("api")
    method = _method(api)
    aws.apigateway.Integration("backend", rest_api=api.id, resource_id=api.root_resource_id,
                               http_method=method.http_method, type="HTTP_PROXY", integration_http_method="POST",
                               uri="http://ec2-54-1-2-3.compute-1.amazonaws.com:8000/v1/chat/completions")


def rest_http_explicit_internet_typed():
    api = aws.apigateway.RestApi("api")
    method = _method(api)
    aws.apigateway.Integration("backend", aws.apigateway.IntegrationArgs(
        rest_api=api.id, resource_id=api.root_resource_id, http_method=method.http_method, type="HTTP",
        integration_http_method="POST", connection_type="INTERNET", uri="https://models.example.com/v1"))


def v2_http_proxy_internet():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Integration("backend", api_id=api.id, integration_type="HTTP_PROXY",
                                 integration_method="ANY", integration_uri="https://backend.example.com/{proxy}")


def v2_http_proxy_uri_unknown():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    lb = aws.lb.LoadBalancer("public-nlb", load_balancer_type="network", internal=True, subnets=["subnet-1"])
    aws.apigatewayv2.Integration("backend", api_id=api.id, integration_type="HTTP_PROXY",
                                 integration_method="ANY", integration_uri=lb.dns_name.apply(lambda d: f"http://{d}"))


def openapi_internet_integration_json():
    aws.apigateway.RestApi("spec-api", body=json.dumps({
        "openapi": "3.0.1", "info": {"title": "x", "version": "1"},
        "paths": {"/chat": {"post": {"x-amazon-apigateway-auth": {"type": "AWS_IAM"},
                                     "x-amazon-apigateway-integration": {
                                         "type": "http_proxy", "httpMethod": "POST", "uri": "http://gpu-box.example.net:8000/chat"}}}}}))


def openapi_internet_integration_output_json():
    body = pulumi.Output.json_dumps({
        "openapi": "3.0.1", "info": {"title": "x", "version": "1"},
        "paths": {"/chat": {"post": {"x-amazon-apigateway-auth": {"type": "AWS_IAM"},
                                     "x-amazon-apigateway-integration": {
                                         "type": "HTTP_PROXY", "httpMethod": "POST", "uri": "http://1.2.3.4/"}}}}})
    aws.apigatewayv2.Api("spec-http", protocol_type="HTTP", body=body)


INTERNET_CASES = [
    ("rest-http-proxy-default-connection", rest_http_proxy_default_connection, REST_INTEGRATION, "backend"),
    ("rest-http-explicit-internet-typed", rest_http_explicit_internet_typed, REST_INTEGRATION, "backend"),
    ("v2-http-proxy-internet", v2_http_proxy_internet, V2_INTEGRATION, "backend"),
    ("v2-http-proxy-uri-unknown", v2_http_proxy_uri_unknown, V2_INTEGRATION, "backend"),
    ("openapi-internet-integration-json", openapi_internet_integration_json, REST_API, "spec-api"),
    ("openapi-internet-integration-output-json", openapi_internet_integration_output_json, HTTP_API, "spec-http"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in INTERNET_CASES])
def test_an_integration_over_the_internet_exposes_its_backend(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), INTEGRATION, type_token, name,
                     contains=["presumably public"] if "unknown" not in program.__name__ else ["unknown during preview"])


def private_integrations():
    api = aws.apigateway.RestApi("api")
    method = _method(api)
    link = aws.apigateway.VpcLink("link", target_arn="arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/x/y")
    aws.apigateway.Integration("backend", rest_api=api.id, resource_id=api.root_resource_id,
                               http_method=method.http_method, type="HTTP_PROXY", integration_http_method="POST",
                               connection_type="VPC_LINK", connection_id=link.id, uri="https://models.internal/v1")
    aws.apigateway.Integration("lambda", rest_api=api.id, resource_id=api.root_resource_id,
                               http_method=method.http_method, type="AWS_PROXY", integration_http_method="POST",
                               uri="arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/f/invocations")
    http = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    v2link = aws.apigatewayv2.VpcLink("v2link", subnet_ids=["subnet-1"], security_group_ids=["sg-1"])
    aws.apigatewayv2.Integration("alb", api_id=http.id, integration_type="HTTP_PROXY", integration_method="ANY",
                                 connection_type="VPC_LINK", connection_id=v2link.id,
                                 integration_uri="arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/y/z")
    aws.apigateway.RestApi("spec-api", body=json.dumps({
        "openapi": "3.0.1", "paths": {"/chat": {"post": {
            "x-amazon-apigateway-auth": {"type": "AWS_IAM"},
            "x-amazon-apigateway-integration": {"type": "http_proxy", "connectionType": "VPC_LINK",
                                                "connectionId": "abc", "uri": "https://models.internal/"}}}}}))


def test_private_integrations_pass(pack):
    verdict = judge(pack, private_integrations, "prod")
    expect_clean(verdict, INTEGRATION)
    expect_clean(verdict, "apigateway-method-auth")


def test_a_reviewed_third_party_host_may_be_integrated_over_the_internet(pack):
    from tools.analyzer import config_path

    config = json.loads(config_path("prod").read_text())
    config[INTEGRATION] = {"enforcementLevel": "mandatory", "allowedBackendHosts": ["models.example.com"]}
    expect_clean(judge(pack, rest_http_explicit_internet_typed, "prod", config=config), INTEGRATION)
    expect_violation(judge(pack, v2_http_proxy_internet, "prod", config=config), INTEGRATION, V2_INTEGRATION,
                     "backend")


# ---- OpenAPI: only enforced security counts ----------------------------------------------------

_OAUTH_ONLY = {"openapi": "3.0.1", "info": {"title": "x", "version": "1"},
               "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {
                   "clientCredentials": {"tokenUrl": "https://idp/token", "scopes": {}}}}}},
               "security": [{"oauth": []}],
               "paths": {"/chat": {"post": {"x-amazon-apigateway-integration": {"type": "aws_proxy",
                                                                                "httpMethod": "POST", "uri": "arn"}}}}}


def openapi_oauth_without_authorizer():
    aws.apigateway.RestApi("spec-api", body=json.dumps(_OAUTH_ONLY))


def openapi_declared_key_not_required_put():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.RestApiPut("put", rest_api_id=api.id, body=pulumi.Output.json_dumps({
        "swagger": "2.0", "info": {"title": "x", "version": "1"},
        "securityDefinitions": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
        "paths": {"/chat": {"post": {"x-amazon-apigateway-integration": {"type": "mock"}}}}}))


def openapi_http_api_key_scheme():
    aws.apigatewayv2.Api("spec-http", protocol_type="HTTP", body=json.dumps({
        "openapi": "3.0.1", "info": {"title": "x", "version": "1"},
        "components": {"securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}},
        "paths": {"/chat": {"post": {"security": [{"api_key": []}]}}}}))


@pytest.mark.parametrize("program,policy,type_token,name", [
    pytest.param(openapi_oauth_without_authorizer, "apigateway-method-auth", REST_API, "spec-api", id="oauth-doc-only"),
    pytest.param(openapi_declared_key_not_required_put, "apigateway-method-auth", REST_API_PUT, "put",
                 id="declared-key-not-required"),
    pytest.param(openapi_http_api_key_scheme, "http-api-route-auth", HTTP_API, "spec-http", id="http-api-key"),
])
def test_openapi_security_the_gateway_does_not_enforce_is_no_auth(pack, program, policy, type_token, name):
    expect_violation(judge(pack, program, "dev"), policy, type_token, name, contains=["enforces"])


def openapi_enforced():
    document = dict(_OAUTH_ONLY)
    document["components"] = {"securitySchemes": {"oauth": {
        "type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "oauth2",
        "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": "arn:lambda"}}}}
    aws.apigateway.RestApi("spec-api", body=json.dumps(document))
    api = aws.apigateway.RestApi("api")
    aws.apigateway.RestApiPut("put", rest_api_id=api.id, body=json.dumps({
        "swagger": "2.0", "info": {"title": "x", "version": "1"},
        "securityDefinitions": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}},
        "security": [{"api_key": []}],
        "paths": {"/chat": {"post": {"x-amazon-apigateway-integration": {"type": "mock"}}}}}))


def test_openapi_security_the_gateway_enforces_passes(pack):
    expect_clean(judge(pack, openapi_enforced, "prod"), "apigateway-method-auth")


# ---- ALB authenticate actions that let anonymous requests through -------------------------------

def _oidc(on_unauthenticated):
    settings = {"authorization_endpoint": "https://idp/auth", "client_id": "c", "client_secret": "s",
                "issuer": "https://idp", "token_endpoint": "https://idp/token", "user_info_endpoint": "https://idp/u"}
    if on_unauthenticated is not None:
        settings["on_unauthenticated_request"] = on_unauthenticated
    return {"type": "authenticate-oidc", "order": 1, "authenticate_oidc": settings}


def _alb_program(listener_actions=None, rule_actions=None):
    def program():
        tg = aws.lb.TargetGroup("models", port=8000, protocol="HTTP", vpc_id="vpc-1", target_type="ip")
        lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
        forward = {"type": "forward", "order": 2, "target_group_arn": tg.arn}
        listener = aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                                   certificate_arn=_CERT,
                                   default_actions=[a if a != "forward" else forward for a in listener_actions])
        if rule_actions is not None:
            aws.lb.ListenerRule("api", listener_arn=listener.arn, priority=10,
                                conditions=[{"path_pattern": {"values": ["/v1/*"]}}],
                                actions=[a if a != "forward" else forward for a in rule_actions])
    return program


def test_an_oidc_action_that_allows_anonymous_requests_is_no_authentication(pack):
    verdict = judge(pack, _alb_program([_oidc("allow"), "forward"]), "dev")
    expect_violation(verdict, "internet-reachability", LISTENER, "https")


def test_a_cognito_rule_that_allows_anonymous_requests_is_no_authentication(pack):
    cognito = aws.lb.ListenerRuleActionArgs(type="authenticate-cognito", order=1,
                                            authenticate_cognito=aws.lb.ListenerRuleActionAuthenticateCognitoArgs(
                                                user_pool_arn="arn:pool", user_pool_client_id="c",
                                                user_pool_domain="d", on_unauthenticated_request="allow"))
    verdict = judge(pack, _alb_program([_oidc("deny"), "forward"], [cognito, "forward"]), "dev")
    expect_violation(verdict, "internet-reachability", LISTENER_RULE, "api")
    assert not verdict.on("internet-reachability", LISTENER, "https")


def test_an_unknown_unauthenticated_mode_fails_closed(pack):
    def program():
        _alb_program([_oidc(unknown_of("allow")), "forward"])()
    expect_violation(judge(pack, program, "dev"), "internet-reachability", LISTENER, "https",
                     contains=["unknown during preview"])


@pytest.mark.parametrize("mode", [None, "authenticate", "deny"])
def test_authenticate_and_deny_modes_authenticate(pack, mode):
    verdict = judge(pack, _alb_program([_oidc(mode), "forward"]), "dev")
    assert not verdict.on("internet-reachability", LISTENER, "https"), verdict.describe("internet-reachability")
