"""Token-level metrics on EKS: every name a rule or a dashboard reads is one the runtimes export.

components/serving/metrics.py keeps one list per runtime (with its sources); the recording
rules, the alert rules and the Grafana dashboards are checked against it, so a metric
renamed by a runtime upgrade (vLLM's `gpu_cache_usage_perc` -> `kv_cache_usage_perc`) fails
here instead of emptying a panel. The rendered stacks carry the rules, the dashboards, the
encrypted metrics volume and Grafana.
"""
from __future__ import annotations

import json

import pytest

from components.config import Inventory
from components.eks import addons as k8s_addons
from components.eks import grafana
from components.eks import monitoring as k8s_monitoring
from components.observability import (GATEWAY_NAMESPACE, NLB_NAMESPACE, SERVING_NAMESPACE, THROTTLED_METRIC,
                                      TTFB_METRIC)
from components.serving import metrics
from tests import stack_runs
from tests.promql import metric_names
from tests.test_model_service import ollama_run

RECORDED = {runtime: {r["record"] for r in k8s_monitoring.token_recording_rules(runtime)}
            for runtime in metrics.RUNTIME_METRICS}
GPU_RECORDED = {r["record"] for r in k8s_monitoring.gpu_recording_rules()}
# CloudWatch metrics the Ollama dashboard may read: those the stack's alarms already use.
CLOUDWATCH = {(GATEWAY_NAMESPACE, "Latency"), (SERVING_NAMESPACE, TTFB_METRIC), (SERVING_NAMESPACE, THROTTLED_METRIC),
              (NLB_NAMESPACE, "ActiveFlowCount_TLS"), (NLB_NAMESPACE, "NewFlowCount_TLS")}


def _inventory(stack: str, runtime: str = "") -> Inventory:
    """A stack's inventory; with `runtime`, only its models of that runtime."""
    raw = stack_runs.inventory_of(stack)
    if runtime:
        raw["models"] = [m for m in raw["models"] if m["runtime"] == runtime]
    return Inventory.model_validate(raw)


def allowed_names(runtime: str) -> set[str]:
    return (set(metrics.exported_series(runtime)) | set(metrics.gpu_series()) | RECORDED[runtime] | GPU_RECORDED
            | set(metrics.SCRAPE_SERIES))


def unknown_names(expr: str, runtime: str) -> set[str]:
    return metric_names(expr) - allowed_names(runtime)


# ----------------------------------------------------------------- the name checker


def test_the_checker_reads_metric_names_and_nothing_else():
    expr = ('histogram_quantile(0.95, sum by (namespace, le) (rate(vllm:time_to_first_token_seconds_bucket'
            '{job="model-servers", namespace=~"a|b"}[5m]))) > 1e3 and on (pod) up{x="y"} == 1 '
            'or 60 * deepseek:preemptions:rate5m{namespace="${model:text}"}[$__rate_interval] offset 5m')
    assert metric_names(expr) == {"vllm:time_to_first_token_seconds_bucket", "up", "deepseek:preemptions:rate5m"}


@pytest.mark.parametrize("runtime, expr, wrong", [
    ("vllm", "rate(vllm:num_preemptions[5m])", "vllm:num_preemptions"),           # a counter without _total
    ("vllm", "vllm:gpu_cache_usage_perc", "vllm:gpu_cache_usage_perc"),           # hidden in 0.11
    ("tgi", "rate(tgi_request_count_total[5m])", "tgi_request_count_total"),      # TGI adds no _total
    ("tgi", "vllm:num_requests_waiting", "vllm:num_requests_waiting"),            # another runtime's
    ("ollama", "ollama_requests_total", "ollama_requests_total"),                 # Ollama has no /metrics
])
def test_names_a_runtime_does_not_export_are_caught(runtime, expr, wrong):
    assert unknown_names(expr, runtime) == {wrong}


def test_the_lists_follow_each_exporter_s_naming():
    vllm, tgi = metrics.exported_series("vllm"), metrics.exported_series("tgi")
    assert {"vllm:num_preemptions_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
            "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
            "vllm:inter_token_latency_seconds_bucket", "vllm:request_queue_time_seconds_sum"} <= vllm
    assert {"tgi_request_count", "tgi_request_queue_duration_bucket", "tgi_batch_current_max_tokens",
            "tgi_request_generated_tokens_sum"} <= tgi
    assert metrics.exported_series("ollama") == frozenset()


# ------------------------------------------------------------------- rules


@pytest.mark.parametrize("runtime", ["vllm", "tgi"])
def test_recording_rules_read_only_what_the_runtime_exports(runtime):
    rules = k8s_monitoring.token_recording_rules(runtime)
    assert rules
    for rule in rules:
        assert metric_names(rule["expr"]) <= set(metrics.exported_series(runtime)), rule
        assert rule["record"].startswith("deepseek:")
    for rule in k8s_monitoring.gpu_recording_rules():
        assert metric_names(rule["expr"]) <= set(metrics.gpu_series()), rule


