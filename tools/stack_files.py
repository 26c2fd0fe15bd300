"""Read a stack file the way the Pulumi CLI hands it to a program, without decrypting anything.

`secure:` values are ciphertext for the stack's secrets provider; offline tooling can
neither decrypt them nor should it try. The program gets a placeholder marked secret in
their place, so every code path that handles a secret runs, and nothing real can leak.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config import PROJECT

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECRET_PLACEHOLDER = "offline-preview-placeholder-not-a-real-secret"


class StackFileError(Exception):
    """A stack file that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class StackFile:
    stack: str
    path: Path
    config: dict[str, Any]
    secret_keys: list[str]

    @property
    def display_path(self) -> str:
        try:
            return str(self.path.resolve().relative_to(PROJECT_DIR))
        except ValueError:
            return str(self.path)

    @property
    def region(self) -> str:
        inventory = self.config.get(f"{PROJECT}:inventory")
        if isinstance(inventory, dict) and isinstance(inventory.get("region"), str):
            return inventory["region"]
        return str(self.config.get("aws:region", "us-east-1"))


def committed_stacks(project_dir: Path = PROJECT_DIR) -> tuple[str, ...]:
    """Every stack with a file in stacks/: the three environments first, then the rest by name,
    so tests and benchmarks pick up a new stack file without being edited."""
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in (project_dir / "stacks").glob("Pulumi.*.yaml")]
    first = [s for s in ("dev", "staging", "prod") if s in names]
    return tuple(first + sorted(n for n in names if n not in first))


def stack_path(stack: str, project_dir: Path = PROJECT_DIR) -> Path:
    return project_dir / "stacks" / f"Pulumi.{stack}.yaml"


def load(stack: str, path: Path | None = None) -> StackFile:
    path = path or stack_path(stack)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in path.parent.glob("Pulumi.*.yaml"))
        raise StackFileError(f"{path}: no such stack file; stacks here: {', '.join(known) or 'none'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise StackFileError(f"{path}: not UTF-8 text (byte {error.start} cannot be decoded); "
                             "save the stack file as UTF-8") from None
    except OSError as error:
        raise StackFileError(f"{path}: cannot read the stack file: {error.strerror or error}; "
                             "check it exists and is readable") from None
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise StackFileError(f"{path}: not valid YAML: {error}") from None
    raw_config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(raw_config, dict):
        raise StackFileError(f"{path}: expected a top-level `config:` mapping")
    config: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in raw_config.items():
        if not isinstance(key, str):
            raise StackFileError(f"{path}: config key {key!r} is not a string; "
                                 f"quote it (\"{key}\":) or use a name such as `inventory`")
        qualified = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.append(qualified)
            config[qualified] = SECRET_PLACEHOLDER
        else:
            config[qualified] = value
    return StackFile(stack=stack, path=path, config=config, secret_keys=secret_keys)
