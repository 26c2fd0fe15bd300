"""EKS: the model pods' logs shipped to a KMS-encrypted CloudWatch log group with retention.

Why a pinned Fluent Bit chart (aws/eks-charts `aws-for-fluent-bit` 0.2.0 = AWS for Fluent Bit
3.2.1, aws/eks-charts stable/aws-for-fluent-bit/Chart.yaml) rather than the
amazon-cloudwatch-observability add-on: the add-on ships every container's log of the cluster
to log groups it creates itself (named by the cluster, without our key or retention unless
pre-created) and adds Container Insights metrics through a second agent; here we decide
- what is read: only the model namespaces' container logs (`/var/log/containers/*_<model>_*`),
  nothing of the system pods;
- what is dropped: any record that looks like request content (the lines vLLM's request
  logger, TGI's and Ollama's debug logs would write: prompts, outputs, token ids) is
  removed before it leaves the node, as a second line behind the runtimes' own flags
  (components/serving/runtimes.py never turns request logging on);
- where it goes: one log group the stack creates (stack logs key, inventory retention;
  the agent may not create groups), with a Pod Identity role that may only create streams
  in and put events to that group.

Records are JSON in CloudWatch: TGI logs JSON itself (`--json-output`, merged by the
kubernetes filter under `data`), vLLM's text lines are parsed into level, time, source and
message (its `LEVEL MM-DD HH:MM:SS [file:line] message` format, with the `(APIServer pid=N)`
process prefix of 0.11), Ollama's slog lines as logfmt. No runtime logs a request id without
logging the request itself (vLLM only echoes `X-Request-Id` with `--enable-request-id-headers`,
which the gateway's access log already records): correlate by model, pod and time window
(docs/OPERATIONS.md "One request id, end to end").

The DaemonSet reads the nodes' /var/log through a hostPath volume, which the Pod Security
`baseline` level forbids: it runs in a namespace of its own (`logging`) at the `privileged`
level, as root (the log files are root's) without any capability.

Credentials: the C `cloudwatch_logs` output (not the older Go `cloudwatch` plugin, which
refuses the Pod Identity agent's address, aws/aws-for-fluent-bit#784) reads EKS Pod Identity
credentials since fluent/fluent-bit#10115 (Fluent Bit 4.0, the base of AWS for Fluent Bit 3.x).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import Inventory
from components.eks.cluster import GPU_TOLERATION, GpuCluster

FLUENT_BIT_CHART = ("https://aws.github.io/eks-charts", "aws-for-fluent-bit", "0.2.0")
LOGGING_NAMESPACE = "logging"
FLUENT_BIT = "fluent-bit"
# Lines that carry request content in any runtime's logs: vLLM's RequestLogger
# (vllm/entrypoints/logger.py: "Received request ...: prompt: ..., prompt_token_ids: ...",
# "Generated response ...: output: ..."), TGI's debug "Input:"/"Output:" events, Ollama's
# debug "prompt=" attributes. None is written with the flags this project renders.
REQUEST_CONTENT = (r"(Received request|Generated response|prompt_token_ids|prompt_embeds|"
                   r"\bprompt: |\boutput: |^Input: |^Output: |\bprompt=|\bmessages=)")
# vLLM 0.11: "(APIServer pid=1) INFO 10-02 12:00:00 [api_server.py:1234] message".
VLLM_LINE = (r"^(?:\((?<process>[^)]*)\) )?(?<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
             r"(?<logtime>\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \[(?<source>[^\]]+)\] (?<message>.*)$")


def log_group_name(stack: str) -> str:
    return f"/deepseek/{stack}/eks/runtime"


def _filter(name: str, **keys: str) -> str:
    width = max(len(k) for k in keys) + 1
    return "[FILTER]\n" + "".join(f"    {k.ljust(width)}{v}\n" for k, v in {"Name": name, **keys}.items())


def fluent_bit_config(inventory: Inventory) -> dict[str, str]:
    """The input path, the extra filters and parsers, as the chart takes them."""
    paths = ",".join(f"/var/log/containers/*_{model.name}_*.log" for model in inventory.models)
    filters = [
        # Grep's Exclude rules drop a record when any of them matches.
        "[FILTER]\n    Name    grep\n    Match   kube.*\n"
        f"    Exclude log {REQUEST_CONTENT}\n"
        f"    Exclude $data['fields']['message'] {REQUEST_CONTENT}\n",
    ]
    for model in inventory.models:
        parser = {"vllm": "vllm", "ollama": "logfmt"}.get(model.runtime)
        if parser:
            filters.append(_filter("parser", Match=f"kube.*_{model.name}_*", Key_Name="log", Parser=parser,
                                   Reserve_Data="On"))
    parsers = ("[PARSER]\n    Name   vllm\n    Format regex\n    Regex  " + VLLM_LINE + "\n\n"
               "[PARSER]\n    Name   logfmt\n    Format logfmt\n")
    return {"paths": paths, "filters": "\n".join(filters), "parsers": parsers}


def fluent_bit_values(inventory: Inventory, stack: str) -> dict:
    config = fluent_bit_config(inventory)
    return {
        "fullnameOverride": FLUENT_BIT,
        "serviceAccount": {"create": True, "name": FLUENT_BIT},
        "service": {
            "extraService": "HTTP_Server  On\nHTTP_Listen  0.0.0.0\nHTTP_PORT    2020\nHealth_Check On\n"
                            "HC_Errors_Count 5\nHC_Retry_Failure_Count 5\nHC_Period 5\n",
            "parsersFiles": ["/fluent-bit/parsers/parsers.conf"],
            "extraParsers": config["parsers"],
        },
        "input": {"enabled": True, "tag": "kube.*", "path": config["paths"], "db": "/var/log/flb_deepseek.db",
                  "multilineParser": "docker, cri", "memBufLimit": "5MB", "skipLongLines": "On",
                  "refreshInterval": 10},
        "filter": {"enabled": True, "match": "kube.*",
                   "kubeURL": "https://kubernetes.default.svc.cluster.local:443",
                   # JSON lines (TGI) become fields under `data`; the raw line is not kept twice.
                   "mergeLog": "On", "mergeLogKey": "data", "keepLog": "Off",
                   # Pods may not choose their own parser or opt out of shipping.
                   "k8sLoggingParser": "Off", "k8sLoggingExclude": "Off", "bufferSize": "32k",
                   "extraFilters": "Labels Off\nAnnotations Off"},
        "additionalFilters": config["filters"],
        "cloudWatch": {"enabled": False},
        "cloudWatchLogs": {"enabled": True, "match": "kube.*", "region": inventory.region,
                           "logGroupName": log_group_name(stack),
                           "logStreamPrefix": "pod-",
                           "logStreamTemplate": "$kubernetes['namespace_name'].$kubernetes['pod_name']",
                           # The stack creates the group (key, retention); the agent may not.
                           "autoCreateGroup": False},
        "firehose": {"enabled": False},
        "kinesis": {"enabled": False},
        "elasticsearch": {"enabled": False},
        "opensearch": {"enabled": False},
        "s3": {"enabled": False},
        # Model pods run on the tainted GPU nodes.
        "tolerations": [GPU_TOLERATION],
        "podSecurityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        # Container logs live under /var/log (containers -> pods symlinks); no Docker path on EKS.
        "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}],
        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


def fluent_bit_policy(log_group_arn: str) -> dict:
    """Streams and events in the one log group; nothing else (no CreateLogGroup, no retention)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ShipToTheRuntimeLogGroup", "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
        "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"]}]}


