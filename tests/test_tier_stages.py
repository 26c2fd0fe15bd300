"""A stage per tier (gateway.stage_per_tier): what AWS enforces once each tier has a stage.

A usage plan binds keys to the stages it lists, so a tier's key works only on its tier's
stage: the stage a request arrives on proves the tier. The tests check what follows from
that as the engine records it: each plan names only its own stage; each stage carries its
tier's priority as a stage variable that every integration maps into X-DeepSeek-Priority;
the resource policy denies each tier's stage to every network but the tier's; WAF refuses a
client-sent priority header; logs, throttles, alarms and the smoke test follow the stages.
The single-stage mode stays as it was (`make diff` shows no change for such stacks).
"""
from __future__ import annotations

import fnmatch
import ipaddress
import json

import pulumi
import pytest

from components.config import InventoryError
from components.gateway.api import (
    PRIORITY_HEADER,
    ThrottleLimits,
    ThrottlePlan,
    access_log_format,
    route_throttles,
    routes_for,
    scaled_throttles,
    stage_specs,
)
from tests.program_harness import record
from tests.test_api_gateway import (
    API_KEY,
    INTEGRATION,
    METHOD_SETTINGS,
    PLAN_KEY,
    REST_API,
    STAGE,
    T,
    USAGE_PLAN,
    gateway_run,
    inventory_for,
)
from tools import stack_files

HEADER_PARAMETER = f"integration.request.header.{PRIORITY_HEADER}"
POLICY = f"{T}restApiPolicy:RestApiPolicy"
WAF_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"


def _staging_tiers():
    inventory, _, _ = inventory_for("staging")
    return inventory.gateway.tiers


# --------------------------------------------------------------------------- inventory


def _refusal(stack: str, change) -> str:
    with pytest.raises(InventoryError) as raised:
        inventory_for(stack, change)
    return str(raised.value)


def test_a_tier_allow_list_without_a_stage_per_tier_is_refused_naming_the_switch():
    def change(inv):
        inv["gateway"]["tiers"][0]["allowed_source_cidrs"] = ["198.51.100.0/26"]

    message = _refusal("dev", change)
    assert message.count("stacks/Pulumi.dev.yaml") == 1
    assert "gateway.tiers[0].allowed_source_cidrs: '198.51.100.0/26'" in message
    assert "set gateway.stage_per_tier: true" in message


def test_tiers_with_different_priorities_on_one_stage_are_refused_once_a_model_schedules_by_priority():
    def change(inv):
        inv["gateway"]["tiers"].append({**inv["gateway"]["tiers"][0], "name": "batch", "priority": 10})
        inv["models"][0]["scheduling_policy"] = "priority"

    message = _refusal("dev", change)
    assert "gateway.tiers[1].priority: 10" in message
    assert "r1-qwen-7b" in message and "set gateway.stage_per_tier: true" in message
    # Without priority scheduling the priorities decide nothing, so they may differ.
    inventory, _, _ = inventory_for("dev", lambda inv: inv["gateway"]["tiers"].append(
        {**inv["gateway"]["tiers"][0], "name": "batch", "priority": 10}))
    assert [t.priority for t in inventory.gateway.tiers] == [0, 10]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/8"])
def test_a_tier_allow_list_must_be_narrower_than_the_world_and_inside_the_stack_wide_one(cidr):
    message = _refusal("staging", lambda inv: inv["gateway"]["tiers"][0].update(allowed_source_cidrs=[cidr]))
    assert "gateway.tiers[0].allowed_source_cidrs" in message
    assert ("allows every address" if cidr == "0.0.0.0/0" else "outside gateway.allowed_source_cidrs") in message


def test_a_stage_name_beside_stage_per_tier_is_refused():
    message = _refusal("staging", lambda inv: inv["gateway"].update(stage_name="v1"))
    assert "gateway.stage_name: 'v1'" in message and "remove stage_name" in message


