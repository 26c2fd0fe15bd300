"""Run the real program inside a `@pulumi.runtime.test` function and hand back its objects.

Tests call `start(stack)` inside a function decorated with `@pulumi.runtime.test`, then
return `pulumi.Output.all(...).apply(check)` over the outputs of the program's own
resources: the SDK awaits that Output, so an assertion that fails inside `check` fails
the test (the pulumi/examples testing-unit-py pattern), while the recording monitor
also keeps every registration for assertions across resources.
"""
from __future__ import annotations

import asyncio
import copy
import runpy
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pulumi
from pulumi.runtime.config import set_all_config

from tests.conftest import ROOT
from tools import mock_engine, stack_files


@dataclass
class ProgramUnderTest:
    globals: dict[str, Any]
    monitor: mock_engine.RecordingMonitor

    def __getitem__(self, name: str) -> Any:
        return self.globals[name]

    def settled(self) -> pulumi.Output[list[mock_engine.Registration]]:
        return settled(self.monitor)

    def registrations(self, type_token: Optional[str] = None) -> list[mock_engine.Registration]:
        return [r for r in self.monitor.registrations if type_token is None or r.type == type_token]


def start(stack: str, change: Optional[Callable[[dict], None]] = None, *, preview: bool = False) -> ProgramUnderTest:
    """Configure the mocks for `stack` (inventory optionally changed) and run __main__.py."""
    stack_file = stack_files.load(stack)
    config = copy.deepcopy(stack_file.config)
    if change is not None:
        change(config["deepseek-serving:inventory"])
    monitor = mock_engine.RecordingMonitor(mock_engine.ServingMocks(preview, stack_file.region))
    pulumi.runtime.set_mocks(monitor.mocks, project=mock_engine.PROJECT, stack=stack,
                             preview=preview, monitor=monitor)
    set_all_config(mock_engine.config_for(config), stack_file.secret_keys)
    program_globals = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    return ProgramUnderTest(globals=program_globals, monitor=monitor)


def settled(monitor: mock_engine.RecordingMonitor) -> pulumi.Output[list[mock_engine.Registration]]:
    """Every registration, once the program's outstanding RPCs have all finished."""

    async def after_rpcs() -> list[mock_engine.Registration]:
        from pulumi.runtime.stack import wait_for_rpcs

        # Only the RPCs: awaiting all outstanding tasks would include this one.
        await wait_for_rpcs(await_all_outstanding_tasks=False)
        return list(monitor.registrations)

    return pulumi.Output.from_input(asyncio.ensure_future(after_rpcs()))


def check_program(stack: str, check: Callable[[ProgramUnderTest, list], None], *,
                  change: Optional[Callable[[dict], None]] = None) -> None:
    """Run __main__.py for `stack` through `@pulumi.runtime.test` and `check(program, registrations)`.

    The test function returns the Output the check runs in, so a failing assertion fails
    the test once every registration has settled.
    """
    fresh_event_loop()

    @pulumi.runtime.test
    def run_program():
        program = start(stack, change)
        return program.settled().apply(lambda registrations: check(program, registrations))

    run_program()


def record(program: Callable[[], Any], *, stack: str, config: Optional[dict[str, Any]] = None,
           secret_keys: Optional[list[str]] = None, preview: bool = True,
           region: str = "us-east-1") -> mock_engine.ProgramRun:
    """Run `program` through `@pulumi.runtime.test` and return everything it registered.

    The test function returns the Output of the settled registrations, so the SDK awaits
    every registration (and re-raises what the program raised) before a test reads them.
    """
    fresh_event_loop()
    monitor = mock_engine.RecordingMonitor(mock_engine.ServingMocks(preview, region))
    recorded: dict[str, Any] = {}

    @pulumi.runtime.test
    def run_program():
        pulumi.runtime.set_mocks(monitor.mocks, project=mock_engine.PROJECT, stack=stack,
                                 preview=preview, monitor=monitor)
        set_all_config(mock_engine.config_for(config or {}), secret_keys or [])
        program()
        # Register the stack outputs the program exported, as the CLI's entry point does.
        root = pulumi.runtime.get_root_resource()
        root._outputs_registered = False  # type: ignore[attr-defined]
        root._finish()  # type: ignore[attr-defined]
        return settled(monitor).apply(lambda registrations: recorded.update(registrations=registrations))

    run_program()
    return mock_engine.ProgramRun(stack=stack, registrations=recorded["registrations"],
                                  outputs=monitor.stack_outputs)


def record_main(*, stack: str, config: dict[str, Any], secret_keys: list[str], preview: bool = True,
                region: str = "us-east-1") -> mock_engine.ProgramRun:
    """The project's __main__.py through `record`."""
    return record(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
                  stack=stack, config=config, secret_keys=secret_keys, preview=preview, region=region)


def fresh_event_loop() -> None:
    """Each mock-engine test needs its own loop: the SDK keeps per-run state on it."""
    asyncio.set_event_loop(asyncio.new_event_loop())
