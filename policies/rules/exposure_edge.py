"""Family 1, whole stack: CDNs and accelerators put whatever stands behind them on the internet.

A CloudFront distribution is public: an internal load balancer reached through a VPC
origin, or an S3/Lambda origin that only CloudFront may read (OAC/OAI), is exactly as
public as the distribution in front of it. A cache behavior is authenticated only when
CloudFront itself refuses anonymous viewers (trusted key groups or signers: signed URLs or
cookies, https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-overview.html),
when a viewer-request function a security team reviewed stands in front (its code cannot
be judged here), or when its origin authenticates every caller itself (an API Gateway API,
judged by its own rules, or an ALB whose listeners all authenticate) and the origin does
not receive credentials injected by CloudFront (custom headers such as x-api-key).

A Global Accelerator listener has public static addresses and no authentication: every
endpoint in its endpoint groups (internal load balancers and instances included,
https://docs.aws.amazon.com/global-accelerator/latest/dg/about-endpoints.html) is on the
internet, unless the endpoint is an ALB whose listeners all authenticate.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

from ._framework import FAMILY_EXPOSURE, Finding, Stack, StackResource, stack_policy, unknown, violation
from ._wire import as_bool, as_dict, as_list, is_unknown
from .public_endpoints import LB_V2_TYPES
from .reachability import authenticating_alb

DISTRIBUTIONS = ("aws:cloudfront/distribution:Distribution",
                 "aws:cloudfront/multitenantDistribution:MultitenantDistribution")
ENDPOINT_GROUP = "aws:globalaccelerator/endpointGroup:EndpointGroup"
CUSTOM_ENDPOINT_GROUP = "aws:globalaccelerator/customRoutingEndpointGroup:CustomRoutingEndpointGroup"
ACCELERATORS = ("aws:globalaccelerator/accelerator:Accelerator",
                "aws:globalaccelerator/customRoutingAccelerator:CustomRoutingAccelerator")
API_FRONTS = ("aws:apigateway/restApi:RestApi", "aws:apigateway/stage:Stage", "aws:apigateway/domainName:DomainName",
              "aws:apigatewayv2/api:Api", "aws:apigatewayv2/stage:Stage", "aws:apigatewayv2/domainName:DomainName")
_CREDENTIAL_HEADERS = ("x-api-key", "authorization", "proxy-authorization", "cookie")

_CDN_FIX = ("require signed URLs or cookies on every cache behavior (trusted_key_groups), or point the "
            "behavior at an origin that authenticates every caller itself (the API Gateway API, an ALB "
            "with authenticate-oidc/-cognito); list a reviewed viewer-request auth function in this "
            "policy's reviewedViewerRequestFunctions")
_GA_FIX = ("drop the accelerator, or make every endpoint an ALB whose listeners authenticate "
           "(authenticate-oidc/-cognito before forwarding)")


def _non_empty(value: Any) -> Any:
    """Whether trusted key groups/signers are set: a list, or an {enabled, items} object."""
    if is_unknown(value):
        return value
    if isinstance(value, dict):
        return as_bool(value.get("enabled")) is not False and bool(as_list(value.get("items")))
    return bool(as_list(value))


def _reviewed_function(behavior: dict, reviewed: set[str]) -> bool:
    for key, arn_key in (("functionAssociations", "functionArn"), ("lambdaFunctionAssociations", "lambdaArn")):
        for association in as_list(behavior.get(key)):
            association = as_dict(association)
            arn = association.get(arn_key)
            if str(association.get("eventType", "")).lower() != "viewer-request" or not isinstance(arn, str) \
                    or is_unknown(arn):
                continue
            # A Lambda@Edge ARN carries a version; the review covers the function.
            base = arn.rsplit(":", 1)[0] if arn_key == "lambdaArn" and arn.count(":") == 7 else arn
            if arn in reviewed or base in reviewed:
                return True
    return False


def _origin_authenticates(stack: Stack, dist: StackResource, origin: Optional[dict]) -> bool:
    if origin is None:
        return False
    for header in as_list(origin.get("customHeaders") or origin.get("customHeader")):
        if str(as_dict(header).get("name", "")).lower() in _CREDENTIAL_HEADERS:
            return False  # CloudFront signs every request in, for everyone
    domain = origin.get("domainName")
    if isinstance(domain, str) and not is_unknown(domain):
        return ".execute-api." in domain and domain.endswith(".amazonaws.com")
    # Computed from another resource: authenticating only if everything the origins were computed
    # from (access identities aside) is an API or an authenticating ALB.
    sources = [r for r in stack.referenced(dist, "origins")
               if not r.type.startswith(("aws:cloudfront/originAccessControl:", "aws:cloudfront/originAccessIdentity:"))]
    return bool(sources) and all(r.type in API_FRONTS or (r.type in LB_V2_TYPES and authenticating_alb(stack, r))
                                 for r in sources)


def _distribution(stack: Stack, dist: StackResource, reviewed: set[str]) -> Iterator[tuple[str, Finding]]:
    props = dist.props
    enabled = as_bool(props.get("enabled"))
    if enabled is False:
        return
    origins_value = props.get("origins")
    if is_unknown(origins_value):
        yield dist.urn, unknown("origins", _CDN_FIX)
        return
    origins = {}
    for origin in as_list(origins_value):
        origin = as_dict(origin)
        origins[origin.get("originId", origin.get("id"))] = origin
    behaviors = [("defaultCacheBehavior", props.get("defaultCacheBehavior"))]
    for key in ("orderedCacheBehaviors", "cacheBehaviors"):
        value = props.get(key)
        if is_unknown(value):
            yield dist.urn, unknown(key, _CDN_FIX)
            return
        behaviors += [(f"{key}[{i}]", b) for i, b in enumerate(as_list(value))]
    active_groups = _non_empty(props.get("activeTrustedKeyGroups")) if "activeTrustedKeyGroups" in props else False
    for path, behavior in behaviors:
        if is_unknown(behavior):
            yield dist.urn, unknown(path, _CDN_FIX)
            continue
        behavior = as_dict(behavior)
        signed = [_non_empty(behavior.get(k)) for k in ("trustedKeyGroups", "trustedSigners")]
        if any(s is True for s in signed) or active_groups is True:
            continue
        if any(is_unknown(s) for s in signed):
            yield dist.urn, unknown(f"{path}.trustedKeyGroups", _CDN_FIX)
            continue
        if _reviewed_function(behavior, reviewed):
            continue
        origin_id = behavior.get("targetOriginId")
        origin = origins.get(origin_id) if not is_unknown(origin_id) else None
        if _origin_authenticates(stack, dist, origin):
            continue
        what = f"origin {json.dumps(str(origin_id))}" if origin is not None else "its origin"
        yield dist.urn, violation(
            f"{path}.trustedKeyGroups", behavior.get("trustedKeyGroups"),
            f"the behavior serves {what} to anyone on the internet without signed URLs or cookies, and "
            "nothing establishes that the origin authenticates every caller itself; an internal load "
            "balancer, VPC origin or OAC-only origin behind a public CDN is public through it", _CDN_FIX)


def _endpoint_group(stack: Stack, group: StackResource) -> Iterator[tuple[str, Finding]]:
    if group.type == CUSTOM_ENDPOINT_GROUP:
        if group.props.get("endpointConfigurations") or group.props.get("destinationConfigurations"):
            yield group.urn, violation(
                "destinationConfigurations", None,
                "a custom routing accelerator maps its public addresses and ports straight to instances "
                "in the subnets, with no authentication in front", _GA_FIX, rendered="set")
        return
    configs = group.props.get("endpointConfigurations")
    if is_unknown(configs):
        yield group.urn, unknown("endpointConfigurations", _GA_FIX)
        return
    if not as_list(configs):
        return
    endpoints = stack.referenced(group, "endpointConfigurations")
    literal = [as_dict(c).get("endpointId") for c in as_list(configs)]
    albs = [r for r in endpoints if r.type in LB_V2_TYPES]
    others = [r for r in endpoints if r.type not in LB_V2_TYPES]
    if albs and not others and len(albs) >= len(literal) and all(authenticating_alb(stack, lb) for lb in albs):
        return
    yield group.urn, violation(
        "endpointConfigurations", None,
        "the accelerator's public static addresses forward to these endpoints (internal ones included) "
        "and cannot authenticate, and no endpoint can be established as an ALB whose listeners all "
        "authenticate", _GA_FIX, rendered=f"{len(literal)} endpoint(s)")


def _check(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    reviewed = {str(a) for a in config.get("reviewedViewerRequestFunctions") or []}
    for dist in stack.of_type(*DISTRIBUTIONS):
        yield from _distribution(stack, dist, reviewed)
    for group in stack.of_type(ENDPOINT_GROUP, CUSTOM_ENDPOINT_GROUP):
        yield from _endpoint_group(stack, group)


EDGE_AUTHENTICATED = stack_policy(
    name="edge-authenticated",
    family=FAMILY_EXPOSURE,
    description="CloudFront distributions require signed URLs/cookies on every cache behavior unless the "
                "origin authenticates every caller itself (API Gateway, authenticating ALB); Global "
                "Accelerator endpoint groups only front ALBs whose listeners authenticate. An internal or "
                "IAM-only origin behind a CDN or accelerator is public through it.",
    resource_types=DISTRIBUTIONS + (ENDPOINT_GROUP, CUSTOM_ENDPOINT_GROUP) + ACCELERATORS,
    check=_check,
    config_schema={"reviewedViewerRequestFunctions": {
        "type": "array",
        "items": {"type": "string", "pattern": "^arn:aws[a-z-]*:(cloudfront|lambda):"},
        "default": [],
        "description": "ARNs (literal) of CloudFront Functions or Lambda@Edge functions a security team "
                       "reviewed as refusing anonymous viewers on viewer-request.",
    }},
    remediation="Use signed URLs/cookies, or put an authenticating origin (API Gateway, authenticating "
                "ALB) behind the CDN; never a Global Accelerator in front of an unauthenticated endpoint.",
)

POLICIES = [EDGE_AUTHENTICATED]
