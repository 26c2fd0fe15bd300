"""Plan diff: what a change does to a stack, as a Markdown report a reviewer can read.

    python -m tools.diff --stack dev [--base <git rev>]     # base revision vs working tree
    python -m tools.diff --stacks staging prod              # two environments, same tree
    python -m tools.diff --plans old.json new.json          # two saved plans

The base revision is planned in a temporary `git worktree`, by that revision's own
`tools.preview` and stack files (run with this virtualenv's Python), so the report shows
what merging the change would do. The default base is `git merge-base HEAD main` (when
that is HEAD itself, the report shows the uncommitted changes).

The report lists resources added, removed, changed and replaced (URN changed), grouped by
component, with property-level changes (JSON-path like `ingress[0].cidrBlocks`; secrets
stay "[secret]"; long values abbreviated with their length), changed stack outputs, and
policy diagnostics that are new or resolved. `docs/REVIEWING.md` explains how to read it.
Output is deterministic: the same plans give the same bytes (no timestamps, no temp paths).

Exit codes: 0 report written, 2 a plan could not be made (the message says why).
"""
from __future__ import annotations

import argparse
import base64
import binascii
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from tools.plan import SCHEMA
from tools.stack_files import PROJECT_DIR

# Values longer than this (as JSON) are abbreviated in tables, with a length note.
VALUE_LIMIT = 80
# Property rows shown per resource; the rest are counted (the plan JSON has them all).
MAX_PROPERTY_ROWS = 40
# Lines of a text diff (cloud-init, scripts) shown per property.
MAX_TEXT_DIFF_LINES = 40
TEXT_LINE_LIMIT = 160
# A mapping or list added or removed as a whole is shown leaf by leaf up to this many leaves.
MAX_EXPANDED_LEAVES = 12

ACTIONS = ("add", "remove", "replace", "change")
_SYMBOL = {"add": "+", "remove": "-", "replace": "±", "change": "~"}
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
               notes: Iterable[str] = ()) -> Report:
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
        diagnostics=tuple(_diagnostic_changes(old_plan, new_plan)),
        outputs=tuple(diff_values(old_plan.get("outputs", {}), new_plan.get("outputs", {}))),
        unchanged=unchanged,
        old_counts=_counts(old_plan),
        new_counts=_counts(new_plan),
        notes=tuple(notes),
    )


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
    return tuple(_clip(line, TEXT_LINE_LIMIT) for line in lines)


# ------------------------------------------------------------------------ rendering (pure)

def render_markdown(report: Report, *, max_property_rows: int = MAX_PROPERTY_ROWS,
                    added_inputs: bool = False) -> str:
    """The report as GitHub-flavoured Markdown; the same report gives the same bytes."""
    lines: list[str] = []
    title = report.new_label if report.match == "urn" else f"{report.old_label} → {report.new_label}"
    lines.append(f"## Plan diff: {title}")
    lines.append("")
    if report.match == "urn":
        lines.append(f"Base: {report.old_label} → head: {report.new_label}. Resources matched by URN.")
    else:
        lines.append(f"Comparing {report.old_label} (before) with {report.new_label} (after). "
                     "Resources matched by type and name, since URNs differ by stack.")
    lines.append("Offline preview (the real program under the Pulumi mock engine): values AWS computes "
                 "at deploy show as `[unknown]`, secrets as `[secret]`.")
    lines.append("")
    for note in report.notes:
        lines.append(f"> **Note:** {note}")
        lines.append("")
    old, new = report.old_counts, report.new_counts
    lines.append(f"**{report.count('add')} to add · {report.count('remove')} to remove · "
                 f"{report.count('change')} to change · {report.count('replace')} to replace "
                 f"(URN changed) · {report.unchanged} unchanged** "
                 f"(resources {old.get('resources', 0)} → {new.get('resources', 0)})")
    new_diagnostics = sum(1 for d in report.diagnostics if d.status == "new")
    resolved = len(report.diagnostics) - new_diagnostics
    lines.append("")
    lines.append(f"**Policy: {new_diagnostics} new, {resolved} resolved** (mandatory "
                 f"{old.get('mandatory', 0)} → {new.get('mandatory', 0)}, advisory "
                 f"{old.get('advisory', 0)} → {new.get('advisory', 0)})")
    lines.append("")
    if not report.has_changes:
        lines.append("No changes.")
        return "\n".join(lines) + "\n"

    if report.diagnostics:
        lines.append("### Policy diagnostics")
        lines.append("")
        for status, heading in (("new", "New"), ("resolved", "Resolved")):
            items = [d for d in report.diagnostics if d.status == status]
            if not items:
                continue
            lines.append(f"**{heading}**")
            lines.append("")
            lines.append("| Level | Policy | Resource | Message |")
            lines.append("|---|---|---|---|")
            for d in items:
                lines.append(f"| {d.level} | {_code(d.policy)} | {_code(d.resource)} | "
                             f"{_cell(_clip(' '.join(d.message.split()), 400))} |")
            lines.append("")

    components = sorted({r.component for r in report.resources})
    if components:
        lines.append("### Resources by component")
        lines.append("")
    for component in components:
        group = [r for r in report.resources if r.component == component]
        counts = " ".join(f"{_SYMBOL[a]}{n}" for a in ACTIONS
                          if (n := sum(1 for r in group if r.action == a)))
        lines.append(f"#### {_code(component) if component else '(top level)'} ({counts})")
        lines.append("")
        listed = [r for r in group if r.action in ("add", "remove", "replace")]
        if listed:
            lines.append("| | Type | Name |")
            lines.append("|:-:|---|---|")
            for r in listed:
                lines.append(f"| {_SYMBOL[r.action]} | {_code(r.type)} | {_code(r.name)} |")
            lines.append("")
        for r in group:
            if r.action == "replace":
                lines.append(f"**± {_code(r.type)} {_code(r.name)}**: its URN changed (new parent), "
                             "so Pulumi creates it anew and deletes the old one unless the code "
                             "declares an alias.")
                lines.append("")
            if r.action in ("change", "replace") and r.properties:
                if r.action == "change":
                    lines.append(f"**~ {_code(r.type)} {_code(r.name)}**")
                    lines.append("")
                lines.extend(_property_table(r.properties, max_property_rows))
            if r.action == "add" and added_inputs and r.inputs:
                lines.append(f"<details><summary>+ {_html(r.type)} {_html(r.name)}: inputs</summary>")
                lines.append("")
                lines.extend(_property_table(tuple(diff_values({}, r.inputs)), max_property_rows,
                                             columns=("Property", "Value")))
                lines.append("</details>")
                lines.append("")

    if report.outputs:
        lines.append("### Stack outputs")
        lines.append("")
        lines.extend(_property_table(report.outputs, max_property_rows))
    return "\n".join(lines).rstrip("\n") + "\n"


