"""Family 1, per resource: no endpoint reachable from the internet without authentication.

"Authenticated" means an API key or an authorizer (IAM, Cognito, JWT, Lambda) or an ALB
authenticate action stands in front. Every rule fails closed: a value that decides
exposure and is unknown during preview is a violation saying so (see _framework).

Some judgements need more than one resource (an ALB's listeners, a CORS preflight's
integration, a WebSocket route's $connect); those resources are left to the stack rule
in reachability.py, which can see the relations.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import yaml

from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import (
    admits_internet,
    as_bool,
    as_dict,
    as_list,
    as_number,
    is_unknown,
    show,
)
from . import openapi_security

LB_V2_TYPES = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
CLASSIC_LB_TYPES = ("aws:elb/loadBalancer:LoadBalancer",)
LISTENER_TYPES = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULE_TYPES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
SG_TYPES = ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
SG_RULE_TYPES = ("aws:ec2/securityGroupRule:SecurityGroupRule",
                 "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")

CIDR_ALLOW_LIST_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "not": {"enum": ["0.0.0.0/0", "::/0"]}},
    "default": [],
    "description": ("Public CIDRs (for example CI egress or office ranges) that may be allowed "
                    "in. Private ranges never need listing; 0.0.0.0/0 and ::/0 cannot be "
                    "allow-listed."),
}


# ---- API Gateway REST -------------------------------------------------------------------

def openapi_unauthenticated(body: Any, api_kind: str) -> Iterator[Finding]:
    """Operations in an OpenAPI body that nobody has to authenticate for.

    A RestApi or HTTP Api imported from OpenAPI creates its methods from `body`, so an
    insecure API may have no Method/Route resources at all. Only security the gateway
    enforces counts (openapi_security.py).
    """
    if is_unknown(body):
        yield unknown("body", f"write the {api_kind} definition so it is known at preview, or "
                              "define methods as separate resources with authorization set")
        return
    document = openapi_security.parse(body)
    if document is None:
        return
    if document == "unreadable":
        yield violation("body", None, "it is not a JSON or YAML OpenAPI document the policy can read, "
                        "so which operations require authentication cannot be established",
                        "supply a valid OpenAPI document with a security requirement on every operation",
                        rendered="unreadable")
        return
    rest = api_kind.startswith("REST")
    for route, verb, operation in openapi_security.operations(document):
        if openapi_security.operation_authenticated(document, operation, rest):
            continue
        if verb.lower() == "options" and openapi_security.is_mock(operation):
            continue  # CORS preflight answered by API Gateway itself
        security = operation["security"] if "security" in operation else document.get("security")
        yield violation(f"body.paths[{json.dumps(route)}].{verb}.security", security,
                        "the operation requires nothing API Gateway enforces (no API key"
                        + (" for x-api-key" if rest else "") + ", no x-amazon-apigateway-authorizer, no "
                        "AWS_IAM/awsSigv4; a declared scheme that is not applied, a scheme without an "
                        "authorizer, or an empty {} alternative authenticate nobody), so anyone on the "
                        "internet can call it",
                        "require a scheme the gateway enforces on the operation or globally: "
                        + ("an apiKey scheme for the x-api-key header, " if rest else "")
                        + "a scheme with x-amazon-apigateway-authorizer, or x-amazon-apigateway-authtype "
                        "awsSigv4")


def _check_method(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type in ("aws:apigateway/restApi:RestApi", "aws:apigateway/restApiPut:RestApiPut"):
        if "body" in res.props:
            yield from openapi_unauthenticated(res.props.get("body"), "REST API")
        return
    authorization = res.get("authorization")
    fix = ("set authorization to AWS_IAM, COGNITO_USER_POOLS or CUSTOM (with an authorizer), or "
           "set api_key_required=True and meter the stage with a usage plan")
    if is_unknown(authorization):
        yield unknown("authorization", fix)
        return
    if authorization is not None and str(authorization).upper() != "NONE":
        return
    key_required = as_bool(res.get("apiKeyRequired"))
    if is_unknown(key_required):
        yield unknown("apiKeyRequired", fix)
        return
    if key_required is True:
        return
    verb = res.get("httpMethod")
    if is_unknown(verb):
        yield unknown("httpMethod", fix, why="only an OPTIONS preflight may skip authentication, and "
                      "the method is unknown during preview, so the guardrail fails closed")
        return
    if str(verb).upper() == "OPTIONS":
        return  # exempt only with a MOCK integration: judged by internet-reachability
    yield violation("authorization", None,
                    f"the {str(verb).upper()} method requires neither an authorizer nor an API key, "
                    "so anyone who finds the stage URL can call the model",
                    fix, rendered=f"{show(authorization or 'NONE')} and apiKeyRequired is "
                                  f"{show(key_required)}")


METHOD_AUTH = resource_policy(
    name="apigateway-method-auth",
    family=FAMILY_EXPOSURE,
    description="Every API Gateway REST method requires an authorizer or an API key "
                "(OPTIONS only as a CORS preflight with a MOCK integration).",
    resource_types=("aws:apigateway/method:Method", "aws:apigateway/restApi:RestApi",
                    "aws:apigateway/restApiPut:RestApiPut"),
    check=_check_method,
    remediation="Set authorization (AWS_IAM, COGNITO_USER_POOLS, CUSTOM) or api_key_required=True "
                "on every method, including the root and {proxy+} ANY; for OpenAPI bodies add a "
                "security requirement to every operation.",
)


# ---- API Gateway HTTP / WebSocket -------------------------------------------------------

def route_is_deferred(route_key: str) -> bool:
    """Route keys the stack rule judges because the answer depends on the API's protocol:
    `$default` (HTTP or WebSocket) and WebSocket-only keys, which inherit $connect's auth."""
    return route_key == "$default" or route_key == "$disconnect" or (
        " " not in route_key and not route_key.startswith("$"))


