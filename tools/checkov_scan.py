"""Checkov over what the project renders: every EKS stack's Kubernetes manifests and the image recipes.

    python -m tools.checkov_scan [--stack prod ...]      (make checkov)

A security team will run a scanner such as Checkov on what we deploy. Where it disagrees
with a deliberate choice, the reason is recorded next to the choice in the form the
scanner itself reads, so the scan is clean and the disagreement reviewable:
- Kubernetes objects carry `checkov.io/skip<n>: <CHECK_ID>=<reason>` in their annotations
  (Checkov, "Suppressing and Skipping Policies": Kubernetes annotations);
- Dockerfiles carry `#checkov:skip=<CHECK_ID>:<reason>` comments.

The manifests are the ones `tools.manifests` exports (the real program, previewed
offline). Checkov runs from its own virtualenv (`.checkov/`, requirements-checkov.txt:
it pins libraries differently from the project), offline (`--skip-download`).

Exit codes: 0 no failed check and every skip has a reason; 1 findings (listed);
2 bad input or Checkov missing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHECKOV = PROJECT_DIR / ".checkov" / "bin" / "checkov"
IMAGES_DIR = PROJECT_DIR / "images"
FRAMEWORKS = ("kubernetes", "dockerfile")


class ScanUnavailable(Exception):
    """Checkov is not installed where the scan looks for it."""


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    file_path: str
    resource: str
    # For a skipped check, the reason recorded next to the choice ("" when none was given).
    reason: Optional[str] = None

    def line(self) -> str:
        text = f"{self.check_id} {self.check_name}: {self.resource} ({self.file_path})"
        return text if self.reason is None else f"{text}: {self.reason or 'no reason given'}"


@dataclass(frozen=True)
class ScanResult:
    failed: list[Finding]
    skipped: list[Finding]

    @property
    def unexplained(self) -> list[Finding]:
        # Checkov records "No comment provided" for a skip written without `=<reason>`.
        return [f for f in self.skipped if not f.reason or f.reason == "No comment provided"]

    @property
    def clean(self) -> bool:
        return not self.failed and not self.unexplained


def eks_stacks() -> list[str]:
    """Every committed stack that renders Kubernetes objects (platform eks)."""
    from components.config import INVENTORY_KEY, PROJECT
    from tools import stack_files

    names = []
    for name in stack_files.committed_stacks():
        inventory = stack_files.load(name).config.get(f"{PROJECT}:{INVENTORY_KEY}") or {}
        if isinstance(inventory, dict) and inventory.get("platform") == "eks":
            names.append(name)
    return names


def export_manifests(stack: str, out: Path) -> list[Path]:
    """The stack's Kubernetes objects as `tools.manifests` writes them."""
    from tools import manifests
    from tools.preview import run_program

    stack_file, run = run_program(stack)
    version = manifests.kubernetes_version(stack_file)
    if version is None:
        return []
    built = manifests.build(run.registrations, kubernetes_version=version, stack=stack,
                            stack_file=stack_file.display_path)
    return manifests.write(built, out)


def scan_directory(root: Path, checkov: Optional[Path] = None) -> ScanResult:
    """Run Checkov over `root` (Kubernetes manifests and Dockerfiles below it)."""
    checkov = checkov or CHECKOV
    if not checkov.exists():
        raise ScanUnavailable(f"{checkov} is missing: run `make checkov` (it installs Checkov into "
                              ".checkov/ from requirements-checkov.txt)")
    # BC_SKIP_MAPPING: no call to Prisma Cloud for ID mappings; --skip-download: no guidelines.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
    completed = subprocess.run(
        [str(checkov), "--directory", str(root), "--framework", *FRAMEWORKS, "--skip-download",
         "--compact", "--output", "json"],
        capture_output=True, text=True, env=env, cwd=root, check=False)
    if completed.returncode not in (0, 1):
        raise ScanUnavailable(f"checkov exited {completed.returncode}: {completed.stderr.strip()[-2000:]}")
    reports = json.loads(completed.stdout)
    # One report object per framework, or a single object when only one had files.
    reports = reports if isinstance(reports, list) else [reports]
    failed: list[Finding] = []
    skipped: list[Finding] = []
    for report in reports:
        results = report.get("results") or {}
        for check in results.get("failed_checks", []):
            failed.append(Finding(check["check_id"], check["check_name"], check["file_path"], check["resource"]))
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            skipped.append(Finding(check["check_id"], check["check_name"], check["file_path"],
                                   check["resource"], reason=reason.strip()))
    return ScanResult(failed=failed, skipped=skipped)


def scan(stacks: list[str], workdir: Path, checkov: Optional[Path] = None) -> ScanResult:
    """Export each stack's manifests and copy the image recipes under `workdir`, then scan it."""
    for stack in stacks:
        export_manifests(stack, workdir / "manifests" / stack)
    shutil.copytree(IMAGES_DIR, workdir / "images", ignore=shutil.ignore_patterns("*.md"))
    return scan_directory(workdir, checkov)


def main(argv: Optional[list[str]] = None) -> int:
    from components.config import InventoryError
    from tools.crd_schemas import CrdSchemaUnavailable
    from tools.preview import PreviewError
    from tools.stack_files import StackFileError

    parser = argparse.ArgumentParser(prog="python -m tools.checkov_scan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", action="append", help="an EKS stack to scan (default: every EKS stack)")
    args = parser.parse_args(argv)
    try:
        stacks = args.stack or eks_stacks()
        with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
            result = scan(stacks, Path(tmp))
    except (ScanUnavailable, PreviewError, InventoryError, StackFileError, CrdSchemaUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Checkov ({', '.join(FRAMEWORKS)}) over stacks {', '.join(stacks)} and images/: "
          f"{len(result.failed)} failed, {len(result.skipped)} skipped with a recorded reason"
          f"{f', {len(result.unexplained)} skipped WITHOUT one' if result.unexplained else ''}.")
    for finding in result.skipped:
        print(f"  skipped {finding.line()}")
    for finding in result.failed:
        print(f"error: failed {finding.line()}", file=sys.stderr)
    for finding in result.unexplained:
        print(f"error: skipped without a reason {finding.line()}", file=sys.stderr)
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
