"""The public face of the service: one regional REST API that authenticates and meters every call.

Routes. Per model a path prefix `/{model}/v1`, so a client's OpenAI SDK uses the base URL
`<api_endpoint>/<model>/v1` (stack output `model_endpoints`). Under it: `{proxy+}` (ANY)
and explicit `POST chat/completions`, `POST completions`, `GET models`, which get their
own metrics and throttles. Each integration calls `https://<internal host>/v1/...` only,
so the runtimes' unauthenticated routes (`/health`, `/metrics`, `/tokenize`, `/pause`, ...)
are unreachable through the gateway; nothing is mounted at the root, and a request for
any other path gets the 404 gateway response. Every method has `api_key_required=True`,
plus the Cognito or Lambda authorizer when the inventory names one; a Cognito method
requires the inventory's scopes, so only access tokens granted one of them pass.

Integrations. HTTP_PROXY over a VPC link (v1) to the model's internal NLB, HTTPS with the
internal certificate's host name in the URI (it sets Host and the name verified; the
link, not DNS, picks the NLB). `response_transfer_mode` is STREAM when the inventory
streams (SSE tokens as generated, up to 15 minutes, idle timeout 5 minutes on regional endpoints:
https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html) and BUFFERED otherwise:
once STREAM was set, going back needs an explicit BUFFERED (pulumi-aws v7
`Integration.response_transfer_mode`). The integration replaces the client's
`Authorization` header with a placeholder, so client credentials never reach a model
server, and holds no backend credential of its own (docs/BACKEND_AUTH.md: the network is
the runtime's boundary); it passes the gateway's request id as `X-Request-Id`.

Deployments. `aws.apigateway.Deployment` in v7 is a snapshot with no stage; the Stage
points at it. The snapshot is retaken when `triggers` change: `redeployment` hashes the
definitions of every route, method, integration and gateway response as this program
passes them (known at preview, so a route change shows as a replace in the plan);
`connections` hashes the VPC link ids (a replaced link is a changed integration).

Logging. Access logs (JSON: request id, API key id, status, latencies, sizes; never
bodies) to an encrypted group. Execution logging stays at ERROR with data trace off:
data trace logs request and response bodies (prompts and completions), and INFO logs
every request's execution trace; ERROR keeps integration and authorizer failures
(AWS "Set up CloudWatch logging for REST APIs"). The execution log group API Gateway
writes to is created here first, so it is encrypted and expires like the others.
Logging needs the per-region account setting `aws.apigateway.Account` with a CloudWatch
role: it is one per account and region, so exactly one stack there manages it (inventory
`account_settings.manage`) and the others rely on it (`_create_logging_account`).

Stages. One stage every tier shares (`gateway.stage_name`), or with `gateway.stage_per_tier`
one per tier, named after it, each in its tier's usage plan only: a key is admitted only on
the stages of its plans, so the stage proves the tier. Each tier stage carries its priority
as a stage variable that every integration maps into `X-DeepSeek-Priority`, and the resource
policy confines each tier stage to the tier's networks (docs/GATEWAY.md, "Stages"). One
deployment serves every stage; access logs share one group and record `$context.stage`.

Throttles. Usage plans (one per tier) meter each key; stage method throttling caps what
all keys together send to a model, because per-key limits add up across keys. API Gateway
applies a method setting to each method on its own, so a model's capacity
(`gateway_throttles`, from components/serving/sizing.py) is split across the methods that can
generate (`route_throttles`): together they never exceed what the replicas serve.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import PROJECT, Authorizer as AuthorizerSettings
from components.config import Gateway as GatewaySettings
from components.config import Inventory, Model, SecretRef, stack_file_for
from components.gateway.responses import GatewayResponseSpec, render_gateway_responses
from components.gateway.waf import GatewayWaf, GatewayWafArgs
from components.iam import service_trust_policy_json
from components.serving.priority_middleware import PRIORITY_HEADER

# API Gateway's payload limit: nothing larger can arrive (REST API quotas, "Payload size":
# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html#api-gateway-execution-service-limits-table).
GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024
# Account-level burst ceiling for API Gateway method throttling.
MAX_BURST = 5000
INTEGRATION_PORT = 443
SMOKE_CLIENT = "smoke"
# PRIORITY_HEADER: the header the gateway sets to the caller's tier priority, defined by
# the vLLM middleware that moves it into the body's `priority` field (one name, two halves).
PRIORITY_STAGE_VARIABLE = "priority"

# Access log record: metadata only. `$context.identity.apiKey` (the key itself) and any
# `$input`/body variable must never appear here.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "apiKeyId": "$context.identity.apiKeyId",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "principal": "$context.authorizer.principalId",
    # The caller's identity claims from a Cognito access token (who, through which app
    # client, with which scopes): "-" for API-key-only callers. API Gateway access log
    # variables, $context.authorizer.claims.<name>.
    "callerSub": "$context.authorizer.claims.sub",
    "callerClientId": "$context.authorizer.claims.client_id",
    "callerScope": "$context.authorizer.claims.scope",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integration.status",
    "errorType": "$context.error.responseType",
    "errorMessage": "$context.error.message",
    "wafStatus": "$context.waf.status",
    # Observability (components/observability.py): the API id is the dimension of the metrics
    # filtered from this log (429s, time to first byte), so two stacks in one account never
    # share them; for a streamed response integrationLatency is the whole generation and
    # timeToFirstContent the model's time to first token (AWS "Troubleshoot issues with
    # response streaming in API Gateway", access log variables).
    "apiId": "$context.apiId",
    "responseTransferMode": "$context.integration.responseTransferMode",
    "timeToFirstContent": "$context.integration.timeToFirstContent",
}


def access_log_format(with_stage: bool = False) -> str:
    """One JSON object per request; every value quoted so "-" placeholders stay valid JSON.

    With a stage per tier the stages share one log group, so each record names its stage
    (the caller's tier)."""
    fields = {**ACCESS_LOG_FIELDS, "stage": "$context.stage"} if with_stage else ACCESS_LOG_FIELDS
    return json.dumps(fields, separators=(",", ":"))


# --------------------------------------------------------------------------- plain data


@dataclass
class Backend:
    """One model's internal load balancer, as the gateway reaches it."""

    model_name: str
    nlb_arn: pulumi.Input[str]
    # The name the NLB certificate covers (inventory load_balancer.certificate.internal_domain).
    host: str
    port: int = INTEGRATION_PORT
    # True for a private-CA certificate, which API Gateway does not trust; expiry and
    # host name are still verified (AWS TlsConfig.insecureSkipVerification).
    skip_tls_verification: bool = False
    # {max_context, max_input_tokens, max_output_tokens} of one request (stack output model_limits).
    request_limits: Optional[dict[str, int]] = None
    # The model's runtime schedules by priority (inventory scheduling_policy: priority).
    priority_scheduling: bool = False


@dataclass(frozen=True)
class ThrottleLimits:
    rate: float
    burst: int


@dataclass(frozen=True)
class ThrottlePlan:
    """Stage method throttling: all models together, and each model's routes."""

    stage: ThrottleLimits
    per_model: Mapping[str, ThrottleLimits]


@dataclass(frozen=True)
class Route:
    """One method of the API and the backend path it proxies to."""

    model: str
    # Path parts below the API root, e.g. ("r1", "v1", "{proxy+}").
    parts: tuple[str, ...]
    http_method: str
    # Backend path below the host, with {proxy} where the proxy parameter goes.
    backend_path: str

    @property
    def resource_path(self) -> str:
        return "/" + "/".join(self.parts)

    @property
    def method_path(self) -> str:
        """The MethodSettings key: resource path without its leading slash, then the method."""
        return f"{self.resource_path.lstrip('/')}/{self.http_method}"

    @property
    def is_proxy(self) -> bool:
        return self.parts[-1] == "{proxy+}"

    @property
    def slug(self) -> str:
        tail = "-".join(p.strip("{}+") for p in self.parts[2:]) or "root"
        return f"{self.model}-{tail}-{self.http_method.lower()}"


# Explicit routes worth their own metrics and throttles; everything else under /v1 goes
# through {proxy+}.
EXPLICIT_ROUTES = (
    (("chat", "completions"), "POST"),
    (("completions",), "POST"),
    (("models",), "GET"),
)


def routes_for(model_names: Sequence[str]) -> list[Route]:
    routes: list[Route] = []
    for model in model_names:
        routes.append(Route(model, (model, "v1", "{proxy+}"), "ANY", "/v1/{proxy}"))
        for parts, method in EXPLICIT_ROUTES:
            routes.append(Route(model, (model, "v1") + parts, method, "/v1/" + "/".join(parts)))
    return routes


def request_metric_dimensions(rest_api_name: Any, stage_name: Any, model: str) -> list[dict]:
    """Per route of `model` (and per stage, when `stage_name` is a list of stages), the
    dimensions its AWS/ApiGateway Count carries (detailed metrics are on for every method:
    _create_method_settings). Method-level metrics always carry the Stage dimension, so a
    model's requests across tier stages are the sum of one series per stage and route."""
    stages = list(stage_name) if isinstance(stage_name, (list, tuple)) else [stage_name]
    return [{"ApiName": rest_api_name, "Stage": stage, "Resource": route.resource_path,
             "Method": route.http_method} for stage in stages for route in routes_for([model])]


# ------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class StageSpec:
    """One API stage and who reaches it."""

    # The tier whose stage this is; None for the one stage every tier shares.
    tier: Optional[str]
    stage_name: str
    # The priority the stage sends in PRIORITY_HEADER (a stage variable); None: no variable.
    priority: Optional[int]
    # Source networks of this stage's own allow-list (on top of the stack-wide one).
    allowed_source_cidrs: tuple[str, ...]
    # This stage's share of every model's capacity (its method throttles).
    capacity_share: float


def stage_specs(settings: GatewaySettings) -> list[StageSpec]:
    """The stages of the API: one shared by every tier, or one per tier named after it.

    Per tier, a usage plan lists only its own stage, so a key works on its tier's stage and
    gets 403 on any other: the stage proves the tier, and what a stage does (priority
    header, source networks) is the tier's. Stage method throttles cap all keys together at
    what the models serve; split across tier stages in proportion to the tiers' rates, the
    stages together still never exceed it.
    """
    if not settings.stage_per_tier:
        return [StageSpec(tier=None, stage_name=settings.stage_name, priority=None,
                          allowed_source_cidrs=(), capacity_share=1.0)]
    total = sum(t.rate_per_second for t in settings.tiers)
    return [StageSpec(tier=t.name, stage_name=t.name, priority=t.priority,
                      allowed_source_cidrs=tuple(sorted(str(c) for c in t.allowed_source_cidrs)),
                      capacity_share=t.rate_per_second / total)
            for t in settings.tiers]


def primary_tier(settings: GatewaySettings) -> str:
    """The tier whose endpoint the single-URL outputs name: the smoke client's, else the first."""
    smoke = next((c for c in settings.clients if c.name == SMOKE_CLIENT), None)
    return smoke.tier if smoke else settings.tiers[0].name


def priority_header_source(settings: GatewaySettings, backends: Sequence["Backend"]) -> Optional[str]:
    """What the integrations put in PRIORITY_HEADER, or None when nothing schedules by it.

    With a stage per tier: the stage's `priority` variable, so each tier's requests carry
    their own tier's priority. On one shared stage the gateway cannot tell tiers apart, so
    it sends the one priority every tier shares (the inventory refuses tiers that differ
    while a model schedules by priority), and only when a model does: a stack without
    priority scheduling keeps its integrations as they were. The mapping is the gateway's,
    set on the integration request from a stage variable or a literal (AWS "Parameter
    mapping source reference for REST APIs": stageVariables.name, 'static value').
    """
    if settings.stage_per_tier:
        return f"stageVariables.{PRIORITY_STAGE_VARIABLE}"
    if any(b.priority_scheduling for b in backends):
        return f"'{settings.tiers[0].priority}'"
    return None


def scaled_throttles(plan: "ThrottlePlan", share: float) -> "ThrottlePlan":
    """A stage's part of the stage throttles: every limit times `share`, never below API
    Gateway's smallest useful values (0.01 req/s, a burst of 1), since 0 would refuse all."""
    def scale(limits: ThrottleLimits) -> ThrottleLimits:
        if share >= 1:
            return limits
        return ThrottleLimits(rate=max(0.01, _floor2(limits.rate * share)),
                              burst=max(1, int(limits.burst * share)))

    return ThrottlePlan(stage=scale(plan.stage), per_model={m: scale(t) for m, t in plan.per_model.items()})


def authorization_type(authorizer: Optional[AuthorizerSettings]) -> str:
    if authorizer is None:
        return "NONE"
    return "COGNITO_USER_POOLS" if authorizer.type == "cognito" else "CUSTOM"


def backend_uri(backend: Backend, route: Route) -> str:
    port = "" if backend.port == INTEGRATION_PORT else f":{backend.port}"
    return f"https://{backend.host}{port}{route.backend_path}"


def authorization_scopes(authorizer: Optional[AuthorizerSettings]) -> Optional[list[str]]:
    """The scopes a Cognito-authorized method requires, None for other authorizations.

    With scopes set, API Gateway accepts only an access token carrying one of them and
    refuses the pool's ID tokens (AWS "Integrate a REST API with an Amazon Cognito user pool":
    https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-enable-cognito-user-pool.html).
    The inventory refuses a cognito authorizer without scopes.
    """
    if authorizer is None or authorizer.type != "cognito":
        return None
    return list(authorizer.scopes)


def method_definition(route: Route, authorization: str, scopes: Optional[Sequence[str]] = None) -> dict:
    definition = {
        "http_method": route.http_method,
        "authorization": authorization,
        "api_key_required": True,
        "request_parameters": {"method.request.path.proxy": True} if route.is_proxy else {},
    }
    if scopes:
        definition["authorization_scopes"] = list(scopes)
    return definition


def integration_definition(route: Route, backend: Backend, settings: GatewaySettings,
                           priority_source: Optional[str] = None) -> dict:
    """The integration as data. No credential travels to the runtime: the client's own
    Authorization header is replaced by a placeholder so caller tokens never reach it, and
    the gateway holds no static backend key (docs/BACKEND_AUTH.md). `priority_source` is
    what PRIORITY_HEADER carries (priority_header_source)."""
    parameters = {"integration.request.header.X-Request-Id": "context.requestId"}
    if route.is_proxy:
        parameters["integration.request.path.proxy"] = "method.request.path.proxy"
    parameters["integration.request.header.Authorization"] = "'none'"
    if priority_source is not None:
        parameters[f"integration.request.header.{PRIORITY_HEADER}"] = priority_source
    return {
        "type": "HTTP_PROXY",
        "integration_http_method": route.http_method,
        "connection_type": "VPC_LINK",
        "uri": backend_uri(backend, route),
        "request_parameters": parameters,
        "response_transfer_mode": "STREAM" if settings.streaming else "BUFFERED",
        "timeout_milliseconds": settings.integration_timeout_ms,
        "tls_config": {"insecure_skip_verification": backend.skip_tls_verification},
    }


def definition_hash(document: Any) -> str:
    """sha256 of canonical JSON: the same definitions always give the same hash."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def api_definition(settings: GatewaySettings, backends: Sequence[Backend],
                   responses: Sequence[GatewayResponseSpec]) -> dict:
    """Everything a deployment snapshots, as plain data (the `redeployment` trigger input)."""
    by_model = {b.model_name: b for b in backends}
    authorization = authorization_type(settings.authorizer)
    scopes = authorization_scopes(settings.authorizer)
    routes = routes_for([b.model_name for b in backends])
    priority_source = priority_header_source(settings, backends)
    return {
        "authorizer": settings.authorizer.model_dump() if settings.authorizer else None,
        "routes": [
            {"resource_path": r.resource_path,
             "method": method_definition(r, authorization, scopes),
             "integration": integration_definition(r, by_model[r.model], settings, priority_source)}
            for r in routes
        ],
        "gateway_responses": [spec.definition() for spec in responses],
        # A resource policy takes effect only with a new deployment.
        "resource_policy": gateway_resource_policy(settings),
    }


# ------------------------------------------------------------------- derived settings


def source_ip_policy(allowed_cidrs: Sequence[Any],
                     stage_cidrs: Optional[Mapping[str, Sequence[Any]]] = None) -> Optional[dict]:
    """The REST API resource policy of the IP allow-lists, or None without any.

    API Gateway evaluates a resource policy before the API key and usage plan, so a caller
    outside the listed networks gets 403 whatever key it holds (AWS "Example: Deny API
    traffic based on source IP address or range"). `execute-api:/*` is every stage, method
    and path of this API; `execute-api:/<stage>/*/*` every method and path of one stage
    (AWS "API Gateway resource policy examples": the short form `execute-api:/stage-name/
    GET/pets` becomes `arn:aws:execute-api:<region>:<account>:<api-id>/stage-name/GET/pets`).
    A resource policy cannot tell which key a request uses, but with a stage per tier the
    stage is the tier: `stage_cidrs` ({stage: networks}) confine each tier's stage on top
    of the stack-wide list. The allow statement only lets the other checks run: the API
    key stays required on every method.
    """
    stage_cidrs = {stage: cidrs for stage, cidrs in (stage_cidrs or {}).items() if cidrs}
    if not allowed_cidrs and not stage_cidrs:
        return None
    invoke = {"Principal": "*", "Action": "execute-api:Invoke"}
    statements: list[dict] = [{"Sid": "KeysAreCheckedNext", "Effect": "Allow", **invoke,
                               "Resource": "execute-api:/*"}]
    if allowed_cidrs:
        statements.append({"Sid": "OnlyFromAllowedNetworks", "Effect": "Deny", **invoke,
                           "Resource": "execute-api:/*",
                           "Condition": {"NotIpAddress": {"aws:SourceIp": sorted(str(c) for c in allowed_cidrs)}}})
    for index, (stage, cidrs) in enumerate(stage_cidrs.items()):
        # Sids are letters and digits only; the index keeps them unique.
        statements.append({"Sid": f"Stage{index}OnlyFromItsTierNetworks", "Effect": "Deny", **invoke,
                           "Resource": f"execute-api:/{stage}/*/*",
                           "Condition": {"NotIpAddress": {"aws:SourceIp": sorted(str(c) for c in cidrs)}}})
    return {"Version": "2012-10-17", "Statement": statements}


def gateway_resource_policy(settings: GatewaySettings) -> Optional[dict]:
    """The stack-wide allow-list and, with a stage per tier, each tier's own."""
    return source_ip_policy(settings.allowed_source_cidrs,
                            {spec.stage_name: spec.allowed_source_cidrs for spec in stage_specs(settings)})


def derive_max_request_bytes(settings: GatewaySettings, models: Sequence[Model]) -> int:
    """The body size limit: the inventory's, or what the longest context can need.

    Derived with the runtimes' own rule (components/serving/runtimes.py `request_bytes_for`: 8
    bytes per token, enough for JSON-escaped non-ASCII text, plus a 64 KiB envelope for
    the chat structure), over the largest `max_context`, capped at API Gateway's 10 MB.
    """
    if settings.max_request_bytes is not None:
        return settings.max_request_bytes
    from components.serving.runtimes import request_bytes_for

    return min(GATEWAY_PAYLOAD_LIMIT, max(request_bytes_for(m.max_context) for m in models))


class ThrottleError(ValueError):
    """Gateway throttles the models cannot serve; the message names key, value and fix."""


# Inventory runtime_overrides keys -> the flag names components/serving/sizing.py plans with.
_SIZING_FLAGS = {
    "max_model_len": "--max-model-len", "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "tensor_parallel_size": "--tensor-parallel-size",
    "max_input_tokens": "--max-input-tokens", "max_total_tokens": "--max-total-tokens",
    "max_batch_prefill_tokens": "--max-batch-prefill-tokens",
    "max_batch_total_tokens": "--max-batch-total-tokens",
    "max_concurrent_requests": "--max-concurrent-requests",
    "num_parallel": "OLLAMA_NUM_PARALLEL", "max_queue": "OLLAMA_MAX_QUEUE",
    "context_length": "OLLAMA_CONTEXT_LENGTH",
}
_SIZING_QUANTIZATION = {"none": None, "q4_k_m": "gguf_q4_k_m", "q8_0": "gguf_q8_0"}


def model_plan(inventory: Inventory, model: Model, stack: str):
    """components/serving/sizing.py's plan for one replica of an inventory model."""
    from components.serving import catalog, sizing
    from components.serving.workload import resolve_workload

    spec = next((s for s in catalog.MODELS.values() if s.hf_repo == model.hf_repo), None)
    if spec is None:
        raise ThrottleError(
            f"{stack_file_for(stack)}: model {model.name} ({model.hf_repo}) is not in the sizing "
            f"catalog, so its capacity (and the gateway throttle it allows) is unknown; add it to "
            f"components/serving/catalog.py")
    return sizing.plan_runtime(
        spec, catalog.get_instance(inventory.gpu_instance_type(model)), runtime=model.runtime,
        max_context=model.max_context,
        quantization=_SIZING_QUANTIZATION.get(model.quantization, model.quantization),
        tensor_parallel=model.tensor_parallel, gpu_memory_utilization=model.gpu_memory_utilization,
        overrides={_SIZING_FLAGS[k]: v for k, v in model.runtime_overrides.items()},
        stack=stack, model_name=model.name, workload=resolve_workload(model, spec),
        pipeline_parallel=model.pipeline_parallel, data_parallel=model.data_parallel,
        expert_parallel=model.expert_parallel)


def _floor2(value: float) -> float:
    return math.floor(value * 100) / 100


def gateway_throttles(inventory: Inventory, stack: str, plans: Optional[Sequence[Any]] = None) -> ThrottlePlan:
    """Check every tier against the models' capacity and derive the stage throttles.

    A tier's rate and burst apply to each key on its own; a single key must not be able
    to ask for more than all replicas together serve (components/serving/sizing.py
    `check_throttle`: rate <= sum of capacity_rps x max_replicas, burst <= requests
    accepted at once). The stage throttle per model is that model's capacity, so the sum
    of many keys still cannot overrun one model. Raises ThrottleError naming the tier.
    """
    from components.serving import sizing

    plans = list(plans) if plans is not None else [model_plan(inventory, m, stack) for m in inventory.models]
    replicas = [m.max_replicas for m in inventory.models]
    key = "deepseek-serving:inventory.gateway.tiers"
    for index, tier in enumerate(inventory.gateway.tiers):
        try:
            sizing.check_throttle(plans, replicas=replicas, rate=tier.rate_per_second, burst=tier.burst)
        except sizing.SizingError as error:
            raise ThrottleError(
                f"{stack_file_for(stack)}: invalid inventory\n  {key}[{index}] ({tier.name}, "
                f"rate_per_second {tier.rate_per_second:g}, burst {tier.burst}): {error}") from None
    per_model = {
        model.name: ThrottleLimits(rate=_floor2(plan.capacity_rps * model.max_replicas),
                                   burst=min(MAX_BURST, plan.max_inflight_requests * model.max_replicas))
        for model, plan in zip(inventory.models, plans)
    }
    total = ThrottleLimits(rate=_floor2(sum(t.rate for t in per_model.values())),
                           burst=min(MAX_BURST, sum(t.burst for t in per_model.values())))
    return ThrottlePlan(stage=total, per_model=per_model)


def route_throttles(routes: Sequence[Route], per_model: dict[str, ThrottleLimits]) -> dict[str, ThrottleLimits]:
    """Method throttles whose sum per model stays within the model's capacity.

    Every method but a model listing can start a generation (the proxy route forwards any
    /v1 path), so they split the capacity evenly; listing models costs no GPU time, so
    GET .../models gets the model's whole rate on its own.
    """
    limits: dict[str, ThrottleLimits] = {}
    for model, capacity in per_model.items():
        mine = [r for r in routes if r.model == model]
        generating = [r for r in mine if not (r.http_method == "GET" and r.parts[-1] == "models")]
        for route in mine:
            if route in generating:
                limits[route.method_path] = ThrottleLimits(
                    rate=_floor2(capacity.rate / len(generating)),
                    burst=max(1, capacity.burst // len(generating)))
            else:
                limits[route.method_path] = capacity
    return limits


# -------------------------------------------------------------------------- component


@dataclass
class ApiGatewayArgs:
    settings: GatewaySettings
    backends: Sequence[Backend]
    max_request_bytes: int
    throttles: ThrottlePlan
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    region: str
    account_id: pulumi.Input[str]
    partition: str = "aws"
    # A model may have no replica (scaled to zero): 503s say so and ask for a longer wait.
    cold_start_possible: bool = False
    # Inventory account_settings.manage: this stack sets the region's CloudWatch role for API
    # Gateway; otherwise it relies on the one the managing stack set.
    manage_account_settings: bool = True


class ApiGateway(pulumi.ComponentResource):
    rest_api_id: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    stage_arn: pulumi.Output[str]
    api_endpoint: pulumi.Output[str]
    model_endpoints: pulumi.Output[dict]
    served_models: list[str]
    api_key_ids: dict[str, pulumi.Output[str]]
    api_key_values: pulumi.Output[dict]
    smoke_api_key_id: Optional[pulumi.Output[str]]
    tier_limits: dict[str, dict]
    smoke_tier_limits: Optional[dict]
    max_request_bytes: int
    web_acl_arn: pulumi.Output[str]
    redeployment_hash: str

    def __init__(self, name: str, args: ApiGatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:api_gateway:ApiGateway", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        self._args = args
        settings = args.settings
        if not args.backends:
            raise ValueError("ApiGateway needs at least one backend")
        self.served_models = [b.model_name for b in args.backends]
        self.max_request_bytes = args.max_request_bytes

        responses = render_gateway_responses(
            max_request_bytes=args.max_request_bytes,
            integration_timeout_ms=settings.integration_timeout_ms, streaming=settings.streaming,
            cold_start_possible=args.cold_start_possible)
        self.redeployment_hash = definition_hash(api_definition(settings, args.backends, responses))

        self.rest_api = aws.apigateway.RestApi(
            f"{name}-api",
            description="DeepSeek models, OpenAI-compatible: /{model}/v1/...",
            endpoint_configuration={"types": "REGIONAL"},
            api_key_source="HEADER",
            # A custom domain is the only entry point once configured.
            disable_execute_api_endpoint=settings.domain is not None,
            # TLS 1.2+ on the default endpoint too (a legacy policy: no endpoint access mode
            # needed; AWS "Security policies for REST APIs in API Gateway").
            security_policy="TLS_1_2",
            opts=self._child,
        )
        authorizer_id = self._create_authorizer(settings.authorizer, args)
        methods, integrations = self._create_routes(args, authorizer_id)
        policy_document = gateway_resource_policy(settings)
        if policy_document is not None:
            methods.append(aws.apigateway.RestApiPolicy(
                f"{name}-source-ip-policy", rest_api_id=self.rest_api.id,
                policy=json.dumps(policy_document), opts=self._child))
        gateway_responses = [
            aws.apigateway.Response(
                f"{name}-response-{spec.response_type.lower().replace('_', '-')}",
                rest_api_id=self.rest_api.id,
                response_type=spec.response_type,
                status_code=spec.status_code,
                response_parameters=spec.response_parameters,
                response_templates=spec.response_templates,
                opts=self._child,
            )
            for spec in responses
        ]

        self.deployment = aws.apigateway.Deployment(
            f"{name}-deployment",
            rest_api=self.rest_api.id,
            description="snapshot of routes, integrations and gateway responses",
            triggers={
                "redeployment": self.redeployment_hash,
                "connections": pulumi.Output.all(*[link.id for link in self._vpc_links.values()])
                .apply(lambda ids: definition_hash(list(ids))),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=methods + integrations + gateway_responses),
        )

        account_settings = self._create_logging_account(args)
        self.access_log_group = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_key_arn, opts=self._child)
        self.stage_specs = stage_specs(settings)
        # Stage name -> Stage. The single shared stage keeps its original logical name.
        self.stages: dict[str, aws.apigateway.Stage] = {}
        for spec in self.stage_specs:
            self.stages[spec.stage_name] = aws.apigateway.Stage(
                f"{name}-stage" if spec.tier is None else f"{name}-stage-{spec.tier}",
                rest_api=self.rest_api.id,
                deployment=self.deployment.id,
                stage_name=spec.stage_name,
                # The stage's own priority, mapped into PRIORITY_HEADER by every integration.
                variables=({PRIORITY_STAGE_VARIABLE: str(spec.priority)} if spec.priority is not None else None),
                xray_tracing_enabled=settings.xray_tracing,
                access_log_settings={"destination_arn": self.access_log_group.arn,
                                     "format": access_log_format(with_stage=settings.stage_per_tier)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=account_settings),
            )
        primary = primary_tier(settings)
        primary_spec = next(s for s in self.stage_specs if s.tier in (None, primary))
        self.stage = self.stages[primary_spec.stage_name]
        for spec in self.stage_specs:
            suffix = "" if spec.tier is None else f"-{spec.tier}"
            stage = self.stages[spec.stage_name]
            # API Gateway writes execution logs to this fixed name (one per stage); creating
            # it first keeps them encrypted and expiring.
            execution_logs = aws.cloudwatch.LogGroup(
                f"{name}-execution-logs{suffix}",
                name=pulumi.Output.concat("API-Gateway-Execution-Logs_", self.rest_api.id, "/",
                                          spec.stage_name),
                retention_in_days=args.log_retention_days, kms_key_id=args.logs_key_arn,
                opts=self._child)
            self._create_method_settings(args, stage, execution_logs, suffix,
                                         scaled_throttles(args.throttles, spec.capacity_share))

        self._create_metering(args)
        self.stage_endpoints = self._create_domain(settings)
        self.api_endpoint = self.stage_endpoints[primary_spec.stage_name]
        self.waf = GatewayWaf(
            f"{name}-waf",
            GatewayWafArgs(settings=settings.waf, max_request_bytes=args.max_request_bytes,
                           resource_arn=self.stage.arn, logs_key_arn=args.logs_key_arn,
                           log_retention_days=args.log_retention_days, region=args.region,
                           account_id=args.account_id, partition=args.partition,
                           stage_arns=({s.tier: self.stages[s.stage_name].arn for s in self.stage_specs}
                                       if settings.stage_per_tier else None),
                           refused_headers=((PRIORITY_HEADER.lower(),)
                                            if priority_header_source(settings, args.backends) else ())),
            opts=self._child,
        )

        self.rest_api_id = self.rest_api.id
        self.stage_name = self.stage.stage_name
        self.stage_arn = self.stage.arn
        self.web_acl_arn = self.waf.web_acl_arn
        self.model_endpoints = self._model_urls(self.api_endpoint)
        # Per tier, the base URL of each model on the tier's own stage (stage_per_tier only).
        self.tier_endpoints: Optional[pulumi.Output[dict]] = None
        if settings.stage_per_tier:
            self.tier_endpoints = pulumi.Output.all(**{
                spec.tier: self._model_urls(self.stage_endpoints[spec.stage_name]) for spec in self.stage_specs})
        self.register_outputs({
            "rest_api_id": self.rest_api_id,
            "stage_name": self.stage_name,
            "api_endpoint": self.api_endpoint,
            "model_endpoints": self.model_endpoints,
            "served_models": self.served_models,
            "api_key_ids": self.api_key_ids,
            "api_key_values": self.api_key_values,
            "tier_limits": self.tier_limits,
            "max_request_bytes": self.max_request_bytes,
            "web_acl_arn": self.web_acl_arn,
            **({"tier_endpoints": self.tier_endpoints} if self.tier_endpoints is not None else {}),
        })

    def _model_urls(self, base: pulumi.Input[str]) -> pulumi.Output[dict]:
        return pulumi.Output.from_input(base).apply(
            lambda url: {model: f"{url.rstrip('/')}/{model}/v1" for model in self.served_models})

    @property
    def metric_stage(self) -> Optional[pulumi.Output[str]]:
        """The Stage dimension of stage-wide metrics, or None when tiers have stages of their
        own: AWS/ApiGateway also publishes every metric per ApiName alone, which then sums
        (or for latencies, pools) all stages ("Amazon API Gateway dimensions and metrics")."""
        return None if self._args.settings.stage_per_tier else self.stage_name

    @property
    def stage_names(self) -> list[pulumi.Output[str]]:
        """Every stage's name (the Stage dimension of method-level metrics)."""
        return [stage.stage_name for stage in self.stages.values()]

    def stack_outputs(self) -> dict[str, Any]:
        """The stack outputs clients and tools/smoke rely on (names documented in docs/CLIENTS.md).

        Key values only ever as one secret output (`pulumi stack output --show-secrets`).
        With a stage per tier, api_endpoint, model_endpoints and stage_name are the smoke
        client's tier's (else the first tier's); tier_endpoints has every tier's."""
        outputs = {
            "api_endpoint": self.api_endpoint,
            "model_endpoints": self.model_endpoints,
            "served_models": self.served_models,
            "rest_api_id": self.rest_api_id,
            "stage_name": self.stage_name,
            "tier_limits": self.tier_limits,
            "max_request_bytes": self.max_request_bytes,
            # The longest request each model accepts: the smoke test's worst case, and clients'.
            "model_limits": {b.model_name: b.request_limits for b in self._args.backends if b.request_limits},
            "api_key_ids": self.api_key_ids,
            "api_key_values": self.api_key_values,
        }
        if self.tier_endpoints is not None:
            outputs["tier_endpoints"] = self.tier_endpoints
        if self.smoke_api_key_id is not None:
            outputs.update(smoke_api_key_id=self.smoke_api_key_id, smoke_tier_limits=self.smoke_tier_limits)
            if self.tier_endpoints is not None:
                outputs["smoke_tier"] = self.smoke_tier
        return outputs

    # ------------------------------------------------------------------ routes

    def _create_authorizer(self, settings: Optional[AuthorizerSettings],
                           args: ApiGatewayArgs) -> Optional[pulumi.Output[str]]:
        if settings is None:
            return None
        name = self._name
        if settings.type == "cognito":
            authorizer = aws.apigateway.Authorizer(
                f"{name}-authorizer",
                rest_api=self.rest_api.id,
                type="COGNITO_USER_POOLS",
                provider_arns=list(settings.user_pool_arns),
                identity_source="method.request.header.Authorization",
                opts=self._child,
            )
            return authorizer.id
        function_arn = settings.function_arn
        authorizer = aws.apigateway.Authorizer(
            f"{name}-authorizer",
            rest_api=self.rest_api.id,
            type="TOKEN",
            authorizer_uri=(f"arn:{args.partition}:apigateway:{args.region}:lambda:path/2015-03-31/"
                            f"functions/{function_arn}/invocations"),
            identity_source="method.request.header.Authorization",
            authorizer_result_ttl_in_seconds=300,
            opts=self._child,
        )
        # API Gateway may invoke the function only as this API's authorizer.
        aws.lambda_.Permission(
            f"{name}-authorizer-invoke",
            action="lambda:InvokeFunction",
            function=function_arn,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(self.rest_api.execution_arn, "/authorizers/", authorizer.id),
            opts=self._child,
        )
        return authorizer.id

    def _create_routes(self, args: ApiGatewayArgs, authorizer_id: Optional[pulumi.Output[str]]):
        name = self._name
        settings = args.settings
        authorization = authorization_type(settings.authorizer)
        scopes = authorization_scopes(settings.authorizer)
        resources: dict[tuple[str, ...], aws.apigateway.Resource] = {}

        def resource_for(parts: tuple[str, ...]) -> aws.apigateway.Resource:
            if parts not in resources:
                parent_id = (self.rest_api.root_resource_id if len(parts) == 1
                             else resource_for(parts[:-1]).id)
                slug = "-".join(p.strip("{}+") for p in parts)
                resources[parts] = aws.apigateway.Resource(
                    f"{name}-path-{slug}", rest_api=self.rest_api.id, parent_id=parent_id,
                    path_part=parts[-1], opts=self._child)
            return resources[parts]

        self._vpc_links: dict[str, aws.apigateway.VpcLink] = {}
        by_model = {b.model_name: b for b in args.backends}
        for backend in args.backends:
            self._vpc_links[backend.model_name] = aws.apigateway.VpcLink(
                f"{name}-link-{backend.model_name}",
                description=f"API Gateway to the {backend.model_name} internal NLB",
                target_arn=backend.nlb_arn,
                opts=self._child,
            )

        methods: list[aws.apigateway.Method] = []
        integrations: list[aws.apigateway.Integration] = []
        priority_source = priority_header_source(settings, args.backends)
        self.routes = routes_for(self.served_models)
        for route in self.routes:
            resource = resource_for(route.parts)
            definition = method_definition(route, authorization, scopes)
            method = aws.apigateway.Method(
                f"{name}-method-{route.slug}",
                rest_api=self.rest_api.id,
                resource_id=resource.id,
                http_method=definition["http_method"],
                authorization=definition["authorization"],
                authorizer_id=authorizer_id,
                authorization_scopes=definition.get("authorization_scopes"),
                api_key_required=definition["api_key_required"],
                request_parameters=definition["request_parameters"] or None,
                opts=self._child,
            )
            backend = by_model[route.model]
            spec = integration_definition(route, backend, settings, priority_source)
            parameters: dict[str, pulumi.Input[str]] = dict(spec["request_parameters"])
            integrations.append(aws.apigateway.Integration(
                f"{name}-integration-{route.slug}",
                rest_api=self.rest_api.id,
                resource_id=resource.id,
                http_method=method.http_method,
                type=spec["type"],
                integration_http_method=spec["integration_http_method"],
                connection_type=spec["connection_type"],
                connection_id=self._vpc_links[route.model].id,
                uri=spec["uri"],
                request_parameters=parameters,
                response_transfer_mode=spec["response_transfer_mode"],
                timeout_milliseconds=spec["timeout_milliseconds"],
                tls_config=spec["tls_config"],
                opts=self._child,
            ))
            methods.append(method)
        return methods, integrations

    # ----------------------------------------------------------------- logging

    def _create_logging_account(self, args: ApiGatewayArgs) -> list[pulumi.Resource]:
        """The region's CloudWatch role for API Gateway, when this stack manages account settings.

        The setting is one per account and region: every stage there logs through it, whichever
        stack created it. Only the managing stack (inventory account_settings.manage) sets it;
        the others rely on it and must deploy after that stack. Deleting an
        `aws.apigateway.Account` resets the setting in pulumi-aws v7 (Terraform AWS provider 6
        removed reset_on_delete: "The destroy operation will now always reset the API Gateway
        account settings", version 6 upgrade guide), so the setting and its role are retained on
        delete: destroying the managing stack, or handing management to another stack, leaves
        the other stacks' logging working. Returns what the stage must wait for.
        """
        if not args.manage_account_settings:
            return []
        name = self._name
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            description="API Gateway pushes access and execution logs to CloudWatch Logs",
            # Pinned to this account: API Gateway assumes it for every API in the region.
            assume_role_policy=service_trust_policy_json("apigateway.amazonaws.com",
                                                         source_account=args.account_id),
            opts=retained,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-role-policy",
            role=role.name,
            policy_arn=(f"arn:{args.partition}:iam::aws:policy/service-role/"
                        "AmazonAPIGatewayPushToCloudWatchLogs"),
            opts=retained,
        )
        return [aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, depends_on=[attachment]),
        )]

    def _create_method_settings(self, args: ApiGatewayArgs, stage: aws.apigateway.Stage,
                                execution_logs: aws.cloudwatch.LogGroup, suffix: str,
                                throttles: ThrottlePlan) -> None:
        per_route = route_throttles(self.routes, throttles.per_model)
        name = f"{self._name}-method-settings{suffix}"

        def settings_for(limits: ThrottleLimits) -> dict:
            return {
                "metrics_enabled": True,
                # Data trace would log prompts and completions; INFO logs every request.
                "data_trace_enabled": False,
                "logging_level": "ERROR",
                "throttling_rate_limit": limits.rate,
                "throttling_burst_limit": limits.burst,
            }

        opts = pulumi.ResourceOptions(parent=self, depends_on=[execution_logs])
        aws.apigateway.MethodSettings(
            name,
            rest_api=self.rest_api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            settings=settings_for(throttles.stage),
            opts=opts,
        )
        # Each model's methods share what its replicas serve. The provider retries the
        # stage's ConflictException, so these need no chaining (hashicorp/terraform-
        # provider-aws#776, fixed in 3.24.0; #13497).
        for route in self.routes:
            limits = per_route.get(route.method_path)
            if limits is None:
                continue
            aws.apigateway.MethodSettings(
                f"{name}-{route.slug}",
                rest_api=self.rest_api.id,
                stage_name=stage.stage_name,
                method_path=route.method_path,
                settings=settings_for(limits),
                opts=opts,
            )

    # ---------------------------------------------------------------- metering

    def _client_key_value(self, client_name: str, ref: Optional[SecretRef]) -> Optional[pulumi.Input[str]]:
        if ref is None:
            return None  # API Gateway generates the key
        if ref.config is not None:
            # The inventory validated that this key is a secret of the stack.
            return pulumi.Config(PROJECT).require_secret(ref.config)
        version = aws.secretsmanager.get_secret_version_output(
            secret_id=ref.secrets_manager_arn, opts=pulumi.InvokeOutputOptions(parent=self))
        return pulumi.Output.secret(version.secret_string)

    def _create_metering(self, args: ApiGatewayArgs) -> None:
        name = self._name
        settings = args.settings
        plans: dict[str, aws.apigateway.UsagePlan] = {}
        self.tier_limits = {}
        for tier in settings.tiers:
            plans[tier.name] = aws.apigateway.UsagePlan(
                f"{name}-plan-{tier.name}",
                description=f"tier {tier.name}: {tier.rate_per_second:g} req/s, burst {tier.burst}, "
                            f"{tier.quota.limit} per {tier.quota.period.lower()}",
                # stage.stage_name (an output) orders the plan after the stage exists. With a
                # stage per tier, only the tier's own: its keys get 403 on every other stage.
                api_stages=[{"api_id": self.rest_api.id, "stage": self._stage_of(tier.name).stage_name}],
                throttle_settings={"rate_limit": tier.rate_per_second, "burst_limit": tier.burst},
                quota_settings={"limit": tier.quota.limit, "period": tier.quota.period},
                opts=self._child,
            )
            # priority: the body field this tier sends to priority-scheduled models (docs/GATEWAY.md).
            self.tier_limits[tier.name] = {"rate": tier.rate_per_second, "burst": tier.burst,
                                           "priority": tier.priority}

        self.api_key_ids = {}
        values: dict[str, pulumi.Output[str]] = {}
        for client in settings.clients:
            key = aws.apigateway.ApiKey(
                f"{name}-key-{client.name}",
                description=f"client {client.name}, tier {client.tier}",
                enabled=True,
                value=self._client_key_value(client.name, client.api_key),
                opts=self._child,
            )
            aws.apigateway.UsagePlanKey(
                f"{name}-plan-key-{client.name}",
                key_id=key.id,
                key_type="API_KEY",
                usage_plan_id=plans[client.tier].id,
                opts=self._child,
            )
            self.api_key_ids[client.name] = key.id
            values[client.name] = key.value
        # Key values leave the component only as one secret.
        self.api_key_values = pulumi.Output.secret(pulumi.Output.all(**values))
        smoke = next((c for c in settings.clients if c.name == SMOKE_CLIENT), None)
        self.smoke_api_key_id = self.api_key_ids[smoke.name] if smoke else None
        self.smoke_tier_limits = self.tier_limits[smoke.tier] if smoke else None
        self.smoke_tier = smoke.tier if smoke else None

    def _stage_of(self, tier: str) -> aws.apigateway.Stage:
        spec = next(s for s in self.stage_specs if s.tier in (None, tier))
        return self.stages[spec.stage_name]

    # ------------------------------------------------------------------ domain

    def _create_domain(self, settings: GatewaySettings) -> dict[str, pulumi.Output[str]]:
        """Each stage's base URL. Behind the custom domain the one shared stage is the
        domain's root; with a stage per tier each tier's stage is mapped at the base path of
        its name, so a tier's URL is https://<domain>/<tier> as on the default endpoint."""
        if settings.domain is None:
            return {stage_name: stage.invoke_url for stage_name, stage in self.stages.items()}
        name = self._name
        domain = aws.apigateway.DomainName(
            f"{name}-domain",
            domain_name=settings.domain.name,
            regional_certificate_arn=settings.domain.certificate_arn,
            endpoint_configuration={"types": "REGIONAL"},
            security_policy="TLS_1_2",
            opts=self._child,
        )
        endpoints: dict[str, pulumi.Output[str]] = {}
        for spec in self.stage_specs:
            stage = self.stages[spec.stage_name]
            if spec.tier is None:
                aws.apigateway.BasePathMapping(
                    f"{name}-base-path",
                    domain_name=domain.domain_name,
                    rest_api=self.rest_api.id,
                    stage_name=stage.stage_name,
                    opts=self._child,
                )
                endpoints[spec.stage_name] = pulumi.Output.from_input(f"https://{settings.domain.name}")
            else:
                aws.apigateway.BasePathMapping(
                    f"{name}-base-path-{spec.tier}",
                    domain_name=domain.domain_name,
                    rest_api=self.rest_api.id,
                    stage_name=stage.stage_name,
                    base_path=spec.stage_name,
                    opts=self._child,
                )
                endpoints[spec.stage_name] = pulumi.Output.from_input(
                    f"https://{settings.domain.name}/{spec.stage_name}")
        if settings.domain.hosted_zone_id:
            aws.route53.Record(
                f"{name}-dns",
                zone_id=settings.domain.hosted_zone_id,
                name=domain.domain_name,
                type="A",
                aliases=[{"name": domain.regional_domain_name, "zone_id": domain.regional_zone_id,
                          "evaluate_target_health": False}],
                opts=self._child,
            )
        return endpoints
