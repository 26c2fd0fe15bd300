"""EKS: alert rules on the cluster's Prometheus, and the Alertmanager that sends them to the stack's topic.

The scrape path is the one the autoscaler already uses (components/eks/addons.py): the
in-cluster Prometheus server scrapes the model pods' /metrics (job `model-servers`, pods that
opt in with prometheus.io/* annotations, labelled `namespace` and `pod`) and the DCGM
exporter (job `dcgm-exporter`, GPU series labelled with the consuming pod's namespace and
pod). A second pipeline (Amazon Managed Prometheus scraper, CloudWatch agent with
Prometheus) would scrape the same endpoints again and could disagree with the autoscaler;
the cluster has no Prometheus operator either, so ServiceMonitor/PodMonitor/PrometheusRule
objects would have nobody to read them. Instead:
- alert rules are a rule file of that Prometheus server (chart value
  `serverFiles."alerting_rules.yml"`, loaded through `rule_files`), rendered here from the
  inventory thresholds, the same numbers the CloudWatch alarms use on EC2;
- the server sends firing alerts to an Alertmanager in the `monitoring` namespace
  (`server.alertmanagers`; the prometheus-community `alertmanager` chart, a release of its
  own so Pod Identity can be bound before its pod starts), which publishes them to the
  stack's SNS topic (receiver
  `sns_configs`, signed with SigV4 through an EKS Pod Identity role that may only publish to
  those topics and use the topic key through SNS). E-mail and paging subscribers therefore
  see CloudWatch alarms and Prometheus alerts on one topic.

Token-level signals are recording rules of the same server (`recording_rules.yml`):
`deepseek:<signal>` per model namespace, the same names for vLLM and TGI where both measure
it (time per output token, queue, prefill and end-to-end time at p50/p95/p99, prompt and
generation tokens per second, KV cache use, requests running and waiting), time to first
token and preemptions (recomputations) for vLLM only, GPU signals from DCGM for every model.
The Grafana dashboards (components/eks/grafana.py) read them; every raw name they use is
checked against components/serving/metrics.py.

Series and labels (names as the runtimes and the exporter export them):
- vLLM: `vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`
  (0..1; `vllm:gpu_cache_usage_perc` before v0.10, matched too).
- TGI: `tgi_queue_size`, `tgi_batch_current_size`, `tgi_batch_current_max_tokens` (tokens the
  running batches hold, against the `--max-batch-total-tokens` KV budget).
- DCGM exporter: `DCGM_FI_DEV_GPU_UTIL` (%), `DCGM_FI_DEV_FB_USED` / `DCGM_FI_DEV_FB_FREE` (MiB).
- Ollama exports no metrics: its GPU alerts come from DCGM and its replica count from the
  number of pods holding a GPU in its namespace.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.alerting import RUNBOOK, STUCK_GPU_PERCENT
from components.config import Inventory, Model, Thresholds
from components.eks import network_policy as netpol
from components.eks.cluster import POOL_LABEL, SYSTEM_POOL, GpuCluster
from components.eks.addons import MONITORING_NAMESPACE, PROMETHEUS_SERVER_LABELS, ClusterAddons
from components.serving.runtimes import RuntimeLaunch, render_for_inventory

ALERTMANAGER = "alertmanager"
ALERTMANAGER_PORT = 9093
# prometheus-community chart `alertmanager` 1.21.0 = Alertmanager v0.28.1 (its Chart.yaml at
# the helm-charts commit that also releases prometheus 27.19.0, the chart k8s_addons pins).
# Its SNS notifier signs with the AWS SDK's default credential chain, which reads the EKS
# Pod Identity credentials the agent serves.
ALERTMANAGER_CHART = ("https://prometheus-community.github.io/helm-charts", "alertmanager", "1.21.0")
ALERTMANAGER_TARGET = f"{ALERTMANAGER}.{MONITORING_NAMESPACE}.svc.cluster.local:{ALERTMANAGER_PORT}"
SCRAPE_JOB = "model-servers"

_QUEUE = {"vllm": "vllm:num_requests_waiting", "tgi": "tgi_queue_size"}
_RUNNING = {"vllm": "vllm:num_requests_running", "tgi": "tgi_batch_current_size"}
_VLLM_KV = '{__name__=~"vllm:(kv|gpu)_cache_usage_perc", namespace="%s"}'


# ------------------------------------------------------------------------ recording rules

# Token-level signals under one name per meaning, whatever the runtime (labels: namespace =
# the model). Dashboards and alerts read these; components/serving/metrics.py lists the raw
# series they are computed from, and tests check every name against it.
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
_MODEL_SERVERS = f'job="{SCRAPE_JOB}"'


def _quantiles(record: str, histogram: str, extra: str = "") -> list[dict]:
    selector = f"{{{_MODEL_SERVERS}{', ' + extra if extra else ''}}}"
    return [{"record": f"deepseek:{record}:{name}",
             "expr": f"histogram_quantile({q}, sum by (namespace, le) (rate({histogram}_bucket{selector}[5m])))"}
            for name, q in QUANTILES]


def _per_model(record: str, expr: str) -> dict:
    return {"record": f"deepseek:{record}", "expr": expr}


def token_recording_rules(runtime: str) -> list[dict]:
    """Recording rules for one runtime family (none for Ollama: it exports no metrics)."""
    m = _MODEL_SERVERS
    if runtime == "vllm":
        return [
            *_quantiles("time_to_first_token_seconds", "vllm:time_to_first_token_seconds"),
            *_quantiles("time_per_output_token_seconds", "vllm:inter_token_latency_seconds"),
            *_quantiles("queue_time_seconds", "vllm:request_queue_time_seconds"),
            *_quantiles("prefill_time_seconds", "vllm:request_prefill_time_seconds"),
            *_quantiles("e2e_latency_seconds", "vllm:e2e_request_latency_seconds"),
            _per_model("prompt_tokens:rate5m", f"sum by (namespace) (rate(vllm:prompt_tokens_total{{{m}}}[5m]))"),
            _per_model("generation_tokens:rate5m",
                       f"sum by (namespace) (rate(vllm:generation_tokens_total{{{m}}}[5m]))"),
            _per_model("requests:rate5m", f"sum by (namespace) (rate(vllm:request_success_total{{{m}}}[5m]))"),
            _per_model("kv_cache_usage:ratio", f"max by (namespace) (vllm:kv_cache_usage_perc{{{m}}})"),
            _per_model("preemptions:rate5m", f"sum by (namespace) (rate(vllm:num_preemptions_total{{{m}}}[5m]))"),
            _per_model("prefix_cache_hit:ratio5m",
                       f"sum by (namespace) (rate(vllm:prefix_cache_hits_total{{{m}}}[5m])) / "
                       f"sum by (namespace) (rate(vllm:prefix_cache_queries_total{{{m}}}[5m]))"),
            _per_model("requests_waiting:sum", f"sum by (namespace) (vllm:num_requests_waiting{{{m}}})"),
            _per_model("requests_running:sum", f"sum by (namespace) (vllm:num_requests_running{{{m}}})"),
        ]
    if runtime == "tgi":
        # No TTFT histogram in TGI: queue time and prefill time are its parts.
        return [
            *_quantiles("time_per_output_token_seconds", "tgi_request_mean_time_per_token_duration"),
            *_quantiles("queue_time_seconds", "tgi_request_queue_duration"),
            *_quantiles("prefill_time_seconds", "tgi_batch_inference_duration", 'method="prefill"'),
            *_quantiles("e2e_latency_seconds", "tgi_request_duration"),
            _per_model("prompt_tokens:rate5m", f"sum by (namespace) (rate(tgi_request_input_length_sum{{{m}}}[5m]))"),
            _per_model("generation_tokens:rate5m",
                       f"sum by (namespace) (rate(tgi_request_generated_tokens_sum{{{m}}}[5m]))"),
            _per_model("requests:rate5m", f"sum by (namespace) (rate(tgi_request_success{{{m}}}[5m]))"),
            _per_model("request_failures:rate5m",
                       f"sum by (namespace, err) (rate(tgi_request_failure{{{m}}}[5m]))"),
            _per_model("kv_cache_usage:ratio",
                       f"max by (namespace) (tgi_batch_current_max_tokens{{{m}}} / tgi_batch_max_total_tokens{{{m}}})"),
            _per_model("requests_waiting:sum", f"sum by (namespace) (tgi_queue_size{{{m}}})"),
            _per_model("requests_running:sum", f"sum by (namespace) (tgi_batch_current_size{{{m}}})"),
        ]
    return []


def gpu_recording_rules() -> list[dict]:
    """Per-model GPU signals from the DCGM exporter (every runtime, Ollama included)."""
    return [
        _per_model("gpu_utilization:avg", 'avg by (namespace) (DCGM_FI_DEV_GPU_UTIL{namespace!=""})'),
        _per_model("gpu_memory_used:ratio_max",
                   'max by (namespace) (DCGM_FI_DEV_FB_USED{namespace!=""} / '
                   '(DCGM_FI_DEV_FB_USED{namespace!=""} + DCGM_FI_DEV_FB_FREE{namespace!=""}))'),
        _per_model("gpu_power_watts:sum", 'sum by (namespace) (DCGM_FI_DEV_POWER_USAGE{namespace!=""})'),
    ]


def prometheus_recording_rules(inventory: Inventory) -> dict:
    """The recording rule file: one group per runtime family in the inventory, and the GPU group."""
    runtimes = sorted({model.runtime for model in inventory.models} - {"ollama"})
    groups = [{"name": f"deepseek-{runtime}-tokens", "interval": "30s", "rules": token_recording_rules(runtime)}
              for runtime in runtimes]
    groups.append({"name": "deepseek-gpu", "interval": "30s", "rules": gpu_recording_rules()})
    return {"groups": groups}


# ---------------------------------------------------------------------------- alert rules


def _rule(alert: str, expr: str, duration: str, severity: str, model: Model, summary: str,
          anchor: str, stack: str) -> dict:
    return {
        "alert": alert,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity, "stack": stack, "model": model.name, "runtime": model.runtime},
        "annotations": {
            "summary": f"{stack}/{model.name}: {summary}",
            "description": f"{summary} Current value: {{{{ $value | printf \"%.1f\" }}}}.",
            "runbook": f"{RUNBOOK}#{anchor}",
        },
    }


def model_alert_rules(model: Model, launch: RuntimeLaunch, thresholds: Thresholds, stack: str) -> list[dict]:
    """The Prometheus twins of the EC2 CloudWatch alarms, for one model's namespace."""
    ns = model.name
    gpu = f'DCGM_FI_DEV_GPU_UTIL{{namespace="{ns}"}}'
    used, free = (f'DCGM_FI_DEV_FB_USED{{namespace="{ns}"}}', f'DCGM_FI_DEV_FB_FREE{{namespace="{ns}"}}')
    rules = [
        _rule("DeepSeekGpuUtilizationHigh", f"avg({gpu}) > {thresholds.gpu_utilization_percent:g}", "15m",
              "warning", model, f"GPUs busier than {thresholds.gpu_utilization_percent:g} % for 15 minutes: "
              "the model is saturated.", "gpu-utilization", stack),
        _rule("DeepSeekGpuMemoryHigh",
              f"max(100 * {used} / ({used} + {free})) > {thresholds.gpu_memory_percent:g}", "10m",
              "warning", model, f"a GPU's memory is more than {thresholds.gpu_memory_percent:g} % used, "
              "above what the runtime reserves.", "gpu-memory", stack),
    ]
    up = f'up{{job="{SCRAPE_JOB}", namespace="{ns}"}} == 1'
    if model.runtime in _QUEUE:
        queue, running = _QUEUE[model.runtime], _RUNNING[model.runtime]
        rules += [
            _rule("DeepSeekQueueDepthHigh",
                  f'avg(sum by (pod) ({queue}{{namespace="{ns}"}})) > {thresholds.queue_depth}', "10m",
                  "warning", model, f"more than {thresholds.queue_depth} requests waiting per replica for "
                  "10 minutes: scaling does not keep up.", "queue-depth", stack),
            _rule("DeepSeekStuckGeneration",
                  f'(sum by (pod) ({running}{{namespace="{ns}"}}) > 0) and on (pod) '
                  f'(max by (pod) ({gpu}) < {STUCK_GPU_PERCENT})', "10m",
                  "critical", model, f"a replica has requests running but its GPUs are idle (< "
                  f"{STUCK_GPU_PERCENT} %) for 10 minutes: the engine is hung; restart the pod.",
                  "stuck-generation", stack),
            _rule("DeepSeekReplicasBelowMinimum",
                  f"(count({up}) or vector(0)) < {model.min_replicas}", "15m", "warning", model,
                  f"fewer than min_replicas ({model.min_replicas}) replicas answer on /metrics for "
                  "15 minutes.", "replicas-below-minimum", stack),
        ]
        if model.runtime == "vllm":
            # v1 preempts by recomputation: each one throws away a request's KV and redoes its
            # prefill later, so a sustained rate costs throughput and latency.
            rules.append(_rule(
                "DeepSeekPreemptions",
                f'60 * sum(rate(vllm:num_preemptions_total{{job="{SCRAPE_JOB}", namespace="{ns}"}}[5m])) '
                f"> {thresholds.preemptions_per_minute:g}", "10m", "warning", model,
                f"more than {thresholds.preemptions_per_minute:g} preemptions (recomputations) per minute for "
                "10 minutes: the KV cache cannot hold the admitted concurrency.", "preemptions", stack))
        kv = _kv_expression(model, launch)
        if kv is not None:
            rules.append(_rule(
                "DeepSeekKvCacheHigh", f"{kv} > {thresholds.kv_cache_percent:g}", "10m", "warning", model,
                f"the KV cache is more than {thresholds.kv_cache_percent:g} % full for 10 minutes: long "
                "contexts are queued or preempted.", "kv-cache", stack))
    if max(model.min_replicas, 1) < model.max_replicas:
        replicas = (f"count({up})" if model.runtime in _QUEUE
                    else f"count(count by (pod) ({gpu}))")
        rules.append(_rule(
            "DeepSeekReplicasAtMax", f"{replicas} >= {model.max_replicas}", "15m", "warning", model,
            f"the model has run at its maximum of {model.max_replicas} replicas for 15 minutes: raise "
            "max_replicas (and the pool's max_size) or tighten the gateway throttle.",
            "replicas-at-max", stack))
    return rules


