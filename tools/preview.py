"""Offline preview: the project's main job on a machine without Pulumi CLI or cloud access.

    python -m tools.preview --stack dev [--plan-out plan.json] [--no-policies]

Reads the stack file as the CLI would, validates the inventory, runs the real
`__main__.py` under the SDK's mock engine as a first `pulumi preview` (outputs of
resources not yet created are unknown), judges every registration with the policy pack
launched the way the engine launches it, and prints the resource tree.

Exit codes: 0 clean, 1 a mandatory policy violation, 2 bad input (stack file or
inventory; nothing was registered).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from components.config import PROJECT, InventoryError, parse_inventory
from tools import mock_engine
from tools import plan as plan_module
from tools.stack_files import PROJECT_DIR, StackFileError, load

POLICY_PACK_DIR = PROJECT_DIR / "policies"


class PreviewError(Exception):
    """Bad input that stopped the preview before anything was registered."""


def validate(stack: str, stack_path: Optional[Path] = None):
    """Load the stack file and validate its inventory, as the program itself will."""
    try:
        stack_file = load(stack, stack_path)
    except StackFileError as error:
        raise PreviewError(str(error)) from None
    try:
        parse_inventory(stack_file.config.get(f"{PROJECT}:inventory"), stack=stack,
                        secret_keys=set(stack_file.secret_keys), stack_file=stack_file.display_path,
                        aws_region=stack_file.config.get("aws:region"))
    except InventoryError as error:
        raise PreviewError(str(error)) from None
    refuse_a_second_account_settings_manager(stack_file)
    return stack_file


def refuse_a_second_account_settings_manager(stack_file, project_dir: Path = PROJECT_DIR) -> None:
    """Two of the project's stacks managing one account and region's settings would overwrite
    each other's (tools/account_settings.py); the stack files say so before anything runs.
    Only the project's own stacks/ directory is one project's set of stacks."""
    from tools import account_settings
    from tools.stack_files import committed_stacks, stack_path

    if stack_file.path.resolve().parent != (project_dir / "stacks").resolve():
        return
    siblings = [stack_file]
    for name in committed_stacks(project_dir):
        if name == stack_file.stack:
            continue
        try:
            siblings.append(load(name, stack_path(name, project_dir)))
        except StackFileError:
            continue  # reported when that stack is previewed
    for message in account_settings.conflicts(siblings):
        if stack_file.display_path in message.split(": ", 1)[0].split(", "):
            raise PreviewError(message)


def run_program(stack: str, stack_path: Optional[Path] = None, main: Optional[Path] = None,
                phase: Optional[str] = None):
    stack_file = validate(stack, stack_path)
    config = dict(stack_file.config)
    if phase:
        # As `make up PHASE=...` passes it to the CLI: stack config deepseek-serving:phase.
        config[f"{PROJECT}:phase"] = phase
    try:
        run = mock_engine.run_main(
            main or PROJECT_DIR / "__main__.py", stack=stack, config=config,
            secret_keys=stack_file.secret_keys, preview=True, region=stack_file.region)
    except Exception as error:  # noqa: BLE001 - shown to the user as the CLI would
        if _is_user_error(error):
            # Most user errors already start with the stack file; name it once.
            text = str(error)
            default_path = f"stacks/Pulumi.{stack}.yaml:"
            if text.startswith(default_path):
                text = text[len(default_path):].lstrip()
            if not text.startswith(f"{stack_file.display_path}:"):
                text = f"{stack_file.display_path}: {text}"
            raise PreviewError(text) from None
        raise
    return stack_file, run



def _is_user_error(error: BaseException) -> bool:
    """Errors the program raises on purpose about the inventory (RunError, sizing)."""
    import pulumi

    if isinstance(error, (pulumi.RunError, InventoryError)):
        return True
    return type(error).__name__ in {"SizingError"}


def policy_config_path(stack_file) -> Optional[Path]:
    """The pack config of the stack's environment, as `make up` passes it to the CLI."""
    path = POLICY_PACK_DIR / "config" / f"{_environment(stack_file)}.json"
    return path if path.is_file() else None


def diagnostics_for(stack_file, run) -> list[dict]:
    from tools import analyzer

    found = analyzer.analyze(run.registrations, POLICY_PACK_DIR, policy_config_path(stack_file))
    return [
        {"policy": d.policy_name, "pack": d.policy_pack_name, "level": d.enforcement_level,
         "urn": d.urn or "", "message": d.message}
        for d in found
    ]


def _environment(stack_file) -> str:
    inventory = stack_file.config.get(f"{PROJECT}:inventory") or {}
    return inventory.get("environment", stack_file.stack)


def preview(stack: str, *, with_policies: bool = True, stack_path: Optional[Path] = None,
            main: Optional[Path] = None, phase: Optional[str] = None) -> dict:
    stack_file, run = run_program(stack, stack_path, main, phase)
    diagnostics = diagnostics_for(stack_file, run) if with_policies else []
    config = policy_config_path(stack_file)
    return plan_module.build(run, stack_file=stack_file.display_path, diagnostics=diagnostics,
                             policies_ran=with_policies,
                             policy_config=str(config.relative_to(PROJECT_DIR)) if config else None)


def check_output_path(path: Path, *, directory: bool = False) -> Optional[str]:
    """Why `path` cannot be written as a file (or, with directory=True, filled as a
    directory), or None when it can. Checked before any work, so bad input changes nothing."""
    if path.exists():
        if directory and not path.is_dir():
            return "exists and is not a directory; give a directory path"
        if not directory and path.is_dir():
            return "is a directory; give a file path"
        if not os.access(path, os.W_OK):
            return "is not writable"
        return None
    # To be created: the nearest existing ancestor must be a writable directory.
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory, so it cannot hold this path"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"directory {ancestor} is not writable"
    return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="stack name: stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--stack-file", type=Path, help="read this stack file instead")
    parser.add_argument("--plan-out", type=Path, help="also write the plan as JSON here")
    parser.add_argument("--no-policies", action="store_true", help="skip the policy pack")
    parser.add_argument("--phase", choices=("cluster", "all"),
                        help="preview one phase of a private EKS stack's bootstrap (default: the stack's)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    if args.plan_out:
        problem = check_output_path(args.plan_out)
        if problem:
            print(f"error: {args.plan_out}: {problem} (--plan-out)", file=sys.stderr)
            return 2
    try:
        plan = preview(args.stack, with_policies=not args.no_policies, stack_path=args.stack_file,
                       phase=args.phase)
    except PreviewError as error:
        print(f"error: {error}", file=sys.stderr)
        print("Nothing was registered. Fix the stack file and run the preview again.", file=sys.stderr)
        return 2
    text = plan_module.render_tree(plan, policies_ran=not args.no_policies)
    if args.quiet:
        text = text[text.index("\nResources:") + 1:]
    sys.stdout.write(text)
    if args.plan_out:
        try:
            args.plan_out.parent.mkdir(parents=True, exist_ok=True)
            args.plan_out.write_text(plan_module.dumps(plan))
        except OSError as error:
            print(f"error: {args.plan_out}: {error.strerror or error}; --plan-out needs a writable "
                  "file path", file=sys.stderr)
            return 2
        print(f"Plan written to {args.plan_out}")
    if plan["summary"]["mandatory"]:
        print(f"error: {plan['summary']['mandatory']} mandatory policy violation(s); "
              "`pulumi up` would be refused", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
