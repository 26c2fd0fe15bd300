"""Red team for Family 1: insecure programs a careless engineer would write with pulumi-aws v7
and pulumi-kubernetes v4, none of them shaped like this project's own components. Each
must be a MANDATORY violation on the offending resource in "dev"; unknown deciding values
fail closed; the compliant look-alikes at the end must raise no Family-1 diagnostic."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from tests.policy_helpers import (
    ALB_ALIAS_LB, CLASSIC_LB, CRONJOB, DEPLOYMENT, EIP, EIP_ASSOCIATION, EKS_CLUSTER, FUNCTION_URL, HTTP_API,
    INGRESS, INSTANCE, LAUNCH_TEMPLATE, LB, LISTENER, LISTENER_RULE, LWS, METHOD, ROUTE, SERVICE, SG,
    SG_INGRESS_RULE, SG_RULE, STAGE, SUBNET, expect_violation, judge, pack, unknown_of,
)

__all__ = ["pack"]

FAMILY_1 = ("apigateway-method-auth", "http-api-route-auth", "function-url-auth",
            "load-balancer-not-internet-facing", "security-group-no-internet-ingress",
            "compute-no-public-ip", "eks-endpoint-private", "k8s-service-internal",
            "k8s-ingress-internal", "k8s-no-host-network", "internet-reachability",
            "k8s-entry-points", "helm-chart-values")

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
POD = "kubernetes:core/v1:Pod"
LAUNCH_CONFIGURATION = "aws:ec2/launchConfiguration:LaunchConfiguration"
ALB_LISTENER = "aws:alb/listener:Listener"

_CERT = "arn:aws:acm:us-east-1:1:certificate/x"
_OIDC = {"type": "authenticate-oidc", "order": 1, "authenticate_oidc": {
    "authorization_endpoint": "https://idp.example/auth", "client_id": "llm", "client_secret": "s",
    "issuer": "https://idp.example", "token_endpoint": "https://idp.example/token",
    "user_info_endpoint": "https://idp.example/userinfo"}}


def _tg():
    return aws.lb.TargetGroup("models", port=8000, protocol="HTTP", vpc_id="vpc-1", target_type="ip")


# ---- violating programs: (id, program, policy, type, name) ----------------------------------------

def rest_root_any_open():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.Method("root-any", rest_api=api.id, resource_id=api.root_resource_id, http_method="ANY",
                          authorization="NONE")


def rest_proxy_open():
    api = aws.apigateway.RestApi("api")
    proxy = aws.apigateway.Resource("proxy", rest_api=api.id, parent_id=api.root_resource_id,
                                    path_part="{proxy+}")
    aws.apigateway.Method("proxy-any", rest_api=api.id, resource_id=proxy.id, http_method="ANY",
                          authorization="NONE", request_parameters={"method.request.path.proxy": True})


def rest_key_explicitly_false():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.Method("get", rest_api=api.id, resource_id=api.root_resource_id, http_method="GET",
                          authorization="NONE", api_key_required=False)


def rest_lowercase_none():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.Method("post", rest_api=api.id, resource_id=api.root_resource_id, http_method="post",
                          authorization="none")


def rest_options_http_integration():
    api = aws.apigateway.RestApi("api")
    res = aws.apigateway.Resource("chat", rest_api=api.id, parent_id=api.root_resource_id, path_part="chat")
    method = aws.apigateway.Method("options", rest_api=api.id, resource_id=res.id, http_method="OPTIONS",
                                   authorization="NONE")
    aws.apigateway.Integration("options-int", rest_api=api.id, resource_id=res.id,
                               http_method=method.http_method, type="HTTP_PROXY",
                               integration_http_method="OPTIONS", uri="http://backend.example/chat")


def rest_options_no_integration():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.Method("options", rest_api=api.id, resource_id=api.root_resource_id, http_method="OPTIONS",
                          authorization="NONE")


def rest_key_required_unknown():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.Method("post", rest_api=api.id, resource_id=api.root_resource_id, http_method="POST",
                          authorization="NONE", api_key_required=unknown_of(True))


def rest_openapi_yaml_empty_security():
    body = ("openapi: 3.0.1\ninfo: {title: x, version: '1'}\npaths:\n  /chat:\n    post:\n"
            "      security: [{}]\n      x-amazon-apigateway-integration: {type: http_proxy, httpMethod: POST, "
            "uri: 'http://b.example'}\n")
    aws.apigateway.RestApi("spec-api", body=body)


def v2_route_no_auth():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("chat", api_id=api.id, route_key="POST /v1/chat/completions")


def v2_route_explicit_none():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("proxy", api_id=api.id, route_key="ANY /{proxy+}", authorization_type="NONE")


def v2_default_route():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("default", api_id=api.id, route_key="$default",
                           target="integrations/abc")
    aws.apigatewayv2.Stage("auto", api_id=api.id, name="$default", auto_deploy=True)


def v2_quick_create():
    aws.apigatewayv2.Api("quick", protocol_type="HTTP",
                         target="arn:aws:lambda:us-east-1:1:function:chat")


def v2_websocket_unauth_connect():
    api = aws.apigatewayv2.Api("ws", protocol_type="WEBSOCKET", route_selection_expression="$request.body.action")
    aws.apigatewayv2.Route("connect", api_id=api.id, route_key="$connect")
    aws.apigatewayv2.Route("send", api_id=api.id, route_key="sendMessage")


def v2_route_auth_unknown():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("chat", api_id=api.id, route_key="POST /chat",
                           authorization_type=unknown_of("NONE"))


def function_url_none():
    aws.lambda_.FunctionUrl("url", function_name="chat", authorization_type="NONE",
                            cors={"allow_origins": ["*"]})


def function_url_unknown():
    fn = aws.lambda_.Function("chat", role="arn:aws:iam::1:role/x", runtime="python3.12", handler="h.h",
                              code=pulumi.AssetArchive({}))
    aws.lambda_.FunctionUrl("url", function_name=fn.name, authorization_type=unknown_of("NONE"))


def alb_internal_false_listener_forward():
    lb = aws.lb.LoadBalancer("web", internal=False, load_balancer_type="application",
                             subnets=["subnet-1", "subnet-2"], security_groups=["sg-1"])
    aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[{"type": "forward", "target_group_arn": _tg().arn}])


def alb_internal_omitted_listener_forward():
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.lb.Listener("http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                    default_actions=[{"type": "forward", "forward": {"target_groups": [{"arn": _tg().arn}]}}])


def alb_alias_listener_forward():
    lb = aws.alb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.alb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                     default_actions=[{"type": "forward", "target_group_arn": _tg().arn}])


def alb_auth_after_forward_by_order():
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[{**_OIDC, "order": 2},
                                     {"type": "forward", "order": 1, "target_group_arn": _tg().arn}])


def alb_rule_forwards_without_auth():
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    listener = aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                               certificate_arn=_CERT,
                               default_actions=[_OIDC, {"type": "forward", "order": 2,
                                                        "target_group_arn": _tg().arn}])
    aws.lb.ListenerRule("bypass", listener_arn=listener.arn, priority=10,
                        conditions=[{"path_pattern": {"values": ["/v1/*"]}}],
                        actions=[{"type": "forward", "target_group_arn": _tg().arn}])


def listener_rule_on_literal_listener():
    aws.lb.ListenerRule("orphan", listener_arn="arn:aws:elasticloadbalancing:us-east-1:1:listener/app/x/1/2",
                        priority=5, conditions=[{"path_pattern": {"values": ["/*"]}}],
                        actions=[{"type": "forward", "target_group_arn": "arn:aws:elasticloadbalancing:tg/x"}])


def nlb_internet_facing_explicit():
    aws.lb.LoadBalancer("nlb", load_balancer_type="network", internal=False, subnets=["subnet-1"])


def nlb_internal_omitted():
    aws.lb.LoadBalancer("nlb", load_balancer_type="network", subnet_mappings=[
        {"subnet_id": "subnet-1", "allocation_id": "eipalloc-1"}])


def nlb_internal_unknown():
    aws.lb.LoadBalancer("nlb", load_balancer_type="network", internal=unknown_of(False), subnets=["subnet-1"])


def lb_type_unknown_internet_facing():
    aws.lb.LoadBalancer("lb", load_balancer_type=unknown_of("network"), subnets=["subnet-1"])


def classic_elb_internal_omitted():
    aws.elb.LoadBalancer("classic", subnets=["subnet-1"], listeners=[{
        "instance_port": 8000, "instance_protocol": "http", "lb_port": 80, "lb_protocol": "http"}])


def classic_elb_internal_unknown():
    aws.elb.LoadBalancer("classic", subnets=["subnet-1"], internal=unknown_of(True), listeners=[{
        "instance_port": 8000, "instance_protocol": "tcp", "lb_port": 8000, "lb_protocol": "tcp"}])


def alb_listener_actions_unknown():
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=unknown_of([{"type": "forward", "targetGroupArn": "arn:tg"}]))


def sg_inline_mixed_private_and_world():
    aws.ec2.SecurityGroup("inline", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 8000, "to_port": 8000, "cidr_blocks": ["10.0.0.0/8", "0.0.0.0/0"]}])


def sg_inline_ipv6_world():
    aws.ec2.SecurityGroup("inline6", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "ipv6_cidr_blocks": ["::/0"]}])


def sg_inline_all_protocols_public_range():
    aws.ec2.SecurityGroup("office", vpc_id="vpc-1", ingress=[
        {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["8.8.8.0/24"]}])


def sg_rule_world():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.ec2.SecurityGroupRule("world", type="ingress", security_group_id=group.id, protocol="tcp",
                              from_port=8000, to_port=8000, cidr_blocks=["0.0.0.0/0"])


def sg_rule_world_all():
    aws.ec2.SecurityGroupRule("world-all", type="ingress", security_group_id="sg-123", protocol="-1",
                              from_port=0, to_port=65535, cidr_blocks=["0.0.0.0/0"])


def sg_ingress_rule_v4():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("v4", security_group_id=group.id, cidr_ipv4="0.0.0.0/0",
                                     ip_protocol="tcp", from_port=8000, to_port=8000)


def sg_ingress_rule_v6_all():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("v6", security_group_id=group.id, cidr_ipv6="::/0", ip_protocol="-1")


def sg_ingress_rule_split_halves():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("half", security_group_id=group.id, cidr_ipv4="0.0.0.0/1",
                                     ip_protocol="tcp", from_port=22, to_port=22)


def sg_443_world_on_instance():
    group = aws.ec2.SecurityGroup("web", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}])
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id="subnet-private",
                     vpc_security_group_ids=[group.id])


def sg_443_world_on_unauthenticated_alb():
    group = aws.ec2.SecurityGroup("alb-sg", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}])
    aws.lb.LoadBalancer("web", subnets=["subnet-1"], security_groups=[group.id])
    # no listener resource at all here: a listener created elsewhere cannot be ruled out


def sg_cidr_unknown():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.ec2.SecurityGroupRule("computed", type="ingress", security_group_id=group.id, protocol="tcp",
                              from_port=8000, to_port=8000, cidr_blocks=[unknown_of("0.0.0.0/0")])


def sg_ingress_rule_cidr_unknown():
    group = aws.ec2.SecurityGroup("g", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("computed", security_group_id=group.id, cidr_ipv4=unknown_of("0.0.0.0/0"),
                                     ip_protocol="tcp", from_port=8000, to_port=8000)


def instance_public_ip():
    aws.ec2.Instance("gpu", ami="ami-1", instance_type="g6.xlarge", subnet_id="subnet-1",
                     associate_public_ip_address=True)


def instance_public_ip_unknown():
    aws.ec2.Instance("gpu", ami="ami-1", instance_type="g6.xlarge", subnet_id="subnet-1",
                     associate_public_ip_address=unknown_of(True))


def launch_template_public_ip_string():
    aws.ec2.LaunchTemplate("lt", image_id="ami-1", instance_type="g6.xlarge",
                           network_interfaces=[{"associate_public_ip_address": "true", "device_index": 0,
                                                "subnet_id": "subnet-1"}])


def launch_template_public_ip_unknown():
    aws.ec2.LaunchTemplate("lt", image_id="ami-1", instance_type="g6.xlarge",
                           network_interfaces=[{"associate_public_ip_address": unknown_of("true"),
                                                "device_index": 0}])


def launch_configuration_public_ip():
    aws.ec2.LaunchConfiguration("lc", image_id="ami-1", instance_type="g6.xlarge",
                                associate_public_ip_address=True)


def eip_on_instance():
    box = aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id="subnet-1")
    aws.ec2.Eip("ip", domain="vpc", instance=box.id)


def eip_on_eni():
    eni = aws.ec2.NetworkInterface("eni", subnet_id="subnet-1")
    aws.ec2.Eip("ip", domain="vpc", network_interface=eni.id)


def eip_association():
    box = aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id="subnet-1")
    ip = aws.ec2.Eip("ip", domain="vpc")
    aws.ec2.EipAssociation("assoc", allocation_id=ip.allocation_id, instance_id=box.id)


def subnet_maps_public_ips():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    subnet = aws.ec2.Subnet("public", vpc_id=vpc.id, cidr_block="10.0.1.0/24", map_public_ip_on_launch=True)
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id=subnet.id)


def instance_default_vpc():
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro")


def eks_public_cidrs_omitted():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1", "subnet-2"], "endpoint_public_access": True, "endpoint_private_access": True})


def eks_public_world():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1", "subnet-2"], "endpoint_public_access": True,
        "public_access_cidrs": ["0.0.0.0/0"]})


def eks_public_access_omitted():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={"subnet_ids": ["subnet-1"]})


def eks_public_access_unknown():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1"], "endpoint_public_access": unknown_of(False)})


def eks_public_cidrs_unknown():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1"], "endpoint_public_access": True, "public_access_cidrs": [unknown_of("1.2.3.4/32")]})


def _svc(name, spec, annotations=None):
    return k8s.core.v1.Service(name, metadata={"namespace": "models", "annotations": annotations}
                               if annotations is not None else {"namespace": "models"},
                               spec={"selector": {"app": "m"}, "ports": [{"port": 80, "target_port": 8000}], **spec})


def svc_lb_bare():
    _svc("svc", {"type": "LoadBalancer"})


def svc_lb_internet_facing():
    _svc("svc", {"type": "LoadBalancer"}, {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
                                           "service.beta.kubernetes.io/aws-load-balancer-type": "external"})


def svc_lb_legacy_internal_false():
    _svc("svc", {"type": "LoadBalancer"}, {"service.beta.kubernetes.io/aws-load-balancer-internal": "false"})


def svc_lb_class_nlb_no_scheme():
    _svc("svc", {"type": "LoadBalancer", "load_balancer_class": "service.k8s.aws/nlb"})


def svc_nodeport():
    _svc("svc", {"type": "NodePort"})


def svc_external_ips():
    _svc("svc", {"external_ips": ["203.0.113.10"]})


def svc_type_unknown():
    _svc("svc", {"type": unknown_of("LoadBalancer")})


def svc_annotations_unknown():
    _svc("svc", {"type": "LoadBalancer"},
         unknown_of({"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}))


def ingress_internet_facing():
    k8s.networking.v1.Ingress("ing", metadata={"annotations": {
        "alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/target-type": "ip"}},
        spec={"ingress_class_name": "alb", "rules": [{"http": {"paths": [{
            "path": "/", "path_type": "Prefix",
            "backend": {"service": {"name": "m", "port": {"number": 80}}}}]}}]})


def ingress_scheme_unknown():
    k8s.networking.v1.Ingress("ing", metadata={"annotations": {
        "alb.ingress.kubernetes.io/scheme": unknown_of("internal")}},
        spec={"ingress_class_name": "alb", "default_backend": {"service": {"name": "m", "port": {"number": 80}}}})


def _pod_spec(host_network=None, host_port=None):
    port = {"container_port": 8000, **({"host_port": host_port} if host_port else {})}
    spec = {"containers": [{"name": "srv", "image": "vllm/vllm-openai:v0.11.0", "ports": [port]}]}
    if host_network is not None:
        spec["host_network"] = host_network
    return spec


def _template(**pod):
    return {"metadata": {"labels": {"app": "m"}}, "spec": _pod_spec(**pod)}


def deployment_host_network():
    k8s.apps.v1.Deployment("dep", spec={"selector": {"match_labels": {"app": "m"}},
                                        "template": _template(host_network=True)})


def statefulset_host_port():
    k8s.apps.v1.StatefulSet("sts", spec={"service_name": "m", "selector": {"match_labels": {"app": "m"}},
                                         "template": _template(host_port=8000)})


def daemonset_host_network():
    k8s.apps.v1.DaemonSet("ds", spec={"selector": {"match_labels": {"app": "m"}},
                                      "template": _template(host_network=True)})


def job_host_port():
    k8s.batch.v1.Job("job", spec={"template": {"spec": {**_pod_spec(host_port=9000), "restart_policy": "Never"}}})


def cronjob_host_network():
    k8s.batch.v1.CronJob("cron", spec={"schedule": "0 * * * *", "job_template": {"spec": {"template": {
        "spec": {**_pod_spec(host_network=True), "restart_policy": "Never"}}}}})


def pod_host_port():
    k8s.core.v1.Pod("pod", spec=_pod_spec(host_port=8000))


def lws_host_network():
    k8s.apiextensions.CustomResource("lws", api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet",
                                     spec={"replicas": 1, "leaderWorkerTemplate": {
                                         "size": 2, "leaderTemplate": {"spec": {"hostNetwork": True, "containers": [
                                             {"name": "srv", "image": "vllm/vllm-openai:v0.11.0"}]}},
                                         "workerTemplate": {"spec": {"containers": [
                                             {"name": "srv", "image": "vllm/vllm-openai:v0.11.0"}]}}}})


def deployment_host_network_unknown():
    k8s.apps.v1.Deployment("dep", spec={"selector": {"match_labels": {"app": "m"}}, "template": {
        "metadata": {"labels": {"app": "m"}}, "spec": {**_pod_spec(), "host_network": unknown_of(True)}}})


def keyed_stage_no_plan():
    api = aws.apigateway.RestApi("api")
    method = aws.apigateway.Method("post", rest_api=api.id, resource_id=api.root_resource_id, http_method="POST",
                                   authorization="NONE", api_key_required=True)
    deployment = aws.apigateway.Deployment("deploy", rest_api=api.id, triggers={"m": "1"},
                                           opts=pulumi.ResourceOptions(depends_on=[method]))
    aws.apigateway.Stage("prod", rest_api=api.id, deployment=deployment.id, stage_name="prod")


def plan_for_other_stage():
    api = aws.apigateway.RestApi("api")
    method = aws.apigateway.Method("post", rest_api=api.id, resource_id=api.root_resource_id, http_method="POST",
                                   authorization="NONE", api_key_required=True)
    deployment = aws.apigateway.Deployment("deploy", rest_api=api.id, triggers={"m": "1"},
                                           opts=pulumi.ResourceOptions(depends_on=[method]))
    aws.apigateway.Stage("prod", rest_api=api.id, deployment=deployment.id, stage_name="prod")
    test = aws.apigateway.Stage("test", rest_api=api.id, deployment=deployment.id, stage_name="test")
    aws.apigateway.UsagePlan("plan", api_stages=[{"api_id": api.id, "stage": test.stage_name}],
                             throttle_settings={"rate_limit": 5, "burst_limit": 10})


VIOLATIONS = [
    ("rest-root-any-open", rest_root_any_open, "apigateway-method-auth", METHOD, "root-any"),
    ("rest-proxy-open", rest_proxy_open, "apigateway-method-auth", METHOD, "proxy-any"),
    ("rest-key-explicitly-false", rest_key_explicitly_false, "apigateway-method-auth", METHOD, "get"),
    ("rest-lowercase-none", rest_lowercase_none, "apigateway-method-auth", METHOD, "post"),
    ("rest-options-http-integration", rest_options_http_integration, "internet-reachability", METHOD, "options"),
    ("rest-options-no-integration", rest_options_no_integration, "internet-reachability", METHOD, "options"),
    ("rest-key-required-unknown", rest_key_required_unknown, "apigateway-method-auth", METHOD, "post"),
    ("rest-openapi-empty-security", rest_openapi_yaml_empty_security, "apigateway-method-auth",
     "aws:apigateway/restApi:RestApi", "spec-api"),
    ("v2-route-no-auth", v2_route_no_auth, "http-api-route-auth", ROUTE, "chat"),
    ("v2-route-explicit-none", v2_route_explicit_none, "http-api-route-auth", ROUTE, "proxy"),
    ("v2-default-route", v2_default_route, "internet-reachability", ROUTE, "default"),
    ("v2-quick-create", v2_quick_create, "http-api-route-auth", HTTP_API, "quick"),
    ("v2-websocket-unauth-connect", v2_websocket_unauth_connect, "http-api-route-auth", ROUTE, "connect"),
    ("v2-websocket-inherits-unauth", v2_websocket_unauth_connect, "internet-reachability", ROUTE, "send"),
    ("v2-route-auth-unknown", v2_route_auth_unknown, "http-api-route-auth", ROUTE, "chat"),
    ("function-url-none", function_url_none, "function-url-auth", FUNCTION_URL, "url"),
    ("function-url-unknown", function_url_unknown, "function-url-auth", FUNCTION_URL, "url"),
    ("alb-internal-false-forward", alb_internal_false_listener_forward, "internet-reachability", LISTENER, "https"),
    ("alb-internal-omitted-forward", alb_internal_omitted_listener_forward, "internet-reachability", LISTENER,
     "http"),
    ("alb-alias-forward", alb_alias_listener_forward, "internet-reachability", ALB_LISTENER, "https"),
    ("alb-auth-after-forward", alb_auth_after_forward_by_order, "internet-reachability", LISTENER, "https"),
    ("alb-rule-bypasses-auth", alb_rule_forwards_without_auth, "internet-reachability", LISTENER_RULE, "bypass"),
    ("listener-rule-literal-listener", listener_rule_on_literal_listener, "internet-reachability",
     LISTENER_RULE, "orphan"),
    ("alb-listener-actions-unknown", alb_listener_actions_unknown, "internet-reachability", LISTENER, "https"),
    ("nlb-internet-facing", nlb_internet_facing_explicit, "load-balancer-not-internet-facing", LB, "nlb"),
    ("nlb-internal-omitted", nlb_internal_omitted, "load-balancer-not-internet-facing", LB, "nlb"),
    ("nlb-internal-unknown", nlb_internal_unknown, "load-balancer-not-internet-facing", LB, "nlb"),
    ("lb-type-unknown", lb_type_unknown_internet_facing, "load-balancer-not-internet-facing", LB, "lb"),
    ("classic-internal-omitted", classic_elb_internal_omitted, "load-balancer-not-internet-facing", CLASSIC_LB,
     "classic"),
    ("classic-internal-unknown", classic_elb_internal_unknown, "load-balancer-not-internet-facing", CLASSIC_LB,
     "classic"),
    ("sg-inline-mixed", sg_inline_mixed_private_and_world, "security-group-no-internet-ingress", SG, "inline"),
    ("sg-inline-ipv6", sg_inline_ipv6_world, "security-group-no-internet-ingress", SG, "inline6"),
    ("sg-inline-public-range-all", sg_inline_all_protocols_public_range, "security-group-no-internet-ingress",
     SG, "office"),
    ("sg-rule-world", sg_rule_world, "security-group-no-internet-ingress", SG_RULE, "world"),
    ("sg-rule-world-all", sg_rule_world_all, "security-group-no-internet-ingress", SG_RULE, "world-all"),
    ("sg-ingress-rule-v4", sg_ingress_rule_v4, "security-group-no-internet-ingress", SG_INGRESS_RULE, "v4"),
    ("sg-ingress-rule-v6-all", sg_ingress_rule_v6_all, "security-group-no-internet-ingress", SG_INGRESS_RULE,
     "v6"),
    ("sg-ingress-rule-half", sg_ingress_rule_split_halves, "security-group-no-internet-ingress",
     SG_INGRESS_RULE, "half"),
    ("sg-443-world-on-instance", sg_443_world_on_instance, "internet-reachability", SG, "web"),
    ("sg-443-world-on-alb-without-listeners", sg_443_world_on_unauthenticated_alb, "internet-reachability", SG,
     "alb-sg"),
    ("sg-cidr-unknown", sg_cidr_unknown, "security-group-no-internet-ingress", SG_RULE, "computed"),
    ("sg-ingress-rule-cidr-unknown", sg_ingress_rule_cidr_unknown, "security-group-no-internet-ingress",
     SG_INGRESS_RULE, "computed"),
    ("instance-public-ip", instance_public_ip, "compute-no-public-ip", INSTANCE, "gpu"),
    ("instance-public-ip-unknown", instance_public_ip_unknown, "compute-no-public-ip", INSTANCE, "gpu"),
    ("lt-public-ip-string", launch_template_public_ip_string, "compute-no-public-ip", LAUNCH_TEMPLATE, "lt"),
    ("lt-public-ip-unknown", launch_template_public_ip_unknown, "compute-no-public-ip", LAUNCH_TEMPLATE, "lt"),
    ("launch-configuration-public-ip", launch_configuration_public_ip, "compute-no-public-ip",
     LAUNCH_CONFIGURATION, "lc"),
    ("eip-on-instance", eip_on_instance, "compute-no-public-ip", EIP, "ip"),
    ("eip-on-eni", eip_on_eni, "compute-no-public-ip", EIP, "ip"),
    ("eip-association", eip_association, "compute-no-public-ip", EIP_ASSOCIATION, "assoc"),
    ("subnet-map-public-ip", subnet_maps_public_ips, "compute-no-public-ip", SUBNET, "public"),
    ("instance-default-vpc", instance_default_vpc, "compute-no-public-ip", INSTANCE, "box"),
    ("eks-public-cidrs-omitted", eks_public_cidrs_omitted, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("eks-public-world", eks_public_world, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("eks-public-access-omitted", eks_public_access_omitted, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("eks-public-access-unknown", eks_public_access_unknown, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("eks-public-cidrs-unknown", eks_public_cidrs_unknown, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("svc-lb-bare", svc_lb_bare, "k8s-service-internal", SERVICE, "svc"),
    ("svc-lb-internet-facing", svc_lb_internet_facing, "k8s-service-internal", SERVICE, "svc"),
    ("svc-lb-legacy-internal-false", svc_lb_legacy_internal_false, "k8s-service-internal", SERVICE, "svc"),
    ("svc-lb-class-no-scheme", svc_lb_class_nlb_no_scheme, "k8s-service-internal", SERVICE, "svc"),
    ("svc-nodeport", svc_nodeport, "k8s-service-internal", SERVICE, "svc"),
    ("svc-external-ips", svc_external_ips, "k8s-service-internal", SERVICE, "svc"),
    ("svc-type-unknown", svc_type_unknown, "k8s-service-internal", SERVICE, "svc"),
    ("svc-annotations-unknown", svc_annotations_unknown, "k8s-service-internal", SERVICE, "svc"),
    ("ingress-internet-facing", ingress_internet_facing, "k8s-ingress-internal", INGRESS, "ing"),
    ("ingress-scheme-unknown", ingress_scheme_unknown, "k8s-ingress-internal", INGRESS, "ing"),
    ("deployment-host-network", deployment_host_network, "k8s-no-host-network", DEPLOYMENT, "dep"),
    ("statefulset-host-port", statefulset_host_port, "k8s-no-host-network", STATEFULSET, "sts"),
    ("daemonset-host-network", daemonset_host_network, "k8s-no-host-network", DAEMONSET, "ds"),
    ("job-host-port", job_host_port, "k8s-no-host-network", JOB, "job"),
    ("cronjob-host-network", cronjob_host_network, "k8s-no-host-network", CRONJOB, "cron"),
    ("pod-host-port", pod_host_port, "k8s-no-host-network", POD, "pod"),
    ("lws-leader-host-network", lws_host_network, "k8s-no-host-network", LWS, "lws"),
    ("deployment-host-network-unknown", deployment_host_network_unknown, "k8s-no-host-network", DEPLOYMENT,
     "dep"),
    ("keyed-stage-no-plan", keyed_stage_no_plan, "internet-reachability", STAGE, "prod"),
    ("plan-for-other-stage", plan_for_other_stage, "internet-reachability", STAGE, "prod"),
]


UNKNOWN_CASES = {"rest-key-required-unknown", "v2-route-auth-unknown", "function-url-unknown",
                 "nlb-internal-unknown", "lb-type-unknown", "classic-internal-unknown", "sg-cidr-unknown",
                 "sg-ingress-rule-cidr-unknown", "instance-public-ip-unknown", "lt-public-ip-unknown",
                 "eks-public-access-unknown", "eks-public-cidrs-unknown", "svc-type-unknown",
                 "svc-annotations-unknown", "ingress-scheme-unknown", "deployment-host-network-unknown",
                 "alb-listener-actions-unknown"}


@pytest.mark.parametrize("program,policy,type_token,name",
                         [pytest.param(*case[1:], id=case[0]) for case in VIOLATIONS if case[0] in UNKNOWN_CASES])
def test_unknown_deciding_values_say_so(pack, program, policy, type_token, name):
    verdict = judge(pack, program, "dev")
    expect_violation(verdict, policy, type_token, name, contains=["unknown during preview"])


# ---- compliant look-alikes --------------------------------------------------------------------------

def ok_internal_nlb_with_vpc_cidr_sg():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.20.0.0/16")
    group = aws.ec2.SecurityGroup("nlb-sg", vpc_id=vpc.id, ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [vpc.cidr_block]}],
        egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"],
                 "ipv6_cidr_blocks": ["::/0"]}])
    aws.vpc.SecurityGroupIngressRule("from-vpc", security_group_id=group.id, cidr_ipv4=vpc.cidr_block,
                                     ip_protocol="tcp", from_port=8000, to_port=8000)
    aws.vpc.SecurityGroupEgressRule("out", security_group_id=group.id, cidr_ipv4="0.0.0.0/0", ip_protocol="-1")
    aws.ec2.SecurityGroupRule("egress-all", type="egress", security_group_id=group.id, protocol="-1",
                              from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])
    nlb = aws.lb.LoadBalancer("nlb", load_balancer_type="network", internal=True, subnets=["subnet-1"],
                              security_groups=[group.id])
    aws.lb.Listener("tls", load_balancer_arn=nlb.arn, port=443, protocol="TLS", certificate_arn=_CERT,
                    ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                    default_actions=[{"type": "forward", "target_group_arn": _tg().arn}])


def ok_nat_gateway_eip():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    public = aws.ec2.Subnet("public", vpc_id=vpc.id, cidr_block="10.0.0.0/24")
    ip = aws.ec2.Eip("nat", domain="vpc")
    aws.ec2.NatGateway("nat", allocation_id=ip.id, subnet_id=public.id)


def ok_cluster_ip_service():
    _svc("svc", {"type": "ClusterIP"})
    _svc("svc-default", {})


def ok_internal_lb_services():
    _svc("svc-scheme", {"type": "LoadBalancer"}, {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"})
    _svc("svc-legacy", {"type": "LoadBalancer"}, {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"})


def ok_authenticated_apis():
    api = aws.apigateway.RestApi("api")
    res = aws.apigateway.Resource("chat", rest_api=api.id, parent_id=api.root_resource_id, path_part="chat")
    method = aws.apigateway.Method("post", rest_api=api.id, resource_id=res.id, http_method="POST",
                                   authorization="AWS_IAM")
    options = aws.apigateway.Method("options", rest_api=api.id, resource_id=res.id, http_method="OPTIONS",
                                    authorization="NONE")
    aws.apigateway.Integration("options-mock", rest_api=api.id, resource_id=res.id,
                               http_method=options.http_method, type="MOCK",
                               request_templates={"application/json": '{"statusCode": 200}'})
    deployment = aws.apigateway.Deployment("deploy", rest_api=api.id, triggers={"m": "1"},
                                           opts=pulumi.ResourceOptions(depends_on=[method, options]))
    aws.apigateway.Stage("prod", rest_api=api.id, deployment=deployment.id, stage_name="prod")
    http = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    authorizer = aws.apigatewayv2.Authorizer("jwt", api_id=http.id, authorizer_type="JWT",
                                             identity_sources=["$request.header.Authorization"],
                                             jwt_configuration={"audiences": ["x"], "issuer": "https://idp"})
    aws.apigatewayv2.Route("default", api_id=http.id, route_key="$default", authorization_type="JWT",
                           authorizer_id=authorizer.id)
    aws.lambda_.FunctionUrl("url", function_name="chat", authorization_type="AWS_IAM")


def ok_authenticating_alb():
    group = aws.ec2.SecurityGroup("alb-sg", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}])
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"], security_groups=[group.id])
    listener = aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                               certificate_arn=_CERT, default_actions=[
                                   _OIDC, {"type": "forward", "order": 2, "target_group_arn": _tg().arn}])
    aws.lb.ListenerRule("health", listener_arn=listener.arn, priority=1,
                        conditions=[{"path_pattern": {"values": ["/healthz"]}}],
                        actions=[{"type": "fixed-response", "fixed_response": {
                            "content_type": "text/plain", "status_code": "200"}}])
    aws.lb.Listener("http", load_balancer_arn=lb.arn, port=80, protocol="HTTP", default_actions=[{
        "type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}])


def ok_private_compute_and_eks():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    subnet = aws.ec2.Subnet("private", vpc_id=vpc.id, cidr_block="10.0.1.0/24", map_public_ip_on_launch=False)
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id=subnet.id,
                     associate_public_ip_address=False)
    aws.ec2.LaunchTemplate("lt", image_id="ami-1", network_interfaces=[
        {"associate_public_ip_address": "false", "device_index": 0}])
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": [subnet.id], "endpoint_public_access": False, "endpoint_private_access": True})


def ok_pods_and_ingress():
    k8s.apps.v1.Deployment("dep", spec={"selector": {"match_labels": {"app": "m"}},
                                        "template": _template(host_network=False)})
    k8s.networking.v1.Ingress("ing", metadata={"annotations": {"alb.ingress.kubernetes.io/scheme": "internal"}},
                              spec={"ingress_class_name": "alb", "default_backend": {
                                  "service": {"name": "m", "port": {"number": 80}}}})


COMPLIANT = [
    ("internal-nlb-vpc-cidr-sg", ok_internal_nlb_with_vpc_cidr_sg),
    ("nat-gateway-eip", ok_nat_gateway_eip),
    ("cluster-ip-service", ok_cluster_ip_service),
    ("internal-lb-services", ok_internal_lb_services),
    ("authenticated-apis", ok_authenticated_apis),
    ("authenticating-alb", ok_authenticating_alb),
    ("private-compute-and-eks", ok_private_compute_and_eks),
    ("pods-and-ingress", ok_pods_and_ingress),
]


# ---- round 2: shapes that hide the exposure one step further ----------------------------------------

CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
SERVICE_PATCH = "kubernetes:core/v1:ServicePatch"
DEPLOYMENT_PATCH = "kubernetes:apps/v1:DeploymentPatch"
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"

_LB_SERVICE_YAML = """apiVersion: v1
kind: Service
metadata: {name: vllm, namespace: models}
spec:
  type: LoadBalancer
  selector: {app: vllm}
  ports: [{port: 80, targetPort: 8000}]
