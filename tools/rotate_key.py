"""Rotate one client's API key with an overlap window: two keys in its usage plan, then one.

    .venv/bin/python -m tools.rotate_key start  --key-id <old key id> --out new-key.txt
    .venv/bin/python -m tools.rotate_key finish --key-id <old key id> --new-key-id <new key id>
    (make rotate-key STACK=prod CLIENT=acme [STEP=finish NEW_KEY_ID=...] [OUTPUTS=file.json])

`start` creates a new key, enabled, and adds it to every usage plan the old key is in, so
both keys work with the same throttle and quota plan while the client switches; the new
value goes to a file only its owner can read (never to the terminal or a log). `finish`
removes the old key from those plans and disables it: from then on it gets 403. Nothing
is deleted: a disabled key can be re-enabled if a client was missed.

Quotas and throttles are per key: during the overlap a client holding both keys could
spend both keys' quotas; keep the window short (hours, not weeks).

Keys Pulumi created (`clients[]` in the inventory) are in its state: after `finish`,
`pulumi refresh` shows the old key disabled and out of its plan, and the next `pulumi up`
would put it back. So use this for an emergency (a leaked key: `start` then `finish` at
once) and then make the inventory say the same thing, or rotate through the inventory
itself (docs/GATEWAY.md, "Rotating a client's key"). The key id of a client is in the
stack output `api_key_ids` (`--outputs` reads it from `pulumi stack output --json`).

Credentials come from the usual AWS chain; `--endpoint-url` points at an emulator.
Exit codes: 0 done, 1 an AWS call failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import botocore.exceptions


class RotationError(Exception):
    """A rotation that cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class Started:
    old_key_id: str
    new_key_id: str
    usage_plan_ids: tuple[str, ...]


def usage_plans_of(client: Any, key_id: str) -> list[str]:
    """The usage plans a key is in (paginated)."""
    plans: list[str] = []
    for page in client.get_paginator("get_usage_plans").paginate(keyId=key_id):
        plans += [plan["id"] for plan in page.get("items", [])]
    return plans


def start(client: Any, old_key_id: str, out: Path, *, today: Optional[datetime.date] = None) -> Started:
    """Create the new key in the old key's usage plans and write its value to `out` (0600)."""
    try:
        old = client.get_api_key(apiKey=old_key_id, includeValue=False)
    except client.exceptions.NotFoundException:
        raise RotationError(f"no API key {old_key_id!r} in this account and region; "
                            f"take the id from the stack output api_key_ids") from None
    plans = usage_plans_of(client, old_key_id)
    if not plans:
        raise RotationError(f"API key {old_key_id} ({old['name']}) is in no usage plan: "
                            f"there is nothing to overlap; check the key id")
    if out.exists():
        raise RotationError(f"{out} exists; choose a new file for the new key's value")
    stamp = (today or datetime.date.today()).isoformat()
    new = client.create_api_key(
        name=f"{old['name']}-rotated-{stamp}", enabled=True, generateDistinctId=True,
        description=f"rotation of {old_key_id} started {stamp}",
        tags={**old.get("tags", {}), "rotation-of": old_key_id})
    for plan in plans:
        client.create_usage_plan_key(usagePlanId=plan, keyId=new["id"], keyType="API_KEY")
    value = client.get_api_key(apiKey=new["id"], includeValue=True)["value"]
    # Owner-only from the first byte: the file never exists with wider permissions.
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return Started(old_key_id=old_key_id, new_key_id=new["id"], usage_plan_ids=tuple(plans))


def finish(client: Any, old_key_id: str, new_key_id: str) -> list[str]:
    """End the overlap: the old key leaves its plans and is disabled; returns the plans."""
    plans = usage_plans_of(client, old_key_id)
    new_plans = set(usage_plans_of(client, new_key_id))
    missing = [plan for plan in plans if plan not in new_plans]
    if missing:
        raise RotationError(f"the new key {new_key_id} is not in usage plan(s) {', '.join(missing)} "
                            f"that the old key {old_key_id} is in; run `start` first (or add it)")
    for plan in plans:
        client.delete_usage_plan_key(usagePlanId=plan, keyId=old_key_id)
    client.update_api_key(apiKey=old_key_id, patchOperations=[
        {"op": "replace", "path": "/enabled", "value": "false"}])
    return plans


def key_id_from_outputs(path: Path, client_name: str) -> str:
    try:
        outputs = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RotationError(f"{path}: cannot read stack outputs ({error}); write them with "
                            f"`pulumi stack output --json > {path}`") from None
    ids = outputs.get("api_key_ids") or {}
    if client_name not in ids:
        raise RotationError(f"{path}: api_key_ids has no client {client_name!r}; "
                            f"clients: {', '.join(sorted(ids)) or 'none'}")
    return ids[client_name]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("start", "finish"))
    parser.add_argument("--key-id", help="the client's current key id (stack output api_key_ids)")
    parser.add_argument("--client", help="with --outputs: the client whose key id to read")
    parser.add_argument("--outputs", type=Path, help="`pulumi stack output --json` saved to a file")
    parser.add_argument("--new-key-id", help="finish: the key id `start` printed")
    parser.add_argument("--out", type=Path, help="start: file for the new key's value (created 0600)")
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url")
    args = parser.parse_args(argv)
    try:
        key_id = args.key_id
        if key_id is None:
            if not (args.outputs and args.client):
                raise RotationError("give --key-id, or --outputs and --client")
            key_id = key_id_from_outputs(args.outputs, args.client)
        client = boto3.client("apigateway", region_name=args.region, endpoint_url=args.endpoint_url)
        if args.phase == "start":
            if args.out is None:
                raise RotationError("start needs --out: the file the new key's value is written to")
            started = start(client, key_id, args.out)
            print(f"new key {started.new_key_id} is in usage plan(s) {', '.join(started.usage_plan_ids)} "
                  f"beside {key_id}; its value is in {args.out} (mode 0600). Hand it to the client, "
                  f"then: python -m tools.rotate_key finish --key-id {key_id} "
                  f"--new-key-id {started.new_key_id}")
        else:
            if not args.new_key_id:
                raise RotationError("finish needs --new-key-id (printed by start)")
            plans = finish(client, key_id, args.new_key_id)
            print(f"key {key_id} removed from usage plan(s) {', '.join(plans) or 'none'} and disabled; "
                  f"{args.new_key_id} stays")
    except RotationError as error:
        print(f"rotate-key: {error}", file=sys.stderr)
        return 2
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        print(f"rotate-key: AWS call failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
