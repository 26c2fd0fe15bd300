"""Customer-managed KMS keys for what the stack stores at rest: logs, EBS volumes and secrets.

One key per purpose keeps key policies narrow: the logs key lets only CloudWatch Logs in
this account and region use it, so a log group in another account cannot borrow it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class StackKeysArgs:
    region: str
    account_id: pulumi.Input[str]
    partition: str = "aws"


class StackKeys(pulumi.ComponentResource):
    logs_key_arn: pulumi.Output[str]
    data_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StackKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("deepseek:keys:StackKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.logs_key = aws.kms.Key(
            f"{name}-logs",
            description="CloudWatch Logs encryption (flow, gateway, runtime, WAF logs)",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: _logs_key_policy(account, args.region, args.partition)),
            opts=child,
        )
        aws.kms.Alias(f"{name}-logs-alias", name=f"alias/deepseek-{pulumi.get_stack()}-logs",
                      target_key_id=self.logs_key.key_id, opts=child)

        # EBS volumes, model caches and Kubernetes secrets: services use it through grants
        # that IAM and the owning service create, so the default account-root policy suffices.
        self.data_key = aws.kms.Key(
            f"{name}-data",
            description="EBS volumes, EKS secrets envelope encryption, API key secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        aws.kms.Alias(f"{name}-data-alias", name=f"alias/deepseek-{pulumi.get_stack()}-data",
                      target_key_id=self.data_key.key_id, opts=child)
        self.autoscaling_grant = self._grant_auto_scaling(name, args, child)

        self.logs_key_arn = self.logs_key.arn
        self.data_key_arn = self.data_key.arn
        self.register_outputs({"logs_key_arn": self.logs_key_arn, "data_key_arn": self.data_key_arn})

    def _grant_auto_scaling(self, name: str, args: StackKeysArgs,
                            child: pulumi.ResourceOptions) -> aws.kms.Grant:
        # Auto Scaling launches instances (EC2 fleets and EKS managed node groups alike) with
        # its service-linked role, which must be able to use the key that encrypts their
        # volumes (EC2 Auto Scaling docs, "Required AWS KMS key policy for use with encrypted
        # volumes"); without it launches fail with "Client error on launch". The role exists
        # in an account once any auto scaling group was created there.
        principal = pulumi.Output.from_input(args.account_id).apply(
            lambda account: f"arn:{args.partition}:iam::{account}:role/aws-service-role/"
                            f"autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
        return aws.kms.Grant(
            f"{name}-data-autoscaling", key_id=self.data_key.arn, grantee_principal=principal,
            operations=["Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                        "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant"],
            opts=child)


def _logs_key_policy(account_id: str, region: str, partition: str) -> str:
    root = f"arn:{partition}:iam::{account_id}:root"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsInThisAccountAndRegion",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*",
                           "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn":
                        f"arn:{partition}:logs:{region}:{account_id}:log-group:*"}},
            },
        ],
    }, sort_keys=True)
