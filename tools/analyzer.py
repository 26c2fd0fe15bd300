"""Run the CrossGuard policy pack the way the Pulumi engine does, without the CLI.

The engine starts a Python pack as `python -u -m pulumi.policy <engine-address> <pack-dir>`;
the pack prints the port of its Analyzer gRPC server on stdout. The engine then calls
GetAnalyzerInfo, Configure (the reconciled policy config), Analyze for every resource and
AnalyzeStack once with all of them. This module does exactly that, with a small in-process
Engine service at <engine-address>, so the offline preview judges a program with the real
pack over the real protocol: unknown values arrive as the engine's sentinel and secrets as
envelopes, as they would under `pulumi preview --policy-pack policies`.

One pack process serves many analyses (`PolicyPackProcess`); `analyze()` is the one-shot form.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import (
    analyzer_pb2,
    analyzer_pb2_grpc,
    engine_pb2,
    engine_pb2_grpc,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Analyze calls in flight at once; enough to keep the pack busy, few enough for its server.
ANALYZE_WINDOW = 64
PACK_DIR = REPO_ROOT / "policies"
CONFIG_DIR = PACK_DIR / "config"

LEVELS = ("advisory", "mandatory", "remediate", "disabled")
_LEVEL_NAMES = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.REMEDIATE: "remediate",
    analyzer_pb2.DISABLED: "disabled",
}
_LEVEL_VALUES = {name: value for value, name in _LEVEL_NAMES.items()}
_SEVERITY_NAMES = {
    analyzer_pb2.POLICY_SEVERITY_UNSPECIFIED: "",
    analyzer_pb2.POLICY_SEVERITY_LOW: "low",
    analyzer_pb2.POLICY_SEVERITY_MEDIUM: "medium",
    analyzer_pb2.POLICY_SEVERITY_HIGH: "high",
    analyzer_pb2.POLICY_SEVERITY_CRITICAL: "critical",
}
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 400 * 1024 * 1024),
                 ("grpc.max_send_message_length", 400 * 1024 * 1024)]

PolicyConfigInput = Union[str, Path, Mapping[str, Any], None]


class PolicyPackError(RuntimeError):
    """The pack could not be started or answered with an error."""


class PolicyConfigError(ValueError):
    """A policy config file does not fit the pack (unknown policy, bad level, schema)."""


@dataclass(frozen=True)
class Diagnostic:
    """One policy violation, as the engine would report it."""

    policy_name: str
    policy_pack: str
    policy_pack_version: str
    urn: str  # the offending resource; "" for a stack-wide violation
    message: str
    description: str
    enforcement_level: str  # "advisory" | "mandatory" | "remediate" | "disabled"
    severity: str = ""

    @property
    def policy_pack_name(self) -> str:
        """The engine protocol's name for `policy_pack` (AnalyzeDiagnostic.policyPackName)."""
        return self.policy_pack

    @property
    def is_mandatory(self) -> bool:
        # The SDK already reports a violated "remediate" policy as mandatory; count both.
        return self.enforcement_level in ("mandatory", "remediate")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    description: str
    enforcement_level: str
    policy_type: str  # "resource" | "stack"
    config_schema: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackInfo:
    name: str
    version: str
    policies: tuple[PolicyInfo, ...]

    def policy(self, name: str) -> PolicyInfo:
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(name)


def config_path(stack: str) -> Path:
    """The policy config file the engine is given for a stack."""
    return CONFIG_DIR / f"{stack}.json"


def has_mandatory(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_mandatory for d in diagnostics)


# ---- the Engine service the pack is pointed at ------------------------------------------