def _kv_expression(model: Model, launch: RuntimeLaunch) -> Optional[str]:
    if model.runtime == "vllm":
        return f"100 * max({_VLLM_KV % model.name})"
    budget = launch.capacity.max_batch_total_tokens if launch.capacity else None
    if model.runtime == "tgi" and budget:
        return f'100 * max(tgi_batch_current_max_tokens{{namespace="{model.name}"}}) / {budget}'
    return None


def prometheus_alert_rules(inventory: Inventory, stack: str) -> dict:
    """The rule file for the cluster's Prometheus: one group per model."""
    thresholds = inventory.observability.alarms.thresholds
    return {"groups": [
        {"name": f"deepseek-{model.name}",
         "rules": model_alert_rules(model, render_for_inventory(inventory, model), thresholds, stack)}
        for model in inventory.models
    ]}


def rule_names(rules: dict) -> list[str]:
    return sorted({rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule})


# ---------------------------------------------------------------------------- alertmanager


def alertmanager_config(topic_arns: Sequence[str], region: str, stack: str) -> dict:
    """One receiver publishing every alert group to each topic (the stack's, then the
    inventory's own), resolved alerts included so the on-call learns the incident ended."""
    subject = (f"[deepseek-{stack}] {{{{ .Status | toUpper }}}}: {{{{ .GroupLabels.alertname }}}} "
               "{{ .GroupLabels.model }}")
    return {
        "route": {"receiver": "sns", "group_by": ["alertname", "model"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "4h"},
        "receivers": [{"name": "sns", "sns_configs": [
            {"topic_arn": arn, "sigv4": {"region": region}, "subject": subject, "send_resolved": True}
            for arn in topic_arns]}],
    }


def publish_policy(topic_arns: Sequence[str], key_arn: str, region: str) -> dict:
    """Alertmanager may publish to these topics and use the topic key only through SNS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
             "Resource": list(topic_arns)},
            {"Sid": "EncryptThroughSns", "Effect": "Allow",
             "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": key_arn,
             "Condition": {"StringEquals": {"kms:ViaService": f"sns.{region}.amazonaws.com"}}},
        ],
    }


def alertmanager_labels() -> dict[str, str]:
    """The chart's selector labels for release `alertmanager` of chart `alertmanager`."""
    return {"app.kubernetes.io/name": ALERTMANAGER, "app.kubernetes.io/instance": ALERTMANAGER}


def alertmanager_values(config: pulumi.Input[dict]) -> dict:
    """Values for the prometheus-community `alertmanager` chart: one replica (no gossip
    peers), restricted pod security, silences on an emptyDir (the cluster has no EBS CSI
    driver; silences are lost on restart, alerts are re-sent by Prometheus every
    evaluation), the service account that Pod Identity binds to the publish role."""
    return {
        "fullnameOverride": ALERTMANAGER,
        "replicaCount": 1,
        "serviceAccount": {"create": True, "name": ALERTMANAGER},
        # It never calls the Kubernetes API; Pod Identity brings its own token.
        "automountServiceAccountToken": False,
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                               "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "runAsUser": 65534, "runAsGroup": 65534},
        "persistence": {"enabled": False},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "config": config,
    }


def alertmanager_network_policy() -> dict:
    """Only the Prometheus server may reach Alertmanager: its API can silence alerts. (An
    operator's `kubectl port-forward` arrives over the pod's loopback, which no policy filters.)"""
    return netpol.ingress_policy(alertmanager_labels(), [netpol.pods(MONITORING_NAMESPACE, PROMETHEUS_SERVER_LABELS)],
                                 [netpol.tcp(ALERTMANAGER_PORT)])


def alertmanager_egress_spec(vpc_cidr: str) -> dict:
    """Publishing to SNS: DNS, its Pod Identity credentials, and SNS on 443 (no SNS endpoint
    in the VPC: through the NAT)."""
    return netpol.egress_policy(alertmanager_labels(), [
        netpol.dns_egress(), netpol.pod_identity_egress(), netpol.aws_api_egress(vpc_cidr)])


def prometheus_to_alertmanager_spec() -> dict:
    """The Prometheus server's side of the link (`server.alertmanagers`)."""
    return netpol.egress_policy(PROMETHEUS_SERVER_LABELS, [
        {"to": [netpol.pods(MONITORING_NAMESPACE, alertmanager_labels())], "ports": [netpol.tcp(ALERTMANAGER_PORT)]}])


@dataclass
class ClusterMonitoringArgs:
    cluster: GpuCluster
    addons: ClusterAddons
    # The stack's topic first, then the inventory's extra topics.
    topic_arns: Sequence[pulumi.Input[str]]
    topic_key_arn: pulumi.Input[str]
    region: str
    stack: str


class ClusterMonitoring(pulumi.ComponentResource):
    """Alertmanager in the monitoring namespace, publishing the cluster's alerts to SNS."""

    alertmanager_target: str

    def __init__(self, name: str, args: ClusterMonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:k8s_monitoring:ClusterMonitoring", name, None, opts)
        cluster = args.cluster
        self.alertmanager_target = ALERTMANAGER_TARGET
        topics = pulumi.Output.all(*args.topic_arns)

        identity = cluster.workload_role(
            f"{name}-alertmanager", namespace=MONITORING_NAMESPACE, service_account=ALERTMANAGER,
            policy=pulumi.Output.all(topics, args.topic_key_arn).apply(
                lambda v: json.dumps(publish_policy(v[0], v[1], args.region), sort_keys=True)),
            parent=self, description="Alertmanager: publish alerts to the stack's SNS topics")

        # The monitoring namespace comes with the Prometheus release's dependencies; Pod
        # Identity injects credentials at admission, so the association comes first, and so
        # do Alertmanager's links through the namespace's default deny.
        policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-alertmanager-ingress",
                metadata={"name": ALERTMANAGER, "namespace": MONITORING_NAMESPACE,
                          "labels": alertmanager_labels()},
                spec=alertmanager_network_policy(),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-alertmanager-egress",
                metadata={"name": f"{ALERTMANAGER}-egress", "namespace": MONITORING_NAMESPACE,
                          "labels": alertmanager_labels()},
                spec=alertmanager_egress_spec(cluster.vpc_cidr),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-prometheus-to-alertmanager",
                metadata={"name": "prometheus-to-alertmanager", "namespace": MONITORING_NAMESPACE},
                spec=prometheus_to_alertmanager_spec(),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
        ]
        repo, chart, version = ALERTMANAGER_CHART
        self.release = k8s.helm.v3.Release(
            f"{name}-alertmanager",
            name=ALERTMANAGER, chart=chart, version=version, repository_opts={"repo": repo},
            namespace=MONITORING_NAMESPACE,
            values=alertmanager_values(topics.apply(
                lambda arns: alertmanager_config(arns, args.region, args.stack))),
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=600,
            opts=cluster.k8s_opts(self, [args.addons.prometheus, *identity.resources, *policies]))
        self.register_outputs({"alertmanager_target": self.alertmanager_target})
