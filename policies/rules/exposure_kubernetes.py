"""Family 1 for Kubernetes: no Service, pod, Ingress or gateway reachable from the internet
without authentication, whatever kind of object declares it.

Every kubernetes:* resource is walked (k8s_walk): a Service spec or pod spec embedded in a
custom resource (KServe, LeaderWorkerSet, Argo Rollouts, KEDA ScaledJob, KubeRay) is judged
like a Service or a pod. Objects a component declares inline (yaml/v2 ConfigGroup,
ConfigFile, List kinds) are judged in place by the stack rule `k8s-entry-points`, which
also relates Gateway API routes to their gateways.

Patch resources (`*Patch`) change only the fields they name (server-side apply): a field a
patch leaves out keeps whatever the live object has, which the pack cannot see. So a patch
is judged on the fields it sets, and when it sets an exposure-relevant field (a Service
type, an Ingress scheme or auth annotation) without setting, in the same patch, what
secures it, the live value is assumed to be the insecure one (fail closed).

Sources for the defaults relied on here:
- AWS Load Balancer Controller, Service annotations: aws-load-balancer-scheme defaults to
  internal for Services it reconciles, and "if the annotation is absent, an existing NLB's
  scheme remains unchanged"; the in-tree cloud provider creates internet-facing load
  balancers unless aws-load-balancer-internal is set:
  https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/service/nlb/
  https://cloud-provider-aws.sigs.k8s.io/service_controller/
  So which controller reconciles a Service (and its default) is not visible in a program:
  only an explicit internal scheme counts.
- ALB Ingress annotations: scheme defaults to internal; auth-type none|oidc|cognito;
  auth-on-unauthenticated-request authenticate|allow|deny, where `allow` forwards
  anonymous requests: https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/
- ingress-nginx annotations (auth-url, auth-type basic|digest with auth-secret, satisfy,
  whitelist-source-range / allowlist-source-range, auth-tls-verify-client on|off|optional|
  optional_no_ca with auth-tls-secret):
  https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/
- Knative private services (networking.knative.dev/visibility=cluster-local):
  https://knative.dev/docs/serving/services/private-services/ . KServe reads a different
  label per deployment mode (pkg/constants/constants.go in github.com/kserve/kserve):
  RawDeployment/Standard ingress and HTTPRoute reconcilers honour
  networking.kserve.io/visibility=cluster-local (NetworkVisibility), while the Serverless
  (Knative) ingress reconciler honours networking.knative.dev/visibility=cluster-local
  (VisibilityLabel). The mode comes from the serving.kserve.io/deploymentMode annotation or
  the cluster's default, so without the annotation both labels must say cluster-local.
- Gateway API on the AWS Load Balancer Controller: LoadBalancerConfiguration.spec.scheme
  defaults to internal: https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/gateway/loadbalancerconfig
  Gateway.spec.infrastructure.annotations are copied onto the generated resources:
  https://gateway-api.sigs.k8s.io/reference/spec/#gatewayinfrastructure
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional

import yaml

from ._framework import (FAMILY_EXPOSURE, Finding, Resource, Stack, StackResource, resource_policy,
                         stack_policy, unknown, violation)
from ._wire import admits_internet, as_bool, as_dict, as_list, is_unknown, show
from .k8s_walk import PodShape, ServiceShape, Shapes, find_shapes, host_port_of, SERVICE_TYPES

# ---- which resources are Kubernetes objects ---------------------------------------------

# Components that declare objects instead of being one: judged by the stack rule below
# (manifests) or by helm-chart-values (charts and releases).
MANIFEST_TYPES = ("kubernetes:yaml/v2:ConfigGroup", "kubernetes:yaml/v2:ConfigFile",
                  "kubernetes:yaml:ConfigGroup", "kubernetes:yaml:ConfigFile",
                  "kubernetes:kustomize/v2:Directory", "kubernetes:kustomize:Directory")
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart",
              "kubernetes:helm.sh/v3:Chart", "kubernetes:helm.sh/v2:Chart")
NOT_OBJECTS = frozenset(MANIFEST_TYPES + HELM_TYPES + ("pulumi:providers:kubernetes",))

# API groups built into Kubernetes: their kinds are known, so an unknown spec can only hide
# a pod or a Service in the kinds that have one. Any other group is a custom resource.
_BUILTIN_GROUPS = frozenset({
    "core", "apps", "batch", "autoscaling", "policy", "extensions", "networking.k8s.io",
    "rbac.authorization.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io",
    "certificates.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "apiregistration.k8s.io", "apiregistration", "resource.k8s.io", "storagemigration.k8s.io",
    "settings.k8s.io", "auditregistration.k8s.io", "lifecycle.k8s.io", "meta",
    "internal.apiserver.k8s.io",
})
_POD_CARRIERS = frozenset({"Pod", "PodTemplate", "ReplicationController", "Deployment", "StatefulSet",
                           "DaemonSet", "ReplicaSet", "Job", "CronJob"})


# The provider's own kinds each rule judges, spelled out so the classification table
# (tools/classify.py) names the rule; the rules also walk every other kubernetes:* kind.
_FORMS = ("", "Patch", "List")
SERVICE_TOKENS = tuple(f"kubernetes:core/v1:Service{form}" for form in _FORMS)
INGRESS_TOKENS = tuple(f"kubernetes:{gv}:Ingress{form}" for gv in (
    "networking.k8s.io/v1", "networking.k8s.io/v1beta1", "extensions/v1beta1") for form in _FORMS)
_POD_KIND_VERSIONS = {
    "core/v1": ("Pod", "PodTemplate", "ReplicationController"),
    "apps/v1": ("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"),
    "apps/v1beta1": ("Deployment", "StatefulSet"),
    "apps/v1beta2": ("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"),
    "extensions/v1beta1": ("DaemonSet", "Deployment", "ReplicaSet"),
    "batch/v1": ("CronJob", "Job"),
    "batch/v1beta1": ("CronJob",),
    "batch/v2alpha1": ("CronJob",),
}
POD_TOKENS = tuple(f"kubernetes:{gv}:{kind}{form}" for gv, kinds in _POD_KIND_VERSIONS.items()
                   for kind in kinds for form in _FORMS)
GATEWAY_API_TOKENS = tuple(f"kubernetes:gateway.networking.k8s.io/{version}:{kind}"
                           for version in ("v1", "v1beta1", "v1alpha2")
                           for kind in ("Gateway", "GatewayClass", "HTTPRoute", "GRPCRoute", "TLSRoute",
                                        "TCPRoute", "UDPRoute"))
# Custom resources of serving stacks that carry pod templates without exposing them
# (KServe runtimes, Knative configurations and revisions): judged for host access.
POD_TEMPLATE_CRD_TOKENS = ("kubernetes:serving.kserve.io/v1alpha1:ServingRuntime",
                           "kubernetes:serving.kserve.io/v1alpha1:ClusterServingRuntime",
                           "kubernetes:serving.knative.dev/v1:Configuration",
                           "kubernetes:serving.knative.dev/v1:Revision")
SERVING_TOKENS = ("kubernetes:serving.knative.dev/v1:Service", "kubernetes:serving.knative.dev/v1:Route",
                  "kubernetes:serving.kserve.io/v1beta1:InferenceService",
                  "kubernetes:serving.kserve.io/v1alpha1:InferenceGraph",
                  "kubernetes:serving.kserve.io/v1alpha1:LLMInferenceService")


def parse_type(token: str) -> tuple[str, str, str]:
    """(group, version, kind) of a kubernetes:<group>/<version>:<Kind> token."""
    _, _, rest = token.partition(":")
    group_version, _, kind = rest.rpartition(":")
    group, _, version = group_version.rpartition("/")
    return group or "core", version, kind


def object_type(obj: dict) -> str:
    """The Pulumi type token of a Kubernetes object: kubernetes:<group/version>:<kind>."""
    api_version = str(obj.get("apiVersion", ""))
    return f"kubernetes:{api_version if '/' in api_version else 'core/' + api_version}:{obj.get('kind', '')}"


def is_patch(token: str) -> bool:
    return token.endswith("Patch")


def _base_kind(token: str) -> tuple[str, str]:
    group, _, kind = parse_type(token)
    return group, kind[:-len("Patch")] if kind.endswith("Patch") else kind


def is_object(token: str) -> bool:
    return token.startswith("kubernetes:") and token not in NOT_OBJECTS


# ---- annotations ------------------------------------------------------------------------

SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
LEGACY_INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"
SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"
ALB = "alb.ingress.kubernetes.io/"
INGRESS_SCHEME = ALB + "scheme"
INGRESS_AUTH = ALB + "auth-type"
INGRESS_ON_UNAUTH = ALB + "auth-on-unauthenticated-request"
INGRESS_INBOUND = ALB + "inbound-cidrs"
NGINX = "nginx.ingress.kubernetes.io/"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
KNATIVE_VISIBILITY = "networking.knative.dev/visibility"
KSERVE_VISIBILITY = "networking.kserve.io/visibility"
KSERVE_DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
# Which label makes a KServe object cluster-local, by deployment mode (see the module docstring).
KSERVE_MODE_LABELS = {"serverless": (KNATIVE_VISIBILITY,), "rawdeployment": (KSERVE_VISIBILITY,),
                      "standard": (KSERVE_VISIBILITY,)}


def metadata_map(props: dict, key: str) -> Any:
    """metadata.<key> (annotations or labels): a mapping, None when absent, or unknown."""
    metadata = props.get("metadata")
    if is_unknown(metadata):
        return metadata
    value = as_dict(metadata).get(key)
    return value if is_unknown(value) or value is None else as_dict(value)


def _private_ranges(ranges: Any) -> Optional[bool] | str:
    """Whether source ranges are set and admit no internet address (None when unset)."""
    if ranges is None:
        return None
    if is_unknown(ranges):
        return ranges
    if isinstance(ranges, str):
        ranges = [r for r in ranges.replace(" ", "").split(",") if r]
    items = as_list(ranges)
    if not items:
        return None
    if any(is_unknown(r) for r in items):
        return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    return not any(admits_internet(r) for r in items)


# ---- Services ---------------------------------------------------------------------------

SERVICE_FIX = (f"keep the Service ClusterIP and route through the gateway, or annotate {SCHEME}: "
               "internal (in the same object or patch)")


def judge_service(path: str, spec: Any, annotations: Any, annotations_path: str, *,
                  patch: bool = False, type_key: str = "type") -> Iterator[Finding]:
    """A Service spec: LoadBalancer only with an explicit internal scheme, no NodePort, no
    externalIPs. In a patch, an unset field is the live object's (unknown to the pack)."""
    prefix = f"{path}." if path else ""
    ann_path = annotations_path or (f"{path}.metadata.annotations" if path else "metadata.annotations")
    if is_unknown(spec):
        yield unknown(path or "spec", SERVICE_FIX)
        return
    spec = as_dict(spec)
    raw_type = spec.get("type")
    if is_unknown(raw_type):
        yield unknown(f"{prefix}{type_key}", SERVICE_FIX)
        return
    if raw_type is None:
        service_type = None if patch else "ClusterIP"
    else:
        service_type = SERVICE_TYPES.get(str(raw_type).strip().lower(), str(raw_type))
    annotation_map = annotations if (is_unknown(annotations) or isinstance(annotations, dict)) else {}
    scheme = annotation_map.get(SCHEME) if isinstance(annotation_map, dict) else None
    legacy = annotation_map.get(LEGACY_INTERNAL) if isinstance(annotation_map, dict) else None
    sets_public_scheme = isinstance(annotation_map, dict) and (
        (scheme is not None and not is_unknown(scheme) and str(scheme).strip().lower() != "internal")
        or (legacy is not None and not is_unknown(legacy) and as_bool(legacy) is False and scheme is None))
    if service_type is None and sets_public_scheme:
        # A patch that turns a scheme public: whatever the live Service's type, it is
        # internet-facing the moment it is (or becomes) a LoadBalancer.
        yield violation(f"{ann_path}[{SCHEME if scheme is not None else LEGACY_INTERNAL}]",
                        scheme if scheme is not None else legacy,
                        "the patch makes the Service's load balancer internet-facing, and the live "
                        "Service's type is not in the patch, so it may well be a LoadBalancer",
                        SERVICE_FIX)
    if service_type == "LoadBalancer":
        yield from _judge_load_balancer(prefix, spec, annotation_map, ann_path, patch)
    elif service_type == "NodePort":
        yield violation(f"{prefix}{type_key}", raw_type,
                        "a NodePort opens the port on every node's address, outside the cluster "
                        "network policy and the gateway", "use ClusterIP (type LoadBalancer with "
                        "the internal scheme if something outside the cluster must reach it)")
    external_ips = spec.get("externalIPs")
    if is_unknown(external_ips):
        yield unknown(f"{prefix}externalIPs", SERVICE_FIX)
    elif external_ips:
        yield violation(f"{prefix}externalIPs", external_ips,
                        "traffic to those addresses is routed straight to the Service, bypassing "
                        "the gateway", "remove externalIPs")


