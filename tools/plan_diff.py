"""Plan diffing, pure: two plans (schema in README.md) in, resource, property, output and
diagnostic changes out. No git, no processes: tools/diff.py plans the revisions.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from tools.cost import plan_change
from tools.plan import SCHEMA

# Lines of a text diff (cloud-init, scripts) are clipped to this many characters.
TEXT_LINE_LIMIT = 160
# A mapping or list added or removed as a whole is shown leaf by leaf up to this many leaves.
MAX_EXPANDED_LEAVES = 12

ACTIONS = ("add", "remove", "replace", "change")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


class DiffError(Exception):
    """A plan could not be made; the message says which and what to do."""


class _Absent:
    """A property that does not exist on one side."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Absent)

    def __hash__(self) -> int:
        return 0


ABSENT = _Absent()


@dataclass(frozen=True)
class PropertyChange:
    path: str
    before: Any
    after: Any
    # For text values (scripts, cloud-init, decoded base64): unified diff lines, no header.
    text_diff: tuple[str, ...] = ()
    # What a list element is, when its index alone does not say: the command-line flag a
    # value belongs to (`--max-model-len`), or the `name` of a whole element.
    note: str = ""


@dataclass(frozen=True)
class ResourceChange:
    action: str  # "add" | "remove" | "replace" (URN changed) | "change"
    type: str
    name: str
    component: str
    urn: str  # the new URN (the old one for "remove")
    old_urn: str = ""  # for "replace" and cross-stack matches
    properties: tuple[PropertyChange, ...] = ()
    inputs: Any = None  # the (masked) inputs of an added resource


@dataclass(frozen=True)
class DiagnosticChange:
    status: str  # "new" | "resolved"
    level: str
    policy: str
    resource: str  # "type name", or "(stack)" for a stack-wide diagnostic
    component: str
    message: str


@dataclass(frozen=True)
class Report:
    match: str
    old_label: str
    new_label: str
    resources: tuple[ResourceChange, ...]
    diagnostics: tuple[DiagnosticChange, ...]
    outputs: tuple[PropertyChange, ...]
    unchanged: int
    old_counts: dict = field(default_factory=dict)  # resources, mandatory, advisory
    new_counts: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # Monthly cost before -> after (tools/cost.py), or "" when neither plan has resources.
    cost: str = ""

    def count(self, action: str) -> int:
        return sum(1 for r in self.resources if r.action == action)

    @property
    def has_changes(self) -> bool:
        return bool(self.resources or self.diagnostics or self.outputs)


# ------------------------------------------------------------------------ diffing (pure)

def empty_plan(stack: str) -> dict[str, Any]:
    """The plan of a stack that does not exist (on one side of a diff)."""
    return {"schema": SCHEMA, "project": "deepseek-serving", "stack": stack, "stack_file": "",
            "mode": "preview", "resources": [], "outputs": {}, "diagnostics": [],
            "summary": {"resources": 0, "by_type": {}, "mandatory": 0, "advisory": 0}}


