"""Finding what a Kubernetes object exposes, whatever kind it is.

Exposure hides in specs, not in kinds: a KServe InferenceService carries a pod spec in
`spec.predictor`, a LeaderWorkerSet two pod templates, a KEDA ScaledJob one under
`jobTargetRef`, a RayService a head-group `serviceType` and a `headService`, a Helm
value tree `controller.service.type`. So one bounded walk looks at every mapping of an
object once and recognises the shapes that matter:

- a pod spec: a mapping with `containers` (a list of mappings, or unknown), or with
  `hostNetwork` (a key only pod specs have);
- a Service spec: a mapping whose `type` is a Service type and which has Service fields
  (`ports` of mappings with `port`, `selector`, `clusterIP`, ...) or sits under a key
  naming a service; or a mapping with `externalIPs`;
- a service-type declaration of an operator (`serviceType: LoadBalancer`, KubeRay);
- an unknown value where a spec or template could be (it could hide any of the above).

The walk is iterative, visits each node at most once and gives up (fail closed) past a
node budget, so its cost is linear in the object and bounded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ._wire import is_unknown

# Past this many nodes an object is not judged but reported: a budget, not a heuristic.
MAX_NODES = 50_000
MAX_DEPTH = 64

SERVICE_TYPES = {"clusterip": "ClusterIP", "nodeport": "NodePort", "loadbalancer": "LoadBalancer",
                 "externalname": "ExternalName"}
# Fields only a core/v1 ServiceSpec has (with `ports`/`type` they identify one).
_SERVICE_FIELDS = frozenset({
    "selector", "clusterIP", "clusterIPs", "externalIPs", "loadBalancerClass", "loadBalancerIP",
    "loadBalancerSourceRanges", "externalTrafficPolicy", "internalTrafficPolicy", "sessionAffinity",
    "ipFamilyPolicy", "ipFamilies", "healthCheckNodePort", "publishNotReadyAddresses",
    "allocateLoadBalancerNodePorts", "externalName", "trafficDistribution",
})
# Parts of a pod spec the pod judgement reads itself.
_POD_OWN = frozenset({"containers", "initContainers", "ephemeralContainers", "volumes", "affinity",
                      "tolerations", "securityContext", "metadata"})
# Keys under which an unknown value may hide a pod or Service spec.
_SPEC_SUFFIXES = ("spec", "template", "containers", "service", "services", "pod", "pods")


@dataclass
class PodShape:
    path: str
    spec: Any                 # mapping, or the unknown sentinel


@dataclass
class ServiceShape:
    path: str
    spec: dict
    annotations: Any          # mapping, None when the object carries none here, or unknown
    annotations_path: str


@dataclass
class ServiceTypeShape:
    """An operator field that picks the type of a Service it creates (KubeRay serviceType)."""
    path: str
    value: Any
    annotations: Any
    annotations_path: str


@dataclass
class UnknownShape:
    path: str


@dataclass
class Shapes:
    pods: list
    services: list
    service_types: list
    unknowns: list
    too_large: bool = False


def _is_service_type(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in SERVICE_TYPES


def _looks_like_pod_spec(node: dict, values_mode: bool) -> bool:
    containers = node.get("containers")
    if is_unknown(containers):
        return True
    if isinstance(containers, list) and containers and all(
            is_unknown(c) or (isinstance(c, dict) and ("image" in c or "name" in c)) for c in containers):
        return True
    # In Helm values hostNetwork sits beside unrelated settings (a controller's service):
    # there it is a key of its own, judged by the values rule.
    return not values_mode and "hostNetwork" in node and not isinstance(node.get("hostNetwork"), dict)


def _looks_like_service_spec(node: dict, key: str) -> bool:
    if isinstance(node.get("externalIPs"), list) and node.get("externalIPs"):
        return True
    service_type = node.get("type")
    ports = node.get("ports")
    has_ports = isinstance(ports, list) and any(isinstance(p, dict) and "port" in p for p in ports)
    has_fields = any(field in node for field in _SERVICE_FIELDS)
    if _is_service_type(service_type) or is_unknown(service_type):
        return has_ports or has_fields or "service" in key.lower()
    return has_ports and has_fields


def _annotations_of(node: dict, path: str) -> tuple[Any, str]:
    """Annotations a mapping carries for the spec under it: {metadata: {annotations}} as
    Kubernetes objects have them, or an `annotations` key as Helm values do."""
    metadata = node.get("metadata")
    if is_unknown(metadata):
        return metadata, f"{path}.metadata" if path else "metadata"
    if isinstance(metadata, dict) and "annotations" in metadata:
        prefix = f"{path}.metadata" if path else "metadata"
        return metadata.get("annotations"), f"{prefix}.annotations"
    return None, ""


def find_shapes(root: Any, root_path: str = "", *, values_mode: bool = False,
                root_annotations: Any = None, root_annotations_path: str = "") -> Shapes:
    """Every pod spec, Service spec, service-type field and hiding unknown under `root`.

    `values_mode` reads Helm values, where a service's annotations sit beside its type.
    """
    shapes = Shapes([], [], [], [])
    # (node, path, key, annotations for a Service spec at this node, their path)
    pending: list[tuple[Any, str, str, Any, str]] = [
        (root, root_path, "", root_annotations, root_annotations_path)]
    visited = 0
    while pending:
        node, path, key, annotations, annotations_path = pending.pop()
        visited += 1
        if visited > MAX_NODES or path.count(".") > MAX_DEPTH:
            shapes.too_large = True
            return shapes
        if is_unknown(node):
            lowered = key.lower()
            if node is root or any(lowered.endswith(s) for s in _SPEC_SUFFIXES):
                shapes.unknowns.append(UnknownShape(path or "(object)"))
            continue
        if isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                pending.append((node[index], f"{path}[{index}]", key, None, ""))
            continue
        if not isinstance(node, dict):
            continue
        if _looks_like_pod_spec(node, values_mode):
            shapes.pods.append(PodShape(path, node))
            # Containers are judged with the pod; anything else beside them (a CRD's own
            # service settings next to a pod spec) is walked on.
            for child_key, child in node.items():
                if isinstance(child_key, str) and child_key not in _POD_OWN and isinstance(child, (dict, list)):
                    pending.append((child, f"{path}.{child_key}" if path else child_key, child_key, None, ""))
            continue
        if _looks_like_service_spec(node, key):
            own, own_path = node.get("annotations"), f"{path}.annotations"
            if values_mode or "annotations" in node:
                annotations, annotations_path = own, own_path
            shapes.services.append(ServiceShape(path, node, annotations, annotations_path))
            continue
        child_annotations, child_annotations_path = _annotations_of(node, path)
        if node.get("kind") == "Service" and str(node.get("apiVersion", "v1")) == "v1" and "spec" in node:
            # A whole Service object embedded somewhere (a chart's extraObjects, an operator's
            # template): its spec is a Service spec however little it says.
            spec_path = f"{path}.spec" if path else "spec"
            spec = node.get("spec")
            shapes.services.append(ServiceShape(spec_path, spec if spec is not None else {},
                                                child_annotations, child_annotations_path))
            continue
        sibling_annotations = _sibling_annotations(node, path)
        for child_key, child in node.items():
            if not isinstance(child_key, str):
                continue
            child_path = f"{path}.{child_key}" if path else child_key
            if child_key.lower().endswith("servicetype") and (_is_service_type(child) or is_unknown(child)):
                shapes.service_types.append(ServiceTypeShape(child_path, child, *sibling_annotations))
                continue
            if child_key == "metadata":
                continue
            if child_key == "spec":
                # The spec of a Service template (headService, serviceTemplate) is a Service
                # spec: the parent's key says so.
                pending.append((child, child_path, f"{key}.spec", child_annotations, child_annotations_path))
            else:
                pending.append((child, child_path, child_key, None, ""))
    return shapes


def _sibling_annotations(node: dict, path: str) -> tuple[Any, str]:
    """For an operator's serviceType: annotations of a Service template beside it
    (KubeRay `headService.metadata.annotations`), or an `annotations`-like key."""
    for key, child in node.items():
        if not isinstance(key, str):
            continue
        lowered = key.lower()
        if lowered.endswith("annotations") and (isinstance(child, dict) or is_unknown(child)):
            return child, f"{path}.{key}" if path else key
        if "service" in lowered and isinstance(child, dict):
            annotations, where = _annotations_of(child, f"{path}.{key}" if path else key)
            if annotations is not None:
                return annotations, where
    return None, ""


def host_port_of(port: Any) -> Optional[Any]:
    """hostPort of a container port mapping (None when unset)."""
    if is_unknown(port):
        return port
    return port.get("hostPort") if isinstance(port, dict) else None