"""


def config_group_yaml_lb_service():
    k8s.yaml.v2.ConfigGroup("manifests", yaml="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
                            + _LB_SERVICE_YAML)


def config_group_objs_host_network():
    k8s.yaml.v2.ConfigGroup("objs", objs=[{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vllm"},
        "spec": {"selector": {"matchLabels": {"app": "v"}}, "template": {
            "metadata": {"labels": {"app": "v"}},
            "spec": {"hostNetwork": True, "containers": [{"name": "v", "image": "vllm/vllm-openai:v0.11.0"}]}}}}])


def config_group_objs_ingress():
    k8s.yaml.v2.ConfigGroup("objs", objs=[{
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "i", "annotations": {"alb.ingress.kubernetes.io/scheme": "internet-facing"}},
        "spec": {"ingressClassName": "alb", "defaultBackend": {"service": {"name": "m", "port": {"number": 80}}}}}])


def config_group_yaml_unknown():
    k8s.yaml.v2.ConfigGroup("computed", yaml=unknown_of(_LB_SERVICE_YAML))


def service_patch_to_lb():
    k8s.core.v1.ServicePatch("expose", metadata={"name": "vllm", "namespace": "models"},
                             spec={"type": "LoadBalancer"})


def deployment_patch_host_network():
    k8s.apps.v1.DeploymentPatch("hostnet", metadata={"name": "vllm", "namespace": "models"},
                                spec={"template": {"spec": {"host_network": True, "containers": [
                                    {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0"}]}}})


def rollout_host_port():
    k8s.apiextensions.CustomResource("rollout", api_version="argoproj.io/v1alpha1", kind="Rollout", spec={
        "replicas": 2, "selector": {"matchLabels": {"app": "m"}}, "template": {
            "metadata": {"labels": {"app": "m"}}, "spec": {"containers": [{
                "name": "m", "image": "vllm/vllm-openai:v0.11.0", "ports": [{"containerPort": 8000, "hostPort": 80}]}]}}})


def sg_tcp_all_ports_world():
    aws.ec2.SecurityGroup("wide", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 0, "to_port": 65535, "cidr_blocks": ["0.0.0.0/0"]}])


def sg_443_world_literal_group():
    aws.vpc.SecurityGroupIngressRule("https", security_group_id="sg-0123456789", cidr_ipv4="0.0.0.0/0",
                                     ip_protocol="tcp", from_port=443, to_port=443)


def alb_second_listener_open():
    lb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.lb.Listener("https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[_OIDC, {"type": "forward", "order": 2, "target_group_arn": _tg().arn}])
    aws.lb.Listener("debug", load_balancer_arn=lb.arn, port=8443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[{"type": "forward", "target_group_arn": _tg().arn}])


def eks_cidrs_world_flag_omitted():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1"], "public_access_cidrs": ["0.0.0.0/0"]})


def eks_public_empty_cidrs():
    aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/eks", vpc_config={
        "subnet_ids": ["subnet-1"], "endpoint_public_access": True, "public_access_cidrs": []})


def spot_instance_public_ip():
    aws.ec2.SpotInstanceRequest("spot", ami="ami-1", instance_type="g6.xlarge", subnet_id="subnet-1",
                                associate_public_ip_address=True)


def ecs_public_task():
    aws.ecs.Service("svc", cluster="c", task_definition="td:1", desired_count=1, launch_type="FARGATE",
                    network_configuration={"subnets": ["subnet-1"], "assign_public_ip": True})


def v2_options_route_no_auth():
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("preflight", api_id=api.id, route_key="OPTIONS /{proxy+}",
                           target="integrations/abc")


def rest_openapi_no_security_json():
    aws.apigateway.RestApi("spec-api", body=json.dumps({
        "openapi": "3.0.1", "info": {"title": "x", "version": "1"},
        "paths": {"/{proxy+}": {"x-amazon-apigateway-any-method": {"x-amazon-apigateway-integration": {
            "type": "http_proxy", "httpMethod": "ANY", "uri": "http://b.example/{proxy}"}}}}}))


def http_api_openapi_no_security():
    aws.apigatewayv2.Api("spec-http", protocol_type="HTTP", body=json.dumps({
        "openapi": "3.0.1", "info": {"title": "x", "version": "1"},
        "paths": {"/chat": {"post": {"x-amazon-apigateway-integration": {
            "type": "http_proxy", "httpMethod": "POST", "uri": "http://b.example", "payloadFormatVersion": "1.0"}}}}}))


def instance_with_public_lt_and_default_subnet():
    lt = aws.ec2.LaunchTemplate("lt", image_id="ami-1", network_interfaces=[
        {"associate_public_ip_address": "true", "device_index": 0}])
    aws.autoscaling.Group("asg", min_size=1, max_size=2, vpc_zone_identifiers=["subnet-1"],
                          launch_template={"id": lt.id, "version": "$Latest"})


VIOLATIONS_2 = [
    ("config-group-yaml-lb-service", config_group_yaml_lb_service, "k8s-entry-points", CONFIG_GROUP, "manifests"),
    ("config-group-objs-host-network", config_group_objs_host_network, "k8s-entry-points", CONFIG_GROUP, "objs"),
    ("config-group-objs-ingress", config_group_objs_ingress, "k8s-entry-points", CONFIG_GROUP, "objs"),
    ("config-group-yaml-unknown", config_group_yaml_unknown, "k8s-entry-points", CONFIG_GROUP, "computed"),
    ("service-patch-to-lb", service_patch_to_lb, "k8s-service-internal", SERVICE_PATCH, "expose"),
    ("deployment-patch-host-network", deployment_patch_host_network, "k8s-no-host-network", DEPLOYMENT_PATCH,
     "hostnet"),
    ("rollout-host-port", rollout_host_port, "k8s-no-host-network", ROLLOUT, "rollout"),
    ("sg-tcp-all-ports-world", sg_tcp_all_ports_world, "security-group-no-internet-ingress", SG, "wide"),
    ("sg-443-world-literal-group", sg_443_world_literal_group, "internet-reachability", SG_INGRESS_RULE, "https"),
    ("alb-second-listener-open", alb_second_listener_open, "internet-reachability", LISTENER, "debug"),
    ("eks-cidrs-world-flag-omitted", eks_cidrs_world_flag_omitted, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("eks-public-empty-cidrs", eks_public_empty_cidrs, "eks-endpoint-private", EKS_CLUSTER, "eks"),
    ("spot-instance-public-ip", spot_instance_public_ip, "compute-no-public-ip",
     "aws:ec2/spotInstanceRequest:SpotInstanceRequest", "spot"),
    ("ecs-public-task", ecs_public_task, "compute-no-public-ip", "aws:ecs/service:Service", "svc"),
    ("v2-options-route-no-auth", v2_options_route_no_auth, "http-api-route-auth", ROUTE, "preflight"),
    ("rest-openapi-any-method", rest_openapi_no_security_json, "apigateway-method-auth",
     "aws:apigateway/restApi:RestApi", "spec-api"),
    ("http-api-openapi", http_api_openapi_no_security, "http-api-route-auth", HTTP_API, "spec-http"),
    ("asg-public-launch-template", instance_with_public_lt_and_default_subnet, "compute-no-public-ip",
     LAUNCH_TEMPLATE, "lt"),
]


def ok_config_group_internal():
    k8s.yaml.v2.ConfigGroup("manifests", yaml=_LB_SERVICE_YAML.replace(
        "metadata: {name: vllm, namespace: models}",
        "metadata:\n  name: vllm\n  annotations: {service.beta.kubernetes.io/aws-load-balancer-scheme: internal}"))
    k8s.yaml.v2.ConfigGroup("cm", objs=[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                         "data": {"a": "b"}}])
    k8s.core.v1.ServicePatch("label", metadata={"name": "vllm", "labels": {"team": "ml"}})


COMPLIANT_2 = [("config-group-internal", ok_config_group_internal)]


@pytest.mark.parametrize("program,policy,type_token,name",
                         [pytest.param(*case[1:], id=case[0]) for case in VIOLATIONS + VIOLATIONS_2])
def test_insecure_program_is_a_mandatory_violation_on_the_offender(pack, program, policy, type_token, name):
    verdict = judge(pack, program, "dev")
    expect_violation(verdict, policy, type_token, name, level="mandatory")


@pytest.mark.parametrize("program", [pytest.param(p, id=i) for i, p in COMPLIANT + COMPLIANT_2])
def test_compliant_look_alikes_raise_no_family_1_diagnostic(pack, program):
    verdict = judge(pack, program, "dev")
    flagged = [d for d in verdict.diagnostics if d.policy_name in FAMILY_1]
    assert not flagged, "\n".join(f"{d.policy_name} @ {d.urn.rsplit('::', 1)[-1]}: {d.message}" for d in flagged)


# ---- round 3: Kubernetes written the way other teams write it -----------------------------------

RAY_SERVICE = "kubernetes:ray.io/v1:RayService"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
KSVC = "kubernetes:serving.knative.dev/v1:Service"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
LB_CONFIG = "kubernetes:gateway.k8s.aws/v1beta1:LoadBalancerConfiguration"
_VLLM = {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": ["--model", "deepseek-ai/DeepSeek-R1"]}
# KServe reads one label in RawDeployment mode and Knative's in Serverless mode; with no
# deploymentMode annotation the cluster default decides, so both say cluster-local.
_PRIVATE_KSERVE = {"networking.kserve.io/visibility": "cluster-local",
                   "networking.knative.dev/visibility": "cluster-local"}


def kserve_default_visibility():
    k8s.apiextensions.CustomResource("r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                     metadata={"name": "deepseek-r1", "namespace": "kserve"},
                                     spec={"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                                                   "args": ["--model_name=r1"]}}})


def kserve_predictor_host_network():
    k8s.apiextensions.CustomResource("r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                     metadata={"name": "deepseek-r1", "labels": _PRIVATE_KSERVE},
                                     spec={"predictor": {"hostNetwork": True, "containers": [_VLLM]}})


def lws_worker_host_port():
    k8s.apiextensions.CustomResource("lws", api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet",
                                     spec={"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {
                                         "spec": {"containers": [dict(_VLLM, ports=[
                                             {"containerPort": 8000, "hostPort": 8000}])]}}}})


def ray_head_node_port():
    k8s.apiextensions.CustomResource("ray", api_version="ray.io/v1", kind="RayService", spec={
        "serveConfigV2": "applications:\n- name: llm\n  import_path: serve:app\n",
        "rayClusterConfig": {"rayVersion": "2.40.0", "headGroupSpec": {
            "serviceType": "NodePort", "rayStartParams": {"dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray-ml:2.40.0"}]}}}}})


def knative_public_service():
    k8s.apiextensions.CustomResource("ksvc", api_version="serving.knative.dev/v1", kind="Service",
                                     metadata={"name": "chat"},
                                     spec={"template": {"spec": {"containers": [_VLLM]}}})


def argo_rollout_host_network():
    k8s.apiextensions.CustomResource("rollout", api_version="argoproj.io/v1alpha1", kind="Rollout", spec={
        "replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
        "selector": {"matchLabels": {"app": "m"}},
        "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"hostNetwork": True, "containers": [_VLLM]}}})


def helm_ingress_nginx_lb():
    k8s.helm.v3.Release("ingress-nginx", k8s.helm.v3.ReleaseArgs(
        chart="ingress-nginx", version="4.12.1", namespace="ingress-nginx", create_namespace=True,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://kubernetes.github.io/ingress-nginx"),
        values={"controller": {"replicaCount": 2, "service": {"type": "LoadBalancer", "annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}}}}))


def helm_bitnami_lb():
    k8s.helm.v4.Chart("wordpress", chart="oci://registry-1.docker.io/bitnamicharts/wordpress",
                      version="24.1.0", values={"service": {"type": "LoadBalancer"},
                                                "wordpressUsername": "admin"})


def gateway_internet_facing_lbc():
    k8s.apiextensions.CustomResource("cfg", api_version="gateway.k8s.aws/v1beta1",
                                     kind="LoadBalancerConfiguration",
                                     metadata={"name": "public", "namespace": "edge"},
                                     spec={"scheme": "internet-facing"})
    k8s.apiextensions.CustomResource("gw", api_version="gateway.networking.k8s.io/v1", kind="Gateway",
                                     metadata={"name": "edge", "namespace": "edge"},
                                     spec={"gatewayClassName": "aws-alb", "infrastructure": {"parametersRef": {
                                         "group": "gateway.k8s.aws", "kind": "LoadBalancerConfiguration",
                                         "name": "public"}},
                                         "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})


def gateway_envoy_public_annotation():
    k8s.apiextensions.CustomResource("gw", api_version="gateway.networking.k8s.io/v1", kind="Gateway",
                                     metadata={"name": "edge"},
                                     spec={"gatewayClassName": "eg", "infrastructure": {"annotations": {
                                         "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}},
                                         "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})


def ingress_alb_auth_allow():
    k8s.networking.v1.Ingress("web", metadata={"annotations": {
        "alb.ingress.kubernetes.io/scheme": "internet-facing",
        "alb.ingress.kubernetes.io/auth-type": "oidc",
        "alb.ingress.kubernetes.io/auth-idp-oidc": '{"issuer":"https://idp.example"}',
        "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "allow"}},
        spec={"ingress_class_name": "alb", "rules": [{"http": {"paths": [{
            "path": "/", "path_type": "Prefix", "backend": {"service": {"name": "m", "port": {"number": 80}}}}]}}]})


def config_group_list_host_network():
    k8s.yaml.v2.ConfigGroup("stack", yaml="""apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: vllm}
  spec:
    selector: {matchLabels: {app: vllm}}
    template:
      metadata: {labels: {app: vllm}}
      spec:
        hostNetwork: true
        containers: [{name: vllm, image: vllm/vllm-openai:v0.11.0}]
