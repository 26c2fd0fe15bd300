"""Scale to zero and business hours, on both platforms, and what a client sees meanwhile.

dev (EC2) lets its Ollama model sleep when idle and wake on the gateway's request count, with
a business-hours floor; staging (EKS) does the same with KEDA. Prod refuses both.
"""
from __future__ import annotations

import copy
import json

import pytest

from components.config import InventoryError, parse_inventory
from components.eks import model_service
from components.gateway import api as gateway_api
from components.gateway.responses import (COLD_RETRY_AFTER_S, UNAVAILABLE_RETRY_AFTER_S, render_as_sent,
                                          render_gateway_responses)
from tests import stack_runs
from tools import mock_engine

SLEEPY_EC2 = "r1-qwen-1-5b-gguf"


def _model(stack: str, name: str) -> dict:
    return next(m for m in stack_runs.inventory_of(stack)["models"] if m["name"] == name)


@pytest.fixture(scope="module")
def dev() -> mock_engine.ProgramRun:
    return stack_runs.run_with_inventory("dev", lambda inventory: None, preview=False)


@pytest.fixture(scope="module")
def staging() -> mock_engine.ProgramRun:
    return stack_runs.run_with_inventory("staging", lambda inventory: None, preview=False)


def _by_name(run, type_token: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.by_type(type_token)}


# --- EC2 ------------------------------------------------------------------------------------

def test_the_committed_dev_stack_lets_a_model_sleep(dev):
    model = _model("dev", SLEEPY_EC2)
    assert model["min_replicas"] == 0
    groups = _by_name(dev, "aws:autoscaling/group:Group")
    assert groups[f"{SLEEPY_EC2}-asg"]["minSize"] == 0


