"""Realistic answers for the invokes the program makes, and created-state for `pulumi up`-like runs.

The values mirror what AWS returns for an account in a commercial region, so that
components see the same shapes (AZ names and ids, SSM parameter values, ARNs) as they
would against a real account.
"""
from __future__ import annotations

import hashlib
import json
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
        document = policy_document(args)
        return {"id": hashlib.sha256(document.encode()).hexdigest()[:10], "json": document,
                "minifiedJson": json.dumps(json.loads(document), separators=(",", ":"))}
    if token == "aws:ec2/getPrefixList:getPrefixList":
        name = args.get("name") or f"com.amazonaws.{region}.s3"
        return {"id": _fake_id("pl", name), "name": name, "prefixListId": _fake_id("pl", name),
                "cidrBlocks": list(S3_PREFIX_LIST_CIDRS)}
    return {}


# The shape of com.amazonaws.<region>.s3 (a handful of public S3 ranges); the real list is
# read from the account at deploy time.
S3_PREFIX_LIST_CIDRS = ("3.5.0.0/19", "16.15.176.0/20", "16.182.0.0/16", "52.216.0.0/15", "54.231.0.0/16")


def policy_document(args: dict[str, Any]) -> str:
    """What the provider's getPolicyDocument renders from its statements (a single value
    becomes a string, as the provider writes it)."""
    def one_or_list(values: list) -> Any:
        return values[0] if len(values) == 1 else values

    def camel(value: Any) -> Any:
        # The SDK's dict form (GetPolicyDocumentStatementArgsDict) spells keys in snake_case.
        if isinstance(value, dict):
            return {k.split("_")[0] + "".join(p.title() for p in k.split("_")[1:]): camel(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [camel(v) for v in value]
        return value

    statements = []
    for raw in camel(args.get("statements") or []):
        statement: dict[str, Any] = {}
        if raw.get("sid"):
            statement["Sid"] = raw["sid"]
        statement["Effect"] = raw.get("effect") or "Allow"
        for key, name in (("actions", "Action"), ("notActions", "NotAction"),
                          ("resources", "Resource"), ("notResources", "NotResource")):
            if raw.get(key):
                statement[name] = one_or_list(list(raw[key]))
        for key, name in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
            if raw.get(key):
                principals: dict[str, Any] = {}
                for principal in raw[key]:
                    principals.setdefault(principal["type"], []).extend(principal["identifiers"])
                if list(principals) == ["*"]:
                    statement[name] = "*"
                else:
                    statement[name] = {k: one_or_list(v) for k, v in principals.items()}
        if raw.get("conditions"):
            conditions: dict[str, Any] = {}
            for condition in raw["conditions"]:
                conditions.setdefault(condition["test"], {})[condition["variable"]] = \
                    one_or_list(list(condition["values"]))
            statement["Condition"] = conditions
        statements.append(statement)
    return json.dumps({"Version": args.get("version") or "2012-10-17", "Statement": statements}, indent=2)


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
        # The host is the REST API's id: every stage of one API shares it.
        api = inputs.get("restApi") if isinstance(inputs.get("restApi"), str) else resource_id[-10:]
        state.setdefault("invokeUrl", f"https://{api}.execute-api.{region}.amazonaws.com/{inputs.get('stageName', 'v1')}")
    if type_token == "aws:eks/cluster:Cluster":
        state.setdefault("endpoint", f"https://{resource_id[-12:].upper()}.gr7.{region}.eks.amazonaws.com")
        state.setdefault("certificateAuthority", {"data": "LS0tLS1CRUdJTi1DRVJUSUZJQ0FURS0tLS0t"})
        state.setdefault("identities", [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{resource_id[-12:].upper()}"}]}])
        state.setdefault("vpcConfig", {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": _fake_id("sg", name)})
    if type_token == "aws:eks/nodeGroup:NodeGroup":
        # EKS creates one Auto Scaling group per managed node group, named after it.
        state.setdefault("resources", [{"autoscalingGroups": [{"name": f"eks-{name}-{resource_id[-8:]}"}],
                                        "remoteAccessSecurityGroupId": ""}])
    if type_token == "aws:sqs/queue:Queue":
        state["arn"] = f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{state['name']}"
        state.setdefault("url", f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}")
    if type_token == "aws:ec2/vpc:Vpc":
        state.setdefault("defaultSecurityGroupId", _fake_id("sg", name, "default"))
        state.setdefault("mainRouteTableId", _fake_id("rtb", name, "main"))
    if type_token == "aws:kms/key:Key":
        # KMS key ids are UUIDs (a Session Manager preferences document names its key by id).
        digest = hashlib.sha256(f"{type_token}/{name}".encode()).hexdigest()[:32]
        state.setdefault("keyId", f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}")
    if type_token == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{inputs.get('url', name).replace('https://', '')}"
    return resource_id, state
