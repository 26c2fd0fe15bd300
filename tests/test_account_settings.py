"""Settings AWS keeps once per account and region: API Gateway's CloudWatch role and Session
Manager's preferences. One stack per account and region manages them (inventory
account_settings.manage); every stack's hosts may log and decrypt their sessions.

The program runs under the mock engine through `@pulumi.runtime.test` (tests/program_harness.py
`record` returns the settled registrations the test function's Output resolved to)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from components import session_manager
from components.config import InventoryError
from tests.program_harness import record_main
from tests.test_api_gateway import gateway_run, inventory_for
from tools import account_settings, fake_cloud, mock_engine, stack_files
from tools.preview import PreviewError, refuse_a_second_account_settings_manager

ACCOUNT = "aws:apigateway/account:Account"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
STAGE = "aws:apigateway/stage:Stage"
DOCUMENT = "aws:ssm/document:Document"
KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"

# The published Session document schema for Standard_Stream preferences, as JSON Schema: keys,
# types, which booleans are required ("Session document schema",
# https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-schema.html), the
# idle timeout (1-60 minutes) and maximum duration (1-1440 minutes, the pattern of the API's
# Session.MaxSessionDuration) as strings.
SESSION_DOCUMENT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schemaVersion", "sessionType", "inputs"],
    "properties": {
        "schemaVersion": {"const": "1.0"},
        "description": {"type": "string"},
        "sessionType": {"enum": ["Standard_Stream"]},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "object",
            "additionalProperties": False,
            "required": ["s3EncryptionEnabled", "cloudWatchEncryptionEnabled", "cloudWatchStreamingEnabled",
                         "runAsEnabled"],
            "properties": {
                "s3BucketName": {"type": "string"},
                "s3KeyPrefix": {"type": "string"},
                "s3EncryptionEnabled": {"type": "boolean"},
                "cloudWatchLogGroupName": {"type": "string"},
                "cloudWatchEncryptionEnabled": {"type": "boolean"},
                "cloudWatchStreamingEnabled": {"type": "boolean"},
                "kmsKeyId": {"type": "string"},
                "runAsEnabled": {"type": "boolean"},
                "runAsDefaultUser": {"type": "string"},
                "idleSessionTimeout": {"type": "string", "pattern": "^([1-9]|[1-5][0-9]|60)$"},
                "maxSessionDuration": {"type": "string",
                                       "pattern": "^([1-9]|[1-9][0-9]|[1-9][0-9][0-9]|1[0-4][0-3][0-9]|1440)$"},
                "shellProfile": {"type": "object", "additionalProperties": False,
                                 "properties": {"windows": {"type": "string"}, "linux": {"type": "string"}}},
            },
        },
    },
}


@lru_cache(maxsize=None)
def program_run(stack: str) -> mock_engine.ProgramRun:
    """The whole program for a committed stack, every computed value known (as `pulumi up`)."""
    stack_file = stack_files.load(stack)
    return record_main(stack=stack, config=stack_file.config, secret_keys=stack_file.secret_keys,
                       preview=False, region=stack_file.region)


def _policy_document(registration) -> dict:
    return json.loads(registration.inputs["policy"])


# ------------------------------------------------------------------ the committed stacks


def test_each_account_and_region_of_the_committed_stacks_has_exactly_one_managing_stack():
    files = [stack_files.load(stack) for stack in stack_files.committed_stacks()]
    assert account_settings.conflicts(files) == []
    places = {(account_settings.stack_account(f), f.region) for f in files}
    managed = {(m.account, m.region) for m in account_settings.managers(files)}
    assert None not in {account for account, _ in places}, "every committed stack names its account"
    assert managed == places


def _stack_file(tmp_path: Path, name: str, *, region: str = "us-east-1", account: str = "123456789012",
                manage=None, allowed=None) -> stack_files.StackFile:
    inventory = {"region": region, "load_balancer": {"certificate": {
        "certificate_arn": f"arn:aws:acm:{region}:{account}:certificate/0f6c2a4e-1d3b-4c5e-9f7a-2b8d6e4c1a3f"}}}
    if manage is not None:
        inventory["account_settings"] = {"manage": manage}
    config = {"deepseek-serving:inventory": inventory}
    if allowed is not None:
        config["aws:allowedAccountIds"] = allowed
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return stack_files.load(name, path)


def test_two_stacks_managing_one_account_and_region_are_named_with_the_fix(tmp_path):
    files = [_stack_file(tmp_path, "a"), _stack_file(tmp_path, "b", manage=True),
             _stack_file(tmp_path, "c", manage=False)]
    (message,) = account_settings.conflicts(files)
    assert "Pulumi.a.yaml" in message and "Pulumi.b.yaml" in message and "Pulumi.c.yaml" not in message
    assert "account 123456789012 in us-east-1" in message
    assert "account_settings: {manage: false}" in message


def test_managing_stacks_in_other_regions_or_accounts_do_not_conflict(tmp_path):
    files = [_stack_file(tmp_path, "east"), _stack_file(tmp_path, "west", region="us-west-2"),
             _stack_file(tmp_path, "other", account="210987654321"),
             # The provider's account guard decides over the ARNs it names.
             _stack_file(tmp_path, "guarded", allowed=["345678901234"])]
    assert account_settings.conflicts(files) == []
    assert account_settings.stack_account(files[3]) == "345678901234"


def test_a_stack_whose_account_is_unknown_conflicts_with_any_manager_in_its_region(tmp_path):
    unknown = _stack_file(tmp_path, "mixed")
    unknown.config["deepseek-serving:inventory"]["gateway"] = {"authorizer": {
        "user_pool_arns": ["arn:aws:cognito-idp:us-east-1:210987654321:userpool/us-east-1_AbCdEfGhI"]}}
    assert account_settings.stack_account(unknown) is None
    (message,) = account_settings.conflicts([unknown, _stack_file(tmp_path, "known")])
    assert "Pulumi.known.yaml" in message and "Pulumi.mixed.yaml" in message
    assert account_settings.conflicts([unknown, _stack_file(tmp_path, "west", region="us-west-2")]) == []


def test_manage_takes_only_a_boolean():
    with pytest.raises(InventoryError) as refused:
        inventory_for("dev", lambda inv: inv.update(account_settings={"manage": "sometimes"}))
    assert "stacks/Pulumi.dev.yaml" in str(refused.value)
    assert "account_settings.manage" in str(refused.value)
    with pytest.raises(InventoryError) as typo:
        inventory_for("dev", lambda inv: inv.update(account_settings={"managed": False}))
    assert "account_settings.managed" in str(typo.value)


# ------------------------------------------------------------- API Gateway's CloudWatch role


def test_the_managing_stack_sets_the_cloudwatch_role_and_keeps_it_when_destroyed():
    run = gateway_run("prod", preview=False)
    account = run.one(ACCOUNT, "gateway-account")
    role = run.one(ROLE, "gateway-cloudwatch-role")
    attachment = run.one(ATTACHMENT, "gateway-cloudwatch-role-policy")
    assert role.urn in account.property_dependencies["cloudwatchRoleArn"]
    # pulumi-aws v7 resets the setting when an Account is deleted: retained, so destroying
    # this stack leaves every other stage in the region logging.
    assert account.retain_on_delete and role.retain_on_delete and attachment.retain_on_delete
    assert account.urn in run.one(STAGE, "gateway-stage").dependencies


@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_a_stack_that_does_not_manage_relies_on_the_setting_and_still_logs(stack):
    run = gateway_run(stack, lambda inv: inv.update(account_settings={"manage": False}), preview=False)
    assert not run.by_type(ACCOUNT)
    assert "gateway-cloudwatch-role" not in {r.name for r in run.by_type(ROLE)}
    assert not run.by_type(ATTACHMENT)
    stage = run.one(STAGE, "gateway-stage")
    assert stage.inputs["accessLogSettings"]["format"]
    assert stage.inputs["accessLogSettings"]["destinationArn"]


def test_the_committed_stacks_follow_their_switch():
    for stack in stack_files.committed_stacks():
        inventory, _, _ = inventory_for(stack)
        run = gateway_run(stack)
        assert bool(run.by_type(ACCOUNT)) == inventory.account_settings.manage, stack


# ------------------------------------------------------------- Session Manager preferences


def test_the_managing_stack_creates_the_session_preferences_document():
    run = program_run("prod")
    document = run.one(DOCUMENT, "sessions-preferences")
    assert document.inputs["name"] == "SSM-SessionManagerRunShell"
    assert document.inputs["documentType"] == "Session"
    assert document.inputs["documentFormat"] == "JSON"
    content = json.loads(document.inputs["content"])
    jsonschema.validate(content, SESSION_DOCUMENT_SCHEMA)
    inputs = content["inputs"]
    assert inputs["cloudWatchLogGroupName"] == session_manager.SESSION_LOG_GROUP
    assert inputs["cloudWatchEncryptionEnabled"] is True and inputs["cloudWatchStreamingEnabled"] is True
    key = run.one(KEY, "sessions-key")
    # The key's id as the provider returns it (the fake cloud's UUID for this key).
    assert inputs["kmsKeyId"] == fake_cloud.created_state(KEY, key.name, {}, "us-east-1")[1]["keyId"]
    assert int(inputs["idleSessionTimeout"]) <= 60 and int(inputs["maxSessionDuration"]) <= 1440
    assert key.urn in document.property_dependencies["content"]
    log_group = run.one(LOG_GROUP, "sessions-logs")
    assert log_group.urn in document.dependencies
    assert all(r.retain_on_delete for r in (document, key, log_group, run.one(ALIAS, "sessions-key-alias")))


def test_the_session_log_group_is_encrypted_with_the_session_key_and_expires():
    run = program_run("prod")
    log_group = run.one(LOG_GROUP, "sessions-logs")
    key = run.one(KEY, "sessions-key")
    inventory, _, _ = inventory_for("prod")
    assert log_group.inputs["name"] == session_manager.SESSION_LOG_GROUP
    assert log_group.inputs["retentionInDays"] == inventory.observability.log_retention_days
    assert key.urn in log_group.property_dependencies["kmsKeyId"]
    assert run.one(ALIAS, "sessions-key-alias").inputs["name"] == session_manager.SESSION_KEY_ALIAS
    policy = _policy_document(key)
    assert key.inputs["enableKeyRotation"] is True
    logs = next(s for s in policy["Statement"] if s["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"})
    # CloudWatch Logs may use the key for the session log group and nothing else.
    assert logs["Condition"] == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn":
                                               "arn:aws:logs:us-east-1:123456789012:log-group:"
                                               "/deepseek-serving/session-manager"}}
    assert {s["Principal"].get("AWS") for s in policy["Statement"]} >= {"arn:aws:iam::123456789012:root"}


@pytest.mark.parametrize("stack", ("dev", "eks-runtimes"))
def test_a_stack_that_does_not_manage_creates_no_preferences(stack):
    run = program_run(stack)
    assert not run.by_type(DOCUMENT)
    assert not [r for r in run.by_type(LOG_GROUP) if r.inputs.get("name") == session_manager.SESSION_LOG_GROUP]
    assert not [r for r in run.by_type(ALIAS) if r.inputs.get("name") == session_manager.SESSION_KEY_ALIAS]


def test_the_switch_turns_the_preferences_on_for_any_stack():
    stack_file = stack_files.load("dev")
    config = json.loads(json.dumps(stack_file.config))
    config["deepseek-serving:inventory"]["account_settings"] = {"manage": True}
    run = record_main(stack="dev", config=config, secret_keys=stack_file.secret_keys, preview=False,
                      region=stack_file.region)
    assert run.one(DOCUMENT, "sessions-preferences").inputs["name"] == "SSM-SessionManagerRunShell"
    assert run.one(ACCOUNT, "gateway-account")


# ----------------------------------------------------------------- what every host may do


def _session_statements(document: dict) -> dict:
    return {s["Sid"]: s for s in document["Statement"]}


def _assert_session_logging(policy: dict, region: str) -> None:
    statements = _session_statements(policy)
    group = f"arn:aws:logs:{region}:123456789012:log-group:/deepseek-serving/session-manager"
    assert statements["WriteSessionLogs"]["Action"] == [
        "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    assert statements["WriteSessionLogs"]["Resource"] == [group, f"{group}:*"]
    assert statements["CheckSessionLogGroupEncryption"]["Action"] == "logs:DescribeLogGroups"
    decrypt = statements["DecryptSessionData"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == f"arn:aws:kms:{region}:123456789012:key/*"
    assert decrypt["Condition"] == {"ForAnyValue:StringEquals": {
        "kms:ResourceAliases": "alias/deepseek-serving/session-manager"}}


@pytest.mark.parametrize("stack, role_names", [
    ("dev", ("r1-qwen-7b-role", "r1-qwen-1-5b-gguf-role")),
    ("staging", ("eks-api-tunnel-role", "eks-node-role")),
    ("prod", ("eks-api-tunnel-role", "eks-node-role")),
])
def test_every_host_role_may_write_session_logs_and_decrypt_sessions(stack, role_names):
    """Managing or not: the preferences are account-wide, so every stack's hosts need this."""
    run = program_run(stack)
    region = stack_files.load(stack).region
    roles = {r.name: r for r in run.by_type(ROLE)}
    session_policies = {p.property_dependencies["role"][0]: p for p in run.by_type(ROLE_POLICY)
                        if p.name.endswith("session-logging")}
    for role_name in role_names:
        role = roles[role_name]
        assert role.urn in session_policies, f"{stack}: {role_name} has no session logging policy"
        _assert_session_logging(_policy_document(session_policies[role.urn]), region)


