"""The ApiGateway component as the engine records it: auth on every method, metering,
streaming private integrations, logging without bodies, redeploys that follow the routes.

Most tests run the component alone under the mock engine, built from a committed stack's
inventory with literal load balancer ARNs (`gateway_run`), so they do not depend on the
platform components; `test_every_stack_previews_with_the_gateway` runs the whole program.
"""
from __future__ import annotations

import copy
import functools
import json
from typing import Callable, Optional

import pulumi
import pytest

from components.gateway.api import (
    ACCESS_LOG_FIELDS,
    GATEWAY_PAYLOAD_LIMIT,
    ApiGateway,
    ApiGatewayArgs,
    Backend,
    ThrottleError,
    ThrottleLimits,
    ThrottlePlan,
    access_log_format,
    api_definition,
    definition_hash,
    derive_max_request_bytes,
    gateway_throttles,
    routes_for,
)
from components.config import Inventory, InventoryError, parse_inventory
from components.gateway.responses import render_gateway_responses
from components.serving.runtimes import request_bytes_for
from tools import mock_engine, stack_files
from tests.program_harness import record

T = "aws:apigateway/"
METHOD = f"{T}method:Method"
INTEGRATION = f"{T}integration:Integration"
DEPLOYMENT = f"{T}deployment:Deployment"
STAGE = f"{T}stage:Stage"
USAGE_PLAN = f"{T}usagePlan:UsagePlan"
API_KEY = f"{T}apiKey:ApiKey"
PLAN_KEY = f"{T}usagePlanKey:UsagePlanKey"
METHOD_SETTINGS = f"{T}methodSettings:MethodSettings"
RESPONSE = f"{T}response:Response"
REST_API = f"{T}restApi:RestApi"
RESOURCE = f"{T}resource:Resource"
SECRET = {mock_engine.SECRET_SIG_KEY: mock_engine.SECRET_SIG}
LB_ARN = "arn:aws:elasticloadbalancing:{region}:123456789012:loadbalancer/net/{model}/0123456789abcdef"


def inventory_for(stack: str, change: Optional[Callable[[dict], None]] = None) -> tuple[Inventory, dict, list]:
    stack_file = stack_files.load(stack)
    config = copy.deepcopy(stack_file.config)
    if change is not None:
        change(config["deepseek-serving:inventory"])
    inventory = parse_inventory(config["deepseek-serving:inventory"], stack=stack,
                                secret_keys=set(stack_file.secret_keys))
    return inventory, config, stack_file.secret_keys


def backends_for(inventory: Inventory, *, as_outputs: bool = True) -> list[Backend]:
    """Backends as __main__ builds them from the load balancers."""
    cert = inventory.load_balancer.certificate
    return [Backend(model_name=m.name, nlb_arn=LB_ARN.format(region=inventory.region, model=m.name),
                    host=cert.internal_domain, skip_tls_verification=cert.mode == "private_ca",
                    priority_scheduling=m.scheduling_policy == "priority")
            for m in inventory.models]


def gateway_run(stack: str, change: Optional[Callable[[dict], None]] = None, *,
                preview: bool = True) -> mock_engine.ProgramRun:
    """The ApiGateway component alone, built as __main__ builds it, under the mock engine."""
    inventory, config, secret_keys = inventory_for(stack, change)

    def program():
        gateway = ApiGateway("gateway", ApiGatewayArgs(
            settings=inventory.gateway,
            backends=backends_for(inventory),
            max_request_bytes=derive_max_request_bytes(inventory.gateway, inventory.models),
            throttles=gateway_throttles(inventory, stack),
            logs_key_arn=f"arn:aws:kms:{inventory.region}:123456789012:key/logs",
            log_retention_days=inventory.observability.log_retention_days,
            region=inventory.region,
            account_id="123456789012",
            manage_account_settings=inventory.account_settings.manage,
        ))
        pulumi.export("api_endpoint", gateway.api_endpoint)
        pulumi.export("model_endpoints", gateway.model_endpoints)
        pulumi.export("api_key_values", gateway.api_key_values)
        pulumi.export("smoke_api_key_id", gateway.smoke_api_key_id)
        pulumi.export("redeployment_hash", gateway.redeployment_hash)

    return record(program, stack=stack, config=config, secret_keys=secret_keys,
                  preview=preview, region=inventory.region)