def route_is_authenticated(res: Resource) -> Optional[bool] | str:
    auth = res.get("authorizationType")
    if is_unknown(auth):
        return auth
    if auth is not None and str(auth).upper() != "NONE":
        return True
    if res.get("routeKey") == "$connect":
        # WebSocket APIs can require an API key on $connect.
        key_required = as_bool(res.get("apiKeyRequired"))
        return key_required if is_unknown(key_required) else key_required is True
    return False


def _check_route(res: Resource, config: dict) -> Iterator[Finding]:
    fix = "set authorization_type to JWT, AWS_IAM or CUSTOM with an authorizer_id"
    if res.type == "aws:apigatewayv2/api:Api":
        if "target" in res.props:
            yield violation("target", res.props.get("target"),
                            "quick create adds a $default route with authorization NONE and an "
                            "auto-deployed stage, so the target is public",
                            "remove `target`; create the route with an authorizer and a stage explicitly",
                            rendered="set" if not is_unknown(res.props.get("target")) else "set (unknown during preview)")
        if "body" in res.props:
            yield from openapi_unauthenticated(res.props.get("body"), "HTTP API")
        return
    route_key = res.get("routeKey")
    if is_unknown(route_key):
        yield unknown("routeKey", fix)
        return
    if not isinstance(route_key, str) or route_is_deferred(route_key):
        return
    authenticated = route_is_authenticated(res)
    if is_unknown(authenticated):
        yield unknown("authorizationType", fix)
    elif not authenticated:
        yield violation("authorizationType", res.get("authorizationType"),
                        f"route {json.dumps(route_key)} requires no authorizer, so anyone on the "
                        "internet can call it", fix)


HTTP_API_ROUTE_AUTH = resource_policy(
    name="http-api-route-auth",
    family=FAMILY_EXPOSURE,
    description="Every API Gateway v2 (HTTP/WebSocket) route requires an authorizer; no quick-create "
                "targets; OpenAPI bodies carry a security requirement on every operation.",
    resource_types=("aws:apigatewayv2/route:Route", "aws:apigatewayv2/api:Api"),
    check=_check_route,
    remediation="Give every route authorization_type JWT, AWS_IAM or CUSTOM with an authorizer; for "
                "WebSocket APIs authenticate $connect.",
)


# ---- Lambda function URLs ---------------------------------------------------------------

def _check_function_url(res: Resource, config: dict) -> Iterator[Finding]:
    auth = res.get("authorizationType")
    fix = ("set authorization_type=\"AWS_IAM\", or drop the function URL and put the function "
           "behind API Gateway with an authorizer")
    if is_unknown(auth):
        yield unknown("authorizationType", fix)
    elif auth is None or str(auth).upper() == "NONE":
        yield violation("authorizationType", auth or "NONE",
                        "a function URL with NONE is a public HTTPS endpoint anyone can invoke", fix)