def _judge_load_balancer(prefix: str, spec: dict, annotations: Any, ann_path: str,
                         patch: bool) -> Iterator[Finding]:
    if is_unknown(annotations):
        yield unknown(ann_path, SERVICE_FIX)
        return
    scheme = annotations.get(SCHEME)
    legacy = annotations.get(LEGACY_INTERNAL)
    if is_unknown(scheme):
        yield unknown(f"{ann_path}[{SCHEME}]", SERVICE_FIX)
        return
    if scheme is not None and str(scheme).strip().lower() == "internal":
        return
    if scheme is None and is_unknown(legacy):
        yield unknown(f"{ann_path}[{LEGACY_INTERNAL}]", SERVICE_FIX)
        return
    if scheme is None and (as_bool(legacy) is True or legacy == "0.0.0.0/0"):
        return
    # Source ranges that admit no internet address keep the load balancer private in effect.
    for ranges_path, ranges in ((f"{prefix}loadBalancerSourceRanges", spec.get("loadBalancerSourceRanges")),
                                (f"{ann_path}[{SOURCE_RANGES}]", annotations.get(SOURCE_RANGES))):
        private = _private_ranges(ranges)
        if is_unknown(private):
            yield unknown(ranges_path, SERVICE_FIX)
            return
        if private is True:
            return
    why = ("a LoadBalancer Service without an explicit internal scheme gets an internet-facing load "
           "balancer from the in-tree controller (and keeps an existing one's scheme under the AWS "
           "Load Balancer Controller), which cannot authenticate")
    if patch and scheme is None:
        why = ("the patch makes the Service a LoadBalancer without setting an internal scheme in the "
               "same patch, and the live Service's annotations are unknown to the pack, so its load "
               "balancer may be internet-facing")
    yield violation(f"{ann_path}[{SCHEME}]", scheme, why, SERVICE_FIX)


