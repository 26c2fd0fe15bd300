"""The smoke client's API key: fetched with boto3, never printed.

API Gateway key id preferred, Secrets Manager secret otherwise; every printed line goes
through the Redactor so a key echoed back by a server cannot reach CI logs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ProfileNotFound,
)

from tools.smoke_target import CannotRun, SmokeTarget

# What a secret looks like in anything the smoke test prints.
MASK = "****"


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str


class Redactor:
    """Replaces every known secret in text with a mask before it is printed.

    Applied to all output, not only where the key is used on purpose: a gateway or
    model server that echoes request headers in an error body would otherwise put
    the key into CI logs through a check's detail column.
    """

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secret: str) -> None:
        if secret:
            self._secrets.append(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


# --------------------------------------------------------------------------- API key


def _key_from_secret(reply: dict, arn: str) -> Optional[str]:
    """A secret holds the key as plain text or as JSON {"api_key": "..."}."""
    if reply.get("SecretString") is not None:
        text = reply["SecretString"]
    elif reply.get("SecretBinary") is not None:
        try:
            text = bytes(reply["SecretBinary"]).decode("utf-8")
        except UnicodeDecodeError:
            raise CannotRun(f"secret {arn} holds binary data that is not UTF-8 text; store the key as text") from None
    else:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(document, dict):
        if "api_key" not in document:
            raise CannotRun(
                f"secret {arn} is a JSON object without an 'api_key' field "
                f"(fields: {', '.join(sorted(document)) or 'none'}); store the key as plain "
                'text or as {"api_key": "..."}'
            )
        return document["api_key"] if isinstance(document["api_key"], str) else None
    # A key that happens to parse as JSON (all digits, say) is still the key.
    return text


def fetch_api_key(target: SmokeTarget, *, region: str, aws_endpoint_url: Optional[str]) -> ApiKey:
    config = BotoConfig(
        connect_timeout=5, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"}
    )
    if target.api_key_id:
        where = f"API Gateway key {target.api_key_id} in {region}"
    else:
        where = f"Secrets Manager secret {target.api_key_secret_arn}"
    service = "apigateway" if target.api_key_id else "secretsmanager"
    try:
        session = boto3.session.Session(region_name=region)
        try:
            client = session.client(service, endpoint_url=aws_endpoint_url, config=config)
        except ValueError as error:
            # botocore raises a bare ValueError for a malformed endpoint URL.
            if aws_endpoint_url:
                raise CannotRun(
                    f"--aws-endpoint-url {aws_endpoint_url!r} is not a valid URL ({error}); "
                    "give e.g. http://127.0.0.1:5000, or leave it out to use AWS"
                ) from None
            raise CannotRun(f"cannot set up an AWS client to read {where}: {error}") from None
        if target.api_key_id:
            reply = client.get_api_key(apiKey=target.api_key_id, includeValue=True)
            if reply.get("enabled") is False:
                raise CannotRun(f"{where} is disabled; enable it or export another key")
            value = reply.get("value")
        else:
            reply = client.get_secret_value(SecretId=target.api_key_secret_arn)
            value = _key_from_secret(reply, target.api_key_secret_arn)
    except ProfileNotFound as error:
        raise CannotRun(
            f"{error}; set AWS_PROFILE to a profile in your AWS config (aws configure list-profiles) "
            "or unset it"
        ) from None
    except NoCredentialsError:
        raise CannotRun(
            f"no AWS credentials to read {where}; log in (aws sso login, or set AWS_PROFILE) "
            "with a role that may read it"
        ) from None
    except ClientError as error:
        details = error.response.get("Error", {})
        raise CannotRun(
            f"could not read {where}: {details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
        ) from None
    except BotoCoreError as error:
        raise CannotRun(f"could not reach AWS to read {where}: {error}") from None
    # Keys pasted into secrets often carry a trailing newline, which is not part of the
    # key and makes the header invalid.
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise CannotRun(f"{where} returned no key value")
    return ApiKey(value=value, source=where)