def diff_plans(old_plan: dict, new_plan: dict, *, match: str = "urn",
               old_label: Optional[str] = None, new_label: Optional[str] = None,
               notes: Iterable[str] = (), policies_default: bool = True) -> Report:
    """Compare two plans (schema deepseek-serving/plan@1).

    match="urn": resources are the same when their URNs are (two revisions of one stack);
    a resource whose URN changed but whose type and name did not is reported as replaced.
    match="name": resources are the same when type and name are (two stacks, whose URNs
    differ by stack name).
    """
    if match not in ("urn", "name"):
        raise ValueError(f"match must be 'urn' or 'name', not {match!r}")
    for plan in (old_plan, new_plan):
        schema = plan.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise DiffError(f"plan of stack {plan.get('stack')!r} has schema {schema!r}; "
                            f"this tool reads {SCHEMA}")
    old_plan, new_plan = with_engine_urns(old_plan), with_engine_urns(new_plan)
    notes = list(notes)
    judged = [policies_ran(old_plan, policies_default), policies_ran(new_plan, policies_default)]
    if not all(judged):
        which = "either plan" if not any(judged) else ("the base plan" if not judged[0] else "the new plan")
        notes.append(f"Policies did not run for {which} (made with NO_POLICIES=1, or --no-policies): "
                     "policy diagnostics are not compared, and no finding here means nothing.")
    old_resources = _keyed(old_plan["resources"], match)
    new_resources = _keyed(new_plan["resources"], match)
    changes: list[ResourceChange] = []
    unchanged = 0
    for key in sorted(old_resources.keys() & new_resources.keys()):
        old, new = old_resources[key], new_resources[key]
        properties = tuple(diff_values(old.get("inputs", {}), new.get("inputs", {})))
        if properties:
            changes.append(_change("change", new, properties=properties, old_urn=_old_urn(old, new)))
        else:
            unchanged += 1

    removed = [old_resources[k] for k in sorted(old_resources.keys() - new_resources.keys())]
    added = [new_resources[k] for k in sorted(new_resources.keys() - old_resources.keys())]
    if match == "urn":
        # Same type and name under a different parent: Pulumi sees a new URN, so it creates
        # the new resource and deletes the old one unless the code declares an alias.
        removed_by_name = {}
        for resource in removed:
            removed_by_name.setdefault((resource["type"], resource["name"]), []).append(resource)
        still_added = []
        for resource in added:
            candidates = removed_by_name.get((resource["type"], resource["name"]))
            if candidates:
                old = candidates.pop(0)
                changes.append(_change("replace", resource, old_urn=old["urn"],
                                       properties=tuple(diff_values(old.get("inputs", {}),
                                                                    resource.get("inputs", {})))))
            else:
                still_added.append(resource)
        added = still_added
        removed = [r for group in removed_by_name.values() for r in group]
    changes.extend(_change("add", r, inputs=r.get("inputs", {})) for r in added)
    changes.extend(_change("remove", r) for r in removed)

    return Report(
        match=match,
        old_label=old_label or f"stack {old_plan.get('stack', '?')}",
        new_label=new_label or f"stack {new_plan.get('stack', '?')}",
        resources=tuple(sorted(changes, key=_resource_order)),
        diagnostics=tuple(_diagnostic_changes(old_plan, new_plan)) if all(judged) else (),
        outputs=tuple(diff_values(old_plan.get("outputs", {}), new_plan.get("outputs", {}))),
        unchanged=unchanged,
        old_counts=_counts(old_plan),
        new_counts=_counts(new_plan),
        notes=tuple(notes),
        cost=plan_change(old_plan, new_plan),
    )


STACK_TYPE = "pulumi:pulumi:Stack"


def engine_urns(resources: list[dict]) -> dict[str, str]:
    """Each resource's URN as the engine forms it, derived from its parent links.

    The type chain is the parent's whole chain, `$`, then the type; the root stack is part
    of no chain. Plans written before the offline tooling formed URNs this way (it used the
    SDK mock monitor's shape) still pair resource by resource with newer ones.
    """
    by_urn = {r["urn"]: r for r in resources}
    chains: dict[str, str] = {}

    def chain(urn: str) -> str:
        if urn not in chains:
            resource = by_urn[urn]
            parent = resource.get("parent") or ""
            if parent in by_urn and parent != urn:
                chains[urn] = f"{chain(parent)}${resource['type']}"
            else:
                # No parent in the plan: the URN's own chain, less the stack type the mock put first.
                chains[urn] = urn.split("::")[2].removeprefix(f"{STACK_TYPE}$")
        return chains[urn]

    return {urn: "::".join([*urn.split("::")[:2], chain(urn), by_urn[urn]["name"]]) for urn in by_urn}


def with_engine_urns(plan: dict) -> dict:
    """The plan with every URN (resources, parents, providers, diagnostics) in the engine's form."""
    mapping = engine_urns(plan.get("resources", []))
    if all(old == new for old, new in mapping.items()):
        return plan

    def urn(value: str) -> str:
        return mapping.get(value, value)

    resources = [{**r, "urn": urn(r["urn"]), "parent": urn(r.get("parent", "")),
                  "provider": urn(r.get("provider", ""))} for r in plan["resources"]]
    diagnostics = [{**d, "urn": urn(d.get("urn", ""))} for d in plan.get("diagnostics", [])]
    return {**plan, "resources": resources, "diagnostics": diagnostics}


def policies_ran(plan: dict, default: bool) -> bool:
    """Whether the pack judged this plan; plans older than the `policies` field do not say."""
    recorded = plan.get("policies")
    return bool(recorded.get("ran")) if isinstance(recorded, dict) else default


