"""Family 3, identities: IAM permissions that grant everything, and trust policies that let
anyone (or any customer's resource, through a confused deputy) assume a role.

Anchors: Checkov CKV_AWS_1/62/63/286-290 (no `*` admin statements), CKV_AWS_274 (no
AdministratorAccess attachments), CKV_AWS_60/61 (open trust), Prowler
iam_role_cross_service_confused_deputy_prevention.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from ._framework import (
    FAMILY_BASELINE,
    Finding,
    Resource,
    cannot_check,
    resource_policy,
    violation,
)
from ._wire import as_dict, as_list, is_unknown
from .iam_documents import (
    SOURCE_KEYS,
    condition_values,
    confined_by_deny,
    federated_principals,
    service_name,
    grants_everything,
    open_principals,
    principal_unknown,
    restricting_keys,
    service_principals,
    statements_to_judge,
)

# ---- permissions: documents and attachments ---------------------------------------------

# Where each type carries a permissions document (property path, as it is on the wire).
DOCUMENT_PATHS = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy": "inlinePolicy",
}
# Where each type names managed policies to attach (a single ARN or a list).
ATTACHMENT_PATHS = {
    "aws:iam/policyAttachment:PolicyAttachment": "policyArn",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "policyArn",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": "policyArn",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": "policyArn",
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": "policyArns",
    "aws:ssoadmin/managedPolicyAttachment:ManagedPolicyAttachment": "managedPolicyArn",
    "aws:ssoadmin/managedPolicyAttachmentsExclusive:ManagedPolicyAttachmentsExclusive": "managedPolicyArns",
    "aws:iam/role:Role": "managedPolicyArns",
}
ROLE = "aws:iam/role:Role"

# AWS-managed policies that grant administrator-class access (every action, or every IAM
# action, which is the same thing one step later), and the `*FullAccess` family, each of
# which grants `service:*` on every resource. Policy ARNs live in the global `aws` account
# of every partition: arn:<partition>:iam::aws:policy/[path/]<name>.
_AWS_MANAGED = re.compile(r"^arn:[^:]+:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")
_ADMIN_CLASS = re.compile(r"^(AdministratorAccess(-.*)?|PowerUserAccess|IAMFullAccess|"
                          r"SystemAdministrator|NetworkAdministrator|DatabaseAdministrator)$")
_FULL_ACCESS = re.compile(r"FullAccess(V\d+)?$")


def admin_class_policy(arn: Any) -> str | None:
    """Why an AWS-managed policy ARN is too broad to attach, or None."""
    if not isinstance(arn, str) or is_unknown(arn):
        return None
    match = _AWS_MANAGED.match(arn.strip())
    if not match:
        return None
    name = match.group(1)
    if _ADMIN_CLASS.match(name):
        return f"the AWS-managed policy {name} grants administrator-class access"
    if _FULL_ACCESS.search(name):
        return f"the AWS-managed policy {name} grants every action of its service on every resource"
    return None


_DOCUMENT_FIX = ("list the specific actions the workload calls on the specific resource ARNs it "
                 "uses (read-only describe/list/get on \"*\" is fine)")


def _documents(res: Resource) -> list[tuple[str, Any]]:
    if res.type == ROLE:
        inline = res.get("inlinePolicies")
        if is_unknown(inline):
            return [("inlinePolicies", inline)]
        return [(f"inlinePolicies[{index}].policy", as_dict(item).get("policy"))
                for index, item in enumerate(as_list(inline))]
    path = DOCUMENT_PATHS.get(res.type)
    return [(path, res.get(path))] if path else []


def judge_permissions(path: str, value: Any) -> Iterator[Finding]:
    statements, findings = statements_to_judge(value, path, "AWS rejects it or its grants cannot be read",
                                               "write the document as JSON with a Statement list")
    yield from findings
    for statement in statements:
        broad = grants_everything(statement)
        if is_unknown(broad):
            yield cannot_check(f"{statement.path} Action/Resource")
        elif broad:
            yield violation(statement.label(), None,
                            "that is administrator-class access for whoever holds it, so a leaked "
                            "credential or an SSRF from a model tool owns the service (or the account)",
                            _DOCUMENT_FIX, rendered=f"Allow {broad}")


def _check_permissions(res: Resource, config: dict) -> Iterator[Finding]:
    for path, value in _documents(res):
        yield from judge_permissions(path, value)
    path = ATTACHMENT_PATHS.get(res.type)
    if path is None:
        return
    arns = res.get(path)
    # An attachment whose ARN is unknown during preview almost always names a policy declared
    # in this program (policy.arn), which is judged where it is declared; reporting "cannot
    # check" on every such attachment would bury real findings. AWS-managed ARNs are literals
    # (or aws.iam.ManagedPolicy values, or an invoke result, known during preview) and `pulumi
    # up` runs the pack again with every ARN known.
    if is_unknown(arns):
        return
    for index, arn in enumerate(as_list(arns)):
        where = f"{path}[{index}]" if isinstance(arns, list) else path
        why = admin_class_policy(arn)
        if why:
            yield violation(where, arn, why,
                            "attach a customer-managed policy with only the actions and resources needed "
                            "(or a narrower AWS-managed one, e.g. ...ReadOnly)")


IAM_NO_ADMIN_ACCESS = resource_policy(
    name="iam-no-admin-access",
    family=FAMILY_BASELINE,
    description="IAM documents (managed, inline, role/user/group and permission-set policies) allow "
                "no `*` or `service:*` actions (nor Allow+NotAction) on `*` resources (nor "
                "Allow+NotResource), and no AWS-managed admin-class or *FullAccess policy is "
                "attached. Read-only describe/list/get on `*` is fine.",
    resource_types=tuple(DOCUMENT_PATHS) + tuple(ATTACHMENT_PATHS),
    check=_check_permissions,
    remediation="Grant the specific actions on the specific resources a workload uses.",
)


# ---- trust policies ------------------------------------------------------------------------

# Services that act on a resource on behalf of a caller who names it (deliver logs to a
# bucket, publish to a topic, push to a log group, run a target) and that send
# aws:SourceArn/aws:SourceAccount when they assume a role, so a trust policy can and should
# pin them to this account: the IAM user guide's "The confused deputy problem", and each
# service's "Cross-service confused deputy prevention" page (CloudTrail, Config, CloudWatch
# Logs, VPC Flow Logs, SNS, S3, EventBridge, Scheduler and Pipes, Step Functions, Firehose,
# SSM, API Gateway, SageMaker, Bedrock, Personalize, Backup, DataSync, Transfer Family,
# CodeBuild, AppSync).
# Deliberately not listed: ec2.amazonaws.com (instance profiles are passed with
# iam:PassRole inside the account and EC2 sends no source context), lambda, ecs-tasks,
# eks and autoscaling (likewise passed roles; see Prowler issue #2810 on the false positives
# of requiring conditions for them), and pods.eks.amazonaws.com, which EKS Pod Identity
# scopes with session tags (aws:RequestTag/kubernetes-namespace ...) rather than a source.
DEFAULT_CONFUSED_DEPUTY_SERVICES = [
    "apigateway.amazonaws.com", "cloudtrail.amazonaws.com", "config.amazonaws.com",
    "logs.amazonaws.com", "delivery.logs.amazonaws.com", "vpc-flow-logs.amazonaws.com",
    "sns.amazonaws.com", "s3.amazonaws.com", "events.amazonaws.com", "scheduler.amazonaws.com",
    "states.amazonaws.com", "firehose.amazonaws.com", "ssm.amazonaws.com", "sagemaker.amazonaws.com",
    "bedrock.amazonaws.com", "personalize.amazonaws.com", "pipes.amazonaws.com", "backup.amazonaws.com",
    "datasync.amazonaws.com", "transfer.amazonaws.com", "codebuild.amazonaws.com", "appsync.amazonaws.com",
]


def _check_trust(res: Resource, config: dict) -> Iterator[Finding]:
    prone = {s.lower() for s in config.get("confusedDeputyServices") or []}
    statements, findings = statements_to_judge(res.get("assumeRolePolicy"), "assumeRolePolicy",
                                               "who may assume the role cannot be read",
                                               "write the trust policy as JSON with a Statement list")
    yield from findings
    for statement in statements:
        if not statement.allows:
            continue
        if principal_unknown(statement.principal) or is_unknown(statement.condition):
            yield cannot_check(f"{statement.path}.Principal")
            continue
        restricted = restricting_keys(statement.condition)
        if is_unknown(restricted):
            yield cannot_check(f"{statement.path}.Condition")
            continue
        if statement.not_principal is not None:
            if not restricted:
                yield violation(f"{statement.label()}.NotPrincipal", statement.not_principal,
                                "Allow with NotPrincipal lets every other principal in the world assume the role",
                                "name the principals in Principal instead")
            continue
        opened = open_principals(statement.principal)
        if opened and not restricted and not confined_by_deny(statements, statement):
            yield violation(f"{statement.label()}.Principal", None,
                            "any AWS account (or anonymous federation) can assume this role: nothing "
                            "in Condition restricts the caller",
                            "name the trusted account or role ARNs, or add a condition on "
                            "aws:PrincipalAccount / aws:PrincipalOrgID / aws:SourceAccount",
                            rendered=", ".join(opened))
            continue
        yield from _judge_federated(statement)
        deputies = [s for s in service_principals(statement.principal) if service_name(s) in prone]
        if not deputies:
            continue
        sources = restricting_keys(statement.condition, SOURCE_KEYS)
        if is_unknown(sources):
            yield cannot_check(f"{statement.path}.Condition")
        elif not sources:
            yield violation(f"{statement.label()}.Principal.Service", deputies[0] if len(deputies) == 1 else deputies,
                            "this service acts for many customers; without aws:SourceAccount or "
                            "aws:SourceArn another account's resource can make it use this role "
                            "(cross-service confused deputy)",
                            "add Condition {\"StringEquals\": {\"aws:SourceAccount\": \"<account id>\"}} "
                            "and/or {\"ArnLike\": {\"aws:SourceArn\": \"<source resource ARN>\"}}")


# Web identity federation: the provider signs tokens for every identity it knows (every
# service account of an EKS cluster, every repository on GitHub, every user of a Google app),
# so a trust policy must pin which subject may assume the role. IAM user guide, "Creating a
# role for web identity or OpenID Connect federation" and "Available keys for AWS web identity
# federation"; GitHub docs, "Configuring OpenID Connect in Amazon Web Services" (the sub
# condition); EKS user guide, "Assign IAM roles to Kubernetes service accounts" (the
# <issuer>:sub condition; aud alone lets every service account of the cluster in).
# Public identity providers identify the application by aud/app_id, Cognito by the identity
# pool in cognito-identity.amazonaws.com:aud.
_PUBLIC_WEB_IDENTITY = {
    "cognito-identity.amazonaws.com": ("cognito-identity.amazonaws.com:aud",),
    "accounts.google.com": ("accounts.google.com:aud", "accounts.google.com:sub"),
    "graph.facebook.com": ("graph.facebook.com:app_id", "graph.facebook.com:id"),
    "www.amazon.com": ("www.amazon.com:app_id", "www.amazon.com:user_id"),
}
_OIDC_PROVIDER = re.compile(r"^arn:[^:]+:iam::[^:]*:oidc-provider/(.+)$")
# A subject pattern whose fixed part is only the kind of subject admits every subject of
# that kind: "repo:*" (every GitHub repository), "system:serviceaccount:*" (every service
# account of the cluster), "project_path:*" (GitLab), "organization:*" (Terraform Cloud).
_SUBJECT_KINDS = frozenset({"", "repo", "system", "system:serviceaccount", "project_path",
                            "organization", "org", "user", "group"})


def _subject_restricts(value: Any) -> bool:
    text = str(value).strip()
    wildcard = min((i for i in (text.find("*"), text.find("?")) if i >= 0), default=-1)
    if wildcard < 0:
        return text != ""
    return text[:wildcard].rstrip(":/").lower() not in _SUBJECT_KINDS


def _judge_federated(statement) -> Iterator[Finding]:
    for provider in federated_principals(statement.principal):
        text = provider.strip()
        match = _OIDC_PROVIDER.match(text)
        if match:
            keys, who = (f"{match.group(1)}:sub",), ("every identity the OIDC provider issues tokens for (every "
                                                       "service account of an EKS cluster, every GitHub repository)")
        elif text.lower() in _PUBLIC_WEB_IDENTITY:
            keys, who = _PUBLIC_WEB_IDENTITY[text.lower()], f"every user {text} signs in, for any application"
        else:
            continue  # SAML providers belong to the account; nothing else federates
        values = []
        for key in keys:
            found = condition_values(statement.condition, key)
            if is_unknown(found):
                yield cannot_check(f"{statement.path}.Condition")
                break
            values.extend(found)
        else:
            if values and all(_subject_restricts(v) for v in values):
                continue
            shown = f" (only {values})" if values else ""
            yield violation(
                f"{statement.label()}.Principal.Federated", provider,
                f"{who} can assume the role: no condition pins {' or '.join(keys)} to a named subject{shown}",
                f"add Condition {{\"StringEquals\": {{\"{keys[0]}\": \"<subject, e.g. "
                "system:serviceaccount:<namespace>:<service account> or repo:<org>/<repo>:ref:refs/heads/main; "
                "for Cognito the identity pool id>\"}} next to the aud condition")


IAM_TRUST_RESTRICTED = resource_policy(
    name="iam-trust-restricted",
    family=FAMILY_BASELINE,
    description="Role trust policies admit no `*` principal (nor Allow+NotPrincipal) without a "
                "restricting condition, web identity (OIDC, Cognito) principals are pinned to a subject "
                "(<issuer>:sub, the identity pool), and service principals of confused-deputy prone "
                "services carry aws:SourceAccount or aws:SourceArn.",
    resource_types=(ROLE,),
    check=_check_trust,
    config_schema={"confusedDeputyServices": {
        "type": "array", "items": {"type": "string"}, "default": DEFAULT_CONFUSED_DEPUTY_SERVICES,
        "description": "Service principals that must be pinned with aws:SourceAccount/aws:SourceArn.",
    }},
    remediation="Trust named principals; pin service principals to this account with source conditions.",
)


POLICIES = [IAM_NO_ADMIN_ACCESS, IAM_TRUST_RESTRICTED]
