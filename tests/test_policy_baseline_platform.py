"""Family 3, logging, API Gateway, Kubernetes and node groups, through the analyzer protocol:
violating and compliant twins, dict and typed Args spellings, relations across resources."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from tests.policy_helpers import (
    DEPLOYMENT, NODE_GROUP, expect_clean, expect_violation, judge, model_deployment, pack, unknown_of, vllm_container,
)

__all__ = ["pack"]

STAGE = "aws:apigateway/stage:Stage"
REST_API = "aws:apigateway/restApi:RestApi"
INTEGRATION = "aws:apigateway/integration:Integration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
VPC = "aws:ec2/vpc:Vpc"
WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
_CERT = "arn:aws:acm:us-east-1:1:certificate/x"


# ---- stage-access-logs ---------------------------------------------------------------------

def test_stages_without_access_logs_are_violations(pack):
    def program():
        api = aws.apigateway.RestApi("api")
        logs = aws.cloudwatch.LogGroup("access", retention_in_days=30, kms_key_id="arn:aws:kms:us-east-1:1:key/k")
        aws.apigateway.Stage("silent", rest_api=api.id, deployment="d", stage_name="v1")
        aws.apigateway.Stage("logged", rest_api=api.id, deployment="d", stage_name="v2",
                             access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                                 destination_arn=logs.arn, format='{"requestId":"$context.requestId"}'))
        http = aws.apigatewayv2.Api("http", protocol_type="HTTP")
        aws.apigatewayv2.Stage("http-silent", api_id=http.id, name="$default")

    verdict = judge(pack, program)
    expect_violation(verdict, "stage-access-logs", STAGE, "silent",
                     contains=["accessLogSettings.destinationArn is not set"])
    expect_violation(verdict, "stage-access-logs", "aws:apigatewayv2/stage:Stage", "http-silent")
    assert not verdict.on("stage-access-logs", STAGE, "logged"), verdict.describe("stage-access-logs")


# ---- vpc-flow-logs -------------------------------------------------------------------------

def test_every_vpc_needs_its_own_flow_log(pack):
    def program():
        watched = aws.ec2.Vpc("watched", cidr_block="10.0.0.0/16")
        aws.ec2.Vpc("unwatched", cidr_block="10.1.0.0/16")
        other = aws.ec2.Vpc("subnet-only", cidr_block="10.2.0.0/16")
        subnet = aws.ec2.Subnet("s", vpc_id=other.id, cidr_block="10.2.0.0/24")
        aws.ec2.FlowLog("vpc-log", vpc_id=watched.id, traffic_type="ALL", log_destination="arn:aws:s3:::logs")
        aws.ec2.FlowLog("subnet-log", subnet_id=subnet.id, traffic_type="ALL", log_destination="arn:aws:s3:::logs")

    verdict = judge(pack, program)
    expect_violation(verdict, "vpc-flow-logs", VPC, "unwatched", contains=["flow logs is not configured"])
    expect_violation(verdict, "vpc-flow-logs", VPC, "subnet-only")
    assert not verdict.on("vpc-flow-logs", VPC, "watched"), verdict.describe("vpc-flow-logs")


# ---- waf-logs-redact-credentials -----------------------------------------------------------

@pytest.mark.parametrize("fields,missing", [
    (None, "authorization, x-api-key"),
    ([{"single_header": {"name": "authorization"}}], "x-api-key"),
    ([aws.wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
        single_header=aws.wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs(name="x-api-key")),
      {"query_string": {}}], "authorization"),
], ids=["none", "dict-one", "typed-one"])
def test_waf_logs_must_redact_both_credential_headers(pack, fields, missing):
    def program():
        aws.wafv2.WebAclLoggingConfiguration("logging", resource_arn="arn:acl",
                                             log_destination_configs=["arn:logs"], redacted_fields=fields)

    expect_violation(judge(pack, program), "waf-logs-redact-credentials", WAF_LOGGING, "logging",
                     contains=[f"so {missing} (callers'"])


def test_waf_logs_redacting_both_headers_pass(pack):
    def program():
        aws.wafv2.WebAclLoggingConfiguration("logging", resource_arn="arn:acl", log_destination_configs=["arn:logs"],
                                             redacted_fields=[{"single_header": {"name": "x-api-key"}},
                                                              {"single_header": {"name": "authorization"}}])

    expect_clean(judge(pack, program), "waf-logs-redact-credentials")


# ---- log-group-protected -------------------------------------------------------------------

def test_log_groups_need_a_key_and_a_retention(pack):
    def program():
        key = aws.kms.Key("logs")
        aws.cloudwatch.LogGroup("bare")
        aws.cloudwatch.LogGroup("forever", kms_key_id=key.arn, retention_in_days=0)
        aws.cloudwatch.LogGroup("aws-key", retention_in_days=30)
        aws.cloudwatch.LogGroup("good", kms_key_id=key.arn, retention_in_days=30)

    verdict = judge(pack, program)
    bare = " ".join(d.message for d in verdict.on("log-group-protected", LOG_GROUP, "bare"))
    assert "kmsKeyId is not set" in bare and "retentionInDays is not set" in bare, bare
    expect_violation(verdict, "log-group-protected", LOG_GROUP, "forever", contains=["retentionInDays is 0"])
    expect_violation(verdict, "log-group-protected", LOG_GROUP, "aws-key", contains=["kmsKeyId is not set"])
    assert not verdict.on("log-group-protected", LOG_GROUP, "good"), verdict.describe("log-group-protected")


# ---- execute-api-endpoint-disabled ---------------------------------------------------------

def test_a_mapped_api_must_disable_its_execute_api_endpoint(pack):
    def program():
        for name, disabled in (("open-api", None), ("closed-api", True)):
            api = aws.apigateway.RestApi(name, disable_execute_api_endpoint=disabled)
            domain = aws.apigateway.DomainName(f"{name}-domain", domain_name=f"{name}.example.com",
                                               regional_certificate_arn=_CERT, security_policy="TLS_1_2",
                                               endpoint_configuration={"types": "REGIONAL"})
            aws.apigateway.BasePathMapping(f"{name}-mapping", rest_api=api.id, domain_name=domain.domain_name,
                                           stage_name="v1")
        aws.apigateway.RestApi("unmapped")
        http = aws.apigatewayv2.Api("http", protocol_type="HTTP")
        aws.apigatewayv2.ApiMapping("http-mapping", api_id=http.id, domain_name="h.example.com", stage="$default")

    verdict = judge(pack, program)
    expect_violation(verdict, "execute-api-endpoint-disabled", REST_API, "open-api",
                     contains=["disableExecuteApiEndpoint is not set", "open-api-mapping"])
    expect_violation(verdict, "execute-api-endpoint-disabled", "aws:apigatewayv2/api:Api", "http")
    for name in ("closed-api", "unmapped"):
        assert not verdict.on("execute-api-endpoint-disabled", REST_API, name), verdict.describe()


# ---- integration TLS verification ----------------------------------------------------------

def _private_integration(name: str, *, private_ca: bool, skip: bool):
    certificate = aws.acm.Certificate(
        f"{name}-cert", domain_name=f"{name}.internal.example.com",
        certificate_authority_arn="arn:aws:acm-pca:us-east-1:1:certificate-authority/ca" if private_ca else None,
        validation_method=None if private_ca else "DNS")
    lb = aws.lb.LoadBalancer(f"{name}-nlb", load_balancer_type="network", internal=True, subnets=["subnet-1"])
    aws.lb.Listener(f"{name}-tls", load_balancer_arn=lb.arn, port=443, protocol="TLS",
                    certificate_arn=certificate.arn, ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                    default_actions=[{"type": "forward", "target_group_arn": "arn:tg"}])
    link = aws.apigateway.VpcLink(f"{name}-link", target_arn=lb.arn)
    aws.apigateway.Integration(
        f"{name}-integration", rest_api="api", resource_id="r", http_method="POST", type="HTTP_PROXY",
        integration_http_method="POST", connection_type="VPC_LINK", connection_id=link.id,
        uri=f"https://{name}.internal.example.com/v1/chat/completions",
        tls_config=aws.apigateway.IntegrationTlsConfigArgs(insecure_skip_verification=skip))


def test_skipping_tls_verification_is_mandatory_unless_a_private_ca_explains_it(pack):
    def program():
        _private_integration("public", private_ca=False, skip=True)
        _private_integration("private", private_ca=True, skip=True)
        _private_integration("verified", private_ca=False, skip=False)
        aws.apigateway.Integration("internet", rest_api="api", resource_id="r", http_method="GET", type="HTTP",
                                   integration_http_method="GET", uri="https://backend.example.com/",
                                   tls_config={"insecure_skip_verification": True})

    verdict = judge(pack, program)
    expect_violation(verdict, "integration-tls-verified", INTEGRATION, "public-integration",
                     contains=["tlsConfig.insecureSkipVerification is true", "accepts any certificate"])
    expect_violation(verdict, "integration-tls-verified", INTEGRATION, "internet")
    assert not verdict.on("integration-tls-verified", INTEGRATION, "private-integration"), verdict.describe()
    expect_violation(verdict, "integration-tls-private-ca", INTEGRATION, "private-integration", level="advisory",
                     contains=["private CA (private-cert)", "does not trust"])
    assert not verdict.on("integration-tls-private-ca", INTEGRATION, "public-integration")
    assert not [d for d in verdict.diagnostics if "verified-integration" in d.urn
                and d.policy_name.startswith("integration-tls")], verdict.describe()


# ---- no-literal-credentials ----------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("integration.request.header.Authorization", "'Bearer abc123'"),
    ("integration.request.header.x-api-key", "'k-123'"),
    ("integration.request.querystring.access_token", "'t0k'"),
    ("integration.request.header.X-Forwarded-Auth", "'Basic dXNlcjpwYXNz'"),
], ids=["bearer", "api-key-header", "token-query", "basic-value"])
def test_static_credentials_in_request_parameters_are_violations_without_showing_them(pack, key, value):
    def program():
        aws.apigateway.Integration("literal", rest_api="api", resource_id="r", http_method="POST", type="HTTP_PROXY",
                                   integration_http_method="POST", uri="https://backend.example.com/",
                                   request_parameters={key: value})
        aws.apigateway.Integration("secret-literal", rest_api="api", resource_id="r", http_method="POST",
                                   type="HTTP_PROXY", integration_http_method="POST", uri="https://b.example.com/",
                                   request_parameters={key: pulumi.Output.secret(value)})

    verdict = judge(pack, program)
    for name in ("literal", "secret-literal"):
        found = expect_violation(verdict, "no-literal-credentials", INTEGRATION, name,
                                 contains=[f'requestParameters["{key}"] is a static literal (value redacted)'])
        assert value.strip("'") not in found.message


def test_mapped_credentials_and_static_non_credentials_pass(pack):
    def program():
        aws.apigateway.Integration("mapped", rest_api="api", resource_id="r", http_method="POST", type="HTTP_PROXY",
                                   integration_http_method="POST", uri="https://backend.example.com/",
                                   request_parameters={
                                       "integration.request.header.Authorization": "method.request.header.Authorization",
                                       "integration.request.header.x-caller": "context.authorizer.claims.sub",
                                       "integration.request.header.x-api-key": "stageVariables.keyName",
                                       "integration.request.header.Accept": "'application/json'"})
        aws.apigateway.Method("method", rest_api="api", resource_id="r", http_method="POST", authorization="NONE",
                              api_key_required=True,
                              request_parameters={"method.request.header.Authorization": True})

    expect_clean(judge(pack, program), "no-literal-credentials")


def test_http_api_static_values_on_credential_headers_are_violations(pack):
    def program():
        aws.apigatewayv2.Integration("v2", api_id="a", integration_type="HTTP_PROXY", integration_method="ANY",
                                     integration_uri="https://backend.example.com",
                                     request_parameters={"overwrite:header.Authorization": "Bearer abc",
                                                         "append:header.x-request": "$context.requestId"})

    expect_violation(judge(pack, program), "no-literal-credentials", "aws:apigatewayv2/integration:Integration", "v2",
                     contains=["overwrite:header.Authorization"])


# ---- Kubernetes ----------------------------------------------------------------------------

def _server(name: str = "llm", uid=10001, **container_context):
    context = {"run_as_non_root": True, "allow_privilege_escalation": False, "capabilities": {"drop": ["ALL"]},
               "seccomp_profile": {"type": "RuntimeDefault"}, **container_context}
    if uid is not None:
        context["run_as_user"] = uid
    return vllm_container(security_context=context, ports=[{"container_port": 8000, "name": "http"}])


def _deny(name: str, namespace: str = "models", types=("Ingress", "Egress")):
    return k8s.networking.v1.NetworkPolicy(name, metadata={"namespace": namespace, "name": name},
                                           spec={"pod_selector": {}, "policy_types": list(types)})


def test_a_model_namespace_without_a_default_deny_is_a_violation(pack):
    def program():
        model_deployment("llm", _server())
        # Selecting only some pods, or with an allow rule, is not a default deny.
        k8s.networking.v1.NetworkPolicy("partial", metadata={"namespace": "models"}, spec={
            "pod_selector": {"match_labels": {"app": "other"}}, "policy_types": ["Ingress"]})
        k8s.networking.v1.NetworkPolicy("allow-all", metadata={"namespace": "models"}, spec={
            "pod_selector": {}, "policy_types": ["Ingress"], "ingress": [{}]})
        _deny("elsewhere", namespace="monitoring")

    expect_violation(judge(pack, program), "k8s-default-deny", DEPLOYMENT, "llm",
                     contains=["namespace models runs a model server"])


@pytest.mark.parametrize("types", [("Ingress", "Egress"), ("Ingress",), ()], ids=["both", "ingress", "implied"])
def test_a_default_deny_in_the_model_namespace_passes(pack, types):
    def program():
        model_deployment("llm", _server())
        k8s.networking.v1.NetworkPolicy("deny", metadata={"namespace": "models"},
                                        spec=k8s.networking.v1.NetworkPolicySpecArgs(
                                            pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                                            policy_types=list(types) or None))

    expect_clean(judge(pack, program), "k8s-default-deny")


def test_a_computed_namespace_is_matched_through_the_namespace_resource(pack):
    def program():
        namespace = k8s.core.v1.Namespace("models")  # auto-named: unknown during preview
        name = namespace.metadata.apply(lambda m: m.name)
        k8s.apps.v1.Deployment("llm", metadata={"namespace": name}, spec={
            "selector": {"match_labels": {"app": "llm"}},
            "template": {"metadata": {"labels": {"app": "llm"}}, "spec": {"containers": [_server()]}}})
        k8s.networking.v1.NetworkPolicy("deny", metadata={"namespace": name},
                                        spec={"pod_selector": {}, "policy_types": ["Ingress"]})

    expect_clean(judge(pack, program), "k8s-default-deny")


def test_a_namespace_wide_peer_to_the_model_port_is_a_violation(pack):
    monitoring = {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "monitoring"}}}
    scraper = {**monitoring, "pod_selector": {"match_labels": {"app.kubernetes.io/name": "prometheus"}}}

    def program():
        model_deployment("llm", _server())
        _deny("deny")
        k8s.networking.v1.NetworkPolicy("namespace-wide", metadata={"namespace": "models"}, spec={
            "pod_selector": {"match_labels": {"app": "llm"}}, "policy_types": ["Ingress"],
            "ingress": [{"from": [monitoring], "ports": [{"port": 8000}]}]})
        k8s.networking.v1.NetworkPolicy("all-namespaces", metadata={"namespace": "models"}, spec={
            "pod_selector": {}, "ingress": [{"from": [{"namespace_selector": {}}]}]})
        k8s.networking.v1.NetworkPolicy("pod-selected", metadata={"namespace": "models"}, spec={
            "pod_selector": {"match_labels": {"app": "llm"}}, "ingress": [{"from": [scraper], "ports": [{"port": "http"}]}]})
        k8s.networking.v1.NetworkPolicy("other-port", metadata={"namespace": "models"}, spec={
            "pod_selector": {"match_labels": {"app": "llm"}}, "ingress": [{"from": [monitoring], "ports": [{"port": 9400}]}]})
        k8s.networking.v1.NetworkPolicy("other-pods", metadata={"namespace": "models"}, spec={
            "pod_selector": {"match_labels": {"app": "web"}}, "ingress": [{"from": [monitoring]}]})

    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-network-policy-pod-selected", NETWORK_POLICY, "namespace-wide",
                     contains=["spec.ingress[0].from[0] is", "every pod of the selected namespace"])
    expect_violation(verdict, "k8s-network-policy-pod-selected", NETWORK_POLICY, "all-namespaces")
    for name in ("pod-selected", "other-port", "other-pods", "deny"):
        assert not verdict.on("k8s-network-policy-pod-selected", NETWORK_POLICY, name), verdict.describe()


@pytest.mark.parametrize("pod_uid,container_uid,flagged", [
    (None, 1000, True), (1000, None, True), (None, None, True), (0, 10001, False),
    (10001, None, False), (65532, 20000, False), (20000, 9999, True),
], ids=["container-low", "pod-low", "unset", "container-overrides", "pod-high", "both-high", "container-lower"])
def test_containers_run_as_a_uid_of_10000_or_above(pack, pod_uid, container_uid, flagged):
    def program():
        pod_context = {"run_as_non_root": True}
        if pod_uid is not None:
            pod_context["run_as_user"] = pod_uid
        model_deployment("llm", _server(uid=container_uid), security_context=pod_context)

    verdict = judge(pack, program)
    if flagged:
        expect_violation(verdict, "k8s-high-uid", DEPLOYMENT, "llm", contains=["securityContext.runAsUser"])
    else:
        expect_clean(verdict, "k8s-high-uid")


def test_init_containers_and_other_workloads_are_judged_too(pack):
    def program():
        k8s.batch.v1.Job("fetch", spec={"template": {"spec": {
            "restart_policy": "Never", "security_context": {"run_as_user": 10001},
            "init_containers": [{"name": "init", "image": "busybox@sha256:1", "security_context": {"run_as_user": 0}}],
            "containers": [{"name": "main", "image": "busybox@sha256:1"}]}}})
        k8s.core.v1.Pod("bare", spec=k8s.core.v1.PodSpecArgs(containers=[k8s.core.v1.ContainerArgs(
            name="c", image="busybox@sha256:1",
            security_context=k8s.core.v1.SecurityContextArgs(run_as_user=1000))]))

    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-high-uid", "kubernetes:batch/v1:Job", "fetch",
                     contains=["initContainers[0].securityContext.runAsUser is 0"])
    assert len(verdict.on("k8s-high-uid", "kubernetes:batch/v1:Job", "fetch")) == 1
    expect_violation(verdict, "k8s-high-uid", "kubernetes:core/v1:Pod", "bare", contains=["is 1000"])


# ---- eks-node-group-imdsv2 -----------------------------------------------------------------

def _node_group(name: str, template=None):
    return aws.eks.NodeGroup(name, cluster_name="c", node_role_arn="arn:role", subnet_ids=["subnet-1"],
                             scaling_config={"desired_size": 1, "min_size": 1, "max_size": 2},
                             launch_template=template)


@pytest.mark.parametrize("options,flagged", [
    ({"http_tokens": "required", "http_put_response_hop_limit": 1}, False),
    (aws.ec2.LaunchTemplateMetadataOptionsArgs(http_tokens="required", http_put_response_hop_limit=1), False),
    ({"http_tokens": "optional", "http_put_response_hop_limit": 1}, True),
    ({"http_tokens": "required", "http_put_response_hop_limit": 2}, True),
    (None, True),
], ids=["dict", "typed", "imdsv1", "two-hops", "no-options"])
def test_node_groups_launch_from_templates_that_require_imdsv2_hop_1(pack, options, flagged):
    def program():
        template = aws.ec2.LaunchTemplate("nodes", metadata_options=options)
        _node_group("gpu", {"id": template.id, "version": template.latest_version.apply(str)})

    verdict = judge(pack, program)
    if flagged:
        expect_violation(verdict, "eks-node-group-imdsv2", NODE_GROUP, "gpu",
                         contains=["launchTemplate (nodes).metadataOptions"])
    else:
        expect_clean(verdict, "eks-node-group-imdsv2")


def test_a_node_group_without_a_launch_template_is_a_violation(pack):
    def program():
        _node_group("default-template")

    expect_violation(judge(pack, program), "eks-node-group-imdsv2", NODE_GROUP, "default-template",
                     contains=["launchTemplate is not set", "two hops"])
