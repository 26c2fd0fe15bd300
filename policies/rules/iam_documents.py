"""Reading IAM policy documents however a program spells them, and the questions Family 3
asks of them: does a statement grant everything, who may it let in, what restricts it.

A document reaches the pack as a JSON string (json.dumps, Output.json_dumps, or the
`.json` of an aws.iam.get_policy_document invoke, all of which are strings on the wire),
occasionally as an object, or as the engine's unknown sentinel. `Statement` may be one
object or a list; `Action`, `Resource` and principal identifiers may be a string or a
list. Grammar: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
"""
from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from ._wire import admits_internet, is_unknown


class Unreadable(Exception):
    """The document is present but not a policy AWS would accept (not JSON, no statements)."""


@dataclass
class Statement:
    path: str                        # e.g. "policy.Statement[1]", for messages
    sid: Optional[str]
    effect: str                      # "Allow" or "Deny"
    actions: Optional[list] = None
    not_actions: Optional[list] = None
    resources: Optional[list] = None
    not_resources: Optional[list] = None
    principal: Any = None            # raw Principal element
    not_principal: Any = None
    condition: Any = field(default_factory=dict)  # dict, or the unknown sentinel

    @property
    def allows(self) -> bool:
        return self.effect.lower() == "allow"

    def label(self) -> str:
        return f"{self.path} (Sid {self.sid})" if self.sid else self.path


def parse(value: Any, path: str) -> Optional[list[Statement]] | str:
    """The statements of a document; None when absent; the unknown sentinel when unknown.

    Raises Unreadable for a document AWS would reject, so a rule can say so rather than pass.
    """
    if value is None or value == "" or value == {}:
        return None
    if is_unknown(value):
        return value
    document = value
    if isinstance(value, str):
        try:
            document = json.loads(value)
        except ValueError as error:
            raise Unreadable(f"{path} is not valid JSON") from error
    if not isinstance(document, dict):
        raise Unreadable(f"{path} is not a JSON object")
    statements = _field(document, "Statement")
    if is_unknown(statements):
        return statements
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise Unreadable(f"{path} has no Statement")
    parsed = []
    for index, raw_statement in enumerate(statements):
        where = f"{path}.Statement[{index}]"
        if is_unknown(raw_statement):
            return raw_statement
        if not isinstance(raw_statement, dict):
            raise Unreadable(f"{where} is not an object")
        parsed.append(Statement(
            path=where,
            sid=_field(raw_statement, "Sid"),
            effect=str(_field(raw_statement, "Effect") or ""),
            actions=_strings(_field(raw_statement, "Action")),
            not_actions=_strings(_field(raw_statement, "NotAction")),
            resources=_strings(_field(raw_statement, "Resource")),
            not_resources=_strings(_field(raw_statement, "NotResource")),
            principal=_field(raw_statement, "Principal"),
            not_principal=_field(raw_statement, "NotPrincipal"),
            condition=_condition(_field(raw_statement, "Condition")),
        ))
    return parsed


def _field(mapping: dict, name: str) -> Any:
    # IAM element names are case-sensitive for AWS; reading them case-insensitively costs
    # nothing and keeps a misspelt document from passing unread.
    if name in mapping:
        return mapping[name]
    lowered = name.lower()
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _condition(value: Any) -> Any:
    return value if isinstance(value, dict) or is_unknown(value) else {}


def _strings(value: Any) -> Optional[list]:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    return [value]


def any_unknown(values: Optional[list]) -> bool:
    return any(is_unknown(v) for v in values or [])


# ---- actions and resources ----------------------------------------------------------------

def broad_action(action: Any) -> bool:
    """`*`, `service:*` (or `*:*`): every action, or every action of a service."""
    if not isinstance(action, str):
        return False
    text = action.strip()
    if text.strip("*") == "":
        return True
    if ":" in text:
        _service, name = text.split(":", 1)
        return name.strip("*") == "" and name != ""
    return False


# A resource part made only of wildcards and separators: "*", "*/*" (every object of every
# bucket), "*:*".
_WILDCARD_ONLY = re.compile(r"^[*?/:]*\*[*?/:]*$")


