"""Alarms, alert routing, dashboard and log settings of every stack.

Pure tests check the alarm and rule definitions as data; program tests run the real
__main__.py under the mock engine (tests/program_harness.py) and assert on what it
registers. Program runs are few on purpose: each one checks several things.
"""
from __future__ import annotations

import copy
import json
import re

import pulumi
import pytest
import yaml

from components import observability as obs
from components.ec2 import host as host_provisioning
from components.eks import monitoring as k8s_monitoring
from components.config import InventoryError, Thresholds, parse_inventory
from components.serving.runtimes import render_for_inventory
from components.platforms import startup_seconds
from tests.program_harness import fresh_event_loop, start
from tools import k8s_objects, stack_files

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RELEASE = "kubernetes:helm.sh/v3:Release"
PROMPT_LOGGING = ("--enable-log-requests", "--enable-log-outputs", "VLLM_LOGGING_LEVEL=DEBUG",
                  "VLLM_SERVER_DEV_MODE", "OLLAMA_DEBUG", "RUST_LOG=debug", "LOG_LEVEL=debug")


@pytest.fixture(autouse=True)
def _own_event_loop():
    fresh_event_loop()


def _inventory(stack: str, change=None):
    raw = copy.deepcopy(stack_files.load(stack).config["deepseek-serving:inventory"])
    if change:
        change(raw)
    return parse_inventory(raw, stack=stack, secret_keys=set(stack_files.load(stack).secret_keys))


def _by_type(registrations, type_token):
    return [r for r in registrations if r.type == type_token]


def _alarms(registrations) -> dict[str, dict]:
    """The observability alarms (named); scale-to-zero alarms (components/ec2/wake.py) are
    auto-named and act on scaling policies, not on the topic."""
    return {r.inputs["name"]: r.inputs for r in _by_type(registrations, ALARM) if "name" in r.inputs}


def _policy(text: str) -> dict:
    return json.loads(text)


# ------------------------------------------------------------------ alarm definitions


def test_error_and_throttle_alarms_are_rates_judged_only_above_the_minimum_request_count():
    thresholds = Thresholds(five_xx_percent=2.5, throttled_percent=7, min_requests=40)
    alarms = {a.key: a for a in obs.gateway_alarms(thresholds, api_name="api", stage="v1",
                                                   api_id="abc123", streaming=True)}
    five_xx, throttled = alarms["gateway-5xx-rate"], alarms["gateway-429-rate"]
    assert five_xx.expression == "IF(requests >= 40, 100 * FILL(errors, 0) / requests, 0)"
    assert five_xx.inputs["errors"].name == "5XXError" and five_xx.threshold == 2.5
    assert five_xx.inputs["requests"].dimensions == {"ApiName": "api", "Stage": "v1"}
    # No 429 metric exists in AWS/ApiGateway: the access log filter's metric is the numerator.
    numerator = throttled.inputs["throttled"]
    assert (numerator.namespace, numerator.name) == (obs.SERVING_NAMESPACE, obs.THROTTLED_METRIC)
    assert numerator.dimensions == {"ApiId": "abc123"} and throttled.threshold == 7
    assert five_xx.severity == "critical" and throttled.severity == "warning"
    queries = five_xx.metric_queries()
    assert [q["return_data"] for q in queries] == [False, False, True]


def test_latency_alarms_use_percentiles_and_time_to_first_byte_only_when_streaming():
    thresholds = Thresholds()
    streamed = {a.key: a for a in obs.gateway_alarms(thresholds, api_name="a", stage="v1", api_id="i",
                                                     streaming=True)}
    assert streamed["gateway-latency-p99"].metric.stat == "p99"
    assert streamed["gateway-latency-p99"].threshold == thresholds.latency_p99_ms
    assert streamed["gateway-integration-latency-p95"].metric.name == "IntegrationLatency"
    assert streamed["gateway-integration-latency-p95"].metric.stat == "p95"
    ttfb = streamed["gateway-time-to-first-byte-p95"]
    assert ttfb.metric.name == obs.TTFB_METRIC and ttfb.threshold == thresholds.time_to_first_byte_p95_ms
    assert all(a.percentile for k, a in streamed.items() if "latency" in k or "first-byte" in k)
    buffered = {a.key for a in obs.gateway_alarms(thresholds, api_name="a", stage="v1", api_id="i",
                                                  streaming=False)}
    assert "gateway-time-to-first-byte-p95" not in buffered


