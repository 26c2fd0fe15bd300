"""Custom resources checked against the schemas of the CRDs their pinned charts install.

kubernetes-validate knows the core API groups only. For Karpenter's NodePool and
EC2NodeClass the schemas come from the npm package @kubernetes-models/karpenter 2.0.0,
generated from karpenter-provider-aws v1.12.1 and sigs.k8s.io/karpenter v1.12.0, the
release the project pins (components/eks/karpenter.py KARPENTER_CHART). The package ships
compiled JSON-schema validators, so `validate.mjs` beside this file runs them under Node;
`make` installs it (npm ci) with the Python requirements.

Limits, said plainly: those schemas come from the Go API types, so they check types, enums,
patterns, bounds and required fields, but not the CRDs' CEL rules, and they do not refuse
unknown fields; `KNOWN_FIELDS` below refuses unknown top-level spec fields for the kinds
this project writes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

HERE = Path(__file__).resolve().parent / "crd_schemas"
# npm package -> (its version, the Karpenter release its schemas were generated from).
SCHEMA_PACKAGES = {"@kubernetes-models/karpenter": ("2.0.0", "1.12.1")}
SCHEMA_KINDS = {("karpenter.k8s.aws/v1", "EC2NodeClass"), ("karpenter.sh/v1", "NodePool")}
# Spec fields of Karpenter v1.12 (karpenter.sh/docs/concepts/nodepools, nodeclasses).
KNOWN_FIELDS = {
    ("karpenter.sh/v1", "NodePool"): {"template", "disruption", "limits", "weight", "replicas"},
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): {
        "kubelet", "subnetSelectorTerms", "securityGroupSelectorTerms", "capacityReservationSelectorTerms",
        "placementGroupSelector", "associatePublicIPAddress", "amiSelectorTerms", "amiFamily", "userData",
        "role", "instanceProfile", "tags", "blockDeviceMappings", "instanceStorePolicy",
        "detailedMonitoring", "metadataOptions", "context", "ipPrefixCount"},
}


class CrdSchemaUnavailable(RuntimeError):
    """Node or the schema package is missing: run `make` (it installs them) first."""


def _ready() -> None:
    if shutil.which("node") is None:
        raise CrdSchemaUnavailable("node is not installed; the CRD schema validators run under Node")
    if not (HERE / "node_modules" / "@kubernetes-models" / "karpenter").is_dir():
        raise CrdSchemaUnavailable(f"{HERE}/node_modules is missing: run `npm ci --prefix {HERE}` "
                                   "(make does it)")


def validate(manifests: Sequence[dict[str, Any]]) -> list[Optional[list[str]]]:
    """Per manifest: a list of errors (empty when valid), or None when no schema is known."""
    if not manifests:
        return []
    _ready()
    done = subprocess.run(["node", str(HERE / "validate.mjs")], input=json.dumps(list(manifests)),
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise CrdSchemaUnavailable(f"validate.mjs failed: {done.stderr.strip()[-2000:]}")
    results = json.loads(done.stdout)
    for manifest, errors in zip(manifests, results):
        known = KNOWN_FIELDS.get((manifest.get("apiVersion"), manifest.get("kind")))
        if errors is not None and known is not None:
            errors.extend(f"/spec/{field}: unknown field" for field in sorted(set(manifest.get("spec") or {}) - known))
    return results
