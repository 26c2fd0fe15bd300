"""Run the real Pulumi program under the SDK's mock engine and record every registration.

The recording keeps each resource's inputs exactly as the SDK put them on the wire
(camelCase property names, the engine's unknown sentinel, secret envelopes), because
that is what the real engine hands to policy packs and what a plan must show.

Preview mode behaves like a first `pulumi preview`: the mock echoes a resource's inputs
and leaves every computed output (ids, ARNs, DNS names) out, which the SDK resolves as
unknown, so `apply` callbacks on them do not run and dependants see unknowns.
"""
from __future__ import annotations

import asyncio
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import SETTINGS
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tools import fake_cloud

PROJECT = "deepseek-serving"
STACK_TYPE = "pulumi:pulumi:Stack"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


@dataclass
class Registration:
    """One resource as the engine saw it register."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    # Wire form: camelCase keys, UNKNOWN sentinel strings, secret envelopes
    # {SECRET_SIG_KEY: SECRET_SIG, "value": ...}.
    inputs: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    # Left in the cloud when the program stops declaring it (or the stack is destroyed).
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)


@dataclass
class ProgramRun:
    """Everything one program run registered, in registration order."""

    stack: str
    registrations: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)

    def by_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def one(self, type_token: str, name: str) -> Registration:
        matches = [r for r in self.registrations if r.type == type_token and r.name == name]
        if len(matches) != 1:
            raise KeyError(f"expected one {type_token} named {name}, found {len(matches)}")
        return matches[0]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A MockMonitor that also keeps the raw registration requests."""

    def __init__(self, mocks: pulumi_mocks.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The engine's URN, which the SDK's mock monitor forms differently.

        `urn:pulumi:<stack>::<project>::<type chain>::<name>`, where the type chain is the
        parent's whole chain, `$`, then the resource's type, and the root stack's type is
        part of no chain (https://www.pulumi.com/docs/iac/concepts/resources/names/#urns).
        The mock monitor keeps only the parent's last type and puts the stack's type in
        front of top-level resources: plans and policy findings would name URNs that no
        real preview shows.
        """
        if parent:
            chain = parent.split("::")[2]
            if chain != STACK_TYPE:
                type_ = f"{chain}${type_}"
        return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), type_, name])

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == STACK_TYPE:
            return response
        inputs = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
        self.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                custom=bool(request.custom),
                provider=request.provider,
                inputs=inputs,
                dependencies=list(request.dependencies),
                property_dependencies={
                    k: list(v.urns) for k, v in request.propertyDependencies.items()
                },
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                custom_timeouts={
                    k: getattr(request.customTimeouts, k)
                    for k in ("create", "update", "delete")
                    if request.HasField("customTimeouts") and getattr(request.customTimeouts, k)
                },
            )
        )
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 - gRPC method name
        if request.urn.split("::")[2] == STACK_TYPE:
            self.stack_outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


class ServingMocks(pulumi_mocks.Mocks):
    """Answers resource registrations and invokes the way AWS and the engine would."""

    def __init__(self, preview: bool, region: str):
        self.preview = preview
        self.region = region

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        if self.preview:
            # A first preview knows nothing the provider computes: empty id, inputs only.
            return "", dict(args.inputs)
        return fake_cloud.created_state(args.typ, args.name, dict(args.inputs), self.region)

    def call(self, args: pulumi_mocks.MockCallArgs):
        return fake_cloud.invoke(args.token, dict(args.args), self.region)


class _LogCapture:
    def __init__(self):
        self.records: list[tuple[str, str]] = []

    # The SDK's MockEngine calls logger.<level>(message).
    def debug(self, message):
        self.records.append(("debug", message))

    def info(self, message):
        self.records.append(("info", message))

    def warning(self, message):
        self.records.append(("warning", message))

    def error(self, message):
        self.records.append(("error", message))


def config_for(stack_config: dict[str, Any]) -> dict[str, str]:
    """Config values as the CLI hands them to a program: strings, objects as JSON."""
    flat: dict[str, str] = {}
    for key, value in stack_config.items():
        flat[key] = value if isinstance(value, str) else json.dumps(value)
    return flat


def run(
    program: Callable[[], Any],
    *,
    stack: str,
    config: Optional[dict[str, Any]] = None,
    secret_keys: Optional[list[str]] = None,
    preview: bool = True,
    region: str = "us-east-1",
) -> ProgramRun:
    """Run `program` (a callable that registers resources) under the mock engine."""
    # The SDK keeps per-run state on the current event loop; a fresh loop per run keeps
    # runs independent, as each `pulumi preview` is.
    asyncio.set_event_loop(asyncio.new_event_loop())
    logs = _LogCapture()
    monitor = RecordingMonitor(ServingMocks(preview, region))
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=preview, logger=logs, monitor=monitor
    )
    set_all_config(config_for(config or {}), secret_keys or [])
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    _sync_await(run_pulumi_func(lambda: _run_and_export(program)))
    return ProgramRun(stack=stack, registrations=monitor.registrations,
                      outputs=monitor.stack_outputs, logs=logs.records)


def _run_and_export(program: Callable[[], Any]) -> None:
    program()
    # Stack outputs are registered when the root stack finishes, as the CLI's entry point does.
    # set_mocks already finished the root stack once (with no outputs); finish it again
    # now that the program has exported its outputs.
    root = pulumi.runtime.get_root_resource()
    if root is not None:
        root._outputs_registered = False  # type: ignore[attr-defined]
        root._finish()  # type: ignore[attr-defined]


def run_main(main_path: Path, **kwargs: Any) -> ProgramRun:
    """Run a Pulumi program file (such as the project's __main__.py) under the mock engine."""
    project_dir = str(main_path.resolve().parent)
    if project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    return run(lambda: runpy.run_path(str(main_path), run_name="__main__"), **kwargs)
