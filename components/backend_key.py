"""The shared secret between the gateway's integration and one model's runtime.

Both platforms use it (a GpuFleet on EC2, a ModelService on EKS), so it lives in the shared
layer. The type token keeps the module it was first released in: it is part of every
child's URN in live stacks.
"""
from __future__ import annotations

import secrets
from typing import Optional

import pulumi
import pulumi_aws as aws


def backend_key_secret_name(stack: str, model_name: str) -> str:
    """Fixed so host user data can name the secret at preview (its ARN is unknown then)."""
    return f"deepseek/{stack}/{model_name}/backend-api-key"


class BackendApiKey(pulumi.ComponentResource):
    """The shared secret between the gateway's integration and one model's runtime.

    The value is generated once by the program and kept: later runs generate a new
    candidate that `ignore_changes` discards, so the key only rotates when its version is
    replaced on purpose (see docs/BACKEND_AUTH.md).
    """

    secret_arn: pulumi.Output[str]
    secret_name: str
    value: pulumi.Output[str]

    def __init__(self, name: str, *, secret_name: str, kms_key_arn: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:gpu_fleet:BackendApiKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secret_name = secret_name
        secret = aws.secretsmanager.Secret(
            f"{name}-secret", name=secret_name, kms_key_id=kms_key_arn,
            description="Backend API key the API gateway sends to this model's runtime",
            recovery_window_in_days=7, opts=child)
        version = aws.secretsmanager.SecretVersion(
            f"{name}-value", secret_id=secret.id,
            secret_string=pulumi.Output.secret(secrets.token_urlsafe(48)),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretString"],
                                        additional_secret_outputs=["secretString"]))
        self.secret_arn = secret.arn
        self.value = pulumi.Output.secret(version.secret_string)
        # Changes exactly when the key is rotated (a new version), and is no secret: what
        # pod templates and gateway redeploys key on. Unknown until the version exists.
        self.version_id = version.version_id
        self.register_outputs({"secret_arn": self.secret_arn, "secret_name": secret_name})
