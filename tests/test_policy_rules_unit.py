"""The pack's pure logic, without the engine: address semantics, runtime detection, secret
names, user data decoding, ALB action order, and rules that never crash on odd shapes
(a security team runs this pack against programs nobody here has seen)."""
from __future__ import annotations

import base64
import gzip
import json
import random

import pytest
from pulumi_policy import ResourceValidationArgs
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResourceOptions

from policies.rules import all_policies
from policies.rules._framework import FAMILY_EXPOSURE, Resource, Stack, StackResource, resource_policy
from policies.rules._wire import UNKNOWN, admits_internet, as_bool, raw
from policies.rules.public_endpoints import openapi_unauthenticated
from policies.rules.reachability import actions_authenticate
from policies.rules.runtime_hygiene import is_secret_name
from policies.rules.workloads import UserData, decode_user_data, runtime_of_image, user_data_servings


@pytest.mark.parametrize("cidr, allowed, expected", [
    ("0.0.0.0/0", [], True),
    ("::/0", [], True),
    ("0.0.0.0/1", [], True),          # half the internet is still the internet
    ("2000::/3", [], True),           # all global unicast IPv6
    ("10.20.0.0/16", [], False),
    ("100.64.0.0/10", [], False),     # carrier-grade NAT space
    ("fd00:1::/64", [], False),       # unique local IPv6
    ("198.51.100.7/32", [], True),
    ("198.51.100.7/32", ["198.51.100.0/24"], False),
    ("0.0.0.0/0", ["0.0.0.0/0"], True),  # the world cannot be allow-listed
    ("not-a-cidr", [], True),         # unreadable: fail closed
])
def test_which_cidrs_admit_the_internet(cidr, allowed, expected):
    assert admits_internet(cidr, allowed) is expected


def test_launch_template_string_booleans_read_like_booleans():
    assert as_bool("true") is True and as_bool("TRUE") is True
    assert as_bool("false") is False and as_bool(False) is False
    assert as_bool(None) is None and as_bool(UNKNOWN) == UNKNOWN


def test_raw_unwraps_secret_envelopes_and_keeps_unknowns():
    wire = {"a": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "s"},
            "b": [UNKNOWN]}
    assert raw(wire) == {"a": "s", "b": [UNKNOWN]}


@pytest.mark.parametrize("image, runtime", [
    ("vllm/vllm-openai:v0.11.0", "vllm"),
    ("public.ecr.aws/acme/vllm-openai@sha256:" + "a" * 64, "vllm"),
    ("ghcr.io/huggingface/text-generation-inference:3.3.4", "tgi"),
    ("ollama/ollama", "ollama"),
    ("registry.local:5000/ollama/ollama:0.12", "ollama"),
    ("acme/ollama-proxy:1", None),
    ("rocm/vllm:latest", "vllm"),
    ("acme/vllm-router:0.1", None),
    ("nginx:latest", None),
])
def test_model_servers_are_recognised_by_image(image, runtime):
    assert runtime_of_image(image) == runtime


@pytest.mark.parametrize("name, secret", [
    ("HF_TOKEN", True), ("VLLM_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("db-password", True),
    ("MAX_TOTAL_TOKENS", False), ("OLLAMA_KEEP_ALIVE", False), ("API_KEY_SECRET_ARN", False),
    ("AWS_ACCESS_KEY_ID", False), ("HF_TOKEN_PATH", False), ("TOKENIZERS_PARALLELISM", False),
])
def test_secret_looking_names(name, secret):
    assert is_secret_name(name) is secret


def test_user_data_is_read_through_base64_gzip_and_mime_parts():
    script = "#!/bin/bash\ndocker run vllm/vllm-openai:v0.11.0 --max-model-len 8192\n"
    part = base64.b64encode(gzip.compress(script.encode())).decode()
    mime = ("Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n--B\n"
            "Content-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\n" + part + "\n--B--\n")
    text = decode_user_data(base64.b64encode(mime.encode()).decode(), is_base64=True)
    servings = user_data_servings(UserData("userData", text))
    assert [s.runtime for s in servings] == ["vllm"]
    assert servings[0].has_flag("--max_model_len")  # vLLM's underscore spelling is the same flag


_SCHEMES = {
    "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
    "cognito": {"type": "apiKey", "name": "Authorization", "in": "header",
                "x-amazon-apigateway-authtype": "cognito_user_pools",
                "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": ["arn"]}},
    "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"},
    "oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://idp/token", "scopes": {}}}},
    "bearer": {"type": "http", "scheme": "bearer"},
    "other_header": {"type": "apiKey", "name": "Authorization", "in": "header"},
}