def test_a_request_to_a_sleeping_model_wakes_its_fleet(dev):
    alarms = _by_name(dev, "aws:cloudwatch/metricAlarm:MetricAlarm")
    policies = _by_name(dev, "aws:autoscaling/policy:Policy")
    wake = alarms[f"{SLEEPY_EC2}-wake-wake"]
    queries = {q["id"]: q for q in wake["metricQueries"]}
    routes = [r for r in gateway_api.routes_for([SLEEPY_EC2])]
    requests = [queries[f"r{i}"]["metric"] for i in range(len(routes))]
    assert {(m["dimensions"]["Resource"], m["dimensions"]["Method"]) for m in requests} == \
        {(r.resource_path, r.http_method) for r in routes}
    assert all(m["namespace"] == "AWS/ApiGateway" and m["metricName"] == "Count" and m["stat"] == "Sum"
               for m in requests)
    assert queries["desired"]["metric"]["metricName"] == "GroupDesiredCapacity"
    # Only while nothing runs: it never scales a running fleet down to one.
    assert "FILL(desired, 0) == 0" in queries["wake"]["expression"]
    assert wake["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and wake["threshold"] == 1
    policy = policies[f"{SLEEPY_EC2}-wake-wake"]
    assert policy["adjustmentType"] == "ExactCapacity"
    assert policy["stepAdjustments"] == [{"scalingAdjustment": 1, "metricIntervalLowerBound": "0"}]


def test_an_idle_fleet_sleeps_after_its_idle_minutes(dev):
    model = _model("dev", SLEEPY_EC2)
    sleep = _by_name(dev, "aws:cloudwatch/metricAlarm:MetricAlarm")[f"{SLEEPY_EC2}-wake-sleep"]
    idle = model.get("idle_minutes", 30)
    assert sleep["evaluationPeriods"] == sleep["datapointsToAlarm"] == idle
    assert sleep["treatMissingData"] == "breaching"  # no datapoint is no request
    assert sleep["comparisonOperator"] == "LessThanOrEqualToThreshold" and sleep["threshold"] == 0
    policy = _by_name(dev, "aws:autoscaling/policy:Policy")[f"{SLEEPY_EC2}-wake-sleep"]
    assert policy["stepAdjustments"] == [{"scalingAdjustment": 0, "metricIntervalUpperBound": "0"}]


def test_models_that_never_sleep_get_no_wake_alarms(dev):
    alarms = _by_name(dev, "aws:cloudwatch/metricAlarm:MetricAlarm")
    assert not [name for name in alarms if name.startswith("r1-qwen-7b-wake")]


def test_business_hours_raise_and_lower_the_fleet_floor(dev):
    model = _model("dev", SLEEPY_EC2)
    schedule = model["schedule"]
    actions = _by_name(dev, "aws:autoscaling/schedule:Schedule")
    start, end = actions[f"{SLEEPY_EC2}-business-hours-start"], actions[f"{SLEEPY_EC2}-business-hours-end"]
    hour, minute = (int(x) for x in schedule["start"].split(":"))
    assert start["recurrence"] == f"{minute} {hour} * * 1-5"
    assert start["timeZone"] == end["timeZone"] == schedule["timezone"]
    assert start["minSize"] == schedule["min_replicas"]
    assert end["minSize"] == model["min_replicas"] == 0


# --- EKS ------------------------------------------------------------------------------------

def _scaled_object(run, model: str) -> dict:
    (found,) = [r.inputs for r in run.by_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
                if r.inputs["metadata"]["name"] == model]
    return found["spec"]


def test_keda_may_take_a_staging_model_to_zero_and_wakes_it_on_gateway_requests(staging):
    model = stack_runs.inventory_of("staging")["models"][0]
    assert model["min_replicas"] == 0
    spec = _scaled_object(staging, model["name"])
    assert spec["minReplicaCount"] == 0
    assert spec["cooldownPeriod"] == model.get("idle_minutes", 30) * 60
    wakes = [t for t in spec["triggers"] if t["type"] == "aws-cloudwatch"]
    routes = gateway_api.routes_for([model["name"]])
    gateway = stack_runs.inventory_of("staging")["gateway"]
    # A trigger per route on every stage: with a stage per tier, each tier's stage counts.
    stages = len(gateway["tiers"]) if gateway.get("stage_per_tier") else 1
    assert len(wakes) == len(routes) * stages
    for trigger in wakes:
        metadata = trigger["metadata"]
        assert metadata["namespace"] == "AWS/ApiGateway" and metadata["metricName"] == "Count"
        assert metadata["dimensionName"] == "ApiName;Stage;Resource;Method"
        api, stage, resource, method = metadata["dimensionValue"].split(";")
        assert (resource, method) in {(r.resource_path, r.http_method) for r in routes}
        assert metadata["activationTargetMetricValue"] == "0"
        assert float(metadata["targetMetricValue"]) >= 1e6  # wakes to one; the queue scales beyond
        assert trigger["authenticationRef"] == {"name": model_service.GATEWAY_METRICS_AUTH}
    # One per sleeping model, in its namespace.
    auths = {r.inputs["metadata"]["namespace"]: r.inputs
             for r in staging.by_type("kubernetes:keda.sh/v1alpha1:TriggerAuthentication")}
    sleeping = {m["name"] for m in stack_runs.inventory_of("staging")["models"] if m.get("min_replicas") == 0}
    assert set(auths) == sleeping and model["name"] in auths
    assert all(auth["spec"] == {"podIdentity": {"provider": "aws"}} for auth in auths.values())


def test_the_keda_operator_reads_cloudwatch_with_its_own_pod_identity(staging):
    bound = {(a["namespace"], a["serviceAccount"]) for a in
             stack_runs.inputs(staging, "aws:eks/podIdentityAssociation:PodIdentityAssociation")}
    assert ("keda", "keda-operator") in bound
    (policy,) = [json.loads(p.inputs["policy"]) for p in staging.by_type("aws:iam/rolePolicy:RolePolicy")
                 if p.name == "eks-addons-keda-policy"]
    assert [s["Action"] for s in policy["Statement"]] == [["cloudwatch:GetMetricData"]]


def test_business_hours_on_eks_are_a_cron_trigger(staging):
    model = stack_runs.inventory_of("staging")["models"][0]
    schedule = model["schedule"]
    (cron,) = [t for t in _scaled_object(staging, model["name"])["triggers"] if t["type"] == "cron"]
    assert cron["metadata"]["timezone"] == schedule["timezone"]
    assert cron["metadata"]["desiredReplicas"] == str(schedule["min_replicas"])
    hour = int(schedule["end"].split(":")[0])
    assert cron["metadata"]["end"].split()[1] == str(hour)


def test_prod_models_keep_a_warm_replica_and_no_wake_triggers():
    run = stack_runs.preview_run("prod")
    for scaled in stack_runs.inputs(run, "kubernetes:keda.sh/v1alpha1:ScaledObject"):
        assert scaled["spec"]["minReplicaCount"] >= 1
        assert {t["type"] for t in scaled["spec"]["triggers"]} == {"prometheus"}
    raw = copy.deepcopy(stack_runs.inventory_of("prod"))
    raw["models"][0]["min_replicas"] = 0
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="prod")
    assert "models[0].min_replicas" in str(error.value) and "prod" in str(error.value)


