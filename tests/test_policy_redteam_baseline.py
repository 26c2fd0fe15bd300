"""Family 3 judged on programs its authors did not write: ordinary pulumi-aws v7 /
pulumi-kubernetes v4 programs a security team expects to be flagged, in spellings the rules
might not anticipate, each with a compliant twin so a fix cannot pass by flagging everything.
Every program is judged by the real pack over the analyzer protocol."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

ACCOUNT = "123456789012"
POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ADMIN = "iam-no-admin-access"
TRUST = "iam-trust-restricted"
PUBLIC = "resource-policy-not-public"
KMS = "kms-key-policy-restricted"


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


# ---- iam-no-admin-access: how real programs spell "everything" --------------------------------

@pytest.mark.parametrize("action,resource", [
    ("S3:*", "*"),
    ("Iam:*", ["*"]),
    ("*:*", "*"),
    (["s3:GetObject", "iam:*"], "*"),
    ("s3:*", "arn:aws:s3:::*"),
    ("s3:*", "arn:aws:s3:::*/*"),
    ("s3:*", ["arn:aws:s3:::weights/*", "arn:aws:s3:::*/*"]),
    ("dynamodb:*", "arn:aws:dynamodb:*:*:*"),
    ("*", "arn:*:*:*:*:*"),
    ("s3:*", "arn:aws-us-gov:s3:::*"),
], ids=["upper-service", "mixed-case-list-resource", "star-colon-star", "list-with-iam", "s3-every-bucket",
        "s3-every-object", "one-of-many-resources", "dynamodb-every-arn", "star-any-arn", "gov-partition"])
def test_broad_grants_in_unanticipated_spellings_are_violations(pack, action, resource):
    def program():
        aws.iam.Policy("broad", policy=_doc(_allow(action, resource)))
        aws.iam.RolePolicy("inline", role="r", policy=pulumi.Output.json_dumps(
            {"Version": "2012-10-17", "Statement": _allow(action, resource)}))

    verdict = judge(pack, program)
    expect_violation(verdict, ADMIN, POLICY, "broad", contains=["Statement[0]", "Allow"])
    expect_violation(verdict, ADMIN, ROLE_POLICY, "inline")


def test_scoped_and_read_only_grants_stay_compliant(pack):
    def program():
        aws.iam.Policy("one-bucket", policy=_doc(_allow("s3:*", ["arn:aws:s3:::weights", "arn:aws:s3:::weights/*"])))
        aws.iam.Policy("read-only", policy=_doc(_allow(["ec2:Describe*", "s3:List*", "logs:Get*",
                                                        "ecr:GetAuthorizationToken"], "*")))
        aws.iam.Policy("one-table", policy=_doc(_allow(
            "dynamodb:*", f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/quota")))
        aws.iam.Policy("prefix", policy=_doc(_allow("s3:*", "arn:aws:s3:::weights/models/*")))

    expect_clean(judge(pack, program), ADMIN)


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws-us-gov:iam::aws:policy/AdministratorAccess",
    "arn:aws-cn:iam::aws:policy/PowerUserAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
    "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
])
def test_admin_class_attachments_in_every_partition_are_violations(pack, arn):
    def program():
        aws.iam.RolePolicyAttachment("attach", role="r", policy_arn=arn)
        aws.iam.Role("managed", managed_policy_arns=[arn], assume_role_policy=_doc(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}}))

    verdict = judge(pack, program)
    expect_violation(verdict, ADMIN, ATTACHMENT, "attach", contains=[arn])
    expect_violation(verdict, ADMIN, ROLE, "managed", contains=[arn])


def test_an_attachment_whose_policy_is_unknown_during_preview_is_not_a_silent_pass(pack):
    def program():
        aws.iam.RolePolicyAttachment("computed", role="r",
                                     policy_arn=unknown_of("arn:aws:iam::aws:policy/AdministratorAccess"))
        aws.iam.RolePolicyAttachmentsExclusive("exclusive", role_name="r", policy_arns=[
            "arn:aws:iam::aws:policy/ReadOnlyAccess", unknown_of("arn:aws:iam::aws:policy/AdministratorAccess")])

    verdict = judge(pack, program)
    expect_violation(verdict, ADMIN, ATTACHMENT, "computed", level="advisory", contains=["unknown during preview"])
    expect_violation(verdict, ADMIN, "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
                     "exclusive", level="advisory", contains=["policyArns[1] is unknown during preview"])


# ---- iam-trust-restricted ---------------------------------------------------------------------

def _trust(principal, condition=None, action="sts:AssumeRole") -> str:
    statement = {"Effect": "Allow", "Action": action, "Principal": principal}
    if condition:
        statement["Condition"] = condition
    return _doc(statement)


OIDC = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC"
GITHUB = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


@pytest.mark.parametrize("principal,condition", [
    ({"AWS": ["*"]}, None),
    ({"AWS": "arn:aws:iam::*:root"}, None),
    ("*", {"StringLike": {"aws:PrincipalArn": "*"}}),
    ({"AWS": "*"}, {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}),
    ({"AWS": "*"}, {"StringEquals": {"sts:ExternalId": "shared-secret"}}),
    ({"AWS": "*"}, {"ArnLike": {"aws:PrincipalArn": "arn:*"}}),
], ids=["aws-list", "any-root", "principal-arn-star", "principal-arn-any-account", "external-id-only",
        "arn-star"])
def test_open_trust_with_a_condition_that_restricts_nothing_is_a_violation(pack, principal, condition):
    def program():
        aws.iam.Role("open", assume_role_policy=_trust(principal, condition))
        aws.iam.Role("pinned", assume_role_policy=_trust(principal, {
            "StringEquals": {"aws:PrincipalAccount": ACCOUNT}}))

    verdict = judge(pack, program)
    expect_violation(verdict, TRUST, ROLE, "open", contains=["Principal"])
    assert not verdict.on(TRUST, ROLE, "pinned"), verdict.describe(TRUST)


@pytest.mark.parametrize("federated,condition", [
    (OIDC, None),
    (OIDC, {"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"}}),
    (OIDC, {"StringLike": {f"{ISSUER}:sub": "*"}}),
    (OIDC, {"StringLike": {f"{ISSUER}:sub": "system:serviceaccount:*"}}),
    (GITHUB, {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}}),
    (GITHUB, {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:*"}}),
    ("cognito-identity.amazonaws.com", None),
], ids=["no-condition", "aud-only", "sub-star", "any-service-account", "github-aud-only", "github-any-repo",
        "cognito-no-aud"])
def test_web_identity_trust_without_a_subject_condition_is_a_violation(pack, federated, condition):
    def program():
        aws.iam.Role("web-identity", assume_role_policy=_trust({"Federated": federated}, condition,
                                                               action="sts:AssumeRoleWithWebIdentity"))

    expect_violation(judge(pack, program), TRUST, ROLE, "web-identity", contains=["Federated"])


def test_web_identity_trust_pinned_to_a_subject_passes(pack):
    def program():
        aws.iam.Role("irsa", assume_role_policy=_trust({"Federated": OIDC}, {"StringEquals": {
            f"{ISSUER}:sub": "system:serviceaccount:models:weights", f"{ISSUER}:aud": "sts.amazonaws.com"}},
            action="sts:AssumeRoleWithWebIdentity"))
        aws.iam.Role("github", assume_role_policy=_trust({"Federated": GITHUB}, {
            "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/deepseek-serving:ref:refs/heads/main"}},
            action="sts:AssumeRoleWithWebIdentity"))
        aws.iam.Role("cognito", assume_role_policy=_trust({"Federated": "cognito-identity.amazonaws.com"}, {
            "StringEquals": {"cognito-identity.amazonaws.com:aud": "us-east-1:12345678-1234-1234-1234-123456789012"},
            "ForAnyValue:StringLike": {"cognito-identity.amazonaws.com:amr": "authenticated"}},
            action="sts:AssumeRoleWithWebIdentity"))
        aws.iam.Role("saml", assume_role_policy=_trust(
            {"Federated": f"arn:aws:iam::{ACCOUNT}:saml-provider/corp"},
            {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}, action="sts:AssumeRoleWithSAML"))

    expect_clean(judge(pack, program), TRUST)


# ---- kms-key-policy-restricted ----------------------------------------------------------------

ROOT = {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}


@pytest.mark.parametrize("principal,condition", [
    ({"AWS": ["*"]}, None),
    ("*", {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}),
    ({"AWS": "*"}, {"StringLike": {"kms:CallerAccount": "*"}}),
], ids=["aws-list", "via-service-only", "caller-account-star"])
def test_key_policies_open_in_other_spellings_are_violations(pack, principal, condition):
    statement = {"Sid": "open", "Effect": "Allow", "Principal": principal, "Action": ["kms:Decrypt"], "Resource": "*"}
    if condition:
        statement["Condition"] = condition

    def program():
        aws.kms.Key("key", policy=_doc(ROOT, statement))
        aws.kms.KeyPolicy("separate", key_id="k", policy=aws.iam.get_policy_document(statements=[{
            "actions": ["kms:Decrypt"], "resources": ["*"],
            "principals": [{"type": "AWS", "identifiers": ["*"]}]}]).json)

    verdict = judge(pack, program)
    expect_violation(verdict, KMS, "aws:kms/key:Key", "key", contains=["Sid open"])
    expect_violation(verdict, KMS, "aws:kms/keyPolicy:KeyPolicy", "separate")


# ---- resource-policy-not-public ---------------------------------------------------------------

def test_public_resource_policies_in_other_spellings_are_violations(pack):
    open_read = {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:GetObject",
                 "Resource": "arn:aws:s3:::site/*"}

    def program():
        aws.s3.BucketPolicy("aws-list", bucket="site", policy=_doc(open_read))
        aws.s3.BucketPolicy("weak-condition", bucket="site", policy=_doc(
            {**open_read, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}))
        aws.ecr.RepositoryPolicy("pull", repository="r", policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": {"Sid": "pull", "Effect": "Allow", "Principal": "*",
                                                   "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}}))
        aws.sqs.QueuePolicy("any-root", queue_url="https://sqs/q", policy=_doc({
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::*:root"}, "Action": "sqs:*", "Resource": "*"}))

    verdict = judge(pack, program)
    for type_token, name in (("aws:s3/bucketPolicy:BucketPolicy", "aws-list"),
                             ("aws:s3/bucketPolicy:BucketPolicy", "weak-condition"),
                             ("aws:ecr/repositoryPolicy:RepositoryPolicy", "pull"),
                             ("aws:sqs/queuePolicy:QueuePolicy", "any-root")):
        expect_violation(verdict, PUBLIC, type_token, name)