@pytest.mark.parametrize("security, anonymous", [
    (None, True), ([], True), ([{}], True), ([{"api_key": []}, {}], True),
    ([{"api_key": []}], False), ([{"cognito": []}, {"sigv4": []}], False),
    # Declared but enforced by nothing at the gateway: documentation only.
    ([{"oauth": []}], True), ([{"bearer": []}], True), ([{"other_header": []}], True),
    ([{"undeclared": []}], True), ([{"cognito": []}, {"bearer": []}], True),
    ([{"bearer": [], "sigv4": []}], False),  # both required: the gateway enforces sigv4
])
def test_openapi_only_security_the_gateway_enforces_counts(security, anonymous):
    operation = {} if security is None else {"security": security}
    body = json.dumps({"openapi": "3.0.1", "components": {"securitySchemes": _SCHEMES},
                       "paths": {"/v1/chat/completions": {"post": operation}}})
    assert bool(list(openapi_unauthenticated(body, "REST API"))) is anonymous


def test_openapi_a_declared_global_scheme_that_is_not_required_authenticates_nobody():
    body = json.dumps({"swagger": "2.0", "securityDefinitions": {"api_key": _SCHEMES["api_key"]},
                       "paths": {"/chat": {"post": {}}}})
    assert list(openapi_unauthenticated(body, "REST API"))
    required = json.loads(body)
    required["security"] = [{"api_key": []}]
    assert not list(openapi_unauthenticated(json.dumps(required), "REST API"))
    # An operation's own empty list overrides the global requirement.
    required["paths"]["/chat"]["post"]["security"] = []
    assert list(openapi_unauthenticated(json.dumps(required), "REST API"))


def test_openapi_http_apis_have_no_api_keys_but_iam_and_authorizers_count():
    def body(scheme):
        return json.dumps({"openapi": "3.0.1", "components": {"securitySchemes": {"s": scheme}},
                           "paths": {"/chat": {"post": {"security": [{"s": []}]}}}})
    assert list(openapi_unauthenticated(body(_SCHEMES["api_key"]), "HTTP API"))
    assert not list(openapi_unauthenticated(body(_SCHEMES["sigv4"]), "HTTP API"))
    jwt = {"type": "oauth2", "x-amazon-apigateway-authorizer": {
        "type": "jwt", "jwtConfiguration": {"issuer": "https://idp", "audience": ["a"]},
        "identitySource": "$request.header.Authorization"}}
    assert not list(openapi_unauthenticated(body(jwt), "HTTP API"))
    iam = json.dumps({"openapi": "3.0.1", "paths": {"/chat": {"post": {"x-amazon-apigateway-auth": {"type": "AWS_IAM"}}}}})
    assert not list(openapi_unauthenticated(iam, "REST API"))


def test_alb_actions_run_in_order_and_terminal_actions_reach_no_target():
    forward = {"type": "forward"}
    oidc = {"type": "authenticate-oidc"}
    assert actions_authenticate([oidc, forward]) is True
    assert actions_authenticate([forward, oidc]) is False
    assert actions_authenticate([dict(oidc, order=2), dict(forward, order=1)]) is False
    assert actions_authenticate([{"type": "redirect"}]) is True
    assert actions_authenticate([{"type": "fixed-response"}, forward]) is True
    assert actions_authenticate([{"type": UNKNOWN}]) == UNKNOWN