def test_both_runtimes_record_the_token_signals_under_the_same_names():
    shared = {"deepseek:time_per_output_token_seconds:p95", "deepseek:queue_time_seconds:p95",
              "deepseek:prompt_tokens:rate5m", "deepseek:generation_tokens:rate5m", "deepseek:kv_cache_usage:ratio",
              "deepseek:requests_waiting:sum", "deepseek:requests_running:sum", "deepseek:e2e_latency_seconds:p99"}
    assert shared <= RECORDED["vllm"] and shared <= RECORDED["tgi"]
    # Only vLLM measures time to first token and preempts.
    assert {"deepseek:time_to_first_token_seconds:p95", "deepseek:preemptions:rate5m"} <= RECORDED["vllm"] - RECORDED["tgi"]
    assert RECORDED["ollama"] == set()


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_alert_rules_of_the_committed_stacks_read_exported_names(stack):
    inventory = _inventory(stack)
    runtime_of = {f"deepseek-{m.name}": m.runtime for m in inventory.models}
    for group in k8s_monitoring.prometheus_alert_rules(inventory, stack)["groups"]:
        for rule in group["rules"]:
            assert unknown_names(rule["expr"], runtime_of[group["name"]]) == set(), rule["alert"]


def test_kv_cache_and_preemption_alerts_exist_for_vllm_and_kv_for_tgi():
    prod = {r["alert"]: r for g in k8s_monitoring.prometheus_alert_rules(_inventory("prod"), "prod")["groups"]
            for r in g["rules"]}
    assert "vllm:num_preemptions_total" in prod["DeepSeekPreemptions"]["expr"]
    assert prod["DeepSeekPreemptions"]["annotations"]["runbook"].endswith("#preemptions")
    staging = {r["alert"] for g in k8s_monitoring.prometheus_alert_rules(_inventory("staging", "tgi"), "staging")["groups"]
               for r in g["rules"]}
    assert "DeepSeekKvCacheHigh" in staging and "DeepSeekPreemptions" not in staging


def test_recording_rule_file_has_a_group_per_runtime_in_the_inventory():
    groups = {g["name"] for g in k8s_monitoring.prometheus_recording_rules(_inventory("prod"))["groups"]}
    assert groups == {"deepseek-vllm-tokens", "deepseek-gpu"}
    groups = {g["name"] for g in k8s_monitoring.prometheus_recording_rules(_inventory("staging", "tgi"))["groups"]}
    assert groups == {"deepseek-tgi-tokens", "deepseek-gpu"}
    groups = {g["name"] for g in k8s_monitoring.prometheus_recording_rules(_inventory("staging"))["groups"]}
    assert groups == {"deepseek-tgi-tokens", "deepseek-vllm-tokens", "deepseek-gpu"}


# -------------------------------------------------------------- dashboards


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


@pytest.mark.parametrize("runtime", grafana.RUNTIMES)
def test_every_dashboard_query_reads_names_its_runtime_exports_or_records(runtime):
    dashboard = grafana.load_dashboard(runtime)
    queries = 0
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if target["datasource"]["uid"] == "prometheus":
                assert unknown_names(target["expr"], runtime) == set(), (panel["title"], target["expr"])
                queries += 1
            else:
                assert target["datasource"]["uid"] == "cloudwatch"
                assert (target["namespace"], target["metricName"]) in CLOUDWATCH, panel["title"]
    assert queries >= 5


@pytest.mark.parametrize("runtime", grafana.RUNTIMES)
def test_dashboards_are_well_formed_grafana_json(runtime):
    dashboard = grafana.load_dashboard(runtime)
    assert dashboard["uid"] == f"deepseek-{runtime}"
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "model" in variables
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for target in panel.get("targets", []):
            text = json.dumps(target)
            for variable in ("$model", "$api_name", "$stage", "$api_id"):
                if variable in text:
                    assert variable[1:] in variables, (panel["title"], variable)
        if panel["type"] in ("timeseries", "gauge"):
            assert panel["targets"], panel["title"]


def test_dashboards_cover_request_path_tokens_kv_cache_and_gpu():
    titles = {runtime: " | ".join(p["title"] for p in _panels(grafana.load_dashboard(runtime))).lower()
              for runtime in grafana.RUNTIMES}
    for word in ("time to first token", "time per output token", "tokens per second", "kv cache", "preemptions",
                 "queue time", "gpu utilisation", "gpu memory"):
        assert word in titles["vllm"], word
    for word in ("time per output token", "tokens per second", "kv tokens", "queue time", "gpu utilisation"):
        assert word in titles["tgi"], word
    for word in ("first byte", "load balancer", "gpu utilisation", "429"):
        assert word in titles["ollama"], word