def test_a_schedule_must_sit_between_the_floor_and_the_ceiling():
    raw = copy.deepcopy(stack_runs.inventory_of("dev"))
    raw["models"][0]["schedule"] = {"start": "08:00", "end": "18:00", "min_replicas": 9}
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="dev", secret_keys={"deepseek-serving:smokeClientKey"})
    assert "schedule" in str(error.value)
    raw["models"][0]["schedule"] = {"start": "08:00", "end": "18:00", "timezone": "Mars/Olympus"}
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="dev", secret_keys={"deepseek-serving:smokeClientKey"})
    assert "timezone" in str(error.value)


# --- what the client sees --------------------------------------------------------------------

@pytest.mark.parametrize("response_type", ["INTEGRATION_FAILURE", "API_CONFIGURATION_ERROR"])
def test_a_cold_model_answers_503_with_retry_after_in_the_openai_shape(response_type):
    specs = {s.response_type: s for s in render_gateway_responses(
        max_request_bytes=1 << 20, integration_timeout_ms=300_000, streaming=True, cold_start_possible=True)}
    sent = render_as_sent(specs[response_type], request_id="req-1", gateway_message="Internal server error")
    assert sent.status == 503
    assert sent.headers["Retry-After"] == str(COLD_RETRY_AFTER_S)
    assert sent.headers["X-Request-Id"] == "req-1"
    error = sent.body["error"]
    assert error["type"] == "server_error" and error["code"] == response_type
    assert "starting from zero" in error["message"]


def test_without_a_model_that_sleeps_the_503_asks_for_a_short_wait():
    specs = {s.response_type: s for s in render_gateway_responses(
        max_request_bytes=1 << 20, integration_timeout_ms=300_000, streaming=True)}
    sent = render_as_sent(specs["INTEGRATION_FAILURE"], request_id="r", gateway_message="x")
    assert sent.headers["Retry-After"] == str(UNAVAILABLE_RETRY_AFTER_S)
    assert "starting from zero" not in sent.body["error"]["message"]


def test_the_deployed_gateway_of_a_stack_with_a_sleeping_model_says_so(dev):
    responses = {r["responseType"]: r for r in stack_runs.inputs(dev, "aws:apigateway/response:Response")}
    for kind in ("INTEGRATION_FAILURE", "API_CONFIGURATION_ERROR"):
        assert responses[kind]["statusCode"] == "503"
        assert responses[kind]["responseParameters"]["gatewayresponse.header.Retry-After"] == f"'{COLD_RETRY_AFTER_S}'"


def test_a_sleeping_fleet_does_not_page_for_having_no_target(dev):
    alarms = {r.inputs.get("name"): r.inputs for r in dev.by_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    asleep = alarms[f"deepseek-dev-{SLEEPY_EC2}-no-healthy-targets"]
    queries = {q["id"]: q for q in asleep["metricQueries"]}
    # Only while the group wants an instance, and only after a cold start's time.
    assert "FILL(desired, 0) >= 1" in next(q["expression"] for q in queries.values() if q.get("expression"))
    assert queries["desired"]["metric"]["metricName"] == "GroupDesiredCapacity"
    assert asleep["evaluationPeriods"] > 3
    awake = alarms["deepseek-dev-r1-qwen-7b-no-healthy-targets"]
    assert awake["metricName"] == "HealthyHostCount" and awake["evaluationPeriods"] == 3
