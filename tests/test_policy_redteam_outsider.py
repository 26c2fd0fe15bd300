"""Red team, outsider shapes: KServe's visibility label per deployment mode, and CRDs that open
nothing. Each exposing program is a MANDATORY violation on the offender; each compliant twin
raises no diagnostic of that policy (in prod, where unjudgeable types fail closed)."""
from __future__ import annotations

import pulumi_kubernetes as k8s
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack

__all__ = ["pack"]

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
KNATIVE_LOCAL = {"networking.knative.dev/visibility": "cluster-local"}
KSERVE_LOCAL = {"networking.kserve.io/visibility": "cluster-local"}
_PREDICTOR = {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "runtime": "kserve-huggingfaceserver",
                                      "storageUri": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}}}


def _isvc(mode, labels):
    annotations = {"serving.kserve.io/deploymentMode": mode} if mode else {}
    k8s.apiextensions.CustomResource("r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                     metadata={"name": "r1", "annotations": annotations, "labels": labels},
                                     spec=_PREDICTOR)


# Serverless mode publishes the Knative route unless networking.knative.dev/visibility says
# cluster-local; the KServe label is only read by the RawDeployment reconcilers.
EXPOSED = [
    ("serverless-with-kserve-label-only", lambda: _isvc("Serverless", KSERVE_LOCAL)),
    ("raw-with-knative-label-only", lambda: _isvc("RawDeployment", KNATIVE_LOCAL)),
    ("no-mode-kserve-label-only", lambda: _isvc(None, KSERVE_LOCAL)),
    ("no-mode-knative-label-only", lambda: _isvc(None, KNATIVE_LOCAL)),
]
PRIVATE = [
    ("serverless-with-knative-label", lambda: _isvc("Serverless", KNATIVE_LOCAL)),
    ("raw-with-kserve-label", lambda: _isvc("RawDeployment", KSERVE_LOCAL)),
    ("standard-with-kserve-label", lambda: _isvc("Standard", KSERVE_LOCAL)),
    ("no-mode-both-labels", lambda: _isvc(None, {**KSERVE_LOCAL, **KNATIVE_LOCAL})),
]


@pytest.mark.parametrize("program", [p for _, p in EXPOSED], ids=[i for i, _ in EXPOSED])
def test_kserve_published_by_its_mode_is_a_violation(pack, program):
    expect_violation(judge(pack, program, "dev"), "k8s-ingress-internal", ISVC, "r1",
                     contains=["cluster-local"])


@pytest.mark.parametrize("program", [p for _, p in PRIVATE], ids=[i for i, _ in PRIVATE])
def test_kserve_cluster_local_for_its_mode_is_clean(pack, program):
    expect_clean(judge(pack, program, "dev"), "k8s-ingress-internal")


def test_kserve_computed_mode_fails_closed(pack):
    from tests.policy_helpers import unknown_of

    def program():
        k8s.apiextensions.CustomResource(
            "r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
            metadata={"annotations": {"serving.kserve.io/deploymentMode": unknown_of("Serverless")},
                      "labels": KSERVE_LOCAL}, spec=_PREDICTOR)

    expect_violation(judge(pack, program, "dev"), "k8s-ingress-internal", ISVC, "r1",
                     contains=["deploymentMode"])


# ---- CRDs that open nothing are not unjudgeable entry points ------------------------------

def no_surface_crds():
    k8s.apiextensions.CustomResource("grant", api_version="gateway.networking.k8s.io/v1beta1", kind="ReferenceGrant",
                                     spec={"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                                     "namespace": "edge"}],
                                           "to": [{"group": "", "kind": "Service", "name": "vllm"}]})
    k8s.apiextensions.CustomResource("tls", api_version="gateway.networking.k8s.io/v1", kind="BackendTLSPolicy",
                                     spec={"targetRefs": [{"group": "", "kind": "Service", "name": "vllm"}],
                                           "validation": {"hostname": "vllm.models.svc",
                                                          "wellKnownCACertificates": "System"}})
    k8s.apiextensions.CustomResource("adapter", api_version="serving.kserve.io/v1alpha1", kind="TrainedModel",
                                     spec={"inferenceService": "r1", "model": {
                                         "framework": "pytorch", "memory": "1Gi",
                                         "storageUri": "s3://models/adapter"}})


NO_SURFACE = (("kubernetes:gateway.networking.k8s.io/v1beta1:ReferenceGrant", "grant"),
              ("kubernetes:gateway.networking.k8s.io/v1:BackendTLSPolicy", "tls"),
              ("kubernetes:serving.kserve.io/v1alpha1:TrainedModel", "adapter"))


def test_no_surface_crds_pass_in_prod(pack):
    verdict = judge(pack, no_surface_crds, "prod")
    for token, name in NO_SURFACE:
        assert not verdict.on("entry-point-classified", token, name), verdict.describe("entry-point-classified")


