"""The deepseek-serving guardrails, one module per concern.

Family 1 (no public unauthenticated endpoint) lives in public_endpoints.py (per resource)
and reachability.py (across the stack), with one exposure_<concern>.py module per newer class
of entry point (exposure_kubernetes.py and exposure_helm.py for Kubernetes objects,
manifests and Helm charts); exposure_classified.py closes the world (every type classified, see
type_classes.py); Family 2 (LLM-serving hygiene) in
runtime_hygiene.py (model servers), aws_hygiene.py (infrastructure) and stack_hygiene.py
(protections that sit on another resource); Family 3 (security baseline) in the baseline_*
modules, one concern each (identities, resource policies and keys, logging, the API
gateway, Kubernetes, node groups). Each module lists its policies in POLICIES.
"""
from __future__ import annotations

PACK_NAME = "deepseek-serving-guardrails"


def all_policies() -> list:
    """Every policy of the pack, Family 1 first, in the order the reference lists them."""
    from . import (aws_hygiene, exposure_classified, exposure_compute, exposure_datastores, exposure_edge,
                   exposure_helm, exposure_integrations, exposure_kubernetes, exposure_platforms,
                   exposure_prefix_lists, exposure_resource_policies, exposure_service_networks,
                   public_endpoints, reachability, runtime_hygiene, stack_hygiene)
    from . import (baseline_gateway, baseline_iam, baseline_kubernetes, baseline_logging, baseline_nodes,
                   baseline_resource_policies)

    return [
        *public_endpoints.POLICIES,
        *reachability.POLICIES,
        *exposure_compute.POLICIES,
        *exposure_kubernetes.POLICIES,
        *exposure_helm.POLICIES,
        *exposure_integrations.POLICIES,
        *exposure_edge.POLICIES,
        *exposure_resource_policies.POLICIES,
        *exposure_service_networks.POLICIES,
        *exposure_platforms.POLICIES,
        *exposure_prefix_lists.POLICIES,
        *exposure_datastores.POLICIES,
        *exposure_classified.POLICIES,
        *runtime_hygiene.POLICIES,
        *aws_hygiene.POLICIES,
        *stack_hygiene.POLICIES,
        *baseline_iam.POLICIES,
        *baseline_resource_policies.POLICIES,
        *baseline_logging.POLICIES,
        *baseline_gateway.POLICIES,
        *baseline_kubernetes.POLICIES,
        *baseline_nodes.POLICIES,
    ]