def judge_service_type_field(path: str, value: Any, annotations: Any, annotations_path: str) -> Iterator[Finding]:
    """An operator's serviceType (KubeRay head service): the Service it creates."""
    parent, _, key = path.rpartition(".")
    for finding in judge_service(parent, {"type": value}, annotations,
                                 annotations_path or f"{parent + '.' if parent else ''}headService.metadata.annotations",
                                 type_key=key):
        yield dataclasses.replace(finding, why=f"{path} is {show(value)}, so the operator creates a Service "
                                  f"of that type; {finding.why}")


# ---- pods -------------------------------------------------------------------------------

HOST_FIX = ("remove hostNetwork and hostPort; expose the pod through a ClusterIP Service behind "
            "the gateway")


def judge_pod(pod: PodShape) -> Iterator[Finding]:
    if is_unknown(pod.spec):
        yield unknown(pod.path, HOST_FIX)
        return
    spec = as_dict(pod.spec)
    host_network = as_bool(spec.get("hostNetwork"))
    if is_unknown(host_network):
        yield unknown(f"{pod.path}.hostNetwork", HOST_FIX)
    elif host_network is True:
        yield violation(f"{pod.path}.hostNetwork", True,
                        "the pod listens on the node's own addresses, outside NetworkPolicy "
                        "and reachable wherever the node is", HOST_FIX)
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = spec.get(key)
        if is_unknown(items):
            yield unknown(f"{pod.path}.{key}", HOST_FIX)
            continue
        for index, container in enumerate(as_list(items)):
            path = f"{pod.path}.{key}[{index}]"
            if is_unknown(container):
                yield unknown(path, HOST_FIX)
                continue
            ports = as_dict(container).get("ports")
            if is_unknown(ports):
                yield unknown(f"{path}.ports", HOST_FIX)
                continue
            for port_index, port in enumerate(as_list(ports)):
                host_port = host_port_of(port)
                if is_unknown(host_port):
                    yield unknown(f"{path}.ports[{port_index}].hostPort", HOST_FIX)
                elif host_port:
                    yield violation(f"{path}.ports[{port_index}].hostPort", host_port,
                                    "the container port is published on the node's address, "
                                    "bypassing Services and NetworkPolicy", HOST_FIX)


# ---- shapes of one object ---------------------------------------------------------------

@dataclasses.dataclass
class ObjectShapes:
    shapes: Shapes
    patch: bool


def object_shapes(token: str, props: dict) -> ObjectShapes:
    """The walk of one Kubernetes object, with the kind's own knowledge added: a Service's
    spec is a Service spec however little it says, a Pod's spec is a pod spec."""
    group, kind = _base_kind(token)
    patch = is_patch(token)
    annotations = metadata_map(props, "annotations")
    annotations_path = "metadata.annotations"
    if group == "core" and kind == "Service":
        spec = props.get("spec") if props.get("spec") is not None else {}
        shapes = Shapes([], [ServiceShape("spec", spec, annotations, annotations_path)], [], [])
        return ObjectShapes(shapes, patch)
    if group == "core" and kind == "Pod" and isinstance(props.get("spec"), dict):
        return ObjectShapes(Shapes([PodShape("spec", props["spec"])], [], [], []), patch)
    if group in _BUILTIN_GROUPS and kind not in _POD_CARRIERS and not kind.endswith("List"):
        # A built-in kind without pods or Services (a CustomResourceDefinition's schema, a
        # webhook's config) describes no workload, however much its fields look like one.
        return ObjectShapes(Shapes([], [], [], []), patch)
    body = {k: v for k, v in props.items() if k not in ("apiVersion", "kind", "status")}
    shapes = find_shapes(body)
    if group in _BUILTIN_GROUPS and kind not in _POD_CARRIERS:
        shapes.unknowns = []  # a built-in kind without pods cannot hide one behind an unknown
    return ObjectShapes(shapes, patch)


_UNKNOWN_SPEC_WHY = ("it may hold a pod spec or a Service spec this guardrail must judge, and it is "
                     "unknown during preview, so the guardrail fails closed")
_TOO_LARGE = ("the object is larger than the policy's walk budget, so the pod and Service specs it "
              "may embed cannot all be judged")


def service_findings(token: str, props: dict, found: Optional[ObjectShapes] = None) -> Iterator[Finding]:
    found = found or object_shapes(token, props)
    if found.shapes.too_large:
        yield violation("spec", None, _TOO_LARGE, "split the object", rendered="too large")
        return
    for shape in found.shapes.services:
        yield from judge_service(shape.path, shape.spec, shape.annotations, shape.annotations_path,
                                 patch=found.patch)
    for shape in found.shapes.service_types:
        yield from judge_service_type_field(shape.path, shape.value, shape.annotations, shape.annotations_path)
    for shape in found.shapes.unknowns:
        yield unknown(shape.path, SERVICE_FIX, why=_UNKNOWN_SPEC_WHY)


def host_findings(token: str, props: dict, found: Optional[ObjectShapes] = None) -> Iterator[Finding]:
    found = found or object_shapes(token, props)
    if found.shapes.too_large:
        yield violation("spec", None, _TOO_LARGE, "split the object", rendered="too large")
        return
    for pod in found.shapes.pods:
        yield from judge_pod(pod)
    group, kind = _base_kind(token)
    if found.shapes.unknowns and (group not in _BUILTIN_GROUPS or kind in _POD_CARRIERS):
        for shape in found.shapes.unknowns:
            yield unknown(shape.path, HOST_FIX, why=_UNKNOWN_SPEC_WHY)


