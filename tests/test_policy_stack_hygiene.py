"""Family 2 across the stack: WAF and stage throttling for API stages (gateway-protection),
PDBs for multi-replica models and ELB health checks for attached groups
(serving-availability)."""
from __future__ import annotations

import json
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from tests.policy_helpers import (
    ASG, DEPLOYMENT, STAGE, expect_clean, expect_violation, judge, model_deployment, pack, vllm_container,
)

__all__ = ["pack"]

_VISIBILITY = {"cloudwatch_metrics_enabled": True, "metric_name": "m", "sampled_requests_enabled": True}


def _rate_rule(priority: int = 1) -> dict:
    return {"name": "per-ip-rate", "priority": priority, "action": {"block": {}},
            "statement": {"rate_based_statement": {"limit": 600, "aggregate_key_type": "IP",
                                                   "evaluation_window_sec": 300}},
            "visibility_config": _VISIBILITY}


def _size_rule(size: int, oversize: str, priority: int = 2) -> dict:
    return {"name": "body-size", "priority": priority, "action": {"block": {}},
            "statement": {"size_constraint_statement": {
                "comparison_operator": "GT", "size": size,
                "field_to_match": {"body": {"oversize_handling": oversize}},
                "text_transformations": [{"priority": 0, "type": "NONE"}]}},
            "visibility_config": _VISIBILITY}


def _stage(rules: Optional[list] = None, throttled: bool = True, rule_json: Optional[str] = None):
    api = aws.apigateway.RestApi("llm-api")
    resource = aws.apigateway.Resource("chat", rest_api=api.id, parent_id=api.root_resource_id, path_part="chat")
    method = aws.apigateway.Method("post", rest_api=api.id, resource_id=resource.id, http_method="POST",
                                   authorization="NONE", api_key_required=True)
    deployment = aws.apigateway.Deployment("deploy", rest_api=api.id, triggers={"m": "1"},
                                           opts=pulumi.ResourceOptions(depends_on=[method]))
    stage = aws.apigateway.Stage("v1", rest_api=api.id, deployment=deployment.id, stage_name="v1")
    aws.apigateway.UsagePlan("standard", api_stages=[{"api_id": api.id, "stage": stage.stage_name}],
                             throttle_settings={"rate_limit": 5, "burst_limit": 10},
                             quota_settings={"limit": 1000, "period": "DAY"})
    if throttled:
        aws.apigateway.MethodSettings("all-methods", rest_api=api.id, stage_name=stage.stage_name,
                                      method_path="*/*", settings={"throttling_rate_limit": 50,
                                                                   "throttling_burst_limit": 100})
    if rules is not None or rule_json is not None:
        acl = aws.wafv2.WebAcl("edge", scope="REGIONAL", default_action={"allow": {}},
                               rules=rules or [], rule_json=rule_json, visibility_config=_VISIBILITY)
        aws.wafv2.WebAclAssociation("edge", resource_arn=stage.arn, web_acl_arn=acl.arn)


def test_a_stage_with_rate_and_size_rules_and_stage_throttling_passes(pack):
    verdict = judge(pack, lambda: _stage([_rate_rule(), _size_rule(1048576, "MATCH")]))
    expect_clean(verdict, "gateway-protection")
    expect_clean(verdict, "internet-reachability")


def test_a_stage_without_waf_or_stage_throttling_is_a_violation_on_the_stage(pack):
    verdict = judge(pack, lambda: _stage(rules=None, throttled=False))
    expect_violation(verdict, "gateway-protection", STAGE, "v1",
                     contains=["WAF web ACL association is none", "stage-wide throttling"])


def test_a_body_size_limit_waf_cannot_see_is_not_a_limit(pack):
    verdict = judge(pack, lambda: _stage([_rate_rule(), _size_rule(1048576, "CONTINUE")]))
    expect_violation(verdict, "gateway-protection", STAGE, "v1",
                     contains=["oversizeHandling CONTINUE never matches"])


def test_a_size_limit_above_the_environment_maximum_is_a_violation(pack):
    verdict = judge(pack, lambda: _stage([_rate_rule(), _size_rule(8 * 1048576, "MATCH")]))
    expect_violation(verdict, "gateway-protection", STAGE, "v1", contains=["nothing blocks requests over 1048576"])


