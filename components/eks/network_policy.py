"""NetworkPolicy building blocks for the cluster's own components (monitoring namespace).

Each component declares the policies of the connections it makes or serves, both ends of
each link in one place (Grafana's component admits Grafana to Prometheus and lets Grafana
out to it), over the monitoring namespace's default deny (components/eks/addons.py).
Policies are additive, so "who may reach Prometheus" can be several objects, each owned by
the client that needs it.

What the enforcing implementation does matters here: the VPC CNI's network policy agent
(enabled in components/eks/cluster.py) filters in eBPF on the pod's interface, before
kube-proxy translates a Service address:
- egress to a Service is judged on its ClusterIP; the agent's controller adds the ClusterIP of
  every Service whose selector matches an egress peer's podSelector, mapping the policy's
  container port to the Service port (aws/amazon-network-policy-controller-k8s
  pkg/resolvers/endpoints.go, getMatchingServiceClusterIPs). EKS asks that Service ports equal
  container ports (EKS user guide, "Limit Pod traffic with Kubernetes network policies",
  Considerations), which the Prometheus Service follows (9090 -> 9090);
- the `kubernetes` Service has no selector, so the API server is admitted by address: its
  ClusterIP (the first address of the service CIDR, before translation) and, for
  implementations that judge after translation (Calico, Cilium), the control plane's ENIs,
  which EKS places in the cluster's subnets: the VPC CIDR on 443. Checkov-style scanners flag
  a VPC-wide ipBlock; it is deliberate: the ENI addresses change when EKS replaces them
  (aws/aws-network-policy-agent#281), and the rule admits only TCP 443;
- traffic from the pod's own node (kubelet probes) is always allowed
  (aws/aws-network-policy-agent#65), so probes need no rule.
"""
from __future__ import annotations

import ipaddress
from typing import Sequence
from urllib.parse import urlsplit

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
SYSTEM_NAMESPACE = "kube-system"
# CoreDNS (EKS add-on) pods and the kube-dns Service's selector.
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}
DNS_PORTS = ({"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53})
# The EKS Pod Identity agent serves credentials on a link-local address (EKS user guide,
# "EKS Pod Identity agent": 169.254.170.23 port 80).
POD_IDENTITY_AGENT_CIDR = "169.254.170.23/32"
POD_IDENTITY_AGENT_PORT = 80
HTTPS = 443
# Not the internet: the VPC and other private ranges, link-local (IMDS), carrier-grade NAT.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")


def tcp(port: int) -> dict:
    return {"protocol": "TCP", "port": port}


def pods(namespace: str, labels: dict[str, str]) -> dict:
    """A peer: the pods with `labels` in `namespace` (never a whole namespace)."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
            "podSelector": {"matchLabels": dict(labels)}}


def default_deny() -> dict:
    """Nothing in or out for any pod of the namespace unless another policy allows it
    (Kubernetes docs, Network Policies: "Default deny all ingress and all egress traffic")."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def dns_egress() -> dict:
    return {"to": [pods(SYSTEM_NAMESPACE, KUBE_DNS_LABELS)], "ports": [dict(p) for p in DNS_PORTS]}


def pod_identity_egress() -> dict:
    return {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT_CIDR}}], "ports": [tcp(POD_IDENTITY_AGENT_PORT)]}


def kubernetes_service_ip(service_cidr: str) -> str:
    """The `kubernetes` Service's ClusterIP: the API server takes the service range's first
    address (kube-apiserver `--service-cluster-ip-range`)."""
    return str(ipaddress.ip_network(service_cidr)[1])


def kubernetes_api_egress(service_cidr: str, vpc_cidr: str) -> dict:
    """The API server on 443: its ClusterIP, and its ENIs in the VPC (see the module doc)."""
    return {"to": [{"ipBlock": {"cidr": f"{kubernetes_service_ip(service_cidr)}/32"}},
                   {"ipBlock": {"cidr": vpc_cidr}}],
            "ports": [tcp(HTTPS)]}


def aws_api_egress(vpc_cidr: str) -> dict:
    """AWS APIs on 443: interface endpoints in the VPC, or the public endpoints through the NAT.

    SNS and CloudWatch have no interface endpoint in this VPC (components/network.py) and no
    managed prefix list, so their public addresses cannot be named: any public address on
    443, never a private one other than the VPC's. The pods' Pod Identity roles, not this
    rule, decide what they may do there.
    """
    return {"to": [{"ipBlock": {"cidr": vpc_cidr}},
                   {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}],
            "ports": [tcp(HTTPS)]}


def ingress_policy(selected: dict[str, str], peers: Sequence[dict], ports: Sequence[dict]) -> dict:
    """Ingress to the `selected` pods from `peers` on `ports` only."""
    return {"podSelector": {"matchLabels": dict(selected)}, "policyTypes": ["Ingress"],
            "ingress": [{"from": list(peers), "ports": list(ports)}]}


def egress_policy(selected: dict[str, str], rules: Sequence[dict]) -> dict:
    return {"podSelector": {"matchLabels": dict(selected)}, "policyTypes": ["Egress"], "egress": list(rules)}


# Not link-local (IMDS, the Pod Identity agent): the ranges a collector in the VPC, or in a
# network routed to it, can have.
ROUTABLE_PRIVATE_RANGES = tuple(cidr for cidr in PRIVATE_RANGES if cidr != "169.254.0.0/16")


def collector_egress_rule(otlp_endpoint: str) -> dict:
    """Egress to the OTLP collector the runtimes export traces to (observability.tracing).

    Policies match addresses and labels, not URLs, so the peer follows from the URL's host:
    - a cluster Service name (`<service>.<namespace>.svc[.cluster.local]`): that namespace's
      pods, the agent adding the ClusterIPs of its Services (module docstring);
    - an IP address: that address;
    - any other name (a collector on a VPC host or load balancer): the private ranges, never
      link-local. A collector on the internet is reached through a relay in the VPC or the
      cluster (an ADOT collector), so model pods keep no path to public addresses.
    Only the collector's port is admitted."""
    parts = urlsplit(otlp_endpoint)
    host, port = parts.hostname or "", parts.port
    if port is None:
        raise ValueError(f"{otlp_endpoint}: the collector URL names no port")
    labels = host.split(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        peers = [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}]
    elif len(labels) >= 3 and (labels[2:] == ["svc"] or labels[2:] == ["svc", "cluster", "local"]):
        peers = [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: labels[1]}}}]
    else:
        peers = [{"ipBlock": {"cidr": cidr}} for cidr in ROUTABLE_PRIVATE_RANGES]
    return {"to": peers, "ports": [tcp(port)]}
