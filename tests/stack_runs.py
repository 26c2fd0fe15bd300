"""Run the real program for a stack under the mock engine (through `@pulumi.runtime.test`),
once per test process.

Runs are cached: a program run is deterministic for a given stack file, and several
test modules read the same registrations.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Callable, Optional

from tests.conftest import ROOT
from tools import mock_engine, stack_files
from tests.program_harness import record_main

# Every committed stack file (tools.stack_files.committed_stacks): new stacks are picked up.
STACKS = stack_files.committed_stacks()


@functools.lru_cache(maxsize=None)
def preview_run(stack: str) -> mock_engine.ProgramRun:
    """A first-preview run (unknown computed outputs) of a committed stack."""
    stack_file = stack_files.load(stack)
    return record_main(stack=stack, config=stack_file.config, secret_keys=stack_file.secret_keys,
                       preview=True, region=stack_file.region)


def inventory_of(stack: str) -> dict[str, Any]:
    """A deep copy of a stack's raw inventory, for tests that change one value."""
    return copy.deepcopy(stack_files.load(stack).config["deepseek-serving:inventory"])


def run_with_inventory(stack: str, change: Callable[[dict], None], *, preview: bool = True,
                       extra_config: Optional[dict] = None) -> mock_engine.ProgramRun:
    """Run the program for `stack` with its inventory changed by `change`."""
    stack_file = stack_files.load(stack)
    config = copy.deepcopy(stack_file.config)
    change(config["deepseek-serving:inventory"])
    config.update(extra_config or {})
    return record_main(stack=stack, config=config, secret_keys=stack_file.secret_keys,
                       preview=preview, region=stack_file.region)


def inputs(run: mock_engine.ProgramRun, type_token: str) -> list[dict]:
    return [r.inputs for r in run.by_type(type_token)]


@functools.lru_cache(maxsize=None)
def hub_token_run() -> mock_engine.ProgramRun:
    """Staging with a gated hub model: its token is the one Kubernetes Secret the stacks have
    (the runtimes hold no key), so the secret-masking checks have a value to mask."""
    stack_file = stack_files.load("staging")
    config = copy.deepcopy(stack_file.config)
    config["deepseek-serving:inventory"]["models"][0]["hf_token"] = {"config": "hfToken"}
    config["deepseek-serving:hfToken"] = stack_files.SECRET_PLACEHOLDER
    return record_main(stack="staging", config=config,
                       secret_keys=[*stack_file.secret_keys, "deepseek-serving:hfToken"],
                       preview=True, region=stack_file.region)
