"""Family 2, whole stack: protections that live on a different resource from the thing
they protect (a WAF association for a stage, a PDB for a Deployment, an attachment for an
auto scaling group). Relations come from property dependencies, as in reachability.py.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Optional

from ._framework import FAMILY_HYGIENE, Finding, Stack, StackResource, stack_policy, cannot_check, violation
from ._wire import as_dict, as_list, as_number, is_unknown
from .reachability import REST_STAGE, identities
from .workloads import kubernetes_servings, pod_specs

WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
ASG = "aws:autoscaling/group:Group"
ASG_ATTACHMENTS = ("aws:autoscaling/attachment:Attachment",
                   "aws:autoscaling/trafficSourceAttachment:TrafficSourceAttachment")
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
# Autoscalers and the spec field holding their ceiling (KEDA creates its HPA itself).
AUTOSCALERS = {
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": "maxReplicas",
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler": "maxReplicas",
    "kubernetes:keda.sh/v1alpha1:ScaledObject": "maxReplicaCount",
}
MODEL_WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet",
                   "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")

# AWS WAF inspects at most this much of a request body unless the web ACL's association
# config raises it; a body size constraint above it only works with oversizeHandling MATCH.
_WAF_BODY_INSPECTION_BYTES = 16 * 1024


# ---- API stages: WAF and stage-wide throttling ------------------------------------------

def _lower_first(value: Any) -> Any:
    """ruleJson uses the WAF API's PascalCase; the rules use the provider's camelCase."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]): _lower_first(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_first(v) for v in value]
    return value


def web_acl_rules(acl: StackResource) -> list[dict] | str:
    rules = acl.props.get("rules")
    if is_unknown(rules):
        return rules
    found = [as_dict(r) for r in as_list(rules)]
    rule_json = acl.props.get("ruleJson")
    if is_unknown(rule_json):
        return rule_json
    if isinstance(rule_json, str) and rule_json.strip():
        try:
            found.extend(as_dict(r) for r in as_list(_lower_first(json.loads(rule_json))))
        except ValueError:
            pass
    return found


def _blocks(rule: dict) -> bool:
    return "block" in as_dict(rule.get("action"))


def _size_statements(statement: dict) -> Iterator[dict]:
    if "sizeConstraintStatement" in statement:
        yield as_dict(statement["sizeConstraintStatement"])
    for nested in as_list(as_dict(statement.get("andStatement")).get("statements")):
        yield from _size_statements(as_dict(nested))


def size_cap(statement: dict) -> tuple[Optional[float], str]:
    """The request size a block-on-size statement enforces, or (None, why not)."""
    operator = str(statement.get("comparisonOperator", "")).upper()
    size = as_number(statement.get("size"))
    if operator not in ("GT", "GE") or not isinstance(size, float):
        return None, "it does not block requests larger than a size"
    field = as_dict(statement.get("fieldToMatch"))
    if "body" in field:
        oversize = str(as_dict(field.get("body")).get("oversizeHandling", "CONTINUE")).upper()
        if size >= _WAF_BODY_INSPECTION_BYTES and oversize != "MATCH":
            return None, (f"WAF inspects only the first {_WAF_BODY_INSPECTION_BYTES} body bytes, so a "
                          f"{int(size)}-byte limit with oversizeHandling {oversize} never matches")
        return size, ""
    header = str(as_dict(field.get("singleHeader")).get("name", "")).lower()
    if header == "content-length":
        # The statement measures the header's text: more than N digits means 10^N bytes or more.
        return 10.0 ** size, ""
    return None, "it does not measure the body or the Content-Length header"


def _judge_web_acl(stage: StackResource, acl: StackResource, max_bytes: int) -> Iterator[tuple[str, Finding]]:
    rules = web_acl_rules(acl)
    if is_unknown(rules):
        yield stage.urn, cannot_check(f"web ACL {acl.name} rules")
        return
    rate_rules = [r for r in rules if "rateBasedStatement" in as_dict(r.get("statement")) and _blocks(r)]
    if not rate_rules:
        yield stage.urn, violation(
            f"web ACL {acl.name} rules", None,
            "without a blocking rate-based rule one client IP can flood the stage, and usage-plan "
            "throttles are only best effort",
            "add a rule with rate_based_statement {limit, evaluation_window_sec} and action block",
            rendered="without a blocking rate-based rule")
    caps, reasons = [], []
    for rule in rules:
        if not _blocks(rule):
            continue
        for statement in _size_statements(as_dict(rule.get("statement"))):
            cap, reason = size_cap(statement)
            if cap is not None:
                caps.append(cap)
            else:
                reasons.append(reason)
    if not any(cap <= max_bytes for cap in caps):
        detail = f" ({reasons[0]})" if reasons else ""
        yield stage.urn, violation(
            f"web ACL {acl.name} rules", None,
            f"nothing blocks requests over {max_bytes} bytes{detail}; long prompts are an "
            "out-of-memory and denial-of-service vector",
            f"add a blocking size_constraint_statement on the body (comparison GT, size <= {max_bytes}, "
            "oversize_handling MATCH) or on the Content-Length header",
            rendered="without an effective request size limit")