FUNCTION_URL_AUTH = resource_policy(
    name="function-url-auth",
    family=FAMILY_EXPOSURE,
    description="Lambda function URLs require IAM authentication.",
    resource_types=("aws:lambda/functionUrl:FunctionUrl",),
    check=_check_function_url,
    remediation="Set authorization_type to AWS_IAM, or front the function with API Gateway.",
)


# ---- load balancers ---------------------------------------------------------------------

def lb_exposure(res: Resource) -> tuple[Any, Any]:
    """(internet_facing, load_balancer_type) with unknown sentinels passed through.

    AWS creates a load balancer internet-facing unless `internal` is true.
    """
    internal = as_bool(res.get("internal"))
    internet_facing = internal if is_unknown(internal) else internal is not True
    if res.type in CLASSIC_LB_TYPES:
        return internet_facing, "classic"
    lb_type = res.get("loadBalancerType")
    return internet_facing, lb_type if is_unknown(lb_type) else str(lb_type or "application")


def _check_load_balancer(res: Resource, config: dict) -> Iterator[Finding]:
    fix = ("set internal=True and reach the service through API Gateway (VPC link) or an "
           "internet-facing ALB whose listeners authenticate (authenticate-oidc/-cognito)")
    internet_facing, lb_type = lb_exposure(res)
    if is_unknown(internet_facing):
        yield unknown("internal", fix)
        return
    if not internet_facing:
        return
    if is_unknown(lb_type):
        yield unknown("loadBalancerType", fix, why="an internet-facing ALB can authenticate but an "
                      "NLB or GWLB cannot, and the type is unknown during preview, so the guardrail "
                      "fails closed")
        return
    if lb_type == "application":
        return  # its listeners decide: judged by internet-reachability
    what = "a classic ELB" if lb_type == "classic" else f"a {lb_type} load balancer"
    yield violation("internal", res.get("internal"),
                    f"{what} is then internet-facing (the AWS default) and cannot authenticate "
                    "requests, so every listener is open to the internet", fix,
                    rendered=f"{show(res.get('internal'))} (internet-facing)")


LOAD_BALANCER_NOT_PUBLIC = resource_policy(
    name="load-balancer-not-internet-facing",
    family=FAMILY_EXPOSURE,
    description="Network, gateway and classic load balancers are internal (they cannot "
                "authenticate); internet-facing ALBs must authenticate on every listener.",
    resource_types=LB_V2_TYPES + CLASSIC_LB_TYPES,
    check=_check_load_balancer,
    remediation="Set internal=True; expose models only through the authenticated API gateway.",
)


# ---- security groups --------------------------------------------------------------------

def is_tcp_443_only(protocol: Any, from_port: Any, to_port: Any) -> Optional[bool] | str:
    for value in (protocol, from_port, to_port):
        if is_unknown(value):
            return value
    return (str(protocol).lower() in ("tcp", "6") and as_number(from_port) == 443.0
            and as_number(to_port) == 443.0)


def describe_ports(protocol: Any, from_port: Any, to_port: Any) -> str:
    proto = str(protocol).lower() if protocol is not None else "all"
    if proto in ("-1", "all"):
        return "every port and protocol"
    low, high = as_number(from_port), as_number(to_port)
    if isinstance(low, float) and isinstance(high, float):
        if low == high:
            return f"port {int(low)}/{proto}"
        return f"ports {int(low)}-{int(high)}/{proto}"
    return f"{proto} ports"


def internet_ingress(cidrs: Any, path: str, allowed: list[str]) -> Iterator[tuple[str, Any, bool]]:
    """(path, cidr, is_unknown) for every CIDR that may let the internet in."""
    if is_unknown(cidrs):
        yield path, cidrs, True
        return
    if isinstance(cidrs, str):  # the single-CIDR forms (cidrIpv4 / cidrIpv6)
        if admits_internet(cidrs, allowed):
            yield path, cidrs, False
        return
    for index, cidr in enumerate(as_list(cidrs)):
        if is_unknown(cidr):
            yield f"{path}[{index}]", cidr, True
        elif admits_internet(cidr, allowed):
            yield f"{path}[{index}]", cidr, False


