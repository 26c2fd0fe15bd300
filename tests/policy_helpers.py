"""Judge small programs with the real policy pack, through the analyzer protocol.

A test writes a program with real pulumi_aws / pulumi_kubernetes resources, runs it under
the mock engine as a first preview (so outputs are unknown, as they are for the engine),
and hands every registration to the pack process the way the engine would. Assertions
are about where a diagnostic lands (the offending resource's URN) and at which level.
"""
from __future__ import annotations

import base64
import gzip
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from tools import mock_engine
from tools.analyzer import Diagnostic, PolicyPackProcess, config_path
from tests.program_harness import record


@pytest.fixture(scope="module")
def pack() -> Iterable[PolicyPackProcess]:
    """One pack process per test module: starting it costs about a second."""
    with PolicyPackProcess() as running:
        yield running


@dataclass
class Verdict:
    run: mock_engine.ProgramRun
    diagnostics: list[Diagnostic]

    def urn(self, type_token: str, name: str) -> str:
        return self.run.one(type_token, name).urn

    def of(self, policy: str) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.policy_name == policy]

    def on(self, policy: str, type_token: str, name: str) -> list[Diagnostic]:
        urn = self.urn(type_token, name)
        return [d for d in self.of(policy) if d.urn == urn]

    def describe(self, policy: Optional[str] = None) -> str:
        shown = self.of(policy) if policy else self.diagnostics
        return "\n".join(f"  [{d.enforcement_level}] {d.policy_name} @ {d.urn.rsplit('::', 1)[-1]}: "
                         f"{d.message}" for d in shown) or "  (no diagnostics)"


def judge(pack: PolicyPackProcess, program: Callable[[], Any], env: str = "prod", *,
          config: Any = None) -> Verdict:
    """Run `program` as a first preview of stack `env` and judge it with env's policy config."""
    run = record(program, stack=env, preview=True)
    diagnostics = pack.analyze(run.registrations, config if config is not None else config_path(env),
                               stack=env)
    urns = {r.urn for r in run.registrations}
    for diagnostic in diagnostics:
        assert diagnostic.urn == "" or diagnostic.urn in urns, f"diagnostic on an unknown URN: {diagnostic}"
    return Verdict(run, diagnostics)


def expect_violation(verdict: Verdict, policy: str, type_token: str, name: str, *,
                     level: str = "mandatory", contains: Iterable[str] = ()) -> Diagnostic:
    found = verdict.on(policy, type_token, name)
    assert found, f"expected {policy} on {type_token} {name}; diagnostics:\n{verdict.describe()}"
    for diagnostic in found:
        assert diagnostic.enforcement_level == level, verdict.describe(policy)
    text = " ".join(d.message for d in found)
    for fragment in contains:
        assert fragment in text, f"{fragment!r} not in:\n{verdict.describe(policy)}"
    return found[0]


def expect_clean(verdict: Verdict, policy: str) -> None:
    assert not verdict.of(policy), f"expected no {policy} diagnostics:\n{verdict.describe(policy)}"


_unknown_sources = itertools.count()


def unknown_of(value: Any) -> pulumi.Output:
    """Inside a program: `value`, but only known after deployment (unknown in a first preview).

    Computed from a fresh resource's id, exactly like a value derived from another
    resource's output (a VPC CIDR, a listener ARN, a rendered script).
    """
    source = aws.ec2.Vpc(f"unknown-source-{next(_unknown_sources)}", cidr_block="10.99.0.0/16")
    return source.id.apply(lambda _: value)


# ---- compliant building blocks that tests then break one property at a time ----------

def vllm_container(*extra_args: str, env: list[dict] = (), image: str = "vllm/vllm-openai:v0.11.0",
                   **overrides: Any) -> dict:
    container = {
        "name": "vllm",
        "image": image,
        "args": ["--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "--max-model-len", "16384",
                 "--max-num-seqs", "64", *extra_args],
        "env": [{"name": "VLLM_API_KEY", "value_from": {"secret_key_ref": {"name": "vllm", "key": "api-key"}}},
                *env],
        "security_context": {"run_as_non_root": True, "run_as_user": 1000, "allow_privilege_escalation": False,
                             "capabilities": {"drop": ["ALL"]}, "seccomp_profile": {"type": "RuntimeDefault"}},
        "resources": {"limits": {"memory": "48Gi", "nvidia.com/gpu": "1"}},
        "startup_probe": {"http_get": {"path": "/health", "port": 8000}, "failure_threshold": 90},
        "readiness_probe": {"http_get": {"path": "/v1/models", "port": 8000}},
    }
    container.update(overrides)
    return container


def model_deployment(name: str, container: dict, replicas: int = 1, **pod: Any) -> k8s.apps.v1.Deployment:
    return k8s.apps.v1.Deployment(name, metadata={"namespace": "models"}, spec={
        "replicas": replicas,
        "selector": {"match_labels": {"app": name}},
        "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"automount_service_account_token": False, "containers": [container], **pod}}})


def launch_template(name: str, script: str, *, gzipped: bool = False) -> aws.ec2.LaunchTemplate:
    data = gzip.compress(script.encode()) if gzipped else script.encode()
    return aws.ec2.LaunchTemplate(
        name, image_id="ami-1", instance_type="g6e.xlarge", user_data=base64.b64encode(data).decode(),
        metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1},
        block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {"encrypted": "true", "volume_size": 200}}])


# Resource types, spelled once.
METHOD = "aws:apigateway/method:Method"
REST_API = "aws:apigateway/restApi:RestApi"
STAGE = "aws:apigateway/stage:Stage"
ROUTE = "aws:apigatewayv2/route:Route"
HTTP_API = "aws:apigatewayv2/api:Api"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
LB = "aws:lb/loadBalancer:LoadBalancer"
ALB_ALIAS_LB = "aws:alb/loadBalancer:LoadBalancer"
CLASSIC_LB = "aws:elb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
SUBNET = "aws:ec2/subnet:Subnet"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CRONJOB = "kubernetes:batch/v1:CronJob"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
