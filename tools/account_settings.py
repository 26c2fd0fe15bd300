"""Which stack manages each account and region's settings, read from the stack files.

API Gateway's CloudWatch role (`aws.apigateway.Account`) and Session Manager's preferences
(`SSM-SessionManagerRunShell`) exist once per account and region; inventory
`account_settings.manage` says which stack owns them (components/config.py AccountSettings).
Two managing stacks in one account and region would overwrite each other's setting, and the
second cannot create the preferences document at all. A stack file does not name its account,
so it is read from what the file does name, in this order:
1. `aws:allowedAccountIds` (the provider's own guard), when it lists exactly one account;
2. the one account every ARN and ECR registry in the inventory names.
A stack whose account cannot be told this way may share an account with any other stack in
its region, so it is grouped with all of them.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from components.config import INVENTORY_KEY, PROJECT
from tools.stack_files import StackFile

UNKNOWN_ACCOUNT = "an account the stack file does not name"
_ACCOUNT_IN_TEXT = re.compile(r"(?:^arn:aws(?:-[a-z]+)*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):"
                              r"|^(\d{12})\.dkr\.ecr\.)")


@dataclass(frozen=True)
class Manager:
    stack: str
    path: str
    account: str
    region: str


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def stack_account(stack_file: StackFile) -> Optional[str]:
    """The account a stack deploys into, or None when the file does not tell."""
    allowed = stack_file.config.get("aws:allowedAccountIds")
    if isinstance(allowed, list) and len(allowed) == 1:
        return str(allowed[0])
    named = {match.group(1) or match.group(2)
             for text in _strings(stack_file.config.get(f"{PROJECT}:{INVENTORY_KEY}"))
             for match in [_ACCOUNT_IN_TEXT.match(text)] if match}
    return named.pop() if len(named) == 1 else None


def manages_account_settings(stack_file: StackFile) -> bool:
    """The inventory's account_settings.manage, with the model's default when unset."""
    from components.config import AccountSettings

    inventory = stack_file.config.get(f"{PROJECT}:{INVENTORY_KEY}")
    section = inventory.get("account_settings") if isinstance(inventory, dict) else None
    manage = section.get("manage") if isinstance(section, dict) else None
    return AccountSettings().manage if manage is None else manage is True


def managers(stack_files: Iterable[StackFile]) -> list[Manager]:
    return [Manager(f.stack, f.display_path, stack_account(f) or UNKNOWN_ACCOUNT, f.region)
            for f in stack_files if manages_account_settings(f)]


def conflicts(stack_files: Iterable[StackFile]) -> list[str]:
    """One message per account and region that more than one stack manages."""
    by_place: dict[tuple[str, str], list[Manager]] = defaultdict(list)
    found = managers(stack_files)
    for manager in found:
        if manager.account == UNKNOWN_ACCOUNT:
            # Could be any account in its region: it conflicts with every manager there.
            for other in found:
                if other is not manager and other.region == manager.region:
                    by_place[(other.account, other.region)].append(manager)
        by_place[(manager.account, manager.region)].append(manager)
    messages = []
    for (account, region), group in sorted(by_place.items()):
        stacks = sorted({m.path for m in group})
        if len(stacks) > 1:
            messages.append(
                f"{', '.join(stacks)}: {len(stacks)} stacks manage the account settings of account "
                f"{account} in {region} (deepseek-serving:inventory.account_settings.manage, default "
                "true); they would overwrite each other's API Gateway CloudWatch role and Session "
                "Manager preferences. Keep manage: true on the longest-lived stack and set "
                "account_settings: {manage: false} on the others")
    return messages
