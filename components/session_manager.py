"""Session Manager, the only way onto a host (no SSH, no inbound port): every session logged and
encrypted.

Session Manager's preferences are one Session document per account and region, named
`SSM-SessionManagerRunShell`, schema 1.0, sessionType `Standard_Stream` (AWS "Create a Session
Manager preferences document (command line)":
https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-preferences-cli.html,
"Session document schema":
https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-schema.html).
Only the stack that manages the account's settings (inventory `account_settings.manage`)
creates it, with a KMS key and an encrypted, expiring log group under fixed names; every stack
grants its instance roles what honouring those preferences needs (`session_logging_policy`),
so hosts of a stack that does not manage them still log and decrypt.

The document, key and log group are retained on delete: destroying the managing stack (or
handing management to another) must not switch off logging, or break session encryption, for
the other stacks' hosts in the account and region.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.config import Inventory

# Names are fixed: the preferences are found by this name, and every stack's instance roles
# name the log group and key alias without a reference to the managing stack.
PREFERENCES_DOCUMENT = "SSM-SessionManagerRunShell"
SESSION_LOG_GROUP = "/deepseek-serving/session-manager"
SESSION_KEY_ALIAS = "alias/deepseek-serving/session-manager"
# An idle shell closes after 20 minutes; no session lasts more than 4 hours (long enough for
# a `make up` through the EKS API tunnel host). Schema: idleSessionTimeout 1-60 minutes,
# maxSessionDuration 1-1440 minutes, both strings.
IDLE_SESSION_MINUTES = 20
MAX_SESSION_MINUTES = 240


def session_preferences(key_id: str) -> dict:
    """The Standard_Stream preferences: CloudWatch Logs (encrypted group, streamed as the
    session runs), session data encrypted with `key_id` on top of TLS, no S3 copy, sessions
    as the agent's ssm-user."""
    return {
        "schemaVersion": "1.0",
        "description": "deepseek-serving: Session Manager preferences for this account and region "
                       "(logged to CloudWatch Logs, KMS-encrypted sessions)",
        "sessionType": "Standard_Stream",
        "inputs": {
            "s3BucketName": "",
            "s3KeyPrefix": "",
            "s3EncryptionEnabled": True,
            "cloudWatchLogGroupName": SESSION_LOG_GROUP,
            # The group must be encrypted (it is, with the session key) or nothing is sent.
            "cloudWatchEncryptionEnabled": True,
            # Streamed as typed, so a session that never ends cleanly is still on record.
            "cloudWatchStreamingEnabled": True,
            "kmsKeyId": key_id,
            "runAsEnabled": False,
            "runAsDefaultUser": "",
            "idleSessionTimeout": str(IDLE_SESSION_MINUTES),
            "maxSessionDuration": str(MAX_SESSION_MINUTES),
            "shellProfile": {"windows": "", "linux": ""},
        },
    }


def session_key_policy(account_id: str, region: str, partition: str = "aws") -> dict:
    """The account administers the key and grants its use through IAM (instance roles decrypt,
    operators generate data keys); CloudWatch Logs may use it for the session log group only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministersAndDelegatesToIam", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchLogsForTheSessionLogGroup", "Effect": "Allow",
             "Principal": {"Service": f"logs.{region}.amazonaws.com"},
             "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:Describe*"],
             "Resource": "*",
             "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn":
                                         session_log_group_arn(account_id, region, partition)}}},
        ],
    }


def session_log_group_arn(account_id: str, region: str, partition: str = "aws") -> str:
    return f"arn:{partition}:logs:{region}:{account_id}:log-group:{SESSION_LOG_GROUP}"


def session_logging_policy(account_id: str, region: str, partition: str = "aws") -> dict:
    """What an instance role needs for the preferences above: write its session logs to the
    group, check that the group is encrypted, and decrypt session data with the session key
    (AWS "Create a custom IAM role for Session Manager", the CloudWatch Logs and KMS statements:
    https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html).
    The key is named by its alias, so a stack that does not manage the preferences needs no
    reference to the stack that does."""
    group = session_log_group_arn(account_id, region, partition)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WriteSessionLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
             "Resource": [group, f"{group}:*"]},
            # The agent lists groups to confirm the session group is encrypted; DescribeLogGroups
            # is not scoped to one group.
            {"Sid": "CheckSessionLogGroupEncryption", "Effect": "Allow",
             "Action": "logs:DescribeLogGroups",
             "Resource": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"},
            {"Sid": "DecryptSessionData", "Effect": "Allow", "Action": "kms:Decrypt",
             "Resource": f"arn:{partition}:kms:{region}:{account_id}:key/*",
             "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": SESSION_KEY_ALIAS}}},
        ],
    }


def session_logging_policy_json(account_id: pulumi.Input[str], region: str,
                                 partition: str = "aws") -> pulumi.Output[str]:
    return pulumi.Output.from_input(account_id).apply(
        lambda account: json.dumps(session_logging_policy(account, region, partition), sort_keys=True))


@dataclass
class SessionPreferencesArgs:
    region: str
    account_id: pulumi.Input[str]
    log_retention_days: int
    partition: str = "aws"


class SessionPreferences(pulumi.ComponentResource):
    """The account and region's Session Manager preferences, their key and log group."""

    document_name: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: SessionPreferencesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:session_manager:SessionPreferences", name, None, opts)
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        key = aws.kms.Key(
            f"{name}-key",
            description="Session Manager: session data encryption and the session log group",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(lambda account: json.dumps(
                session_key_policy(account, args.region, args.partition), sort_keys=True)),
            opts=retained,
        )
        aws.kms.Alias(f"{name}-key-alias", name=SESSION_KEY_ALIAS, target_key_id=key.key_id, opts=retained)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=SESSION_LOG_GROUP, retention_in_days=args.log_retention_days,
            kms_key_id=key.arn, opts=retained)
        document = aws.ssm.Document(
            f"{name}-preferences",
            name=PREFERENCES_DOCUMENT,
            document_type="Session",
            document_format="JSON",
            content=key.key_id.apply(lambda key_id: json.dumps(session_preferences(key_id), indent=2)),
            # The agent checks the group when a session starts: it must exist first.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, depends_on=[log_group]),
        )
        self.document_name = document.name
        self.key_arn = key.arn
        self.log_group_name = log_group.name
        self.register_outputs({"document_name": self.document_name, "key_arn": self.key_arn,
                               "log_group_name": self.log_group_name})


def account_session_preferences(inventory: Inventory, *, account_id: pulumi.Input[str],
                                opts: pulumi.ResourceOptions) -> Optional[SessionPreferences]:
    """The preferences, in the stack that manages the account's settings; None in the others."""
    if not inventory.account_settings.manage:
        return None
    return SessionPreferences("sessions", SessionPreferencesArgs(
        region=inventory.region, account_id=account_id,
        log_retention_days=inventory.observability.log_retention_days), opts=opts)
