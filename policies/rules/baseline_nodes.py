"""Family 3, EKS node groups: nodes come from a launch template that requires IMDSv2 with a
hop limit of 1.

Without a launch template, EKS managed node groups use EKS's own template, whose instance
metadata allows two hops, so every pod (not only host-network ones) can fetch the node
role's credentials (Amazon EKS best practices guide, "Restrict access to the instance
profile assigned to the worker node"). The template is found through the node group's
launchTemplate input: its id or name was computed from a template in this program.
"""
from __future__ import annotations

from typing import Iterator

from ._framework import FAMILY_BASELINE, Finding, Stack, cannot_check, stack_policy, violation
from ._wire import as_dict, as_number, is_unknown

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
_FIX = ("give the node group launch_template={id: template.id, version: template.latest_version} "
        "with metadata_options {http_tokens: \"required\", http_put_response_hop_limit: 1}")


def _check_node_groups(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    for group in stack.of_type(NODE_GROUP):
        reference = group.props.get("launchTemplate")
        if is_unknown(reference):
            yield group.urn, cannot_check("launchTemplate")
            continue
        if not reference:
            yield group.urn, violation(
                "launchTemplate", None,
                "the node group then uses EKS's default template, whose metadata service allows two "
                "hops, so every pod can read the node role's credentials", _FIX)
            continue
        templates = stack.referenced(group, "launchTemplate", LAUNCH_TEMPLATE)
        if not templates:
            literal = {k: v for k, v in as_dict(reference).items() if k in ("id", "name")}
            templates = [t for t in stack.of_type(LAUNCH_TEMPLATE)
                         if literal.get("name") is not None and t.props.get("name") == literal.get("name")]
        if not templates:
            yield group.urn, cannot_check(
                "launchTemplate", "names a template this program does not declare, so its metadata options")
            continue
        for template in templates:
            options = template.props.get("metadataOptions")
            if is_unknown(options):
                yield group.urn, cannot_check(f"launchTemplate ({template.name}).metadataOptions")
                continue
            options = as_dict(options)
            if str(options.get("httpEndpoint") or "").lower() == "disabled":
                continue
            tokens = options.get("httpTokens")
            hops = as_number(options.get("httpPutResponseHopLimit"))
            if is_unknown(tokens) or is_unknown(hops):
                yield group.urn, cannot_check(f"launchTemplate ({template.name}).metadataOptions")
            elif str(tokens or "").lower() != "required" or hops != 1.0:
                yield group.urn, violation(
                    f"launchTemplate ({template.name}).metadataOptions", options or None,
                    "the nodes' template does not require IMDSv2 with a hop limit of 1, so pods can "
                    "reach the node role's credentials (IMDSv1 or a second hop)", _FIX)


EKS_NODE_GROUP_IMDSV2 = stack_policy(
    name="eks-node-group-imdsv2",
    family=FAMILY_BASELINE,
    description="EKS managed node groups use a launch template whose metadata options require IMDSv2 "
                "tokens with a hop limit of 1.",
    resource_types=(NODE_GROUP, LAUNCH_TEMPLATE),
    check=_check_node_groups,
    remediation="Launch node groups from a template with http_tokens=required and hop limit 1.",
)


POLICIES = [EKS_NODE_GROUP_IMDSV2]
