"""Family 3, identities and resource policies, through the analyzer protocol: violating and
compliant twins, with documents spelt every way a program writes them (json.dumps,
Output.json_dumps, the get_policy_document invoke, a single statement or a list, typed Args)."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
ACCOUNT = "123456789012"


def _doc(*statements: dict, single: bool = False) -> dict:
    return {"Version": "2012-10-17", "Statement": statements[0] if single else list(statements)}


ALL_ON_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
S3_ON_ALL = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": ["*"]}
NOT_ACTION = {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}
NOT_RESOURCE = {"Effect": "Allow", "Action": "ec2:*", "NotResource": "arn:aws:ec2:*:*:instance/i-1"}
READ_ONLY = {"Effect": "Allow", "Action": ["ec2:Describe*", "s3:ListAllMyBuckets", "ecr:GetAuthorizationToken"],
             "Resource": "*"}
SCOPED = {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::weights/*"}
DENY_ALL = {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"}


# ---- iam-no-admin-access -------------------------------------------------------------------

@pytest.mark.parametrize("statement,fragment", [
    (ALL_ON_ALL, 'Action "*" on Resource "*"'),
    (S3_ON_ALL, 'Action "s3:*" on Resource "*"'),
    (NOT_ACTION, 'NotAction "iam:*" (every other action)'),
    (NOT_RESOURCE, 'NotResource "arn:aws:ec2:*:*:instance/i-1" (every other resource)'),
], ids=["star", "service-star", "not-action", "not-resource"])
def test_wildcard_grants_are_violations_in_every_document_spelling(pack, statement, fragment):
    def program():
        aws.iam.Policy("managed-json", policy=json.dumps(_doc(statement)))
        aws.iam.Policy("managed-single", policy=json.dumps(_doc(statement, single=True)))
        aws.iam.Policy("managed-output", policy=pulumi.Output.json_dumps(
            _doc({**statement, "Effect": pulumi.Output.from_input("Allow")})))
        aws.iam.RolePolicy("inline", role="r", policy=json.dumps(_doc(READ_ONLY, statement)))
        aws.iam.UserPolicy("user", user="u", policy=json.dumps(_doc(statement)))
        aws.iam.GroupPolicy("group", group="g", policy=json.dumps(_doc(statement)))
        aws.iam.Role("with-inline", assume_role_policy=json.dumps(_doc(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}})),
            inline_policies=[{"name": "x", "policy": json.dumps(_doc(statement))}])

    verdict = judge(pack, program)
    for type_token, name in ((POLICY, "managed-json"), (POLICY, "managed-single"), (POLICY, "managed-output"),
                             (ROLE_POLICY, "inline"), (USER_POLICY, "user"), (GROUP_POLICY, "group"),
                             (ROLE, "with-inline")):
        expect_violation(verdict, "iam-no-admin-access", type_token, name, contains=[fragment])
    expect_violation(verdict, "iam-no-admin-access", ROLE_POLICY, "inline", contains=["Statement[1]"])
    expect_violation(verdict, "iam-no-admin-access", ROLE, "with-inline", contains=["inlinePolicies[0].policy"])


def test_invoke_documents_are_judged_like_json(pack):
    def program():
        broad = aws.iam.get_policy_document(statements=[
            aws.iam.GetPolicyDocumentStatementArgs(actions=["dynamodb:*"], resources=["*"])])
        aws.iam.Policy("invoke-broad", policy=broad.json)
        aws.iam.Policy("invoke-output", policy=aws.iam.get_policy_document_output(statements=[
            {"not_actions": ["iam:*"], "resources": ["*"]}]).json)
        fine = aws.iam.get_policy_document(statements=[
            {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::weights/*"]},
            {"actions": ["ec2:DescribeInstances"], "resources": ["*"]}])
        aws.iam.Policy("invoke-scoped", policy=fine.json)

    verdict = judge(pack, program)
    expect_violation(verdict, "iam-no-admin-access", POLICY, "invoke-broad", contains=['"dynamodb:*"'])
    expect_violation(verdict, "iam-no-admin-access", POLICY, "invoke-output", contains=["NotAction"])
    assert not verdict.on("iam-no-admin-access", POLICY, "invoke-scoped"), verdict.describe()


def test_read_only_star_scoped_service_star_and_deny_statements_pass(pack):
    def program():
        aws.iam.Policy("read-only", policy=json.dumps(_doc(READ_ONLY)))
        aws.iam.Policy("scoped", policy=json.dumps(_doc(SCOPED, single=True)))
        aws.iam.Policy("deny", policy=json.dumps(_doc(DENY_ALL, READ_ONLY)))
        aws.iam.RolePolicyAttachment("ssm", role="r",
                                     policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")

    expect_clean(judge(pack, program), "iam-no-admin-access")


@pytest.mark.parametrize("policy_name", ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess",
                                         "AmazonS3FullAccess", "job-function/SystemAdministrator"])
def test_attaching_aws_managed_admin_class_policies_is_a_violation(pack, policy_name):
    arn = f"arn:aws:iam::aws:policy/{policy_name}"

    def program():
        aws.iam.RolePolicyAttachment("attach", role="r", policy_arn=arn)
        aws.iam.PolicyAttachment("shared", policy_arn=arn, roles=["r"])
        aws.iam.UserPolicyAttachment("user", user="u", policy_arn=arn)
        aws.iam.GroupPolicyAttachment("group", group="g", policy_arn=arn)
        aws.iam.RolePolicyAttachmentsExclusive("exclusive", role_name="r", policy_arns=[
            "arn:aws:iam::aws:policy/ReadOnlyAccess", arn])
        aws.iam.Role("managed-arns", managed_policy_arns=[arn], assume_role_policy=json.dumps(_doc(
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}})))
        aws.ssoadmin.ManagedPolicyAttachment("sso", instance_arn="arn:aws:sso:::instance/x",
                                             permission_set_arn="arn:aws:sso:::permissionSet/x/y",
                                             managed_policy_arn=arn)

    verdict = judge(pack, program)
    for type_token, name, path in (
            (ATTACHMENT, "attach", "policyArn"),
            ("aws:iam/policyAttachment:PolicyAttachment", "shared", "policyArn"),
            ("aws:iam/userPolicyAttachment:UserPolicyAttachment", "user", "policyArn"),
            ("aws:iam/groupPolicyAttachment:GroupPolicyAttachment", "group", "policyArn"),
            ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "exclusive", "policyArns[1]"),
            (ROLE, "managed-arns", "managedPolicyArns[0]"),
            ("aws:ssoadmin/managedPolicyAttachment:ManagedPolicyAttachment", "sso", "managedPolicyArn")):
        expect_violation(verdict, "iam-no-admin-access", type_token, name, contains=[f"{path} is \"{arn}\""])


def test_a_document_unknown_during_preview_is_advisory_not_a_pass(pack):
    def program():
        aws.iam.Policy("computed", policy=unknown_of(json.dumps(_doc(ALL_ON_ALL))))

    verdict = judge(pack, program)
    expect_violation(verdict, "iam-no-admin-access", POLICY, "computed", level="advisory",
                     contains=["unknown during preview"])


def test_a_document_that_is_not_json_is_a_violation(pack):
    def program():
        aws.iam.Policy("garbled", policy="{not json")

    expect_violation(judge(pack, program), "iam-no-admin-access", POLICY, "garbled", contains=["not valid JSON"])


def test_the_baseline_is_advisory_in_dev(pack):
    def program():
        aws.iam.Policy("admin", policy=json.dumps(_doc(ALL_ON_ALL)))

    expect_violation(judge(pack, program, env="dev"), "iam-no-admin-access", POLICY, "admin", level="advisory")
    expect_violation(judge(pack, program, env="staging"), "iam-no-admin-access", POLICY, "admin")


# ---- iam-trust-restricted ------------------------------------------------------------------

def _trust(principal, condition=None, effect="Allow", key="Principal") -> str:
    statement = {"Effect": effect, "Action": "sts:AssumeRole", key: principal}
    if condition:
        statement["Condition"] = condition
    return json.dumps(_doc(statement))


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ["arn:aws:iam::111122223333:root", "*"]},
                                       {"AWS": "arn:aws:iam::*:role/deployer"}],
                         ids=["star", "aws-star", "aws-list", "wildcard-account"])
def test_open_trust_without_a_restricting_condition_is_a_violation(pack, principal):
    def program():
        aws.iam.Role("open", assume_role_policy=_trust(principal))
        aws.iam.Role("open-weak-condition", assume_role_policy=_trust(
            principal, {"Bool": {"aws:SecureTransport": "true"},
                        "StringNotEquals": {"aws:PrincipalOrgID": "o-abc"}}))
        aws.iam.Role("open-if-exists", assume_role_policy=_trust(
            principal, {"StringEqualsIfExists": {"aws:PrincipalAccount": ACCOUNT}}))
        aws.iam.Role("open-org", assume_role_policy=_trust(principal, {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}))

    verdict = judge(pack, program)
    for name in ("open", "open-weak-condition", "open-if-exists"):
        expect_violation(verdict, "iam-trust-restricted", ROLE, name, contains=["Principal is", "any AWS account"])
    assert not verdict.on("iam-trust-restricted", ROLE, "open-org"), verdict.describe("iam-trust-restricted")


def test_allow_with_not_principal_is_open_trust(pack):
    def program():
        aws.iam.Role("not-principal", assume_role_policy=_trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                                key="NotPrincipal"))

    expect_violation(judge(pack, program), "iam-trust-restricted", ROLE, "not-principal", contains=["NotPrincipal"])


@pytest.mark.parametrize("service", ["vpc-flow-logs.amazonaws.com", "apigateway.amazonaws.com",
                                     "logs.us-east-1.amazonaws.com", "cloudtrail.amazonaws.com"])
def test_confused_deputy_services_need_a_source_condition(pack, service):
    def program():
        aws.iam.Role("unpinned", assume_role_policy=_trust({"Service": service}))
        aws.iam.Role("account", assume_role_policy=_trust(
            {"Service": [service]}, {"StringEquals": {"aws:SourceAccount": ACCOUNT}}))
        aws.iam.Role("arn", assume_role_policy=aws.iam.get_policy_document(statements=[{
            "actions": ["sts:AssumeRole"], "principals": [{"type": "Service", "identifiers": [service]}],
            "conditions": [{"test": "ArnLike", "variable": "aws:SourceArn",
                            "values": [f"arn:aws:logs:us-east-1:{ACCOUNT}:*"]}]}]).json)
        aws.iam.Role("wildcard-source", assume_role_policy=_trust(
            {"Service": service}, {"StringLike": {"aws:SourceAccount": "*"}}))

    verdict = judge(pack, program)
    expect_violation(verdict, "iam-trust-restricted", ROLE, "unpinned",
                     contains=[f'Principal.Service is "{service}"', "confused deputy", "aws:SourceAccount"])
    expect_violation(verdict, "iam-trust-restricted", ROLE, "wildcard-source")
    for name in ("account", "arn"):
        assert not verdict.on("iam-trust-restricted", ROLE, name), verdict.describe("iam-trust-restricted")


def test_passed_role_services_and_pod_identity_need_no_source_condition(pack):
    def program():
        for service in ("ec2.amazonaws.com", "eks.amazonaws.com", "lambda.amazonaws.com",
                        "pods.eks.amazonaws.com"):
            aws.iam.Role(service.split(".")[0], assume_role_policy=_trust({"Service": service}))
        aws.iam.Role("account-root", assume_role_policy=_trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}))

    expect_clean(judge(pack, program), "iam-trust-restricted")


def test_the_confused_deputy_list_is_configurable(pack):
    def program():
        aws.iam.Role("tasks", assume_role_policy=_trust({"Service": "ecs-tasks.amazonaws.com"}))

    config = {"iam-trust-restricted": {"enforcementLevel": "mandatory",
                                       "confusedDeputyServices": ["ecs-tasks.amazonaws.com"]}}
    expect_violation(judge(pack, program, config=config), "iam-trust-restricted", ROLE, "tasks")
    expect_clean(judge(pack, program), "iam-trust-restricted")


# ---- kms-key-policy-restricted -------------------------------------------------------------

ROOT = {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}


def test_key_policies_open_to_everyone_are_violations(pack):
    open_use = {"Sid": "everyone", "Effect": "Allow", "Principal": "*", "Action": ["kms:Decrypt"], "Resource": "*"}

    def program():
        aws.kms.Key("open", policy=json.dumps(_doc(ROOT, open_use)))
        aws.kms.KeyPolicy("open-separate", key_id="k", policy=pulumi.Output.json_dumps(_doc({**open_use,
                                                                                          "Principal": {"AWS": "*"}})))
        aws.kms.Key("default")
        aws.kms.Key("root-only", policy=json.dumps(_doc(ROOT, single=True)))
        aws.kms.Key("open-for-account", policy=json.dumps(_doc(ROOT, {**open_use, "Condition": {
            "StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:ViaService": "ec2.us-east-1.amazonaws.com"}}})))

    verdict = judge(pack, program)
    expect_violation(verdict, "kms-key-policy-restricted", "aws:kms/key:Key", "open",
                     contains=["Statement[1] (Sid everyone).Principal is \"*\""])
    expect_violation(verdict, "kms-key-policy-restricted", "aws:kms/keyPolicy:KeyPolicy", "open-separate",
                     contains=['AWS "*"'])
    for name in ("default", "root-only", "open-for-account"):
        assert not verdict.on("kms-key-policy-restricted", "aws:kms/key:Key", name), verdict.describe()


# ---- resource-policy-not-public ------------------------------------------------------------

def _public(action: str, resource: str) -> dict:
    return _doc({"Effect": "Allow", "Principal": "*", "Action": action, "Resource": resource})


def test_public_resource_policies_are_violations_on_every_carrier(pack):
    def program():
        aws.s3.BucketPolicy("bucket", bucket="b", policy=json.dumps(_public("s3:GetObject", "arn:aws:s3:::b/*")))
        aws.s3.Bucket("inline-bucket", policy=json.dumps(_public("s3:GetObject", "arn:aws:s3:::c/*")))
        aws.secretsmanager.SecretPolicy("secret", secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:x",
                                        policy=json.dumps(_public("secretsmanager:GetSecretValue", "*")))
        aws.ecr.RepositoryPolicy("repo", repository="r", policy=json.dumps(_doc(
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["ecr:BatchGetImage"]})))
        aws.sns.TopicPolicy("topic", arn="arn:aws:sns:us-east-1:1:t", policy=aws.iam.get_policy_document(
            statements=[{"actions": ["sns:Publish"], "resources": ["*"],
                         "principals": [{"type": "*", "identifiers": ["*"]}]}]).json)
        aws.sqs.QueuePolicy("queue", queue_url="https://sqs/q", policy=json.dumps(_public("sqs:SendMessage", "*")))
        aws.sqs.Queue("inline-queue", policy=json.dumps(_public("sqs:SendMessage", "*")))
        aws.sns.Topic("inline-topic", policy=json.dumps(_public("sns:Subscribe", "*")))

    verdict = judge(pack, program)
    for type_token, name in (("aws:s3/bucketPolicy:BucketPolicy", "bucket"), ("aws:s3/bucket:Bucket", "inline-bucket"),
                             ("aws:secretsmanager/secretPolicy:SecretPolicy", "secret"),
                             ("aws:ecr/repositoryPolicy:RepositoryPolicy", "repo"),
                             ("aws:sns/topicPolicy:TopicPolicy", "topic"), ("aws:sqs/queuePolicy:QueuePolicy", "queue"),
                             ("aws:sqs/queue:Queue", "inline-queue"), ("aws:sns/topic:Topic", "inline-topic")):
        expect_violation(verdict, "resource-policy-not-public", type_token, name,
                         contains=["Principal is", "every AWS account"])


def test_resource_policies_for_named_or_conditioned_principals_pass(pack):
    def program():
        aws.s3.BucketPolicy("vpce-only", bucket="b", policy=json.dumps(_doc({
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-123"}}})))
        aws.s3.BucketPolicy("deny-insecure", bucket="b", policy=json.dumps(_doc({
            "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}})))
        aws.sns.TopicPolicy("service", arn="arn:aws:sns:us-east-1:1:t", policy=json.dumps(_doc({
            "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": "*", "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}})))
        aws.sqs.QueuePolicy("account", queue_url="https://sqs/q", policy=json.dumps(_doc({
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sqs:*",
            "Resource": "*"})))

    expect_clean(judge(pack, program), "resource-policy-not-public")


# ---- endpoint services: Family 1 judges them -------------------------------------------------

def test_an_endpoint_service_open_to_every_account_is_refused_by_the_exposure_family(pack):
    def program():
        aws.ec2.VpcEndpointService("open", acceptance_required=False, network_load_balancer_arns=["arn:nlb"],
                                   allowed_principals=["*"])

    expect_violation(judge(pack, program), "service-network-authenticated",
                     "aws:ec2/vpcEndpointService:VpcEndpointService", "open", contains=["allowedPrincipals[0]"])


# ---- secrets-customer-managed-key ----------------------------------------------------------

def test_secrets_need_a_customer_managed_key(pack):
    def program():
        aws.secretsmanager.Secret("default-key")
        aws.secretsmanager.Secret("aws-managed", kms_key_id="alias/aws/secretsmanager")
        key = aws.kms.Key("cmk")
        aws.secretsmanager.Secret("cmk", kms_key_id=key.arn)
        aws.secretsmanager.Secret("cmk-alias", kms_key_id="alias/llm-data")

    verdict = judge(pack, program)
    secret = "aws:secretsmanager/secret:Secret"
    expect_violation(verdict, "secrets-customer-managed-key", secret, "default-key", contains=["kmsKeyId is not set"])
    expect_violation(verdict, "secrets-customer-managed-key", secret, "aws-managed",
                     contains=['"alias/aws/secretsmanager"'])
    assert len(verdict.of("secrets-customer-managed-key")) == 2, verdict.describe("secrets-customer-managed-key")
