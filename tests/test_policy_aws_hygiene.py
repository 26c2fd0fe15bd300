"""Family 2, infrastructure per resource: TLS, IMDSv2, encryption at rest, gateway metering,
approved capacity, log retention and rollout safety."""
from __future__ import annotations

import json

import pulumi_aws as aws
import pulumi_kubernetes as k8s

from tests.policy_helpers import (
    ASG, DEPLOYMENT, EKS_CLUSTER, INSTANCE, LAUNCH_TEMPLATE, LISTENER, NODE_GROUP, expect_clean, expect_violation,
    judge, model_deployment, pack, vllm_container,
)
from tools.analyzer import config_path

__all__ = ["pack"]

_CERT = "arn:aws:acm:us-east-1:1:certificate/x"
_TG = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/m/1"


# ---- TLS --------------------------------------------------------------------------------

def test_plaintext_listeners_and_old_tls_policies_are_violations(pack):
    def program():
        lb = aws.lb.LoadBalancer("nlb", load_balancer_type="network", internal=True, subnets=["subnet-1"])
        aws.lb.Listener("tcp", load_balancer_arn=lb.arn, port=8000, protocol="TCP",
                        default_actions=[{"type": "forward", "target_group_arn": _TG}])
        aws.lb.Listener("old-tls", load_balancer_arn=lb.arn, port=443, protocol="TLS", certificate_arn=_CERT,
                        ssl_policy="ELBSecurityPolicy-2016-08",
                        default_actions=[{"type": "forward", "target_group_arn": _TG}])
        aws.apigateway.DomainName("legacy-domain", domain_name="llm.example.com",
                                  regional_certificate_arn=_CERT, security_policy="TLS_1_0",
                                  endpoint_configuration={"types": "REGIONAL"})

    verdict = judge(pack, program)
    expect_violation(verdict, "tls-everywhere", LISTENER, "tcp", contains=['protocol is "TCP"'])
    expect_violation(verdict, "tls-everywhere", LISTENER, "old-tls",
                     contains=['sslPolicy is "ELBSecurityPolicy-2016-08"'])
    expect_violation(verdict, "tls-everywhere", "aws:apigateway/domainName:DomainName", "legacy-domain",
                     contains=['"TLS_1_0"'])


