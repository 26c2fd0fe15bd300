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
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tools.cli_names import option
from tools.diff_markdown import render_markdown, truncate
from tools.plan_diff import DiffError, Report, diff_plans, empty_plan, load_plan
from tools.stack_files import PROJECT_DIR

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
            raise DiffError(f"{option('--base', base)}: no such commit in this repository (a shallow clone "
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
    raise DiffError("no `main` or `origin/main` branch to find the merge base with; pass "
                    f"{option('--base', '<rev>')}")


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
        raise DiffError(preview_failure(job, stderr))
    return json.loads(job.out.read_text())


def preview_failure(job: _PlanJob, stderr: str) -> str:
    """Why a preview did not finish, in one line: the error that revision's tooling printed
    last (not its traceback), and what to try instead."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or
              (not line.startswith(("File ", "Traceback", "^", "~")) and ":" in line and line[0].isalpha())]
    reason = (errors[-1] if errors else (lines[-1] if lines else "no output")).replace(str(job.project_dir), "<tree>")
    if job.label.startswith("base"):
        advice = (f"That revision's own tooling could not plan it. Pick a newer base ({option('--base', '<rev>')}), "
                  f"or compare without policies ({option('--no-policies')}).")
    else:
        advice = f"Run `make preview STACK={job.stack}` to see the whole error."
    return (f"the preview of stack {job.stack} at {job.label} failed (exit {job.process.returncode}): "
            f"{reason}\n{advice}")


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
                            "(`git log --diff-filter=A --format=%h -- tools/preview.py`) as "
                            f"{option('--base', '<rev>')}")
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
                      new_label=f"working tree, stack `{stack}`", notes=notes, policies_default=with_policies)


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
                      new_label=f"`{new_stack}`", policies_default=with_policies)


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