@pytest.mark.parametrize("stack", ("dev", "staging"))
def test_hosts_reach_kms_through_an_interface_endpoint(stack):
    """The agent decrypts session data with KMS; the private subnets reach it without the internet."""
    run = program_run(stack)
    region = stack_files.load(stack).region
    kms = [e for e in run.by_type(ENDPOINT) if e.inputs["serviceName"] == f"com.amazonaws.{region}.kms"]
    assert len(kms) == 1
    assert kms[0].inputs["vpcEndpointType"] == "Interface" and kms[0].inputs["privateDnsEnabled"] is True


@pytest.mark.parametrize("change", [
    lambda inputs: inputs.update(idleSessionTimeout=20),        # a number, the schema wants a string
    lambda inputs: inputs.update(idleSessionTimeout="90"),      # beyond 60 minutes
    lambda inputs: inputs.update(cloudWatchLogGroup="x"),       # not a preference (a typo)
    lambda inputs: inputs.pop("runAsEnabled"),                  # a required boolean
    lambda inputs: inputs.update(cloudWatchEncryptionEnabled="true"),
], ids=["number", "too-long", "unknown-key", "missing-required", "string-boolean"])
def test_the_schema_check_would_catch_a_malformed_preference(change):
    """The check the rendered document passes above is not vacuous."""
    content = session_manager.session_preferences("3bd7daad-2155-74f9-c75e-f0e056c01e43")
    jsonschema.validate(content, SESSION_DOCUMENT_SCHEMA)
    change(content["inputs"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(content, SESSION_DOCUMENT_SCHEMA)


def test_previewing_a_stack_that_shares_its_account_settings_is_refused_naming_both(tmp_path):
    (tmp_path / "stacks").mkdir()
    first = _stack_file(tmp_path / "stacks", "team-a")
    _stack_file(tmp_path / "stacks", "team-b")
    _stack_file(tmp_path / "stacks", "west", region="us-west-2")
    with pytest.raises(PreviewError) as refused:
        refuse_a_second_account_settings_manager(first, project_dir=tmp_path)
    assert "stacks/Pulumi.team-a.yaml" in str(refused.value) and "Pulumi.team-b.yaml" in str(refused.value)
    west = stack_files.load("west", tmp_path / "stacks" / "Pulumi.west.yaml")
    refuse_a_second_account_settings_manager(west, project_dir=tmp_path)  # alone in its region


def test_the_committed_stacks_preview_without_an_account_settings_refusal():
    for stack in stack_files.committed_stacks():
        refuse_a_second_account_settings_manager(stack_files.load(stack))