def test_an_unhealthy_target_alarms_only_after_a_replica_had_its_whole_start_budget():
    inventory = _inventory("dev")
    model = inventory.models[0]
    launch = render_for_inventory(inventory, model)
    budget = startup_seconds(inventory, launch)
    alarms = {a.key: a for a in obs.load_balancer_alarms(model, load_balancer="net/x/1",
                                                         target_group="targetgroup/x/2",
                                                         startup_seconds=budget)}
    unhealthy = alarms["unhealthy-targets"]
    assert unhealthy.evaluation_periods * unhealthy.period > budget
    assert unhealthy.metric.dimensions == {"TargetGroup": "targetgroup/x/2", "LoadBalancer": "net/x/1"}
    down = alarms["no-healthy-targets"]
    assert (down.metric.name, down.metric.stat, down.threshold) == ("HealthyHostCount", "Minimum", 1)
    assert down.treat_missing_data == "breaching" and down.severity == "critical"


def test_ec2_alarms_read_exactly_the_metrics_the_hosts_publish():
    """The health gate's series and the CloudWatch agent's NVIDIA metrics are what the
    alarms name: a renamed series on either side fails here, not silently in production."""
    inventory = _inventory("dev")
    for model in inventory.models:
        launch = render_for_inventory(inventory, model)
        alarms = obs.ec2_fleet_alarms(model, launch, inventory.observability.alarms.thresholds,
                                      stack="dev", asg_name="asg-1")
        published = {name for name, *_ in host_provisioning.GATE_SERIES.get(model.runtime, [])}
        published |= {"RequestsWaiting", "RequestsRunning"} if model.runtime == "ollama" else set()
        plan = host_provisioning.HostPlan(
            stack="dev", region=inventory.region, model_name=model.name, launch=launch,
            weights_source="s3", manifest_sha256=model.weights.manifest_sha256,
            s3_uri=model.weights.s3_uri, hf_repo=model.hf_repo, revision=model.revision,
            hf_token_secret_arn=None, log_group_name="/x",
            metrics_namespace=obs.SERVING_NAMESPACE)
        config = host_provisioning.cloudwatch_agent_config(plan)
        # The runtime series the agent's Prometheus scrape publishes (EMF), same dimensions.
        scraped = config["logs"].get("metrics_collected", {}).get("prometheus")
        if scraped:
            assert scraped["emf_processor"]["metric_namespace"] == obs.SERVING_NAMESPACE
            (declaration,) = scraped["emf_processor"]["metric_declaration"]
            assert declaration["dimensions"] == [["Stack", "Model"]]
            published |= set(host_provisioning.AGENT_SERIES[model.runtime])
        agent = config["metrics"]
        assert agent["namespace"] == obs.SERVING_NAMESPACE
        assert ["AutoScalingGroupName"] in agent["aggregation_dimensions"]
        measured = {f"nvidia_smi_{m}" for m in agent["metrics_collected"]["nvidia_gpu"]["measurement"]}
        for alarm in alarms:
            for metric in ([alarm.metric] if alarm.metric else list(alarm.inputs.values())):
                if metric.namespace != obs.SERVING_NAMESPACE:
                    assert metric.namespace == obs.ASG_NAMESPACE
                elif metric.name.startswith("nvidia_smi_"):
                    assert metric.name in measured and metric.dimensions == {"AutoScalingGroupName": "asg-1"}
                else:
                    assert metric.name in published, (model.name, alarm.key, metric.name)
                    assert metric.dimensions == {"Stack": "dev", "Model": model.name}