def _property_table(changes: tuple[PropertyChange, ...], limit: int,
                    columns: tuple[str, ...] = ("Property", "Before", "After")) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    texts: list[PropertyChange] = []
    for change in changes[:limit]:
        if change.text_diff:
            texts.append(change)
            before, after = _text_note(change.before), _text_note(change.after)
        else:
            before, after = _show_pair(change.before, change.after)
        where = _code(change.path) + (f" ({change.note})" if change.note else "")
        cells = [where, after] if len(columns) == 2 else [where, before, after]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if len(changes) > limit:
        lines.append(f"| … {len(changes) - limit} more (see the plan JSON) |" + " |" * (len(columns) - 1))
    lines.append("")
    for change in texts:
        shown = change.text_diff[:MAX_TEXT_DIFF_LINES]
        lines.append(f"{_code(change.path)}:")
        lines.append("")
        lines.append("```diff")
        lines.extend(shown)
        if len(change.text_diff) > len(shown):
            lines.append(f"… {len(change.text_diff) - len(shown)} more diff lines")
        lines.append("```")
        lines.append("")
    return lines


def _text_note(value: Any) -> str:
    if value is ABSENT:
        return "*(absent)*"
    return f"text, {len(str(value))} chars"


def _show(value: Any) -> str:
    if value is ABSENT:
        return "*(absent)*"
    text = _json(value)
    if len(text) > VALUE_LIMIT:
        return _code(text[:VALUE_LIMIT - 20] + "…") + f" ({len(text)} chars)"
    return _code(text)


def _show_pair(before: Any, after: Any) -> tuple[str, str]:
    """Both values; when two long strings differ, show each around the first difference."""
    if before is ABSENT or after is ABSENT:
        return _show(before), _show(after)
    old, new = _json(before), _json(after)
    if len(old) <= VALUE_LIMIT and len(new) <= VALUE_LIMIT:
        return _code(old), _code(new)
    common = len(os.path.commonprefix([old, new]))
    start = max(0, common - 20)
    if start < 10:
        return _show(before), _show(after)

    def window(text: str) -> str:
        piece = text[start:start + VALUE_LIMIT - 20]
        tail = "…" if start + len(piece) < len(text) else ""
        return _code("…" + piece + tail) + f" ({len(text)} chars)"

    return window(old), window(new)


def _json(value: Any) -> str:
    if value in ("[unknown]", "[secret]"):
        return value
    return json.dumps(_whole_numbers(value), sort_keys=True, ensure_ascii=False)


def _whole_numbers(value: Any) -> Any:
    # The wire carries every number as a double; 600.0 reads better as 600.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + f"… ({len(text)} chars)"