@dataclass
class ClusterLoggingArgs:
    cluster: GpuCluster
    inventory: Inventory
    stack: str
    logs_key_arn: pulumi.Input[str]


class ClusterLogging(pulumi.ComponentResource):
    """The runtime log group and the Fluent Bit DaemonSet that fills it."""

    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterLoggingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:k8s_logging:ClusterLogging", name, None, opts)
        cluster, inventory = args.cluster, args.inventory
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-runtime-logs",
            # Named: Fluent Bit's output names it too, and the operations guide quotes it.
            name=log_group_name(args.stack),
            retention_in_days=inventory.observability.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=pulumi.ResourceOptions(parent=self))
        self.log_group_name = log_group.name
        identity = cluster.workload_role(
            f"{name}-fluent-bit", namespace=LOGGING_NAMESPACE, service_account=FLUENT_BIT,
            policy=log_group.arn.apply(lambda arn: json.dumps(fluent_bit_policy(arn), sort_keys=True)),
            parent=self, description="Fluent Bit: ship the model pods' logs to the runtime log group")
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": LOGGING_NAMESPACE, "labels": {
                # hostPath (the nodes' /var/log) needs the privileged level; warn on the rest.
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "baseline",
                "pod-security.kubernetes.io/audit": "baseline",
            }},
            opts=cluster.k8s_opts(self))
        repo, chart, version = FLUENT_BIT_CHART
        k8s.helm.v3.Release(
            f"{name}-fluent-bit",
            name=FLUENT_BIT, chart=chart, version=version, repository_opts={"repo": repo},
            namespace=LOGGING_NAMESPACE, values=fluent_bit_values(inventory, args.stack),
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=600,
            opts=cluster.k8s_opts(self, [namespace, log_group, *identity.resources]))
        self.register_outputs({"log_group_name": self.log_group_name})