def each_object(token: str, props: dict, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, type token, object): the object itself, or each item of a List kind (a
    ServiceList resource, or kind: List in YAML), whose items may be of any kind."""
    kind = parse_type(token)[2]
    if not kind.endswith("List") or "items" not in props:
        yield path, token, props
        return
    items = props.get("items")
    prefix = f"{path}." if path else ""
    if is_unknown(items):
        yield f"{prefix}items", token, items
        return
    item_token = token[:-len("List")]
    for index, item in enumerate(as_list(items)):
        if isinstance(item, dict) and isinstance(item.get("kind"), str) and item.get("apiVersion"):
            yield f"{prefix}items[{index}]", object_type(item), item
        else:
            yield f"{prefix}items[{index}]", item_token, item


def _per_object(res: Resource, judge) -> Iterator[Finding]:
    if not is_object(res.type):
        return
    for path, token, obj in each_object(res.type, res.props):
        if is_unknown(obj):
            yield unknown(path, MANIFEST_FIX, why=_UNKNOWN_SPEC_WHY)
            continue
        if not isinstance(obj, dict):
            continue
        for finding in judge(token, obj):
            yield dataclasses.replace(finding, path=f"{path}.{finding.path}") if path else finding


def _check_service(res: Resource, config: dict) -> Iterator[Finding]:
    yield from _per_object(res, service_findings)


def _check_host_network(res: Resource, config: dict) -> Iterator[Finding]:
    yield from _per_object(res, host_findings)


K8S_SERVICE_INTERNAL = resource_policy(
    name="k8s-service-internal",
    family=FAMILY_EXPOSURE,
    description="No Kubernetes Service exposed outside the cluster, in any object that declares "
                "or embeds one (Services, ServicePatches, custom resources with Service specs or "
                "serviceType fields): LoadBalancer only with an explicit internal scheme "
                "annotation, no NodePort, no externalIPs.",
    resource_types=SERVICE_TOKENS + ("kubernetes:*",),
    check=_check_service,
    remediation="Use ClusterIP Services; if an LB is needed, annotate "
                "service.beta.kubernetes.io/aws-load-balancer-scheme: internal.",
)

K8S_NO_HOST_NETWORK = resource_policy(
    name="k8s-no-host-network",
    family=FAMILY_EXPOSURE,
    description="No pod uses hostNetwork or hostPort, in any object that carries a pod spec "
                "(workloads, their Patches, and custom resources such as KServe, LeaderWorkerSet, "
                "Argo Rollouts, KEDA ScaledJob, KubeRay).",
    resource_types=POD_TOKENS + POD_TEMPLATE_CRD_TOKENS + ("kubernetes:*",),
    check=_check_host_network,
    remediation="Remove hostNetwork/hostPort; use a ClusterIP Service.",
)


# ---- Ingress ----------------------------------------------------------------------------

INGRESS_CLASSES_SCHEMA = {
    "type": "array", "items": {"type": "string"}, "default": [],
    "description": ("Ingress and Gateway classes whose controller a security team has verified is "
                    "reachable only from private networks (for example an ingress-nginx behind an "
                    "internal NLB). Objects of these classes are not internet entry points."),
}
INGRESS_FIX = (f"keep the Ingress internal (the ALB controller's default; drop {INGRESS_SCHEME}: "
               f"internet-facing), or authenticate at the edge: {INGRESS_AUTH}: oidc|cognito with "
               f"{INGRESS_ON_UNAUTH}: authenticate|deny (ALB), {NGINX}auth-url or auth-type basic with "
               "auth-secret (ingress-nginx); or list the class in internalIngressClasses if its "
               "controller is internal")
_UNKNOWN_LIVE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclasses.dataclass
class IngressClasses:
    """IngressClass objects of the stack (name -> controller and parameters) and the ALB
    IngressClassParams they may point at, so an Ingress is judged by its real controller."""
    controllers: dict = dataclasses.field(default_factory=dict)   # class name -> controller
    schemes: dict = dataclasses.field(default_factory=dict)       # class name -> params scheme
    default: Optional[str] = None                                 # the default class's name

    @classmethod
    def of(cls, objects: list) -> "IngressClasses":
        params = {}
        for obj in objects:
            group, _, kind = parse_type(obj.token)
            if group == "elbv2.k8s.aws" and kind == "IngressClassParams":
                params[obj.name] = as_dict(obj.props.get("spec")).get("scheme")
        found = cls()
        for obj in objects:
            group, _, kind = parse_type(obj.token)
            if group != "networking.k8s.io" or kind != "IngressClass":
                continue
            spec = as_dict(obj.props.get("spec"))
            found.controllers[obj.name] = spec.get("controller")
            parameters = as_dict(spec.get("parameters"))
            if parameters.get("kind") == "IngressClassParams":
                found.schemes[obj.name] = params.get(str(parameters.get("name")), _UNDECLARED)
            annotations = metadata_map(obj.props, "annotations")
            if isinstance(annotations, dict) and as_bool(
                    annotations.get("ingressclass.kubernetes.io/is-default-class")) is True:
                found.default = obj.name
        return found


_NO_CLASSES = IngressClasses()
_UNDECLARED = object()  # IngressClassParams a class names that this program does not declare


def _ingress_class(spec: dict, annotations: dict) -> Any:
    cls = spec.get("ingressClassName")
    if cls is None:
        cls = annotations.get(INGRESS_CLASS_ANNOTATION)
    return cls


def judge_ingress(annotations: Any, spec: Any, config: dict, *, patch: bool = False,
                  ann_path: str = "metadata.annotations", spec_path: str = "spec",
                  classes: IngressClasses = _NO_CLASSES) -> Iterator[Finding]:
    """An Ingress: internal, or authenticated in a way that admits no anonymous request.

    In a patch, a securing annotation the patch does not set is the live object's, unknown
    to the pack, so it is taken as absent (fail closed) once the patch touches exposure."""
    if is_unknown(annotations):
        yield unknown(ann_path, INGRESS_FIX)
        return
    if is_unknown(spec):
        yield unknown(spec_path, INGRESS_FIX)
        return
    annotations, spec = as_dict(annotations), as_dict(spec)
    if patch and not _patch_touches_ingress_exposure(annotations, spec):
        return
    cls = _ingress_class(spec, annotations)
    if is_unknown(cls):
        yield unknown(f"{spec_path}.ingressClassName", INGRESS_FIX)
        return
    if cls is None and not patch and classes.default is not None:
        cls = classes.default  # the cluster's default class, declared in this program
    internal_classes = {str(c) for c in config.get("internalIngressClasses") or []}
    if cls is not None and str(cls) in internal_classes:
        return
    alb_hint = any(str(k).startswith(ALB) for k in annotations)
    nginx_hint = any(str(k).startswith(NGINX) for k in annotations)
    controller = _controller(cls, alb_hint, nginx_hint, classes)
    if controller == "alb":
        class_scheme = classes.schemes.get(str(cls)) if cls is not None else None
        if class_scheme is _UNDECLARED:
            yield violation(f"{spec_path}.ingressClassName", cls,
                            "its IngressClass takes the scheme from IngressClassParams that are not declared "
                            "in this program, and those override the Ingress's own scheme, so whether the ALB "
                            "is internet-facing cannot be judged", INGRESS_FIX)
            return
        if is_unknown(class_scheme):
            yield unknown(f"IngressClassParams of class {cls} spec.scheme", INGRESS_FIX)
            return
        if class_scheme is not None:
            # IngressClassParams.spec.scheme overrides every Ingress of the class.
            annotations = {**annotations, INGRESS_SCHEME: class_scheme}
        yield from _judge_alb_ingress(annotations, ann_path, patch)
    elif controller == "nginx":
        yield from _judge_nginx_ingress(annotations, ann_path, cls)
    else:
        what = (f"its class {show(cls)} is not one whose exposure and authentication the pack can judge"
                if cls is not None else
                "it names no ingress class and no controller annotations, so the cluster's default "
                "class (whatever controller and exposure that has) serves it")
        yield violation(f"{spec_path}.ingressClassName", cls,
                        f"{what}, so it may publish the backend to the internet without authentication",
                        INGRESS_FIX)


def _controller(cls: Any, alb_hint: bool, nginx_hint: bool,
                classes: IngressClasses = _NO_CLASSES) -> Optional[str]:
    name = str(cls).lower() if cls is not None else ""
    declared = classes.controllers.get(str(cls)) if cls is not None else None
    if isinstance(declared, str) and not is_unknown(declared):
        # The IngressClass names its controller (ALB: ingress.k8s.aws/alb; ingress-nginx:
        # k8s.io/ingress-nginx); its name is only a name.
        if declared == "ingress.k8s.aws/alb":
            return "alb"
        return "nginx" if declared == "k8s.io/ingress-nginx" else None
    if name == "alb" or (not name and alb_hint and not nginx_hint):
        return "alb"
    if "nginx" in name or (not name and nginx_hint and not alb_hint):
        return "nginx"
    return None


def _patch_touches_ingress_exposure(annotations: dict, spec: dict) -> bool:
    if "ingressClassName" in spec or INGRESS_CLASS_ANNOTATION in annotations:
        return True
    return any(str(k).startswith((ALB, NGINX)) and str(k)[len(ALB if str(k).startswith(ALB) else NGINX):] in
               _EXPOSURE_ANNOTATIONS for k in annotations)


_EXPOSURE_ANNOTATIONS = frozenset({
    "scheme", "auth-type", "auth-on-unauthenticated-request", "inbound-cidrs", "auth-url",
    "auth-secret", "satisfy", "whitelist-source-range", "allowlist-source-range", "group.name",
})


def _judge_alb_ingress(annotations: dict, ann_path: str, patch: bool) -> Iterator[Finding]:
    scheme = annotations.get(INGRESS_SCHEME)
    if scheme is None and patch:
        scheme = _UNKNOWN_LIVE  # the live scheme: unknown to the pack
    if is_unknown(scheme) and not patch:
        yield unknown(f"{ann_path}[{INGRESS_SCHEME}]", INGRESS_FIX)
        return
    if not is_unknown(scheme) and str(scheme).strip().lower() != "internet-facing":
        return
    inbound = _private_ranges(annotations.get(INGRESS_INBOUND))
    if inbound is True:
        return
    auth = annotations.get(INGRESS_AUTH)
    on_unauth = annotations.get(INGRESS_ON_UNAUTH)
    for key, value in ((INGRESS_AUTH, auth), (INGRESS_ON_UNAUTH, on_unauth), (INGRESS_INBOUND, inbound)):
        if is_unknown(value):
            yield unknown(f"{ann_path}[{key}]", INGRESS_FIX)
            return
    where = ("the patch leaves the live scheme as it is, which may be internet-facing"
             if is_unknown(scheme) else "the ALB is internet-facing")
    if str(auth or "none").strip().lower() not in ("cognito", "oidc"):
        yield violation(f"{ann_path}[{INGRESS_AUTH}]", auth,
                        f"{where} and nobody has to authenticate", INGRESS_FIX)
        return
    mode = str(on_unauth).strip().lower() if on_unauth is not None else None
    if mode == "allow":
        yield violation(f"{ann_path}[{INGRESS_ON_UNAUTH}]", on_unauth,
                        f"{where}, and `allow` forwards requests without a session to the backend "
                        "anonymously, so the authentication is optional", INGRESS_FIX)
    elif mode is None and patch:
        yield violation(f"{ann_path}[{INGRESS_ON_UNAUTH}]", None,
                        f"{where}, and the patch does not set what happens to unauthenticated requests, "
                        "so the live value (possibly `allow`) decides", INGRESS_FIX)


def _judge_nginx_ingress(annotations: dict, ann_path: str, cls: Any) -> Iterator[Finding]:
    def get(name: str) -> Any:
        return annotations.get(NGINX + name)

    values = {name: get(name) for name in ("auth-url", "auth-type", "auth-secret", "satisfy",
                                           "whitelist-source-range", "allowlist-source-range",
                                           "auth-tls-verify-client", "auth-tls-secret")}
    # The NGINX Inc. controller (also class "nginx") spells its own: nginx.org/basic-auth-secret,
    # and NGINX Plus JWT validation nginx.org/jwt-key.
    nginx_org = {name: annotations.get("nginx.org/" + name) for name in ("basic-auth-secret", "jwt-key")}
    for name, value in list(values.items()) + list(nginx_org.items()):
        if is_unknown(value):
            yield unknown(f"{ann_path}[{name}]", INGRESS_FIX)
            return
    auth_url = str(values["auth-url"] or "").strip()
    auth_type = str(values["auth-type"] or "").strip().lower()
    auth_secret = str(values["auth-secret"] or "").strip()
    # Client certificates count only when verification is `on`: `optional` and
    # `optional_no_ca` let requests without a certificate through.
    mutual_tls = (str(values["auth-tls-verify-client"] or "").strip().lower() == "on"
                  and bool(str(values["auth-tls-secret"] or "").strip()))
    authenticated = (bool(auth_url) or (auth_type in ("basic", "digest") and bool(auth_secret)) or mutual_tls
                     or any(str(v or "").strip() for v in nginx_org.values()))
    ranges_key = "allowlist-source-range" if values["allowlist-source-range"] is not None else "whitelist-source-range"
    private = _private_ranges(values[ranges_key])
    satisfy_any = str(values["satisfy"] or "").strip().lower() == "any"
    controller = (f"the {show(cls)} ingress controller's exposure is not visible to the pack (list the "
                  "class in internalIngressClasses if it is internal)")
    if satisfy_any and private is False:
        yield violation(f"{ann_path}[{NGINX}satisfy]", values["satisfy"],
                        f"{controller}, and with `satisfy: any` a client on the {ranges_key} list "
                        "needs no credentials, and that list admits internet addresses", INGRESS_FIX)
        return
    if authenticated or private is True:
        return
    if auth_type and not auth_secret and not auth_url:
        why = f"auth-type {show(values['auth-type'])} without auth-secret authenticates nobody"
        path = f"{ann_path}[{NGINX}auth-secret]"
    else:
        why = "no auth-url or auth-type with auth-secret is set"
        path = f"{ann_path}[{NGINX}auth-url]"
    yield violation(path, None, f"{controller}, and {why}", INGRESS_FIX, rendered="not set")


def _check_ingress_like(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    # A stack rule so that an Ingress is judged by the IngressClass (and its parameters)
    # it names, wherever in the program that class is declared.
    classes = IngressClasses.of(kubernetes_objects(stack))
    for res in stack.of_type(*INGRESS_KINDS):
        if not is_object(res.type):
            continue
        for finding in _per_object(res, lambda token, obj: ingress_like_findings(token, obj, config, classes)):
            yield res.urn, finding


def ingress_like_findings(token: str, props: dict, config: dict,
                          classes: IngressClasses = _NO_CLASSES) -> Iterator[Finding]:
    group, kind = _base_kind(token)
    patch = is_patch(token)
    if kind == "Ingress" and group in ("networking.k8s.io", "extensions"):
        yield from judge_ingress(metadata_map(props, "annotations") if "metadata" in props or not patch else {},
                                 props.get("spec") if props.get("spec") is not None else {},
                                 config, patch=patch, classes=classes)
    elif kind == "IngressClassParams" and group == "elbv2.k8s.aws":
        yield from _scheme_field(props, "spec.scheme", "it makes every Ingress of the class internet-facing, "
                                 "whatever the Ingress says and without any authentication")
    elif kind == "LoadBalancerConfiguration" and group == "gateway.k8s.aws":
        yield from _scheme_field(props, "spec.scheme", "every Gateway using this configuration gets an "
                                 "internet-facing load balancer, and the Gateway API has no authentication")
    elif group in ("serving.knative.dev", "serving.kserve.io") and kind in (
            "Service", "Route", "InferenceService", "InferenceGraph", "LLMInferenceService"):
        yield from _judge_visibility(props, group, kind, patch)


def _scheme_field(props: dict, path: str, why: str) -> Iterator[Finding]:
    scheme = as_dict(props.get("spec")).get("scheme") if not is_unknown(props.get("spec")) else props.get("spec")
    if is_unknown(scheme):
        yield unknown(path, "set spec.scheme: internal")
    elif scheme is not None and str(scheme).strip().lower() == "internet-facing":
        yield violation(path, scheme, why, "set spec.scheme: internal")


def _visibility_labels(props: dict, group: str, kind: str) -> Any:
    """The labels that must all say cluster-local, or an unknown when the mode is computed."""
    if group == "serving.knative.dev":
        return (KNATIVE_VISIBILITY,)
    if kind == "LLMInferenceService":
        return (KSERVE_VISIBILITY,)
    annotations = metadata_map(props, "annotations")
    mode = annotations if is_unknown(annotations) else as_dict(annotations).get(KSERVE_DEPLOYMENT_MODE)
    if is_unknown(mode):
        return mode
    # No (or an unheard-of) mode: the cluster default decides, so both labels must agree.
    return KSERVE_MODE_LABELS.get(str(mode or "").strip().lower(), (KSERVE_VISIBILITY, KNATIVE_VISIBILITY))


def _judge_visibility(props: dict, group: str, kind: str, patch: bool) -> Iterator[Finding]:
    required = _visibility_labels(props, group, kind)
    if is_unknown(required):
        yield unknown(f"metadata.annotations[{KSERVE_DEPLOYMENT_MODE}]",
                      "declare the deployment mode and its visibility label so they are known at preview")
        return
    labels = metadata_map(props, "labels")
    fix = ("label the object " + " and ".join(f"{label}: cluster-local" for label in required)
           + " and reach it through the authenticated gateway")
    if is_unknown(labels):
        yield unknown("metadata.labels", fix)
        return
    for label in required:
        yield from _judge_visibility_label(labels, label, kind, patch, fix)


def _judge_visibility_label(labels: Any, label: str, kind: str, patch: bool, fix: str) -> Iterator[Finding]:
    value = as_dict(labels).get(label)
    if is_unknown(value):
        yield unknown(f"metadata.labels[{label}]", fix)
    elif patch and value is None:
        return  # the patch does not change the visibility
    elif value is None or str(value).strip().lower() != "cluster-local":
        yield violation(f"metadata.labels[{label}]", value,
                        f"a {kind} is published on the cluster's external ingress gateway unless it is "
                        "cluster-local, and that route authenticates nobody", fix)


INGRESS_KINDS = INGRESS_TOKENS + ("kubernetes:elbv2.k8s.aws/v1beta1:IngressClassParams",
                                  "kubernetes:gateway.k8s.aws/v1beta1:LoadBalancerConfiguration") + SERVING_TOKENS + (
    "kubernetes:networking.k8s.io/*:Ingress*", "kubernetes:extensions/*:Ingress*",
    "kubernetes:elbv2.k8s.aws/*:IngressClassParams*", "kubernetes:gateway.k8s.aws/*:LoadBalancerConfiguration*",
    "kubernetes:serving.knative.dev/*", "kubernetes:serving.kserve.io/*")


K8S_INGRESS_INTERNAL = stack_policy(
    name="k8s-ingress-internal",
    family=FAMILY_EXPOSURE,
    description="Kubernetes Ingresses (and their Patches), judged by the controller and parameters of "
                "the IngressClass they name, are internal unless the edge authenticates "
                "every request: ALB auth-type cognito/oidc without auth-on-unauthenticated-request "
                "allow; ingress-nginx auth-url or basic/digest with auth-secret, never `satisfy: any` "
                "with an internet allow-list; other classes only when listed as internal. ALB "
                "IngressClassParams and Gateway LoadBalancerConfigurations are internal; Knative and "
                "KServe services are cluster-local by the label their deployment mode reads "
                "(both labels when the mode is left to the cluster default).",
    resource_types=INGRESS_KINDS,
    check=_check_ingress_like,
    config_schema={"internalIngressClasses": INGRESS_CLASSES_SCHEMA},
    remediation="Keep Ingresses internal; route public traffic through the API gateway.",
)


# ---- the stack: inline manifests and the Gateway API ------------------------------------

MANIFEST_FIX = ("declare the objects so they are known at preview, with ClusterIP Services, internal "
                "load balancer schemes and no host networking")
GATEWAY_GROUP = "gateway.networking.k8s.io"
ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
LATTICE_CLASS = "amazon-vpc-lattice"
LBC_GATEWAY_CONTROLLERS = ("gateway.k8s.aws/alb", "gateway.k8s.aws/nlb")


def manifest_objects(res: Resource) -> Iterator[tuple[str, Any]]:
    """(path, object) for every object a manifest component declares inline; an input that
    is unknown during preview yields the unknown sentinel, unreadable YAML "unreadable"."""
    documents = res.get("yaml")
    if is_unknown(documents):
        yield "yaml", documents
    else:
        for index, text in enumerate(as_list(documents)):
            path = f"yaml[{index}]" if isinstance(documents, list) else "yaml"
            if is_unknown(text):
                yield path, text
                continue
            try:
                parsed = [d for d in yaml.safe_load_all(text) if d is not None] if isinstance(text, str) else []
            except yaml.YAMLError:
                yield path, "unreadable"
                continue
            for number, document in enumerate(parsed):
                yield from _expand_lists(f"{path}.documents[{number}]", document)
    objs = res.get("objs")
    if is_unknown(objs):
        yield "objs", objs
        return
    for index, obj in enumerate(as_list(objs)):
        yield from _expand_lists(f"objs[{index}]", obj)


def _expand_lists(path: str, document: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if isinstance(document, dict) and str(document.get("kind", "")).endswith("List") and depth < 4:
        items = document.get("items")
        if is_unknown(items):
            yield f"{path}.items", items
            return
        for index, item in enumerate(as_list(items)):
            yield from _expand_lists(f"{path}.items[{index}]", item, depth + 1)
    else:
        yield path, document


def object_findings(token: str, obj: dict, config: dict,
                    classes: IngressClasses = _NO_CLASSES) -> Iterator[Finding]:
    """Every per-object Kubernetes exposure rule, for an object declared inline."""
    found = object_shapes(token, obj)
    yield from service_findings(token, obj, found)
    yield from host_findings(token, obj, found)
    yield from ingress_like_findings(token, obj, config, classes)


def _unreadable_source(res: StackResource) -> Optional[str]:
    """Why a manifest component's objects cannot be read from its inputs, if they cannot."""
    if res.type.startswith("kubernetes:kustomize"):
        return "a kustomization directory is rendered by the provider"
    for key in ("file", "files"):
        if res.props.get(key) is not None:
            return f"`{key}` names manifests on disk or at a URL that the pack does not read"
    if res.type.startswith("kubernetes:yaml:") and not res.props:
        return "the v1 component parses its manifests inside the program"
    return None


