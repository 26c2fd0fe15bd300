"""Family 3, resource policies: KMS keys, buckets, secrets, repositories, topics and queues
whose policy admits every principal, and secrets encrypted only with the AWS-managed key.
(VPC endpoint services open to every principal are judged by Family 1's
service-network-authenticated, mandatory everywhere.)

An open principal (`"*"`, `{"AWS": "*"}`, an ARN with a wildcard account, or Allow with
NotPrincipal) is public unless a positive condition pins the caller to an account,
organisation, network or source (policy_documents.RESTRICTING_KEYS). Service principals
are not public: AWS services are judged by their own conditions elsewhere.
Anchors: Checkov CKV_AWS_33 (KMS `*`), CKV_AWS_70 (S3), CKV_AWS_32 (ECR), CKV_AWS_168/169
(SQS/SNS), CKV_AWS_149 (secrets without a CMK).
"""
from __future__ import annotations

from typing import Any, Iterator

from ._framework import (
    FAMILY_BASELINE,
    Finding,
    Resource,
    cannot_check,
    resource_policy,
    violation,
)
from ._wire import is_unknown, show
from .iam_documents import (
    open_principals,
    principal_unknown,
    restricting_keys,
    statements_to_judge,
)

# ---- public resource policies ---------------------------------------------------------------

RESOURCE_POLICY_PATHS = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:s3/bucket:Bucket": "policy",
    "aws:s3/bucketV2:BucketV2": "policy",
    "aws:s3/accessPoint:AccessPoint": "policy",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
    "aws:secretsmanager/secret:Secret": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:ecr/registryPolicy:RegistryPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:sns/topic:Topic": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sqs/queue:Queue": "policy",
}
KEY_POLICY_PATHS = {
    "aws:kms/key:Key": "policy",
    "aws:kms/keyPolicy:KeyPolicy": "policy",
    "aws:kms/replicaKey:ReplicaKey": "policy",
    "aws:kms/externalKey:ExternalKey": "policy",
    "aws:kms/replicaExternalKey:ReplicaExternalKey": "policy",
}


def open_statements(path: str, value: Any, what: str, fix: str) -> Iterator[Finding]:
    """Allow statements of a resource policy that admit anyone without a restricting condition."""
    statements, findings = statements_to_judge(value, path, "who it admits cannot be read",
                                               "write the policy as JSON with a Statement list")
    yield from findings
    for statement in statements:
        if not statement.allows:
            continue
        if principal_unknown(statement.principal) or principal_unknown(statement.not_principal):
            yield cannot_check(f"{statement.path}.Principal")
            continue
        if statement.not_principal is not None:
            opened = [f"NotPrincipal {show(statement.not_principal)} (everyone else)"]
        else:
            opened = open_principals(statement.principal)
        if not opened:
            continue
        restricted = restricting_keys(statement.condition)
        if is_unknown(restricted):
            yield cannot_check(f"{statement.path}.Condition")
        elif not restricted:
            yield violation(f"{statement.label()}.Principal", None,
                            f"{what} to every AWS account and anonymous callers: nothing in Condition "
                            "restricts the caller", fix, rendered=", ".join(opened))


def _check_public(res: Resource, config: dict) -> Iterator[Finding]:
    path = RESOURCE_POLICY_PATHS[res.type]
    yield from open_statements(path, res.get(path), "it grants its actions",
                               "name the account or role ARNs in Principal, or add a condition on "
                               "aws:PrincipalAccount / aws:PrincipalOrgID / aws:SourceVpce")


RESOURCE_POLICY_NOT_PUBLIC = resource_policy(
    name="resource-policy-not-public",
    family=FAMILY_BASELINE,
    description="Bucket, access point, secret, ECR repository and registry, SNS topic and SQS queue "
                "policies (separate or inline) admit no `*` principal without a condition that "
                "restricts the caller to an account, organisation, network or source.",
    resource_types=tuple(RESOURCE_POLICY_PATHS),
    check=_check_public,
    remediation="Name the principals, or condition an open principal on the account or organisation.",
)


# ---- KMS key policies ---------------------------------------------------------------------

def _check_key_policy(res: Resource, config: dict) -> Iterator[Finding]:
    # No policy means the default key policy, which trusts the account root: fine.
    path = KEY_POLICY_PATHS[res.type]
    yield from open_statements(path, res.get(path), "it grants its KMS actions on this key",
                               "grant the account root (arn:aws:iam::<account>:root) and named roles, or "
                               "condition the open principal on kms:CallerAccount with kms:ViaService")


KMS_KEY_POLICY_RESTRICTED = resource_policy(
    name="kms-key-policy-restricted",
    family=FAMILY_BASELINE,
    description="KMS key policies grant no `*` principal without a condition that restricts the caller "
                "(the default account-root policy is fine).",
    resource_types=tuple(KEY_POLICY_PATHS),
    check=_check_key_policy,
    remediation="Grant the account root and named principals; condition any `*` on kms:CallerAccount.",
)


# ---- secrets with a customer-managed key --------------------------------------------------

def _check_secret_key(res: Resource, config: dict) -> Iterator[Finding]:
    key = res.get("kmsKeyId")
    if is_unknown(key):
        return  # a key computed from another resource is a customer-managed key
    if key is None or (isinstance(key, str) and key.strip().lower().endswith("alias/aws/secretsmanager")):
        yield violation("kmsKeyId", key,
                        "the secret is then encrypted with the AWS-managed key, whose policy you cannot "
                        "change: every principal in the account with secretsmanager:GetSecretValue can "
                        "read it, and it cannot be shared or audited per key",
                        "set kms_key_id to a customer-managed KMS key whose policy names who may decrypt")


SECRETS_CUSTOMER_MANAGED_KEY = resource_policy(
    name="secrets-customer-managed-key",
    family=FAMILY_BASELINE,
    description="Secrets Manager secrets are encrypted with a customer-managed KMS key (kmsKeyId), "
                "not the AWS-managed aws/secretsmanager key.",
    resource_types=("aws:secretsmanager/secret:Secret",),
    check=_check_secret_key,
    remediation="Set kms_key_id to a customer-managed key.",
)


POLICIES = [
    KMS_KEY_POLICY_RESTRICTED,
    RESOURCE_POLICY_NOT_PUBLIC,
    SECRETS_CUSTOMER_MANAGED_KEY,
]