def _stage_throttled(stack: Stack, stage: StackResource) -> bool | str:
    api = identities(stage, "restApi")
    stage_name = stage.props.get("stageName")
    for settings in stack.of_type(METHOD_SETTINGS):
        if not identities(settings, "restApi") & api:
            continue
        name = settings.props.get("stageName")
        same_stage = settings.depends_on(stage.urn, "stageName") or (
            isinstance(name, str) and not is_unknown(name) and name == stage_name)
        if not same_stage or settings.props.get("methodPath") != "*/*":
            continue
        values = as_dict(settings.props.get("settings"))
        limits = [as_number(values.get(k)) for k in ("throttlingRateLimit", "throttlingBurstLimit")]
        if any(is_unknown(v) for v in limits):
            return next(v for v in limits if is_unknown(v))
        if all(isinstance(v, float) and v > 0 for v in limits):
            return True
    return False


def _check_gateway(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    max_bytes = int(config.get("maxRequestBytes") or 0)
    associations = stack.of_type(WEB_ACL_ASSOCIATION)
    for stage in stack.of_type(REST_STAGE):
        mine = [a for a in associations if a.depends_on(stage.urn, "resourceArn")]
        if not mine:
            yield stage.urn, violation(
                "WAF web ACL association", None,
                "nothing limits requests per client IP or by size before they reach the gateway and "
                "the GPUs",
                "create wafv2.WebAclAssociation(resource_arn=stage.arn, web_acl_arn=acl.arn) with a "
                "rate-based rule and a size constraint", rendered="none")
        for association in mine:
            acls = stack.referenced(association, "webAclArn", WEB_ACL)
            if not acls:
                yield stage.urn, cannot_check(f"the web ACL of {association.name}",
                                              "cannot be established from this program")
            for acl in acls:
                yield from _judge_web_acl(stage, acl, max_bytes)
        throttled = _stage_throttled(stack, stage)
        if is_unknown(throttled):
            yield stage.urn, cannot_check("method settings */* throttling")
        elif not throttled:
            yield stage.urn, violation(
                "stage-wide throttling (method settings \"*/*\")", None,
                "usage plans meter keyed clients, but the stage itself needs a ceiling sized to the "
                "backend so the sum of all plans cannot exceed what the GPUs serve",
                "add apigateway.MethodSettings(method_path=\"*/*\", settings={throttling_rate_limit, "
                "throttling_burst_limit}) for the stage", rendered="not set")


GATEWAY_PROTECTION = stack_policy(
    name="gateway-protection",
    family=FAMILY_HYGIENE,
    description="Every REST API stage has a WAF web ACL with a blocking rate-based rule and an "
                "effective request size limit (<= maxRequestBytes), and stage-wide throttling.",
    resource_types=(REST_STAGE, WEB_ACL_ASSOCIATION, WEB_ACL, METHOD_SETTINGS),
    check=_check_gateway,
    config_schema={"maxRequestBytes": {
        "type": "integer", "minimum": 1024, "maximum": 10485760, "default": 1048576,
        "description": "Largest request body the WAF size constraint may allow (API Gateway's own "
                       "limit is 10 MB).",
    }},
    remediation="Associate a WAF web ACL (rate-based rule + size constraint) and set */* throttling.",
)


# ---- serving availability ---------------------------------------------------------------

def _namespace(res: StackResource) -> Any:
    metadata = res.props.get("metadata")
    return metadata if is_unknown(metadata) else as_dict(metadata).get("namespace")


def _same_namespace(a: StackResource, b: StackResource) -> bool:
    left, right = _namespace(a), _namespace(b)
    if is_unknown(left) or is_unknown(right):
        # Both computed (typically from a Namespace resource): compare what they came from.
        shared = set(a.property_dependencies.get("metadata", [])) & set(b.property_dependencies.get("metadata", []))
        return bool(shared) or not (a.property_dependencies.get("metadata") and b.property_dependencies.get("metadata"))
    return (left or "default") == (right or "default")


def selector_matches(selector: Any, labels: Any) -> bool | str:
    if is_unknown(selector) or is_unknown(labels):
        return selector if is_unknown(selector) else labels
    selector, labels = as_dict(selector), as_dict(labels)
    match_labels = as_dict(selector.get("matchLabels"))
    expressions = as_list(selector.get("matchExpressions"))
    if not match_labels and not expressions:
        return False  # an empty PDB selector matches nothing useful in policy/v1 semantics here
    for key, value in match_labels.items():
        if is_unknown(value) or is_unknown(labels.get(key)):
            return value if is_unknown(value) else labels.get(key)
        if labels.get(key) != value:
            return False
    for expression in expressions:
        expression = as_dict(expression)
        key, operator = expression.get("key"), expression.get("operator")
        values = as_list(expression.get("values"))
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels.get(key) in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _replica_ceiling(stack: Stack, workload: StackResource) -> Any:
    """The most replicas the workload can run: spec.replicas, or an autoscaler's ceiling."""
    counts: list[Any] = [as_number(as_dict(workload.props.get("spec")).get("replicas"))
                         if not is_unknown(workload.props.get("spec")) else workload.props.get("spec")]
    name = as_dict(workload.props.get("metadata")).get("name")
    for scaler in stack.of_type(*AUTOSCALERS):
        spec = as_dict(scaler.props.get("spec"))
        target = as_dict(spec.get("scaleTargetRef"))
        targets_it = scaler.depends_on(workload.urn) or (
            isinstance(name, str) and not is_unknown(name) and target.get("name") == name)
        if targets_it:
            counts.append(as_number(spec.get(AUTOSCALERS[scaler.type])))
    if any(is_unknown(c) for c in counts):
        return next(c for c in counts if is_unknown(c))
    known = [c for c in counts if isinstance(c, float)]
    return max(known) if known else 1.0


def _check_availability(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    pdbs = stack.of_type(PDB)
    for workload in stack.of_type(*MODEL_WORKLOADS):
        if not kubernetes_servings(workload.type, workload.props):
            continue
        ceiling = _replica_ceiling(stack, workload)
        if is_unknown(ceiling):
            yield workload.urn, cannot_check("spec.replicas")
            continue
        if ceiling <= 1:
            continue
        labels = next((p.labels for p in pod_specs(workload.type, workload.props)), None)
        matches = [selector_matches(as_dict(p.props.get("spec")).get("selector"), labels)
                   for p in pdbs if _same_namespace(p, workload)]
        if any(m is True for m in matches):
            continue
        if any(is_unknown(m) for m in matches):
            yield workload.urn, cannot_check("PodDisruptionBudget selector")
            continue
        yield workload.urn, violation(
            "PodDisruptionBudget", None,
            f"the model runs up to {int(ceiling)} replicas, and without a budget a node drain or "
            "cluster upgrade can evict all of them at once",
            "add a policy/v1 PodDisruptionBudget (maxUnavailable: 1) whose selector matches the pod labels",
            rendered="none selecting its pods")
    for attachment in stack.of_type(*ASG_ATTACHMENTS):
        for group in stack.referenced(attachment, "autoscalingGroupName", ASG):
            check = group.props.get("healthCheckType")
            if is_unknown(check):
                yield group.urn, cannot_check("healthCheckType")
            elif str(check or "EC2").upper() != "ELB":
                yield group.urn, violation(
                    "healthCheckType", check,
                    f"the group is attached to a load balancer by {attachment.name}, but EC2 health "
                    "checks keep instances whose model server is dead",
                    "set health_check_type=\"ELB\" with a grace period covering model load")


SERVING_AVAILABILITY = stack_policy(
    name="serving-availability",
    family=FAMILY_HYGIENE,
    description="Every multi-replica model workload has a PodDisruptionBudget selecting its pods; "
                "auto scaling groups attached to load balancers use ELB health checks.",
    resource_types=MODEL_WORKLOADS + tuple(AUTOSCALERS) + (PDB, ASG) + ASG_ATTACHMENTS,
    check=_check_availability,
    remediation="Add a PDB per multi-replica model; use ELB health checks for attached ASGs.",
)


POLICIES = [GATEWAY_PROTECTION, SERVING_AVAILABILITY]
