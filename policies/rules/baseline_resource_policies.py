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
from ._wire import as_dict, as_list, is_unknown, show
from .iam_documents import (
    SOURCE_KEYS,
    Unreadable,
    confined_by_deny,
    open_principals,
    parse,
    principal_unknown,
    restricting_keys,
    service_name,
    service_principals,
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
    # Other carriers of the same kind of document: who may read a file system, a vault, a
    # stream or table, put events on a bus, or pull packages from a repository.
    "aws:s3control/accessPointPolicy:AccessPointPolicy": "policy",
    "aws:s3control/bucketPolicy:BucketPolicy": "policy",
    "aws:efs/fileSystemPolicy:FileSystemPolicy": "policy",
    "aws:glacier/vault:Vault": "accessPolicy",
    "aws:backup/vaultPolicy:VaultPolicy": "policy",
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy": "policy",
    "aws:kinesis/resourcePolicy:ResourcePolicy": "policy",
    "aws:dynamodb/resourcePolicy:ResourcePolicy": "policy",
    "aws:glue/resourcePolicy:ResourcePolicy": "policy",
    "aws:codeartifact/repositoryPermissionsPolicy:RepositoryPermissionsPolicy": "policyDocument",
    "aws:codeartifact/domainPermissions:DomainPermissions": "policyDocument",
}
# Sharing settings that are not documents: a Lambda layer version for principal "*" without
# an organization, an AMI launch permission for the group "all".
LAYER_PERMISSION = "aws:lambda/layerVersionPermission:LayerVersionPermission"
AMI_LAUNCH_PERMISSION = "aws:ec2/amiLaunchPermission:AmiLaunchPermission"
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
        elif not restricted and not confined_by_deny(statements, statement):
            yield violation(f"{statement.label()}.Principal", None,
                            f"{what} to every AWS account and anonymous callers: nothing in Condition "
                            "restricts the caller", fix, rendered=", ".join(opened))


# S3 access control lists make a bucket or object public as surely as a policy does: the
# canned ACLs public-read, public-read-write and authenticated-read (any AWS account), and
# grants to the AllUsers / AuthenticatedUsers groups (Amazon S3 user guide, "Access control
# list (ACL) overview": canned ACLs and Amazon S3 predefined groups).
ACL_PATHS = {
    "aws:s3/bucketAcl:BucketAcl": ("acl", "accessControlPolicy.grants"),
    "aws:s3/bucketAclV2:BucketAclV2": ("acl", "accessControlPolicy.grants"),
    "aws:s3/bucket:Bucket": ("acl", "grants"),
    "aws:s3/bucketV2:BucketV2": ("acl", "grants"),
    "aws:s3/bucketObject:BucketObject": ("acl", None),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("acl", None),
    "aws:s3/objectCopy:ObjectCopy": ("acl", "grants"),
}
_PUBLIC_CANNED_ACLS = {
    "public-read": "everyone on the internet can read it",
    "public-read-write": "everyone on the internet can read and write it",
    "authenticated-read": "every AWS account in the world can read it",
}
_PUBLIC_GROUPS = {"http://acs.amazonaws.com/groups/global/allusers": "everyone on the internet",
                  "http://acs.amazonaws.com/groups/global/authenticatedusers": "every AWS account in the world"}
_ACL_FIX = ("use acl=\"private\" (or drop the ACL and keep the bucket owner enforced), and grant named "
            "principals through a bucket policy; serve public content through CloudFront with origin "
            "access control")


def _check_acl(res: Resource) -> Iterator[Finding]:
    acl_path, grants_path = ACL_PATHS[res.type]
    acl = res.get(acl_path)
    if is_unknown(acl):
        yield cannot_check(acl_path)
    elif isinstance(acl, str) and acl.strip().lower() in _PUBLIC_CANNED_ACLS:
        yield violation(acl_path, acl, f"this canned ACL makes it public: {_PUBLIC_CANNED_ACLS[acl.strip().lower()]}",
                        _ACL_FIX)
    if grants_path is None:
        return
    grants = res.get(*grants_path.split("."))
    if is_unknown(grants):
        yield cannot_check(grants_path)
        return
    for index, grant in enumerate(as_list(grants)):
        grant = as_dict(grant)
        grantee = grant.get("grantee", grant)  # BucketAcl nests the grantee; Bucket.grants do not
        if is_unknown(grantee):
            yield cannot_check(f"{grants_path}[{index}]")
            continue
        uri = as_dict(grantee).get("uri")
        if is_unknown(uri):
            yield cannot_check(f"{grants_path}[{index}].uri")
        elif isinstance(uri, str) and uri.strip().lower() in _PUBLIC_GROUPS:
            permissions = grant.get("permissions", grant.get("permission"))
            yield violation(f"{grants_path}[{index}]", None,
                            f"the grant gives {_PUBLIC_GROUPS[uri.strip().lower()]} "
                            f"{show(permissions)} on it", _ACL_FIX,
                            rendered=f"a grant to {uri.strip()}")


