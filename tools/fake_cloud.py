"""Realistic answers for the invokes the program makes, and created-state for `pulumi up`-like runs.

The values mirror what AWS returns for an account in a commercial region, so that
components see the same shapes (AZ names and ids, SSM parameter values, ARNs) as they
would against a real account.
"""
from __future__ import annotations

import hashlib
from typing import Any

ACCOUNT_ID = "123456789012"

# The zones each region offers to a new account; used to reject AZ counts a region lacks.
REGION_ZONES: dict[str, list[str]] = {
    "us-east-1": ["a", "b", "c", "d", "e", "f"],
    "us-east-2": ["a", "b", "c"],
    "us-west-2": ["a", "b", "c", "d"],
    "eu-west-1": ["a", "b", "c"],
    "eu-central-1": ["a", "b", "c"],
    "ap-northeast-1": ["a", "c", "d"],
    "ap-southeast-2": ["a", "b", "c"],
}

GPU_AMI_PARAMETER_PREFIX = "/aws/service/deeplearning/ami/x86_64/"


def _fake_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:17]
    return f"{prefix}-{digest}"


def invoke(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
        letters = REGION_ZONES.get(region, ["a", "b", "c"])
        short = region.replace("-", "")[:4]
        return {
            "id": region,
            "names": [f"{region}{letter}" for letter in letters],
            "zoneIds": [f"{short}-az{i + 1}" for i in range(len(letters))],
            "groupNames": [region] * len(letters),
            "state": "available",
        }
    if token == "aws:ssm/getParameter:getParameter":
        name = args.get("name", "")
        return {
            "id": name,
            "name": name,
            "type": "String",
            "value": _fake_id("ami", name),
            "insecureValue": _fake_id("ami", name),
            "version": 1,
            "arn": f"arn:aws:ssm:{region}::parameter{name}",
        }
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {
            "id": ACCOUNT_ID,
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
            "userId": "AIDAEXAMPLEUSERID",
        }
    if token in ("aws:index/getRegion:getRegion", "aws:index/region:Region"):
        return {"id": region, "name": region, "region": region,
                "endpoint": f"ec2.{region}.amazonaws.com", "description": region}
    if token == "aws:index/getPartition:getPartition":
        return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws"}
    if token == "aws:ec2/getAmi:getAmi":
        return {"id": _fake_id("ami", str(args)), "imageId": _fake_id("ami", str(args)),
                "architecture": "x86_64", "rootDeviceName": "/dev/xvda"}
    if token == "aws:iam/getPolicyDocument:getPolicyDocument":
        raise ValueError("build IAM policy documents as JSON; getPolicyDocument is not mocked")
    return {}


# Computed attributes a provider returns after create, by resource type.
_ARN_SERVICE = {
    "aws:ec2/": "ec2", "aws:iam/": "iam", "aws:kms/": "kms", "aws:lb/": "elasticloadbalancing",
    "aws:cloudwatch/": "logs", "aws:sns/": "sns", "aws:secretsmanager/": "secretsmanager",
    "aws:eks/": "eks", "aws:apigateway/": "apigateway", "aws:wafv2/": "wafv2",
    "aws:acm/": "acm", "aws:acmpca/": "acm-pca", "aws:s3/": "s3", "aws:autoscaling/": "autoscaling",
    "aws:sqs/": "sqs",
}
# EC2 ids carry their kind (schemas such as Karpenter's check `subnet-...`, `sg-...`).
_ID_PREFIX = {"aws:ec2/subnet:Subnet": "subnet", "aws:ec2/securityGroup:SecurityGroup": "sg",
              "aws:ec2/vpc:Vpc": "vpc"}


def created_state(type_token: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict]:
    """Id and state for a resource as a provider would return them after create."""
    resource_id = _fake_id(_ID_PREFIX.get(type_token) or name.split("-")[0][:8] or "res", type_token, name)
    service = next((s for prefix, s in _ARN_SERVICE.items() if type_token.startswith(prefix)), "svc")
    state = dict(inputs)
    state.setdefault("arn", f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}/{resource_id}")
    state.setdefault("name", inputs.get("name", f"{name}-{resource_id[-7:]}"))
    if type_token == "aws:lb/loadBalancer:LoadBalancer":
        state.setdefault("dnsName", f"internal-{name}-{resource_id[-8:]}.{region}.elb.amazonaws.com")
        state.setdefault("zoneId", "Z26RNL4JYFTOTI")
        state.setdefault("arnSuffix", f"net/{name}/{resource_id[-16:]}")
    if type_token == "aws:lb/targetGroup:TargetGroup":
        state.setdefault("arnSuffix", f"targetgroup/{name}/{resource_id[-16:]}")
    if type_token == "aws:apigateway/restApi:RestApi":
        state.setdefault("rootResourceId", _fake_id("root", name)[:10])
        state.setdefault("executionArn", f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{resource_id[-10:]}")
    if type_token == "aws:apigateway/stage:Stage":
        state.setdefault("invokeUrl", f"https://{resource_id[-10:]}.execute-api.{region}.amazonaws.com/{inputs.get('stageName', 'v1')}")
    if type_token == "aws:eks/cluster:Cluster":
        state.setdefault("endpoint", f"https://{resource_id[-12:].upper()}.gr7.{region}.eks.amazonaws.com")
        state.setdefault("certificateAuthority", {"data": "LS0tLS1CRUdJTi1DRVJUSUZJQ0FURS0tLS0t"})
        state.setdefault("identities", [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{resource_id[-12:].upper()}"}]}])
        state.setdefault("vpcConfig", {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": _fake_id("sg", name)})
    if type_token == "aws:sqs/queue:Queue":
        state["arn"] = f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{state['name']}"
        state.setdefault("url", f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}")
    if type_token == "aws:ec2/vpc:Vpc":
        state.setdefault("defaultSecurityGroupId", _fake_id("sg", name, "default"))
        state.setdefault("mainRouteTableId", _fake_id("rtb", name, "main"))
    if type_token == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{inputs.get('url', name).replace('https://', '')}"
    return resource_id, state