def sg_rule_shapes(res: Resource) -> Iterator[dict]:
    """Every ingress rule a resource declares, normalised:
    {path, cidr_paths: [(path, cidrs)], protocol, from_port, to_port, direction}."""
    if res.type in SG_TYPES:
        ingress = res.get("ingress")
        if is_unknown(ingress):
            yield {"path": "ingress", "unknown": True}
            return
        for index, rule in enumerate(as_list(ingress)):
            if is_unknown(rule):
                yield {"path": f"ingress[{index}]", "unknown": True}
                continue
            rule = as_dict(rule)
            yield {"path": f"ingress[{index}]", "direction": "ingress",
                   "cidr_paths": [(f"ingress[{index}].cidrBlocks", rule.get("cidrBlocks")),
                                  (f"ingress[{index}].ipv6CidrBlocks", rule.get("ipv6CidrBlocks"))],
                   "protocol": rule.get("protocol"), "from_port": rule.get("fromPort"),
                   "to_port": rule.get("toPort")}
    elif res.type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        yield {"path": "", "direction": res.get("type"),
               "cidr_paths": [("cidrBlocks", res.get("cidrBlocks")),
                              ("ipv6CidrBlocks", res.get("ipv6CidrBlocks"))],
               "protocol": res.get("protocol"), "from_port": res.get("fromPort"),
               "to_port": res.get("toPort")}
    elif res.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        cidr_paths = [(key, res.props[key]) for key in ("cidrIpv4", "cidrIpv6")
                      if res.props.get(key) is not None]
        yield {"path": "", "direction": "ingress", "cidr_paths": cidr_paths,
               "protocol": res.get("ipProtocol"), "from_port": res.get("fromPort"),
               "to_port": res.get("toPort")}


def world_443_candidates(res: Resource, allowed: list[str]) -> list[str]:
    """Paths of internet CIDRs on tcp/443 only: allowed only for an authenticating ALB."""
    paths = []
    for shape in sg_rule_shapes(res):
        if shape.get("unknown") or shape["direction"] != "ingress":
            continue
        if is_tcp_443_only(shape["protocol"], shape["from_port"], shape["to_port"]) is not True:
            continue
        for cidr_path, cidrs in shape["cidr_paths"]:
            for path, _cidr, was_unknown in internet_ingress(cidrs, cidr_path, allowed):
                if not was_unknown:
                    paths.append(path)
    return paths


def _check_security_group(res: Resource, config: dict) -> Iterator[Finding]:
    allowed = list(config.get("allowedIngressCidrs") or [])
    fix = ("allow only the VPC or peer CIDRs or a source security group (the load balancer's); "
           "list trusted public egress ranges in this policy's allowedIngressCidrs")
    if res.type == "aws:eks/nodeGroup:NodeGroup":
        yield from _check_node_group_remote_access(res)
        return
    for shape in sg_rule_shapes(res):
        if shape.get("unknown"):
            yield unknown(shape["path"], fix)
            continue
        direction = shape["direction"]
        if direction is not None and not is_unknown(direction) and str(direction).lower() != "ingress":
            continue
        tcp_443 = is_tcp_443_only(shape["protocol"], shape["from_port"], shape["to_port"])
        ports = describe_ports(shape["protocol"], shape["from_port"], shape["to_port"])
        for cidr_path, cidrs in shape["cidr_paths"]:
            for path, cidr, was_unknown in internet_ingress(cidrs, cidr_path, allowed):
                if was_unknown:
                    yield unknown(path, fix)
                elif is_unknown(direction):
                    yield unknown("type", fix, why=f"it decides whether {show(cidr)} may reach "
                                  "the group, and it is unknown during preview, so the guardrail fails closed")
                elif tcp_443 is True:
                    continue  # the ALB exception: judged by internet-reachability
                elif is_unknown(tcp_443):
                    yield unknown(f"{shape['path'] + '.' if shape['path'] else ''}fromPort/toPort/protocol",
                                  fix, why=f"{show(cidr)} is allowed only on 443 to an authenticating "
                                  "ALB, and the ports are unknown during preview, so the guardrail fails closed")
                else:
                    yield violation(path, cidr, f"it lets any internet address reach {ports}", fix)


def _check_node_group_remote_access(res: Resource) -> Iterator[Finding]:
    remote = res.get("remoteAccess")
    fix = ("drop remote_access (use SSM Session Manager), or set source_security_group_ids to a "
           "bastion's group")
    if remote is None:
        return
    if is_unknown(remote):
        yield unknown("remoteAccess", fix)
        return
    remote = as_dict(remote)
    if not remote.get("ec2SshKey"):
        return
    sources = remote.get("sourceSecurityGroupIds")
    if is_unknown(sources):
        yield unknown("remoteAccess.sourceSecurityGroupIds", fix)
    elif not sources:
        yield violation("remoteAccess.sourceSecurityGroupIds", sources,
                        "with an SSH key and no source groups, EKS opens port 22 on every node "
                        "to 0.0.0.0/0", fix)