def broad_resource(resource: Any) -> bool:
    """`*`, or an ARN whose resource part is only wildcards (every resource of a service):
    `arn:aws:s3:::*`, `arn:aws:s3:::*/*`, `arn:aws:dynamodb:*:*:*`, `arn:*`."""
    if not isinstance(resource, str):
        return False
    text = resource.strip()
    if text.strip("*") == "":
        return True
    parts = text.split(":", 5)
    if parts[0] != "arn" or len(parts) < 2:
        return False
    # Fewer than six segments: the last one, a wildcard, stands for the rest ("arn:*").
    return bool(_WILDCARD_ONLY.match(parts[-1]))


def grants_everything(statement: Statement) -> Optional[str] | bool:
    """Why an Allow statement grants `*`/`service:*` actions on all resources, or False.

    Allow with NotAction grants every action except the listed ones, and Allow with
    NotResource applies to every resource except the listed ones (AWS IAM user guide,
    "IAM JSON policy elements: NotAction / NotResource"): both count as broad. Returns
    the unknown sentinel when an action or resource is unknown.
    """
    if not statement.allows:
        return False
    if any_unknown(statement.actions) or any_unknown(statement.not_actions) \
            or any_unknown(statement.resources) or any_unknown(statement.not_resources):
        return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    if statement.not_actions is not None:
        action_text = f"NotAction {_show_list(statement.not_actions)} (every other action)"
    else:
        broad = [a for a in statement.actions or [] if broad_action(a)]
        if not broad:
            return False
        action_text = f"Action {_show_list(broad)}"
    if statement.not_resources is not None:
        resource_text = f"NotResource {_show_list(statement.not_resources)} (every other resource)"
    else:
        broad_resources = [r for r in statement.resources or [] if broad_resource(r)]
        if not broad_resources:
            return False
        resource_text = f"Resource {_show_list(broad_resources)}"
    return f"{action_text} on {resource_text}"


def _show_list(values: list) -> str:
    return json.dumps(values[0] if len(values) == 1 else values)


# ---- principals and conditions ------------------------------------------------------------

_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]*:(iam|sts)::([^:]*):")


def open_principals(principal: Any) -> list[str]:
    """The identifiers of a Principal element that admit anyone: `"*"`, `{"AWS": "*"}`, an
    ARN with a wildcard account. Returns e.g. ['"*"'] or ['AWS "*"']."""
    if principal is None:
        return []
    if isinstance(principal, str):
        return [json.dumps(principal)] if principal.strip() == "*" else []
    found = []
    if isinstance(principal, dict):
        for kind, identifiers in principal.items():
            if str(kind).lower() == "service":
                continue
            for identifier in _strings(identifiers) or []:
                if not isinstance(identifier, str) or is_unknown(identifier):
                    continue
                text = identifier.strip()
                match = _ACCOUNT_IN_ARN.match(text)
                if text == "*" or (match and "*" in match.group(2)):
                    found.append(f"{kind} {json.dumps(identifier)}")
    return found


def service_principals(principal: Any) -> list[str]:
    if not isinstance(principal, dict):
        return []
    services = []
    for kind, identifiers in principal.items():
        if str(kind).lower() == "service":
            services.extend(s for s in _strings(identifiers) or [] if isinstance(s, str))
    return services


def federated_principals(principal: Any) -> list[str]:
    if not isinstance(principal, dict):
        return []
    found = []
    for kind, identifiers in principal.items():
        if str(kind).lower() == "federated":
            found.extend(s for s in _strings(identifiers) or [] if isinstance(s, str) and not is_unknown(s))
    return found


def service_name(identifier: str) -> str:
    # logs.us-east-1.amazonaws.com is the regional spelling of logs.amazonaws.com.
    text = identifier.strip().lower()
    parts = text.split(".")
    if len(parts) >= 4 and parts[-2:] == ["amazonaws", "com"] and re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", parts[-3]):
        return ".".join(parts[:-3] + parts[-2:])
    return text


def principal_unknown(principal: Any) -> bool:
    if is_unknown(principal):
        return True
    if isinstance(principal, dict):
        return any(is_unknown(v) or any_unknown(_strings(v)) for v in principal.values())
    return False