def validate_plan(plan: Any, source: str) -> dict:
    """Check a plan read from `source` has the shape the diff reads; raise DiffError if not."""
    hint = "expected a plan written by `python -m tools.preview --plan-out`"
    if not isinstance(plan, dict):
        raise DiffError(f"{source}: the plan must be a JSON object, not {_json_kind(plan)}; {hint}")
    resources = plan.get("resources", ABSENT)
    if resources is ABSENT:
        raise DiffError(f"{source}: the plan has no `resources` list; {hint}")
    if not isinstance(resources, list):
        raise DiffError(f"{source}: `resources` must be a list, not {_json_kind(resources)}; {hint}")
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            raise DiffError(f"{source}: `resources[{index}]` must be an object, not "
                            f"{_json_kind(resource)}; {hint}")
        for key in ("urn", "type", "name"):
            if not isinstance(resource.get(key), str):
                problem = "is missing" if key not in resource else f"is {_json_kind(resource[key])}"
                raise DiffError(f"{source}: `resources[{index}].{key}` {problem}; it must be a "
                                f"string; {hint}")
    for key, kind in (("diagnostics", list), ("outputs", dict), ("summary", dict)):
        if key in plan and not isinstance(plan[key], kind):
            raise DiffError(f"{source}: `{key}` must be {'a list' if kind is list else 'an object'}, "
                            f"not {_json_kind(plan[key])}; {hint}")
    for index, diagnostic in enumerate(plan.get("diagnostics", [])):
        if not isinstance(diagnostic, dict):
            raise DiffError(f"{source}: `diagnostics[{index}]` must be an object, not "
                            f"{_json_kind(diagnostic)}; {hint}")
    return plan


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def load_plan(path: Path) -> dict:
    """Read and validate a saved plan JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise DiffError(f"{path}: is a directory; --plans takes two plan JSON files") from None
    except UnicodeDecodeError:
        raise DiffError(f"{path}: not UTF-8 text; expected a plan JSON file") from None
    except OSError as error:
        raise DiffError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as error:
        raise DiffError(f"{path}: not valid JSON: {error}") from None
    return validate_plan(plan, str(path))


def _keyed(resources: list[dict], match: str) -> dict[Any, dict]:
    keyed: dict[Any, dict] = {}
    for resource in sorted(resources, key=lambda r: r["urn"]):
        if match == "urn":
            keyed[resource["urn"]] = resource
            continue
        key: tuple = (resource["type"], resource["name"])
        if key in keyed:
            # Same type and name twice in one stack (different parents): tell them apart by
            # their component, which is the same across stacks.
            key = (resource["type"], resource["name"], resource.get("component", ""),
                   _urn_types(resource["urn"]))
        keyed[key] = resource
    return keyed


def _urn_types(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<parent types$type>::<name>
    parts = urn.split("::")
    return parts[2] if len(parts) > 2 else urn


def _old_urn(old: dict, new: dict) -> str:
    return old["urn"] if old["urn"] != new["urn"] else ""


def _change(action: str, resource: dict, **extra: Any) -> ResourceChange:
    return ResourceChange(action=action, type=resource["type"], name=resource["name"],
                          component=resource.get("component", ""), urn=resource["urn"], **extra)


def _resource_order(change: ResourceChange) -> tuple:
    return (change.component, ACTIONS.index(change.action), change.type, change.name, change.urn)


def _counts(plan: dict) -> dict[str, int]:
    summary = plan.get("summary", {})
    return {"resources": len(plan.get("resources", [])),
            "mandatory": int(summary.get("mandatory", 0)), "advisory": int(summary.get("advisory", 0))}


def _diagnostic_changes(old_plan: dict, new_plan: dict) -> list[DiagnosticChange]:
    # Diagnostics are matched by the judged resource's type and name (not its URN), so a
    # resource that moved keeps its findings, and two stacks can be compared.
    def keyed(plan: dict) -> Counter:
        by_urn = {r["urn"]: r for r in plan.get("resources", [])}
        found: Counter = Counter()
        for d in plan.get("diagnostics", []):
            resource = by_urn.get(d.get("urn", ""))
            label = f"{resource['type']} {resource['name']}" if resource else "(stack)"
            component = resource.get("component", "") if resource else ""
            found[(d.get("level", ""), d.get("policy", ""), label, component, d.get("message", ""))] += 1
        return found

    old, new = keyed(old_plan), keyed(new_plan)
    changes = []
    for status, counter in (("new", new - old), ("resolved", old - new)):
        for (level, policy, resource, component, message), count in counter.items():
            changes.extend([DiagnosticChange(status, level, policy, resource, component, message)] * count)
    level_order = {"mandatory": 0, "remediate": 1, "advisory": 2}
    return sorted(changes, key=lambda d: (d.status != "new", level_order.get(d.level, 3), d.policy,
                                          d.resource, d.message))


def diff_values(before: Any, after: Any, path: str = "") -> list[PropertyChange]:
    """Property-level differences between two (masked) plan values, in path order."""
    changes: list[PropertyChange] = []
    _diff(before, after, path, changes)
    return changes


def _diff(before: Any, after: Any, path: str, out: list[PropertyChange]) -> None:
    if before == after and type(before) is type(after):
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            _diff(before.get(key, ABSENT), after.get(key, ABSENT), _join(path, key), out)
        return
    # A mapping or list that appears or disappears as a whole: one row per leaf reads
    # better than one abbreviated value, unless it is large.
    if (before is ABSENT) != (after is ABSENT):
        whole = after if before is ABSENT else before
        if isinstance(whole, (dict, list)) and whole and _leaf_count(whole) <= MAX_EXPANDED_LEAVES:
            items = sorted(whole.items()) if isinstance(whole, dict) else list(enumerate(whole))
            for key, value in items:
                where = _join(path, key) if isinstance(whole, dict) else f"{path}[{key}]"
                _diff(value if after is ABSENT else ABSENT, ABSENT if after is ABSENT else value, where, out)
            return
    if isinstance(before, list) and isinstance(after, list):
        _diff_lists(before, after, path, out)
        return
    if isinstance(before, str) and isinstance(after, str):
        documents = _json_documents(before, after)
        if documents is not None:
            _diff(documents[0], documents[1], f"{path}<json>", out)
            return
        texts = _texts(before, after)
        if texts is not None:
            kind, old_text, new_text = texts
            out.append(PropertyChange(f"{path}<{kind}>" if kind else path, before, after,
                                      text_diff=_text_diff(old_text, new_text)))
            return
    out.append(PropertyChange(path or "(value)", before, after))


def _leaf_count(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaf_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(_leaf_count(v) for v in value)
    return 1


def _join(path: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _diff_lists(before: list, after: list, path: str, out: list[PropertyChange]) -> None:
    # Align the lists first, so an inserted flag in `args` is one added element, not a
    # change of every element after it. Indices: the new list's for added and changed
    # elements, the old list's for removed ones.
    encode = lambda item: json.dumps(item, sort_keys=True)  # noqa: E731
    matcher = difflib.SequenceMatcher(None, [encode(i) for i in before], [encode(i) for i in after],
                                      autojunk=False)

    def pair(i: int, j: int) -> None:
        old, new = before[i], after[j]
        if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
            _diff(old, new, f"{path}[{j}]", out)
        elif not (old == new and type(old) is type(new)):
            out.append(PropertyChange(f"{path}[{j}]", old, new, note=_element_note(after, j)))

    def added(j: int) -> None:
        out.append(PropertyChange(f"{path}[{j}]", ABSENT, after[j], note=_element_note(after, j)))

    def removed(i: int) -> None:
        out.append(PropertyChange(f"{path}[{i}]", before[i], ABSENT, note=_element_note(before, i)))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        old_names, new_names = _names(before[i1:i2]), _names(after[j1:j2])
        if old_names is not None and new_names is not None:
            # Named elements (WAF rules, containers, env vars, ports): pair them by name,
            # so a rule inserted in the middle is one added rule.
            for k, name in enumerate(new_names, start=j1):
                if name in old_names:
                    pair(i1 + old_names.index(name), k)
                else:
                    added(k)
            for k, name in enumerate(old_names, start=i1):
                if name not in new_names:
                    removed(k)
            continue
        pairs = min(i2 - i1, j2 - j1)
        for k in range(pairs):
            pair(i1 + k, j1 + k)
        for k in range(j1 + pairs, j2):
            added(k)
        for k in range(i1 + pairs, i2):
            removed(k)


def _element_note(items: list, index: int) -> str:
    item = items[index]
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"name {item['name']}"
    previous = items[index - 1] if index > 0 else None
    if not isinstance(item, (dict, list)) and isinstance(previous, str) and previous.startswith("-") \
            and not (isinstance(item, str) and item.startswith("-")):
        return f"value of {previous}"
    return ""


def _names(items: list) -> Optional[list[str]]:
    """The elements' `name` fields, when every element has a distinct one."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return names  # type: ignore[return-value]