def _code(text: str) -> str:
    if "`" in text:
        return f"`` {text} ``"
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(markdown: str, max_chars: Optional[int]) -> str:
    """Cut a long report at a line boundary (a pull request comment holds 65,536 chars)."""
    if not max_chars or len(markdown) <= max_chars:
        return markdown
    note = ("\n> **Truncated**: the report is longer than a comment allows; run `make diff` "
            "locally (or read the job log) for the whole report.\n")
    fence = "\n```"
    # Room for the note, the newline before it, and a closing fence if the cut lands
    # inside a code block: the result never exceeds max_chars.
    room = max_chars - len(note) - 1
    cut = markdown.rfind("\n", 0, max(room + 1, 0))
    body = markdown[:cut if cut > 0 else 0]
    if body.count("```") % 2:
        cut = markdown.rfind("\n", 0, max(room - len(fence) + 1, 0))
        body = markdown[:cut if cut > 0 else 0]
        if body.count("```") % 2:
            body += fence
    result = body + "\n" + note
    if len(result) > max_chars:
        # A limit smaller than the note itself: keep as much of the note as fits.
        result = note.strip()[:max_chars]
    return result


# ------------------------------------------------------------------------ planning (git, processes)

def _git(*args: str, cwd: Path = PROJECT_DIR) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DiffError(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def resolve_base(base: Optional[str], project_dir: Path = PROJECT_DIR) -> tuple[str, str]:
    """(commit, label) for --base, defaulting to the merge base of HEAD with main."""
    if base:
        try:
            commit = _git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=project_dir)
        except DiffError:
            raise DiffError(f"--base {base}: no such commit in this repository (a shallow clone "
                            "may lack it: `git fetch --unshallow`, or fetch-depth: 0 in CI)") from None
        return commit, f"`{base}` ({commit[:12]})"
    head = _git("rev-parse", "HEAD", cwd=project_dir)
    for branch in ("main", "origin/main"):
        try:
            commit = _git("merge-base", "HEAD", branch, cwd=project_dir)
        except DiffError:
            continue
        if commit == head:
            return commit, (f"HEAD ({commit[:12]}; it is the merge base with {branch}, so this shows "
                            "uncommitted changes)")
        return commit, f"merge base with {branch} ({commit[:12]})"
    raise DiffError("no `main` or `origin/main` branch to find the merge base with; pass --base <rev>")


@dataclass
class _PlanJob:
    label: str
    stack: str
    project_dir: Path
    out: Path
    process: Optional[subprocess.Popen] = None
    missing: bool = False


def _start_preview(job: _PlanJob, with_policies: bool) -> None:
    if not (job.project_dir / "stacks" / f"Pulumi.{job.stack}.yaml").is_file():
        job.missing = True
        return
    command = [sys.executable, "-m", "tools.preview", "--stack", job.stack, "--plan-out", str(job.out),
               "--quiet"]
    if not with_policies:
        command.append("--no-policies")
    # Import that tree's code only (`-m` puts the working directory first; PYTHONPATH
    # must not point back at another checkout).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(job.project_dir)
    job.process = subprocess.Popen(command, cwd=job.project_dir, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)


def _finish_preview(job: _PlanJob) -> dict:
    if job.missing:
        return empty_plan(job.stack)
    assert job.process is not None
    _, stderr = job.process.communicate()
    # 0: clean; 1: mandatory violations, and the plan is still written. Anything else, or
    # no plan file, is a preview that did not finish.
    if job.process.returncode not in (0, 1) or not job.out.is_file():
        detail = "\n".join(stderr.strip().splitlines()[-25:]).replace(str(job.project_dir), "<tree>")
        hint = ""
        if "analyzer" in detail or "policy" in detail.lower():
            hint = ("\nIf that revision's policy tooling is incomplete, compare without it: "
                    "add --no-policies.")
        raise DiffError(f"the preview of stack {job.stack} at {job.label} failed "
                        f"(exit {job.process.returncode}):\n{detail}{hint}")
    return json.loads(job.out.read_text())


def plan_in_parallel(jobs: list[_PlanJob], with_policies: bool) -> list[dict]:
    try:
        for job in jobs:
            _start_preview(job, with_policies)
        return [_finish_preview(job) for job in jobs]
    finally:
        for job in jobs:
            if job.process is not None and job.process.poll() is None:
                job.process.kill()
                job.process.wait()


