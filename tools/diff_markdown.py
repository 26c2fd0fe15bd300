"""A plan diff as Markdown a reviewer can read (docs/REVIEWING.md explains it).

Deterministic: the same report gives the same bytes (no timestamps, no temp paths).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from tools.plan_diff import ABSENT, ACTIONS, PropertyChange, Report, clip, diff_values

# Values longer than this (as JSON) are abbreviated in tables, with a length note.
VALUE_LIMIT = 80
# Property rows shown per resource; the rest are counted (the plan JSON has them all).
MAX_PROPERTY_ROWS = 40
# Lines of a text diff (cloud-init, scripts) shown per property.
MAX_TEXT_DIFF_LINES = 40

_SYMBOL = {"add": "+", "remove": "-", "replace": "±", "change": "~"}


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
    if report.cost:
        lines.append(report.cost)
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
                             f"{_cell(clip(' '.join(d.message.split()), 400))} |")
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
