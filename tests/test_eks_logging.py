"""EKS runtime logs: shipped by a pinned Fluent Bit to an encrypted log group with retention,
only the model namespaces, with request content dropped before it leaves the node."""
from __future__ import annotations

import json
import re

import pytest

from components.config import Inventory
from components.eks import logging as k8s_logging
from components.eks.cluster import GPU_TOLERATION
from tests import stack_runs

EKS_STACKS = ("staging", "prod")


def _release(run) -> dict:
    (release,) = [r.inputs for r in run.by_type("kubernetes:helm.sh/v3:Release")
                  if r.inputs["name"] == k8s_logging.FLUENT_BIT]
    return release


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_runtime_logs_go_to_an_encrypted_log_group_with_the_inventory_retention(stack):
    run = stack_runs.preview_run(stack)
    inventory = stack_runs.inventory_of(stack)
    (group,) = [r for r in run.by_type("aws:cloudwatch/logGroup:LogGroup") if r.name == "eks-logging-runtime-logs"]
    assert group.inputs["name"] == k8s_logging.log_group_name(stack)
    assert group.inputs["retentionInDays"] == inventory["observability"]["log_retention_days"]
    assert group.inputs["kmsKeyId"]  # the stack's logs key
    values = _release(run)["values"]["cloudWatchLogs"]
    assert values["enabled"] is True and values["logGroupName"] == k8s_logging.log_group_name(stack)
    assert values["autoCreateGroup"] is False
    assert values["region"] == inventory["region"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_fluent_bit_is_the_pinned_chart_reading_only_the_model_namespaces(stack):
    run = stack_runs.preview_run(stack)
    release = _release(run)
    assert (release["repositoryOpts"]["repo"], release["chart"], release["version"]) == k8s_logging.FLUENT_BIT_CHART
    assert release["namespace"] == k8s_logging.LOGGING_NAMESPACE
    values = release["values"]
    models = [m["name"] for m in stack_runs.inventory_of(stack)["models"]]
    assert values["input"]["path"].split(",") == [f"/var/log/containers/*_{m}_*.log" for m in models]
    assert values["filter"]["k8sLoggingExclude"] == "Off"  # pods cannot opt out of the filters
    assert "Exclude log" in values["additionalFilters"]
    assert GPU_TOLERATION in values["tolerations"]  # model pods run on the tainted GPU nodes
    for output in ("cloudWatch", "firehose", "kinesis", "elasticsearch", "opensearch", "s3"):
        assert values[output]["enabled"] is False


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_fluent_bit_may_only_write_to_its_log_group(stack):
    run = stack_runs.preview_run(stack)
    associations = stack_runs.inputs(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert {"namespace": k8s_logging.LOGGING_NAMESPACE, "serviceAccount": k8s_logging.FLUENT_BIT} in [
        {"namespace": a["namespace"], "serviceAccount": a["serviceAccount"]} for a in associations]
    arn = "arn:aws:logs:us-west-2:123456789012:log-group:/deepseek/x/eks/runtime"
    (statement,) = k8s_logging.fluent_bit_policy(arn)["Statement"]
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    assert statement["Resource"] == [arn, f"{arn}:log-stream:*"]


def test_the_logging_namespace_allows_the_host_log_mount_and_nothing_else_changes():
    run = stack_runs.preview_run("prod")
    (namespace,) = [r.inputs for r in run.by_type("kubernetes:core/v1:Namespace")
                    if r.inputs["metadata"]["name"] == k8s_logging.LOGGING_NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    values = _release(run)["values"]
    assert values["volumes"] == [{"name": "varlog", "hostPath": {"path": "/var/log"}}]
    assert values["containerSecurityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert values["containerSecurityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("line", [
    "(APIServer pid=1) INFO 10-02 12:00:00 [logger.py:49] Received request chatcmpl-1: prompt: 'my secret', "
    "params: SamplingParams(n=1), prompt_token_ids: [1, 2, 3]",
    "INFO 10-02 12:00:01 [logger.py:71] Generated response chatcmpl-1: output: 'the answer', output_token_ids: [4]",
    "Input: tell me everything",
    "Output: here it is",
    'time=2025-10-02T12:00:00Z level=DEBUG source=server.go:1 msg="chat request" images=0 prompt="hello"',
])
def test_request_content_is_dropped(line):
    assert re.search(k8s_logging.REQUEST_CONTENT, line)


@pytest.mark.parametrize("line", [
    "(APIServer pid=1) INFO 10-02 12:00:00 [loggers.py:123] Engine 000: Avg prompt throughput: 10.0 tokens/s, "
    "Avg generation throughput: 50.0 tokens/s, Running: 2 reqs, Waiting: 0 reqs, GPU KV cache usage: 5.0%",
    '(APIServer pid=1) INFO:     10.0.1.5:40000 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
    "Success",
    '[GIN] 2025/10/02 - 12:00:00 | 200 |  1.2s | 10.0.1.5 | POST "/v1/chat/completions"',
])
def test_operational_lines_are_kept(line):
    assert not re.search(k8s_logging.REQUEST_CONTENT, line)


def test_vllm_lines_become_structured_records():
    # Fluent Bit's regex parser uses Onigmo's (?<name>...); Python spells it (?P<name>...).
    pattern = re.compile(k8s_logging.VLLM_LINE.replace("(?<", "(?P<"))
    match = pattern.match("(EngineCore_DP0 pid=77) WARNING 10-02 12:00:05 [scheduler.py:300] KV cache is full")
    assert match.groupdict() == {"process": "EngineCore_DP0 pid=77", "level": "WARNING",
                                 "logtime": "10-02 12:00:05", "source": "scheduler.py:300",
                                 "message": "KV cache is full"}
    assert pattern.match("INFO 10-02 12:00:05 [api_server.py:1] Starting")["level"] == "INFO"


def test_each_model_s_lines_get_its_runtime_s_parser():
    raw = stack_runs.inventory_of("prod")
    inventory = Inventory.model_validate(raw)
    filters = k8s_logging.fluent_bit_config(inventory)["filters"]
    for model in inventory.models:
        assert f"kube.*_{model.name}_*" in filters
    assert filters.count("Parser       vllm") == sum(m.runtime == "vllm" for m in inventory.models)
    staging = Inventory.model_validate(stack_runs.inventory_of("staging"))
    # TGI logs JSON itself (--json-output): no parser, the kubernetes filter merges it; only
    # staging's vLLM model gets one.
    staging_filters = k8s_logging.fluent_bit_config(staging)["filters"]
    assert any(m.runtime == "tgi" for m in staging.models)
    assert staging_filters.count("Name         parser") == sum(m.runtime == "vllm" for m in staging.models)
    json.dumps(k8s_logging.fluent_bit_values(staging, "staging"))  # plain data, as Helm values must be
