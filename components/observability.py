"""Alarms, the notification topic and the dashboard of one stack: the request path, watched end to end.

What is watched, and where the numbers come from (CloudWatch metric names and dimensions
as AWS documents them):
- Gateway (AWS/ApiGateway, dimensions ApiName + Stage; "Amazon API Gateway dimensions and
  metrics"): the 5XX rate as metric math `5XXError / Count`; p99 `Latency` and p95
  `IntegrationLatency` (extended statistics). With response streaming both measure the whole
  generation, so the model's time to first byte is filtered out of the access log
  (`$context.integration.timeToFirstContent`, AWS "Troubleshoot issues with response
  streaming") and alarmed at p95.
- 429 and quota: API Gateway publishes no 429 metric, and its `4XXError` mixes throttles
  with missing keys (scanners), oversized bodies and 404s, so a 4XX-rate alarm would page on
  noise. A metric filter on the access log counts `status = "429"`: usage-plan throttles,
  quota exhaustion, the WAF rate rule's custom 429 and a runtime's own "overloaded" 429
  alike, i.e. every time a client was told to slow down.
- Load balancer (AWS/NetworkELB, dimensions TargetGroup + LoadBalancer): no healthy target
  (the model is down) and unhealthy targets for longer than a replica needs to load (a
  replica that loads is unhealthy on purpose; one that stays so is broken).
- EC2 GPU hosts: the CloudWatch agent's NVIDIA metrics (`nvidia_smi_utilization_gpu`,
  `nvidia_smi_memory_used` / `nvidia_smi_memory_total`, "Collect NVIDIA GPU metrics"),
  rolled up per Auto Scaling group into the fleet's namespace (components/ec2/host.py
  sets the agent's namespace and `aggregation_dimensions`); the runtime's own /metrics as
  published by each host's health gate every minute (Stack + Model): `RequestsWaiting` (vLLM
  `vllm:num_requests_waiting`, TGI `tgi_queue_size`), `RequestsRunning`, and KV-cache use
  (vLLM `vllm:kv_cache_usage_perc`, TGI `tgi_batch_current_max_tokens` against its KV token
  budget). One pipeline feeds both the scaling policy and these alarms, so an alarm and
  the autoscaler never disagree about the queue. Replicas at max: AWS/AutoScaling
  `GroupDesiredCapacity >= GroupMaxSize` (the group asks for more than it may have).
- EKS: GPU, queue, KV-cache, stuck-generation and capacity signals live in the cluster's
  Prometheus (DCGM exporter and the model pods' /metrics, the scrape jobs the autoscaler
  already uses); their alert rules and the Alertmanager that sends them to this stack's
  topic are components/eks/monitoring.py.

Notifications: one SNS topic per stack, encrypted with a key of its own. Its policy lets
CloudWatch alarms of this account use it: a topic under the AWS managed `aws/sns` key cannot
receive alarms, because that key's policy cannot be changed to admit CloudWatch (SNS
"Enable compatibility between event sources from AWS services and encrypted topics").
Inventory e-mail addresses are subscribed (each confirms once); inventory topic ARNs (for
example a paging integration) are further alarm actions, since SNS cannot subscribe a topic
to a topic.

Nothing here is created inside `apply`: the dashboard body is a property value built with
`Output.all(...).apply(json.dumps)`, and every alarm exists at preview.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.alerting import RUNBOOK, STUCK_GPU_PERCENT
from components.config import Inventory, Model, Thresholds, stack_file_for
from components.serving.runtimes import RuntimeLaunch, render_for_inventory

SERVING_NAMESPACE = "DeepSeek/Serving"
GATEWAY_NAMESPACE = "AWS/ApiGateway"
NLB_NAMESPACE = "AWS/NetworkELB"
ASG_NAMESPACE = "AWS/AutoScaling"
WAF_NAMESPACE = "AWS/WAFV2"
# Metrics filtered from the gateway's access log (dimension: the REST API id).
THROTTLED_METRIC = "Gateway429Responses"
TTFB_METRIC = "GatewayTimeToFirstByte"
THROTTLED_PATTERN = '{ $.status = "429" }'
TTFB_PATTERN = '{ ($.responseTransferMode = "STREAMED") && ($.timeToFirstContent != "-") }'
# Published by the EC2 health gate (components/ec2/host.py GATE_SCRIPT).
GATE_METRICS = {"waiting": "RequestsWaiting", "running": "RequestsRunning",
                "kv_percent": "KvCacheUsagePercent", "batch_tokens": "BatchTokens"}
# Token metrics on EC2 (components/ec2/host.py): the gate's histogram p95s and TGI token rates,
# and the runtime counters the CloudWatch agent's Prometheus scrape publishes under their own
# names (dimensions Stack + Model).
TOKEN_GATE_METRICS = {"ttft_p95": "TimeToFirstTokenP95Seconds", "tpot_p95": "TimePerOutputTokenP95Seconds",
                      "queue_p95": "QueueTimeP95Seconds", "prompt_rate": "PromptTokensPerSecond",
                      "generation_rate": "GenerationTokensPerSecond"}
AGENT_METRICS = {"preemptions": "vllm:num_preemptions_total", "prompt_tokens": "vllm:prompt_tokens_total",
                 "generation_tokens": "vllm:generation_tokens_total"}
# A CloudWatch alarm takes at most five actions per state.
MAX_ALARM_ACTIONS = 5
# vLLM and TGI reserve GPU memory up front; the memory alarm must sit above that share.
PREALLOCATION_MARGIN_PERCENT = 2.0


class ObservabilityError(ValueError):
    """Alarm settings that cannot work; the message names the key, the value and the fix."""


# ------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric as an alarm or a dashboard reads it."""

    namespace: str
    name: str
    dimensions: Mapping[str, Any]
    stat: str  # Sum, Average, Minimum, Maximum, or a percentile such as p99
    period: int

    def query(self, query_id: str, *, return_data: bool = False) -> dict:
        return {"id": query_id, "return_data": return_data, "metric": {
            "namespace": self.namespace, "metric_name": self.name,
            "dimensions": dict(self.dimensions), "stat": self.stat, "period": self.period}}


