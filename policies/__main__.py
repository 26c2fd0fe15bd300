"""Entry point the Pulumi engine runs (`python -m pulumi.policy <engine> policies`).

It only assembles the pack: the rules live in `rules/` so tests and tools can import
them (PolicyPack(...) serves gRPC and never returns).
"""
from pulumi_policy import EnforcementLevel, PolicyPack

from rules import PACK_NAME, all_policies

PolicyPack(
    name=PACK_NAME,
    description="No public unauthenticated endpoint, and LLM-serving hygiene, for AWS and "
                "Kubernetes programs.",
    # Each policy declares its own default (Family 1 mandatory, Family 2 advisory); the
    # per-environment files in config/ decide the rest.
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=all_policies(),
)
