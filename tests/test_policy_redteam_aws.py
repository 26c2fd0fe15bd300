"""Red team, AWS entry points round: programs written the way someone outside this project would
write them to serve a model quickly, each opening an internet entry point through a class of
resource the first rounds never used. Each must be a MANDATORY violation on the offending
resource in "prod"; the look-alikes at the end, which do the same jobs privately, must raise
no Family-1 diagnostic at all (entry-point-classified included)."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from policies.rules import all_policies
from tests.policy_helpers import expect_violation, judge, pack

__all__ = ["pack"]

FAMILY_1 = {p.name for p in all_policies() if p.family == 1}
_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/abc"


def cdn_in_front_of_the_private_model_alb():
    # "The ALB is internal, so putting CloudFront in front for caching is fine."
    alb = aws.lb.LoadBalancer("models", internal=True, load_balancer_type="application",
                              subnets=["subnet-0a", "subnet-0b"], security_groups=["sg-0a"])
    origin = aws.cloudfront.VpcOrigin("models-origin", vpc_origin_endpoint_config={
        "name": "models", "arn": alb.arn, "http_port": 80, "https_port": 443, "origin_protocol_policy": "http-only",
        "origin_ssl_protocols": {"items": ["TLSv1.2"], "quantity": 1}})
    aws.cloudfront.Distribution("llm-cdn", enabled=True, is_ipv6_enabled=True, price_class="PriceClass_100",
                                origins=[{"domain_name": alb.dns_name, "origin_id": "models",
                                          "vpc_origin_config": {"vpc_origin_id": origin.id,
                                                                "origin_keepalive_timeout": 60}}],
                                default_cache_behavior={
                                    "target_origin_id": "models", "viewer_protocol_policy": "redirect-to-https",
                                    "allowed_methods": ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                                    "cached_methods": ["GET", "HEAD"],
                                    "cache_policy_id": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"},
                                restrictions={"geo_restriction": {"restriction_type": "none"}},
                                viewer_certificate={"cloudfront_default_certificate": True})


def accelerator_for_low_latency():
    nlb = aws.lb.LoadBalancer("vllm-nlb", load_balancer_type="network", internal=True, subnets=["subnet-0a"])
    ga = aws.globalaccelerator.Accelerator("llm", name="llm", ip_address_type="DUAL_STACK")
    listener = aws.globalaccelerator.Listener("llm-443", accelerator_arn=ga.id, protocol="TCP",
                                              client_affinity="SOURCE_IP",
                                              port_ranges=[{"from_port": 443, "to_port": 443}])
    aws.globalaccelerator.EndpointGroup("us-east-1", listener_arn=listener.id, endpoint_group_region="us-east-1",
                                        endpoint_configurations=[{"endpoint_id": nlb.arn, "weight": 100,
                                                                  "client_ip_preservation_enabled": True}])


def app_runner_quick_deploy():
    aws.apprunner.Service("ollama", service_name="ollama", source_configuration={
        "auto_deployments_enabled": True,
        "image_repository": {"image_identifier": "public.ecr.aws/docker/library/ollama:0.5.7",
                             "image_repository_type": "ECR_PUBLIC", "image_configuration": {"port": "11434"}}},
        instance_configuration={"cpu": "4 vCPU", "memory": "12 GB"})


def beanstalk_docker_environment():
    app = aws.elasticbeanstalk.Application("tgi", name="tgi")
    aws.elasticbeanstalk.Environment("tgi-prod", application=app.name, tier="WebServer",
                                     solution_stack_name="64bit Amazon Linux 2023 v4.4.1 running Docker", settings=[
                                         {"namespace": "aws:autoscaling:launchconfiguration",
                                          "name": "InstanceType", "value": "g6.xlarge"},
                                         {"namespace": "aws:elasticbeanstalk:environment",
                                          "name": "LoadBalancerType", "value": "application"}])


def lightsail_gpu_box():
    aws.lightsail.Instance("gpu", availability_zone="us-east-1a", blueprint_id="ubuntu_24_04",
                           bundle_id="gpu_2xl_1_0", user_data="docker run -p 8000:8000 vllm/vllm-openai:v0.11.0")


def ecs_blue_green_task_set():
    aws.ecs.TaskSet("green", cluster="llm", service="vllm", task_definition="vllm:42", launch_type="FARGATE",
                    network_configuration={"subnets": ["subnet-0a"], "security_groups": ["sg-0a"],
                                           "assign_public_ip": True},
                    scale={"unit": "PERCENT", "value": 100})


def asg_across_zones():
    lt = aws.ec2.LaunchTemplate("vllm", image_id="ami-0abc", instance_type="g6.xlarge",
                                metadata_options={"http_tokens": "required"})
    aws.autoscaling.Group("vllm", desired_capacity=2, min_size=1, max_size=4,
                          availability_zones=["us-east-1a", "us-east-1b", "us-east-1c"],
                          launch_template={"id": lt.id, "version": "$Latest"}, health_check_type="EC2")


def spot_fleet_for_cheap_gpus():
    aws.ec2.SpotFleetRequest("cheap-gpus", iam_fleet_role="arn:aws:iam::123456789012:role/spot-fleet",
                             target_capacity=4, allocation_strategy="priceCapacityOptimized",
                             launch_specifications=[{"ami": "ami-0abc", "instance_type": "g5.xlarge",
                                                     "availability_zone": "us-east-1a",
                                                     "vpc_security_group_ids": ["sg-0a"]}])


def default_subnet_adopted():
    subnet = aws.ec2.DefaultSubnet("default-1a", availability_zone="us-east-1a")
    aws.ec2.Instance("box", ami="ami-0abc", instance_type="g6.xlarge", subnet_id=subnet.id,
                     metadata_options={"http_tokens": "required"})


def lattice_mesh_for_other_teams():
    network = aws.vpclattice.ServiceNetwork("shared", name="llm-shared")
    service = aws.vpclattice.Service("llm", name="llm", auth_type="NONE")
    aws.vpclattice.ServiceNetworkServiceAssociation("llm", service_identifier=service.id,
                                                    service_network_identifier=network.id)


def privatelink_for_customers():
    nlb = aws.lb.LoadBalancer("vllm-nlb", load_balancer_type="network", internal=True, subnets=["subnet-0a"])
    aws.ec2.VpcEndpointService("llm", acceptance_required=False, network_load_balancer_arns=[nlb.arn],
                               allowed_principals=["*"])


def lambda_proxy_invocable_by_anyone():
    fn = aws.lambda_.Function("proxy", role="arn:aws:iam::123456789012:role/proxy", runtime="python3.12",
                              handler="app.handler", code=pulumi.AssetArchive({}))
    aws.lambda_.Permission("allow-callers", action="lambda:InvokeFunction", function=fn.name, principal="*")


def api_resource_policy_for_partners():
    aws.apigateway.RestApi("partner-api", endpoint_configuration={"types": "REGIONAL"},
                           policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                               "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "execute-api:Invoke",
                               "Resource": "execute-api:/*"}]}))


def office_prefix_list_with_a_catch_all():
    office = aws.ec2.ManagedPrefixList("office", name="office", address_family="IPv4", max_entries=10, entries=[
        {"cidr": "203.0.113.0/24", "description": "HQ"}, {"cidr": "0.0.0.0/0", "description": "temp: remote staff"}])
    aws.ec2.SecurityGroup("vllm", vpc_id="vpc-0a", description="vLLM", ingress=[{
        "protocol": "tcp", "from_port": 8000, "to_port": 8000, "prefix_list_ids": [office.id]}])


def openapi_with_bearer_documented():
    aws.apigateway.RestApi("openai-compat", body=json.dumps({
        "openapi": "3.0.1", "info": {"title": "openai-compat", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {"/v1/chat/completions": {"post": {"x-amazon-apigateway-integration": {
            "type": "aws_proxy", "httpMethod": "POST",
            "uri": "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:"
                   "123456789012:function:chat/invocations"}}}}}))


def alb_login_optional():
    tg = aws.lb.TargetGroup("vllm", port=8000, protocol="HTTP", vpc_id="vpc-0a", target_type="ip")
    alb = aws.lb.LoadBalancer("chat", load_balancer_type="application", subnets=["subnet-0a", "subnet-0b"])
    aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[
                        {"type": "authenticate-cognito", "order": 1, "authenticate_cognito": {
                            "user_pool_arn": "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_x",
                            "user_pool_client_id": "client", "user_pool_domain": "chat",
                            "on_unauthenticated_request": "allow"}},
                        {"type": "forward", "order": 2, "target_group_arn": tg.arn}])


def http_api_straight_to_the_gpu_box():
    api = aws.apigatewayv2.Api("chat", protocol_type="HTTP")
    authorizer = aws.apigatewayv2.Authorizer("jwt", api_id=api.id, authorizer_type="JWT",
                                             identity_sources=["$request.header.Authorization"],
                                             jwt_configuration={"issuer": "https://idp.example", "audiences": ["chat"]})
    integration = aws.apigatewayv2.Integration("vllm", api_id=api.id, integration_type="HTTP_PROXY",
                                               integration_method="ANY",
                                               integration_uri="http://ec2-54-0-0-1.compute-1.amazonaws.com:8000/{proxy}")
    aws.apigatewayv2.Route("proxy", api_id=api.id, route_key="ANY /{proxy+}", authorization_type="JWT",
                           authorizer_id=authorizer.id, target=integration.id.apply(lambda i: f"integrations/{i}"))


def tunnel_from_another_provider():
    pulumi.CustomResource("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig",
                          "llm-tunnel", {"accountId": "abc", "tunnelId": "t", "config": {"ingresses": [
                              {"hostname": "llm.example.com", "service": "http://internal-models.local:8000"}]}})


VIOLATIONS = [
    ("cdn-in-front-of-private-alb", cdn_in_front_of_the_private_model_alb, "edge-authenticated",
     "aws:cloudfront/distribution:Distribution", "llm-cdn"),
    ("accelerator-for-low-latency", accelerator_for_low_latency, "edge-authenticated",
     "aws:globalaccelerator/endpointGroup:EndpointGroup", "us-east-1"),
    ("app-runner-quick-deploy", app_runner_quick_deploy, "managed-platform-not-public",
     "aws:apprunner/service:Service", "ollama"),
    ("beanstalk-docker-environment", beanstalk_docker_environment, "managed-platform-not-public",
     "aws:elasticbeanstalk/environment:Environment", "tgi-prod"),
    ("lightsail-gpu-box", lightsail_gpu_box, "managed-platform-not-public", "aws:lightsail/instance:Instance", "gpu"),
    ("ecs-blue-green-task-set", ecs_blue_green_task_set, "compute-placement-no-public-ip",
     "aws:ecs/taskSet:TaskSet", "green"),
    ("asg-across-zones", asg_across_zones, "compute-placement-no-public-ip", "aws:autoscaling/group:Group", "vllm"),
    ("spot-fleet-for-cheap-gpus", spot_fleet_for_cheap_gpus, "compute-placement-no-public-ip",
     "aws:ec2/spotFleetRequest:SpotFleetRequest", "cheap-gpus"),
    ("default-subnet-adopted", default_subnet_adopted, "compute-placement-no-public-ip",
     "aws:ec2/defaultSubnet:DefaultSubnet", "default-1a"),
    ("lattice-mesh-network", lattice_mesh_for_other_teams, "service-network-authenticated",
     "aws:vpclattice/serviceNetwork:ServiceNetwork", "shared"),
    ("lattice-mesh-service", lattice_mesh_for_other_teams, "service-network-authenticated",
     "aws:vpclattice/service:Service", "llm"),
    ("privatelink-for-customers", privatelink_for_customers, "service-network-authenticated",
     "aws:ec2/vpcEndpointService:VpcEndpointService", "llm"),
    ("lambda-proxy-invocable-by-anyone", lambda_proxy_invocable_by_anyone, "no-public-invoke",
     "aws:lambda/permission:Permission", "allow-callers"),
    ("api-resource-policy-for-partners", api_resource_policy_for_partners, "no-public-invoke",
     "aws:apigateway/restApi:RestApi", "partner-api"),
    ("office-prefix-list-with-a-catch-all", office_prefix_list_with_a_catch_all, "prefix-list-no-internet",
     "aws:ec2/securityGroup:SecurityGroup", "vllm"),
    ("openapi-with-bearer-documented", openapi_with_bearer_documented, "apigateway-method-auth",
     "aws:apigateway/restApi:RestApi", "openai-compat"),
    ("alb-login-optional", alb_login_optional, "internet-reachability", "aws:lb/listener:Listener", "https"),
    ("http-api-straight-to-the-gpu-box", http_api_straight_to_the_gpu_box, "integration-private-backend",
     "aws:apigatewayv2/integration:Integration", "vllm"),
    ("tunnel-from-another-provider", tunnel_from_another_provider, "entry-point-classified",
     "cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig", "llm-tunnel"),
]


@pytest.mark.parametrize("program,policy,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in VIOLATIONS])
def test_outsider_aws_program_is_a_mandatory_violation_on_the_offender(pack, program, policy, type_token, name):
    expect_violation(judge(pack, program, "prod"), policy, type_token, name, level="mandatory")


# ---- the same jobs, done privately ---------------------------------------------------------------

def ok_private_serving_as_outsiders_write_it():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.40.0.0/16")
    private = aws.ec2.Subnet("private-a", vpc_id=vpc.id, cidr_block="10.40.1.0/24", availability_zone="us-east-1a")
    lt = aws.ec2.LaunchTemplate("vllm", image_id="ami-0abc", instance_type="g6.xlarge",
                                metadata_options={"http_tokens": "required"})
    aws.autoscaling.Group("vllm", min_size=1, max_size=4, vpc_zone_identifiers=[private.id],
                          launch_template={"id": lt.id, "version": "$Latest"})
    nlb = aws.lb.LoadBalancer("vllm-nlb", load_balancer_type="network", internal=True, subnets=[private.id])
    aws.ec2.VpcEndpointService("llm", acceptance_required=True, network_load_balancer_arns=[nlb.arn],
                               allowed_principals=["arn:aws:iam::210987654321:root"])
    aws.apprunner.Service("ollama", service_name="ollama", source_configuration={
        "image_repository": {"image_identifier": "public.ecr.aws/docker/library/ollama:0.5.7",
                             "image_repository_type": "ECR_PUBLIC"}},
        network_configuration={"ingress_configuration": {"is_publicly_accessible": False}})
    service = aws.vpclattice.Service("llm", name="llm", auth_type="AWS_IAM")
    aws.vpclattice.AuthPolicy("llm", resource_identifier=service.arn, policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
                                                "Resource": "*", "Condition": {
                                                    "StringEquals": {"aws:PrincipalOrgID": "o-abc123def4"}}}]}))
    api = aws.apigatewayv2.Api("chat", protocol_type="HTTP")
    link = aws.apigatewayv2.VpcLink("link", subnet_ids=[private.id], security_group_ids=["sg-0a"])
    aws.apigatewayv2.Integration("vllm", api_id=api.id, integration_type="HTTP_PROXY", integration_method="ANY",
                                 connection_type="VPC_LINK", connection_id=link.id,
                                 integration_uri="arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/y/z")


@pytest.mark.parametrize("program", [pytest.param(ok_private_serving_as_outsiders_write_it, id="private-serving")])
def test_outsider_aws_look_alikes_raise_no_family_1_diagnostic(pack, program):
    verdict = judge(pack, program, "prod")
    flagged = [d for d in verdict.diagnostics if d.policy_name in FAMILY_1]
    assert not flagged, "\n".join(f"{d.policy_name} @ {d.urn.rsplit('::', 1)[-1]}: {d.message}" for d in flagged)