# Services that act for every customer on a resource the customer names (a distribution's
# origin, a topic's subscription, a rule's target, a trail's or a log delivery's bucket): a
# grant to one of them without aws:SourceArn/aws:SourceAccount lets any account's
# distribution, topic, rule or trail use it, which is a public grant by proxy. AWS: the IAM
# user guide's "The confused deputy problem"; CloudFront developer guide, "Restrict access to
# an Amazon S3 origin" (origin access control needs AWS:SourceArn); SNS, EventBridge,
# CloudTrail, Config and S3 server access logging pages on confused deputy prevention.
PROXY_SERVICES = frozenset({
    "cloudfront.amazonaws.com", "s3.amazonaws.com", "logging.s3.amazonaws.com", "sns.amazonaws.com",
    "events.amazonaws.com", "cloudwatch.amazonaws.com", "logs.amazonaws.com", "delivery.logs.amazonaws.com",
    "cloudtrail.amazonaws.com", "config.amazonaws.com", "firehose.amazonaws.com", "ses.amazonaws.com",
    "scheduler.amazonaws.com", "states.amazonaws.com", "apigateway.amazonaws.com",
})
# aws:SourceOwner is SNS's older spelling of aws:SourceAccount.
_PROXY_SOURCE_KEYS = SOURCE_KEYS | {"aws:sourceowner"}


def proxy_statements(path: str, value: Any) -> Iterator[Finding]:
    """Allow statements granting a proxy service without a source condition."""
    try:
        statements = parse(value, path)
    except Unreadable:
        return  # open_statements already reports the document
    if statements is None or is_unknown(statements):
        return
    for statement in statements:
        if not statement.allows or principal_unknown(statement.principal):
            continue
        services = [svc for svc in service_principals(statement.principal) if service_name(svc) in PROXY_SERVICES]
        if not services:
            continue
        sources = restricting_keys(statement.condition, _PROXY_SOURCE_KEYS)
        if is_unknown(sources):
            yield cannot_check(f"{statement.path}.Condition")
        elif not sources:
            yield violation(f"{statement.label()}.Principal.Service", services[0] if len(services) == 1 else services,
                            "the service acts for every AWS customer, so without aws:SourceArn or aws:SourceAccount "
                            "another account's distribution, topic, rule or trail can use this grant",
                            "add Condition {\"StringEquals\": {\"aws:SourceAccount\": \"<account id>\"}} and/or "
                            "{\"ArnLike\": {\"aws:SourceArn\": \"<the one distribution/topic/rule ARN>\"}}")


def _check_public(res: Resource, config: dict) -> Iterator[Finding]:
    path = RESOURCE_POLICY_PATHS.get(res.type)
    if path is not None:
        yield from open_statements(path, res.get(path), "it grants its actions",
                                   "name the account or role ARNs in Principal, or add a condition on "
                                   "aws:PrincipalAccount / aws:PrincipalOrgID / aws:SourceVpce")
        yield from proxy_statements(path, res.get(path))
    if res.type in ACL_PATHS:
        yield from _check_acl(res)
    if res.type == LAYER_PERMISSION:
        principal, organization = res.get("principal"), res.get("organizationId")
        if is_unknown(principal):
            yield cannot_check("principal")
        elif isinstance(principal, str) and principal.strip() == "*" and not organization:
            yield violation("principal", principal,
                            "every AWS account can use this layer version (and read its code)",
                            "name the account ID in principal, or set organization_id with principal \"*\"")
    if res.type == AMI_LAUNCH_PERMISSION:
        group = res.get("group")
        if is_unknown(group):
            yield cannot_check("group")
        elif isinstance(group, str) and group.strip().lower() == "all":
            yield violation("group", group, "the image becomes public: every AWS account can launch it (and "
                            "read whatever its snapshots hold)",
                            "share with account_id, organization_arn or organizational_unit_arn instead")


