"""Family 1, per resource: the closed world. A type that can open an internet entry point
must be judged by a rule of this pack, or reviewed by a security team.

The class of each type comes from policies/classification.json (see type_classes.py). A
type whose class is `unjudgeable-entry-point`, and a type the table has never heard of that
lives where entry points live (another provider, or an entry-point capable AWS module or
Kubernetes API group), is a violation: mandatory in staging and prod, advisory in dev. A
reviewed type is listed in this policy's `reviewedTypes` in policies/config/<env>.json.
"""
from __future__ import annotations

from typing import Iterator

from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, violation
from .type_classes import UNJUDGEABLE, entry_point_capable, table

_FIX = ("use a type this pack judges, or have a security team review how this type authenticates "
        "and list it in entry-point-classified.reviewedTypes in policies/config/<env>.json")


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type in set(config.get("reviewedTypes") or []):
        return
    known = table().get(res.type)
    if known == UNJUDGEABLE:
        yield violation("type", res.type,
                        "it can open an internet entry point and no rule of this pack can tell "
                        "whether it authenticates, so the guardrail fails closed", _FIX)
    elif known is None and entry_point_capable(res.type):
        yield violation("type", res.type,
                        "the pack has never classified this type and it belongs to a provider or "
                        "module where internet entry points live, so the guardrail fails closed "
                        "(regenerate the table with make classify after a provider upgrade)", _FIX)


ENTRY_POINT_CLASSIFIED = resource_policy(
    name="entry-point-classified",
    family=FAMILY_EXPOSURE,
    description="Every resource type is classified (no network surface / judged by a named rule / "
                "entry point the pack cannot judge); unjudgeable and unclassified entry-point types "
                "fail closed unless a security team listed them in reviewedTypes.",
    resource_types=("*:*",),
    check=_check,
    config_schema={"reviewedTypes": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[^:*]+:[^:*]*:[^:*]+$"},
        "default": [],
        "description": ("Exact type tokens (for example aws:amplify/app:App) whose exposure a security "
                        "team has reviewed; no wildcards. Rules that judge a type still apply."),
    }},
    remediation="Replace the resource with one this pack judges, or review the type and add its token "
                "to reviewedTypes in the environment's policy config.",
)

# It looks at every type but judges none: the classification must not name it as a judge.
ENTRY_POINT_CLASSIFIED.judges_exposure = False

POLICIES = [ENTRY_POINT_CLASSIFIED]
