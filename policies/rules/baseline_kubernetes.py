"""Family 3, Kubernetes: default-deny where model servers run, NetworkPolicies that admit
pods rather than whole namespaces to a model port, and container UIDs of 10000 or above.

A namespace is known by its literal name, or, when the name is computed (an auto-named
Namespace resource), by the Namespace resource the object's metadata was computed from.
Anchors: Kubernetes docs "Network Policies" (default deny: an empty podSelector with the
Ingress policy type and no ingress rules); Checkov CKV_K8S_40 and the NSA/CISA Kubernetes
hardening guide (run as a UID >= 10000, so no container identity is a host user).
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Optional

from ._framework import (
    FAMILY_BASELINE, Finding, Resource, Stack, StackResource, cannot_check, resource_policy, stack_policy,
    violation,
)
from ._wire import admits_internet, as_dict, as_list, as_number, is_unknown
from .workloads import POD_TEMPLATE_TYPES, PodSpec, containers, kubernetes_servings, pod_specs

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
DEFAULT_NAMESPACE = "default"


def namespace_of(res: StackResource) -> Any:
    """A literal namespace name, ("resource", urn) of the Namespace it was computed from,
    or the unknown sentinel."""
    namespace = as_dict(res.props.get("metadata")).get("namespace") \
        if not is_unknown(res.props.get("metadata")) else res.props.get("metadata")
    if isinstance(namespace, str) and not is_unknown(namespace):
        return namespace
    for urn in res.property_dependencies.get("metadata", []):
        parts = urn.split("::")
        if len(parts) >= 3 and parts[-2].endswith(NAMESPACE):
            return ("resource", urn)
    if namespace is None:
        return DEFAULT_NAMESPACE
    return namespace  # unknown


def _namespace_key(namespace: Any) -> Any:
    # Names and ("resource", urn) pairs hash; anything odd a program wrote is keyed by its repr.
    try:
        hash(namespace)
        return namespace
    except TypeError:
        return repr(namespace)


def _by_namespace(items: list, namespace: Any) -> tuple[dict, bool]:
    """Items grouped by their known namespace (one pass, so stack rules stay linear in the
    number of resources), and whether any item's namespace is unknown."""
    grouped: dict = {}
    unknown_seen = False
    for item in items:
        key = namespace(item)
        if is_unknown(key):
            unknown_seen = True
            continue
        grouped.setdefault(_namespace_key(key), []).append(item)
    return grouped, unknown_seen


def _show_namespace(namespace: Any, stack: Stack) -> str:
    if isinstance(namespace, tuple):
        res = stack.get(namespace[1])
        return f"the namespace {res.name if res else namespace[1]}"
    return f"namespace {namespace}"


# ---- selectors ------------------------------------------------------------------------------

def selector_matches(selector: Any, labels: Any) -> Optional[bool]:
    """Whether a LabelSelector selects pods with `labels`; None when either is unknown."""
    if is_unknown(selector) or is_unknown(labels):
        return None
    selector = as_dict(selector)
    labels = as_dict(labels)
    match_labels = selector.get("matchLabels")
    if is_unknown(match_labels):
        return None
    for key, value in as_dict(match_labels).items():
        if is_unknown(value) or is_unknown(labels.get(key)):
            return None
        if labels.get(key) != value:
            return False
    expressions = selector.get("matchExpressions")
    if is_unknown(expressions):
        return None
    for expression in as_list(expressions):
        expression = as_dict(expression)
        key, operator = expression.get("key"), str(expression.get("operator", ""))
        values = as_list(expression.get("values"))
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def selects_everything(selector: Any) -> bool:
    if is_unknown(selector):
        return False
    selector = as_dict(selector)
    return not as_dict(selector.get("matchLabels")) and not as_list(selector.get("matchExpressions"))


# ---- model servers in the stack -------------------------------------------------------------

class ModelPods:
    def __init__(self, owner: StackResource, pod: PodSpec, ports: list):
        self.owner = owner
        self.pod = pod
        self.ports = ports  # containerPort numbers and names of the serving containers; None if unknown


# Model servers other than the runtimes the hygiene family reads flags of (vLLM, TGI,
# Ollama): a namespace running SGLang (the engine DeepSeek recommends for V3/R1), Triton,
# llama.cpp, LMDeploy, TensorRT-LLM, NIM or an embeddings server exposes the same kind of
# unauthenticated inference routes, so Family 3 guards it the same way.
_OTHER_SERVER_IMAGE = re.compile(
    r"(^|/)(sglang|tritonserver|llama\.cpp|lmdeploy|text-embeddings-inference|localai|tensorrt[-_]?llm|"
    r"huggingfaceserver|xinference)$|^nvcr\.io/nim/")
