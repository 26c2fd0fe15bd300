"""How a rule becomes a CrossGuard policy: raw properties in, actionable findings out.

A rule is a plain function `check(resource, config) -> Iterable[Finding]` (or, for stack
rules, `check(stack, config) -> Iterable[(urn, Finding)]`), testable without the engine.
`resource_policy` / `stack_policy` wrap it into a pulumi-policy object and attach the data
the policy reference is generated from (family, resource types judged).

Unknown values are handled here, once, by family:
- Family 1 (public exposure) fails closed: an unknown deciding value is reported as a
  violation at the policy's level (mandatory), with a message that says it was unknown.
- Families 2 (hygiene) and 3 (security baseline) cannot judge what they cannot see: after
  reporting every violation they could establish, they raise the SDK's UnknownValueError,
  which the SDK turns into an ADVISORY "can't run policy ... during preview" naming what
  was unknown. The engine runs the pack again on `pulumi up`, with the values known.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from ._wire import UNKNOWN, is_unknown, raw, show

FAMILY_EXPOSURE = 1
FAMILY_HYGIENE = 2
FAMILY_BASELINE = 3

FAMILY_TITLES = {
    FAMILY_EXPOSURE: "No public unauthenticated endpoint",
    FAMILY_HYGIENE: "LLM-serving hygiene",
    FAMILY_BASELINE: "Security baseline",
}

_UNKNOWN_WHY_EXPOSURE = (
    "it decides whether this resource is reachable from the internet and it is unknown "
    "during preview (computed from another resource's output), so the guardrail fails closed"
)


@dataclass(frozen=True)
class Finding:
    """One problem on one resource, phrased so a reviewer can fix it without the docs."""

    path: str
    value: str  # rendered for the message; never a secret
    why: str
    fix: str
    unknown: bool = False


def violation(path: str, value: Any, why: str, fix: str, *, rendered: Optional[str] = None) -> Finding:
    """A finding on a known value. Pass `rendered` for values that must not be shown."""
    return Finding(path, rendered if rendered is not None else show(value), why, fix)


def unknown(path: str, fix: str, why: Optional[str] = None) -> Finding:
    """Family 1: a deciding value is unknown, so the rule fails closed (a violation)."""
    return Finding(path, "unknown during preview", why or _UNKNOWN_WHY_EXPOSURE, fix, unknown=True)


def cannot_check(path: str, why: str = "is unknown during preview") -> Finding:
    """Families 2 and 3: the rule cannot see a value it needs; reported as an advisory, never a pass.

    `why` completes the sentence "<path> <why>"."""
    return Finding(path, "not visible", why, "", unknown=True)


@dataclass
class Resource:
    """A resource as a rule sees it: raw wire properties (unknown sentinels visible)."""

    type: str
    name: str
    urn: str
    props: dict

    def get(self, *keys: str, default: Any = None) -> Any:
        """The value at a key path; the unknown sentinel if a step on the way is unknown."""
        value: Any = self.props
        for key in keys:
            if is_unknown(value):
                return value
            if not isinstance(value, dict):
                return default
            value = value.get(key)
        return default if value is None else value


@dataclass
class StackResource(Resource):
    parent: Optional[str] = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def depends_on(self, urn: str, prop: Optional[str] = None) -> bool:
        if prop is None:
            return urn in self.dependencies or any(
                urn in urns for urns in self.property_dependencies.values())
        return urn in self.property_dependencies.get(prop, [])


class _LazyStackResource(StackResource):
    """A StackResource whose plain props are made from the SDK's on first read.

    Every stack policy receives every resource, and most read the properties of a few
    types only: converting all of them for each policy made the pack's time per resource
    grow with the stack (tools/bench.py)."""

    def __init__(self, source: Any, **fields: Any):
        super().__init__(props=None, **fields)
        del self.props  # read through __getattr__ until first converted
        self._source = source

    def __getattr__(self, name: str) -> Any:
        if name != "props":
            raise AttributeError(name)
        props = raw(self.__dict__.pop("_source", None)) or {}
        self.props = props
        return props


class Stack:
    """All resources of a stack, with the relations the rules need."""

    def __init__(self, resources: list[StackResource]):
        self.resources = resources
        self._by_urn = {r.urn: r for r in resources}
        # Reverse dependency indexes, built once: rules ask "who was computed from X" for
        # many X, and a scan per question would make a stack check quadratic in its size.
        self._order = {id(r): index for index, r in enumerate(resources)}
        self._dependents: dict[str, list[StackResource]] = {}
        self._dependents_by_prop: dict[tuple[str, str], list[StackResource]] = {}
        for res in resources:
            sources = set(res.dependencies)
            for prop, urns in res.property_dependencies.items():
                for urn in dict.fromkeys(urns):
                    self._dependents_by_prop.setdefault((urn, prop), []).append(res)
                sources.update(urns)
            for urn in sources:
                self._dependents.setdefault(urn, []).append(res)
        self._of_type: dict[tuple[str, ...], list[StackResource]] = {}

    def of_type(self, *patterns: str) -> list[StackResource]:
        if patterns not in self._of_type:
            self._of_type[patterns] = [r for r in self.resources if type_matches(r.type, patterns)]
        return list(self._of_type[patterns])

    def get(self, urn: str) -> Optional[StackResource]:
        return self._by_urn.get(urn)

    def referenced(self, res: StackResource, prop: str, *patterns: str) -> list[StackResource]:
        """Resources of the given types that `res.prop` was computed from."""
        found = [self._by_urn[u] for u in res.property_dependencies.get(prop, []) if u in self._by_urn]
        return [r for r in found if not patterns or type_matches(r.type, patterns)]

    def referencing(self, target: StackResource, prop: Optional[str] = None,
                    *patterns: str) -> list[StackResource]:
        """Resources whose `prop` (any property when None) was computed from `target`."""
        candidates = (self._dependents.get(target.urn, []) if prop is None
                      else self._dependents_by_prop.get((target.urn, prop), []))
        return sorted((r for r in candidates
                       if r.urn != target.urn and (not patterns or type_matches(r.type, patterns))),
                      key=lambda r: self._order[id(r)])


def type_matches(type_token: str, patterns: Iterable[str]) -> bool:
    return any(type_token == p or ("*" in p and fnmatch.fnmatchcase(type_token, p)) for p in patterns)


def _type_filter(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    # Every policy sees every resource: keep the "not mine" answer cheap.
    exact = frozenset(p for p in patterns if "*" not in p)
    wildcards = tuple(p for p in patterns if "*" in p)
    return lambda token: token in exact or any(fnmatch.fnmatchcase(token, p) for p in wildcards)


def message(res_type: str, name: str, finding: Finding) -> str:
    return f"{res_type} {name}: {finding.path} is {finding.value}; {finding.why}. Fix: {finding.fix}"


def _config_with_defaults(config: Mapping[str, Any], schema: Optional[dict]) -> dict:
    # The engine fills schema defaults before Configure; do it again here so a rule
    # behaves the same when a host (or an older CLI) sends no config at all.
    merged = {key: spec["default"] for key, spec in (schema or {}).items() if "default" in spec}
    merged.update(dict(config or {}))
    return merged


def _raise_unknowns(policy_name: str, findings: list[Finding], where: str) -> None:
    seen: dict[str, str] = {}
    for finding in findings:
        seen.setdefault(finding.path, finding.why)
    error = UnknownValueError(UNKNOWN, [findings[0].path])
    # The SDK reports `error.message` as an advisory "can't run policy ... during preview".
    error.message = (f"{where}: " + "; ".join(f"{path} {why}" for path, why in seen.items())
                     + f", so '{policy_name}' cannot decide it in this preview")
    raise error


def _guarded(check: Callable, subject: Any, config: dict, family: int, stack_level: bool = False) -> list:
    """Run a rule; a property shape it cannot read becomes a finding, not a crashed preview.

    Family 1 stays fail-closed (the finding is a violation); Family 2 reports that it could
    not check. Only the exception type is shown: its text could quote a secret value.
    """
    try:
        return list(check(subject, config))
    except UnknownValueError:
        raise
    except Exception as error:  # noqa: BLE001 - any rule bug must not pass silently
        what = f"the policy could not evaluate it ({type(error).__name__})"
        if family == FAMILY_EXPOSURE:
            finding = violation("properties", None, f"{what}, so the guardrail fails closed",
                                "report this to the policy owners with the resource definition",
                                rendered="unreadable")
        else:
            finding = cannot_check("properties", f"could not be evaluated ({type(error).__name__})")
        return [("", finding)] if stack_level else [finding]


def resource_policy(
    *,
    name: str,
    family: int,
    description: str,
    resource_types: tuple[str, ...],
    check: Callable[[Resource, dict], Iterable[Finding]],
    remediation: str,
    config_schema: Optional[dict] = None,
    severity: Severity = Severity.HIGH,
) -> ResourceValidationPolicy:
    judges = _type_filter(tuple(resource_types))

    def validate(args, report_violation) -> None:
        if not judges(args.resource_type):
            return
        res = Resource(args.resource_type, args.name, args.urn, raw(args.props) or {})
        config = _config_with_defaults(args.get_config(), config_schema)
        pending_unknowns: list[Finding] = []
        for finding in _guarded(check, res, config, family):
            if finding.unknown and family != FAMILY_EXPOSURE:
                pending_unknowns.append(finding)
                continue
            report_violation(message(res.type, res.name, finding), None)
        if pending_unknowns:
            _raise_unknowns(name, pending_unknowns, f"{res.type} {res.name}")

    policy = ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=(EnforcementLevel.MANDATORY if family == FAMILY_EXPOSURE
                           else EnforcementLevel.ADVISORY),
        config_schema=PolicyConfigSchema(properties=config_schema) if config_schema else None,
        severity=severity,
        remediation_steps=remediation,
        tags=[f"family-{family}"],
    )
    _attach(policy, family, resource_types, check, config_schema)
    return policy


def stack_policy(
    *,
    name: str,
    family: int,
    description: str,
    resource_types: tuple[str, ...],
    check: Callable[[Stack, dict], Iterable[tuple[str, Finding]]],
    remediation: str,
    config_schema: Optional[dict] = None,
    severity: Severity = Severity.HIGH,
) -> StackValidationPolicy:
    def validate(args, report_violation) -> None:
        stack = Stack([
            _LazyStackResource(
                r.props, type=r.resource_type, name=r.name, urn=r.urn,
                parent=r.parent.urn if r.parent is not None else r.opts.parent,
                dependencies=[d.urn for d in r.dependencies],
                property_dependencies={k: [d.urn for d in v] for k, v in r.property_dependencies.items()},
            )
            for r in args.resources
        ])
        config = _config_with_defaults(args.get_config(), config_schema)
        pending_unknowns: list[Finding] = []
        for urn, finding in _guarded(check, stack, config, family, stack_level=True):
            if finding.unknown and family != FAMILY_EXPOSURE:
                pending_unknowns.append(finding)
                continue
            res = stack.get(urn)
            text = (message(res.type, res.name, finding) if res is not None
                    else f"stack: {finding.path} is {finding.value}; {finding.why}. Fix: {finding.fix}")
            report_violation(text, urn or None)
        if pending_unknowns:
            _raise_unknowns(name, pending_unknowns, "stack")

    policy = StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=(EnforcementLevel.MANDATORY if family == FAMILY_EXPOSURE
                           else EnforcementLevel.ADVISORY),
        config_schema=PolicyConfigSchema(properties=config_schema) if config_schema else None,
        severity=severity,
        remediation_steps=remediation,
        tags=[f"family-{family}", "stack"],
    )
    _attach(policy, family, resource_types, check, config_schema)
    return policy


def _attach(policy, family, resource_types, check, config_schema) -> None:
    # Data the policy reference and the tests read; the SDK ignores unknown attributes.
    policy.family = family
    policy.resource_types = tuple(resource_types)
    policy.check = check
    policy.config_defaults = {k: v["default"] for k, v in (config_schema or {}).items()
                              if "default" in v}
