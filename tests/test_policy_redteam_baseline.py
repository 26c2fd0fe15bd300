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


def test_attaching_a_policy_declared_in_the_program_is_judged_at_the_policy(pack):
    def program():
        admin = aws.iam.Policy("admin", policy=_doc(_allow("*", "*")))
        aws.iam.RolePolicyAttachment("admin", role="r", policy_arn=admin.arn)
        scoped = aws.iam.Policy("scoped", policy=_doc(_allow("s3:GetObject", "arn:aws:s3:::weights/*")))
        aws.iam.RolePolicyAttachment("scoped", role="r", policy_arn=scoped.arn)

    verdict = judge(pack, program)
    expect_violation(verdict, ADMIN, POLICY, "admin")
    # The ARN is unknown during preview; the document it names is judged where it is declared,
    # so the attachment itself adds nothing (not even a "cannot check" advisory).
    assert not verdict.on(ADMIN, ATTACHMENT, "admin") and not verdict.on(ADMIN, ATTACHMENT, "scoped")
    assert not verdict.on(ADMIN, POLICY, "scoped"), verdict.describe(ADMIN)


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


# ---- resource-policy-not-public: ACLs make a bucket public as surely as a policy -------------

BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def test_public_bucket_and_object_acls_are_violations(pack):
    def program():
        aws.s3.BucketAcl("canned", bucket="site", acl="public-read")
        aws.s3.BucketAclV2("canned-v2", bucket="site", acl="public-read-write")
        aws.s3.BucketAcl("authenticated", bucket="site", acl="authenticated-read")
        aws.s3.BucketAcl("grant", bucket="site", access_control_policy={
            "owner": {"id": "owner"},
            "grants": [{"permission": "FULL_CONTROL", "grantee": {"type": "CanonicalUser", "id": "owner"}},
                       {"permission": "READ", "grantee": {"type": "Group", "uri": ALL_USERS}}]})
        aws.s3.Bucket("inline-acl", acl="public-read")
        aws.s3.Bucket("inline-grant", grants=[{"type": "Group", "uri": AUTHENTICATED_USERS,
                                               "permissions": ["READ"]}])
        aws.s3.BucketObjectv2("object", bucket="site", key="index.html", content="hi", acl="public-read")

    verdict = judge(pack, program)
    for type_token, name, fragment in (
            (BUCKET_ACL, "canned", 'acl is "public-read"'),
            ("aws:s3/bucketAclV2:BucketAclV2", "canned-v2", 'acl is "public-read-write"'),
            (BUCKET_ACL, "authenticated", 'acl is "authenticated-read"'),
            (BUCKET_ACL, "grant", "accessControlPolicy.grants[1]"),
            ("aws:s3/bucket:Bucket", "inline-acl", 'acl is "public-read"'),
            ("aws:s3/bucket:Bucket", "inline-grant", "grants[0]"),
            ("aws:s3/bucketObjectv2:BucketObjectv2", "object", 'acl is "public-read"')):
        expect_violation(verdict, PUBLIC, type_token, name, contains=[fragment])


def test_private_and_log_delivery_acls_pass(pack):
    def program():
        aws.s3.BucketAcl("private", bucket="b", acl="private")
        aws.s3.BucketAcl("logs", bucket="b", acl="log-delivery-write")
        aws.s3.BucketAcl("owner", bucket="b", access_control_policy={
            "owner": {"id": "owner"},
            "grants": [{"permission": "FULL_CONTROL", "grantee": {"type": "CanonicalUser", "id": "owner"}}]})
        aws.s3.Bucket("plain")
        aws.s3.BucketObjectv2("object", bucket="b", key="k", content="x", acl="bucket-owner-full-control")

    expect_clean(judge(pack, program), PUBLIC)


# ---- log-group-protected ----------------------------------------------------------------------

def test_a_blank_kms_key_is_no_key(pack):
    def program():
        aws.cloudwatch.LogGroup("blank-key", retention_in_days=30, kms_key_id="")
        aws.cloudwatch.LogGroup("keyed", retention_in_days=30, kms_key_id=aws.kms.Key("logs").arn)

    verdict = judge(pack, program)
    expect_violation(verdict, "log-group-protected", "aws:cloudwatch/logGroup:LogGroup", "blank-key",
                     contains=["kmsKeyId"])
    assert not verdict.on("log-group-protected", "aws:cloudwatch/logGroup:LogGroup", "keyed"), verdict.describe()


# ---- execute-api-endpoint-disabled: a REST API mapped with the v2 ApiMapping ------------------