_OTHER_SERVER_COMMAND = re.compile(
    r"(^|[\s/\"'])(sglang\.launch_server|sglang\s+serve|tritonserver|llama-server|lmdeploy\s+serve|"
    r"text-embeddings-router|trtllm-serve|local-ai)\b")


def _image_repository(image: Any) -> str:
    if not isinstance(image, str) or is_unknown(image):
        return ""
    name = image.strip().lower().split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _other_model_servers(pod: PodSpec) -> list[str]:
    """Paths of containers running a model server the runtime detector does not know."""
    found = []
    for path, container in containers(pod, include_init=False):
        if not isinstance(container, dict):
            continue
        words = [w for w in as_list(container.get("command")) + as_list(container.get("args"))
                 if isinstance(w, str) and not is_unknown(w)]
        if _OTHER_SERVER_IMAGE.search(_image_repository(container.get("image"))) \
                or _OTHER_SERVER_COMMAND.search(" ".join(words)):
            found.append(path)
    return found


def model_pods(stack: Stack) -> list[ModelPods]:
    found = []
    for res in stack.of_type(*POD_TEMPLATE_TYPES):
        by_pod: dict[str, tuple[PodSpec, list]] = {}
        servings = [(pod, serving.where) for pod, serving in kubernetes_servings(res.type, res.props)]
        known = {where for _pod, where in servings}
        for pod in pod_specs(res.type, res.props):
            if isinstance(pod.spec, dict):
                servings += [(pod, where) for where in _other_model_servers(pod) if where not in known]
        for pod, where in servings:
            entry = by_pod.setdefault(pod.path, (pod, []))
            container = _container_at(pod, where)
            ports = as_dict(container).get("ports")
            if is_unknown(ports) or not ports:
                entry[1].append(None)
            for port in as_list(ports):
                port = as_dict(port)
                entry[1].extend(v for v in (port.get("containerPort"), port.get("name")) if v is not None)
        for pod, ports in by_pod.values():
            found.append(ModelPods(res, pod, ports))
        if not by_pod and res.type in INFERENCE_SERVICES:
            found.append(_inference_service(res))
    return found


# KServe resources are model servers whatever runtime they name (its pods come from a
# ServingRuntime the program may not declare). Their pods carry the label
# serving.kserve.io/inferenceservice=<name> (kserve pkg/constants: InferenceServicePodLabelKey).
INFERENCE_SERVICES = ("kubernetes:serving.kserve.io/v1beta1:InferenceService",
                      "kubernetes:serving.kserve.io/v1alpha1:LLMInferenceService")


def _inference_service(res: StackResource) -> ModelPods:
    name = as_dict(res.props.get("metadata")).get("name") if not is_unknown(res.props.get("metadata")) else None
    # An auto-named service's label value is not known here: only policies selecting every pod
    # of the namespace are then taken to select it.
    labels = {"serving.kserve.io/inferenceservice": name} if isinstance(name, str) and not is_unknown(name) \
        else {}
    return ModelPods(res, PodSpec("spec", {}, labels), [None])


def _container_at(pod: PodSpec, where: str) -> Any:
    for path, container in containers(pod, include_init=False):
        if path == where:
            return container
    return None


# ---- default deny ---------------------------------------------------------------------------

def _is_default_deny_ingress(policy: StackResource) -> Optional[bool]:
    spec = policy.props.get("spec")
    if is_unknown(spec):
        return None
    spec = as_dict(spec)
    selector = spec.get("podSelector")
    if is_unknown(selector) or is_unknown(spec.get("policyTypes")) or is_unknown(spec.get("ingress")):
        return None
    types = [str(t) for t in as_list(spec.get("policyTypes"))] or ["Ingress"]
    return selects_everything(selector) and "Ingress" in types and not as_list(spec.get("ingress"))