@dataclass(frozen=True)
class AlarmSpec:
    """A CloudWatch alarm as data: either one metric or metric math over several."""

    key: str  # stable slug: logical name, physical name suffix and runbook anchor
    summary: str
    severity: str  # "critical" pages; "warning" is looked at within the working day
    threshold: float
    comparison: str
    evaluation_periods: int
    datapoints_to_alarm: int
    metric: Optional[Metric] = None
    # Metric math: {query id: Metric} and the expression that returns the alarm's value.
    inputs: Mapping[str, Metric] = field(default_factory=dict)
    expression: Optional[str] = None
    treat_missing_data: str = "notBreaching"
    model: Optional[str] = None
    runbook: str = ""

    @property
    def period(self) -> int:
        return self.metric.period if self.metric else next(iter(self.inputs.values())).period

    @property
    def percentile(self) -> bool:
        return self.metric is not None and self.metric.stat.startswith("p")

    def description(self, stack: str) -> str:
        scope = f"{stack}/{self.model}" if self.model else stack
        return (f"[{self.severity}] {scope}: {self.summary} "
                f"Runbook: {RUNBOOK}#{self.runbook or self.key}")

    def metric_queries(self) -> list[dict]:
        queries = [metric.query(query_id) for query_id, metric in self.inputs.items()]
        queries.append({"id": "alarm", "expression": self.expression, "label": self.summary,
                        "return_data": True})
        return queries


@dataclass
class ModelTargets:
    """Where one model's load balancer and capacity metrics live."""

    load_balancer_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    # How long a new replica is unhealthy on purpose (boot or weight staging, model load):
    # the platform knows; no unhealthy-target alarm fires before it has passed.
    startup_seconds: int
    # EC2 only: the model's Auto Scaling group (EKS capacity is watched in Prometheus).
    asg_name: Optional[pulumi.Input[str]] = None


# ------------------------------------------------------------------- alarm definitions


def gateway_dimensions(api_name: Any, stage: Any) -> dict:
    """AWS/ApiGateway dimensions of one stage, or with `stage` None of the whole API: API
    Gateway publishes each metric per ApiName alone too, over all its stages ("Amazon API
    Gateway dimensions and metrics"), which covers a stage per tier in one series."""
    return {"ApiName": api_name} if stage is None else {"ApiName": api_name, "Stage": stage}


def _minutes(seconds: int) -> int:
    return int(math.ceil(seconds / 60.0))


def gateway_alarms(thresholds: Thresholds, *, api_name: Any, stage: Any, api_id: Any,
                   streaming: bool) -> list[AlarmSpec]:
    """Error rate, throttle rate, tail latency and (streamed) time to first byte at the stage
    (every stage of the API when `stage` is None: a stage per tier)."""
    dims = gateway_dimensions(api_name, stage)
    count = Metric(GATEWAY_NAMESPACE, "Count", dims, "Sum", 300)
    minimum = thresholds.min_requests
    alarms = [
        AlarmSpec(
            key="gateway-5xx-rate", severity="critical",
            summary=f"more than {thresholds.five_xx_percent:g} % of requests end in a 5XX.",
            inputs={"errors": Metric(GATEWAY_NAMESPACE, "5XXError", dims, "Sum", 300), "requests": count},
            expression=f"IF(requests >= {minimum}, 100 * FILL(errors, 0) / requests, 0)",
            threshold=thresholds.five_xx_percent, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=2),
        AlarmSpec(
            key="gateway-429-rate", severity="warning",
            summary=f"more than {thresholds.throttled_percent:g} % of requests are told to slow "
                    "down (429: usage-plan throttle or quota, WAF rate rule, runtime overload).",
            inputs={"throttled": Metric(SERVING_NAMESPACE, THROTTLED_METRIC, {"ApiId": api_id}, "Sum", 300),
                    "requests": count},
            expression=f"IF(requests >= {minimum}, 100 * FILL(throttled, 0) / requests, 0)",
            threshold=thresholds.throttled_percent, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=2),
        AlarmSpec(
            key="gateway-latency-p99", severity="warning",
            summary=f"p99 gateway latency above {thresholds.latency_p99_ms} ms (whole response, "
                    "streams included).",
            metric=Metric(GATEWAY_NAMESPACE, "Latency", dims, "p99", 300),
            threshold=thresholds.latency_p99_ms, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=3),
        AlarmSpec(
            key="gateway-integration-latency-p95", severity="warning",
            summary=f"p95 integration latency above {thresholds.integration_latency_p95_ms} ms "
                    "(time spent in the load balancer and the model).",
            metric=Metric(GATEWAY_NAMESPACE, "IntegrationLatency", dims, "p95", 300),
            threshold=thresholds.integration_latency_p95_ms, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=3),
    ]
    if streaming:
        alarms.append(AlarmSpec(
            key="gateway-time-to-first-byte-p95", severity="warning",
            summary=f"p95 time to the model's first byte above {thresholds.time_to_first_byte_p95_ms} "
                    "ms (queueing and prefill).",
            metric=Metric(SERVING_NAMESPACE, TTFB_METRIC, {"ApiId": api_id}, "p95", 300),
            threshold=thresholds.time_to_first_byte_p95_ms, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=3))
    return alarms


