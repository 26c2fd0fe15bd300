"""no-public-invoke and service-network-authenticated through the analyzer protocol: who may
invoke or connect, in every spelling of the document (json.dumps, Output.json_dumps, a single
statement or a list, typed Args) with compliant twins."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from tests.policy_helpers import REST_API, expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

INVOKE = "no-public-invoke"
NETWORK = "service-network-authenticated"
PERMISSION = "aws:lambda/permission:Permission"
REST_API_POLICY = "aws:apigateway/restApiPolicy:RestApiPolicy"
LAMBDA_POLICY = "aws:lambda/resourcePolicy:ResourcePolicy"
SERVICE_NETWORK = "aws:vpclattice/serviceNetwork:ServiceNetwork"
LATTICE_SERVICE = "aws:vpclattice/service:Service"
AUTH_POLICY = "aws:vpclattice/authPolicy:AuthPolicy"
LATTICE_RP = "aws:vpclattice/resourcePolicy:ResourcePolicy"
ENDPOINT_SERVICE = "aws:ec2/vpcEndpointService:VpcEndpointService"
ALLOWED_PRINCIPAL = "aws:ec2/vpcEndpointServiceAllowedPrinciple:VpcEndpointServiceAllowedPrinciple"


def _fn():
    return aws.lambda_.Function("chat", role="arn:aws:iam::1:role/x", runtime="python3.12", handler="h.h",
                                code=pulumi.AssetArchive({}))


def permission_star():
    aws.lambda_.Permission("anyone", function=_fn().name, action="lambda:InvokeFunction", principal="*")


def permission_star_url_typed():
    aws.lambda_.Permission("anyone", aws.lambda_.PermissionArgs(
        function=_fn().name, action="lambda:InvokeFunctionUrl", principal="*", function_url_auth_type="NONE"))


def permission_service_without_source():
    aws.lambda_.Permission("apigw", function=_fn().name, action="lambda:InvokeFunction",
                           principal="apigateway.amazonaws.com")


def permission_principal_unknown():
    aws.lambda_.Permission("computed", function=_fn().name, action="lambda:InvokeFunction",
                           principal=unknown_of("*"))


def _open_invoke(action, single=False):
    statement = {"Effect": "Allow", "Principal": "*", "Action": action, "Resource": "*"}
    return {"Version": "2012-10-17", "Statement": statement if single else [statement]}


def rest_api_inline_policy_json():
    aws.apigateway.RestApi("api", policy=json.dumps(_open_invoke("execute-api:Invoke")))


def rest_api_policy_output_json_single_statement():
    api = aws.apigateway.RestApi("api")
    aws.apigateway.RestApiPolicy("policy", rest_api_id=api.id, policy=pulumi.Output.json_dumps(
        {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": ["*"]},
                                                "Action": ["execute-api:*"],
                                                "Resource": api.execution_arn.apply(lambda a: f"{a}/*")}}))


def lambda_resource_policy_wildcard_action():
    fn = _fn()
    aws.lambda_.ResourcePolicy("policy", resource_arn=fn.arn, policy=json.dumps(_open_invoke("lambda:*", single=True)))


def lattice_network_default_auth():
    aws.vpclattice.ServiceNetwork("mesh", name="models")


def lattice_service_none_typed():
    aws.vpclattice.Service("svc", aws.vpclattice.ServiceArgs(name="models", auth_type="NONE"))


def lattice_auth_policy_open():
    service = aws.vpclattice.Service("svc", name="models", auth_type="AWS_IAM")
    aws.vpclattice.AuthPolicy("auth", resource_identifier=service.arn, policy=json.dumps(
        _open_invoke("vpc-lattice-svcs:Invoke")))


def lattice_resource_policy_shared_with_everyone():
    network = aws.vpclattice.ServiceNetwork("mesh", name="models", auth_type="AWS_IAM")
    aws.vpclattice.ResourcePolicy("share", resource_arn=network.arn, policy=pulumi.Output.json_dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Resource": "*",
                                                 "Action": ["vpc-lattice:CreateServiceNetworkVpcAssociation"]}]}))


def endpoint_service_open_auto_accept():
    aws.ec2.VpcEndpointService("svc", acceptance_required=False, allowed_principals=["*"],
                               network_load_balancer_arns=["arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/x/y"])


def endpoint_service_allowed_principle_star():
    service = aws.ec2.VpcEndpointService("svc", acceptance_required=True,
                                         network_load_balancer_arns=["arn:aws:elasticloadbalancing:us-east-1:1:lb"])
    aws.ec2.VpcEndpointServiceAllowedPrinciple("everyone", vpc_endpoint_service_id=service.id, principal_arn="*")


CASES = [
    ("permission-star", permission_star, INVOKE, PERMISSION, "anyone"),
    ("permission-star-url-typed", permission_star_url_typed, INVOKE, PERMISSION, "anyone"),
    ("permission-service-without-source", permission_service_without_source, INVOKE, PERMISSION, "apigw"),
    ("permission-principal-unknown", permission_principal_unknown, INVOKE, PERMISSION, "computed"),
    ("rest-api-inline-policy-json", rest_api_inline_policy_json, INVOKE, REST_API, "api"),
    ("rest-api-policy-output-json-single", rest_api_policy_output_json_single_statement, INVOKE,
     REST_API_POLICY, "policy"),
    ("lambda-resource-policy-wildcard", lambda_resource_policy_wildcard_action, INVOKE, LAMBDA_POLICY, "policy"),
    ("lattice-network-default-auth", lattice_network_default_auth, NETWORK, SERVICE_NETWORK, "mesh"),
    ("lattice-service-none-typed", lattice_service_none_typed, NETWORK, LATTICE_SERVICE, "svc"),
    ("lattice-auth-policy-open", lattice_auth_policy_open, NETWORK, AUTH_POLICY, "auth"),
    ("lattice-resource-policy-everyone", lattice_resource_policy_shared_with_everyone, NETWORK, LATTICE_RP, "share"),
    ("endpoint-service-open-auto-accept", endpoint_service_open_auto_accept, NETWORK, ENDPOINT_SERVICE, "svc"),
    ("endpoint-service-allowed-principle-star", endpoint_service_allowed_principle_star, NETWORK,
     ALLOWED_PRINCIPAL, "everyone"),
]


@pytest.mark.parametrize("program,policy,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_letting_everyone_invoke_or_connect_is_a_mandatory_violation(pack, program, policy, type_token, name):
    expect_violation(judge(pack, program, "dev"), policy, type_token, name)


def compliant_twins():
    fn = _fn()
    api = aws.apigateway.RestApi("api", policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-0123"}}}]}))
    aws.lambda_.Permission("apigw", function=fn.name, action="lambda:InvokeFunction",
                           principal="apigateway.amazonaws.com",
                           source_arn=api.execution_arn.apply(lambda a: f"{a}/*/*"))
    aws.lambda_.Permission("account", function=fn.name, action="lambda:InvokeFunction", principal="123456789012")
    aws.apigateway.RestApiPolicy("org-only", rest_api_id=api.id, policy=json.dumps({
        "Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
                                               "Resource": "*",
                                               "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}}))
    service = aws.vpclattice.Service("svc", name="models", auth_type="AWS_IAM")
    aws.vpclattice.ServiceNetwork("mesh", name="models", auth_type="AWS_IAM")
    aws.vpclattice.AuthPolicy("auth", resource_identifier=service.arn, policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/gw"},
                                                "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"}]}))
    aws.ec2.VpcEndpointService("svc", acceptance_required=True, allowed_principals=["*"],
                               network_load_balancer_arns=["arn:aws:elasticloadbalancing:us-east-1:1:lb"])
    aws.ec2.VpcEndpointService("named", acceptance_required=False,
                               allowed_principals=["arn:aws:iam::123456789012:root"],
                               network_load_balancer_arns=["arn:aws:elasticloadbalancing:us-east-1:1:lb"])


def test_the_compliant_twins_pass(pack):
    verdict = judge(pack, compliant_twins, "prod")
    expect_clean(verdict, INVOKE)
    expect_clean(verdict, NETWORK)
    expect_clean(verdict, "entry-point-classified")


# --- a Deny confines only what it covers -----------------------------------------------------

def _api_with(deny: dict, allow_resource="execute-api:/*"):
    aws.apigateway.RestApi("api", policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": allow_resource},
        {"Effect": "Deny", "Principal": "*", **deny,
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["198.51.100.0/24"]}}}]}))


@pytest.mark.parametrize("deny", [
    pytest.param({"Action": "execute-api:Invoke", "Resource": "execute-api:/interactive/*/*"}, id="one-stage"),
    pytest.param({"Action": "execute-api:Invoke",
                  "Resource": ["execute-api:/interactive/*/*", "execute-api:/batch/*/*"]}, id="two-of-all-stages"),
    pytest.param({"Action": "execute-api:ManageConnections", "Resource": "execute-api:/*"}, id="other-action"),
    pytest.param({"Action": "execute-api:Invoke", "NotResource": "execute-api:/health/*"}, id="not-resource"),
    pytest.param({"NotAction": "execute-api:InvalidateCache", "Resource": "*"}, id="not-action"),
])
def test_a_deny_that_does_not_cover_the_open_allow_leaves_it_open(pack, deny):
    expect_violation(judge(pack, lambda: _api_with(deny), "dev"), INVOKE, REST_API, "api")


@pytest.mark.parametrize("deny, allow_resource", [
    pytest.param({"Action": "execute-api:Invoke", "Resource": "execute-api:/*"}, "execute-api:/*", id="same-resource"),
    pytest.param({"Action": "execute-api:*", "Resource": "*"}, "execute-api:/*", id="deny-everything"),
    pytest.param({"Action": "*", "Resource": "execute-api:/*"}, "execute-api:/prod/*/*", id="deny-wider"),
    pytest.param({"Action": "execute-api:Invoke", "Resource": ["execute-api:/a/*", "execute-api:/b/*"]},
                 ["execute-api:/a/*", "execute-api:/b/GET/x"], id="each-allowed-resource-covered"),
])
def test_a_deny_that_covers_the_open_allow_confines_it(pack, deny, allow_resource):
    expect_clean(judge(pack, lambda: _api_with(deny, allow_resource), "dev"), INVOKE)
