"""IAM-style policy documents as resource policies use them: who a statement lets in.

A document arrives as a JSON string (json.dumps, Output.json_dumps, a heredoc) or, from
some programs, as an object; `Statement` may be one statement or a list, and `Principal`,
`Action` and condition values may each be a string or a list. An unrestricted open
statement is an Allow for every principal ("*", {"AWS": "*"}) with no condition that
narrows the caller to an organization, account, source resource, VPC, endpoint or a
non-internet address range
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html).
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any, Iterable, Optional

from ._wire import admits_internet, as_dict, as_list, is_unknown, parse_cidr

# Condition keys that confine a statement to callers the owner controls.
RESTRICTING_KEYS = frozenset({
    "aws:sourcearn", "aws:sourceaccount", "aws:sourceowner", "aws:principalorgid", "aws:principalorgpaths",
    "aws:principalaccount", "aws:principalarn", "aws:sourcevpce", "aws:sourcevpc", "aws:sourceorgid",
    "aws:sourceorgpaths", "aws:userid", "aws:principalservicename", "lambda:functionurlauthtype",
    "aws:resourceorgid", "aws:resourceaccount", "aws:vpcsourceip",
})


def parse(document: Any) -> Any:
    """The document as a dict, the unknown sentinel, None when absent, or "unreadable"."""
    if document is None or is_unknown(document):
        return document
    if isinstance(document, dict):
        return document
    if isinstance(document, str):
        if not document.strip():
            return None
        try:
            parsed = json.loads(document)
        except ValueError:
            return "unreadable"
        return parsed if isinstance(parsed, dict) else "unreadable"
    return "unreadable"


def statements(document: dict) -> list[dict]:
    return [as_dict(s) for s in as_list(document.get("Statement"))]


def _values(value: Any) -> list:
    return [v for v in as_list(value)]


def open_principal(principal: Any) -> bool:
    """Every principal: "*" or {"AWS": "*"} (any AWS account); services are not everyone."""
    if principal == "*":
        return True
    principal = as_dict(principal)
    return any(str(v).strip() == "*" for key in ("AWS", "CanonicalUser", "Federated")
               for v in _values(principal.get(key)))


def service_principals(principal: Any) -> list[str]:
    if isinstance(principal, str) and principal.endswith(".amazonaws.com"):
        return [principal]
    return [str(v) for v in _values(as_dict(principal).get("Service"))]


# A source range wider than any one organisation's allocation confines nobody: 0.0.0.0/0 split
# into halves, or a /4, is the internet spelled differently.
_WIDEST_CONFINING_PREFIX = {4: 8, 6: 16}


def pins_caller(key: str, value: Any, like: bool) -> bool:
    """Whether one condition value names callers the owner controls. Under a *Like operator
    (ArnLike, the Lambda permission's source ARN) a wildcard where the account, organization,
    endpoint or VPC goes matches everyone's."""
    text = str(value).strip()
    if text in ("*", ""):
        return False
    if not like:
        return True
    if key in ("aws:sourcearn", "aws:principalarn"):
        parts = text.split(":", 5)
        if len(parts) < 6:
            return False
        account, resource = parts[4], parts[5]
        if account:
            return not any(c in account for c in "*?")
        return bool(resource) and resource[0] not in "*?"  # S3 ARNs carry no account: the bucket pins
    if key in ("aws:principalorgpaths", "aws:sourceorgpaths"):
        return not any(c in text.split("/", 1)[0] for c in "*?")
    return not any(c in text for c in "*?")


def confining_source_ip(cidrs: list) -> bool:
    if not cidrs:
        return False
    for cidr in cidrs:
        if not isinstance(cidr, str) or not admits_internet(cidr):
            continue
        network = parse_cidr(cidr)
        if network is None or network.prefixlen < _WIDEST_CONFINING_PREFIX[network.version]:
            return False
    return True


def restricting_condition(condition: Any) -> bool:
    """Whether a Condition block narrows the caller to something the owner controls.

    Operators that hold when the key is absent (…IfExists, Null, ForAllValues:) or that
    allow everything except the named value (…Not…) confine nobody in an Allow: a request
    from the internet carries no aws:SourceVpce, a principal outside any organization no
    aws:PrincipalOrgID (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
    """
    for operator, pairs in as_dict(condition).items():
        name = str(operator).lower()
        if name.endswith("ifexists") or name == "null" or name.startswith("forallvalues:") or "not" in name:
            continue
        like = "like" in name
        for key, value in as_dict(pairs).items():
            key = str(key).lower()
            if key in RESTRICTING_KEYS:
                values = _values(value)
                if values and all(pins_caller(key, v, like) for v in values):
                    return True
            elif key == "aws:sourceip" and confining_source_ip(_values(value)):
                return True
    return False


def action_matches(actions: Any, wanted: Iterable[str]) -> bool:
    """Whether an Action (string or list, with wildcards) covers any of the wanted actions."""
    for action in _values(actions):
        pattern = str(action).lower()
        if any(fnmatch.fnmatchcase(w.lower(), pattern) for w in wanted):
            return True
    return False


def denies_outsiders(document: dict, allow: Optional[dict] = None, wanted: Iterable[str] = ()) -> bool:
    """A Deny for everyone outside an organization, VPC or endpoint: the common pattern of an
    open Allow paired with a Deny unless aws:SourceVpce/aws:PrincipalOrgID/... matches.

    With `allow`, only a Deny that covers that Allow counts: every wanted action it grants
    and every resource it names (a Deny on one API stage confines that stage, not the
    API's other stages). A Deny written with NotAction or NotResource confines nothing here:
    what it leaves out cannot be told apart from what the Allow opens."""
    for statement in statements(document):
        if str(statement.get("Effect", "")).lower() == "deny" and open_principal(statement.get("Principal")) \
                and restricting_condition(_negated(statement.get("Condition"))) \
                and (allow is None or _deny_covers(statement, allow, wanted)):
            return True
    return False


def _deny_covers(deny: dict, allow: dict, wanted: Iterable[str]) -> bool:
    if "NotAction" in deny or "NotResource" in deny:
        return False
    granted = [w for w in wanted if "NotAction" in allow or action_matches(allow.get("Action"), [w])]
    if not all(action_matches(deny.get("Action"), [w]) for w in granted):
        return False
    # An Allow with NotResource, or with no Resource (resource-based policies imply the
    # resource the policy is attached to), opens every resource.
    opened = ["*"] if "NotResource" in allow else [str(r) for r in _values(allow.get("Resource", "*"))] or ["*"]
    confined = [str(r) for r in _values(deny.get("Resource", "*"))] or ["*"]
    return all(any(fnmatch.fnmatchcase(resource, pattern) for pattern in confined) for resource in opened)


def _negated(condition: Any) -> dict:
    # A Deny with StringNotEquals aws:SourceVpce X confines the Allow to X: read it as the positive.
    flipped: dict = {}
    for operator, pairs in as_dict(condition).items():
        name = str(operator)
        if "Not" in name:
            flipped[name.replace("Not", "", 1)] = pairs
    return flipped


def open_statements(document: dict, wanted_actions: Iterable[str]) -> list[tuple[int, dict]]:
    """(index, statement) of Allow statements that let every principal perform a wanted action
    with no restricting condition, unless a Deny confines everyone outside."""
    wanted = list(wanted_actions)
    found = []
    for index, statement in enumerate(statements(document)):
        # An Allow with NotPrincipal lets in everyone but the listed principals.
        everyone = open_principal(statement.get("Principal")) or "NotPrincipal" in statement
        if str(statement.get("Effect", "")).lower() != "allow" or not everyone:
            continue
        if "NotAction" in statement or action_matches(statement.get("Action"), wanted):
            if not restricting_condition(statement.get("Condition")):
                found.append((index, statement))
    return [(index, statement) for index, statement in found
            if not denies_outsiders(document, statement, wanted)]


def first_unknown(document: dict) -> Optional[str]:
    """The path of a deciding value that is unknown inside a parsed document, if any."""
    for index, statement in enumerate(statements(document)):
        for key in ("Effect", "Principal", "Action", "Condition"):
            if is_unknown(statement.get(key)):
                return f"Statement[{index}].{key}"
    return None