def test_the_ollama_dashboard_gets_the_deployment_s_names():
    from tests.test_model_service import _inventory as variant_inventory

    inventory = variant_inventory("staging", "ollama")
    text = grafana.dashboard_json("ollama", inventory, api_name="deepseek-staging", stage="v1", api_id="abc123",
                                  load_balancers={inventory.models[0].name: "net/lb-1/0123"})
    values = {v["name"]: v["query"] for v in json.loads(text)["templating"]["list"]}
    assert values == {"model": f"{inventory.models[0].name} : net/lb-1/0123", "api_name": "deepseek-staging",
                      "stage": "v1", "api_id": "abc123"}


# ----------------------------------------------------------- rendered stacks


def _release(run, name: str) -> dict:
    (release,) = [r.inputs for r in run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == name]
    return release


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_prometheus_keeps_its_history_on_an_encrypted_volume_and_records_token_signals(stack):
    run = stack_runs.preview_run(stack)
    inventory = stack_runs.inventory_of(stack)
    days = inventory["observability"].get("metrics_retention_days", 15)
    server = _release(run, "prometheus")["values"]["server"]
    assert server["persistentVolume"]["enabled"] is True
    assert server["persistentVolume"]["storageClass"] == k8s_addons.ENCRYPTED_STORAGE_CLASS
    assert server["retention"] == f"{days}d" and "emptyDir" not in server
    (storage_class,) = [r.inputs for r in run.by_type("kubernetes:storage.k8s.io/v1:StorageClass")]
    assert storage_class["metadata"]["name"] == k8s_addons.ENCRYPTED_STORAGE_CLASS
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"]["encrypted"] == "true" and storage_class["parameters"]["type"] == "gp3"
    assert storage_class["parameters"]["kmsKeyId"]  # the stack's data key (unknown before it exists)
    files = _release(run, "prometheus")["values"]["serverFiles"]
    assert files["prometheus.yml"]["rule_files"][0] == "/etc/config/recording_rules.yml"
    recorded = {r["record"] for g in files["recording_rules.yml"]["groups"] for r in g["rules"]}
    runtimes = {m["runtime"] for m in inventory["models"]}
    for runtime in runtimes:
        assert RECORDED[runtime] <= recorded


def test_the_ebs_csi_driver_may_use_the_data_key_only_for_ec2_grants():
    policy = k8s_addons._ebs_csi_key_policy("arn:aws:kms:us-east-1:123456789012:key/k")
    grants = next(s for s in policy["Statement"] if s["Sid"] == "GrantsForAttachedVolumes")
    assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert all(s["Resource"] == "arn:aws:kms:us-east-1:123456789012:key/k" for s in policy["Statement"])


@pytest.mark.parametrize("stack, runtimes", [("staging", {"tgi", "vllm"}), ("prod", {"vllm"})])
def test_grafana_is_private_and_provisions_the_stack_s_runtime_dashboards(stack, runtimes):
    run = stack_runs.preview_run(stack)
    values = _release(run, "grafana")["values"]
    assert values["service"]["type"] == "ClusterIP" and values["ingress"]["enabled"] is False
    assert values["dashboardsConfigMaps"] == {grafana.DASHBOARD_PROVIDER: grafana.DASHBOARDS_CONFIGMAP}
    sources = {d["uid"]: d for d in values["datasources"]["datasources.yaml"]["datasources"]}
    assert sources["prometheus"]["url"] == k8s_addons.PROMETHEUS_URL
    assert sources["cloudwatch"]["jsonData"]["authType"] == "default"
    (configmap,) = [r.inputs for r in run.by_type("kubernetes:core/v1:ConfigMap")
                    if r.inputs["metadata"]["name"] == grafana.DASHBOARDS_CONFIGMAP]
    assert set(configmap["data"]) == {f"{r}.json" for r in runtimes}
    for text in configmap["data"].values():
        assert json.loads(text)["uid"].startswith("deepseek-")
    (policy,) = [r.inputs for r in run.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                 if r.inputs["metadata"]["name"] == grafana.GRAFANA]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and not policy["spec"].get("ingress")


def test_grafana_reads_cloudwatch_metrics_and_nothing_else():
    actions = {a for s in grafana.cloudwatch_read_policy()["Statement"] for a in s["Action"]}
    assert actions and all(a.startswith("cloudwatch:") and a.split(":")[1].startswith(("Get", "List", "Describe"))
                           for a in actions)


def test_an_ollama_cluster_gets_the_ollama_dashboard_and_no_token_recording_rules():
    run = ollama_run()
    (configmap,) = [r.inputs for r in run.by_type("kubernetes:core/v1:ConfigMap")
                    if r.inputs["metadata"]["name"] == grafana.DASHBOARDS_CONFIGMAP]
    assert set(configmap["data"]) == {"ollama.json"}
    files = _release(run, "prometheus")["values"]["serverFiles"]
    assert [g["name"] for g in files["recording_rules.yml"]["groups"]] == ["deepseek-gpu"]