def manifest_component_findings(stack: Stack, res: StackResource, config: dict,
                                expanded: frozenset = frozenset(),
                                classes: IngressClasses = _NO_CLASSES) -> Iterator[Finding]:
    """Objects of a manifest component: judged as registered (when the provider expanded the
    component, its objects are resources of their own), else from its inline inputs."""
    if res.urn in expanded:
        return
    reason = _unreadable_source(res)
    if reason is not None:
        yield violation("file" if "file" in res.props else "objects", None,
                        f"{reason}, and none of its objects were registered, so the Services, pods and "
                        "Ingresses it declares cannot be judged",
                        "declare the objects inline (yaml/objs of kubernetes.yaml.v2.ConfigGroup) or as "
                        "typed resources", rendered="not visible to the policy")
    for path, obj in manifest_objects(res):
        if is_unknown(obj):
            yield unknown(path, MANIFEST_FIX, why="it may declare Services, Ingresses or pods this "
                          "guardrail must judge, and it is unknown during preview, so the guardrail "
                          "fails closed")
            continue
        if obj == "unreadable":
            yield violation(path, None, "it is not YAML the policy can read, so the objects it "
                            "declares cannot be judged", MANIFEST_FIX, rendered="unreadable")
            continue
        if not isinstance(obj, dict):
            continue
        if is_unknown(obj.get("apiVersion")) or is_unknown(obj.get("kind")):
            yield unknown(f"{path}.kind", MANIFEST_FIX)
            continue
        for finding in object_findings(object_type(obj), obj, config, classes):
            yield dataclasses.replace(finding, path=f"{path}.{finding.path}")