class _Engine(engine_pb2_grpc.EngineServicer):
    """Collects log messages, as the CLI's engine would, and keeps the root resource."""

    def __init__(self, logs: list[tuple[str, str, str]]):
        self._logs = logs
        self._root = ""

    def Log(self, request, context):  # noqa: N802 - gRPC method name
        severity = engine_pb2.LogSeverity.Name(request.severity).lower()
        self._logs.append((severity, request.message, request.urn))
        return empty_pb2.Empty()

    def GetRootResource(self, request, context):  # noqa: N802
        return engine_pb2.GetRootResourceResponse(urn=self._root)

    def SetRootResource(self, request, context):  # noqa: N802
        self._root = request.urn
        return engine_pb2.SetRootResourceResponse()

    def StartDebugging(self, request, context):  # noqa: N802
        return empty_pb2.Empty()

    def RequirePulumiVersion(self, request, context):  # noqa: N802
        return engine_pb2.RequirePulumiVersionResponse()


# ---- config reconciliation (what the CLI does with --policy-pack-config) ----------------

def load_policy_config(policy_config: PolicyConfigInput, pack: PackInfo) -> dict[str, dict[str, Any]]:
    """Resolve a policy config file into {policy: {"enforcementLevel": ..., **properties}}.

    Like the CLI: every policy starts at its own default level and its schema defaults;
    an "all" entry sets every level; per-policy entries (a level string, or an object with
    enforcementLevel and properties) override; properties are validated against the
    policy's config schema. Unknown policies and properties are errors here, so a typo in
    a security config cannot silently leave a guardrail at its default.
    """
    if policy_config is None:
        raw: dict[str, Any] = {}
        source = "(no policy config)"
    elif isinstance(policy_config, Mapping):
        raw = dict(policy_config)
        source = "(policy config mapping)"
    else:
        source = str(policy_config)
        try:
            raw = json.loads(Path(policy_config).read_text())
        except (OSError, ValueError) as error:
            raise PolicyConfigError(f"{source}: cannot read policy config: {error}") from error
    if not isinstance(raw, dict):
        raise PolicyConfigError(f"{source}: the policy config must be a JSON object of policy names")

    resolved: dict[str, dict[str, Any]] = {}
    for policy in pack.policies:
        entry: dict[str, Any] = {"enforcementLevel": policy.enforcement_level}
        for key, schema in policy.config_schema.items():
            if isinstance(schema, dict) and "default" in schema:
                entry[key] = schema["default"]
        resolved[policy.name] = entry

    if "all" in raw:
        level = _level(raw["all"] if isinstance(raw["all"], str) else
                       (raw["all"] or {}).get("enforcementLevel"), source, "all")
        for entry in resolved.values():
            entry["enforcementLevel"] = level

    for name, value in raw.items():
        if name == "all":
            continue
        if name not in resolved:
            known = ", ".join(p.name for p in pack.policies)
            raise PolicyConfigError(f"{source}: {name!r} is not a policy of pack {pack.name} "
                                    f"(policies: {known})")
        if isinstance(value, str):
            resolved[name]["enforcementLevel"] = _level(value, source, name)
            continue
        if not isinstance(value, dict):
            raise PolicyConfigError(f"{source}: {name} must be a level string or an object")
        for key, item in value.items():
            if key == "enforcementLevel":
                resolved[name]["enforcementLevel"] = _level(item, source, name)
            else:
                resolved[name][key] = item

    for policy in pack.policies:
        _validate_properties(policy, resolved[policy.name], source)
    return resolved


def _level(value: Any, source: str, name: str) -> str:
    if value not in LEVELS:
        raise PolicyConfigError(f"{source}: {name}.enforcementLevel is {value!r}; "
                                f"expected one of {', '.join(LEVELS)}")
    return value


def _validate_properties(policy: PolicyInfo, entry: dict[str, Any], source: str) -> None:
    import jsonschema  # the CLI validates config against each policy's schema too

    properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
    schema = {
        "type": "object",
        "properties": policy.config_schema,
        "required": list(policy.required),
        "additionalProperties": False,
    }
    try:
        jsonschema.validate(properties, schema)
    except jsonschema.ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "(properties)"
        raise PolicyConfigError(f"{source}: {policy.name}.{where}: {error.message}") from None


# ---- requests -----------------------------------------------------------------------------

def _struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(dict(value or {}), struct)
    return struct


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