def test_a_kind_with_container_specs_is_still_judged_for_host_ports(pack):
    def program():
        k8s.apiextensions.CustomResource("runtime", api_version="serving.kserve.io/v1alpha1", kind="ServingRuntime",
                                         spec={"supportedModelFormats": [{"name": "huggingface"}], "containers": [
                                             {"name": "kserve-container", "image": "vllm/vllm-openai:v0.11.0",
                                              "ports": [{"containerPort": 8080, "hostPort": 8080}]}]})

    expect_violation(judge(pack, program, "prod"), "k8s-no-host-network",
                     "kubernetes:serving.kserve.io/v1alpha1:ServingRuntime", "runtime")


# ---- resource policies whose "restriction" confines nobody ---------------------------------

PERMISSION = "aws:lambda/permission:Permission"
REST_API_POLICY = "aws:apigateway/restApiPolicy:RestApiPolicy"


def _function():
    import pulumi_aws as aws
    return aws.lambda_.Function("fn", role="arn:aws:iam::123456789012:role/fn", runtime="python3.12",
                                handler="app.handler", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:1",
                                package_type="Image")


def _permission(principal, **source):
    import pulumi_aws as aws

    def program():
        fn = _function()
        aws.lambda_.Permission("perm", function=fn.name, action="lambda:InvokeFunction", principal=principal, **source)
    return program


def _api_policy(statement):
    import json

    import pulumi_aws as aws

    def program():
        api = aws.apigateway.RestApi("api")
        aws.apigateway.RestApiPolicy("pol", rest_api_id=api.id, policy=json.dumps({
            "Version": "2012-10-17", "Statement": [dict({"Effect": "Allow", "Action": "execute-api:Invoke",
                                                         "Resource": "*"}, **statement)]}))
    return program


OPEN_INVOKE = [
    ("permission-star-source-arn-wildcard-account",
     _permission("*", source_arn="arn:aws:execute-api:us-east-1:*:*/*/*/*"), PERMISSION, "perm"),
    ("permission-star-source-arn-star", _permission("*", source_arn="*"), PERMISSION, "perm"),
    ("permission-apigateway-any-account-arn",
     _permission("apigateway.amazonaws.com", source_arn="arn:aws:execute-api:*:*:*"), PERMISSION, "perm"),
    ("policy-source-ip-halves", _api_policy({"Principal": {"AWS": ["*"]}, "Condition": {
        "IpAddress": {"aws:SourceIp": ["0.0.0.0/1", "128.0.0.0/1"]}}}), REST_API_POLICY, "pol"),
    ("policy-source-ip-ipv6-world-spelled-long", _api_policy({"Principal": "*", "Condition": {
        "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "0:0:0:0:0:0:0:0/0"]}}}), REST_API_POLICY, "pol"),
    ("policy-vpce-if-exists", _api_policy({"Principal": "*", "Condition": {
        "StringEqualsIfExists": {"aws:SourceVpce": "vpce-0abc"}}}), REST_API_POLICY, "pol"),
    ("policy-any-organization", _api_policy({"Principal": "*", "Condition": {
        "StringLike": {"aws:PrincipalOrgID": "o-*"}}}), REST_API_POLICY, "pol"),
    ("policy-any-vpc-endpoint", _api_policy({"Principal": "*", "Condition": {
        "Null": {"aws:SourceVpce": "false"}}}), REST_API_POLICY, "pol"),
    ("policy-every-account-but-one", _api_policy({"Principal": "*", "Condition": {
        "StringNotEquals": {"aws:PrincipalAccount": "999999999999"}}}), REST_API_POLICY, "pol"),
]
CONFINED_INVOKE = [
    ("permission-api-in-this-account",
     _permission("apigateway.amazonaws.com", source_arn="arn:aws:execute-api:us-east-1:123456789012:abc123/*")),
    ("permission-star-with-account-wildcarded-api",
     _permission("*", source_arn="arn:aws:execute-api:us-east-1:123456789012:*")),
    ("policy-office-range", _api_policy({"Principal": "*", "Condition": {
        "IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "10.0.0.0/8"]}}})),
    ("policy-own-vpce", _api_policy({"Principal": "*", "Condition": {
        "StringEquals": {"aws:SourceVpce": "vpce-0abc"}}})),
    ("policy-own-org-paths", _api_policy({"Principal": "*", "Condition": {
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": "o-a1b2c3d4e5/r-ab12/*"}}})),
]


@pytest.mark.parametrize("program,token,name", [c[1:] for c in OPEN_INVOKE], ids=[c[0] for c in OPEN_INVOKE])
def test_a_restriction_that_confines_nobody_is_a_violation(pack, program, token, name):
    expect_violation(judge(pack, program, "dev"), "no-public-invoke", token, name)


@pytest.mark.parametrize("program", [c[1] for c in CONFINED_INVOKE], ids=[c[0] for c in CONFINED_INVOKE])
def test_a_confining_restriction_is_clean(pack, program):
    expect_clean(judge(pack, program, "dev"), "no-public-invoke")