@dataclasses.dataclass
class _K8sObject:
    urn: str
    token: str
    props: dict
    path: str  # "" for a registered resource, the object's path inside a component otherwise

    @property
    def name(self) -> str:
        return str(as_dict(self.props.get("metadata")).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(as_dict(self.props.get("metadata")).get("namespace") or "default")


def kubernetes_objects(stack: Stack) -> list[_K8sObject]:
    """Every Kubernetes object of the stack: registered ones and those declared inline."""
    found = []
    expanded = {r.parent for r in stack.resources if r.parent}
    for res in stack.resources:
        if is_object(res.type):
            found.append(_K8sObject(res.urn, res.type, res.props, ""))
        elif res.type in MANIFEST_TYPES and res.urn not in expanded:  # else its objects are registered
            for path, obj in manifest_objects(res):
                if isinstance(obj, dict) and not is_unknown(obj.get("kind")):
                    found.append(_K8sObject(res.urn, object_type(obj), obj, path))
    return found


def gateway_findings(objects: list[_K8sObject], config: dict) -> Iterator[tuple[str, Finding]]:
    internal_classes = {str(c) for c in config.get("internalIngressClasses") or []}
    classes = {o.name: o for o in objects if parse_type(o.token)[0] == GATEWAY_GROUP
               and parse_type(o.token)[2] == "GatewayClass"}
    lb_configs = {(o.namespace, o.name): o for o in objects
                  if parse_type(o.token)[0] == "gateway.k8s.aws" and parse_type(o.token)[2] == "LoadBalancerConfiguration"}
    gateways = {}
    for obj in objects:
        group, _, kind = parse_type(obj.token)
        if group == GATEWAY_GROUP and kind == "Gateway":
            gateways[(obj.namespace, obj.name)] = obj
            for finding in judge_gateway(obj, classes, internal_classes, lb_configs):
                yield obj.urn, _at(obj, finding)
    for obj in objects:
        group, _, kind = parse_type(obj.token)
        if group == GATEWAY_GROUP and kind in ROUTE_KINDS:
            for finding in judge_route(obj, gateways, config):
                yield obj.urn, _at(obj, finding)


def _at(obj: _K8sObject, finding: Finding) -> Finding:
    return dataclasses.replace(finding, path=f"{obj.path}.{finding.path}") if obj.path else finding


GATEWAY_FIX = (f"annotate the generated load balancer internal through spec.infrastructure.annotations "
               f"({SCHEME}: internal), use the AWS Load Balancer Controller's gateway classes with an "
               "internal LoadBalancerConfiguration, or list the class in internalIngressClasses")


def judge_gateway(obj: _K8sObject, classes: dict, internal_classes: set,
                  lb_configs: Optional[dict] = None) -> Iterator[Finding]:
    spec = obj.props.get("spec")
    if is_unknown(spec):
        yield unknown("spec", GATEWAY_FIX)
        return
    spec = as_dict(spec)
    cls = spec.get("gatewayClassName")
    if is_unknown(cls):
        yield unknown("spec.gatewayClassName", GATEWAY_FIX)
        return
    if cls == LATTICE_CLASS or str(cls) in internal_classes:
        return  # VPC Lattice service networks are reachable only from associated VPCs
    infrastructure = spec.get("infrastructure")
    if is_unknown(infrastructure):
        yield unknown("spec.infrastructure", GATEWAY_FIX)
        return
    infrastructure = as_dict(infrastructure)
    annotations = infrastructure.get("annotations")
    if is_unknown(annotations):
        yield unknown("spec.infrastructure.annotations", GATEWAY_FIX)
        return
    scheme = as_dict(annotations).get(SCHEME)
    if is_unknown(scheme):
        yield unknown(f"spec.infrastructure.annotations[{SCHEME}]", GATEWAY_FIX)
        return
    if scheme is not None and str(scheme).strip().lower() == "internal":
        return
    if scheme is None:
        params = infrastructure.get("parametersRef")
        gateway_class = classes.get(str(cls))
        class_spec = as_dict(gateway_class.props.get("spec")) if gateway_class else {}
        controller = class_spec.get("controllerName")
        if is_unknown(params) or is_unknown(class_spec.get("parametersRef")):
            yield unknown("spec.infrastructure.parametersRef", GATEWAY_FIX)
            return
        params = as_dict(params)
        if str(params.get("kind", "")) == "LoadBalancerConfiguration" or controller in LBC_GATEWAY_CONTROLLERS:
            yield from _lbc_gateway_scheme(obj, params, as_dict(class_spec.get("parametersRef")),
                                           lb_configs or {})
            return
    yield violation("spec.gatewayClassName", cls,
                    "a Gateway gets a load balancer from its class's controller, internet-facing by "
                    "default for most implementations (and here not declared internal), and the Gateway "
                    "API authenticates nobody", GATEWAY_FIX)


def _lbc_gateway_scheme(gateway: _K8sObject, own_ref: dict, class_ref: dict,
                        lb_configs: dict) -> Iterator[Finding]:
    """A Gateway of the AWS Load Balancer Controller: its scheme merges the GatewayClass's and
    the Gateway's LoadBalancerConfiguration (class wins unless the class's config says
    mergingMode prefer-gateway); internal when neither sets one."""
    def config_of(ref: dict, default_namespace: str) -> tuple[bool, Optional[_K8sObject]]:
        if str(ref.get("kind", "")) != "LoadBalancerConfiguration":
            return False, None
        key = (str(ref.get("namespace") or default_namespace), str(ref.get("name")))
        return True, lb_configs.get(key)

    schemes = []
    merging = "prefer-gateway-class"
    for where, ref, namespace in (("GatewayClass", class_ref, "default"),
                                  ("Gateway", own_ref, gateway.namespace)):
        referenced, found = config_of(ref, namespace)
        if not referenced:
            continue
        if found is None:
            yield violation("spec.infrastructure.parametersRef" if where == "Gateway" else "spec.gatewayClassName",
                            ref.get("name"), f"the {where}'s LoadBalancerConfiguration is not declared in this "
                            "program, so whether the load balancer is internet-facing cannot be judged",
                            GATEWAY_FIX)
            return
        spec = as_dict(found.props.get("spec"))
        if where == "GatewayClass" and spec.get("mergingMode") == "prefer-gateway":
            merging = "prefer-gateway"
        schemes.append((where, spec.get("scheme")))
    ordered = sorted(schemes, key=lambda item: (item[0] == "Gateway") == (merging == "prefer-gateway"),
                     reverse=True)
    for where, scheme in ordered:
        if is_unknown(scheme):
            yield unknown("spec.infrastructure.parametersRef", GATEWAY_FIX)
            return
        if scheme is not None:
            if str(scheme).strip().lower() == "internet-facing":
                yield violation("spec.infrastructure.parametersRef", scheme,
                                f"the {where}'s LoadBalancerConfiguration makes this Gateway's load balancer "
                                "internet-facing, and the Gateway API authenticates nobody", GATEWAY_FIX)
            return


def judge_route(obj: _K8sObject, gateways: dict, config: dict) -> Iterator[Finding]:
    spec = obj.props.get("spec")
    fix = ("attach the route to a Gateway declared in this program that is internal, or list that "
           "gateway's class in internalIngressClasses")
    refs = as_dict(spec).get("parentRefs") if not is_unknown(spec) else spec
    if is_unknown(refs):
        yield unknown("spec.parentRefs", fix)
        return
    for index, ref in enumerate(as_list(refs)):
        path = f"spec.parentRefs[{index}]"
        if is_unknown(ref):
            yield unknown(path, fix)
            continue
        ref = as_dict(ref)
        kind = ref.get("kind", "Gateway")
        group = ref.get("group", GATEWAY_GROUP)
        if kind != "Gateway" or group != GATEWAY_GROUP:
            continue  # a mesh route (GAMMA: parent is a Service) is east-west, not an entry point
        name, namespace = ref.get("name"), ref.get("namespace", obj.namespace)
        if is_unknown(name) or is_unknown(namespace):
            yield unknown(path, fix)
            continue
        if (str(namespace), str(name)) in gateways:
            continue  # the gateway is judged on its own
        yield violation(f"{path}.name", name,
                        f"the route publishes its backends on Gateway {namespace}/{name}, which is not "
                        "declared in this program, so whether it is internet-facing cannot be judged",
                        fix)


def _check_entry_points(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    expanded = frozenset(r.parent for r in stack.resources if r.parent)
    objects = kubernetes_objects(stack)
    classes = IngressClasses.of(objects)
    for res in stack.of_type(*MANIFEST_TYPES):
        for finding in manifest_component_findings(stack, res, config, expanded, classes):
            yield res.urn, finding
    yield from gateway_findings(objects, config)


K8S_ENTRY_POINTS = stack_policy(
    name="k8s-entry-points",
    family=FAMILY_EXPOSURE,
    description="Kubernetes objects a single resource does not show: objects declared inline in "
                "yaml ConfigGroup/ConfigFile components (and List kinds) pass every Kubernetes "
                "exposure rule, manifests the pack cannot read fail closed unless the provider "
                "registered their objects; Gateway API gateways are internal and routes attach only "
                "to gateways judged here.",
    resource_types=MANIFEST_TYPES + GATEWAY_API_TOKENS + ("kubernetes:gateway.networking.k8s.io/*",),
    check=_check_entry_points,
    config_schema={"internalIngressClasses": {
        **INGRESS_CLASSES_SCHEMA,
        "description": "Keep equal to k8s-ingress-internal.internalIngressClasses.",
    }},
    remediation="Declare Kubernetes objects inline or as typed resources, keep them internal, and "
                "attach routes to internal gateways.",
)

POLICIES = [K8S_SERVICE_INTERNAL, K8S_INGRESS_INTERNAL, K8S_NO_HOST_NETWORK, K8S_ENTRY_POINTS]
