"""Family 3, cognito-access-token-scopes, through the analyzer protocol: a Cognito-authorized
method without scopes accepts ID tokens; violating and compliant twins, as Method resources
and as OpenAPI bodies (OpenAPI 3 and Swagger 2, JSON and YAML)."""
from __future__ import annotations

import json

import pulumi_aws as aws
import pytest
import yaml

from tests.policy_helpers import METHOD, REST_API, expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "cognito-access-token-scopes"
POOL = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEfGhI"


def _method(name: str, authorization: str = "COGNITO_USER_POOLS", **extra) -> aws.apigateway.Method:
    return aws.apigateway.Method(name, rest_api="api", resource_id="r", http_method="POST",
                                 authorization=authorization, authorizer_id="auth", api_key_required=True, **extra)


@pytest.mark.parametrize("scopes", [None, [], [""]], ids=["absent", "empty", "blank"])
@pytest.mark.parametrize("env, level", [("prod", "mandatory"), ("staging", "mandatory"), ("dev", "advisory")])
def test_a_cognito_method_without_scopes_accepts_id_tokens(pack, scopes, env, level):
    def program():
        _method("open-to-id-tokens", **({} if scopes is None else {"authorization_scopes": scopes}))
        _method("lowercase", authorization="cognito_user_pools")

    verdict = judge(pack, program, env)
    for name in ("open-to-id-tokens", "lowercase"):
        expect_violation(verdict, POLICY, METHOD, name, level=level,
                         contains=["authorizationScopes", "ID tokens", "authorization_scopes"])


def test_cognito_methods_with_scopes_and_other_authorizations_pass(pack):
    def program():
        _method("scoped", authorization_scopes=["deepseek-api/invoke"])
        _method("two-scopes", authorization_scopes=["deepseek-api/invoke", "deepseek-api/admin"])
        _method("key-only", authorization="NONE")
        _method("lambda", authorization="CUSTOM")
        _method("iam", authorization="AWS_IAM")

    expect_clean(judge(pack, program), POLICY)


def test_scopes_unknown_during_preview_are_reported_not_passed(pack):
    def program():
        _method("computed", authorization_scopes=unknown_of(["deepseek-api/invoke"]))

    verdict = judge(pack, program)
    found = verdict.on(POLICY, METHOD, "computed")
    assert found and all(d.enforcement_level == "advisory" for d in found), verdict.describe(POLICY)
    assert "authorizationScopes" in found[0].message


def _openapi(scopes: list, *, swagger: bool = False) -> dict:
    scheme = {"type": "apiKey", "name": "Authorization", "in": "header",
              "x-amazon-apigateway-authtype": "cognito_user_pools",
              "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [POOL]}}
    key = {"type": "apiKey", "name": "x-api-key", "in": "header"}
    operation = {"security": [{"pool": scopes, "api_key": []}],
                 "x-amazon-apigateway-integration": {"type": "http_proxy", "httpMethod": "POST",
                                                     "connectionType": "VPC_LINK", "connectionId": "l",
                                                     "uri": "https://llm.internal.example/v1/chat/completions"}}
    document = {"paths": {"/v1/chat/completions": {"post": operation}}}
    if swagger:
        document.update(swagger="2.0", securityDefinitions={"pool": scheme, "api_key": key})
    else:
        document.update(openapi="3.0.1", components={"securitySchemes": {"pool": scheme, "api_key": key}})
    return document


@pytest.mark.parametrize("swagger", [False, True], ids=["openapi3", "swagger2"])
@pytest.mark.parametrize("dump", [json.dumps, yaml.safe_dump], ids=["json", "yaml"])
def test_an_openapi_body_whose_cognito_requirement_lists_no_scopes_is_a_violation(pack, swagger, dump):
    def program():
        aws.apigateway.RestApi("id-tokens", body=dump(_openapi([], swagger=swagger)))
        aws.apigateway.RestApi("scoped", body=dump(_openapi(["deepseek-api/invoke"], swagger=swagger)))

    verdict = judge(pack, program)
    expect_violation(verdict, POLICY, REST_API, "id-tokens",
                     contains=['body.paths["/v1/chat/completions"].post.security.pool', "ID tokens"])
    assert not verdict.on(POLICY, REST_API, "scoped"), verdict.describe(POLICY)


def test_a_document_level_requirement_without_scopes_counts_for_every_operation(pack):
    document = _openapi(["deepseek-api/invoke"])
    operation = document["paths"]["/v1/chat/completions"]["post"]
    document["security"] = operation.pop("security")
    document["security"][0]["pool"] = []

    def program():
        aws.apigateway.RestApi("inherited", body=json.dumps(document))

    expect_violation(judge(pack, program), POLICY, REST_API, "inherited", contains=["security.pool"])