def load_balancer_alarms(model: Model, *, load_balancer: Any, target_group: Any,
                         startup_seconds: int, asg_name: Any = None) -> list[AlarmSpec]:
    """No healthy target at all, and targets unhealthy for longer than a replica takes to load.

    A model that scales to zero has no target while it sleeps, on purpose: on EC2 its
    no-healthy-targets alarm counts only while the group wants an instance and only after a
    cold start's time; on EKS (no group metric in CloudWatch) it has none, and a wake that
    fails shows as unhealthy targets and as the gateway's 5XX rate.
    """
    dims = {"TargetGroup": target_group, "LoadBalancer": load_balancer}
    # A replica that is loading its model is unhealthy on purpose; only one that stays
    # unhealthy past its whole start budget (plus five minutes) is broken.
    window = _minutes(startup_seconds) + 5
    healthy = Metric(NLB_NAMESPACE, "HealthyHostCount", dims, "Minimum", 60)
    if model.min_replicas > 0:
        none_healthy = AlarmSpec(
            key="no-healthy-targets", model=model.name, severity="critical",
            summary="the load balancer has no healthy replica: every request to this model fails.",
            metric=healthy, threshold=1, comparison="LessThanThreshold", evaluation_periods=3,
            datapoints_to_alarm=3,
            # No data means no target reports healthy.
            treat_missing_data="breaching")
    elif asg_name is not None:
        none_healthy = AlarmSpec(
            key="no-healthy-targets", model=model.name, severity="critical",
            summary=f"the group has wanted an instance for {window} minutes (longer than a cold "
                    "start) and none is healthy: every request to this model fails.",
            inputs={"healthy": healthy, "desired": Metric(ASG_NAMESPACE, "GroupDesiredCapacity",
                                                          {"AutoScalingGroupName": asg_name}, "Maximum", 60)},
            expression="IF(FILL(desired, 0) >= 1 AND FILL(healthy, 0) < 1, 1, 0)",
            threshold=1, comparison="GreaterThanOrEqualToThreshold", evaluation_periods=window,
            datapoints_to_alarm=window)
    else:
        none_healthy = None
    return [
        *([none_healthy] if none_healthy else []),
        AlarmSpec(
            key="unhealthy-targets", model=model.name, severity="warning",
            summary=f"a replica has been unhealthy for {window} minutes, longer than loading takes.",
            metric=Metric(NLB_NAMESPACE, "UnHealthyHostCount", dims, "Maximum", 60),
            threshold=0, comparison="GreaterThanThreshold", evaluation_periods=window,
            datapoints_to_alarm=window),
    ]