def _seconds(duration: str) -> float:
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in _DURATION.findall(duration or ""))


def _options(reg: Any) -> analyzer_pb2.AnalyzerResourceOptions:
    timeouts = getattr(reg, "custom_timeouts", {}) or {}
    options = analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(getattr(reg, "protect", False)),
        ignoreChanges=list(getattr(reg, "ignore_changes", []) or []),
        deleteBeforeReplace=bool(getattr(reg, "delete_before_replace", False)),
        deleteBeforeReplaceDefined=bool(getattr(reg, "delete_before_replace", False)),
        additionalSecretOutputs=list(getattr(reg, "additional_secret_outputs", []) or []),
        parent=getattr(reg, "parent", "") or "",
    )
    if timeouts:
        options.customTimeouts.CopyFrom(analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=_seconds(timeouts.get("create", "")), update=_seconds(timeouts.get("update", "")),
            delete=_seconds(timeouts.get("delete", ""))))
    return options


def _provider(reg: Any, by_urn: Mapping[str, Any]) -> Optional[analyzer_pb2.AnalyzerProviderResource]:
    # A provider reference is "<provider urn>::<provider id>".
    reference = getattr(reg, "provider", "") or ""
    provider = by_urn.get(reference.rsplit("::", 1)[0]) if reference else None
    if provider is None:
        return None
    return analyzer_pb2.AnalyzerProviderResource(
        type=provider.type, properties=_struct(provider.inputs), urn=provider.urn, name=provider.name)


def _analyze_request(reg: Any, by_urn: Mapping[str, Any]) -> analyzer_pb2.AnalyzeRequest:
    request = analyzer_pb2.AnalyzeRequest(
        type=reg.type, urn=reg.urn, name=reg.name, properties=_struct(reg.inputs), options=_options(reg))
    provider = _provider(reg, by_urn)
    if provider is not None:
        request.provider.CopyFrom(provider)
    return request


def _stack_resource(reg: Any, by_urn: Mapping[str, Any]) -> analyzer_pb2.AnalyzerResource:
    resource = analyzer_pb2.AnalyzerResource(
        type=reg.type, urn=reg.urn, name=reg.name, properties=_struct(reg.inputs),
        options=_options(reg), parent=getattr(reg, "parent", "") or "",
        dependencies=list(getattr(reg, "dependencies", []) or []),
    )
    for prop, urns in (getattr(reg, "property_dependencies", {}) or {}).items():
        resource.propertyDependencies[prop].urns.extend(urns)
    provider = _provider(reg, by_urn)
    if provider is not None:
        resource.provider.CopyFrom(provider)
    return resource


# ---- the pack process ---------------------------------------------------------------------