def test_kv_cache_alarm_follows_what_each_runtime_reports():
    thresholds = Thresholds(kv_cache_percent=85)
    dev = _inventory("dev")
    vllm = dev.models[0]
    alarm = obs.kv_cache_alarm(vllm, render_for_inventory(dev, vllm), thresholds,
                               namespace=obs.SERVING_NAMESPACE, dimensions={})
    assert alarm.metric.name == "KvCacheUsagePercent" and alarm.threshold == 85
    ollama = dev.models[1]
    assert obs.kv_cache_alarm(ollama, render_for_inventory(dev, ollama), thresholds,
                              namespace=obs.SERVING_NAMESPACE, dimensions={}) is None
    staging = _inventory("staging")
    tgi = staging.models[0]
    launch = render_for_inventory(staging, tgi)
    budget = launch.capacity.max_batch_total_tokens
    alarm = obs.kv_cache_alarm(tgi, launch, thresholds, namespace=obs.SERVING_NAMESPACE, dimensions={})
    assert budget and alarm.expression == f"100 * tokens / {budget}"
    assert alarm.inputs["tokens"].name == "BatchTokens"


def test_replicas_at_max_and_stuck_generation_alarm_only_where_they_mean_something():
    dev = _inventory("dev")
    keys = {m.name: {a.key for a in obs.ec2_fleet_alarms(m, render_for_inventory(dev, m),
                                                         dev.observability.alarms.thresholds,
                                                         stack="dev", asg_name="g")}
            for m in dev.models}
    # r1-qwen-7b scales 1..2 on vLLM; the Ollama model is fixed at one replica and has no metrics.
    assert {"replicas-at-max", "stuck-generation", "kv-cache"} <= keys["r1-qwen-7b"]
    assert not {"replicas-at-max", "stuck-generation", "kv-cache"} & keys["r1-qwen-1-5b-gguf"]
    (stuck,) = [a for a in obs.ec2_fleet_alarms(dev.models[0], render_for_inventory(dev, dev.models[0]),
                                                dev.observability.alarms.thresholds, stack="dev",
                                                asg_name="g") if a.key == "stuck-generation"]
    assert stuck.expression == f"IF(running > 0 AND gpu < {obs.STUCK_GPU_PERCENT}, 1, 0)"


def test_a_gpu_memory_threshold_under_what_the_runtime_reserves_is_refused_with_the_key_path():
    def low(raw):
        raw.setdefault("observability", {}).setdefault("alarms", {})["thresholds"] = {"gpu_memory_percent": 90}

    with pytest.raises(obs.ObservabilityError) as error:
        obs.check_alarm_thresholds(_inventory("dev", low), "dev")
    message = str(error.value)
    assert "stacks/Pulumi.dev.yaml" in message
    assert "observability.alarms.thresholds.gpu_memory_percent: 90" in message
    assert "models[0] (r1-qwen-7b, vllm)" in message and "at least 92" in message
    obs.check_alarm_thresholds(_inventory("dev"), "dev")  # the defaults leave room


def test_at_most_four_extra_topics_fit_the_five_actions_an_alarm_takes():
    def many(raw):
        raw["observability"]["alarms"]["sns_topic_arns"] = [
            f"arn:aws:sns:us-east-1:123456789012:t{i}" for i in range(5)]

    with pytest.raises(InventoryError, match="sns_topic_arns"):
        _inventory("dev", many)
    with pytest.raises(obs.ObservabilityError, match="at most 4"):
        obs.alarm_actions("arn:own", [f"arn:t{i}" for i in range(5)])