def ec2_fleet_alarms(model: Model, launch: RuntimeLaunch, thresholds: Thresholds, *, stack: str,
                     asg_name: Any, namespace: str = SERVING_NAMESPACE) -> list[AlarmSpec]:
    """GPU, runtime and capacity alarms for one model's Auto Scaling group."""
    gpu = {"AutoScalingGroupName": asg_name}
    serving = {"Stack": stack, "Model": model.name}
    gpu_util = Metric(namespace, "nvidia_smi_utilization_gpu", gpu, "Average", 300)
    alarms = [
        AlarmSpec(
            key="gpu-utilization", model=model.name, severity="warning",
            summary=f"GPUs busier than {thresholds.gpu_utilization_percent:g} % for 15 minutes: "
                    "the fleet is saturated.",
            metric=gpu_util, threshold=thresholds.gpu_utilization_percent,
            comparison="GreaterThanThreshold", evaluation_periods=3, datapoints_to_alarm=3),
        AlarmSpec(
            key="gpu-memory", model=model.name, severity="warning",
            summary=f"a GPU's memory is more than {thresholds.gpu_memory_percent:g} % used, above "
                    "what the runtime reserves.",
            inputs={"used": Metric(namespace, "nvidia_smi_memory_used", gpu, "Maximum", 300),
                    "total": Metric(namespace, "nvidia_smi_memory_total", gpu, "Maximum", 300)},
            expression="100 * used / total",
            threshold=thresholds.gpu_memory_percent, comparison="GreaterThanThreshold",
            evaluation_periods=3, datapoints_to_alarm=3),
        AlarmSpec(
            key="queue-depth", model=model.name, severity="warning",
            summary=f"more than {thresholds.queue_depth} requests waiting per replica for 8 of "
                    "10 minutes: scaling does not keep up.",
            metric=Metric(namespace, GATE_METRICS["waiting"], serving, "Average", 60),
            threshold=thresholds.queue_depth, comparison="GreaterThanThreshold",
            evaluation_periods=10, datapoints_to_alarm=8),
    ]
    kv = kv_cache_alarm(model, launch, thresholds, namespace=namespace, dimensions=serving)
    if kv is not None:
        alarms.append(kv)
    if model.runtime == "vllm":
        # The CloudWatch agent's scrape publishes the counter as per-minute deltas.
        alarms.append(AlarmSpec(
            key="preemptions", model=model.name, severity="warning",
            summary=f"more than {thresholds.preemptions_per_minute:g} preemptions (recomputations) per "
                    "minute for 8 of 10 minutes: the KV cache cannot hold the admitted concurrency.",
            metric=Metric(namespace, AGENT_METRICS["preemptions"], serving, "Sum", 60),
            threshold=thresholds.preemptions_per_minute, comparison="GreaterThanThreshold",
            evaluation_periods=10, datapoints_to_alarm=8))
    # Ollama's "running" is a count of open connections (idle keep-alives included), which
    # cannot tell a hung engine from a quiet one: no stuck-generation alarm for it.
    if model.runtime in ("vllm", "tgi"):
        alarms.append(AlarmSpec(
            key="stuck-generation", model=model.name, severity="critical",
            summary=f"requests are admitted but the GPUs are idle (< {STUCK_GPU_PERCENT} %) for 10 "
                    "minutes: the engine is hung.",
            inputs={"running": Metric(namespace, GATE_METRICS["running"], serving, "Average", 60),
                    "gpu": Metric(namespace, "nvidia_smi_utilization_gpu", gpu, "Average", 60)},
            expression=f"IF(running > 0 AND gpu < {STUCK_GPU_PERCENT}, 1, 0)",
            threshold=1, comparison="GreaterThanOrEqualToThreshold",
            evaluation_periods=10, datapoints_to_alarm=10))
    # A model that sleeps at 0..1 is "at its maximum" whenever it is awake: nothing to say.
    if max(model.min_replicas, 1) < model.max_replicas:
        group = {"AutoScalingGroupName": asg_name}
        alarms.append(AlarmSpec(
            key="replicas-at-max", model=model.name, severity="warning",
            summary=f"the group has wanted its maximum of {model.max_replicas} replicas for 15 "
                    "minutes: raise max_replicas or tighten the gateway throttle.",
            inputs={"desired": Metric(ASG_NAMESPACE, "GroupDesiredCapacity", group, "Maximum", 300),
                    "maximum": Metric(ASG_NAMESPACE, "GroupMaxSize", group, "Maximum", 300)},
            expression="IF(desired >= maximum, 1, 0)",
            threshold=1, comparison="GreaterThanOrEqualToThreshold",
            evaluation_periods=3, datapoints_to_alarm=3))
    return alarms


def kv_cache_alarm(model: Model, launch: RuntimeLaunch, thresholds: Thresholds, *, namespace: str,
                   dimensions: Mapping[str, Any]) -> Optional[AlarmSpec]:
    """KV cache nearly full (requests are about to be preempted or queued): vLLM reports a
    fraction, TGI the tokens its running batches hold against the KV budget it was given."""
    summary = (f"the KV cache is more than {thresholds.kv_cache_percent:g} % full for 8 of 10 "
               "minutes: long contexts are queued or preempted.")
    common = dict(key="kv-cache", model=model.name, severity="warning", summary=summary,
                  threshold=thresholds.kv_cache_percent, comparison="GreaterThanThreshold",
                  evaluation_periods=10, datapoints_to_alarm=8)
    if model.runtime == "vllm":
        return AlarmSpec(metric=Metric(namespace, GATE_METRICS["kv_percent"], dimensions, "Maximum", 60),
                         **common)
    budget = launch.capacity.max_batch_total_tokens if launch.capacity else None
    if model.runtime == "tgi" and budget:
        return AlarmSpec(
            inputs={"tokens": Metric(namespace, GATE_METRICS["batch_tokens"], dimensions, "Maximum", 60)},
            expression=f"100 * tokens / {budget}", **common)
    # Ollama exports no metrics; TGI without an explicit budget has nothing to compare with.
    return None


def check_alarm_thresholds(inventory: Inventory, stack: str) -> None:
    """Refuse a GPU memory threshold that vLLM or TGI exceed by design.

    Both reserve their share of GPU memory at start (vLLM `--gpu-memory-utilization`, TGI
    `--cuda-memory-fraction`), so nvidia-smi shows it used from then on: a threshold at or
    under that share would be in alarm for as long as the model runs.
    """
    thresholds = inventory.observability.alarms.thresholds
    key = "deepseek-serving:inventory.observability.alarms.thresholds.gpu_memory_percent"
    for index, model in enumerate(inventory.models):
        if model.runtime not in ("vllm", "tgi"):
            continue
        launch = render_for_inventory(inventory, model)
        reserved = round(100 * (launch.capacity.gpu_memory_utilization if launch.capacity
                                else model.gpu_memory_utilization), 1)
        floor = reserved + PREALLOCATION_MARGIN_PERCENT
        if thresholds.gpu_memory_percent < floor:
            raise ObservabilityError(
                f"{stack_file_for(stack)}: invalid inventory\n  {key}: {thresholds.gpu_memory_percent:g} "
                f"is not allowed: models[{index}] ({model.name}, {model.runtime}) reserves {reserved:g} % "
                f"of GPU memory at start, so the alarm would never clear; set it to at least "
                f"{min(100.0, floor):g} or lower models[{index}].gpu_memory_utilization")


def alarm_actions(topic_arn: pulumi.Input[str], extra_topic_arns: Sequence[str]) -> list[pulumi.Input[str]]:
    actions = [topic_arn, *extra_topic_arns]
    if len(actions) > MAX_ALARM_ACTIONS:
        raise ObservabilityError(
            f"{len(actions)} alarm actions; CloudWatch allows {MAX_ALARM_ACTIONS} per state: list at "
            f"most {MAX_ALARM_ACTIONS - 1} observability.alarms.sns_topic_arns")
    return actions


