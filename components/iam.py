"""IAM documents the components share: who may assume a role.

Every role in the stack is assumed by one AWS service; writing the trust policy once keeps
them identical in shape, and a reviewer reads the service name and its conditions only.

Conditions, and why some roles have none:
- Services that act for many customers on a resource the caller names (API Gateway's
  logging role, VPC Flow Logs) get `aws:SourceAccount` (and `aws:SourceArn` where the
  service documents one): IAM user guide, "The confused deputy problem";
  VPC user guide, "IAM role for publishing flow logs" (confused deputy prevention).
- EKS Pod Identity roles are pinned to the cluster, namespace and service account with the
  session tags Pod Identity sets (`aws:RequestTag/eks-cluster-name`, `kubernetes-namespace`,
  `kubernetes-service-account`) and to this account: EKS user guide, "Create IAM role with
  trust policy required by EKS Pod Identity".
- ec2.amazonaws.com (instance profiles, node roles) and eks.amazonaws.com (the cluster
  role) are passed with iam:PassRole inside the account and carry no source context, so a
  source condition would only break them (Checkov/Prowler disagree; see
  policies/rules/baseline_iam.py for the list the pack enforces).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import pulumi


def service_trust_policy(service: str, *, tag_session: bool = False, source_account: Any = None,
                         source_arn: Any = None, request_tags: Optional[Mapping[str, Any]] = None) -> dict:
    """A trust policy letting `service` (e.g. "ec2.amazonaws.com") assume the role.

    `tag_session` also lets it tag the session, which EKS and Pod Identity do (with the
    cluster, namespace and service account) so that policies can condition on those tags.
    `request_tags` pins those session tags (aws:RequestTag/<key>).
    """
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Principal": {"Service": service}}
    equals: dict[str, Any] = {}
    if source_account is not None:
        equals["aws:SourceAccount"] = source_account
    for key, value in (request_tags or {}).items():
        equals[f"aws:RequestTag/{key}"] = value
    condition: dict[str, Any] = {}
    if equals:
        condition["StringEquals"] = equals
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def service_trust_policy_json(service: str, *, tag_session: bool = False, source_account: Any = None,
                              source_arn: Any = None,
                              request_tags: Optional[Mapping[str, Any]] = None) -> pulumi.Input[str]:
    """The same as JSON: a plain string when every value is known, else an Output."""
    document = service_trust_policy(service, tag_session=tag_session, source_account=source_account,
                                    source_arn=source_arn, request_tags=request_tags)
    values = [source_account, source_arn, *(request_tags or {}).values()]
    if any(isinstance(v, pulumi.Output) for v in values):
        return pulumi.Output.json_dumps(document)
    return json.dumps(document)