def test_only_this_accounts_alarms_may_use_the_topic_key_and_publish():
    key = obs.alerts_key_policy("123456789012", "eu-west-1")
    (cloudwatch,) = [s for s in key["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert sorted(cloudwatch["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert cloudwatch["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"
    topic = obs.topic_policy("arn:aws:sns:eu-west-1:123456789012:t", "123456789012", "eu-west-1")
    (publish,) = [s for s in topic["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert publish["Action"] == "sns:Publish" and publish["Condition"] == cloudwatch["Condition"]


def _dashboard(platform: str) -> dict:
    return obs.dashboard_body(
        stack="dev", region="us-east-1", platform=platform, api_name="api", stage="v1", api_id="id1",
        web_acl="deepseek-dev-gateway-waf", waf_rules=["rate-per-ip", "request-size"],
        access_log_group="/gw/access",
        models={"m1": {"runtime": "vllm", "load_balancer": "net/lb/1", "target_group": "targetgroup/tg/2",
                       "asg": "asg-m1" if platform == "ec2" else None}},
        alarm_arns=["arn:aws:cloudwatch:us-east-1:1:alarm:a"], prometheus_rules=["DeepSeekKvCacheHigh"])


@pytest.mark.parametrize("platform", ["ec2", "eks"])
def test_the_dashboard_follows_the_request_path_in_rows_that_never_overlap(platform):
    widgets = _dashboard(platform)["widgets"]
    cells = set()
    for widget in widgets:
        assert widget["x"] + widget["width"] <= 24
        for dx in range(widget["width"]):
            for dy in range(widget["height"]):
                assert (widget["x"] + dx, widget["y"] + dy) not in cells
                cells.add((widget["x"] + dx, widget["y"] + dy))
    text = json.dumps(widgets)
    # Gateway, then WAF, then the model's NLB and targets, then alarm state and the access log.
    order = [text.index(marker) for marker in ('"AWS/ApiGateway"', '"AWS/WAFV2"', '"AWS/NetworkELB"',
                                               '"type": "alarm"', "SOURCE '/gw/access'")]
    assert order == sorted(order)
    assert '"WebACL", "deepseek-dev-gateway-waf", "Region", "us-east-1", "Rule", "rate-per-ip"' in text
    assert '"TargetGroup", "targetgroup/tg/2", "LoadBalancer", "net/lb/1"' in text
    if platform == "ec2":
        assert '"AutoScalingGroupName", "asg-m1"' in text and "nvidia_smi_utilization_gpu" in text
    else:
        assert "nvidia_smi" not in text and "DeepSeekKvCacheHigh" in text
    query = next(w for w in widgets if w["type"] == "log")["properties"]["query"]
    assert "requestId" in query and "body" not in query.lower()


# -------------------------------------------------------------- Prometheus rules (EKS)


def _rules(stack: str, change=None) -> dict[str, dict[str, dict]]:
    inventory = _inventory(stack, change)
    rules = k8s_monitoring.prometheus_alert_rules(inventory, stack)
    return {g["name"]: {r["alert"]: r for r in g["rules"]} for g in rules["groups"]}


def _balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0 and expr.count("{") == expr.count("}")


def test_prometheus_rules_mirror_the_cloudwatch_alarms_for_vllm_with_the_inventory_thresholds():
    groups = _rules("prod")
    assert set(groups) == {"deepseek-r1-qwen-32b", "deepseek-r1-qwen-7b"}
    rules = groups["deepseek-r1-qwen-7b"]
    assert set(rules) == {"DeepSeekGpuUtilizationHigh", "DeepSeekGpuMemoryHigh", "DeepSeekQueueDepthHigh",
                          "DeepSeekStuckGeneration", "DeepSeekReplicasBelowMinimum", "DeepSeekKvCacheHigh",
                          "DeepSeekPreemptions", "DeepSeekReplicasAtMax"}
    thresholds = Thresholds()
    assert rules["DeepSeekPreemptions"]["expr"] == (
        '60 * sum(rate(vllm:num_preemptions_total{job="model-servers", namespace="r1-qwen-7b"}[5m])) '
        f"> {thresholds.preemptions_per_minute:g}")
    assert rules["DeepSeekQueueDepthHigh"]["expr"] == (
        f'avg(sum by (pod) (vllm:num_requests_waiting{{namespace="r1-qwen-7b"}})) > {thresholds.queue_depth}')
    assert 'vllm:(kv|gpu)_cache_usage_perc' in rules["DeepSeekKvCacheHigh"]["expr"]
    assert rules["DeepSeekKvCacheHigh"]["expr"].endswith(f"> {thresholds.kv_cache_percent:g}")
    assert rules["DeepSeekReplicasAtMax"]["expr"].endswith(">= 6")
    assert "DCGM_FI_DEV_FB_USED" in rules["DeepSeekGpuMemoryHigh"]["expr"]
    assert rules["DeepSeekStuckGeneration"]["labels"]["severity"] == "critical"
    for group in groups.values():
        for rule in group.values():
            assert _balanced(rule["expr"]), rule["expr"]
            assert re.fullmatch(r"\d+m", rule["for"])
            assert rule["labels"]["stack"] == "prod"
            assert rule["annotations"]["runbook"].startswith("docs/OPERATIONS.md#")


def test_prometheus_rules_use_tgis_kv_budget_and_skip_what_ollama_cannot_report():
    staging = _inventory("staging")
    budget = render_for_inventory(staging, staging.models[0]).capacity.max_batch_total_tokens
    tgi = _rules("staging")["deepseek-r1-llama-8b"]
    assert tgi["DeepSeekQueueDepthHigh"]["expr"].startswith("avg(sum by (pod) (tgi_queue_size{")
    assert f"/ {budget}" in tgi["DeepSeekKvCacheHigh"]["expr"]

    def to_ollama(raw):
        model = raw["models"][0]
        model.update(runtime="ollama", quantization="q4_k_m", hf_repo="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
                     weights={"source": "s3", "s3_uri": "s3://acme-weights/qwen/", "manifest_sha256": "a" * 64})

    def to_one_ollama(raw):
        raw["models"] = raw["models"][:1]
        to_ollama(raw)

    (ollama,) = _rules("staging", to_one_ollama).values()
    assert set(ollama) == {"DeepSeekGpuUtilizationHigh", "DeepSeekGpuMemoryHigh", "DeepSeekReplicasAtMax"}
    assert ollama["DeepSeekReplicasAtMax"]["expr"].startswith("count(count by (pod) (DCGM_FI_DEV_GPU_UTIL")


def test_alertmanager_publishes_each_alert_group_to_every_topic_signed_for_the_region():
    config = k8s_monitoring.alertmanager_config(["arn:aws:sns:us-east-1:1:own", "arn:aws:sns:us-east-1:1:pager"],
                                                "us-east-1", "prod")
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert [c["topic_arn"] for c in receiver["sns_configs"]] == ["arn:aws:sns:us-east-1:1:own",
                                                                 "arn:aws:sns:us-east-1:1:pager"]
    assert all(c["sigv4"] == {"region": "us-east-1"} and c["send_resolved"] for c in receiver["sns_configs"])
    policy = k8s_monitoring.publish_policy(["arn:own"], "arn:key", "us-east-1")
    assert policy["Statement"][1]["Condition"] == {"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}}


# ------------------------------------------------------------------- the real program


def test_ec2_alarms_notify_the_encrypted_topic_and_watch_every_model_and_its_hosts():
    @pulumi.runtime.test
    def check_stack():
        program = start("dev")
        inventory = program["inventory"]
        fleets, lbs, gateway = program["platform"].fleets, program["platform"].load_balancers, program["gateway"]
        observability = program["observability"]

        def check(args):
            registrations, topic, key, asgs, lb_suffixes, tg_suffixes, access_group, api_id = args
            (topic_reg,) = _by_type(registrations, "aws:sns/topic:Topic")
            assert topic_reg.inputs["kmsMasterKeyId"] == key  # the alerts key, not aws/sns
            key_policy = _policy(next(r for r in registrations if r.name == "observability-alerts-key").inputs["policy"])
            assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy["Statement"])
            emails = [r.inputs for r in _by_type(registrations, "aws:sns/topicSubscription:TopicSubscription")]
            assert [(e["protocol"], e["endpoint"], e["topic"]) for e in emails] == [
                ("email", address, topic) for address in inventory.observability.alarms.emails]

            alarms = _alarms(registrations)
            for model in inventory.models:
                for key_name in ("no-healthy-targets", "unhealthy-targets", "gpu-utilization", "gpu-memory",
                                 "queue-depth"):
                    assert f"deepseek-dev-{model.name}-{key_name}" in alarms
            for name in ("gateway-5xx-rate", "gateway-429-rate", "gateway-latency-p99",
                         "gateway-integration-latency-p95", "gateway-time-to-first-byte-p95"):
                assert f"deepseek-dev-{name}" in alarms
            assert "deepseek-dev-r1-qwen-7b-kv-cache" in alarms
            for alarm in alarms.values():
                assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic]
                assert alarm["alarmDescription"].startswith("[") and "docs/OPERATIONS.md#" in alarm["alarmDescription"]
            gpu = alarms["deepseek-dev-r1-qwen-7b-gpu-utilization"]
            assert gpu["metricName"] == "nvidia_smi_utilization_gpu"
            assert gpu["dimensions"] == {"AutoScalingGroupName": asgs["r1-qwen-7b"]}
            queue = alarms["deepseek-dev-r1-qwen-1-5b-gguf-queue-depth"]
            assert queue["dimensions"] == {"Stack": "dev", "Model": "r1-qwen-1-5b-gguf"}
            unhealthy = alarms["deepseek-dev-r1-qwen-7b-unhealthy-targets"]
            assert unhealthy["dimensions"] == {"TargetGroup": tg_suffixes["r1-qwen-7b"],
                                               "LoadBalancer": lb_suffixes["r1-qwen-7b"]}
            latency = alarms["deepseek-dev-gateway-latency-p99"]
            assert latency["extendedStatistic"] == "p99" and latency["evaluateLowSampleCountPercentiles"] == "ignore"
            throttled = alarms["deepseek-dev-gateway-429-rate"]["metricQueries"]
            assert {"ApiId": api_id} in [q["metric"]["dimensions"] for q in throttled if "metric" in q]

            filters = {r.name: r.inputs for r in _by_type(registrations, "aws:cloudwatch/logMetricFilter:LogMetricFilter")}
            assert {f["logGroupName"] for f in filters.values()} == {access_group}
            assert filters["observability-gateway-429"]["pattern"] == obs.THROTTLED_PATTERN
            assert filters["observability-gateway-ttfb"]["metricTransformation"]["value"] == "$.timeToFirstContent"

            (dashboard,) = _by_type(registrations, "aws:cloudwatch/dashboard:Dashboard")
            assert dashboard.inputs["dashboardName"] == "deepseek-dev"
            body = dashboard.inputs["dashboardBody"]
            widgets = json.loads(body)["widgets"]
            assert len(widgets) > 10
            for model in inventory.models:
                assert asgs[model.name] in body and lb_suffixes[model.name] in body
            alarm_widget = next(w for w in widgets if w["type"] == "alarm")
            assert len(alarm_widget["properties"]["alarms"]) == len(alarms)

        return pulumi.Output.all(
            program.settled(), observability.topic_arn, observability.alerts_key_arn,
            pulumi.Output.all(**{n: f.asg_name for n, f in fleets.items()}),
            pulumi.Output.all(**{n: lb.arn_suffix for n, lb in lbs.items()}),
            pulumi.Output.all(**{n: lb.target_group_arn_suffix for n, lb in lbs.items()}),
            gateway.access_log_group.name, gateway.rest_api_id).apply(check)

    check_stack()


def test_eks_alerts_come_from_the_autoscalers_prometheus_through_alertmanager_to_the_same_topics():
    @pulumi.runtime.test
    def check_stack():
        program = start("prod")
        inventory = program["inventory"]
        observability = program["observability"]

        def check(args):
            registrations, topic, key = args
            extra = inventory.observability.alarms.sns_topic_arns
            releases = {r.inputs["name"]: r for r in _by_type(registrations, RELEASE)}
            prometheus = releases["prometheus"].inputs["values"]
            assert prometheus["server"]["alertmanagers"] == [
                {"static_configs": [{"targets": [k8s_monitoring.ALERTMANAGER_TARGET]}]}]
            assert prometheus["serverFiles"]["alerting_rules.yml"] == json.loads(json.dumps(
                k8s_monitoring.prometheus_alert_rules(inventory, "prod")))
            server_config = prometheus["serverFiles"]["prometheus.yml"]
            assert server_config["rule_files"] == ["/etc/config/recording_rules.yml", "/etc/config/alerting_rules.yml"]
            # The scrape path stays the autoscaler's: no second pipeline.
            assert [j["job_name"] for j in server_config["scrape_configs"]] == ["model-servers", "dcgm-exporter"]

            alertmanager = releases["alertmanager"]
            repo, chart, version = k8s_monitoring.ALERTMANAGER_CHART
            assert (alertmanager.inputs["chart"], alertmanager.inputs["version"]) == (chart, version)
            values = alertmanager.inputs["values"]
            assert values["persistence"] == {"enabled": False}
            assert values["serviceAccount"]["name"] == "alertmanager"
            sns = values["config"]["receivers"][0]["sns_configs"]
            assert [c["topic_arn"] for c in sns] == [topic, *extra]
            (association,) = [r for r in _by_type(registrations, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
                              if r.inputs["serviceAccount"] == "alertmanager"]
            assert association.inputs["namespace"] == "monitoring"
            assert association.urn in alertmanager.dependencies
            role_policy = _policy(next(r for r in registrations
                                       if r.name == "eks-monitoring-alertmanager-policy").inputs["policy"])
            publish = next(s for s in role_policy["Statement"] if s["Action"] == "sns:Publish")
            assert publish["Resource"] == [topic, *extra]
            assert next(s for s in role_policy["Statement"] if s["Sid"] == "EncryptThroughSns")["Resource"] == key

            alarms = _alarms(registrations)
            # On EKS the GPU and runtime signals are Prometheus rules, not CloudWatch alarms.
            assert not [n for n in alarms if n.endswith(("gpu-utilization", "queue-depth", "kv-cache"))]
            assert "deepseek-prod-r1-qwen-32b-no-healthy-targets" in alarms
            assert all(a["alarmActions"] == [topic, *extra] for a in alarms.values())

            results = k8s_objects.validate_all(registrations, inventory.eks.kubernetes_version)
            assert k8s_objects.failures(results) == []
            assert [r.obj.kind for r in results if r.obj.name == "alertmanager"] == ["NetworkPolicy"]

            (dashboard,) = _by_type(registrations, "aws:cloudwatch/dashboard:Dashboard")
            assert "DeepSeekStuckGeneration" in dashboard.inputs["dashboardBody"]

        return pulumi.Output.all(program.settled(), observability.topic_arn,
                                 observability.alerts_key_arn).apply(check)

    check_stack()


def _user_data(registrations) -> str:
    return "\n".join(host_provisioning.user_data_text(r.inputs["userData"])
                     for r in _by_type(registrations, "aws:ec2/launchTemplate:LaunchTemplate")
                     if r.inputs.get("userData"))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_log_group_is_encrypted_kept_for_the_environment_and_free_of_prompts(stack):
    @pulumi.runtime.test
    def check_stack():
        program = start(stack)
        inventory = program["inventory"]

        def check(args):
            registrations, logs_key = args
            groups = _by_type(registrations, LOG_GROUP)
            assert len(groups) >= 4  # flow, access, execution, WAF, plus runtime or control plane
            for group in groups:
                if group.inputs.get("name") == "/deepseek-serving/session-manager":
                    # Outlives the stack with a key of its own (tests/test_account_settings.py).
                    assert group.inputs.get("kmsKeyId"), group.name
                    continue
                assert group.inputs.get("kmsKeyId") == logs_key, group.name
                wanted = (inventory.network.flow_log_retention_days if group.name == "net-flow-logs"
                          else inventory.observability.log_retention_days)
                assert group.inputs.get("retentionInDays") == wanted, group.name

            # The gateway logs metadata as JSON, one id per request, and hands it to the backend.
            stages = _by_type(registrations, "aws:apigateway/stage:Stage")
            assert len(stages) == (len(inventory.gateway.tiers) if inventory.gateway.stage_per_tier else 1)
            for stage in stages:
                fields = json.loads(stage.inputs["accessLogSettings"]["format"])
                assert {"requestId", "apiId", "status", "integrationLatency", "timeToFirstContent"} <= set(fields)
                assert not [v for v in fields.values() if "$input" in v or "body" in v.lower()]
            integrations = _by_type(registrations, "aws:apigateway/integration:Integration")
            assert integrations and all(i.inputs["requestParameters"]["integration.request.header.X-Request-Id"]
                                        == "context.requestId" for i in integrations)
            for settings in _by_type(registrations, "aws:apigateway/methodSettings:MethodSettings"):
                assert settings.inputs["settings"]["dataTraceEnabled"] is False
                assert settings.inputs["settings"]["loggingLevel"] == "ERROR"
            (waf_logging,) = _by_type(registrations, "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
            redacted = {f["singleHeader"]["name"] for f in waf_logging.inputs["redactedFields"]}
            assert {"authorization", "x-api-key"} <= redacted

            # No runtime is started with prompt or completion logging, on either platform.
            text = _user_data(registrations)
            for deployment in _by_type(registrations, "kubernetes:apps/v1:Deployment"):
                for container in deployment.inputs["spec"]["template"]["spec"]["containers"]:
                    text += " ".join(container.get("args", []) + container.get("command", []))
                    text += " ".join(f"{e['name']}={e.get('value', '')}" for e in container.get("env", []))
            assert text  # something was inspected
            for flag in PROMPT_LOGGING:
                assert flag.lower() not in text.lower(), flag

        return pulumi.Output.all(program.settled(), program["keys"].logs_key_arn).apply(check)

    check_stack()


def test_every_alarm_and_alert_names_a_runbook_section_that_exists():
    from tests.conftest import ROOT

    headings = set(re.findall(r"^### (\S+)$", (ROOT / "docs" / "OPERATIONS.md").read_text(), re.M))
    anchors = set()
    for stack in ("dev", "staging", "prod"):
        inventory = _inventory(stack)
        specs = obs.gateway_alarms(inventory.observability.alarms.thresholds, api_name="a", stage="s",
                                   api_id="i", streaming=True)
        for model in inventory.models:
            launch = render_for_inventory(inventory, model)
            specs += obs.load_balancer_alarms(model, load_balancer="l", target_group="t", startup_seconds=60)
            specs += obs.ec2_fleet_alarms(model, launch, inventory.observability.alarms.thresholds,
                                          stack=stack, asg_name="g")
        anchors |= {spec.description(stack).rsplit("#", 1)[1] for spec in specs}
        rules = k8s_monitoring.prometheus_alert_rules(inventory, stack)
        anchors |= {r["annotations"]["runbook"].rsplit("#", 1)[1] for g in rules["groups"] for r in g["rules"]}
    assert anchors and anchors <= headings, anchors - headings


@pytest.mark.parametrize("runtime", ["vllm", "tgi"])
def test_the_ec2_dashboard_shows_token_metrics_the_hosts_really_publish(runtime):
    body = obs.dashboard_body(
        stack="dev", region="us-east-1", platform="ec2", api_name="api", stage="v1", api_id="id1",
        web_acl="w", waf_rules=[], access_log_group="/gw/access",
        models={"m1": {"runtime": runtime, "load_balancer": "net/lb/1", "target_group": "targetgroup/tg/2",
                       "asg": "asg-m1"}},
        alarm_arns=[])
    published = ({name for name, *_ in host_provisioning.GATE_SERIES[runtime]}
                 | set(host_provisioning.AGENT_SERIES[runtime]))
    token_widgets = [w for w in body["widgets"] if w["type"] == "metric"
                     and any(word in w["properties"]["title"] for word in ("token", "preemptions"))]
    titles = {w["properties"]["title"] for w in token_widgets}
    assert "m1: token timings (s)" in titles and "m1: tokens per second" in titles
    assert ("m1: preemptions (recomputations) per minute" in titles) == (runtime == "vllm")
    for widget in token_widgets:
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                continue  # a metric-math expression over the lines below
            namespace, name = line[0], line[1]
            assert namespace == obs.SERVING_NAMESPACE and name in published, (widget["properties"]["title"], name)
            assert line[2:6] == ["Stack", "dev", "Model", "m1"]