class PolicyPackProcess:
    """One running policy pack, driven over the analyzer protocol.

    Use as a context manager; `analyze()` may be called any number of times, with the
    same or different policy configs (Configure is re-sent only when the config changes).
    """

    def __init__(self, pack_dir: Union[str, Path] = PACK_DIR, *, python: Optional[str] = None,
                 startup_timeout: float = 60.0):
        self.pack_dir = Path(pack_dir).resolve()
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        # (severity, message, urn) from Engine.Log, plus the pack's stderr lines as "stderr".
        self.logs: list[tuple[str, str, str]] = []
        self._process: Optional[subprocess.Popen] = None
        self._engine_server: Optional[grpc.Server] = None
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[analyzer_pb2_grpc.AnalyzerStub] = None
        self._info: Optional[PackInfo] = None
        self._configured: Optional[str] = None
        self._stderr_lines: list[str] = []

    # -- lifecycle --

    def __enter__(self) -> "PolicyPackProcess":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        if self._process is not None:
            return
        if not (self.pack_dir / "PulumiPolicy.yaml").is_file():
            raise PolicyPackError(f"{self.pack_dir} is not a policy pack (no PulumiPolicy.yaml)")
        self._engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=_GRPC_OPTIONS)
        engine_pb2_grpc.add_EngineServicer_to_server(_Engine(self.logs), self._engine_server)
        engine_port = self._engine_server.add_insecure_port("127.0.0.1:0")
        self._engine_server.start()

        self._process = subprocess.Popen(
            [self.python, "-u", "-m", "pulumi.policy", f"127.0.0.1:{engine_port}", str(self.pack_dir)],
            cwd=str(self.pack_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(os.environ),
        )
        ports: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read_stdout, args=(ports,), daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            line = ports.get(timeout=self.startup_timeout)
        except queue.Empty:
            self.close()
            raise PolicyPackError(f"policy pack {self.pack_dir} printed no port within "
                                  f"{self.startup_timeout:.0f}s") from None
        if line is None or not line.strip().isdigit():
            code = self._process.wait(timeout=10) if line is None else None
            stderr = "".join(self._stderr_lines[-40:])
            self.close()
            raise PolicyPackError(f"policy pack {self.pack_dir} did not start "
                                  f"(exit {code}, first line {line!r}):\n{stderr}")
        self._channel = grpc.insecure_channel(f"127.0.0.1:{line.strip()}", options=_GRPC_OPTIONS)
        grpc.channel_ready_future(self._channel).result(timeout=self.startup_timeout)
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def _read_stdout(self, ports: "queue.Queue[Optional[str]]") -> None:
        assert self._process is not None and self._process.stdout is not None
        first = True
        for raw in iter(self._process.stdout.readline, b""):
            line = raw.decode(errors="replace")
            if first:
                ports.put(line)
                first = False
            else:
                self.logs.append(("stdout", line.rstrip("\n"), ""))
        if first:
            ports.put(None)

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for raw in iter(self._process.stderr.readline, b""):
            line = raw.decode(errors="replace")
            self._stderr_lines.append(line)
            self.logs.append(("stderr", line.rstrip("\n"), ""))

    def close(self) -> None:
        """Stop the pack the way the engine does (interrupt, then kill if it lingers)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # PolicyPack's serve loop stops its server cleanly on KeyboardInterrupt.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdout, process.stderr) if process is not None else ():
            if stream is not None:
                stream.close()
        if self._engine_server is not None:
            self._engine_server.stop(0)
            self._engine_server = None
        self._stub = None
        self._configured = None

    # -- protocol --

    def _call(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise PolicyPackError("the policy pack is not running (use it as a context manager)")
        try:
            return getattr(self._stub, method)(request)
        except grpc.RpcError as error:
            stderr = "".join(self._stderr_lines[-40:])
            raise PolicyPackError(f"{method} failed: {error.code().name}: {error.details()}\n{stderr}") from None

    @property
    def info(self) -> PackInfo:
        if self._info is None:
            response = self._call("GetAnalyzerInfo", empty_pb2.Empty())
            version = _pack_version(self.pack_dir) or response.version
            self._info = PackInfo(
                name=response.name,
                version=version,
                policies=tuple(
                    PolicyInfo(
                        name=p.name,
                        description=p.description,
                        enforcement_level=_LEVEL_NAMES[p.enforcementLevel],
                        policy_type="stack" if p.policy_type == analyzer_pb2.POLICY_TYPE_STACK else "resource",
                        config_schema=json_format.MessageToDict(p.configSchema.properties),
                        required=tuple(p.configSchema.required),
                    )
                    for p in response.policies
                ),
            )
        return self._info

    def plugin_version(self) -> str:
        return self._call("GetPluginInfo", empty_pb2.Empty()).version

    def configure(self, policy_config: PolicyConfigInput = None) -> dict[str, dict[str, Any]]:
        """Send the reconciled config (skipped when unchanged); returns what was sent."""
        resolved = load_policy_config(policy_config, self.info)
        fingerprint = json.dumps(resolved, sort_keys=True)
        if fingerprint != self._configured:
            request = analyzer_pb2.ConfigureAnalyzerRequest()
            for name, entry in resolved.items():
                properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
                request.policyConfig[name].CopyFrom(analyzer_pb2.PolicyConfig(
                    enforcementLevel=_LEVEL_VALUES[entry["enforcementLevel"]],
                    properties=_struct(properties)))
            self._call("Configure", request)
            self._configured = fingerprint
        return resolved

    def analyze(self, registrations: Sequence[Any], policy_config: PolicyConfigInput = None, *,
                stack: Optional[str] = None, project: str = "deepseek-serving",
                dry_run: bool = True) -> list[Diagnostic]:
        """Judge a program's registrations: Analyze per custom resource, AnalyzeStack once.

        Diagnostics come back in registration order, stack-wide ones (urn "") last.
        """
        self.configure(policy_config)
        if stack is not None:
            self._call("ConfigureStack", analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=stack, project=project, organization="organization", dry_run=dry_run))
        by_urn = {r.urn: r for r in registrations}
        info = self.info
        diagnostics: list[Diagnostic] = []
        # Pipeline the per-resource calls, a bounded window at a time: the pack serves several
        # at once, but thousands in flight make its server cancel some.
        customs = [reg for reg in registrations if reg.custom]
        for start in range(0, len(customs), ANALYZE_WINDOW):
            window = [(reg, self._stub.Analyze.future(_analyze_request(reg, by_urn)))  # type: ignore[union-attr]
                      for reg in customs[start:start + ANALYZE_WINDOW]]
            for reg, call in window:
                try:
                    response = call.result()
                except grpc.RpcError as error:
                    raise PolicyPackError(f"Analyze {reg.urn} failed: {error.code().name}: {error.details()}\n"
                                          + "".join(self._stderr_lines[-40:])) from None
                # The engine attributes a resource analysis without a URN to that resource.
                diagnostics.extend(_diagnostic(d, info, default_urn=reg.urn) for d in response.diagnostics)
        stack_request = analyzer_pb2.AnalyzeStackRequest(
            resources=[_stack_resource(reg, by_urn) for reg in registrations])
        response = self._call("AnalyzeStack", stack_request)
        stack_diagnostics = [_diagnostic(d, info, default_urn="") for d in response.diagnostics]
        order = {reg.urn: index for index, reg in enumerate(registrations)}
        diagnostics.extend(sorted(stack_diagnostics, key=lambda d: order.get(d.urn, len(order))))
        return diagnostics


def _diagnostic(d: Any, info: PackInfo, default_urn: str) -> Diagnostic:
    message = d.message
    # The SDK prefixes the policy description; keep it in `description` only.
    if d.description and message.startswith(d.description + "\n"):
        message = message[len(d.description) + 1:]
    return Diagnostic(
        policy_name=d.policyName,
        policy_pack=d.policyPackName,
        policy_pack_version=info.version,
        urn=d.urn or default_urn,
        message=message,
        description=d.description,
        enforcement_level=_LEVEL_NAMES.get(d.enforcementLevel, "advisory"),
        severity=_SEVERITY_NAMES.get(d.severity, ""),
    )


def _pack_version(pack_dir: Path) -> Optional[str]:
    # The CLI takes a Python pack's version from PulumiPolicy.yaml (the SDK always says 0.0.1).
    try:
        document = yaml.safe_load((pack_dir / "PulumiPolicy.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    version = document.get("version")
    return str(version) if version is not None else None


def analyze(registrations: Sequence[Any], pack_dir: Union[str, Path] = PACK_DIR,
            policy_config: PolicyConfigInput = None, *, stack: Optional[str] = None) -> list[Diagnostic]:
    """Start the pack, judge one program, stop the pack."""
    with PolicyPackProcess(pack_dir) as pack:
        return pack.analyze(registrations, policy_config, stack=stack)


__all__ = [
    "CONFIG_DIR", "Diagnostic", "PACK_DIR", "PackInfo", "PolicyConfigError", "PolicyInfo",
    "PolicyPackError", "PolicyPackProcess", "analyze", "config_path", "has_mandatory",
    "load_policy_config",
]