# Condition keys that tie a request to one account, organisation, network or source
# resource (IAM user guide, "AWS global condition context keys"; KMS developer guide,
# kms:CallerAccount). A positive operator on one of them with a concrete value keeps an
# open principal from meaning "anyone".
RESTRICTING_KEYS = frozenset(k.lower() for k in (
    "aws:PrincipalAccount", "aws:PrincipalOrgID", "aws:PrincipalOrgPaths", "aws:PrincipalArn",
    "aws:SourceAccount", "aws:SourceArn", "aws:SourceOrgID", "aws:SourceOrgPaths", "aws:SourceOwner",
    "aws:SourceVpc", "aws:SourceVpce", "aws:SourceIp", "aws:userid", "aws:ResourceAccount",
    "kms:CallerAccount", "s3:DataAccessPointAccount", "s3:DataAccessPointArn",
))
# Boolean keys whose "true" confines the caller to a network path inside the account: EFS's
# own default file system policy admits `*` only through a mount target (Amazon EFS user
# guide, "Using IAM to control file system data access").
RESTRICTING_BOOLEANS = frozenset({"elasticfilesystem:accessedviamounttarget"})
SOURCE_KEYS = frozenset(k.lower() for k in (
    "aws:SourceAccount", "aws:SourceArn", "aws:SourceOrgID", "aws:SourceOrgPaths",
))


def restricting_keys(condition: dict, keys: frozenset = RESTRICTING_KEYS) -> list[str] | str:
    """Condition keys (of `keys`) that actually restrict: a positive operator (Equals, Like,
    IpAddress; not a Not-operator, not IfExists, which lets requests without the key through)
    with concrete values (not "*", not the whole internet). Unknown sentinel if undecidable."""
    if is_unknown(condition):
        return condition
    found = []
    saw_unknown = False
    for operator, tests in condition.items():
        op = str(operator)
        bare = op.split(":", 1)[-1].lower()
        if bare == "bool" and keys is RESTRICTING_KEYS and isinstance(tests, dict):
            found.extend(str(key) for key, values in tests.items()
                         if str(key).lower() in RESTRICTING_BOOLEANS
                         and [str(v).lower() for v in _strings(values) or []] == ["true"])
            continue
        # ForAllValues: holds vacuously when the key is absent (a caller outside any
        # organisation has no aws:PrincipalOrgID), so it confines nobody in an Allow.
        if "not" in bare or bare.endswith("ifexists") or bare in ("null", "bool") \
                or op.lower().startswith("forallvalues:"):
            continue
        if is_unknown(tests):
            saw_unknown = True
            continue
        if not isinstance(tests, dict):
            continue
        for key, values in tests.items():
            if str(key).lower() not in keys:
                continue
            values = _strings(values) or []
            if any(is_unknown(v) for v in values):
                saw_unknown = True
                continue
            if not values or any(_is_wildcard(v, str(key)) for v in values):
                continue
            found.append(str(key))
    if not found and saw_unknown:
        return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    return found


# Keys whose value is one identifier: a wildcard in it ("o-*", "1234*", "vpce-*") names a
# set of accounts, organisations or networks nobody chose, not the one that was meant.
_SINGLE_ID_KEYS = frozenset(k.lower() for k in (
    "aws:PrincipalAccount", "aws:PrincipalOrgID", "aws:SourceAccount", "aws:SourceOrgID", "aws:SourceOwner",
    "aws:SourceVpc", "aws:SourceVpce", "aws:ResourceAccount", "kms:CallerAccount", "s3:DataAccessPointAccount",
))
_ORG_PATH_KEYS = frozenset({"aws:principalorgpaths", "aws:sourceorgpaths"})


