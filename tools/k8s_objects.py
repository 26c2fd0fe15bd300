"""Every Kubernetes object a program run registers, as manifests, checked against the schema.

Input: the registrations `tools.mock_engine` recorded (wire form: camelCase keys, numbers
as floats, the engine's unknown sentinel, secret envelopes). Output: one manifest per
object (`apiVersion`, `kind`, `metadata`, then the rest), with
- secrets replaced by `SECRET_PLACEHOLDER` (a manifest export must never carry a value),
- values unknown during preview replaced by `UNKNOWN_PLACEHOLDER` and their paths listed,
- whole-number floats turned back into integers (protobuf carries every number as a double).

`validate` checks a manifest with kubernetes-validate (strict: unknown fields are errors)
against the inventory's Kubernetes version. kubernetes-validate ships schemas for the core
API groups only; custom resources (TargetGroupBinding, ScaledObject, ...) have no schema
there: those whose pinned CRD schema is available offline (Karpenter's NodePool and
EC2NodeClass, tools/crd_schemas.py) are checked against it; the others are skipped
explicitly, by name, in `CUSTOM_RESOURCE_KINDS`. Any other kind without a schema is an
error, so a typo in a core apiVersion cannot pass as "skipped".

Registrations that are not Kubernetes API objects are left out: the Kubernetes provider
(`pulumi:providers:kubernetes`) and Helm releases (`kubernetes:helm.sh/v3:Release`, a
Pulumi resource whose chart renders objects inside the provider, not in the program).

Used by the tests (tests/test_k8s_schema.py) and by `make manifests`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

from tools import crd_schemas

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_PLACEHOLDER = "<secret>"
UNKNOWN_PLACEHOLDER = "<unknown during preview>"

# Pulumi resources under the kubernetes package that are not Kubernetes API objects.
NOT_API_OBJECTS = {
    "kubernetes:helm.sh/v3:Release",
    "kubernetes:helm.sh/v4:Chart",
    "kubernetes:yaml/v2:ConfigFile",
    "kubernetes:yaml/v2:ConfigGroup",
    "kubernetes:kustomize/v2:Directory",
}
# Custom resources this project creates; kubernetes-validate has no schema for them.
CUSTOM_RESOURCE_KINDS = {
    ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"),  # AWS Load Balancer Controller CRD
    ("keda.sh/v1alpha1", "ScaledObject"),             # KEDA CRD
    ("keda.sh/v1alpha1", "TriggerAuthentication"),    # KEDA CRD
} | crd_schemas.SCHEMA_KINDS

# LeaderWorkerSet (kubernetes-sigs/lws, leaderworkerset.x-k8s.io/v1): no published schema
# package could be found (npm @kubernetes-models/* and PyPI cloudcoil-models-* have none
# for LWS), and files from its repository may not be copied here. So it is checked in two
# parts: its own fields against the v1 API's documented field names
# (https://lws.sigs.k8s.io/docs/reference/leaderworkerset.v1/; OpenShift's LWS docs show
# the same spec), strictly, and both pod templates against the real core/v1 PodTemplate
# schema of the inventory's Kubernetes version.
LWS = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
_LWS_FIELDS = {
    "spec": {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"},
    "spec.leaderWorkerTemplate": {"size", "restartPolicy", "leaderTemplate", "workerTemplate",
                                  "subGroupPolicy", "volumeClaimTemplates"},
    "spec.rolloutStrategy": {"type", "rollingUpdateConfiguration"},
    "spec.rolloutStrategy.rollingUpdateConfiguration": {"maxUnavailable", "maxSurge", "partition"},
    "spec.networkConfig": {"subdomainPolicy"},
}
_LWS_ENUMS = {
    "spec.startupPolicy": {"LeaderCreated", "LeaderReady"},
    "spec.leaderWorkerTemplate.restartPolicy": {"RecreateGroupOnPodRestart", "None", "Default"},
    "spec.rolloutStrategy.type": {"RollingUpdate"},
    "spec.networkConfig.subdomainPolicy": {"Shared", "UniquePerReplica"},
}

_TYPE_TOKEN = re.compile(r"^kubernetes:(?P<group>[^/]+)/(?P<version>[^:]+):(?P<kind>.+)$")
_TOP_ORDER = ("apiVersion", "kind", "metadata")


class SchemaVersionError(ValueError):
    """No shipped schema covers the requested Kubernetes version."""


@dataclass
class K8sObject:
    """One Kubernetes API object as the program registered it."""

    urn: str
    resource_name: str  # the Pulumi logical name
    type_token: str
    manifest: dict[str, Any]
    unknown_paths: list[str] = field(default_factory=list)
    secret_paths: list[str] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return self.manifest["apiVersion"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def name(self) -> Optional[str]:
        return (self.manifest.get("metadata") or {}).get("name")

    @property
    def namespace(self) -> Optional[str]:
        return (self.manifest.get("metadata") or {}).get("namespace")

    @property
    def is_custom_resource(self) -> bool:
        return (self.api_version, self.kind) in CUSTOM_RESOURCE_KINDS

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.api_version} {self.kind} {where}{self.name or '<auto-named>'} ({self.resource_name})"


def api_version_of(type_token: str) -> tuple[str, str]:
    """('apps/v1', 'Deployment') from 'kubernetes:apps/v1:Deployment' (core group -> 'v1')."""
    match = _TYPE_TOKEN.match(type_token)
    if not match:
        raise ValueError(f"not a Kubernetes type token: {type_token}")
    group, version, kind = match.group("group", "version", "kind")
    return (version if group == "core" else f"{group}/{version}"), kind


def is_api_object(type_token: str) -> bool:
    return bool(_TYPE_TOKEN.match(type_token)) and type_token not in NOT_API_OBJECTS


def decode(value: Any, path: str = "", unknown: Optional[list[str]] = None,
           secret: Optional[list[str]] = None, *, redact: bool = False) -> Any:
    """Wire form -> plain manifest values (see the module docstring).

    A secret keeps its shape (a Secret's `stringData` stays a mapping, so it can still be
    validated) but every value inside it becomes `SECRET_PLACEHOLDER`.
    """
    unknown = [] if unknown is None else unknown
    secret = [] if secret is None else secret
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) is not None:
            secret.append(path or "<root>")
            return decode(value.get("value"), path, unknown, secret, redact=True)
        return {key: decode(item, f"{path}.{key}" if path else key, unknown, secret, redact=redact)
                for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item, f"{path}[{index}]", unknown, secret, redact=redact)
                for index, item in enumerate(value)]
    if value == UNKNOWN:
        unknown.append(path or "<root>")
        return SECRET_PLACEHOLDER if redact else UNKNOWN_PLACEHOLDER
    if redact:
        return SECRET_PLACEHOLDER
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest_from(type_token: str, inputs: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """A manifest (apiVersion, kind, metadata first) plus its unknown and secret paths."""
    unknown: list[str] = []
    secret: list[str] = []
    body = decode(inputs, "", unknown, secret)
    api_version, kind = api_version_of(type_token)
    body.setdefault("apiVersion", api_version)
    body.setdefault("kind", kind)
    body.setdefault("metadata", {})
    ordered = {key: body[key] for key in _TOP_ORDER}
    ordered.update({key: value for key, value in sorted(body.items()) if key not in _TOP_ORDER})
    return ordered, unknown, secret


def objects(registrations: Iterable[Any]) -> list[K8sObject]:
    """Every Kubernetes API object among `registrations` (mock_engine.Registration)."""
    found = []
    for registration in registrations:
        if not is_api_object(registration.type):
            continue
        manifest, unknown, secret = manifest_from(registration.type, registration.inputs)
        found.append(K8sObject(urn=registration.urn, resource_name=registration.name,
                               type_token=registration.type, manifest=manifest,
                               unknown_paths=unknown, secret_paths=secret))
    return found


def schema_version(kubernetes_version: str) -> str:
    """The newest shipped schema version not newer than `kubernetes_version` (what
    kubernetes-validate itself picks), e.g. "1.33" -> "1.33.0"."""
    wanted = _minor_tuple(kubernetes_version)
    shipped = [v for v in kv_utils.all_versions() if _minor_tuple(v) <= wanted]
    if not shipped:
        raise SchemaVersionError(
            f"kubernetes-validate {kubernetes_validate.__version__} ships no schema for Kubernetes "
            f"{kubernetes_version} or older; shipped: {', '.join(kv_utils.all_versions())}")
    if _minor_tuple(kv_utils.latest_version()) < wanted:
        raise SchemaVersionError(
            f"Kubernetes {kubernetes_version} is newer than every schema kubernetes-validate "
            f"{kubernetes_validate.__version__} ships (latest {kv_utils.latest_version()}): upgrade it")
    return shipped[-1]


def _minor_tuple(version: str) -> tuple[int, int]:
    parts = version.lstrip("v").split(".")
    return int(parts[0]), int(parts[1])


@dataclass
class ValidationResult:
    obj: K8sObject
    # "valid", "invalid" or "skipped" (custom resource without a shipped schema).
    status: str
    schema_version: str
    message: str = ""


def validate(obj: K8sObject, kubernetes_version: str,
             crd_errors: Optional[list[str]] = None) -> ValidationResult:
    """Validate one object strictly against the schema of `kubernetes_version` (or, for a
    custom resource with a pinned CRD schema, the errors `crd_schemas` found)."""
    version = schema_version(kubernetes_version)
    if (obj.api_version, obj.kind) in crd_schemas.SCHEMA_KINDS:
        if crd_errors is None:
            crd_errors = crd_schemas.validate([obj.manifest])[0] or []
        # A value unknown during preview is a placeholder string: it cannot be judged yet.
        unknown = tuple("/" + re.sub(r"\[(\d+)\]", r"/\1", path).replace(".", "/") for path in obj.unknown_paths)
        crd_errors = [e for e in crd_errors if not e.split(":", 1)[0].startswith(unknown or ("\0",))]
        if crd_errors:
            return ValidationResult(obj, "invalid", version, "; ".join(crd_errors))
        return ValidationResult(obj, "valid", version)
    if obj.is_custom_resource:
        return ValidationResult(obj, "skipped", version,
                                f"custom resource {obj.api_version} {obj.kind}: no schema shipped")
    if (obj.api_version, obj.kind) == LWS:
        return _validate_leader_worker_set(obj, version)
    try:
        kubernetes_validate.validate(obj.manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        return ValidationResult(obj, "invalid", version, f"{path or '<root>'}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        return ValidationResult(obj, "invalid", version,
                                f"no schema for {obj.api_version} {obj.kind} in Kubernetes {version} "
                                f"({error.message}); a custom resource must be listed in "
                                f"CUSTOM_RESOURCE_KINDS")
    return ValidationResult(obj, "valid", version)


def _validate_leader_worker_set(obj: K8sObject, version: str) -> ValidationResult:
    spec = obj.manifest.get("spec")
    if not isinstance(spec, dict):
        return ValidationResult(obj, "invalid", version, "spec: must be an object")
    for path, allowed in _LWS_FIELDS.items():
        node: Any = obj.manifest
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        unknown = sorted(set(node) - allowed) if isinstance(node, dict) else ["<not an object>"]
        if unknown:
            return ValidationResult(obj, "invalid", version,
                                    f"{path}: unknown field(s) {', '.join(unknown)}; allowed: "
                                    f"{', '.join(sorted(allowed))}")
    for path, allowed in _LWS_ENUMS.items():
        node = obj.manifest
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and node not in allowed:
            return ValidationResult(obj, "invalid", version,
                                    f"{path}: {node!r} is not one of {', '.join(sorted(allowed))}")
    group = spec.get("leaderWorkerTemplate") or {}
    size = group.get("size", 1)
    if not isinstance(size, int) or size < 1:
        return ValidationResult(obj, "invalid", version, f"spec.leaderWorkerTemplate.size: {size!r} must be >= 1")
    if "workerTemplate" not in group:
        return ValidationResult(obj, "invalid", version, "spec.leaderWorkerTemplate.workerTemplate: required")
    for role in ("leaderTemplate", "workerTemplate"):
        if role not in group:
            continue
        template = {"apiVersion": "v1", "kind": "PodTemplate",
                    "metadata": {"name": f"{obj.name or 'lws'}-{role.lower()}"}, "template": group[role]}
        try:
            kubernetes_validate.validate(template, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            return ValidationResult(obj, "invalid", version,
                                    f"spec.leaderWorkerTemplate.{role}.{path.removeprefix('template.')}: "
                                    f"{error.message}")
    return ValidationResult(obj, "valid", version)


def validate_all(registrations: Iterable[Any], kubernetes_version: str) -> list[ValidationResult]:
    found = objects(registrations)
    # One Node process for every custom resource with a CRD schema.
    with_schema = [obj for obj in found if (obj.api_version, obj.kind) in crd_schemas.SCHEMA_KINDS]
    crd_errors = dict(zip(map(id, with_schema), crd_schemas.validate([o.manifest for o in with_schema])))
    return [validate(obj, kubernetes_version, crd_errors.get(id(obj))) for obj in found]


def failures(results: Iterable[ValidationResult]) -> list[str]:
    """One line per invalid object, for assertion messages and CLI output."""
    return [f"{result.obj.describe()}: {result.message}" for result in results if result.status == "invalid"]


def render_yaml(found: Iterable[K8sObject]) -> str:
    """The objects as one multi-document YAML stream, in registration order (for review)."""
    return yaml.safe_dump_all([obj.manifest for obj in found], sort_keys=False,
                              default_flow_style=False, width=100)