@functools.lru_cache(maxsize=None)
def cached_run(stack: str, preview: bool = True) -> mock_engine.ProgramRun:
    return gateway_run(stack, preview=preview)


STACKS = ("dev", "staging", "prod")


# ------------------------------------------------------------------------- methods


@pytest.mark.parametrize("stack", STACKS)
def test_every_method_requires_an_api_key(stack):
    methods = cached_run(stack).by_type(METHOD)
    assert methods
    for method in methods:
        assert method.inputs["apiKeyRequired"] is True, method.name


def test_methods_use_the_cognito_authorizer_when_the_inventory_names_one():
    run = cached_run("prod")
    authorizer = run.one(f"{T}authorizer:Authorizer", "gateway-authorizer")
    assert authorizer.inputs["type"] == "COGNITO_USER_POOLS"
    assert authorizer.inputs["providerArns"] == [
        "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEfGhI"]
    for method in run.by_type(METHOD):
        assert method.inputs["authorization"] == "COGNITO_USER_POOLS"
        assert authorizer.urn in method.property_dependencies["authorizerId"]


@pytest.mark.parametrize("stack", ("prod", "flagship"))
def test_cognito_methods_require_the_inventory_scopes_so_only_access_tokens_pass(stack):
    run = cached_run(stack)
    inventory, _, _ = inventory_for(stack)
    scopes = inventory.gateway.authorizer.scopes
    assert scopes == ["deepseek-api/invoke"]
    methods = run.by_type(METHOD)
    assert methods
    for method in methods:
        assert method.inputs["authorization"] == "COGNITO_USER_POOLS", method.name
        assert method.inputs["authorizationScopes"] == scopes, method.name


def test_methods_without_a_cognito_authorizer_carry_no_scopes():
    function = "arn:aws:lambda:us-east-1:123456789012:function:jwt-check"
    for run in (cached_run("dev"), gateway_run("dev", lambda inv: inv["gateway"].update(
            authorizer={"type": "lambda", "function_arn": function}))):
        for method in run.by_type(METHOD):
            assert "authorizationScopes" not in method.inputs, method.name