def test_modern_tls_and_an_http_to_https_redirect_pass(pack):
    def program():
        lb = aws.lb.LoadBalancer("nlb", load_balancer_type="network", internal=True, subnets=["subnet-1"])
        aws.lb.Listener("tls", load_balancer_arn=lb.arn, port=443, protocol="TLS", certificate_arn=_CERT,
                        ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                        default_actions=[{"type": "forward", "target_group_arn": _TG}])
        alb = aws.lb.LoadBalancer("alb", load_balancer_type="application", internal=True, subnets=["subnet-1"])
        aws.lb.Listener("http-redirect", load_balancer_arn=alb.arn, port=80, protocol="HTTP",
                        default_actions=[{"type": "redirect", "redirect": {
                            "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}])
        aws.apigateway.DomainName("domain", domain_name="llm.example.com", regional_certificate_arn=_CERT,
                                  security_policy="TLS_1_2", endpoint_configuration={"types": "REGIONAL"})

    expect_clean(judge(pack, program), "tls-everywhere")


# ---- IMDSv2 -----------------------------------------------------------------------------

def test_imdsv1_or_a_hop_limit_above_one_is_a_violation(pack):
    def program():
        aws.ec2.LaunchTemplate("defaults", image_id="ami-1", instance_type="g6e.xlarge")
        aws.ec2.Instance("two-hops", ami="ami-1", instance_type="g6e.xlarge",
                         metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 2})

    verdict = judge(pack, program)
    expect_violation(verdict, "imdsv2-required", LAUNCH_TEMPLATE, "defaults",
                     contains=["metadataOptions.httpTokens is not set"])
    expect_violation(verdict, "imdsv2-required", INSTANCE, "two-hops",
                     contains=["metadataOptions.httpPutResponseHopLimit is 2"])


def test_imdsv2_with_one_hop_or_no_metadata_service_passes(pack):
    def program():
        aws.ec2.LaunchTemplate("strict", metadata_options={"http_tokens": "required",
                                                           "http_put_response_hop_limit": 1})
        aws.ec2.Instance("no-imds", ami="ami-1", instance_type="g6e.xlarge",
                         metadata_options={"http_endpoint": "disabled"},
                         root_block_device={"encrypted": True})

    expect_clean(judge(pack, program), "imdsv2-required")


# ---- encryption at rest -----------------------------------------------------------------

def test_unencrypted_volumes_clusters_and_log_groups_are_violations(pack):
    def program():
        aws.ebs.Volume("cache", availability_zone="us-east-1a", size=500)
        # Launch templates type `encrypted` as a string.
        aws.ec2.LaunchTemplate("lt", block_device_mappings=[
            {"device_name": "/dev/xvda", "ebs": {"encrypted": "false", "volume_size": 300}}])
        aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks",
                        vpc_config={"subnet_ids": ["subnet-1"], "endpoint_public_access": False})
        aws.cloudwatch.LogGroup("access-logs", retention_in_days=365)

    verdict = judge(pack, program)
    expect_violation(verdict, "encryption-at-rest", "aws:ebs/volume:Volume", "cache",
                     contains=["encrypted is not set"])
    expect_violation(verdict, "encryption-at-rest", LAUNCH_TEMPLATE, "lt",
                     contains=['blockDeviceMappings[0].ebs.encrypted is "false"'])
    expect_violation(verdict, "encryption-at-rest", EKS_CLUSTER, "eks", contains=["encryptionConfig is not set"])
    expect_violation(verdict, "encryption-at-rest", "aws:cloudwatch/logGroup:LogGroup", "access-logs",
                     contains=["kmsKeyId is not set"])


def test_kms_encrypted_storage_passes(pack):
    def program():
        key = aws.kms.Key("data")
        aws.ebs.Volume("cache", availability_zone="us-east-1a", size=500, encrypted=True, kms_key_id=key.arn)
        aws.ec2.LaunchTemplate("lt", block_device_mappings=[
            {"device_name": "/dev/xvda", "ebs": {"encrypted": "true", "kms_key_id": key.arn}}])
        aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks",
                        vpc_config={"subnet_ids": ["subnet-1"], "endpoint_public_access": False},
                        encryption_config={"resources": ["secrets"], "provider": {"key_arn": key.arn}})
        aws.cloudwatch.LogGroup("access-logs", retention_in_days=365, kms_key_id=key.arn)

    expect_clean(judge(pack, program), "encryption-at-rest")


# ---- gateway metering -------------------------------------------------------------------

def test_a_usage_plan_without_quota_and_disabled_throttling_are_violations(pack):
    def program():
        api = aws.apigateway.RestApi("llm-api")
        aws.apigateway.UsagePlan("unmetered", throttle_settings={"rate_limit": 5, "burst_limit": 10})
        aws.apigateway.MethodSettings("unthrottled", rest_api=api.id, stage_name="v1", method_path="*/*",
                                      settings={"throttling_rate_limit": -1, "throttling_burst_limit": -1})

    verdict = judge(pack, program)
    expect_violation(verdict, "gateway-metering", "aws:apigateway/usagePlan:UsagePlan", "unmetered",
                     contains=["quotaSettings.limit is not set"])
    expect_violation(verdict, "gateway-metering", "aws:apigateway/methodSettings:MethodSettings", "unthrottled",
                     contains=["settings.throttlingRateLimit is -1"])


def test_a_plan_with_throttle_and_quota_and_a_throttled_http_stage_pass(pack):
    def program():
        aws.apigateway.UsagePlan("standard", throttle_settings={"rate_limit": 5, "burst_limit": 10},
                                 quota_settings={"limit": 200000, "period": "MONTH"})
        api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
        aws.apigatewayv2.Stage("default", api_id=api.id, name="$default", auto_deploy=True,
                               default_route_settings={"throttling_rate_limit": 20, "throttling_burst_limit": 40})

    expect_clean(judge(pack, program), "gateway-metering")


# ---- approved capacity ------------------------------------------------------------------

def test_unapproved_instance_families_and_oversized_groups_are_violations(pack):
    def program():
        aws.ec2.LaunchTemplate("burstable", instance_type="t3.2xlarge")
        aws.autoscaling.Group("runaway", max_size=50, min_size=1, vpc_zone_identifiers=["subnet-1"],
                              launch_template={"id": "lt-1", "version": "$Latest"})
        aws.eks.NodeGroup("mixed", cluster_name="llm", node_role_arn="arn:aws:iam::1:role/n",
                          subnet_ids=["subnet-1"], instance_types=["g6e.xlarge", "x2idn.16xlarge"],
                          scaling_config={"desired_size": 1, "max_size": 4, "min_size": 1})

    verdict = judge(pack, program)
    expect_violation(verdict, "approved-capacity", LAUNCH_TEMPLATE, "burstable",
                     contains=['instanceType is "t3.2xlarge"'])
    expect_violation(verdict, "approved-capacity", ASG, "runaway", contains=["maxSize is 50", "at most 8"])
    expect_violation(verdict, "approved-capacity", NODE_GROUP, "mixed",
                     contains=['instanceTypes[1] is "x2idn.16xlarge"'])


def test_capacity_limits_follow_the_environment_config(pack):
    def program():
        k8s.autoscaling.v2.HorizontalPodAutoscaler("hpa", spec={
            "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": "r1"},
            "min_replicas": 1, "max_replicas": 6})
        aws.ec2.LaunchTemplate("gpu", instance_type="g6e.12xlarge")

    # prod allows 8 replicas, dev 4.
    expect_clean(judge(pack, program, "prod"), "approved-capacity")
    expect_violation(judge(pack, program, "dev"), "approved-capacity",
                     "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "hpa", level="advisory",
                     contains=["spec.maxReplicas is 6"])