def test_preview_exits_2_for_a_tier_allow_list_on_one_stage(tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    document = yaml.safe_load(stack_files.stack_path("dev").read_text())
    document["config"]["deepseek-serving:inventory"]["gateway"]["tiers"][0]["allowed_source_cidrs"] = ["203.0.113.0/24"]
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "stage_per_tier" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


# ------------------------------------------------------------------ stages and plans


def test_each_usage_plan_lists_only_its_own_tiers_stage():
    run = gateway_run("staging", preview=False)
    stages = {s.name: s for s in run.by_type(STAGE)}
    assert "gateway-stage" not in stages
    for tier in _staging_tiers():
        stage = stages[f"gateway-stage-{tier.name}"]
        assert stage.inputs["stageName"] == tier.name
        plan = run.one(USAGE_PLAN, f"gateway-plan-{tier.name}")
        assert [s["stage"] for s in plan.inputs["apiStages"]] == [tier.name]
        # Ordered after its own stage, and no other.
        assert {u for u in plan.property_dependencies["apiStages"] if "::gateway-stage" in u} == {stage.urn}


def test_every_client_key_sits_in_the_plan_of_its_tier_only():
    inventory, _, _ = inventory_for("staging")
    run = gateway_run("staging")
    plans = {p.urn: p.name for p in run.by_type(USAGE_PLAN)}
    for client in inventory.gateway.clients:
        link = run.one(PLAN_KEY, f"gateway-plan-key-{client.name}")
        assert [plans[u] for u in link.property_dependencies["usagePlanId"]] == [f"gateway-plan-{client.tier}"]
    assert len(run.by_type(API_KEY)) == len(inventory.gateway.clients)


@pytest.mark.parametrize("preview", [True, False])
def test_each_stage_carries_its_tiers_priority_and_every_integration_maps_it_to_the_header(preview):
    run = gateway_run("staging", preview=preview)
    for tier in _staging_tiers():
        stage = run.one(STAGE, f"gateway-stage-{tier.name}")
        assert stage.inputs["variables"] == {"priority": str(tier.priority)}
    integrations = run.by_type(INTEGRATION)
    assert len(integrations) == 4 * 2  # four routes per model, two models
    for integration in integrations:
        assert integration.inputs["requestParameters"][HEADER_PARAMETER] == "stageVariables.priority"
        # The other mappings stay: no client credential reaches a runtime.
        assert integration.inputs["requestParameters"]["integration.request.header.Authorization"] == "'none'"


def test_the_staging_tiers_really_differ_in_priority_and_network():
    tiers = _staging_tiers()
    assert len({t.priority for t in tiers}) == len(tiers) >= 2
    assert all(t.allowed_source_cidrs for t in tiers)
    inventory, _, _ = inventory_for("staging")
    assert any(m.runtime == "vllm" and m.scheduling_policy == "priority" for m in inventory.models)


def test_one_stage_sends_the_common_priority_only_when_a_model_schedules_by_it():
    plain = gateway_run("dev")
    for integration in plain.by_type(INTEGRATION):
        assert HEADER_PARAMETER not in integration.inputs["requestParameters"]
    stage = plain.one(STAGE, "gateway-stage")
    assert "variables" not in stage.inputs and stage.inputs["stageName"] == "v1"
    assert [r.name for r in plain.by_type(WAF_ASSOCIATION)] == ["gateway-waf-association"]

    def priority_model(inv):
        inv["models"][0]["scheduling_policy"] = "priority"
        inv["gateway"]["tiers"][0]["priority"] = 3

    scheduled = gateway_run("dev", priority_model)
    for integration in scheduled.by_type(INTEGRATION):
        assert integration.inputs["requestParameters"][HEADER_PARAMETER] == "'3'"
    rules = scheduled.one(WEB_ACL, "gateway-waf-acl").inputs["rules"]
    assert any(r["name"] == "gateway-set-headers" for r in rules)


def test_the_redeploy_trigger_follows_the_priority_header():
    before = gateway_run("staging").outputs["redeployment_hash"]
    after = gateway_run("staging", lambda inv: inv["gateway"].update(stage_per_tier=False) or inv["gateway"].update(
        tiers=[{**t, "priority": 0, "allowed_source_cidrs": []} for t in inv["gateway"]["tiers"]])
    ).outputs["redeployment_hash"]
    assert before != after


# ------------------------------------------------------------------ resource policy


def _allowed(document: dict, source_ip: str, stage: str, api_arn: str = "arn:aws:execute-api:us-west-2:123456789012:abc") -> bool:
    """IAM evaluation of a resource policy for one request: an explicit Deny wins, then an Allow.

    Resources use API Gateway's short form (execute-api:/...), which it expands to the API's
    ARN; `*` in an ARN matches across slashes (IAM policy element "Resource")."""
    arn = f"{api_arn}/{stage}/POST/r1-qwen-7b/v1/chat/completions"
    address = ipaddress.ip_address(source_ip)

    def applies(statement: dict) -> bool:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if not any(fnmatch.fnmatchcase(arn, r.replace("execute-api:", api_arn, 1)) for r in resources):
            return False
        for operator, pairs in statement.get("Condition", {}).items():
            networks = [ipaddress.ip_network(c) for c in pairs["aws:SourceIp"]]
            inside = any(address in n for n in networks)
            if (operator == "NotIpAddress" and inside) or (operator == "IpAddress" and not inside):
                return False
        return True

    effects = [s["Effect"] for s in document["Statement"] if applies(s)]
    return "Deny" not in effects and "Allow" in effects


def _policy(run) -> dict:
    return json.loads(run.one(POLICY, "gateway-source-ip-policy").inputs["policy"])


def test_each_tier_stage_admits_only_its_tiers_networks_within_the_stack_wide_list():
    document = _policy(gateway_run("staging"))
    interactive, batch = _staging_tiers()
    assert _allowed(document, "198.51.100.10", interactive.name)
    assert not _allowed(document, "198.51.100.200", interactive.name)  # batch's network
    assert _allowed(document, "198.51.100.200", batch.name)
    assert not _allowed(document, "198.51.100.10", batch.name)
    # Outside the stack-wide list nothing gets in, on any stage.
    assert not _allowed(document, "203.0.113.5", interactive.name)
    deny = [s for s in document["Statement"] if s["Resource"] == f"execute-api:/{batch.name}/*/*"]
    assert deny == [{"Sid": deny[0]["Sid"], "Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke",
                     "Resource": f"execute-api:/{batch.name}/*/*",
                     "Condition": {"NotIpAddress": {"aws:SourceIp": ["198.51.100.128/25"]}}}]


def test_a_tier_list_of_several_networks_without_a_stack_wide_one_confines_that_stage_only():
    def change(inv):
        inv["gateway"]["allowed_source_cidrs"] = []
        inv["gateway"]["tiers"][0]["allowed_source_cidrs"] = ["192.0.2.0/24", "198.51.100.7/32"]
        inv["gateway"]["tiers"][1]["allowed_source_cidrs"] = []

    document = _policy(gateway_run("staging", change))
    interactive, batch = _staging_tiers()
    assert [s["Sid"] for s in document["Statement"]] == ["KeysAreCheckedNext", "Stage0OnlyFromItsTierNetworks"]
    assert document["Statement"][1]["Condition"]["NotIpAddress"]["aws:SourceIp"] == ["192.0.2.0/24", "198.51.100.7/32"]
    for address in ("192.0.2.99", "198.51.100.7"):
        assert _allowed(document, address, interactive.name)
    assert not _allowed(document, "198.51.100.8", interactive.name)
    assert _allowed(document, "203.0.113.1", batch.name)  # no list of its own, none stack-wide


def test_the_resource_policy_reads_as_confined_to_the_pack():
    from policies.rules import policy_documents

    document = policy_documents.parse(json.dumps(_policy(gateway_run("staging"))))
    assert document["Statement"][0]["Effect"] == "Allow"
    assert policy_documents.open_statements(document, ["execute-api:Invoke"]) == []


# ------------------------------------------------------- logs, throttles, WAF, domain


def test_every_stage_logs_access_with_its_stage_and_has_its_own_execution_log_group():
    run = gateway_run("staging", preview=False)
    assert json.loads(access_log_format(with_stage=True))["stage"] == "$context.stage"
    assert "stage" not in json.loads(access_log_format())
    groups = {g.name: g for g in run.by_type("aws:cloudwatch/logGroup:LogGroup")}
    for tier in _staging_tiers():
        stage = run.one(STAGE, f"gateway-stage-{tier.name}")
        assert json.loads(stage.inputs["accessLogSettings"]["format"])["stage"] == "$context.stage"
        group = groups[f"gateway-execution-logs-{tier.name}"]
        assert group.inputs["name"].endswith(f"/{tier.name}")
        assert group.inputs["kmsKeyId"]


def test_stage_throttles_split_each_models_capacity_across_the_tier_stages():
    inventory, _, _ = inventory_for("staging")
    from components.gateway.api import gateway_throttles

    plan = gateway_throttles(inventory, "staging")
    run = gateway_run("staging", preview=False)
    settings = [s for s in run.by_type(METHOD_SETTINGS)]
    total_rate: dict[str, float] = {}
    for tier in inventory.gateway.tiers:
        mine = [s for s in settings if s.inputs["stageName"] == tier.name]
        assert {s.inputs["methodPath"] for s in mine} >= {"*/*"}
        for s in mine:
            assert s.inputs["settings"]["dataTraceEnabled"] is False
            if s.inputs["methodPath"] != "*/*" and not s.inputs["methodPath"].endswith("models/GET"):
                model = s.inputs["methodPath"].split("/")[0]
                total_rate[model] = total_rate.get(model, 0) + s.inputs["settings"]["throttlingRateLimit"]
    for model, limits in plan.per_model.items():
        assert 0 < total_rate[model] <= limits.rate + 0.01 * len(inventory.gateway.tiers) * 3


def test_scaled_throttles_keep_the_sum_within_capacity_and_never_reach_zero():
    plan = ThrottlePlan(stage=ThrottleLimits(1.0, 40), per_model={"m": ThrottleLimits(0.5, 20)})
    shares = [0.7, 0.2, 0.1]
    parts = [scaled_throttles(plan, share) for share in shares]
    assert sum(p.per_model["m"].rate for p in parts) <= 0.5
    assert sum(p.per_model["m"].burst for p in parts) <= 20
    tiny = scaled_throttles(ThrottlePlan(ThrottleLimits(0.01, 1), {"m": ThrottleLimits(0.01, 1)}), 0.1)
    assert tiny.per_model["m"] == ThrottleLimits(0.01, 1)
    assert scaled_throttles(plan, 1.0) == plan
    per_route = route_throttles(routes_for(["m"]), parts[2].per_model)
    assert all(limit.rate > 0 and limit.burst >= 1 for limit in per_route.values())


def test_the_web_acl_guards_every_stage_and_refuses_a_client_sent_priority_header():
    run = gateway_run("staging", preview=False)
    associations = {a.name: a for a in run.by_type(WAF_ASSOCIATION)}
    stages = {s.name.removeprefix("gateway-stage-"): s for s in run.by_type(STAGE)}
    assert set(associations) == {f"gateway-waf-association-{tier}" for tier in stages}
    for tier, stage in stages.items():
        assert associations[f"gateway-waf-association-{tier}"].property_dependencies["resourceArn"] == [stage.urn]
    acl = run.one(WEB_ACL, "gateway-waf-acl")
    rule = next(r for r in acl.inputs["rules"] if r["name"] == "gateway-set-headers")
    statement = rule["statement"]["sizeConstraintStatement"]
    assert statement["fieldToMatch"] == {"singleHeader": {"name": PRIORITY_HEADER.lower()}}
    assert statement["comparisonOperator"] == "GE" and statement["size"] == 0
    assert rule["action"]["block"]["customResponse"]["responseCode"] == 400
    bodies = {b["key"] for b in acl.inputs["customResponseBodies"]}
    assert rule["action"]["block"]["customResponse"]["customResponseBodyKey"] in bodies


def test_behind_a_custom_domain_each_tier_is_mapped_at_its_own_base_path():
    def change(inv):
        inv["gateway"]["stage_per_tier"] = True
        inv["gateway"].pop("stage_name", None)
        inv["gateway"]["tiers"].append({**inv["gateway"]["tiers"][0], "name": "batch", "priority": 5,
                                        "rate_per_second": inv["gateway"]["tiers"][0]["rate_per_second"] / 2})

    run = gateway_run("prod", change, preview=False)
    mappings = {m.name: m for m in run.by_type(f"{T}basePathMapping:BasePathMapping")}
    inventory, _, _ = inventory_for("prod", change)
    assert set(mappings) == {f"gateway-base-path-{t.name}" for t in inventory.gateway.tiers}
    for tier in inventory.gateway.tiers:
        assert mappings[f"gateway-base-path-{tier.name}"].inputs["basePath"] == tier.name
        assert mappings[f"gateway-base-path-{tier.name}"].inputs["stageName"] == tier.name
    assert run.one(REST_API, "gateway-api").inputs["disableExecuteApiEndpoint"] is True


# ---------------------------------------------------------------------- outputs, smoke


def test_outputs_name_every_tiers_endpoint_and_the_single_url_ones_are_the_smoke_tiers():
    from tests.stack_runs import run_with_inventory

    run = run_with_inventory("staging", lambda inv: None, preview=False)
    outputs = run.outputs
    inventory, _, _ = inventory_for("staging")
    smoke_tier = next(c.tier for c in inventory.gateway.clients if c.name == "smoke")
    tiers = outputs["tier_endpoints"]
    assert set(tiers) == {t.name for t in inventory.gateway.tiers}
    api_host = tiers[smoke_tier][outputs["served_models"][0]].split("/")[2]
    for tier, urls in tiers.items():
        assert urls == {m: f"https://{api_host}/{tier}/{m}/v1" for m in outputs["served_models"]}
    assert outputs["smoke_tier"] == smoke_tier
    assert outputs["stage_name"] == smoke_tier
    assert outputs["model_endpoints"] == tiers[smoke_tier]
    assert outputs["api_endpoint"] == f"https://{api_host}/{smoke_tier}"
    assert outputs["smoke_tier_limits"] == outputs["tier_limits"][smoke_tier]
    assert {t: v["priority"] for t, v in outputs["tier_limits"].items()} == {t.name: t.priority for t in inventory.gateway.tiers}


def test_the_smoke_test_calls_the_smoke_tiers_stage():
    from tests.stack_runs import run_with_inventory
    from tools.smoke_target import target_from_outputs

    outputs = run_with_inventory("staging", lambda inv: None, preview=False).outputs
    target = target_from_outputs(outputs, "staging outputs")
    smoke_tier = outputs["smoke_tier"]
    assert target.model_base_urls == outputs["tier_endpoints"][smoke_tier]
    assert all(f"/{smoke_tier}/" in url for url in target.model_base_urls.values())
    # Whatever the single-URL outputs say, the smoke key's own tier decides.
    outputs = {**outputs, "model_endpoints": outputs["tier_endpoints"]["interactive"]}
    assert target_from_outputs(outputs, "staging outputs").model_base_urls == outputs["tier_endpoints"][smoke_tier]


def test_stage_specs_are_plain_data_the_stages_follow():
    inventory, _, _ = inventory_for("staging")
    specs = stage_specs(inventory.gateway)
    assert [s.stage_name for s in specs] == [t.name for t in inventory.gateway.tiers]
    assert sum(s.capacity_share for s in specs) == pytest.approx(1.0)
    single, _, _ = inventory_for("dev")
    assert [(s.tier, s.stage_name, s.capacity_share) for s in stage_specs(single.gateway)] == [(None, "v1", 1.0)]


# --------------------------------------------------------------------- observability


def test_gateway_alarms_cover_every_stage_and_the_wake_counts_requests_on_each_stage():
    from tests.stack_runs import preview_run

    run = preview_run("staging")
    alarms = [a for a in run.by_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "gateway-" in a.name]
    assert alarms
    for alarm in alarms:
        for query in alarm.inputs.get("metricQueries", []):
            metric = query.get("metric")
            if metric and metric["namespace"] == "AWS/ApiGateway":
                assert set(metric["dimensions"]) == {"ApiName"}
        if alarm.inputs.get("namespace") == "AWS/ApiGateway":
            assert set(alarm.inputs["dimensions"]) == {"ApiName"}
    scaled = [o for o in run.by_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
              if o.inputs["metadata"]["namespace"] == "r1-qwen-7b"]
    assert len(scaled) == 1
    wakes = [t for t in scaled[0].inputs["spec"]["triggers"] if t["type"] == "aws-cloudwatch"]
    # One trigger per route and tier stage: a request on any tier's stage wakes the model.
    assert len(wakes) == len(routes_for(["r1-qwen-7b"])) * len(_staging_tiers())
    assert all(t["metadata"]["dimensionName"] == "ApiName;Stage;Resource;Method" for t in wakes)


def test_the_ollama_grafana_dashboard_shows_every_stage_when_tiers_have_their_own():
    from components.eks import grafana
    from tests.test_model_service import _inventory as variant_inventory

    inventory = variant_inventory("staging", "ollama")
    ollama = [m.name for m in inventory.models if m.runtime == "ollama"]
    text = grafana.dashboard_json("ollama", inventory, api_name="deepseek-staging", stage=None, api_id="abc123",
                                  load_balancers={name: "net/lb-1/0123" for name in ollama})
    values = {v["name"]: v["query"] for v in json.loads(text)["templating"]["list"]}
    assert values["stage"] == "*"


def test_an_ec2_model_that_sleeps_is_refused_when_its_wake_alarm_would_pass_cloudwatchs_metric_limit():
    from components.admission import MATH_ALARM_METRICS, check_wake_alarms

    def tiers(count):
        def change(inv):
            inv["gateway"]["stage_per_tier"] = True
            inv["gateway"].pop("stage_name", None)
            base = inv["gateway"]["tiers"][0]
            inv["gateway"]["tiers"] = [{**base, "name": f"t{i}", "rate_per_second": base["rate_per_second"] / count}
                                       for i in range(count)]
            inv["gateway"]["clients"] = [{**c, "tier": "t0"} for c in inv["gateway"]["clients"]]
        return change

    sleeping = next(i for i, m in enumerate(stack_files.load("dev").config["deepseek-serving:inventory"]["models"])
                    if m.get("min_replicas") == 0)
    two, _, _ = inventory_for("dev", tiers(2))
    check_wake_alarms(two, "dev")  # 4 routes x 2 stages + the group: 9 metrics
    three, _, _ = inventory_for("dev", tiers(3))
    with pytest.raises(InventoryError) as raised:
        check_wake_alarms(three, "dev")
    message = str(raised.value)
    assert f"models[{sleeping}].min_replicas: 0" in message and "13 metrics" in message
    assert f"allows {MATH_ALARM_METRICS} per alarm" in message and "at most 2 tiers" in message
    assert message.count("stacks/Pulumi.dev.yaml") == 1
