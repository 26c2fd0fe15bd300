"""Family 1, whole stack: prefix lists stand for CIDRs, so security group ingress from a prefix
list is judged by what the list contains.

A managed prefix list declared in the program is judged by its entries (inline `entries` and
ManagedPrefixListEntry resources); one that contains an internet range (0.0.0.0/0, ::/0 or
any public range not allow-listed) makes every ingress rule that references it internet
ingress. A prefix list the program does not declare (a literal pl- id, an AWS-managed list
such as CloudFront's origin-facing ranges, which any CloudFront distribution of any account
sends from) cannot be established as private, so the rule fails closed
(https://docs.aws.amazon.com/vpc/latest/userguide/managed-prefix-lists.html). Relations come
from property dependencies and literals, as in reachability.py.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from ._framework import FAMILY_EXPOSURE, Finding, Stack, StackResource, stack_policy, unknown, violation
from ._wire import admits_internet, as_dict, as_list, is_unknown, show
from .public_endpoints import CIDR_ALLOW_LIST_SCHEMA

PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList"
PREFIX_LIST_ENTRY = "aws:ec2/managedPrefixListEntry:ManagedPrefixListEntry"
SECURITY_GROUPS = ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

_FIX = ("reference only prefix lists declared in this program whose entries are private or allow-listed "
        "ranges, or a source security group")


def _list_verdict(stack: Stack, prefix_list: StackResource, allowed: list[str]) -> tuple[Any, Optional[str]]:
    """(True/False/unknown sentinel, the offending CIDR) for a prefix list declared in the stack."""
    entries = prefix_list.props.get("entries")
    if is_unknown(entries):
        return entries, None
    cidrs = [as_dict(e).get("cidr") if not is_unknown(e) else e for e in as_list(entries)]
    cidrs += [e.props.get("cidr") for e in stack.referencing(prefix_list, "prefixListId", PREFIX_LIST_ENTRY)]
    for cidr in cidrs:
        if is_unknown(cidr):
            return cidr, None
        if admits_internet(cidr, allowed):
            return True, cidr
    return False, None


def _references(stack: Stack, res: StackResource, prop: str, values: list) -> Iterator[tuple[str, Any]]:
    """(what, verdict-or-None) for each prefix list an ingress rule names: a declared list's
    resource, or None for a list whose contents cannot be established."""
    declared = stack.referenced(res, prop, PREFIX_LIST)
    for value in values:
        if isinstance(value, str) and not is_unknown(value):
            yield f"prefix list {show(value)} (not declared in this program)", None
        elif not declared:
            yield "a prefix list computed from something that is not a prefix list declared here", None
    for prefix_list in declared:
        yield f"prefix list {prefix_list.name}", prefix_list


def _judge(stack: Stack, res: StackResource, path: str, prop: str, values: list, direction: Any,
           allowed: list[str]) -> Iterator[tuple[str, Finding]]:
    if direction is not None and not is_unknown(direction) and str(direction).lower() != "ingress":
        return
    for what, prefix_list in _references(stack, res, prop, values):
        if prefix_list is None:
            yield res.urn, violation(path, None, f"ingress from {what}: its ranges cannot be established as "
                                     "private, so internet ingress cannot be ruled out", _FIX,
                                     rendered="a prefix list")
            continue
        verdict, cidr = _list_verdict(stack, prefix_list, allowed)
        if is_unknown(verdict):
            yield res.urn, unknown(path, _FIX, why=f"the entries of {what} decide whether the internet may "
                                   "reach the group, and they are unknown during preview, so the guardrail fails closed")
        elif verdict:
            yield res.urn, violation(path, None, f"{what} contains {show(cidr)}, so this rule lets internet "
                                     "addresses in", _FIX, rendered=f"{what}")


def _check(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    allowed = list(config.get("allowedIngressCidrs") or [])
    for group in stack.of_type(*SECURITY_GROUPS):
        ingress = group.props.get("ingress")
        if is_unknown(ingress):
            continue  # security-group-no-internet-ingress fails closed on it
        for index, rule in enumerate(as_list(ingress)):
            ids = as_dict(rule).get("prefixListIds")
            if is_unknown(ids):
                yield group.urn, unknown(f"ingress[{index}].prefixListIds", _FIX)
            elif as_list(ids):
                yield from _judge(stack, group, f"ingress[{index}].prefixListIds", "ingress", as_list(ids),
                                  "ingress", allowed)
    for rule in stack.of_type(SG_RULE):
        ids = rule.props.get("prefixListIds")
        if is_unknown(ids):
            yield rule.urn, unknown("prefixListIds", _FIX)
        elif as_list(ids):
            yield from _judge(stack, rule, "prefixListIds", "prefixListIds", as_list(ids),
                              rule.props.get("type"), allowed)
    for rule in stack.of_type(SG_INGRESS_RULE):
        value = rule.props.get("prefixListId")
        if value is not None:
            yield from _judge(stack, rule, "prefixListId", "prefixListId", [value], "ingress", allowed)


PREFIX_LIST_NO_INTERNET = stack_policy(
    name="prefix-list-no-internet",
    family=FAMILY_EXPOSURE,
    description="Security group ingress from a managed prefix list is internet ingress when the list contains "
                "an internet range (0.0.0.0/0, ::/0, public ranges not allow-listed); prefix lists not declared "
                "in the program (AWS-managed ones included) cannot be established as private.",
    resource_types=(PREFIX_LIST, PREFIX_LIST_ENTRY, *SECURITY_GROUPS, SG_RULE, SG_INGRESS_RULE),
    check=_check,
    config_schema={"allowedIngressCidrs": {
        **CIDR_ALLOW_LIST_SCHEMA,
        "description": "Keep equal to security-group-no-internet-ingress.allowedIngressCidrs: allow-listed "
                       "public ranges in a prefix list are not internet ingress.",
    }},
    remediation="Keep prefix lists referenced by ingress rules to private or allow-listed ranges, declared "
                "in the program.",
)

POLICIES = [PREFIX_LIST_NO_INTERNET]