# ---- robustness -------------------------------------------------------------------------

_KEYS = ["spec", "template", "containers", "initContainers", "metadata", "annotations", "labels", "ingress",
         "cidrBlocks", "ipv6CidrBlocks", "cidrIpv4", "fromPort", "toPort", "protocol", "type", "internal",
         "loadBalancerType", "networkInterfaces", "associatePublicIpAddress", "vpcConfig",
         "endpointPublicAccess", "publicAccessCidrs", "authorization", "apiKeyRequired", "httpMethod",
         "routeKey", "authorizationType", "body", "target", "userData", "metadataOptions", "httpTokens",
         "blockDeviceMappings", "ebs", "encrypted", "env", "envFrom", "args", "command", "image", "name",
         "value", "valueFrom", "securityContext", "resources", "limits", "ports", "hostPort", "hostNetwork",
         "defaultActions", "actions", "order", "listeners", "lbProtocol", "settings", "throttleSettings",
         "quotaSettings", "rateLimit", "limit", "instanceType", "instanceTypes", "scalingConfig", "maxSize",
         "replicas", "maxReplicas", "strategy", "rollingUpdate", "maxUnavailable", "data", "environment",
         "variables", "remoteAccess", "ec2SshKey", "sourceSecurityGroupIds", "rules", "statement", "apiStages",
         "stageName", "apiId", "restApi", "selector", "matchLabels", "encryptionConfig", "retentionInDays",
         "kmsKeyId", "sslPolicy", "securityPolicy", "healthCheckType", "targetGroupArns", "protocolType"]


def _random_value(rng: random.Random, depth: int):
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1.0, 443, 65535, 1e12])
    if choice == 3:
        return rng.choice(["", "NONE", "true", "0.0.0.0/0", "::/0", "vllm serve --api-key x", "-1", "GT",
                           "forward", "internet-facing", "LoadBalancer", "HF_TOKEN=x", "{", "vllm/vllm-openai"])
    if choice == 4:
        return UNKNOWN
    if choice == 5:
        return rng.choice(["x", 7, None])
    if choice in (6, 7):
        return {rng.choice(_KEYS): _random_value(rng, depth + 1) for _ in range(rng.randrange(1, 6))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def _shapes(seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        props = _random_value(rng, 0)
        yield props if isinstance(props, dict) else {rng.choice(_KEYS): props}


def _concrete(token: str) -> str:
    return "kubernetes:example.com/v1:Thing" if "*" in token else token


@pytest.mark.parametrize("policy", all_policies(), ids=lambda p: p.name)
def test_rules_survive_arbitrary_property_shapes(policy):
    stack_level = "stack" in (policy.tags or [])
    for index, props in enumerate(_shapes(seed=len(policy.name), count=300)):
        if stack_level:
            resources = [StackResource(_concrete(t), f"r{i}", f"urn:{i}", dict(props),
                                       property_dependencies={k: [f"urn:{(i + 1) % 3}"] for k in props})
                         for i, t in enumerate(policy.resource_types[:12])]
            list(policy.check(Stack(resources), dict(policy.config_defaults)))
        else:
            for token in policy.resource_types:
                list(policy.check(Resource(_concrete(token), "r", "urn:r", dict(props)),
                                  dict(policy.config_defaults)))


def test_a_rule_that_cannot_read_a_resource_fails_closed_without_quoting_it():
    def broken(res, config):
        raise ValueError(f"cannot parse {res.props['secret']}")

    policy = resource_policy(name="broken", family=FAMILY_EXPOSURE, description="d", resource_types=("t:x:Y",),
                             check=broken, remediation="r")
    reports = []
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs("t:x:Y", {"secret": "hunter2"}, "urn:y", "y", options, None)
    policy.validate(args, lambda message, urn=None: reports.append(message))
    assert len(reports) == 1 and "could not evaluate it (ValueError)" in reports[0]
    assert "hunter2" not in reports[0]