def test_a_rest_api_mapped_through_an_apigatewayv2_api_mapping_must_disable_execute_api(pack):
    def program():
        domain = aws.apigateway.DomainName("domain", domain_name="api.example.com",
                                           regional_certificate_arn="arn:aws:acm:us-east-1:1:certificate/x",
                                           endpoint_configuration={"types": "REGIONAL"}, security_policy="TLS_1_2")
        open_api = aws.apigateway.RestApi("open", endpoint_configuration={"types": "REGIONAL"})
        closed = aws.apigateway.RestApi("closed", disable_execute_api_endpoint=True,
                                        endpoint_configuration={"types": "REGIONAL"})
        aws.apigatewayv2.ApiMapping("open", api_id=open_api.id, domain_name=domain.domain_name, stage="v1")
        aws.apigatewayv2.ApiMapping("closed", api_id=closed.id, domain_name=domain.domain_name, stage="v1")

    verdict = judge(pack, program)
    expect_violation(verdict, "execute-api-endpoint-disabled", "aws:apigateway/restApi:RestApi", "open",
                     contains=["disableExecuteApiEndpoint"])
    assert not verdict.on("execute-api-endpoint-disabled", "aws:apigateway/restApi:RestApi", "closed")
    assert not [d for d in verdict.of("execute-api-endpoint-disabled") if d.enforcement_level == "advisory"], \
        verdict.describe("execute-api-endpoint-disabled")


# ---- no-literal-credentials: credentials outside request_parameters ---------------------------

CREDS = "no-literal-credentials"


@pytest.mark.parametrize("kwargs,fragment", [
    ({"uri": "https://svc:s3cr3t@backend.internal/v1/chat/completions"}, "uri"),
    ({"uri": "https://backend.internal/v1/chat/completions?api_key=sk-live-123"}, "uri"),
    ({"request_templates": {"application/json":
                            '#set($context.requestOverride.header.Authorization = "Bearer sk-live-123")\n$input.body'}},
     "requestTemplates"),
    ({"request_templates": {"application/json": '{"api_key": "sk-live-1234567890", "prompt": $input.json(\'$.p\')}'}},
     "requestTemplates"),
], ids=["userinfo", "query-key", "vtl-override", "template-body-key"])
def test_credentials_written_into_the_uri_or_templates_are_violations(pack, kwargs, fragment):
    def program():
        aws.apigateway.Integration("literal", rest_api="a", resource_id="r", http_method="POST", type="HTTP",
                                   integration_http_method="POST",
                                   **{"uri": "https://backend.internal/v1/chat/completions", **kwargs})

    expect_violation(judge(pack, program), CREDS, "aws:apigateway/integration:Integration", "literal",
                     contains=[fragment])


def test_mapped_credentials_in_uri_and_templates_pass(pack):
    def program():
        aws.apigateway.Integration("mapped", rest_api="a", resource_id="r", http_method="POST", type="HTTP",
                                   integration_http_method="POST",
                                   uri="https://backend.internal/v1/chat/completions?model=deepseek",
                                   request_templates={"application/json": (
                                       "#set($context.requestOverride.header.Authorization = "
                                       "$context.authorizer.backendToken)\n$input.body")})
        aws.apigatewayv2.Integration("v2-mapped", api_id="a", integration_type="HTTP_PROXY",
                                     integration_method="POST", integration_uri="https://backend.internal/v1")

    expect_clean(judge(pack, program), CREDS)