SECURITY_GROUP_NO_INTERNET_INGRESS = resource_policy(
    name="security-group-no-internet-ingress",
    family=FAMILY_EXPOSURE,
    description="Security groups admit no internet addresses (0.0.0.0/0, ::/0 or any public "
                "range not allow-listed); the only exception is 443 to an internet-facing ALB "
                "that authenticates.",
    resource_types=SG_TYPES + SG_RULE_TYPES + ("aws:eks/nodeGroup:NodeGroup",),
    check=_check_security_group,
    config_schema={"allowedIngressCidrs": CIDR_ALLOW_LIST_SCHEMA},
    remediation="Allow ingress from the VPC CIDR or from the load balancer's security group; "
                "never from 0.0.0.0/0 or ::/0.",
)


# ---- public IPs on compute --------------------------------------------------------------

def _check_public_ip(res: Resource, config: dict) -> Iterator[Finding]:
    fix = ("launch into private subnets without a public IP; reach instances through the "
           "internal load balancer and administer them with SSM Session Manager")
    if res.type == "aws:ec2/launchConfiguration:LaunchConfiguration":
        value = as_bool(res.get("associatePublicIpAddress"))
        if is_unknown(value):
            yield unknown("associatePublicIpAddress", fix)
        elif value is True:
            yield violation("associatePublicIpAddress", True,
                            "every instance the Auto Scaling group launches from it gets an "
                            "internet-routable address", fix)
    elif res.type in ("aws:ec2/instance:Instance", "aws:ec2/spotInstanceRequest:SpotInstanceRequest"):
        value = as_bool(res.get("associatePublicIpAddress"))
        if is_unknown(value):
            yield unknown("associatePublicIpAddress", fix)
        elif value is True:
            yield violation("associatePublicIpAddress", True,
                            "the instance gets an internet-routable address", fix)
        elif value is None and res.get("subnetId") is None and not res.get("networkInterfaces") \
                and res.get("launchTemplate") is None:
            # No subnet: EC2 uses the default VPC, whose default subnets map public IPs.
            yield violation("subnetId", None,
                            "the instance launches into the default VPC, whose default subnets give "
                            "every instance an internet-routable address",
                            "set subnet_id to a private subnet and associate_public_ip_address=False")
    elif res.type == "aws:ecs/service:Service":
        value = as_bool(res.get("networkConfiguration", "assignPublicIp"))
        if is_unknown(value):
            yield unknown("networkConfiguration.assignPublicIp", fix)
        elif value is True:
            yield violation("networkConfiguration.assignPublicIp", True,
                            "every task gets an internet-routable address", fix)
    elif res.type == "aws:ec2/launchTemplate:LaunchTemplate":
        interfaces = res.get("networkInterfaces")
        if is_unknown(interfaces):
            yield unknown("networkInterfaces", fix)
            return
        for index, interface in enumerate(as_list(interfaces)):
            path = f"networkInterfaces[{index}]"
            if is_unknown(interface):
                yield unknown(path, fix)
                continue
            # A string in pulumi-aws ("true"/"false"), a boolean elsewhere: as_bool reads both.
            value = as_bool(as_dict(interface).get("associatePublicIpAddress"))
            if is_unknown(value):
                yield unknown(f"{path}.associatePublicIpAddress", fix)
            elif value is True:
                yield violation(f"{path}.associatePublicIpAddress",
                                as_dict(interface).get("associatePublicIpAddress"),
                                "every instance launched from the template gets an internet-routable "
                                "address", fix)
    elif res.type == "aws:ec2/subnet:Subnet":
        value = as_bool(res.get("mapPublicIpOnLaunch"))
        if is_unknown(value):
            yield unknown("mapPublicIpOnLaunch", fix)
        elif value is True:
            yield violation("mapPublicIpOnLaunch", True,
                            "every instance launched into the subnet without an explicit setting "
                            "gets an internet-routable address",
                            "set map_public_ip_on_launch=False (NAT gateways and internet-facing "
                            "load balancers get their public addresses without it)")
    elif res.type == "aws:ec2/eip:Eip":
        for key in ("instance", "networkInterface"):
            if res.get(key) is not None:
                yield violation(key, res.get(key),
                                f"the Elastic IP is attached to {'an instance' if key == 'instance' else 'a network interface'}, "
                                "giving it an internet-routable address", fix,
                                rendered="set" if not is_unknown(res.get(key)) else "set (unknown during preview)")
    elif res.type == "aws:ec2/eipAssociation:EipAssociation":
        for key in ("instanceId", "networkInterfaceId"):
            if res.get(key) is not None:
                yield violation(key, res.get(key),
                                "the association gives an instance or network interface an "
                                "internet-routable Elastic IP", fix,
                                rendered="set" if not is_unknown(res.get(key)) else "set (unknown during preview)")