def _check_default_deny(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    policies, policy_namespace_unknown = _by_namespace(stack.of_type(NETWORK_POLICY), namespace_of)
    reported: set = set()
    for model in model_pods(stack):
        namespace = namespace_of(model.owner)
        if is_unknown(namespace):
            yield model.owner.urn, cannot_check("metadata.namespace")
            continue
        key = _namespace_key(namespace)
        if key in reported:
            continue
        verdicts = [_is_default_deny_ingress(p) for p in policies.get(key, [])]
        if any(v is True for v in verdicts):
            continue
        reported.add(key)
        if any(v is None for v in verdicts) or policy_namespace_unknown:
            yield model.owner.urn, cannot_check(
                "NetworkPolicies of its namespace", "are unknown during preview, so a default deny")
            continue
        yield model.owner.urn, violation(
            "NetworkPolicies of its namespace", None,
            f"{_show_namespace(namespace, stack)} runs a model server but has no default-deny "
            "NetworkPolicy, so any pod in the cluster (and anything that compromises one) can call the "
            "model server's open routes (/metrics, /tokenize, /pause, ...)",
            "add a NetworkPolicy in that namespace with spec {podSelector: {}, policyTypes: [Ingress, "
            "Egress]} and no rules, then allow only the load balancer and the metrics scraper",
            rendered="without a default deny")


K8S_DEFAULT_DENY = stack_policy(
    name="k8s-default-deny",
    family=FAMILY_BASELINE,
    description="Every namespace that runs a model server (vLLM, TGI, Ollama, SGLang, Triton, llama.cpp "
                "and other inference servers, KServe InferenceServices) has a default-deny NetworkPolicy "
                "(empty podSelector, Ingress policy type, no ingress rules).",
    resource_types=(NETWORK_POLICY, NAMESPACE) + POD_TEMPLATE_TYPES,
    check=_check_default_deny,
    remediation="Deny by default in model namespaces; allow named pods explicitly.",
)


# ---- namespace-wide peers to a model port ---------------------------------------------------

def _ports_overlap(rule_ports: Any, model_ports: list) -> bool:
    """Whether an ingress rule's ports reach one of the model container's ports (no ports
    listed means every port; unknown model ports count as reached)."""
    if is_unknown(rule_ports) or not as_list(rule_ports) or not model_ports or None in model_ports:
        return True
    numbers = {int(p) for p in model_ports if isinstance(p, (int, float)) and not isinstance(p, bool)}
    names = {p for p in model_ports if isinstance(p, str)}
    for port in as_list(rule_ports):
        value = as_dict(port).get("port")
        if value is None or is_unknown(value):
            return True  # every port of the protocol
        if isinstance(value, str):
            if value in names:
                return True
            continue
        low = as_number(value)
        high = as_number(as_dict(port).get("endPort"))
        if not isinstance(low, float):
            return True
        high = high if isinstance(high, float) else low
        if any(low <= number <= high for number in numbers):
            return True
    return False


def _check_namespace_peers(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    models_by_namespace, _ = _by_namespace(model_pods(stack), lambda model: namespace_of(model.owner))
    for policy in stack.of_type(NETWORK_POLICY):
        spec = policy.props.get("spec")
        if is_unknown(spec):
            yield policy.urn, cannot_check("spec")
            continue
        spec = as_dict(spec)
        namespace = namespace_of(policy)
        targets = []
        for model in [] if is_unknown(namespace) else models_by_namespace.get(_namespace_key(namespace), []):
            selected = selector_matches(spec.get("podSelector"), model.pod.labels)
            if selected is not False:
                targets.append(model)
        if not targets:
            continue
        ingress = spec.get("ingress")
        if is_unknown(ingress):
            yield policy.urn, cannot_check("spec.ingress")
            continue
        for rule_index, rule in enumerate(as_list(ingress)):
            rule = as_dict(rule)
            peers = rule.get("from")
            if is_unknown(peers):
                yield policy.urn, cannot_check(f"spec.ingress[{rule_index}].from")
                continue
            if not any(_ports_overlap(rule.get("ports"), m.ports) for m in targets):
                continue
            # An ingress rule without peers matches every source (NetworkPolicy API reference,
            # NetworkPolicyIngressRule.from: "If this field is empty or missing, this rule
            # matches all sources").
            if not as_list(peers):
                path = f"spec.ingress[{rule_index}].from"
                yield policy.urn, violation(
                    path, None,
                    f"a rule without peers admits every pod of every namespace and every address to the "
                    f"model server ({targets[0].owner.name})",
                    f"list the one client in {path}: a podSelector (with a namespaceSelector for another "
                    "namespace), and limit ports to the one it uses", rendered="empty (every source)")
                continue
            for peer_index, peer in enumerate(as_list(peers)):
                finding = _wide_peer(as_dict(peer), f"spec.ingress[{rule_index}].from[{peer_index}]",
                                     targets[0].owner.name)
                if finding is not None:
                    yield policy.urn, finding


def _wide_peer(peer: dict, path: str, model: str) -> Optional[Finding]:
    """A peer that admits more than named pods: a namespace selector whose pod selector is
    missing or empty (every pod of the namespaces), or an ipBlock with internet addresses."""
    if "namespaceSelector" in peer:
        pods = peer.get("podSelector")
        if is_unknown(pods):
            return cannot_check(f"{path}.podSelector")
        if pods is None or selects_everything(pods):
            return violation(
                path, peer,
                f"it admits every pod of the selected namespace(s) to the model server ({model}), not "
                "just the one client that needs it",
                f"add a podSelector that names the client to the same peer ({path}.podSelector: "
                "{matchLabels: {app.kubernetes.io/name: <client>}}), and limit ports to the one it uses")
    block = peer.get("ipBlock")
    if block is not None:
        cidr = block.get("cidr") if isinstance(block, dict) else block
        if is_unknown(cidr):
            return cannot_check(f"{path}.ipBlock.cidr")
        if isinstance(cidr, str) and admits_internet(cidr):
            return violation(
                f"{path}.ipBlock", block,
                f"it admits internet addresses to the model server ({model}): the policy no longer "
                "limits who can reach it once any route (a load balancer, a node port, a peering) exists",
                "admit the load balancer's private subnets (or its pods by podSelector), never 0.0.0.0/0 "
                "or public ranges")
    return None


K8S_NETWORK_POLICY_POD_SELECTED = stack_policy(
    name="k8s-network-policy-pod-selected",
    family=FAMILY_BASELINE,
    description="NetworkPolicies that select model server pods admit peers by pod selector: no "
                "namespaceSelector peer without a (non-empty) podSelector, no rule without peers, and no "
                "ipBlock with internet addresses reaches a model port.",
    resource_types=(NETWORK_POLICY,) + POD_TEMPLATE_TYPES,
    check=_check_namespace_peers,
    remediation="Pair every namespaceSelector with a podSelector in the same peer.",
)


# ---- UIDs -----------------------------------------------------------------------------------

DEFAULT_MIN_UID = 10000


def _check_uid(res: Resource, config: dict) -> Iterator[Finding]:
    minimum = int(config.get("minUid") or DEFAULT_MIN_UID)
    for pod in pod_specs(res.type, res.props):
        if is_unknown(pod.spec):
            yield cannot_check(pod.path)
            continue
        pod_context = pod.spec.get("securityContext")
        if is_unknown(pod_context):
            yield cannot_check(f"{pod.path}.securityContext")
            continue
        pod_uid = as_dict(pod_context).get("runAsUser")
        for path, container in containers(pod):
            if is_unknown(container):
                yield cannot_check(path)
                continue
            context = as_dict(container).get("securityContext")
            if is_unknown(context):
                yield cannot_check(f"{path}.securityContext")
                continue
            own = as_dict(context).get("runAsUser")
            uid, where = (own, f"{path}.securityContext.runAsUser") if own is not None \
                else (pod_uid, f"{pod.path}.securityContext.runAsUser")
            number = as_number(uid)
            if is_unknown(number):
                yield cannot_check(where)
            elif number is None:
                # runAsNonRoot only refuses UID 0: the image's USER (often 1000, the first
                # host user) decides, so an unset UID is no better than a low one.
                yield violation(f"{path}.securityContext.runAsUser", None,
                                "the image's USER decides (UID 0 or 1000 in most images, which match "
                                "root or the first user on the host)",
                                f"set securityContext.runAsUser (and runAsGroup) to {minimum} or above "
                                "on the pod or the container")
            elif number < minimum:
                yield violation(where, uid,
                                f"a UID below {minimum} can match a real user on the node (UID 1000 is "
                                "ec2-user on Amazon Linux), so a container escape lands as that user",
                                f"set runAsUser to {minimum} or above")


K8S_HIGH_UID = resource_policy(
    name="k8s-high-uid",
    family=FAMILY_BASELINE,
    description="Every container of every pod template runs as a UID of minUid (10000) or above, "
                "set on the container or the pod (runAsNonRoot alone leaves the image's UID).",
    resource_types=POD_TEMPLATE_TYPES,
    check=_check_uid,
    config_schema={"minUid": {"type": "integer", "minimum": 1, "default": DEFAULT_MIN_UID,
                              "description": "Lowest UID a container may run as."}},
    remediation="runAsUser >= 10000 on every pod or container.",
)


POLICIES = [K8S_DEFAULT_DENY, K8S_NETWORK_POLICY_POD_SELECTED, K8S_HIGH_UID]