def diff_revisions(stack: str, base: Optional[str], *, with_policies: bool = True,
                   project_dir: Path = PROJECT_DIR) -> Report:
    """Plan `stack` at the base revision (in a git worktree) and in the working tree."""
    commit, base_label = resolve_base(base, project_dir)
    scratch = Path(tempfile.mkdtemp(prefix="deepseek-diff-"))
    worktree = scratch / "base"
    try:
        _git("worktree", "add", "--detach", "--quiet", str(worktree), commit, cwd=project_dir)
        if not (worktree / "tools" / "preview.py").is_file():
            raise DiffError(f"the base revision {base_label} has no tools/preview.py, so it cannot be "
                            "previewed offline; pick a base at or after the commit that added it "
                            "(`git log --diff-filter=A --format=%h -- tools/preview.py`)")
        jobs = [_PlanJob(f"base {base_label}", stack, worktree, scratch / "base.json"),
                _PlanJob("the working tree", stack, project_dir, scratch / "head.json")]
        old_plan, new_plan = plan_in_parallel(jobs, with_policies)
    finally:
        try:
            _git("worktree", "remove", "--force", str(worktree), cwd=project_dir)
        except DiffError:
            pass
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=project_dir, capture_output=True)
    if jobs[0].missing and jobs[1].missing:
        known = sorted(p.name[len("Pulumi."):-len(".yaml")]
                       for p in (project_dir / "stacks").glob("Pulumi.*.yaml"))
        raise DiffError(f"stacks/Pulumi.{stack}.yaml exists neither in the working tree nor at the base "
                        f"revision; stacks here: {', '.join(known) or 'none'}")
    notes = []
    if jobs[0].missing:
        notes.append(f"stack `{stack}` does not exist at the base revision: every resource is new.")
    if jobs[1].missing:
        notes.append(f"stack `{stack}` does not exist in the working tree: every resource is removed.")
    return diff_plans(old_plan, new_plan, match="urn", old_label=base_label,
                      new_label=f"working tree, stack `{stack}`", notes=notes)


def diff_stacks(old_stack: str, new_stack: str, *, with_policies: bool = True,
                project_dir: Path = PROJECT_DIR) -> Report:
    """Plan two stacks of the working tree and compare them by resource type and name."""
    scratch = Path(tempfile.mkdtemp(prefix="deepseek-diff-"))
    try:
        jobs = [_PlanJob("the working tree", old_stack, project_dir, scratch / "old.json"),
                _PlanJob("the working tree", new_stack, project_dir, scratch / "new.json")]
        for job in jobs:
            if not (project_dir / "stacks" / f"Pulumi.{job.stack}.yaml").is_file():
                raise DiffError(f"stacks/Pulumi.{job.stack}.yaml: no such stack file")
        old_plan, new_plan = plan_in_parallel(jobs, with_policies)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return diff_plans(old_plan, new_plan, match="name", old_label=f"`{old_stack}`",
                      new_label=f"`{new_stack}`")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stack", help="compare this stack at --base with the working tree")
    what.add_argument("--stacks", nargs=2, metavar=("A", "B"), help="compare stack A with stack B")
    what.add_argument("--plans", nargs=2, type=Path, metavar=("OLD", "NEW"),
                      help="compare two plan JSON files (python -m tools.preview --plan-out)")
    parser.add_argument("--base", help="git revision to compare with (default: merge base with main)")
    parser.add_argument("--match", choices=("urn", "name"), help="with --plans: how to pair resources "
                        "(default urn; name for plans of two different stacks)")
    parser.add_argument("--no-policies", action="store_true", help="plan without the policy pack")
    parser.add_argument("--added-inputs", action="store_true",
                        help="also list the inputs of added resources (collapsed)")
    parser.add_argument("--max-chars", type=int, help="cut the report to this many characters "
                        "(GitHub comments hold 65536)")
    parser.add_argument("--out", type=Path, help="write the report here instead of stdout")
    args = parser.parse_args(argv)
    if args.base and not args.stack:
        parser.error("--base goes with --stack")
    if args.match and not args.plans:
        parser.error("--match goes with --plans (--stack pairs resources by URN, --stacks by type and name)")
    if args.max_chars is not None and args.max_chars < 1:
        parser.error("--max-chars must be a positive number of characters")
    try:
        if args.stack:
            report = diff_revisions(args.stack, args.base, with_policies=not args.no_policies)
        elif args.stacks:
            report = diff_stacks(*args.stacks, with_policies=not args.no_policies)
        else:
            old_plan, new_plan = (load_plan(p) for p in args.plans)
            report = diff_plans(old_plan, new_plan, match=args.match or "urn",
                                old_label=f"`{args.plans[0].name}`", new_label=f"`{args.plans[1].name}`")
    except (DiffError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = truncate(render_markdown(report, added_inputs=args.added_inputs), args.max_chars)
    if args.out:
        if args.out.is_dir():
            print(f"error: {args.out}: is a directory; --out takes a file path", file=sys.stderr)
            return 2
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        except OSError as error:
            print(f"error: {args.out}: {error.strerror or error}; --out needs a writable file path",
                  file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
