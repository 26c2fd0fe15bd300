"""Generate the pack's exposure classification (policies/classification.json).

Every resource type token of the installed, pinned pulumi-aws and pulumi-kubernetes (read from
the packages' own registration of their resource modules and type tokens), plus the custom
resources and other providers' types the pack knows by name, gets exactly one class:

- `judged:<policy>` when a Family-1 rule declares the type (policy.resource_types);
- `unjudgeable-entry-point` when the curated knowledge in policies/rules/type_classes.py
  says it can open an internet entry point and no rule judges it;
- `no-network-surface` otherwise.

    python -m tools.classify          # rewrite policies/classification.json
    python -m tools.classify --check  # exit 1 if it is out of date (a provider or a rule changed)
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
PROVIDER_PACKAGES = {"aws": "pulumi_aws", "kubernetes": "pulumi_kubernetes"}
_TYPE_TOKEN = re.compile(r"""@pulumi\.type_token\(\s*["']([^"']+)["']\s*\)""")
# Python-side components (helm v3 Chart, yaml ConfigFile, kustomize Directory) name their
# token in the ComponentResource constructor call instead.
_COMPONENT_TOKEN = re.compile(r"""__init__\(\s*["']((?:aws|kubernetes):[\w./-]+:[A-Z]\w*)["']""")


def _policies() -> list:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from policies.rules import all_policies

    return all_policies()


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed: run make (the pinned requirements) first")
    return Path(spec.origin).parent


def installed_types(prefix: str) -> set[str]:
    """Every resource type token the installed provider SDK can register."""
    root = _package_dir(PROVIDER_PACKAGES[prefix])
    found: set[str] = set()
    tree = ast.parse((root / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "register":
            for keyword in node.keywords:
                if keyword.arg == "resource_modules" and isinstance(keyword.value, ast.Constant):
                    for module in json.loads(keyword.value.value):
                        found.update(module["classes"])
    for path in root.rglob("*.py"):
        text = path.read_text(errors="replace")
        if "type_token" in text or "ComponentResource" in text:
            found.update(t for t in _TYPE_TOKEN.findall(text) if t.startswith(prefix + ":"))
            found.update(t for t in _COMPONENT_TOKEN.findall(text) if t.startswith(prefix + ":"))
    return found


def provider_versions() -> dict[str, str]:
    return {prefix: importlib.metadata.version(package.replace("_", "-"))
            for prefix, package in PROVIDER_PACKAGES.items()}


def classify(tokens: Iterable[str], policies: Optional[list] = None) -> dict[str, str]:
    from policies.rules import type_classes
    from policies.rules._framework import FAMILY_EXPOSURE, type_matches

    judges = [p for p in (policies if policies is not None else _policies()) 
              if p.family == FAMILY_EXPOSURE and getattr(p, "judges_exposure", True)]
    explicit: dict[str, str] = {}
    for policy in judges:
        for token in policy.resource_types:
            if "*" not in token:
                explicit.setdefault(token, policy.name)
    classes = {}
    for token in sorted(set(tokens) | set(explicit)):
        if token in explicit:
            classes[token] = type_classes.JUDGED_PREFIX + explicit[token]
            continue
        curated = type_classes.curated_class(token)
        if curated is not None:
            classes[token] = curated
            continue
        # A workload kind is judged by a rule that reads pod specs of any kind (a wildcard).
        wildcard = next((p.name for p in judges if type_classes.is_pod_kind(token)
                         and type_matches(token, [t for t in p.resource_types if "*" in t])), None)
        classes[token] = (type_classes.JUDGED_PREFIX + wildcard) if wildcard else type_classes.NO_SURFACE
    return classes


def render() -> str:
    from policies.rules import type_classes

    known = set(type_classes.AWS_ENTRY_POINTS | type_classes.K8S_ENTRY_POINTS
                | type_classes.K8S_NO_SURFACE | type_classes.OTHER_ENTRY_POINTS)
    tokens = installed_types("aws") | installed_types("kubernetes") | known
    classes = classify(tokens)
    counts: dict[str, int] = {}
    for value in classes.values():
        key = "judged" if value.startswith(type_classes.JUDGED_PREFIX) else value
        counts[key] = counts.get(key, 0) + 1
    document = {
        "generatedBy": "make classify (python -m tools.classify); do not edit by hand",
        "providers": provider_versions(),
        "counts": dict(sorted(counts.items())),
        "types": classes,
    }
    return json.dumps(document, indent=1) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if policies/classification.json is not what this generates")
    args = parser.parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from policies.rules.type_classes import TABLE_PATH

    text = render()
    if args.check:
        current = TABLE_PATH.read_text() if TABLE_PATH.is_file() else ""
        if current != text:
            print(f"{TABLE_PATH} is out of date: run make classify", file=sys.stderr)
            return 1
        return 0
    TABLE_PATH.write_text(text)
    print(f"wrote {TABLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
