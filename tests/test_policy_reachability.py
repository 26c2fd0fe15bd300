"""Family 1 across the stack (internet-reachability): relations between resources that are
only visible through property dependencies during a first preview, and failing closed
when a relation cannot be established."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from tests.policy_helpers import (
    LISTENER, LISTENER_RULE, METHOD, ROUTE, SG, SG_RULE, STAGE, expect_clean, expect_violation, judge, pack,
    unknown_of,
)

__all__ = ["pack"]

POLICY = "internet-reachability"


def _keyed_api(with_plan: bool, literal_stage: bool = False, plan_stage: str = "v1"):
    api = aws.apigateway.RestApi("llm-api")
    resource = aws.apigateway.Resource("chat", rest_api=api.id, parent_id=api.root_resource_id, path_part="chat")
    method = aws.apigateway.Method("post", rest_api=api.id, resource_id=resource.id, http_method="POST",
                                   authorization="NONE", api_key_required=True)
    deployment = aws.apigateway.Deployment("deploy", rest_api=api.id, triggers={"methods": "post"},
                                           opts=pulumi.ResourceOptions(depends_on=[method]))
    stage = aws.apigateway.Stage("v1", rest_api=api.id, deployment=deployment.id, stage_name="v1")
    if with_plan:
        aws.apigateway.UsagePlan("standard", api_stages=[{
            "api_id": api.id, "stage": plan_stage if literal_stage else stage.stage_name}],
            throttle_settings={"rate_limit": 5, "burst_limit": 10}, quota_settings={"limit": 1000, "period": "DAY"})


def test_a_keyed_stage_without_a_usage_plan_is_a_violation_on_the_stage(pack):
    verdict = judge(pack, lambda: _keyed_api(with_plan=False), "dev")
    expect_violation(verdict, POLICY, STAGE, "v1", contains=["usage plans referencing this stage is none"])


def test_a_keyed_stage_in_a_usage_plan_passes_through_outputs_or_a_literal_stage_name(pack):
    expect_clean(judge(pack, lambda: _keyed_api(with_plan=True)), POLICY)
    expect_clean(judge(pack, lambda: _keyed_api(with_plan=True, literal_stage=True)), POLICY)


def test_a_usage_plan_for_another_stage_does_not_meter_this_one(pack):
    verdict = judge(pack, lambda: _keyed_api(with_plan=True, literal_stage=True, plan_stage="v2"))
    expect_violation(verdict, POLICY, STAGE, "v1")


def _alb(internal: bool = False):
    return aws.lb.LoadBalancer("edge", load_balancer_type="application", internal=internal,
                               subnets=["subnet-1", "subnet-2"])


_FORWARD = {"type": "forward", "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/m/1"}
_OIDC = {"type": "authenticate-oidc", "order": 1, "authenticate_oidc": {
    "authorization_endpoint": "https://idp.example/auth", "client_id": "llm", "client_secret": "s",
    "issuer": "https://idp.example", "token_endpoint": "https://idp.example/token",
    "user_info_endpoint": "https://idp.example/userinfo"}}
_CERT = "arn:aws:acm:us-east-1:1:certificate/x"


def test_an_internet_facing_alb_listener_that_forwards_without_authenticating_is_a_violation(pack):
    def program():
        alb = _alb()
        listener = aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                                   certificate_arn=_CERT, default_actions=[_FORWARD])
        aws.lb.ListenerRule("api-path", listener_arn=listener.arn, priority=10, actions=[_FORWARD],
                            conditions=[{"path_pattern": {"values": ["/v1/*"]}}])

    verdict = judge(pack, program)
    expect_violation(verdict, POLICY, LISTENER, "https", contains=["the ALB edge is internet-facing"])
    expect_violation(verdict, POLICY, LISTENER_RULE, "api-path")


def test_an_alb_that_authenticates_first_or_is_internal_passes(pack):
    def program():
        alb = _alb()
        aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                        default_actions=[_OIDC, {**_FORWARD, "order": 2}])
        internal = aws.lb.LoadBalancer("inside", load_balancer_type="application", internal=True,
                                       subnets=["subnet-1"])
        aws.lb.Listener("inside-https", load_balancer_arn=internal.arn, port=443, protocol="HTTPS",
                        certificate_arn=_CERT, default_actions=[_FORWARD])

    expect_clean(judge(pack, program), POLICY)


def test_authentication_ordered_after_the_forward_does_not_count(pack):
    def program():
        alb = _alb()
        aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                        default_actions=[{**_OIDC, "order": 5}, {**_FORWARD, "order": 1}])

    expect_violation(judge(pack, program), POLICY, LISTENER, "https")


def test_listener_actions_unknown_during_preview_fail_closed_on_an_internet_facing_alb(pack):
    def program():
        alb = _alb()
        aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                        default_actions=[{**_FORWARD, "type": unknown_of("forward")}])

    expect_violation(judge(pack, program), POLICY, LISTENER, "https",
                     contains=["defaultActions is unknown during preview"])


def test_a_listener_whose_load_balancer_cannot_be_established_fails_closed(pack):
    def program():
        aws.lb.Listener("orphan", port=443, protocol="HTTPS", certificate_arn=_CERT, default_actions=[_FORWARD],
                        load_balancer_arn="arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/elsewhere/1")

    expect_violation(judge(pack, program), POLICY, LISTENER, "orphan", contains=["cannot be established"])


def _https_from_anywhere():
    return [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]


def test_world_443_is_allowed_only_on_an_authenticating_alb(pack):
    def program():
        group = aws.ec2.SecurityGroup("alb-sg", ingress=_https_from_anywhere())
        alb = aws.lb.LoadBalancer("edge", load_balancer_type="application", internal=False,
                                  subnets=["subnet-1"], security_groups=[group.id])
        aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                        default_actions=[_OIDC, {**_FORWARD, "order": 2}])

    verdict = judge(pack, program)
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "security-group-no-internet-ingress")


def test_world_443_on_a_group_attached_to_an_instance_or_to_nothing_is_a_violation(pack):
    def program():
        group = aws.ec2.SecurityGroup("vm-sg")
        aws.ec2.SecurityGroupRule("https-in", type="ingress", security_group_id=group.id, protocol="tcp",
                                  from_port=443, to_port=443, cidr_blocks=["0.0.0.0/0"])
        aws.ec2.Instance("vm", ami="ami-1", instance_type="g6e.xlarge", vpc_security_group_ids=[group.id])
        aws.ec2.SecurityGroup("loose-sg", ingress=_https_from_anywhere())

    verdict = judge(pack, program)
    expect_violation(verdict, POLICY, SG_RULE, "https-in", contains=["attached to aws:ec2/instance:Instance vm"])
    expect_violation(verdict, POLICY, SG, "loose-sg", contains=["nothing in this program"])


def _options_method(integration_type: str):
    api = aws.apigateway.RestApi("llm-api")
    method = aws.apigateway.Method("preflight", rest_api=api.id, resource_id=api.root_resource_id,
                                   http_method="OPTIONS", authorization="NONE")
    aws.apigateway.Integration("preflight", rest_api=api.id, resource_id=api.root_resource_id,
                               http_method=method.http_method, type=integration_type,
                               integration_http_method=None if integration_type == "MOCK" else "ANY",
                               uri=None if integration_type == "MOCK" else "https://internal.example/")


def test_an_unauthenticated_options_method_passes_only_as_a_mock_preflight(pack):
    expect_clean(judge(pack, lambda: _options_method("MOCK")), POLICY)
    verdict = judge(pack, lambda: _options_method("HTTP_PROXY"))
    expect_violation(verdict, POLICY, METHOD, "preflight", contains=['"HTTP_PROXY"'])
    # The resource rule leaves OPTIONS to this stack rule rather than double-reporting it.
    expect_clean(verdict, "apigateway-method-auth")


def test_an_options_method_without_any_integration_fails_closed(pack):
    def program():
        api = aws.apigateway.RestApi("llm-api")
        aws.apigateway.Method("preflight", rest_api=api.id, resource_id=api.root_resource_id,
                              http_method="OPTIONS", authorization="NONE")

    expect_violation(judge(pack, program), POLICY, METHOD, "preflight", contains=["no integration"])


def test_an_http_api_default_route_without_an_authorizer_is_a_violation(pack):
    def program():
        api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
        aws.apigatewayv2.Route("catch-all", api_id=api.id, route_key="$default")

    expect_violation(judge(pack, program), POLICY, ROUTE, "catch-all", contains=["$default route"])


def test_websocket_routes_inherit_an_authenticated_connect(pack):
    def program(authenticated: bool):
        api = aws.apigatewayv2.Api("ws", protocol_type="WEBSOCKET", route_selection_expression="$request.body.action")
        aws.apigatewayv2.Route("connect", api_id=api.id, route_key="$connect",
                               authorization_type="AWS_IAM" if authenticated else "NONE")
        aws.apigatewayv2.Route("generate", api_id=api.id, route_key="generate")

    expect_clean(judge(pack, lambda: program(True)), POLICY)
    verdict = judge(pack, lambda: program(False))
    expect_violation(verdict, POLICY, ROUTE, "generate", contains=["no authenticated $connect"])
    expect_violation(verdict, "http-api-route-auth", ROUTE, "connect")
