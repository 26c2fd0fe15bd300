"""Family 1, whole stack: every internet entry point resolves to an authenticated front.

Some exposure questions cannot be answered from one resource: is this listener's load
balancer internet-facing? is this 0.0.0.0/0:443 rule on an ALB that authenticates? is
this unauthenticated OPTIONS method a CORS preflight? is this keyed stage in a usage
plan? During a first preview the ids that tie resources together are unknown, so the
relations are taken from property dependencies (which resource each input was computed
from), and from literal values when they are known. When a relation cannot be
established the rule fails closed and says so.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from ._framework import FAMILY_EXPOSURE, Finding, Stack, StackResource, stack_policy, unknown, violation
from ._wire import as_bool, as_dict, as_list, as_number, is_unknown, show
from .public_endpoints import (
    CIDR_ALLOW_LIST_SCHEMA,
    LB_V2_TYPES,
    LISTENER_RULE_TYPES,
    LISTENER_TYPES,
    SG_RULE_TYPES,
    SG_TYPES,
    lb_exposure,
    route_is_authenticated,
    route_is_deferred,
    world_443_candidates,
)

METHOD = "aws:apigateway/method:Method"
INTEGRATION = "aws:apigateway/integration:Integration"
REST_STAGE = "aws:apigateway/stage:Stage"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
V2_API = "aws:apigatewayv2/api:Api"
V2_ROUTE = "aws:apigatewayv2/route:Route"
_EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"

_AUTH_ACTIONS = ("authenticate-oidc", "authenticate-cognito")
_AUTH_SETTINGS = {"authenticate-oidc": "authenticateOidc", "authenticate-cognito": "authenticateCognito"}
_TERMINAL_ACTIONS = ("redirect", "fixed-response")


def identities(res: StackResource, prop: str) -> set:
    """What an input points at: the resources it was computed from, and its literal value
    when known. Two inputs point at the same thing when their identities intersect."""
    found: set = set(res.property_dependencies.get(prop, []))
    value = res.props.get(prop)
    if isinstance(value, str) and not is_unknown(value):
        found.add(("literal", value))
    return found


def actions_authenticate(actions: Any) -> Optional[bool] | str:
    """Whether an ALB action list authenticates before it forwards anywhere.

    Actions run in `order` (defaulting to list position); a redirect or fixed response
    ends the chain without reaching a target.
    """
    if is_unknown(actions):
        return actions
    ordered = []
    for index, action in enumerate(as_list(actions)):
        if is_unknown(action):
            return action
        order = as_number(as_dict(action).get("order"))
        ordered.append((order if isinstance(order, float) else float(index + 1), index, as_dict(action)))
    authenticated = False
    for _order, _index, action in sorted(ordered, key=lambda item: (item[0], item[1])):
        action_type = action.get("type")
        if is_unknown(action_type):
            return action_type
        action_type = str(action_type).lower()
        if action_type in _AUTH_ACTIONS:
            # "allow" forwards anonymous requests too (only logged-in users get claims), so
            # it authenticates nobody: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html
            settings = action.get(_AUTH_SETTINGS[action_type])
            mode = settings if is_unknown(settings) else as_dict(settings).get("onUnauthenticatedRequest")
            if is_unknown(mode):
                return mode
            authenticated = authenticated or str(mode or "authenticate").lower() != "allow"
        elif action_type in _TERMINAL_ACTIONS:
            return True
        elif not authenticated:
            return False
    return True


_LISTENER_FIX = ("put an authenticate-oidc or authenticate-cognito action before the forward "
                 "(lower order), or make the load balancer internal")


def _listener_lb(stack: Stack, listener: StackResource) -> Optional[StackResource]:
    lbs = stack.referenced(listener, "loadBalancerArn", *LB_V2_TYPES)
    return lbs[0] if lbs else None


def _judge_actions(stack: Stack, owner: StackResource, actions_path: str,
                   listener: Optional[StackResource]) -> Iterator[tuple[str, Finding]]:
    result = actions_authenticate(owner.props.get(actions_path))
    if result is True:
        return
    lb = _listener_lb(stack, listener) if listener is not None else None
    if lb is None:
        what = "listener" if listener is None else "load balancer"
        yield owner.urn, violation(
            actions_path, None,
            f"they reach a target without authenticating, and the {what} they belong to cannot be "
            "established from this program (not declared here, or referenced by a literal), so an "
            "internet-facing load balancer cannot be ruled out", _LISTENER_FIX,
            rendered="forwarding without authentication")
        return
    exposed, lb_type = lb_exposure(lb)
    # Unknown or non-ALB exposure is reported on the load balancer itself by
    # load-balancer-not-internet-facing; an internal LB is not an internet entry point.
    if exposed is not True or lb_type != "application":
        return
    if is_unknown(result):
        yield owner.urn, unknown(actions_path, _LISTENER_FIX)
    else:
        yield owner.urn, violation(
            actions_path, None,
            f"the ALB {lb.name} is internet-facing, so whatever this forwards to is public", _LISTENER_FIX,
            rendered="a forward with no authenticate-oidc/authenticate-cognito before it")


def _alb_entry_points(stack: Stack) -> Iterator[tuple[str, Finding]]:
    for listener in stack.of_type(*LISTENER_TYPES):
        yield from _judge_actions(stack, listener, "defaultActions", listener)
    for rule in stack.of_type(*LISTENER_RULE_TYPES):
        listeners = stack.referenced(rule, "listenerArn", *LISTENER_TYPES)
        yield from _judge_actions(stack, rule, "actions", listeners[0] if listeners else None)


def authenticating_alb(stack: Stack, lb: StackResource) -> bool:
    exposed, lb_type = lb_exposure(lb)
    if is_unknown(exposed) or lb_type != "application":
        return False
    listeners = stack.referencing(lb, "loadBalancerArn", *LISTENER_TYPES)
    for listener in listeners:
        if actions_authenticate(listener.props.get("defaultActions")) is not True:
            return False
        for rule in stack.referencing(listener, "listenerArn", *LISTENER_RULE_TYPES):
            if actions_authenticate(rule.props.get("actions")) is not True:
                return False
    # Without a listener here, one added elsewhere (by ARN) could forward unauthenticated.
    return bool(listeners)


def _internet_443_only_on_authenticating_albs(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    allowed = list(config.get("allowedIngressCidrs") or [])
    fix = ("attach the group only to an ALB whose listeners authenticate, or restrict the source "
           "to the VPC CIDR or the API gateway's VPC link")
    for res in stack.of_type(*SG_TYPES, *SG_RULE_TYPES):
        paths = world_443_candidates(res, allowed)
        if not paths:
            continue
        if res.type in SG_TYPES:
            group: Optional[StackResource] = res
        else:
            groups = stack.referenced(res, "securityGroupId", *SG_TYPES)
            group = groups[0] if groups else None
        if group is None:
            for path in paths:
                yield res.urn, violation(path, _cidr_at(res, path),
                                         "internet ingress on 443 is allowed only to an ALB that "
                                         "authenticates, and the security group this rule belongs to "
                                         "cannot be established from this program", fix)
            continue
        attached = [r for r in stack.referencing(group)
                    if r.type not in SG_TYPES + SG_RULE_TYPES + (_EGRESS_RULE,)]
        offenders = [r for r in attached
                     if r.type not in LB_V2_TYPES or not authenticating_alb(stack, r)]
        if attached and not offenders:
            continue
        if offenders:
            why = (f"internet ingress on 443 is allowed only to an ALB that authenticates, and the "
                   f"group is attached to {offenders[0].type} {offenders[0].name}, which is not an "
                   "internet-facing ALB with listeners here that all authenticate")
        else:
            why = ("internet ingress on 443 is allowed only to an ALB that authenticates, and "
                   "nothing in this program that the group is attached to can be established")
        for path in paths:
            yield res.urn, violation(path, _cidr_at(res, path), why, fix)


def _cidr_at(res: StackResource, path: str) -> Any:
    # path looks like "ingress[0].cidrBlocks[1]", "cidrBlocks[0]" or "cidrIpv4".
    node: Any = res.props
    for part in path.replace("]", "").split("."):
        key, _, index = part.partition("[")
        node = node.get(key) if isinstance(node, dict) else None
        if index:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
    return node


def _cors_preflights(stack: Stack) -> Iterator[tuple[str, Finding]]:
    integrations = stack.of_type(INTEGRATION)
    fix = "answer the preflight with a MOCK integration, or require authorization on the method"
    for method in stack.of_type(METHOD):
        props = method.props
        verb, auth = props.get("httpMethod"), props.get("authorization")
        if not isinstance(verb, str) or is_unknown(verb) or verb.upper() != "OPTIONS":
            continue
        if is_unknown(auth) or (auth is not None and str(auth).upper() != "NONE"):
            continue  # unknown authorization is reported by apigateway-method-auth
        key_required = as_bool(props.get("apiKeyRequired"))
        if key_required is True or is_unknown(key_required):
            continue
        mine = [i for i in integrations
                if i.depends_on(method.urn)
                or (identities(i, "restApi") & identities(method, "restApi")
                    and identities(i, "resourceId") & identities(method, "resourceId")
                    and str(i.props.get("httpMethod", "")).upper() == "OPTIONS")]
        if not mine:
            yield method.urn, violation(
                "authorization", auth or "NONE",
                "an unauthenticated OPTIONS method is exempt only as a CORS preflight answered by a "
                "MOCK integration, and no integration for it can be established", fix)
            continue
        for integration in mine:
            kind = integration.props.get("type")
            if is_unknown(kind):
                yield method.urn, unknown(f"integration {integration.name} type", fix)
            elif str(kind).upper() != "MOCK":
                yield method.urn, violation(
                    "authorization", auth or "NONE",
                    f"the OPTIONS method is unauthenticated and its integration {integration.name} is "
                    f"{show(kind)}, so it reaches a backend instead of answering a CORS preflight", fix)


def _deferred_v2_routes(stack: Stack) -> Iterator[tuple[str, Finding]]:
    routes = stack.of_type(V2_ROUTE)
    for route in routes:
        key = route.props.get("routeKey")
        if not isinstance(key, str) or is_unknown(key) or not route_is_deferred(key):
            continue
        authenticated = route_is_authenticated(route)
        if authenticated is True:
            continue
        fix = "set authorization_type JWT, AWS_IAM or CUSTOM on the route (HTTP) or on $connect (WebSocket)"
        apis = stack.referenced(route, "apiId", V2_API)
        if not apis:
            yield route.urn, violation(
                "apiId", None,
                f"route {show(key)} has no authorizer, and its API cannot be established from this "
                "program, so whether it is an HTTP route (which needs one) or a WebSocket route "
                "(which inherits $connect's) cannot be decided", fix, rendered="not resolvable")
            continue
        protocol = apis[0].props.get("protocolType")
        if is_unknown(protocol):
            yield route.urn, unknown(f"api {apis[0].name} protocolType", fix)
        elif str(protocol).upper() == "WEBSOCKET":
            connects = [r for r in routes if r.props.get("routeKey") == "$connect"
                        and r.depends_on(apis[0].urn, "apiId")]
            if not any(route_is_authenticated(c) is True for c in connects):
                yield route.urn, violation(
                    "routeKey", key,
                    "a WebSocket route inherits the connection's authentication, and the API has no "
                    "authenticated $connect route", fix)
        elif key == "$default":
            if is_unknown(authenticated):
                yield route.urn, unknown("authorizationType", fix)
            else:
                yield route.urn, violation(
                    "authorizationType", route.props.get("authorizationType"),
                    "the $default route of an HTTP API catches every request, and it requires no "
                    "authorizer", fix)


def _keyed_stages_metered(stack: Stack) -> Iterator[tuple[str, Finding]]:
    methods = stack.of_type(METHOD)
    plans = stack.of_type(USAGE_PLAN)
    for stage in stack.of_type(REST_STAGE):
        api = identities(stage, "restApi")
        keyed = [m for m in methods if identities(m, "restApi") & api
                 and (as_bool(m.props.get("apiKeyRequired")) is True
                      or is_unknown(m.props.get("apiKeyRequired")))]
        if not keyed or any(_plan_covers(plan, stage, api) for plan in plans):
            continue
        yield stage.urn, violation(
            "usage plans referencing this stage", None,
            f"{len(keyed)} method(s) on the API require an API key (for example {keyed[0].name}), "
            "but keys only work through a usage plan for the stage and that plan is what throttles "
            "and caps each client; no usage plan's apiStages can be established to reference it",
            "add the stage to a usage plan: api_stages=[{api_id: rest_api.id, stage: stage.stage_name}] "
            "(reference the stage's output, not a literal name)", rendered="none")


def _plan_covers(plan: StackResource, stage: StackResource, api: set) -> bool:
    entries = plan.props.get("apiStages")
    if is_unknown(entries):
        return False
    deps = set(plan.property_dependencies.get("apiStages", []))
    stage_name = stage.props.get("stageName")
    for entry in as_list(entries):
        entry = as_dict(entry)
        api_id, name = entry.get("apiId"), entry.get("stage")
        api_ok = (("literal", api_id) in api) if isinstance(api_id, str) and not is_unknown(api_id) \
            else bool(deps & {u for u in api if isinstance(u, str)})
        if isinstance(name, str) and not is_unknown(name):
            stage_ok = isinstance(stage_name, str) and not is_unknown(stage_name) and name == stage_name
        else:
            stage_ok = stage.urn in deps
        if api_ok and stage_ok:
            return True
    return False


def _check(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    yield from _keyed_stages_metered(stack)
    yield from _alb_entry_points(stack)
    yield from _internet_443_only_on_authenticating_albs(stack, config)
    yield from _cors_preflights(stack)
    yield from _deferred_v2_routes(stack)


INTERNET_REACHABILITY = stack_policy(
    name="internet-reachability",
    family=FAMILY_EXPOSURE,
    description="Across the stack: keyed API stages are metered by a usage plan, internet-facing "
                "ALB listeners and rules authenticate before forwarding, internet 443 ingress only "
                "reaches authenticating ALBs, unauthenticated OPTIONS are MOCK preflights, and "
                "HTTP $default / WebSocket routes sit behind an authorizer.",
    resource_types=(REST_STAGE, USAGE_PLAN, METHOD, INTEGRATION) + LISTENER_TYPES
    + LISTENER_RULE_TYPES + LB_V2_TYPES + SG_TYPES + SG_RULE_TYPES + (V2_ROUTE, V2_API),
    check=_check,
    config_schema={"allowedIngressCidrs": {
        **CIDR_ALLOW_LIST_SCHEMA,
        "description": "Keep equal to security-group-no-internet-ingress.allowedIngressCidrs: "
                       "allow-listed public ranges are not treated as internet ingress on 443.",
    }},
    remediation="Reference resources through their outputs (so relations are visible at preview), "
                "meter keyed stages with usage plans, and authenticate every internet entry point.",
)

POLICIES = [INTERNET_REACHABILITY]