""")


VIOLATIONS_3 = [
    ("kserve-default-visibility", kserve_default_visibility, "k8s-ingress-internal", ISVC, "r1"),
    ("kserve-predictor-host-network", kserve_predictor_host_network, "k8s-no-host-network", ISVC, "r1"),
    ("lws-worker-host-port", lws_worker_host_port, "k8s-no-host-network", LWS, "lws"),
    ("ray-head-node-port", ray_head_node_port, "k8s-service-internal", RAY_SERVICE, "ray"),
    ("knative-public-service", knative_public_service, "k8s-ingress-internal", KSVC, "ksvc"),
    ("argo-rollout-host-network", argo_rollout_host_network, "k8s-no-host-network", ROLLOUT, "rollout"),
    ("helm-ingress-nginx-lb", helm_ingress_nginx_lb, "helm-chart-values", HELM_RELEASE, "ingress-nginx"),
    ("helm-bitnami-lb", helm_bitnami_lb, "helm-chart-values", HELM_CHART, "wordpress"),
    ("gateway-internet-facing-lbc", gateway_internet_facing_lbc, "k8s-ingress-internal", LB_CONFIG, "cfg"),
    ("gateway-envoy-public-annotation", gateway_envoy_public_annotation, "k8s-entry-points", GATEWAY, "gw"),
    ("ingress-alb-auth-allow", ingress_alb_auth_allow, "k8s-ingress-internal", INGRESS, "web"),
    ("config-group-list-host-network", config_group_list_host_network, "k8s-entry-points", CONFIG_GROUP, "stack"),
]


def ok_kubernetes_as_outsiders_write_it():
    k8s.apiextensions.CustomResource("r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                     metadata={"name": "deepseek-r1", "labels": _PRIVATE_KSERVE},
                                     spec={"predictor": {"containers": [_VLLM]}})
    k8s.apiextensions.CustomResource("lws", api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet",
                                     spec={"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {
                                         "spec": {"containers": [dict(_VLLM, ports=[{"containerPort": 8000}])]}}}})
    k8s.apiextensions.CustomResource("ray", api_version="ray.io/v1", kind="RayService", spec={
        "rayClusterConfig": {"headGroupSpec": {"serviceType": "ClusterIP", "rayStartParams": {},
                                               "template": {"spec": {"containers": [
                                                   {"name": "ray-head", "image": "rayproject/ray-ml:2.40.0"}]}}}}})
    k8s.apiextensions.CustomResource("ksvc", api_version="serving.knative.dev/v1", kind="Service",
                                     metadata={"labels": {"networking.knative.dev/visibility": "cluster-local"}},
                                     spec={"template": {"spec": {"containers": [_VLLM]}}})
    k8s.helm.v3.Release("ingress-nginx", chart="ingress-nginx", version="4.12.1",
                        repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"},
                        values={"controller": {"service": {"type": "LoadBalancer", "annotations": {
                            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}}}})
    k8s.helm.v4.Chart("wordpress", chart="oci://registry-1.docker.io/bitnamicharts/wordpress",
                      values={"service": {"type": "ClusterIP"}})
    k8s.apiextensions.CustomResource("cfg", api_version="gateway.k8s.aws/v1beta1",
                                     kind="LoadBalancerConfiguration", metadata={"name": "private"},
                                     spec={"scheme": "internal"})
    k8s.apiextensions.CustomResource("gw", api_version="gateway.networking.k8s.io/v1", kind="Gateway",
                                     metadata={"name": "edge"},
                                     spec={"gatewayClassName": "aws-alb", "infrastructure": {"parametersRef": {
                                         "group": "gateway.k8s.aws", "kind": "LoadBalancerConfiguration",
                                         "name": "private"}},
                                         "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
    k8s.apiextensions.CustomResource("route", api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                                     metadata={"name": "chat"}, spec={"parentRefs": [{"name": "edge"}]})
    k8s.networking.v1.Ingress("web", metadata={"annotations": {
        "alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/auth-type": "oidc",
        "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "authenticate"}},
        spec={"ingress_class_name": "alb"})


COMPLIANT_3 = [("kubernetes-as-outsiders-write-it", ok_kubernetes_as_outsiders_write_it)]


@pytest.mark.parametrize("program,policy,type_token,name",
                         [pytest.param(*case[1:], id=case[0]) for case in VIOLATIONS_3])
def test_outsider_kubernetes_program_is_a_mandatory_violation_on_the_offender(pack, program, policy,
                                                                              type_token, name):
    expect_violation(judge(pack, program, "dev"), policy, type_token, name, level="mandatory")


@pytest.mark.parametrize("program", [pytest.param(p, id=i) for i, p in COMPLIANT_3])
def test_outsider_kubernetes_look_alikes_raise_no_family_1_diagnostic(pack, program):
    verdict = judge(pack, program, "dev")
    flagged = [d for d in verdict.diagnostics if d.policy_name in FAMILY_1]
    assert not flagged, "\n".join(f"{d.policy_name} @ {d.urn.rsplit('::', 1)[-1]}: {d.message}" for d in flagged)


# Values computed from other resources: each is unknown in a first preview and decides exposure.

def helm_values_computed():
    lb = aws.lb.LoadBalancer("edge", internal=True, load_balancer_type="network", subnets=["subnet-1"])
    k8s.helm.v3.Release("app", chart="webapp", repository_opts={"repo": "https://charts.example"},
                        values={"service": lb.dns_name.apply(lambda _: {"type": "LoadBalancer"})})


def kserve_labels_computed():
    k8s.apiextensions.CustomResource("r1", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                     metadata={"labels": unknown_of(_PRIVATE_KSERVE)},
                                     spec={"predictor": {"containers": [_VLLM]}})


def gateway_class_computed():
    k8s.apiextensions.CustomResource("gw", api_version="gateway.networking.k8s.io/v1", kind="Gateway",
                                     metadata={"name": "edge"},
                                     spec={"gatewayClassName": unknown_of("amazon-vpc-lattice"),
                                           "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})


def rollout_template_computed():
    k8s.apiextensions.CustomResource("rollout", api_version="argoproj.io/v1alpha1", kind="Rollout", spec={
        "replicas": 1, "selector": {"matchLabels": {"app": "m"}},
        "template": unknown_of({"spec": {"containers": [_VLLM]}})})


UNKNOWN_3 = [
    ("helm-values-computed", helm_values_computed, "helm-chart-values", HELM_RELEASE, "app"),
    ("kserve-labels-computed", kserve_labels_computed, "k8s-ingress-internal", ISVC, "r1"),
    ("gateway-class-computed", gateway_class_computed, "k8s-entry-points", GATEWAY, "gw"),
    ("rollout-template-computed", rollout_template_computed, "k8s-no-host-network", ROLLOUT, "rollout"),
]


@pytest.mark.parametrize("program,policy,type_token,name",
                         [pytest.param(*case[1:], id=case[0]) for case in UNKNOWN_3])
def test_outsider_kubernetes_unknowns_fail_closed_and_say_so(pack, program, policy, type_token, name):
    expect_violation(judge(pack, program, "dev"), policy, type_token, name, level="mandatory",
                     contains=["unknown during preview"])
