"""The plan: what an offline preview would register, as data a reviewer or a diff can read.

Schema (`deepseek-serving/plan@1`), also documented in README.md:
  stack, project, stack_file, mode ("preview")
  resources: [{urn, type, name, parent, custom, provider, component, inputs}], sorted by urn;
      inputs use wire (camelCase) names; a secret is the string "[secret]" and a value
      the engine does not know yet is "[unknown]" (or a string containing it when only
      part of the value is unknown).
  policies: {ran, config}: whether the pack judged this plan, and with which config file.
  diagnostics: [{policy, pack, level, urn, message}], sorted (empty when policies did not run).
  summary: {resources, by_type: {type: count}, mandatory, advisory}
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable, Optional

from tools.mock_engine import (
    SECRET_SIG,
    SECRET_SIG_KEY,
    UNKNOWN,
    ProgramRun,
    Registration,
)

SCHEMA = "deepseek-serving/plan@1"
SECRET_MARK = "[secret]"
UNKNOWN_MARK = "[unknown]"


def mask(value: Any) -> Any:
    """Wire-form value -> plan value: secrets masked, unknowns marked."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return SECRET_MARK
        return {key: mask(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        # The wire carries every number as a double; the engine shows 300, not 300.0.
        return int(value)
    if value == UNKNOWN:
        return UNKNOWN_MARK
    if isinstance(value, str) and UNKNOWN in value:
        return value.replace(UNKNOWN, UNKNOWN_MARK)
    return value


def component_of(registration: Registration, by_urn: dict[str, Registration]) -> str:
    """The nearest enclosing component's `type name`, or "" for top-level resources."""
    parent = by_urn.get(registration.parent)
    while parent is not None and parent.custom:
        parent = by_urn.get(parent.parent)
    return f"{parent.type} {parent.name}" if parent is not None else ""


def build(run: ProgramRun, *, stack_file: str, diagnostics: Iterable[dict] = (),
          policy_config: Optional[str] = None, policies_ran: bool = True) -> dict[str, Any]:
    by_urn = run.by_urn()
    resources = [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "parent": r.parent if r.parent in by_urn else "",
            "custom": r.custom,
            # A provider reference is "<urn>::<id>"; the id is unknown until the provider exists.
            "provider": r.provider.rsplit("::", 1)[0] if r.provider else "",
            "component": component_of(r, by_urn),
            "inputs": mask(r.inputs),
        }
        for r in sorted(run.registrations, key=lambda r: r.urn)
    ]
    diagnostics = sorted(diagnostics, key=lambda d: (d["urn"], d["policy"], d["message"]))
    levels = Counter(d["level"] for d in diagnostics)
    return {
        "schema": SCHEMA,
        "project": "deepseek-serving",
        "stack": run.stack,
        "stack_file": stack_file,
        "mode": "preview",
        # A plan made without the pack says so: its empty diagnostics prove nothing.
        "policies": {"ran": policies_ran, "config": policy_config if policies_ran else None},
        "resources": resources,
        "outputs": mask(run.outputs),
        "diagnostics": diagnostics,
        "summary": {
            "resources": len(resources),
            "by_type": dict(sorted(Counter(r["type"] for r in resources).items())),
            "mandatory": levels.get("mandatory", 0),
            "advisory": levels.get("advisory", 0),
        },
    }


def dumps(plan: dict[str, Any]) -> str:
    """Deterministic JSON: the same plan always gives the same bytes."""
    return json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_tree(plan: dict[str, Any], *, policies_ran: bool, width: Optional[int] = None) -> str:
    """Resources grouped by component, with diagnostics under the resource they judge."""
    resources = plan["resources"]
    children: dict[str, list[dict]] = {}
    for resource in resources:
        children.setdefault(resource["parent"], []).append(resource)
    notes: dict[str, list[dict]] = {}
    for diagnostic in plan["diagnostics"]:
        notes.setdefault(diagnostic["urn"], []).append(diagnostic)

    lines = [f"{plan['project']} / {plan['stack']}  ({plan['stack_file']})  offline preview: "
             f"the real program under the Pulumi mock engine"]

    def walk(parent: str, prefix: str) -> None:
        kids = sorted(children.get(parent, []), key=lambda r: (r["custom"], r["type"], r["name"]))
        for index, resource in enumerate(kids):
            last = index == len(kids) - 1
            branch = "└─ " if last else "├─ "
            marker = "+ "
            lines.append(f"{prefix}{branch}{marker}{resource['type']}  {resource['name']}")
            inner = prefix + ("   " if last else "│  ")
            for diagnostic in notes.get(resource["urn"], []):
                lines.append(f"{inner}   [{diagnostic['level']}] {diagnostic['policy']}: "
                             f"{diagnostic['message']}")
            walk(resource["urn"], inner)

    walk("", "")
    stack_notes = [d for d in plan["diagnostics"] if d["urn"] not in {r["urn"] for r in resources}]
    for diagnostic in stack_notes:
        lines.append(f"   [{diagnostic['level']}] {diagnostic['policy']} (stack): {diagnostic['message']}")
    lines.append("")
    lines.append(f"Resources: {plan['summary']['resources']} to create")
    for type_token, count in plan["summary"]["by_type"].items():
        lines.append(f"  {count:4d}  {type_token}")
    if policies_ran:
        lines.append(f"Policies: {plan['summary']['mandatory']} mandatory violation(s), "
                     f"{plan['summary']['advisory']} advisory")
    else:
        lines.append("Policies: not run (--no-policies): no finding here means nothing")
    return "\n".join(lines) + "\n"