def test_rules_given_as_rule_json_are_read_too(pack):
    rule_json = json.dumps([
        {"Name": "rate", "Priority": 1, "Action": {"Block": {}},
         "Statement": {"RateBasedStatement": {"Limit": 600, "AggregateKeyType": "IP"}},
         "VisibilityConfig": {"CloudWatchMetricsEnabled": True, "MetricName": "r", "SampledRequestsEnabled": True}},
        {"Name": "length", "Priority": 2, "Action": {"Block": {}},
         "Statement": {"SizeConstraintStatement": {
             "ComparisonOperator": "GT", "Size": 6,
             "FieldToMatch": {"SingleHeader": {"Name": "content-length"}},
             "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}},
         "VisibilityConfig": {"CloudWatchMetricsEnabled": True, "MetricName": "l", "SampledRequestsEnabled": True}},
    ])
    expect_clean(judge(pack, lambda: _stage(rule_json=rule_json)), "gateway-protection")


def test_a_web_acl_without_a_blocking_rate_rule_is_a_violation(pack):
    counting = dict(_rate_rule(), action={"count": {}})
    verdict = judge(pack, lambda: _stage([counting, _size_rule(8192, "CONTINUE")]))
    expect_violation(verdict, "gateway-protection", STAGE, "v1", contains=["without a blocking rate-based rule"])


def test_gateway_protection_is_advisory_in_dev(pack):
    verdict = judge(pack, lambda: _stage(rules=None), "dev")
    expect_violation(verdict, "gateway-protection", STAGE, "v1", level="advisory")


# ---- serving availability ---------------------------------------------------------------

def test_a_multi_replica_model_without_a_pdb_is_a_violation(pack):
    verdict = judge(pack, lambda: model_deployment("r1", vllm_container(), replicas=2))
    expect_violation(verdict, "serving-availability", DEPLOYMENT, "r1", contains=["up to 2 replicas"])


def test_a_pdb_selecting_the_model_pods_passes(pack):
    def program():
        model_deployment("r1", vllm_container(), replicas=2)
        k8s.policy.v1.PodDisruptionBudget("r1", metadata={"namespace": "models"}, spec={
            "max_unavailable": 1, "selector": {"match_labels": {"app": "r1"}}})

    expect_clean(judge(pack, program), "serving-availability")


def test_a_pdb_for_other_pods_or_another_namespace_does_not_count(pack):
    def program():
        model_deployment("r1", vllm_container(), replicas=2)
        k8s.policy.v1.PodDisruptionBudget("other", metadata={"namespace": "models"}, spec={
            "max_unavailable": 1, "selector": {"match_labels": {"app": "other"}}})
        k8s.policy.v1.PodDisruptionBudget("elsewhere", metadata={"namespace": "default"}, spec={
            "max_unavailable": 1, "selector": {"match_labels": {"app": "r1"}}})

    expect_violation(judge(pack, program), "serving-availability", DEPLOYMENT, "r1")


def test_an_autoscaled_single_replica_model_needs_a_pdb_too(pack):
    def program():
        deployment = model_deployment("r1", vllm_container(), replicas=1)
        k8s.autoscaling.v2.HorizontalPodAutoscaler("r1", metadata={"namespace": "models"}, spec={
            "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment",
                                 "name": deployment.metadata.name},
            "min_replicas": 1, "max_replicas": 4})

    expect_violation(judge(pack, program), "serving-availability", DEPLOYMENT, "r1", contains=["up to 4 replicas"])


def test_a_keda_scaled_model_needs_a_pdb_too(pack):
    def program():
        model_deployment("r1", vllm_container(), replicas=1)
        k8s.apiextensions.CustomResource("r1-scaler", api_version="keda.sh/v1alpha1", kind="ScaledObject",
                                         metadata={"namespace": "models"},
                                         spec={"scaleTargetRef": {"name": "r1"}, "minReplicaCount": 1,
                                               "maxReplicaCount": 3, "triggers": []})
        k8s.apps.v1.Deployment("named", metadata={"name": "r1", "namespace": "models"}, spec={
            "replicas": 1, "selector": {"match_labels": {"app": "named"}},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0}},
            "template": {"metadata": {"labels": {"app": "named"}}, "spec": {
                "automount_service_account_token": False, "containers": [vllm_container()]}}})

    verdict = judge(pack, program)
    # Only the Deployment actually named r1 is the scaler's target.
    expect_violation(verdict, "serving-availability", DEPLOYMENT, "named", contains=["up to 3 replicas"])
    assert not verdict.on("serving-availability", DEPLOYMENT, "r1")


def test_an_asg_attached_to_a_target_group_by_a_separate_resource_needs_elb_health_checks(pack):
    def program():
        group = aws.autoscaling.Group("models", max_size=2, min_size=1, vpc_zone_identifiers=["subnet-1"],
                                      launch_template={"id": "lt-1", "version": "$Latest"})
        aws.autoscaling.Attachment("models", autoscaling_group_name=group.name,
                                   lb_target_group_arn="arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/m/1")

    expect_violation(judge(pack, program), "serving-availability", ASG, "models",
                     contains=["attached to a load balancer by models"])