COMPUTE_NO_PUBLIC_IP = resource_policy(
    name="compute-no-public-ip",
    family=FAMILY_EXPOSURE,
    description="Instances, launch templates and configurations, subnets and ECS services assign "
                "no public IPs (nor launch into the default VPC), and no Elastic IP is attached to "
                "an instance or network interface.",
    resource_types=("aws:ec2/instance:Instance", "aws:ec2/spotInstanceRequest:SpotInstanceRequest",
                    "aws:ec2/launchTemplate:LaunchTemplate",
                    "aws:ec2/launchConfiguration:LaunchConfiguration", "aws:ec2/eip:Eip",
                    "aws:ec2/eipAssociation:EipAssociation", "aws:ec2/subnet:Subnet",
                    "aws:ecs/service:Service"),
    check=_check_public_ip,
    remediation="Run compute in private subnets without public IPs; use NAT for egress and SSM for access.",
)


# ---- EKS control plane ------------------------------------------------------------------

def _check_eks_endpoint(res: Resource, config: dict) -> Iterator[Finding]:
    allowed = list(config.get("allowedPublicAccessCidrs") or [])
    fix = ("set vpc_config.endpoint_public_access=False (run deployments from inside the VPC), "
           "or restrict public_access_cidrs to CI egress ranges listed in this policy's "
           "allowedPublicAccessCidrs")
    vpc = res.get("vpcConfig")
    if is_unknown(vpc):
        yield unknown("vpcConfig", fix)
        return
    vpc = as_dict(vpc)
    public = as_bool(vpc.get("endpointPublicAccess"))
    if is_unknown(public):
        yield unknown("vpcConfig.endpointPublicAccess", fix)
        return
    if public is False:
        return  # AWS defaults the public endpoint to on: only an explicit false closes it
    cidrs = vpc.get("publicAccessCidrs")
    if is_unknown(cidrs):
        yield unknown("vpcConfig.publicAccessCidrs", fix)
        return
    if not cidrs:
        yield violation("vpcConfig.publicAccessCidrs", cidrs,
                        "with the public endpoint on (the AWS default), AWS opens the cluster API "
                        "to 0.0.0.0/0", fix)
        return
    for index, cidr in enumerate(cidrs):
        path = f"vpcConfig.publicAccessCidrs[{index}]"
        if is_unknown(cidr):
            yield unknown(path, fix)
        elif admits_internet(cidr, allowed):
            yield violation(path, cidr, "the cluster API is reachable from internet addresses "
                            "that are not allow-listed", fix)


EKS_ENDPOINT_PRIVATE = resource_policy(
    name="eks-endpoint-private",
    family=FAMILY_EXPOSURE,
    description="The EKS API endpoint is private, or public only to allow-listed CIDRs.",
    resource_types=("aws:eks/cluster:Cluster",),
    check=_check_eks_endpoint,
    config_schema={"allowedPublicAccessCidrs": {
        **CIDR_ALLOW_LIST_SCHEMA,
        "description": "Public CIDRs (CI egress) that may reach a public EKS API endpoint.",
    }},
    remediation="Disable the public endpoint or restrict public_access_cidrs to CI egress addresses.",
)


POLICIES = [
    METHOD_AUTH,
    HTTP_API_ROUTE_AUTH,
    FUNCTION_URL_AUTH,
    LOAD_BALANCER_NOT_PUBLIC,
    SECURITY_GROUP_NO_INTERNET_INGRESS,
    COMPUTE_NO_PUBLIC_IP,
    EKS_ENDPOINT_PRIVATE,
]