def test_a_custom_instance_family_list_is_honoured(pack):
    config = json.loads(config_path("prod").read_text())
    config["approved-capacity"]["allowedInstanceFamilies"] = ["t3"]

    def program():
        aws.ec2.LaunchTemplate("burstable", instance_type="t3.2xlarge")

    expect_clean(judge(pack, program, config=config), "approved-capacity")


_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def _node_pool(name: str, *, limits=None, capacity=("spot", "on-demand"), types=("g6e.xlarge",)):
    requirements = [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(capacity)}]
    if types is not None:
        requirements.append({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(types)})
    spec = {"template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                   "name": "gpu"}, "requirements": requirements}}}
    if limits is not None:
        spec["limits"] = limits
    k8s.apiextensions.CustomResource(name, api_version="karpenter.sh/v1", kind="NodePool",
                                     metadata={"name": name}, spec=spec)


def test_a_node_pool_without_a_gpu_limit_or_instance_bounds_is_unbounded_capacity(pack):
    def program():
        _node_pool("unbounded")
        _node_pool("cpu-only-limit", limits={"cpu": "1000"})
        _node_pool("any-type", limits={"nvidia.com/gpu": "8"}, types=None)
        _node_pool("odd-family", limits={"nvidia.com/gpu": "8"}, types=("g6e.xlarge", "x2idn.16xlarge"))
        _node_pool("huge", limits={"nvidia.com/gpu": "512"})

    verdict = judge(pack, program)
    for name in ("unbounded", "cpu-only-limit"):
        expect_violation(verdict, "approved-capacity", _NODE_POOL, name, contains=["unbounded capacity"])
    expect_violation(verdict, "approved-capacity", _NODE_POOL, "any-type", contains=["<any instance type>"])
    expect_violation(verdict, "approved-capacity", _NODE_POOL, "odd-family", contains=['"x2idn.16xlarge"'])
    expect_violation(verdict, "approved-capacity", _NODE_POOL, "huge", contains=["512", "at most 64"])


def test_a_bounded_node_pool_of_approved_types_passes(pack):
    def program():
        _node_pool("gpu-spot", limits={"nvidia.com/gpu": "12"}, types=("g6e.xlarge", "g6e.2xlarge"))

    expect_clean(judge(pack, program), "approved-capacity")


def test_spot_is_a_finding_where_the_environment_forbids_it(pack):
    config = json.loads(config_path("prod").read_text())
    config["approved-capacity"]["allowSpot"] = False

    def program():
        _node_pool("gpu-spot", limits={"nvidia.com/gpu": "12"})
        _node_pool("gpu-on-demand", limits={"nvidia.com/gpu": "12"}, capacity=("on-demand",))
        aws.autoscaling.Group("mixed", max_size=4, min_size=1, vpc_zone_identifiers=["subnet-1"],
                              mixed_instances_policy={
                                  "instances_distribution": {"on_demand_base_capacity": 1,
                                                             "on_demand_percentage_above_base_capacity": 0},
                                  "launch_template": {"launch_template_specification": {"launch_template_id": "lt-1"},
                                                      "overrides": [{"instance_type": "g6e.xlarge"}]}})
        aws.eks.NodeGroup("spot-group", cluster_name="llm", node_role_arn="arn:aws:iam::1:role/n",
                          subnet_ids=["subnet-1"], instance_types=["g6e.xlarge"], capacity_type="SPOT",
                          scaling_config={"desired_size": 1, "max_size": 4, "min_size": 1})

    verdict = judge(pack, program, config=config)
    expect_violation(verdict, "approved-capacity", _NODE_POOL, "gpu-spot", contains=["spot"])
    expect_violation(verdict, "approved-capacity", ASG, "mixed", contains=["spot"])
    expect_violation(verdict, "approved-capacity", NODE_GROUP, "spot-group", contains=["spot"])
    expect_clean(judge(pack, lambda: _node_pool("od", limits={"nvidia.com/gpu": "4"}, capacity=("on-demand",)),
                       config=config), "approved-capacity")
    # Allowed by default.
    expect_clean(judge(pack, program), "approved-capacity")


# ---- log retention ----------------------------------------------------------------------

def test_log_retention_below_the_environment_minimum_is_a_violation(pack):
    def program():
        key = aws.kms.Key("logs")
        aws.cloudwatch.LogGroup("short", retention_in_days=7, kms_key_id=key.arn)
        aws.cloudwatch.LogGroup("long", retention_in_days=365, kms_key_id=key.arn)
        aws.cloudwatch.LogGroup("forever", kms_key_id=key.arn)

    verdict = judge(pack, program, "prod")
    expect_violation(verdict, "log-retention", "aws:cloudwatch/logGroup:LogGroup", "short",
                     contains=["retentionInDays is 7", "at least 365 days"])
    assert len(verdict.of("log-retention")) == 1
    expect_clean(judge(pack, program, "dev"), "log-retention")


# ---- rollouts ---------------------------------------------------------------------------

def test_a_model_deployment_that_can_drop_replicas_during_rollout_is_a_violation(pack):
    def program():
        k8s.apps.v1.Deployment("default-strategy", spec={
            "selector": {"match_labels": {"app": "m"}},
            "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": [vllm_container()]}}})
        k8s.apps.v1.Deployment("recreate", spec={
            "selector": {"match_labels": {"app": "r"}}, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [vllm_container()]}}})

    verdict = judge(pack, program)
    expect_violation(verdict, "rollout-availability", DEPLOYMENT, "default-strategy",
                     contains=["maxUnavailable is not set", "25%"])
    expect_violation(verdict, "rollout-availability", DEPLOYMENT, "recreate",
                     contains=['spec.strategy.type is "Recreate"'])


def test_an_asg_behind_a_target_group_needs_elb_health_checks(pack):
    def program():
        common = dict(max_size=2, min_size=1, vpc_zone_identifiers=["subnet-1"],
                      launch_template={"id": "lt-1", "version": "$Latest"}, target_group_arns=[_TG])
        aws.autoscaling.Group("ec2-checks", **common)
        aws.autoscaling.Group("elb-checks", health_check_type="ELB", health_check_grace_period=900, **common)

    verdict = judge(pack, program)
    expect_violation(verdict, "rollout-availability", ASG, "ec2-checks", contains=["healthCheckType is not set"])
    assert not verdict.on("rollout-availability", ASG, "elb-checks")


def test_a_zero_unavailable_rollout_passes(pack):
    expect_clean(judge(pack, lambda: model_deployment("r1", vllm_container(), replicas=2)), "rollout-availability")
