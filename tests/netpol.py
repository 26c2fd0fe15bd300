"""Whether Kubernetes NetworkPolicies let one endpoint reach another, as the API defines it.

Semantics (Kubernetes docs, "Network Policies", and the networking.k8s.io/v1 API reference):
- a pod is isolated for a direction when some policy of its namespace selects it and lists
  that direction in policyTypes (which defaults to Ingress, plus Egress when the policy has
  egress rules); an isolated pod allows only what some selecting policy's rules allow, and
  the policies add up;
- a connection needs the source's egress and the destination's ingress to allow it;
- a rule with no ports allows every port, with no peers every peer; a peer is an ipBlock
  (CIDR minus its exceptions), or pods chosen by namespaceSelector (absent: the policy's own
  namespace) and podSelector (absent: every pod of those namespaces); a port without a number
  is every port of its protocol, `endPort` makes a range, a named port is a container port's
  name on the destination.
Not modelled: the node's own traffic (always allowed) and Service translation, which the
callers resolve to pod ports themselves.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    name: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    # Container port number -> its name ("" when unnamed).
    ports: Mapping[int, str] = field(default_factory=dict)
    ip: str = "10.255.0.1"

    def describe(self) -> str:
        return f"{self.namespace}/{self.name or dict(self.labels)}"


@dataclass(frozen=True)
class Address:
    ip: str

    def describe(self) -> str:
        return self.ip


Endpoint = Union[Pod, Address]


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    spec: Mapping[str, Any]


def policies_of(registrations: Iterable[Any]) -> list[Policy]:
    return [Policy(r.inputs["metadata"].get("namespace", "default"), r.inputs["metadata"]["name"], r.inputs["spec"])
            for r in registrations if r.type == NETWORK_POLICY]


def selector_matches(selector: Optional[Mapping[str, Any]], labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
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


def _types(spec: Mapping[str, Any]) -> list[str]:
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _port_matches(rule_ports: Optional[list], port: int, protocol: str, destination: Endpoint) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        number = entry.get("port")
        if number is None:
            return True
        if isinstance(number, str):
            if isinstance(destination, Pod) and destination.ports.get(port) == number:
                return True
            continue
        low, high = int(number), int(entry.get("endPort", number))
        if low <= port <= high:
            return True
    return False


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        return (address in ipaddress.ip_network(block["cidr"])
                and not any(address in ipaddress.ip_network(e) for e in block.get("except") or []))
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selector_matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _direction_allows(policies: Iterable[Policy], pod: Pod, direction: str, other: Endpoint, port: int,
                      protocol: str, destination: Endpoint) -> tuple[bool, list[str]]:
    """Whether `pod`'s policies let the connection through in `direction`, and which ones did."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    isolating = [p for p in policies if p.namespace == pod.namespace
                 and selector_matches(p.spec.get("podSelector") or {}, pod.labels) and direction in _types(p.spec)]
    if not isolating:
        return True, ["(not isolated)"]
    allowing = []
    for policy in isolating:
        for rule in policy.spec.get(key) or []:
            peers = rule.get(peers_key)
            if (_port_matches(rule.get("ports"), port, protocol, destination)
                    and (not peers or any(_peer_matches(peer, policy.namespace, other) for peer in peers))):
                allowing.append(policy.name)
                break
    return bool(allowing), allowing


def verdict(policies: Iterable[Policy], source: Pod, destination: Endpoint, port: int,
            protocol: str = "TCP") -> tuple[bool, str]:
    """(allowed, why): the source's egress and, for a pod, the destination's ingress."""
    policies = list(policies)
    out_ok, out_by = _direction_allows(policies, source, "Egress", destination, port, protocol, destination)
    in_ok, in_by = (True, ["(an address)"])
    if isinstance(destination, Pod):
        in_ok, in_by = _direction_allows(policies, destination, "Ingress", source, port, protocol, destination)
    flow = f"{source.describe()} -> {destination.describe()}:{port}/{protocol}"
    return out_ok and in_ok, (f"{flow}: egress {'allowed by ' + ', '.join(out_by) if out_ok else 'DENIED'}; "
                              f"ingress {'allowed by ' + ', '.join(in_by) if in_ok else 'DENIED'}")