@pytest.mark.parametrize("authorizer, fragment", [
    ({"type": "cognito"}, "needs scopes"),
    ({"type": "cognito", "scopes": []}, "needs scopes"),
    ({"type": "cognito", "scopes": ["invoke"]}, "<resource server identifier>/<scope name>"),
    ({"type": "cognito", "scopes": ["deepseek-api/"]}, "<resource server identifier>/<scope name>"),
    ({"type": "cognito", "scopes": ["deepseek api/invoke"]}, "<resource server identifier>/<scope name>"),
    ({"type": "cognito", "scopes": ["deepseek-api/invoke", "deepseek-api/invoke"]}, "twice"),
    ({"type": "lambda", "function_arn": "arn:aws:lambda:us-east-1:123456789012:function:jwt-check",
      "scopes": ["deepseek-api/invoke"]}, "cognito authorizers only"),
])
def test_a_cognito_authorizer_without_valid_scopes_is_refused_naming_the_key(authorizer, fragment):
    pool = {"user_pool_arns": ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEfGhI"]}

    def change(inv):
        inv["gateway"]["authorizer"] = {**(pool if authorizer["type"] == "cognito" else {}), **authorizer}

    with pytest.raises(InventoryError) as refused:
        inventory_for("dev", change)
    message = str(refused.value)
    assert "stacks/Pulumi.dev.yaml" in message
    assert "gateway.authorizer" in message
    assert fragment in message


def test_scopes_may_name_a_url_resource_server():
    inventory, _, _ = inventory_for("prod", lambda inv: inv["gateway"]["authorizer"].update(
        scopes=["https://llm.api.acme.example/invoke"]))
    assert inventory.gateway.authorizer.scopes == ["https://llm.api.acme.example/invoke"]


def test_without_an_authorizer_methods_rely_on_the_key_alone():
    for method in cached_run("dev").by_type(METHOD):
        assert method.inputs["authorization"] == "NONE"
        assert "authorizerId" not in method.inputs


def test_a_lambda_authorizer_is_a_token_authorizer_only_this_api_may_invoke():
    function = "arn:aws:lambda:us-east-1:123456789012:function:jwt-check"
    run = gateway_run("dev", lambda inv: inv["gateway"].update(
        authorizer={"type": "lambda", "function_arn": function}))
    authorizer = run.one(f"{T}authorizer:Authorizer", "gateway-authorizer")
    assert authorizer.inputs["type"] == "TOKEN"
    assert function in authorizer.inputs["authorizerUri"]
    permission = run.one("aws:lambda/permission:Permission", "gateway-authorizer-invoke")
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["function"] == function
    assert {m.inputs["authorization"] for m in run.by_type(METHOD)} == {"CUSTOM"}


# -------------------------------------------------------------------------- routes


def test_only_the_openai_surface_under_each_model_is_routed():
    run = cached_run("dev")
    rest_api = run.one(REST_API, "gateway-api")
    resources = run.by_type(RESOURCE)
    # Below the root sit the model names only: no method or route at the root itself.
    top = {r.inputs["pathPart"] for r in resources
           if rest_api.urn in r.property_dependencies.get("parentId", [])}
    assert top == {"r1-qwen-7b", "r1-qwen-1-5b-gguf"}
    parts = {r.inputs["pathPart"] for r in resources}
    assert not parts & {"health", "metrics", "tokenize", "pause", "api"}
    for integration in run.by_type(INTEGRATION):
        # The runtime's admin routes live outside /v1: no integration can reach them.
        assert integration.inputs["uri"].startswith("https://llm.dev.internal.acme.example/v1/")


def test_the_proxy_route_maps_the_path_parameter_and_explicit_routes_exist():
    routes = routes_for(["m"])
    assert [(r.resource_path, r.http_method, r.backend_path) for r in routes] == [
        ("/m/v1/{proxy+}", "ANY", "/v1/{proxy}"),
        ("/m/v1/chat/completions", "POST", "/v1/chat/completions"),
        ("/m/v1/completions", "POST", "/v1/completions"),
        ("/m/v1/models", "GET", "/v1/models"),
    ]
    run = cached_run("dev")
    proxy = run.one(INTEGRATION, "gateway-integration-r1-qwen-7b-proxy-any")
    parameters = proxy.inputs["requestParameters"]
    assert parameters["integration.request.path.proxy"] == "method.request.path.proxy"
    method = run.one(METHOD, "gateway-method-r1-qwen-7b-proxy-any")
    assert method.inputs["requestParameters"] == {"method.request.path.proxy": True}


# -------------------------------------------------------------------- integrations


@pytest.mark.parametrize("stack", STACKS)
def test_integrations_stream_through_the_vpc_link_with_the_inventory_timeout(stack):
    inventory, _, _ = inventory_for(stack)
    run = cached_run(stack)
    links = {r.urn for r in run.by_type(f"{T}vpcLink:VpcLink")}
    assert len(links) == len(inventory.models)
    for integration in run.by_type(INTEGRATION):
        inputs = integration.inputs
        assert inputs["type"] == "HTTP_PROXY"
        assert inputs["connectionType"] == "VPC_LINK"
        assert set(integration.property_dependencies["connectionId"]) <= links
        assert inputs["responseTransferMode"] == "STREAM"
        assert inputs["timeoutMilliseconds"] == inventory.gateway.integration_timeout_ms
        assert inputs["requestParameters"]["integration.request.header.X-Request-Id"] == "context.requestId"


def test_buffered_responses_when_streaming_is_off():
    run = gateway_run("dev", lambda inv: inv["gateway"].update(streaming=False,
                                                              integration_timeout_ms=29_000))
    for integration in run.by_type(INTEGRATION):
        assert integration.inputs["responseTransferMode"] == "BUFFERED"
        assert integration.inputs["timeoutMilliseconds"] == 29_000


def test_no_credential_reaches_a_runtime_and_the_gateway_holds_none():
    # The client's Authorization header is replaced by a placeholder on every integration,
    # and no static backend key is written into the gateway (docs/BACKEND_AUTH.md).
    for stack in ("dev", "staging", "prod"):
        for integration in cached_run(stack).by_type(INTEGRATION):
            parameters = integration.inputs["requestParameters"]
            assert parameters["integration.request.header.Authorization"] == "'none'", integration.name
            assert not any(isinstance(v, dict) for v in parameters.values()), integration.name


def test_tls_verification_is_skipped_only_for_private_ca_certificates():
    dev = {i.inputs["tlsConfig"]["insecureSkipVerification"]
           for i in cached_run("dev").by_type(INTEGRATION)}
    staging = {i.inputs["tlsConfig"]["insecureSkipVerification"]
               for i in cached_run("staging").by_type(INTEGRATION)}
    assert dev == {False}       # imported certificate
    assert staging == {True}    # private CA: expiry and host name still checked


# ------------------------------------------------------------ deployment and stage


def test_the_deployment_follows_every_method_integration_and_gateway_response():
    run = cached_run("dev")
    deployment = run.one(DEPLOYMENT, "gateway-deployment")
    needed = {r.urn for r in run.registrations if r.type in (METHOD, INTEGRATION, RESPONSE)}
    assert needed <= set(deployment.dependencies)
    stage = run.one(STAGE, "gateway-stage")
    assert deployment.urn in stage.property_dependencies["deployment"]
    assert deployment.inputs["triggers"]["redeployment"] == run.outputs["redeployment_hash"]


def _redeployment(stack, change=None) -> str:
    run = gateway_run(stack, change) if change else cached_run(stack)
    return run.one(DEPLOYMENT, "gateway-deployment").inputs["triggers"]["redeployment"]


def test_redeploy_trigger_changes_when_a_route_changes():
    base = _redeployment("dev")

    def add_model(inv):
        extra = copy.deepcopy(inv["models"][0])
        extra["name"] = "r1-qwen-7b-canary"
        inv["models"].append(extra)

    assert _redeployment("dev", add_model) != base
    assert _redeployment("dev", lambda inv: inv["gateway"].update(integration_timeout_ms=120_000)) != base
    cognito = {"type": "cognito", "scopes": ["deepseek-api/invoke"], "user_pool_arns": [
        "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEfGhI"]}
    with_cognito = _redeployment("dev", lambda inv: inv["gateway"].update(authorizer=cognito))
    assert with_cognito != base
    # A method's scopes are part of what a deployment snapshots.
    assert _redeployment("dev", lambda inv: inv["gateway"].update(
        authorizer={**cognito, "scopes": ["deepseek-api/admin"]})) != with_cognito
    # The size limit is in the 413 gateway response's text.
    assert _redeployment("dev", lambda inv: inv["gateway"].update(max_request_bytes=65536)) != base


def test_redeploy_trigger_ignores_what_a_deployment_does_not_snapshot():
    base = _redeployment("dev")
    assert _redeployment("dev", lambda inv: inv["gateway"]["tiers"][0].update(rate_per_second=0.2)) == base
    assert _redeployment("dev", lambda inv: inv["gateway"]["waf"].update(rate_limit_per_ip=900)) == base


def test_the_redeploy_hash_covers_routes_integrations_and_gateway_responses():
    inventory, _, _ = inventory_for("dev")
    backends = backends_for(inventory, as_outputs=False)
    responses = render_gateway_responses(max_request_bytes=1024, integration_timeout_ms=1000, streaming=True)
    document = api_definition(inventory.gateway, backends, responses)
    assert {"routes", "gateway_responses", "authorizer"} <= set(document)
    changed = copy.deepcopy(document)
    changed["gateway_responses"][0]["status_code"] = "418"
    assert definition_hash(changed) != definition_hash(document)
    # The runtime key is a secret: only a marker enters the (plain) hash input.
    assert "runtime-key-of" not in json.dumps(document)


def test_stage_access_logs_are_json_metadata_without_bodies_or_key_values():
    run = cached_run("dev")
    stage = run.one(STAGE, "gateway-stage")
    settings = stage.inputs["accessLogSettings"]
    record = json.loads(settings["format"])
    for field in ("$context.requestId", "$context.identity.apiKeyId", "$context.status",
                  "$context.responseLatency", "$context.responseLength"):
        assert field in record.values()
    text = settings["format"]
    for forbidden in ("$input", "body", "requestOverride", "responseOverride"):
        assert forbidden not in text
    # $context.identity.apiKey is the key itself; only its id may be logged.
    assert "$context.identity.apiKey\"" not in text and "$context.identity.apiKey," not in text
    access_group = run.one("aws:cloudwatch/logGroup:LogGroup", "gateway-access-logs")
    assert access_group.urn in stage.property_dependencies["accessLogSettings"]
    assert access_group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert access_group.inputs["retentionInDays"] == 30


def test_access_log_fields_are_all_context_variables():
    assert json.loads(access_log_format()) == ACCESS_LOG_FIELDS
    assert all(v.startswith("$context.") for v in ACCESS_LOG_FIELDS.values())


def test_execution_logging_never_traces_data_and_stage_throttles_are_set():
    run = cached_run("dev")
    settings = run.by_type(METHOD_SETTINGS)
    stage_wide = [s for s in settings if s.inputs["methodPath"] == "*/*"]
    assert len(stage_wide) == 1
    for setting in settings:
        values = setting.inputs["settings"]
        assert values["dataTraceEnabled"] is False
        assert values["loggingLevel"] == "ERROR"
        assert values["metricsEnabled"] is True
        assert values["throttlingRateLimit"] > 0 and values["throttlingBurstLimit"] >= 1
    paths = {s.inputs["methodPath"] for s in settings}
    assert "r1-qwen-7b/v1/{proxy+}/ANY" in paths and "r1-qwen-7b/v1/chat/completions/POST" in paths
    execution = run.one("aws:cloudwatch/logGroup:LogGroup", "gateway-execution-logs")
    assert execution.inputs["kmsKeyId"] and execution.inputs["retentionInDays"] == 30


def test_stage_throttles_do_not_exceed_what_the_models_serve():
    inventory, _, _ = inventory_for("dev")
    plan = gateway_throttles(inventory, "dev")
    run = cached_run("dev")
    per_path = {s.inputs["methodPath"]: s.inputs["settings"] for s in run.by_type(METHOD_SETTINGS)}
    assert per_path["*/*"]["throttlingRateLimit"] == plan.stage.rate
    for model, limits in plan.per_model.items():
        # API Gateway throttles each method on its own: the methods that can generate share
        # the model's capacity, so together they cannot overrun its replicas.
        generating = {path: v for path, v in per_path.items() if path.startswith(f"{model}/")
                      and not path.endswith("/models/GET")}
        assert f"{model}/v1/{{proxy+}}/ANY" in generating and len(generating) >= 3
        assert sum(v["throttlingRateLimit"] for v in generating.values()) <= limits.rate + 1e-9
        assert sum(v["throttlingBurstLimit"] for v in generating.values()) <= limits.burst
        assert all(v["throttlingRateLimit"] > 0 for v in generating.values())
    assert plan.stage.rate <= sum(l.rate for l in plan.per_model.values()) + 1e-9
    for tier in inventory.gateway.tiers:
        assert tier.rate_per_second <= plan.stage.rate and tier.burst <= plan.stage.burst


def test_a_tier_faster_than_the_models_is_refused_at_preview_naming_the_key_and_fix():
    inventory, _, _ = inventory_for("dev", lambda inv: inv["gateway"]["tiers"][0].update(
        rate_per_second=500))
    with pytest.raises(ThrottleError) as raised:
        gateway_throttles(inventory, "dev")
    message = str(raised.value)
    assert "stacks/Pulumi.dev.yaml" in message
    assert "deepseek-serving:inventory.gateway.tiers[0]" in message
    assert "rate_per_second 500" in message
    assert "lower the gateway rate" in message


def test_the_cloudwatch_role_account_setting_precedes_the_stage():
    run = cached_run("prod")  # the stack that manages its account and region's settings
    account = run.one(f"{T}account:Account", "gateway-account")
    role = run.one("aws:iam/role:Role", "gateway-cloudwatch-role")
    assert role.urn in account.property_dependencies["cloudwatchRoleArn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "gateway-cloudwatch-role-policy")
    assert attachment.inputs["policyArn"].endswith("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
    assert account.urn in run.one(STAGE, "gateway-stage").dependencies


def test_xray_follows_the_inventory():
    assert cached_run("dev").one(STAGE, "gateway-stage").inputs["xrayTracingEnabled"] is False
    run = gateway_run("dev", lambda inv: inv["gateway"].update(xray_tracing=True))
    assert run.one(STAGE, "gateway-stage").inputs["xrayTracingEnabled"] is True


# ------------------------------------------------------------------------ metering


@pytest.mark.parametrize("stack", STACKS)
def test_each_tier_is_a_usage_plan_on_the_stage_with_throttle_and_quota(stack):
    inventory, _, _ = inventory_for(stack)
    run = cached_run(stack)
    plans = {p.name: p for p in run.by_type(USAGE_PLAN)}
    assert set(plans) == {f"gateway-plan-{t.name}" for t in inventory.gateway.tiers}
    for tier in inventory.gateway.tiers:
        # One shared stage, or with stage_per_tier the tier's own (tests/test_tier_stages.py).
        stage = run.one(STAGE, f"gateway-stage-{tier.name}" if inventory.gateway.stage_per_tier else "gateway-stage")
        plan = plans[f"gateway-plan-{tier.name}"]
        assert plan.inputs["throttleSettings"] == {"rateLimit": tier.rate_per_second, "burstLimit": tier.burst}
        assert plan.inputs["quotaSettings"] == {"limit": tier.quota.limit, "period": tier.quota.period}
        assert len(plan.inputs["apiStages"]) == 1
        # The stage name comes from the Stage itself, so the plan is created after it.
        assert stage.urn in plan.property_dependencies["apiStages"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_client_gets_an_enabled_key_in_its_tier_plan(stack):
    inventory, _, _ = inventory_for(stack)
    run = cached_run(stack)
    keys = {k.name: k for k in run.by_type(API_KEY)}
    plan_keys = {k.name: k for k in run.by_type(PLAN_KEY)}
    plans = {p.name: p.urn for p in run.by_type(USAGE_PLAN)}
    for client in inventory.gateway.clients:
        key = keys[f"gateway-key-{client.name}"]
        assert key.inputs["enabled"] is True
        link = plan_keys[f"gateway-plan-key-{client.name}"]
        assert link.inputs["keyType"] == "API_KEY"
        assert key.urn in link.property_dependencies["keyId"]
        assert plans[f"gateway-plan-{client.tier}"] in link.property_dependencies["usagePlanId"]


def test_supplied_keys_are_secret_inputs_and_generated_keys_have_no_value():
    run = cached_run("dev")
    smoke = run.one(API_KEY, "gateway-key-smoke")
    assert smoke.inputs["value"] == {**SECRET, "value": stack_files.SECRET_PLACEHOLDER}
    assert "value" not in run.one(API_KEY, "gateway-key-data-science").inputs


def test_a_key_kept_in_secrets_manager_is_read_at_deploy_time_and_stays_secret(monkeypatch):
    from tools import fake_cloud

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepseek/dev/clients/ds-AbCdEf"
    asked: list[dict] = []
    original = fake_cloud.invoke

    def invoke(token, args, region):
        if token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            asked.append(args)
            return {"id": arn, "arn": arn, "secretId": arn, "secretString": "key-from-secrets-manager-0123"}
        return original(token, args, region)

    monkeypatch.setattr(fake_cloud, "invoke", invoke)
    run = gateway_run("dev", lambda inv: inv["gateway"]["clients"][1].update(
        api_key={"secrets_manager_arn": arn}), preview=False)
    assert [a["secretId"] for a in asked] == [arn]
    key = run.one(API_KEY, "gateway-key-data-science")
    assert key.inputs["value"] == {**SECRET, "value": "key-from-secrets-manager-0123"}


def test_key_values_leave_the_component_only_as_a_secret():
    outputs = cached_run("dev", preview=False).outputs
    values = outputs["api_key_values"]
    assert values[mock_engine.SECRET_SIG_KEY] == mock_engine.SECRET_SIG
    assert stack_files.SECRET_PLACEHOLDER not in json.dumps({k: v for k, v in outputs.items()
                                                           if k != "api_key_values"})
    assert outputs["smoke_api_key_id"]


# -------------------------------------------------------------------------- domain


def test_a_custom_domain_is_regional_tls_1_2_mapped_and_the_default_endpoint_is_off():
    run = cached_run("prod", preview=False)
    domain = run.one(f"{T}domainName:DomainName", "gateway-domain")
    assert domain.inputs["domainName"] == "llm.api.acme.example"
    assert domain.inputs["regionalCertificateArn"].startswith("arn:aws:acm:us-east-1:")
    assert domain.inputs["endpointConfiguration"] == {"types": "REGIONAL"}
    assert domain.inputs["securityPolicy"] == "TLS_1_2"
    mapping = run.one(f"{T}basePathMapping:BasePathMapping", "gateway-base-path")
    assert domain.urn in mapping.property_dependencies["domainName"]
    record = run.one("aws:route53/record:Record", "gateway-dns")
    assert record.inputs["zoneId"] == "Z0123456789ABCDEFGHIJ" and record.inputs["type"] == "A"
    assert run.one(REST_API, "gateway-api").inputs["disableExecuteApiEndpoint"] is True
    assert run.outputs["api_endpoint"] == "https://llm.api.acme.example"
    assert run.outputs["model_endpoints"]["r1-qwen-32b"] == "https://llm.api.acme.example/r1-qwen-32b/v1"


def test_without_a_domain_the_stage_url_is_the_endpoint():
    run = cached_run("dev", preview=False)
    assert run.one(REST_API, "gateway-api").inputs["disableExecuteApiEndpoint"] is False
    assert not run.by_type(f"{T}domainName:DomainName")
    endpoint = run.outputs["api_endpoint"]
    assert endpoint.startswith("https://") and endpoint.endswith("/v1")
    assert run.outputs["model_endpoints"]["r1-qwen-7b"] == f"{endpoint}/r1-qwen-7b/v1"


# --------------------------------------------------------------- request size limit


def test_max_request_bytes_is_the_inventory_value_or_derived_from_the_longest_context():
    inventory, _, _ = inventory_for("dev")
    derived = derive_max_request_bytes(inventory.gateway, inventory.models)
    assert derived == max(request_bytes_for(m.max_context) for m in inventory.models)
    assert derived == 16384 * 8 + 64 * 1024
    explicit, _, _ = inventory_for("dev", lambda inv: inv["gateway"].update(max_request_bytes=100_000))
    assert derive_max_request_bytes(explicit.gateway, explicit.models) == 100_000
    huge, _, _ = inventory_for("dev", lambda inv: inv["models"][0].update(max_context=163840))
    assert derive_max_request_bytes(huge.gateway, huge.models) <= GATEWAY_PAYLOAD_LIMIT


def test_the_component_refuses_to_build_without_backends():
    inventory, _, _ = inventory_for("dev")

    def program():
        ApiGateway("gateway", ApiGatewayArgs(
            settings=inventory.gateway, backends=[], max_request_bytes=1024,
            throttles=ThrottlePlan(ThrottleLimits(1, 1), {}), logs_key_arn="k",
            log_retention_days=30, region="us-east-1", account_id="123456789012"))

    with pytest.raises(Exception, match="at least one backend"):
        record(program, stack="dev", preview=True)


# ------------------------------------------------------------------ whole program


GATEWAY_OUTPUTS = ("api_endpoint", "model_endpoints", "served_models", "smoke_api_key_id",
                   "tier_limits", "smoke_tier_limits", "max_request_bytes", "rest_api_id",
                   "stage_name", "api_key_values")


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_previews_with_the_gateway_wired_to_each_models_load_balancer(stack):
    from tests.stack_runs import preview_run

    run = preview_run(stack)
    assert not [message for level, message in run.logs if level == "error"]
    assert len(run.by_type("deepseek:api_gateway:ApiGateway")) == 1
    assert all(m.inputs["apiKeyRequired"] is True for m in run.by_type(METHOD))
    by_urn = run.by_urn()
    inventory, _, _ = inventory_for(stack)
    for model in inventory.models:
        link = run.one(f"{T}vpcLink:VpcLink", f"gateway-link-{model.name}")
        targets = {by_urn[u].name for u in link.property_dependencies["targetArn"]}
        assert targets == {f"{model.name}-lb-nlb"}
    assert set(GATEWAY_OUTPUTS) <= set(run.outputs)
    assert run.outputs["api_key_values"][mock_engine.SECRET_SIG_KEY] == mock_engine.SECRET_SIG


def test_the_program_exports_what_the_smoke_test_and_clients_read():
    from tests.stack_runs import run_with_inventory

    run = run_with_inventory("dev", lambda inv: None, preview=False)
    outputs = run.outputs
    assert outputs["served_models"] == ["r1-qwen-7b", "r1-qwen-1-5b-gguf"]
    assert outputs["tier_limits"] == {"standard": {"rate": 0.35, "burst": 4, "priority": 0}}
    assert outputs["smoke_tier_limits"] == {"rate": 0.35, "burst": 4, "priority": 0}
    assert outputs["max_request_bytes"] == 16384 * 8 + 64 * 1024
    assert outputs["stage_name"] == "v1"
    base = outputs["api_endpoint"]
    assert outputs["model_endpoints"] == {m: f"{base}/{m}/v1" for m in outputs["served_models"]}
    smoke = run.one(API_KEY, "gateway-key-smoke")
    assert outputs["smoke_api_key_id"] == outputs["api_key_ids"]["smoke"]
    assert smoke.inputs["value"][mock_engine.SECRET_SIG_KEY] == mock_engine.SECRET_SIG


def test_a_tier_the_models_cannot_serve_fails_the_preview():
    from tests.stack_runs import run_with_inventory

    with pytest.raises(Exception) as raised:
        run_with_inventory("dev", lambda inv: inv["gateway"]["tiers"][0].update(burst=5000))
    message = str(raised.value)
    assert "gateway.tiers[0]" in message and "burst" in message