# ------------------------------------------------------------------------- key and topic


def alerts_key_policy(account_id: str, region: str, partition: str = "aws") -> dict:
    """The topic key: administered by the account; CloudWatch alarms of this account and
    region may use it to publish (SNS encrypts each message with a data key from it)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministers", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchAlarmsPublishToTheTopic", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {
                 "StringEquals": {"aws:SourceAccount": account_id},
                 "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"}}},
        ],
    }


def topic_policy(topic_arn: str, account_id: str, region: str, partition: str = "aws") -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountManagesTheTopic", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
             "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission",
                        "sns:RemovePermission", "sns:DeleteTopic", "sns:Subscribe",
                        "sns:ListSubscriptionsByTopic", "sns:Publish"],
             "Resource": topic_arn},
            {"Sid": "CloudWatchAlarmsOfThisAccount", "Effect": "Allow",
             "Principal": {"Service": "cloudwatch.amazonaws.com"},
             "Action": "sns:Publish", "Resource": topic_arn,
             "Condition": {
                 "StringEquals": {"aws:SourceAccount": account_id},
                 "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"}}},
        ],
    }


# ----------------------------------------------------------------------------- dashboard


def _metric_line(metric: Metric, **options: Any) -> list:
    line: list = [metric.namespace, metric.name]
    for name, value in metric.dimensions.items():
        line += [name, value]
    line.append({"stat": metric.stat, "period": metric.period, **options})
    return line


def _graph(title: str, lines: list, region: str, *, width: int = 8, height: int = 6,
           stacked: bool = False, y_label: str = "") -> dict:
    properties: dict = {"title": title, "region": region, "view": "timeSeries", "stacked": stacked,
                        "metrics": lines, "period": 60}
    if y_label:
        properties["yAxis"] = {"left": {"label": y_label, "showUnits": False}}
    return {"type": "metric", "width": width, "height": height, "properties": properties}


def _text(markdown: str, *, height: int = 2) -> dict:
    return {"type": "text", "width": 24, "height": height, "properties": {"markdown": markdown}}


def dashboard_body(*, stack: str, region: str, platform: str, api_name: str, stage: str,
                   api_id: str, web_acl: str, waf_rules: Sequence[str], access_log_group: str,
                   models: Mapping[str, Mapping[str, Any]], alarm_arns: Sequence[str],
                   prometheus_rules: Sequence[str] = (), namespace: str = SERVING_NAMESPACE) -> dict:
    """The stack's dashboard, top to bottom in the order a request travels.

    `models` maps a model name to {"runtime", "load_balancer", "target_group", "asg"}.
    """
    gw = gateway_dimensions(api_name, stage)
    widgets: list[dict] = [
        _text(f"# deepseek-serving `{stack}`: client → API Gateway (WAF, keys, usage plans) → "
              f"VPC link → internal NLB per model → {'EC2 GPU hosts' if platform == 'ec2' else 'EKS pods'}"
              f"\nAlarms notify the stack's SNS topic; runbook: `{RUNBOOK}`. No prompt or completion is "
              "logged anywhere on this path.")]

    # 1. Gateway
    requests = Metric(GATEWAY_NAMESPACE, "Count", gw, "Sum", 60)
    widgets += [
        _text("## 1. Gateway (API Gateway REST stage)", height=1),
        _graph("Requests and errors", [
            _metric_line(requests, label="requests", id="requests"),
            _metric_line(Metric(GATEWAY_NAMESPACE, "4XXError", gw, "Sum", 60), label="4XX", id="c4"),
            _metric_line(Metric(GATEWAY_NAMESPACE, "5XXError", gw, "Sum", 60), label="5XX", id="c5"),
            _metric_line(Metric(namespace, THROTTLED_METRIC, {"ApiId": api_id}, "Sum", 60),
                         label="429 (throttle, quota, WAF rate, overload)", id="c429"),
        ], region),
        _graph("Error and throttle rates (%)", [
            [{"expression": "100 * FILL(e5, 0) / n", "label": "5XX %", "id": "r5"}],
            [{"expression": "100 * FILL(e429, 0) / n", "label": "429 %", "id": "r429"}],
            _metric_line(requests, id="n", visible=False),
            _metric_line(Metric(GATEWAY_NAMESPACE, "5XXError", gw, "Sum", 60), id="e5", visible=False),
            _metric_line(Metric(namespace, THROTTLED_METRIC, {"ApiId": api_id}, "Sum", 60),
                         id="e429", visible=False),
        ], region, y_label="%"),
        _graph("Latency (ms): whole response, integration, first byte", [
            _metric_line(Metric(GATEWAY_NAMESPACE, "Latency", gw, "p50", 60), label="latency p50"),
            _metric_line(Metric(GATEWAY_NAMESPACE, "Latency", gw, "p99", 60), label="latency p99"),
            _metric_line(Metric(GATEWAY_NAMESPACE, "IntegrationLatency", gw, "p95", 60),
                         label="integration p95"),
            _metric_line(Metric(namespace, TTFB_METRIC, {"ApiId": api_id}, "p95", 60),
                         label="first byte p95 (streamed)"),
        ], region, y_label="ms"),
    ]

    # 2. WAF
    waf_lines = [_metric_line(Metric(WAF_NAMESPACE, "AllowedRequests",
                                     {"WebACL": web_acl, "Region": region, "Rule": "ALL"}, "Sum", 60),
                              label="allowed")]
    waf_lines += [_metric_line(Metric(WAF_NAMESPACE, "BlockedRequests",
                                      {"WebACL": web_acl, "Region": region, "Rule": rule}, "Sum", 60),
                               label=f"blocked: {rule}") for rule in waf_rules]
    widgets += [_text("## 2. WAF (evaluated before keys and usage plans)", height=1),
                _graph("WAF: allowed and blocked per rule", waf_lines, region, width=24)]

    # 3. Per model: load balancer, then the replicas behind it.
    for model_name, target in models.items():
        nlb = {"TargetGroup": target["target_group"], "LoadBalancer": target["load_balancer"]}
        runtime = target["runtime"]
        widgets += [
            _text(f"## 3. `{model_name}` ({runtime}): internal NLB → replicas", height=1),
            _graph(f"{model_name}: targets", [
                _metric_line(Metric(NLB_NAMESPACE, "HealthyHostCount", nlb, "Minimum", 60), label="healthy"),
                _metric_line(Metric(NLB_NAMESPACE, "UnHealthyHostCount", nlb, "Maximum", 60), label="unhealthy"),
            ], region),
            _graph(f"{model_name}: connections", [
                _metric_line(Metric(NLB_NAMESPACE, "ActiveFlowCount_TLS", {"LoadBalancer": target["load_balancer"]},
                                    "Average", 60), label="active TLS flows"),
                _metric_line(Metric(NLB_NAMESPACE, "NewFlowCount_TLS", {"LoadBalancer": target["load_balancer"]},
                                    "Sum", 60), label="new TLS flows"),
                _metric_line(Metric(NLB_NAMESPACE, "TCP_Target_Reset_Count", {"LoadBalancer": target["load_balancer"]},
                                     "Sum", 60), label="resets from targets"),
            ], region),
        ]
        if platform == "ec2" and target.get("asg"):
            group = {"AutoScalingGroupName": target["asg"]}
            serving = {"Stack": stack, "Model": model_name}
            runtime_lines = [_metric_line(Metric(namespace, GATE_METRICS["waiting"], serving, "Average", 60),
                                          label="requests waiting / replica")]
            if runtime in ("vllm", "tgi"):
                runtime_lines.append(_metric_line(Metric(namespace, GATE_METRICS["running"], serving,
                                                         "Average", 60), label="requests running / replica"))
            if runtime == "vllm":
                runtime_lines.append(_metric_line(Metric(namespace, GATE_METRICS["kv_percent"], serving,
                                                         "Maximum", 60), label="KV cache % (max)", yAxis="right"))
            widgets += [
                _graph(f"{model_name}: replicas", [
                    _metric_line(Metric(ASG_NAMESPACE, "GroupInServiceInstances", group, "Maximum", 60),
                                 label="in service"),
                    _metric_line(Metric(ASG_NAMESPACE, "GroupDesiredCapacity", group, "Maximum", 60),
                                 label="desired"),
                    _metric_line(Metric(ASG_NAMESPACE, "GroupMaxSize", group, "Maximum", 60), label="max"),
                ], region),
                _graph(f"{model_name}: GPU (CloudWatch agent, per group)", [
                    _metric_line(Metric(namespace, "nvidia_smi_utilization_gpu", group, "Average", 60),
                                 label="GPU utilisation %"),
                    [{"expression": "100 * used / total", "label": "GPU memory % (fullest GPU)", "id": "mem"}],
                    _metric_line(Metric(namespace, "nvidia_smi_memory_used", group, "Maximum", 60),
                                 id="used", visible=False),
                    _metric_line(Metric(namespace, "nvidia_smi_memory_total", group, "Maximum", 60),
                                 id="total", visible=False),
                ], region, y_label="%"),
                _graph(f"{model_name}: runtime /metrics (health gate)", runtime_lines, region),
                *_token_widgets(model_name, runtime, serving, namespace, region),
            ]
        elif platform == "eks":
            widgets.append(_text(
                f"**{model_name} on EKS**: GPU (DCGM exporter), queue depth, KV cache, running "
                f"requests and replica counts are Prometheus series in the cluster (namespace "
                f"`{model_name}`; scrape jobs `model-servers` and `dcgm-exporter`). Their alert rules "
                f"({', '.join(prometheus_rules) or 'none'}) notify this stack's SNS topic through "
                "Alertmanager (components/eks/monitoring.py).", height=3))

    # 4. Alarms and the access log (request ids, statuses, latencies; never bodies).
    widgets += [
        _text("## 4. Alarm state and the gateway access log", height=1),
        {"type": "alarm", "width": 24, "height": 6,
         "properties": {"title": "Alarms", "alarms": list(alarm_arns), "sortBy": "stateUpdatedTimestamp"}},
        {"type": "log", "width": 24, "height": 6, "properties": {
            "title": "Latest gateway errors (request id → runtime logs by time window)",
            "region": region, "view": "table",
            "query": (f"SOURCE '{access_log_group}' | fields requestTime, requestId, apiKeyId, "
                      "httpMethod, path, status, integrationStatus, errorType, integrationLatency, "
                      "timeToFirstContent | filter status >= 400 | sort @timestamp desc | limit 50")}},
    ]
    return {"widgets": _layout(widgets)}


def _token_widgets(model_name: str, runtime: str, serving: Mapping[str, Any], namespace: str,
                   region: str) -> list[dict]:
    """Token timings (p95 of each minute, from the health gate), tokens per second and, for vLLM,
    preemptions (from the CloudWatch agent's scrape): the EC2 twin of the Grafana dashboards."""
    if runtime not in ("vllm", "tgi"):
        return []
    timings = ([("ttft_p95", "time to first token p95")] if runtime == "vllm" else []) + [
        ("tpot_p95", "time per output token p95"), ("queue_p95", "queue time p95")]
    widgets = [_graph(f"{model_name}: token timings (s)", [
        _metric_line(Metric(namespace, TOKEN_GATE_METRICS[key], serving, "Maximum", 60), label=label)
        for key, label in timings], region)]
    if runtime == "vllm":
        rates = [
            [{"expression": "prompt / PERIOD(prompt)", "label": "prompt tokens/s", "id": "pr"}],
            [{"expression": "generated / PERIOD(generated)", "label": "generation tokens/s", "id": "gr"}],
            _metric_line(Metric(namespace, AGENT_METRICS["prompt_tokens"], serving, "Sum", 60), id="prompt",
                         visible=False),
            _metric_line(Metric(namespace, AGENT_METRICS["generation_tokens"], serving, "Sum", 60),
                         id="generated", visible=False),
        ]
        widgets.append(_graph(f"{model_name}: tokens per second", rates, region))
        widgets.append(_graph(f"{model_name}: preemptions (recomputations) per minute", [
            _metric_line(Metric(namespace, AGENT_METRICS["preemptions"], serving, "Sum", 60),
                         label="preemptions")], region))
    else:
        widgets.append(_graph(f"{model_name}: tokens per second", [
            _metric_line(Metric(namespace, TOKEN_GATE_METRICS["prompt_rate"], serving, "Average", 60),
                         label="prompt tokens/s"),
            _metric_line(Metric(namespace, TOKEN_GATE_METRICS["generation_rate"], serving, "Average", 60),
                         label="generation tokens/s")], region))
    return widgets


def _layout(widgets: list[dict]) -> list[dict]:
    """Place widgets left to right in rows of 24 units, as the console would."""
    x = y = row_height = 0
    for widget in widgets:
        if x + widget["width"] > 24:
            x, y, row_height = 0, y + row_height, 0
        widget["x"], widget["y"] = x, y
        x += widget["width"]
        row_height = max(row_height, widget["height"])
    return widgets


# --------------------------------------------------------------------------- component


@dataclass
class ObservabilityArgs:
    inventory: Inventory
    stack: str
    account_id: pulumi.Input[str]
    rest_api_name: pulumi.Input[str]
    rest_api_id: pulumi.Input[str]
    # None with a stage per tier: the gateway alarms and dashboard then cover every stage.
    stage_name: Optional[pulumi.Input[str]]
    access_log_group_name: pulumi.Input[str]
    web_acl_metric_name: str
    waf_rule_names: Sequence[str]
    models: Mapping[str, ModelTargets]
    # Names of the Prometheus alert rules on EKS (shown on the dashboard).
    prometheus_rules: Sequence[str] = ()
    metrics_namespace: str = SERVING_NAMESPACE
    partition: str = "aws"


class Observability(pulumi.ComponentResource):
    """The stack's alert topic (and its key), metric filters, alarms and dashboard."""

    topic_arn: pulumi.Output[str]
    alerts_key_arn: pulumi.Output[str]
    dashboard_name: str
    # Alarm key (e.g. "gateway-5xx-rate", "r1/kv-cache") -> alarm name.
    alarm_names: dict[str, pulumi.Output[str]]
    alarm_specs: list[AlarmSpec]

    def __init__(self, name: str, args: ObservabilityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:observability:Observability", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        inventory, stack = args.inventory, args.stack
        settings = inventory.observability.alarms
        region = inventory.region

        key, topic = self._create_topic(args)
        self.alerts_key_arn = key.arn
        self.topic_arn = topic.arn
        self._create_metric_filters(args)

        self.alarm_specs = gateway_alarms(
            settings.thresholds, api_name=args.rest_api_name, stage=args.stage_name,
            api_id=args.rest_api_id, streaming=inventory.gateway.streaming)
        launches = {m.name: render_for_inventory(inventory, m) for m in inventory.models}
        for model in inventory.models:
            targets = args.models[model.name]
            launch = launches[model.name]
            self.alarm_specs += load_balancer_alarms(
                model, load_balancer=targets.load_balancer_arn_suffix,
                target_group=targets.target_group_arn_suffix,
                startup_seconds=targets.startup_seconds, asg_name=targets.asg_name)
            if inventory.platform == "ec2":
                self.alarm_specs += ec2_fleet_alarms(
                    model, launch, settings.thresholds, stack=stack, asg_name=targets.asg_name,
                    namespace=args.metrics_namespace)

        actions = alarm_actions(self.topic_arn, settings.sns_topic_arns)
        self.alarm_names = {}
        alarm_arns: list[pulumi.Output[str]] = []
        for spec in self.alarm_specs:
            alarm = self._create_alarm(spec, stack, actions)
            slug = f"{spec.model}/{spec.key}" if spec.model else spec.key
            self.alarm_names[slug] = alarm.name
            alarm_arns.append(alarm.arn)

        self.dashboard_name = f"deepseek-{stack}"
        body = pulumi.Output.all(
            api_name=args.rest_api_name, stage=args.stage_name, api_id=args.rest_api_id,
            log_group=args.access_log_group_name, alarms=pulumi.Output.all(*alarm_arns),
            models=pulumi.Output.all(**{
                m.name: pulumi.Output.all(
                    runtime=m.runtime, load_balancer=args.models[m.name].load_balancer_arn_suffix,
                    target_group=args.models[m.name].target_group_arn_suffix,
                    asg=args.models[m.name].asg_name)
                for m in inventory.models}),
        ).apply(lambda v: json.dumps(dashboard_body(
            stack=stack, region=region, platform=inventory.platform, api_name=v["api_name"],
            stage=v["stage"], api_id=v["api_id"], web_acl=args.web_acl_metric_name,
            waf_rules=args.waf_rule_names, access_log_group=v["log_group"], models=v["models"],
            alarm_arns=v["alarms"], prometheus_rules=args.prometheus_rules,
            namespace=args.metrics_namespace), sort_keys=True))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            # Required by CloudWatch (no auto-naming); one per stack and region.
            dashboard_name=self.dashboard_name,
            dashboard_body=body,
            opts=self._child)

        self.register_outputs({
            "topic_arn": self.topic_arn,
            "alerts_key_arn": self.alerts_key_arn,
            "dashboard_name": self.dashboard_name,
            "alarm_names": self.alarm_names,
        })

    def stack_outputs(self) -> dict[str, Any]:
        return {"observability": {"alert_topic_arn": self.topic_arn, "dashboard": self.dashboard_name,
                                  "alarms": self.alarm_names}}

    def _create_topic(self, args: ObservabilityArgs) -> tuple[aws.kms.Key, aws.sns.Topic]:
        name, region, partition = self._name, args.inventory.region, args.partition
        key = aws.kms.Key(
            f"{name}-alerts-key",
            description="SNS alert topic: CloudWatch alarms and Alertmanager publish through it",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(alerts_key_policy(account, region, partition), sort_keys=True)),
            opts=self._child)
        aws.kms.Alias(f"{name}-alerts-key-alias", name=f"alias/deepseek-{args.stack}-alerts",
                      target_key_id=key.key_id, opts=self._child)
        topic = aws.sns.Topic(
            f"{name}-alerts",
            display_name=f"deepseek-{args.stack} alerts",
            kms_master_key_id=key.arn,
            opts=self._child)
        aws.sns.TopicPolicy(
            f"{name}-alerts-policy",
            arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, args.account_id).apply(
                lambda values: json.dumps(topic_policy(values[0], values[1], region, partition),
                                          sort_keys=True)),
            opts=self._child)
        for index, email in enumerate(args.inventory.observability.alarms.emails):
            # Each address receives a confirmation mail and gets nothing until it confirms.
            aws.sns.TopicSubscription(
                f"{name}-email-{index}", topic=topic.arn, protocol="email", endpoint=email,
                opts=self._child)
        return key, topic

    def _create_metric_filters(self, args: ObservabilityArgs) -> None:
        name = self._name
        # No default value: CloudWatch allows none on a filter with dimensions; the alarms
        # FILL the missing minutes with zero instead.
        aws.cloudwatch.LogMetricFilter(
            f"{name}-gateway-429",
            log_group_name=args.access_log_group_name,
            pattern=THROTTLED_PATTERN,
            metric_transformation={"name": THROTTLED_METRIC, "namespace": args.metrics_namespace,
                                   "value": "1", "unit": "Count",
                                   "dimensions": {"ApiId": "$.apiId"}},
            opts=self._child)
        if args.inventory.gateway.streaming:
            aws.cloudwatch.LogMetricFilter(
                f"{name}-gateway-ttfb",
                log_group_name=args.access_log_group_name,
                pattern=TTFB_PATTERN,
                metric_transformation={"name": TTFB_METRIC, "namespace": args.metrics_namespace,
                                       "value": "$.timeToFirstContent", "unit": "Milliseconds",
                                       "dimensions": {"ApiId": "$.apiId"}},
                opts=self._child)

    def _create_alarm(self, spec: AlarmSpec, stack: str,
                      actions: list[pulumi.Input[str]]) -> aws.cloudwatch.MetricAlarm:
        logical = f"{self._name}-{spec.model}-{spec.key}" if spec.model else f"{self._name}-{spec.key}"
        # The name is what the on-call reads in the notification: stack, model and signal.
        physical = "-".join(part for part in ("deepseek", stack, spec.model, spec.key) if part)
        common: dict[str, Any] = dict(
            name=physical,
            alarm_description=spec.description(stack),
            comparison_operator=spec.comparison,
            threshold=spec.threshold,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=actions,
            # Recovery is news too: the on-call learns the incident ended.
            ok_actions=actions,
            tags={"severity": spec.severity, **({"model": spec.model} if spec.model else {})},
        )
        if spec.metric is not None:
            metric = spec.metric
            common.update(namespace=metric.namespace, metric_name=metric.name,
                          dimensions=dict(metric.dimensions), period=metric.period)
            if spec.percentile:
                common.update(extended_statistic=metric.stat,
                              # A handful of requests has no meaningful p99: do not judge it.
                              evaluate_low_sample_count_percentiles="ignore")
            else:
                common.update(statistic=metric.stat)
        else:
            common.update(metric_queries=spec.metric_queries())
        return aws.cloudwatch.MetricAlarm(logical, **common, opts=self._child)