def _json_documents(before: str, after: str) -> Optional[tuple[Any, Any]]:
    """Both strings are JSON objects or arrays (IAM policies, tags): diff inside them."""
    if not (before[:1] in "{[" and after[:1] in "{[" and before and after):
        return None
    try:
        documents = json.loads(before), json.loads(after)
    except ValueError:
        return None
    return documents if all(isinstance(d, (dict, list)) for d in documents) else None


def _texts(before: str, after: str) -> Optional[tuple[str, str, str]]:
    """(kind, old text, new text) when a line diff reads better than two values."""
    decoded = [_base64_text(value) for value in (before, after)]
    if all(text is not None for text in decoded):
        return "base64", decoded[0], decoded[1]  # type: ignore[return-value]
    if "\n" in before or "\n" in after:
        return "", before, after
    return None


def _base64_text(value: str) -> Optional[str]:
    # User data is base64 of a text document; only multi-line text counts, so an ordinary
    # word that happens to be valid base64 is never decoded.
    if len(value) < 16 or len(value) % 4 or not _BASE64.match(value):
        return None
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return text if "\n" in text else None


def _text_diff(before: str, after: str) -> tuple[str, ...]:
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1))[2:]
    return tuple(clip(line, TEXT_LINE_LIMIT) for line in lines)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + f"… ({len(text)} chars)"