def test_credentials_in_an_openapi_body_integration_are_violations(pack):
    def body(authorization: str) -> str:
        return json.dumps({"openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "paths": {"/v1/chat": {"post": {
            "security": [{"api_key": []}],
            "x-amazon-apigateway-integration": {
                "type": "http_proxy", "httpMethod": "POST", "uri": "https://backend.internal/v1/chat",
                "requestParameters": {"integration.request.header.Authorization": authorization}}}}},
            "components": {"securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}}})

    def program():
        aws.apigateway.RestApi("literal", body=body("'Bearer sk-live-123'"))
        aws.apigateway.RestApi("mapped", body=body("context.authorizer.backendToken"))

    verdict = judge(pack, program)
    expect_violation(verdict, CREDS, "aws:apigateway/restApi:RestApi", "literal",
                     contains=["x-amazon-apigateway-integration.requestParameters"])
    assert not verdict.on(CREDS, "aws:apigateway/restApi:RestApi", "mapped"), verdict.describe(CREDS)


# ---- Kubernetes ---------------------------------------------------------------------------------

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PEERS = "k8s-network-policy-pod-selected"
UID = "k8s-high-uid"


def _vllm(uid=10001) -> dict:
    return {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
            "args": ["--model", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "--max-model-len", "16384"],
            "ports": [{"container_port": 8000, "name": "http"}],
            "security_context": {"run_as_user": uid, "run_as_non_root": True}}


def _model(name="llm", namespace="models", uid=10001):
    return k8s.apps.v1.Deployment(name, metadata={"namespace": namespace}, spec={
        "selector": {"match_labels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [_vllm(uid)]}}})


def _policy(name, ingress, selector=None):
    return k8s.networking.v1.NetworkPolicy(name, metadata={"namespace": "models"}, spec={
        "pod_selector": selector if selector is not None else {"match_labels": {"app": "llm"}},
        "policy_types": ["Ingress"], "ingress": ingress})


@pytest.mark.parametrize("rule", [
    {"from": [{"namespace_selector": {"match_labels": {"team": "apps"}}, "pod_selector": {}}],
     "ports": [{"port": 8000}]},
    {"ports": [{"port": 8000}]},
    {"from": [], "ports": [{"port": "http"}]},
    {"from": [{"ip_block": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8000}]},
    {"from": [{"ip_block": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
], ids=["empty-pod-selector", "no-from", "empty-from", "internet-ip-block", "internet-except-private"])
def test_peers_that_admit_more_than_named_pods_to_a_model_port_are_violations(pack, rule):
    def program():
        _model()
        k8s.networking.v1.NetworkPolicy("deny", metadata={"namespace": "models"},
                                        spec={"pod_selector": {}, "policy_types": ["Ingress"]})
        _policy("wide", [rule])

    expect_violation(judge(pack, program), PEERS, NETWORK_POLICY, "wide", contains=["spec.ingress[0]"])


def test_named_pods_and_private_load_balancer_ranges_pass(pack):
    def program():
        _model()
        _policy("scraper", [{"from": [{"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "mon"}},
                                       "pod_selector": {"match_labels": {"app": "prometheus"}}}],
                             "ports": [{"port": "http"}]}])
        _policy("load-balancer", [{"from": [{"ip_block": {"cidr": "10.0.0.0/24"}}, {"ip_block": {"cidr": "10.0.1.0/24"}}],
                                   "ports": [{"port": 8000}]}])
        _policy("gateway", [{"from": [{"pod_selector": {"match_labels": {"app": "gateway"}}}]}])
        _policy("other-port-open", [{"ports": [{"port": 9400}]}])

    expect_clean(judge(pack, program), PEERS)


def test_every_workload_kind_is_held_to_the_uid_floor(pack):
    pod = {"containers": [{"name": "c", "image": "busybox@sha256:1", "security_context": {"run_as_user": 0}}],
           "security_context": {"run_as_user": 10001}}
    template = {"metadata": {"labels": {"app": "x"}}, "spec": pod}

    def program():
        k8s.apps.v1.StatefulSet("sts", spec={"selector": {"match_labels": {"app": "x"}}, "service_name": "x",
                                             "template": template})
        k8s.apps.v1.DaemonSet("ds", spec={"selector": {"match_labels": {"app": "x"}}, "template": template})
        k8s.batch.v1.CronJob("cron", spec={"schedule": "@daily", "job_template": {"spec": {"template": {
            "spec": {**pod, "restart_policy": "Never"}}}}})
        k8s.core.v1.ReplicationController("rc", spec={"selector": {"app": "x"}, "template": template})
        k8s.core.v1.PodTemplate("template", template=template)
        k8s.apps.v1.DeploymentPatch("patch", metadata={"name": "existing", "namespace": "models"},
                                    spec={"template": template})

    verdict = judge(pack, program)
    for type_token, name in (("kubernetes:apps/v1:StatefulSet", "sts"), ("kubernetes:apps/v1:DaemonSet", "ds"),
                             ("kubernetes:batch/v1:CronJob", "cron"),
                             ("kubernetes:core/v1:ReplicationController", "rc"),
                             ("kubernetes:core/v1:PodTemplate", "template"),
                             ("kubernetes:apps/v1:DeploymentPatch", "patch")):
        expect_violation(verdict, UID, type_token, name, contains=["containers[0].securityContext.runAsUser is 0"])


def test_a_container_that_overrides_a_high_pod_uid_downwards_is_a_violation(pack):
    def program():
        k8s.apps.v1.Deployment("llm", metadata={"namespace": "models"}, spec={
            "selector": {"match_labels": {"app": "llm"}},
            "template": {"metadata": {"labels": {"app": "llm"}}, "spec": {
                "security_context": {"run_as_user": 10001, "run_as_group": 10001},
                "containers": [_vllm(uid=1000), {"name": "sidecar", "image": "busybox@sha256:1"}]}}})

    verdict = judge(pack, program)
    found = verdict.on(UID, DEPLOYMENT, "llm")
    assert len(found) == 1 and "containers[0].securityContext.runAsUser is 1000" in found[0].message, \
        verdict.describe(UID)


# ---- EKS ------------------------------------------------------------------------------------------

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


def _group(name, template):
    return aws.eks.NodeGroup(name, cluster_name="c", node_role_arn="arn:role", subnet_ids=["subnet-1"],
                             scaling_config={"desired_size": 1, "min_size": 1, "max_size": 2},
                             launch_template=template)


def test_node_group_templates_found_by_literal_name_or_computed_name_are_judged(pack):
    def program():
        aws.ec2.LaunchTemplate("named", name="gpu-nodes", metadata_options={"http_tokens": "optional"})
        _group("by-literal-name", {"name": "gpu-nodes", "version": "$Latest"})
        auto = aws.ec2.LaunchTemplate("auto", metadata_options={"http_tokens": "required",
                                                                "http_put_response_hop_limit": 2})
        _group("by-computed-name", {"name": auto.name, "version": "$Default"})
        good = aws.ec2.LaunchTemplate("good", metadata_options={"http_tokens": "required",
                                                                "http_put_response_hop_limit": 1})
        _group("good", {"name": good.name, "version": good.latest_version.apply(str)})

    verdict = judge(pack, program)
    expect_violation(verdict, "eks-node-group-imdsv2", NODE_GROUP, "by-literal-name", contains=["(named)"])
    expect_violation(verdict, "eks-node-group-imdsv2", NODE_GROUP, "by-computed-name", contains=["(auto)"])
    assert not verdict.on("eks-node-group-imdsv2", NODE_GROUP, "good"), verdict.describe("eks-node-group-imdsv2")


def test_an_eks_cluster_without_secrets_encryption_is_a_baseline_violation(pack):
    def program():
        role = "arn:aws:iam::123456789012:role/eks"
        vpc = {"subnet_ids": ["subnet-1"], "endpoint_public_access": False, "endpoint_private_access": True}
        aws.eks.Cluster("plain", role_arn=role, vpc_config=vpc)
        aws.eks.Cluster("other-resources", role_arn=role, vpc_config=vpc,
                        encryption_config={"resources": ["configmaps"], "provider": {"key_arn": "arn:aws:kms:k"}})
        key = aws.kms.Key("eks")
        aws.eks.Cluster("encrypted", role_arn=role, vpc_config=vpc,
                        encryption_config={"resources": ["secrets"], "provider": {"key_arn": key.arn}})

    verdict = judge(pack, program)
    expect_violation(verdict, "secrets-customer-managed-key", "aws:eks/cluster:Cluster", "plain",
                     contains=["encryptionConfig"])
    expect_violation(verdict, "secrets-customer-managed-key", "aws:eks/cluster:Cluster", "other-resources")
    assert not verdict.on("secrets-customer-managed-key", "aws:eks/cluster:Cluster", "encrypted"), verdict.describe()


# ---- more carriers of resource policies ----------------------------------------------------------

def _open(action: str) -> str:
    return _doc({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": action, "Resource": "*"})


def test_other_resource_policy_carriers_open_to_everyone_are_violations(pack):
    def program():
        aws.efs.FileSystemPolicy("efs", file_system_id="fs-1", policy=_open("elasticfilesystem:ClientMount"))
        aws.s3control.AccessPointPolicy("access-point", access_point_arn="arn:aws:s3:us-east-1:1:accesspoint/ap",
                                        policy=_open("s3:GetObject"))
        aws.glacier.Vault("vault", access_policy=_open("glacier:InitiateJob"))
        aws.backup.VaultPolicy("backup", backup_vault_name="v", policy=_open("backup:CopyIntoBackupVault"))
        aws.cloudwatch.EventBusPolicy("bus", policy=_open("events:PutEvents"))
        aws.kinesis.ResourcePolicy("stream", resource_arn="arn:aws:kinesis:us-east-1:1:stream/s",
                                   policy=_open("kinesis:GetRecords"))
        aws.dynamodb.ResourcePolicy("table", resource_arn="arn:aws:dynamodb:us-east-1:1:table/t",
                                    policy=_open("dynamodb:GetItem"))
        aws.codeartifact.RepositoryPermissionsPolicy("packages", domain="d", repository="r",
                                                     policy_document=_open("codeartifact:ReadFromRepository"))
        aws.lambda_.LayerVersionPermission("layer", layer_name="l", version_number=1, principal="*",
                                           action="lambda:GetLayerVersion", statement_id="all")
        aws.ec2.AmiLaunchPermission("ami", image_id="ami-1", group="all")

    verdict = judge(pack, program)
    for type_token, name in (("aws:efs/fileSystemPolicy:FileSystemPolicy", "efs"),
                             ("aws:s3control/accessPointPolicy:AccessPointPolicy", "access-point"),
                             ("aws:glacier/vault:Vault", "vault"), ("aws:backup/vaultPolicy:VaultPolicy", "backup"),
                             ("aws:cloudwatch/eventBusPolicy:EventBusPolicy", "bus"),
                             ("aws:kinesis/resourcePolicy:ResourcePolicy", "stream"),
                             ("aws:dynamodb/resourcePolicy:ResourcePolicy", "table"),
                             ("aws:codeartifact/repositoryPermissionsPolicy:RepositoryPermissionsPolicy", "packages"),
                             ("aws:lambda/layerVersionPermission:LayerVersionPermission", "layer"),
                             ("aws:ec2/amiLaunchPermission:AmiLaunchPermission", "ami")):
        expect_violation(verdict, PUBLIC, type_token, name)


def test_other_carriers_restricted_to_the_account_or_a_mount_target_pass(pack):
    def program():
        # The EFS console's default policy: anyone, but only through a mount target in the VPC.
        aws.efs.FileSystemPolicy("efs-default", file_system_id="fs-1", policy=_doc({
            "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"], "Resource": "*",
            "Condition": {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}}))
        aws.cloudwatch.EventBusPolicy("org-bus", policy=_doc({
            "Effect": "Allow", "Principal": "*", "Action": "events:PutEvents", "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}))
        aws.lambda_.LayerVersionPermission("org-layer", layer_name="l", version_number=1, principal="*",
                                           organization_id="o-abc123", action="lambda:GetLayerVersion",
                                           statement_id="org")
        aws.lambda_.LayerVersionPermission("account-layer", layer_name="l", version_number=1, principal=ACCOUNT,
                                           action="lambda:GetLayerVersion", statement_id="acct")
        aws.ec2.AmiLaunchPermission("ami", image_id="ami-1", account_id=ACCOUNT)

    expect_clean(judge(pack, program), PUBLIC)


@pytest.mark.parametrize("service", ["bedrock.amazonaws.com", "pipes.amazonaws.com", "backup.amazonaws.com",
                                     "codebuild.amazonaws.com"])
def test_more_confused_deputy_services_need_a_source_condition(pack, service):
    def program():
        aws.iam.Role("unpinned", assume_role_policy=_trust({"Service": service}))
        aws.iam.Role("pinned", assume_role_policy=_trust({"Service": service}, {
            "StringEquals": {"aws:SourceAccount": ACCOUNT}}))

    verdict = judge(pack, program)
    expect_violation(verdict, TRUST, ROLE, "unpinned", contains=[service])
    assert not verdict.on(TRUST, ROLE, "pinned"), verdict.describe(TRUST)


@pytest.mark.parametrize("container", [
    {"name": "sglang", "image": "lmsysorg/sglang:v0.5.3-cu126",
     "command": ["python3", "-m", "sglang.launch_server", "--model-path", "deepseek-ai/DeepSeek-V3", "--port", "30000"],
     "ports": [{"container_port": 30000}]},
    {"name": "triton", "image": "nvcr.io/nvidia/tritonserver:25.01-trtllm-python-py3",
     "args": ["tritonserver", "--model-repository=/models"], "ports": [{"container_port": 8000}]},
    {"name": "llama", "image": "ghcr.io/ggml-org/llama.cpp:server-cuda", "args": ["-m", "/models/m.gguf"],
     "ports": [{"container_port": 8080}]},
], ids=["sglang", "triton", "llama-cpp"])
def test_namespaces_running_other_model_servers_need_a_default_deny(pack, container):
    def program():
        k8s.apps.v1.Deployment("server", metadata={"namespace": "inference"}, spec={
            "selector": {"match_labels": {"app": "server"}},
            "template": {"metadata": {"labels": {"app": "server"}}, "spec": {"containers": [container]}}})
        k8s.networking.v1.NetworkPolicy("namespace-wide", metadata={"namespace": "inference"}, spec={
            "pod_selector": {"match_labels": {"app": "server"}},
            "ingress": [{"from": [{"namespace_selector": {"match_labels": {"team": "apps"}}}]}]})

    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-default-deny", DEPLOYMENT, "server", contains=["namespace inference"])
    expect_violation(verdict, PEERS, NETWORK_POLICY, "namespace-wide")


def test_a_namespace_without_a_model_server_needs_no_default_deny(pack):
    def program():
        k8s.apps.v1.Deployment("web", metadata={"namespace": "apps"}, spec={
            "selector": {"match_labels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "ports": [{"container_port": 8080}]}]}}})

    expect_clean(judge(pack, program), "k8s-default-deny")


# ---- endpoint services (judged by Family 1, mandatory everywhere) ------------------------------

def test_an_endpoint_service_opened_by_a_separate_allowed_principal_is_refused(pack):
    def program():
        service = aws.ec2.VpcEndpointService("svc", acceptance_required=False,
                                             network_load_balancer_arns=["arn:aws:elasticloadbalancing:nlb"])
        aws.ec2.VpcEndpointServiceAllowedPrinciple("everyone", vpc_endpoint_service_id=service.id, principal_arn="*")
        aws.ec2.VpcEndpointServiceAllowedPrinciple("one-account", vpc_endpoint_service_id=service.id,
                                                   principal_arn=f"arn:aws:iam::{ACCOUNT}:root")

    verdict = judge(pack, program)
    assert verdict.on("service-network-authenticated", "aws:ec2/vpcEndpointServiceAllowedPrinciple:"
                      "VpcEndpointServiceAllowedPrinciple", "everyone") or \
        verdict.on("service-network-authenticated", "aws:ec2/vpcEndpointService:VpcEndpointService", "svc"), \
        verdict.describe()
    assert not verdict.on("service-network-authenticated", "aws:ec2/vpcEndpointServiceAllowedPrinciple:"
                          "VpcEndpointServiceAllowedPrinciple", "one-account"), verdict.describe()


# ---- integration-tls-verified: integrations declared in an OpenAPI body ----------------------------

def _tls_body(skip: bool) -> str:
    return json.dumps({"openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "paths": {"/v1/chat": {"post": {
        "security": [{"api_key": []}],
        "x-amazon-apigateway-integration": {
            "type": "http_proxy", "httpMethod": "POST", "uri": "https://backend.example.com/v1/chat",
            "connectionType": "VPC_LINK", "connectionId": "abc123",
            "tlsConfig": {"insecureSkipVerification": skip}}}}},
        "components": {"securitySchemes": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}}})


def test_an_openapi_body_integration_that_skips_tls_verification_is_a_violation(pack):
    def program():
        aws.apigateway.RestApi("skips", body=_tls_body(True))
        aws.apigateway.RestApi("verifies", body=_tls_body(False))

    verdict = judge(pack, program)
    expect_violation(verdict, "integration-tls-verified", "aws:apigateway/restApi:RestApi", "skips",
                     contains=["tlsConfig.insecureSkipVerification"])
    assert not verdict.on("integration-tls-verified", "aws:apigateway/restApi:RestApi", "verifies")


# ---- resource-policy-not-public: public by proxy through a service -------------------------------

def test_grants_to_services_that_act_for_every_customer_need_a_source_condition(pack):
    cloudfront = {"Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                  "Resource": "arn:aws:s3:::site/*"}
    from_topics = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                   "Resource": "*"}

    def program():
        aws.s3.BucketPolicy("any-distribution", bucket="site", policy=_doc(cloudfront))
        aws.s3.BucketPolicy("one-distribution", bucket="site", policy=_doc({**cloudfront, "Condition": {
            "StringEquals": {"AWS:SourceArn": f"arn:aws:cloudfront::{ACCOUNT}:distribution/E1"}}}))
        aws.sqs.QueuePolicy("any-topic", queue_url="https://sqs/q", policy=_doc(from_topics))
        aws.sqs.QueuePolicy("any-topic-wildcard", queue_url="https://sqs/q", policy=_doc({**from_topics, "Condition": {
            "ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:*"}}}))
        aws.sqs.QueuePolicy("one-topic", queue_url="https://sqs/q", policy=_doc({**from_topics, "Condition": {
            "ArnEquals": {"aws:SourceArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"}}}))
        aws.sns.TopicPolicy("account-owner", arn="arn:aws:sns:us-east-1:1:t", policy=_doc({
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": "*", "Condition": {"StringEquals": {"AWS:SourceOwner": ACCOUNT}}}))
        # A service that acts only inside the caller's account is not a proxy.
        aws.sqs.QueuePolicy("lambda", queue_url="https://sqs/q", policy=_doc({
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": "*"}))

    verdict = judge(pack, program)
    expect_violation(verdict, PUBLIC, "aws:s3/bucketPolicy:BucketPolicy", "any-distribution",
                     contains=['Principal.Service is "cloudfront.amazonaws.com"', "aws:SourceArn"])
    expect_violation(verdict, PUBLIC, "aws:sqs/queuePolicy:QueuePolicy", "any-topic")
    expect_violation(verdict, PUBLIC, "aws:sqs/queuePolicy:QueuePolicy", "any-topic-wildcard")
    for type_token, name in (("aws:s3/bucketPolicy:BucketPolicy", "one-distribution"),
                             ("aws:sqs/queuePolicy:QueuePolicy", "one-topic"),
                             ("aws:sns/topicPolicy:TopicPolicy", "account-owner"),
                             ("aws:sqs/queuePolicy:QueuePolicy", "lambda")):
        assert not verdict.on(PUBLIC, type_token, name), verdict.describe(PUBLIC)


def test_aws_managed_policy_enum_attachments_are_violations(pack):
    def program():
        aws.iam.RolePolicyAttachment("enum", role="r", policy_arn=aws.iam.ManagedPolicy.ADMINISTRATOR_ACCESS)
        aws.iam.RolePolicyAttachment("read-only", role="r", policy_arn=aws.iam.ManagedPolicy.READ_ONLY_ACCESS)

    verdict = judge(pack, program)
    expect_violation(verdict, ADMIN, ATTACHMENT, "enum", contains=["AdministratorAccess"])
    assert not verdict.on(ADMIN, ATTACHMENT, "read-only"), verdict.describe(ADMIN)


@pytest.mark.parametrize("condition", [
    {"StringLike": {"aws:PrincipalOrgID": "o-*"}},
    {"StringLike": {"aws:PrincipalAccount": "1234*"}},
    {"StringLike": {"aws:SourceVpce": "vpce-*"}},
    {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": "o-*/r-*/*"}},
], ids=["any-org", "account-range", "any-endpoint", "any-org-path"])
def test_wildcards_in_single_identifier_conditions_restrict_nothing(pack, condition):
    statement = {"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage", "Resource": "*",
                 "Condition": condition}

    def program():
        aws.ecr.RepositoryPolicy("wildcard", repository="r", policy=_doc(statement))
        aws.ecr.RepositoryPolicy("org-subtree", repository="r", policy=_doc({**statement, "Condition": {
            "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": "o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/*"}}}))
        aws.iam.Role("wildcard", assume_role_policy=_trust("*", condition))

    verdict = judge(pack, program)
    expect_violation(verdict, PUBLIC, "aws:ecr/repositoryPolicy:RepositoryPolicy", "wildcard")
    expect_violation(verdict, TRUST, ROLE, "wildcard")
    assert not verdict.on(PUBLIC, "aws:ecr/repositoryPolicy:RepositoryPolicy", "org-subtree"), verdict.describe(PUBLIC)


# ---- vpc-flow-logs: a VPC made by a multi-language component (awsx.ec2.Vpc) -----------------------

def _remote_component_output(component: pulumi.Resource, value: pulumi.Output) -> pulumi.Output:
    # What awsx.ec2.Vpc(...).vpc_id is: an output of the remote component itself, so a resource
    # computed from it depends on the component's URN, not on the aws:ec2/vpc:Vpc inside it.
    return pulumi.Output(resources={component}, future=value.future(), is_known=value.is_known(),
                         is_secret=value.is_secret())


def test_a_flow_log_on_a_component_made_vpc_counts_for_that_vpc(pack):
    def program():
        watched = pulumi.ComponentResource("awsx:ec2:Vpc", "watched", None, None, remote=True)
        vpc = aws.ec2.Vpc("watched", cidr_block="10.0.0.0/16", opts=pulumi.ResourceOptions(parent=watched))
        aws.ec2.FlowLog("watched", vpc_id=_remote_component_output(watched, vpc.id), traffic_type="ALL",
                        log_destination="arn:aws:s3:::flow-logs", log_destination_type="s3")
        unwatched = pulumi.ComponentResource("awsx:ec2:Vpc", "unwatched", None, None, remote=True)
        aws.ec2.Vpc("unwatched", cidr_block="10.1.0.0/16", opts=pulumi.ResourceOptions(parent=unwatched))

    verdict = judge(pack, program)
    expect_violation(verdict, "vpc-flow-logs", "aws:ec2/vpc:Vpc", "unwatched")
    assert not verdict.on("vpc-flow-logs", "aws:ec2/vpc:Vpc", "watched"), verdict.describe("vpc-flow-logs")


def test_a_mapping_that_names_the_api_through_its_stage_is_followed_to_the_api(pack):
    def program():
        domain = aws.apigateway.DomainName("domain", domain_name="api.example.com",
                                           regional_certificate_arn="arn:aws:acm:us-east-1:1:certificate/x",
                                           endpoint_configuration={"types": "REGIONAL"}, security_policy="TLS_1_2")
        api = aws.apigateway.RestApi("api", endpoint_configuration={"types": "REGIONAL"})
        deployment = aws.apigateway.Deployment("deployment", rest_api=api.id)
        stage = aws.apigateway.Stage("v1", rest_api=api.id, deployment=deployment.id, stage_name="v1")
        aws.apigateway.BasePathMapping("mapping", rest_api=stage.rest_api, stage_name=stage.stage_name,
                                       domain_name=domain.domain_name)

    verdict = judge(pack, program)
    expect_violation(verdict, "execute-api-endpoint-disabled", "aws:apigateway/restApi:RestApi", "api")
    assert not [d for d in verdict.of("execute-api-endpoint-disabled") if d.enforcement_level == "advisory"], \
        verdict.describe("execute-api-endpoint-disabled")


# ---- an open Allow confined by a Deny for everyone outside ----------------------------------------

_READ = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}


def _deny_outside(condition: dict, action="s3:*") -> dict:
    return {"Effect": "Deny", "Principal": "*", "Action": action, "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": condition}


def test_an_open_allow_confined_by_a_deny_for_everyone_outside_passes(pack):
    def program():
        aws.s3.BucketPolicy("endpoint-only", bucket="b", policy=_doc(
            _READ, _deny_outside({"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c"}})))
        aws.s3.BucketPolicy("org-only", bucket="b", policy=_doc(
            _READ, _deny_outside({"StringNotEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}}, action="*")))

    expect_clean(judge(pack, program), PUBLIC)


@pytest.mark.parametrize("deny", [
    _deny_outside({"StringNotLike": {"aws:SourceVpce": "vpce-*"}}),
    _deny_outside({"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c"}}, action="s3:PutObject"),
    _deny_outside({"Bool": {"aws:SecureTransport": "false"}}),
], ids=["any-endpoint", "other-action", "transport-only"])
def test_a_deny_that_does_not_confine_the_allow_leaves_it_public(pack, deny):
    def program():
        aws.s3.BucketPolicy("open", bucket="b", policy=_doc(_READ, deny))

    expect_violation(judge(pack, program), PUBLIC, "aws:s3/bucketPolicy:BucketPolicy", "open")


def test_for_all_values_on_a_single_valued_key_confines_nobody(pack):
    def program():
        aws.s3.BucketPolicy("vacuous", bucket="b", policy=_doc({**_READ, "Condition": {
            "ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}))
        aws.s3.BucketPolicy("org", bucket="b", policy=_doc({**_READ, "Condition": {
            "StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}}))

    verdict = judge(pack, program)
    expect_violation(verdict, PUBLIC, "aws:s3/bucketPolicy:BucketPolicy", "vacuous")
    assert not verdict.on(PUBLIC, "aws:s3/bucketPolicy:BucketPolicy", "org"), verdict.describe(PUBLIC)


# ---- waf-logs-redact-credentials: WAF Classic web ACLs log inline -----------------------------------

@pytest.mark.parametrize("acl_type", [aws.wafregional.WebAcl, aws.waf.WebAcl], ids=["regional", "global"])
def test_classic_web_acl_logging_must_redact_credential_headers(pack, acl_type):
    def logging(*headers):
        return {"log_destination": "arn:aws:firehose:us-east-1:1:deliverystream/aws-waf-logs-x",
                "redacted_fields": {"field_to_matches": [{"type": "HEADER", "data": h} for h in headers]}}

    def program():
        common = {"metric_name": "acl", "default_action": {"type": "ALLOW"}}
        acl_type("partial", name="partial", logging_configuration=logging("Authorization"), **common)
        acl_type("both", name="both", logging_configuration=logging("Authorization", "X-Api-Key"), **common)
        acl_type("unlogged", name="unlogged", **common)

    verdict = judge(pack, program)
    token = "aws:wafregional/webAcl:WebAcl" if acl_type is aws.wafregional.WebAcl else "aws:waf/webAcl:WebAcl"
    expect_violation(verdict, "waf-logs-redact-credentials", token, "partial", contains=["x-api-key"])
    for name in ("both", "unlogged"):
        assert not verdict.on("waf-logs-redact-credentials", token, name), verdict.describe()


# ---- KServe: an InferenceService is a model server whatever runtime it names --------------------

def _inference_service(name: str, namespace: str = "kserve-models"):
    return k8s.apiextensions.CustomResource(name, api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                            metadata={"name": name, "namespace": namespace},
                                            spec={"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                                                          "storageUri": "hf://deepseek-ai/x"}}})


def test_a_namespace_running_an_inference_service_needs_a_default_deny(pack):
    def program():
        _inference_service("llm")
        _inference_service("guarded", namespace="guarded")
        k8s.networking.v1.NetworkPolicy("deny", metadata={"namespace": "guarded"},
                                        spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]})
        k8s.networking.v1.NetworkPolicy("namespace-wide", metadata={"namespace": "guarded"}, spec={
            "pod_selector": {"match_labels": {"serving.kserve.io/inferenceservice": "guarded"}},
            "ingress": [{"from": [{"namespace_selector": {"match_labels": {"team": "apps"}}}]}]})
        k8s.networking.v1.NetworkPolicy("other-pods", metadata={"namespace": "guarded"}, spec={
            "pod_selector": {"match_labels": {"app": "web"}},
            "ingress": [{"from": [{"namespace_selector": {"match_labels": {"team": "apps"}}}]}]})

    verdict = judge(pack, program)
    isvc = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
    expect_violation(verdict, "k8s-default-deny", isvc, "llm", contains=["namespace kserve-models"])
    assert not verdict.on("k8s-default-deny", isvc, "guarded"), verdict.describe("k8s-default-deny")
    expect_violation(verdict, PEERS, NETWORK_POLICY, "namespace-wide")
    assert not verdict.on(PEERS, NETWORK_POLICY, "other-pods"), verdict.describe(PEERS)


def test_secure_string_parameters_need_a_customer_managed_key(pack):
    def program():
        aws.ssm.Parameter("default-key", type="SecureString", value="s3cr3t")
        aws.ssm.Parameter("aws-managed", type="SecureString", value="s3cr3t", key_id="alias/aws/ssm")
        aws.ssm.Parameter("cmk", type="SecureString", value="s3cr3t", key_id=aws.kms.Key("params").arn)
        aws.ssm.Parameter("plain", type="String", value="not-a-secret")

    verdict = judge(pack, program)
    parameter = "aws:ssm/parameter:Parameter"
    expect_violation(verdict, "secrets-customer-managed-key", parameter, "default-key", contains=["keyId is not set"])
    expect_violation(verdict, "secrets-customer-managed-key", parameter, "aws-managed", contains=['"alias/aws/ssm"'])
    for name in ("cmk", "plain"):
        assert not verdict.on("secrets-customer-managed-key", parameter, name), verdict.describe()