def _is_wildcard(value: Any, key: str) -> bool:
    text = str(value).strip()
    if text.strip("*?") == "":
        return True
    lowered = key.lower()
    if lowered == "aws:sourceip":
        return admits_internet(text) and text.endswith("/0")
    if lowered in _SINGLE_ID_KEYS:
        return "*" in text or "?" in text
    if lowered in _ORG_PATH_KEYS:
        # o-a1b2c3d4e5/r-ab12/ou-.../* is one organisation's subtree; o-*/... is any organisation's.
        organisation = text.split("/", 1)[0]
        return "*" in organisation or "?" in organisation
    if text.startswith("arn:"):
        parts = text.split(":", 5)
        if len(parts) < 5:
            return "*" in parts[-1] or "?" in parts[-1]  # "arn:*" stops before the account
        service, account = parts[2], parts[4]
        resource = parts[5] if len(parts) == 6 else ""
        # arn:aws:iam::*:role/x names no account at all; arn:aws:s3:::* (S3 ARNs carry no
        # account) names every bucket of every account.
        if account and account.strip("*?") == "":
            return True
        if not account and (service in ("iam", "sts") or "*" in service):
            return True
        return not account and resource != "" and resource.strip("*?/") == ""
    return False


def condition_values(condition: dict, key: str) -> list | str:
    """Values a positive operator (not Not-, not IfExists, not Null) tests `key` against,
    across every operator; the unknown sentinel when any of them is unknown."""
    if is_unknown(condition):
        return condition
    wanted = key.lower()
    found: list = []
    for operator, tests in condition.items():
        bare = str(operator).split(":", 1)[-1].lower()
        if "not" in bare or bare.endswith("ifexists") or bare in ("null", "bool"):
            continue
        if is_unknown(tests):
            return tests
        for name, values in as_mapping(tests).items():
            if str(name).lower() != wanted:
                continue
            values = _strings(values) or []
            if any(is_unknown(v) for v in values):
                return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
            found.extend(values)
    return found


def as_mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def confined_by_deny(statements: list[Statement], allow: Statement) -> bool:
    """Whether a Deny for everyone outside an account, organisation or network covers this
    Allow's actions: the common "Allow *, Deny unless aws:SourceVpce/aws:PrincipalOrgID is X"
    pattern. A negated operator (StringNotEquals, ArnNotLike, NotIpAddress, also IfExists) is
    true when the key is absent, so the Deny reaches every caller without the named value
    (IAM user guide, "IAM JSON policy elements: Condition operators")."""
    for deny in statements:
        if deny.allows or deny.effect.lower() != "deny" or is_unknown(deny.condition):
            continue
        if not (open_principals(deny.principal) or deny.principal == "*"):
            continue
        if not _actions_cover(deny, allow):
            continue
        flipped = {}
        for operator, tests in deny.condition.items():
            name = str(operator)
            bare = name.split(":", 1)[-1]
            if "Not" in bare and not is_unknown(tests):
                positive = name.replace("Not", "", 1)
                positive = positive[:-len("IfExists")] if positive.endswith("IfExists") else positive
                flipped[positive] = tests
        restricted = restricting_keys(flipped)
        if isinstance(restricted, list) and restricted:
            return True
    return False


def _actions_cover(deny: Statement, allow: Statement) -> bool:
    if deny.not_actions is not None:
        return False  # a Deny with NotAction leaves the listed actions allowed
    patterns = [str(a).lower() for a in deny.actions or [] if isinstance(a, str)]
    wanted = [str(a).lower() for a in allow.actions or [] if isinstance(a, str)]
    if allow.not_actions is not None or not wanted:
        return any(p.strip("*") == "" for p in patterns)
    return all(any(fnmatch.fnmatchcase(action, p) for p in patterns) for action in wanted)


def iter_documents(items: list[tuple[str, Any]]) -> Iterator[tuple[str, Optional[list[Statement]] | str]]:
    """(path, statements) for each (path, value); raises Unreadable like parse()."""
    for path, value in items:
        yield path, parse(value, path)


def statements_to_judge(value: Any, path: str, unreadable_means: str, fix: str) -> tuple[list[Statement], list]:
    """The document's statements, or the findings that stand in for them: an unreadable
    document is a violation, one unknown during preview cannot be checked, none is nothing."""
    from ._framework import cannot_check, violation

    try:
        statements = parse(value, path)
    except Unreadable as error:
        return [], [violation(path, None, f"{error}, so {unreadable_means}", fix, rendered="unreadable")]
    if statements is None:
        return [], []
    if is_unknown(statements):
        return [], [cannot_check(path)]
    return statements, []