RESOURCE_POLICY_NOT_PUBLIC = resource_policy(
    name="resource-policy-not-public",
    family=FAMILY_BASELINE,
    description="Bucket, access point, secret, ECR repository and registry, SNS topic and SQS queue "
                "policies (separate or inline), and the resource policies of file systems, backup and "
                "Glacier vaults, event buses, streams, tables, Glue catalogs and CodeArtifact, admit no `*` principal without a condition that "
                "restricts the caller to an account, organisation, network or source, nor a service that acts "
                "for every customer (CloudFront, SNS, EventBridge, log delivery...) without aws:SourceArn or "
                "aws:SourceAccount; bucket and object "
                "ACLs are not public-read, public-read-write or authenticated-read and grant nothing to "
                "the AllUsers or AuthenticatedUsers groups; no Lambda layer or AMI is shared with every "
                "account.",
    resource_types=tuple(dict.fromkeys(tuple(RESOURCE_POLICY_PATHS) + tuple(ACL_PATHS)
                                       + (LAYER_PERMISSION, AMI_LAUNCH_PERMISSION))),
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

EKS_CLUSTER = "aws:eks/cluster:Cluster"


def _check_cluster_secrets(res: Resource) -> Iterator[Finding]:
    # Without encryption_config, Kubernetes Secrets are encrypted only with EKS's default
    # (AWS-owned) key; envelope encryption with a customer-managed key is what lets you
    # restrict and audit decryption (EKS user guide, "Encrypt Kubernetes secrets with KMS on
    # existing clusters" and "Default envelope encryption for all Kubernetes API Data").
    encryption = res.get("encryptionConfig")
    if is_unknown(encryption):
        yield cannot_check("encryptionConfig")
        return
    encryption = as_dict(encryption)
    resources = encryption.get("resources")
    key = as_dict(encryption.get("provider")).get("keyArn") if not is_unknown(encryption.get("provider")) \
        else encryption.get("provider")
    if is_unknown(resources):
        yield cannot_check("encryptionConfig.resources")
    elif "secrets" not in [str(r).lower() for r in as_list(resources)] or key is None or key == "":
        yield violation("encryptionConfig", encryption or None,
                        "Kubernetes Secrets (API keys, tokens, the model server's key) are then encrypted only "
                        "with the EKS default key, which you cannot restrict or audit",
                        "set encryption_config={resources: [\"secrets\"], provider: {key_arn: <customer-managed "
                        "KMS key ARN>}}",
                        rendered="not set" if not encryption else "without secrets and a KMS key")


SSM_PARAMETER = "aws:ssm/parameter:Parameter"


def _check_secure_string(res: Resource) -> Iterator[Finding]:
    # A SecureString without key_id is encrypted with the AWS-managed alias/aws/ssm key
    # (Systems Manager user guide, "How AWS Systems Manager Parameter Store uses AWS KMS");
    # Checkov CKV_AWS_337.
    kind = res.get("type")
    if is_unknown(kind):
        yield cannot_check("type")
        return
    if str(kind or "") != "SecureString":
        return
    key = res.get("keyId")
    if is_unknown(key):
        return  # a key computed from another resource is a customer-managed key
    if key is None or (isinstance(key, str) and (not key.strip() or key.strip().lower().endswith("alias/aws/ssm"))):
        yield violation("keyId", key or None,
                        "the SecureString is then encrypted with the AWS-managed aws/ssm key, whose policy you "
                        "cannot change: every principal in the account with ssm:GetParameter can decrypt it",
                        "set key_id to a customer-managed KMS key whose policy names who may decrypt")


def _check_secret_key(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == EKS_CLUSTER:
        yield from _check_cluster_secrets(res)
        return
    if res.type == SSM_PARAMETER:
        yield from _check_secure_string(res)
        return
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
                "not the AWS-managed aws/secretsmanager key; so are SSM SecureString parameters (keyId, not "
                "aws/ssm); and EKS clusters envelope-encrypt Kubernetes Secrets with a customer-managed key "
                "(encryptionConfig).",
    resource_types=("aws:secretsmanager/secret:Secret", SSM_PARAMETER, EKS_CLUSTER),
    check=_check_secret_key,
    remediation="Set kms_key_id to a customer-managed key; give EKS clusters encryption_config for secrets.",
)


POLICIES = [
    KMS_KEY_POLICY_RESTRICTED,
    RESOURCE_POLICY_NOT_PUBLIC,
    SECRETS_CUSTOMER_MANAGED_KEY,
]
