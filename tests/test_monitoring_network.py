"""The monitoring namespace behind a default deny, with exactly the connections the stack's own
configuration makes (issue 13), and Prometheus without its lifecycle API.

The connections are derived from what the program renders, not listed by hand: the Prometheus
release's scrape jobs (run against the stack's model pods and the charts' pods), its
Alertmanager targets and pod discovery, Grafana's data sources, the Alertmanager's SNS
receivers and every KEDA ScaledObject's Prometheus trigger. Each must pass the rendered
NetworkPolicies (tests/netpol.py evaluates them as the Kubernetes API defines them), and
connections nobody needs must not.
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Union
from urllib.parse import urlsplit

import pytest

from components.eks import addons, grafana, model_service, monitoring
from components.eks import network_policy as netpol_components
from tests.netpol import Address, Pod, policies_of, verdict
from tests.program_harness import check_program, record_main
from tests.prometheus_sd import scrape_targets
from tools import k8s_objects, stack_files

EKS_STACKS = [s for s in stack_files.committed_stacks()
              if stack_files.load(s).config["deepseek-serving:inventory"].get("platform") == "eks"]
RELEASE = "kubernetes:helm.sh/v3:Release"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LEADER_WORKER_SET = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
MONITORING = "monitoring"

# The pods the pinned charts run, with the labels and ports their templates give them, written
# out here rather than imported from the components, so a selector the components get wrong
# selects nothing and the flows below fail.
# prometheus-community/prometheus 27.19.0 templates/_helpers.tpl (server matchLabels, release
# `prometheus`), templates/deploy.yaml (containerPort 9090):
PROMETHEUS = Pod(MONITORING, {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": "prometheus",
                              "app.kubernetes.io/component": "server", "app.kubernetes.io/part-of": "prometheus"},
                 "prometheus-server", ports={9090: ""}, ip="10.255.1.1")
# prometheus-community/alertmanager 1.21.0 templates/statefulset.yaml (port `http` 9093):
ALERTMANAGER = Pod(MONITORING, {"app.kubernetes.io/name": "alertmanager", "app.kubernetes.io/instance": "alertmanager"},
                   "alertmanager-0", ports={9093: "http"}, ip="10.255.1.2")
# grafana-community/grafana 12.11.1 templates/_helpers.tpl selectorLabels (port `grafana` 3000):
GRAFANA = Pod(MONITORING, {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "grafana"},
              "grafana", ports={3000: "grafana"}, ip="10.255.1.3")
# kedacore/charts keda 2.17.2 templates/manager/deployment.yaml and metrics-server/deployment.yaml:
KEDA_OPERATOR = Pod("keda", {"app": "keda-operator", "name": "keda-operator", "app.kubernetes.io/name": "keda-operator",
                             "app.kubernetes.io/instance": "keda"}, "keda-operator", ip="10.255.2.1")
KEDA_METRICS_SERVER = Pod("keda", {"app": "keda-operator-metrics-apiserver",
                                   "app.kubernetes.io/name": "keda-operator-metrics-apiserver",
                                   "app.kubernetes.io/instance": "keda"}, "keda-metrics-apiserver", ip="10.255.2.2")
# NVIDIA dcgm-exporter chart (selector labels, container port `metrics` 9400, hostNetwork false):
DCGM = Pod("kube-system", {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": "dcgm-exporter"},
           "dcgm-exporter", ports={9400: "metrics"}, ip="10.255.3.1")
# CoreDNS, the EKS add-on (k8s-app=kube-dns, the kube-dns Service's selector):
COREDNS = Pod("kube-system", {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"}, "coredns",
              ports={53: "dns", 9153: "metrics"}, ip="10.255.3.2")
MONITORING_PODS = (PROMETHEUS, ALERTMANAGER, GRAFANA)
CHART_PODS = (*MONITORING_PODS, KEDA_OPERATOR, KEDA_METRICS_SERVER, DCGM, COREDNS)
# Services by DNS name -> (backing pod, service port -> target port). The Prometheus server's
# Service port is a value (server.service.servicePort); its target is 9090 in the chart.
SERVICE_PODS = {"prometheus-server.monitoring": PROMETHEUS, "alertmanager.monitoring": ALERTMANAGER}
POD_IDENTITY_AGENT = Address("169.254.170.23")
AWS_PUBLIC_ENDPOINT = Address("52.94.133.131")   # an address of AWS's public ranges (SNS, CloudWatch)
INTERNET = Address("198.51.100.7")
INSTANCE_METADATA = Address("169.254.169.254")


@dataclass(frozen=True)
class Flow:
    source: Pod
    destination: Union[Pod, Address]
    port: int
    why: str
    protocol: str = "TCP"


# ---- the stack as rendered ------------------------------------------------------------------

def _release_values(registrations: list, chart: str) -> dict:
    (release,) = [r for r in registrations if r.type == RELEASE and r.inputs["chart"] == chart]
    return release.inputs["values"]


def _pod_templates(spec: Any) -> Iterator[dict]:
    if isinstance(spec, dict):
        if "containers" in spec.get("spec", {}) and "metadata" in spec:
            yield spec
        for value in spec.values():
            yield from _pod_templates(value)


def model_pods(registrations: list) -> list[Pod]:
    pods = []
    for index, workload in enumerate(r for r in registrations if r.type in (DEPLOYMENT, LEADER_WORKER_SET)):
        for template in _pod_templates(workload.inputs["spec"]):
            ports = {int(p["containerPort"]): p.get("name", "") for c in template["spec"]["containers"]
                     for p in c.get("ports", [])}
            pods.append(Pod(workload.inputs["metadata"]["namespace"], template["metadata"].get("labels", {}),
                            workload.inputs["metadata"]["name"], template["metadata"].get("annotations", {}),
                            ports, ip=f"10.254.{index}.{len(pods) + 1}"))
    assert pods, "the stack runs no model pods"
    return pods


def _service_target(url: str, prometheus_values: dict) -> tuple[Pod, int]:
    """The pod and container port behind a cluster-local URL."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname.removesuffix(".cluster.local").removesuffix(".svc")
    assert host in SERVICE_PODS, f"{url}: no Service of that name is known to this test; add it to SERVICE_PODS"
    port = parts.port or 80
    if host == "prometheus-server.monitoring":
        assert port == prometheus_values["server"]["service"]["servicePort"], f"{url}: not the Service's port"
        return PROMETHEUS, 9090
    return SERVICE_PODS[host], port


def _api_server_addresses(registrations: list) -> list[Address]:
    (cluster,) = [r for r in registrations if r.type == "aws:eks/cluster:Cluster"]
    service_cidr = ipaddress.ip_network(cluster.inputs["kubernetesNetworkConfig"]["serviceIpv4Cidr"])
    (vpc,) = [r for r in registrations if r.type == "aws:ec2/vpc:Vpc"]
    # The `kubernetes` Service's ClusterIP, and a control-plane ENI in the cluster's subnets.
    return [Address(str(service_cidr[1])), Address(str(ipaddress.ip_network(vpc.inputs["cidrBlock"])[37]))]


def required_flows(registrations: list) -> list[Flow]:
    prometheus = _release_values(registrations, "prometheus")
    config = prometheus["serverFiles"]["prometheus.yml"]
    pods = [*model_pods(registrations), *CHART_PODS]
    flows: list[Flow] = []
    for job in config["scrape_configs"]:
        targets = scrape_targets(job, pods)
        assert targets, f"scrape job {job['job_name']} finds no target among the stack's pods"
        flows += [Flow(PROMETHEUS, pod, port, f"scrape job {job['job_name']}") for pod, port in targets]
        if job.get("kubernetes_sd_configs"):
            flows += [Flow(PROMETHEUS, api, 443, f"pod discovery of job {job['job_name']}")
                      for api in _api_server_addresses(registrations)]
    for alertmanagers in prometheus["server"].get("alertmanagers", []):
        for static in alertmanagers["static_configs"]:
            for target in static["targets"]:
                pod, port = _service_target(target, prometheus)
                flows.append(Flow(PROMETHEUS, pod, port, f"alerts to {target}"))
    for source in _release_values(registrations, "grafana")["datasources"]["datasources.yaml"]["datasources"]:
        if source["type"] == "prometheus":
            pod, port = _service_target(source["url"], prometheus)
            flows.append(Flow(GRAFANA, pod, port, f"Grafana data source {source['name']}"))
        elif source["type"] == "cloudwatch":
            flows += [Flow(GRAFANA, POD_IDENTITY_AGENT, 80, "CloudWatch data source credentials"),
                      Flow(GRAFANA, AWS_PUBLIC_ENDPOINT, 443, "CloudWatch data source")]
        else:
            raise AssertionError(f"data source type {source['type']}: say here where it connects")
    receivers = _release_values(registrations, "alertmanager")["config"]["receivers"]
    for receiver in receivers:
        assert set(receiver) <= {"name", "sns_configs"}, f"receiver {receiver['name']}: only SNS is traced here"
        if receiver.get("sns_configs"):
            flows += [Flow(ALERTMANAGER, POD_IDENTITY_AGENT, 80, "SNS credentials"),
                      Flow(ALERTMANAGER, AWS_PUBLIC_ENDPOINT, 443, "SNS publish")]
    scaled_objects = [r for r in registrations if r.type == SCALED_OBJECT]
    assert scaled_objects
    for scaled_object in scaled_objects:
        for trigger in scaled_object.inputs["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                pod, port = _service_target(trigger["metadata"]["serverAddress"], prometheus)
                flows.append(Flow(KEDA_OPERATOR, pod, port, f"KEDA trigger of {scaled_object.name}"))
    for pod in MONITORING_PODS:
        flows += [Flow(pod, COREDNS, 53, "DNS", protocol) for protocol in ("UDP", "TCP")]
    return flows


def _denied(registrations: list) -> list[Flow]:
    """Connections nobody in the stack needs."""
    model = model_pods(registrations)[0]
    stranger = Pod("default", {"app": "anything"}, "stranger", ip="10.254.200.1")
    flows = [Flow(source, target, port, "not a client of the monitoring stack")
             for source in (model, stranger, KEDA_METRICS_SERVER)
             for target, port in ((PROMETHEUS, 9090), (GRAFANA, 3000), (ALERTMANAGER, 9093))]
    flows += [
        Flow(KEDA_OPERATOR, ALERTMANAGER, 9093, "KEDA never talks to Alertmanager"),
        Flow(GRAFANA, ALERTMANAGER, 9093, "Grafana cannot silence alerts"),
        Flow(ALERTMANAGER, PROMETHEUS, 9090, "Alertmanager does not query Prometheus"),
        Flow(GRAFANA, model, next(iter(model.ports)), "Grafana never calls a model"),
        Flow(ALERTMANAGER, model, next(iter(model.ports)), "Alertmanager never calls a model"),
        Flow(PROMETHEUS, INTERNET, 443, "Prometheus has no remote write"),
        Flow(PROMETHEUS, AWS_PUBLIC_ENDPOINT, 443, "Prometheus calls no AWS API"),
        Flow(PROMETHEUS, INSTANCE_METADATA, 80, "nothing reads the node's metadata"),
        Flow(GRAFANA, INSTANCE_METADATA, 80, "nothing reads the node's metadata"),
        Flow(GRAFANA, INTERNET, 80, "plain HTTP to the internet"),
        Flow(PROMETHEUS, DCGM, 5555, "only the exporter's metrics port"),
        Flow(PROMETHEUS, COREDNS, 9153, "CoreDNS is not scraped"),
    ]
    return flows


# ---- the flows, through the rendered policies -----------------------------------------------

def _check_flows(registrations: list) -> None:
    policies = policies_of(registrations)
    flows = required_flows(registrations)
    blocked = [why for flow in flows for ok, why in [verdict(policies, flow.source, flow.destination, flow.port,
                                                             flow.protocol)] if not ok]
    assert blocked == [], "\n".join(f"needed but blocked: {line}" for line in blocked)
    allowed = [f"{flow.why}: {why}" for flow in _denied(registrations)
               for ok, why in [verdict(policies, flow.source, flow.destination, flow.port, flow.protocol)] if ok]
    assert allowed == [], "\n".join(f"allowed but not needed: {line}" for line in allowed)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_connection_the_monitoring_stack_makes_passes_its_policies_and_no_other(stack):
    check_program(stack, lambda program, registrations: _check_flows(registrations))


@lru_cache(maxsize=None)
def settled_run(stack: str):
    stack_file = stack_files.load(stack)
    return record_main(stack=stack, config=stack_file.config, secret_keys=stack_file.secret_keys,
                       preview=False, region=stack_file.region)


def _monitoring_policies(registrations: list) -> dict[str, dict]:
    return {p.name: dict(p.spec) for p in policies_of(registrations) if p.namespace == MONITORING}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_monitoring_namespace_denies_by_default_in_both_directions(stack):
    policies = _monitoring_policies(settled_run(stack).registrations)
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Every other policy there selects named pods, never the whole namespace.
    for name, spec in policies.items():
        if name != "default-deny":
            assert spec["podSelector"]["matchLabels"], name


def test_a_stack_that_drops_a_policy_loses_the_connection_it_carried():
    # The check is only as good as its failures: without Grafana's egress, Grafana's data
    # sources are reported blocked.
    registrations = [r for r in settled_run("staging").registrations
                     if not (r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                             and r.inputs["metadata"]["name"] == "grafana-egress")]
    with pytest.raises(AssertionError, match="needed but blocked: monitoring/grafana -> "):
        _check_flows(registrations)


def test_a_scrape_target_on_a_new_port_is_blocked_until_the_policy_admits_it():
    registrations = copy.deepcopy(settled_run("staging").registrations)
    (prometheus,) = [r for r in registrations if r.type == RELEASE and r.inputs["chart"] == "prometheus"]
    job = prometheus.inputs["values"]["serverFiles"]["prometheus.yml"]["scrape_configs"][-1]
    job["relabel_configs"] = [{"source_labels": ["__meta_kubernetes_pod_label_k8s_app"], "action": "keep",
                               "regex": "kube-dns"}]
    with pytest.raises(AssertionError, match="needed but blocked: monitoring/prometheus-server -> kube-system/coredns:9153/TCP"):
        _check_flows(registrations)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_monitoring_policies_validate_against_the_kubernetes_schema(stack):
    run = settled_run(stack)
    version = stack_files.load(stack).config["deepseek-serving:inventory"]["eks"]["kubernetes_version"]
    results = [r for r in k8s_objects.validate_all(run.registrations, version)
               if r.obj.kind == "NetworkPolicy" and r.obj.namespace == MONITORING]
    assert len(results) == len(_monitoring_policies(run.registrations)) >= 7
    assert k8s_objects.failures(results) == []
    assert {r.status for r in results} == {"valid"}


# ---- the pieces ---------------------------------------------------------------------------

def test_the_api_server_is_reached_at_its_service_address_and_its_enis_on_443_only():
    rule = netpol_components.kubernetes_api_egress("172.20.0.0/16", "10.30.0.0/16")
    assert rule == {"to": [{"ipBlock": {"cidr": "172.20.0.1/32"}}, {"ipBlock": {"cidr": "10.30.0.0/16"}}],
                    "ports": [{"protocol": "TCP", "port": 443}]}
    assert netpol_components.kubernetes_service_ip("10.100.0.0/16") == "10.100.0.1"


def test_prometheus_scrapes_each_model_namespace_on_its_own_metrics_port_only():
    spec = addons.prometheus_egress_spec({"a": 8000, "b": 8080}, "172.20.0.0/16", "10.0.0.0/16")
    scrapes = [(rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                rule["ports"][0]["port"]) for rule in spec["egress"]
               if rule["to"][0].get("podSelector", {}).get("matchLabels") == {addons.PART_OF_LABEL: addons.PART_OF_VALUE}]
    assert scrapes == [("a", 8000), ("b", 8080)]


def test_the_model_namespaces_admit_the_same_prometheus_pods_the_monitoring_policies_select():
    assert model_service.PROMETHEUS_SERVER_LABELS == addons.PROMETHEUS_SERVER_LABELS
    assert all(PROMETHEUS.labels[k] == v for k, v in addons.PROMETHEUS_SERVER_LABELS.items())


def test_alertmanager_admits_only_the_prometheus_server():
    (rule,) = monitoring.alertmanager_network_policy()["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}},
                             "podSelector": {"matchLabels": addons.PROMETHEUS_SERVER_LABELS}}]
    assert grafana.grafana_network_policy()["ingress"] == []


# ---- Prometheus' lifecycle and admin APIs -------------------------------------------------

# prometheus-community/prometheus 27.19.0 values.yaml: the defaults the server's flags and the
# reloader sidecar come from (lists replace, maps merge, as Helm coalesces values).
CHART_DEFAULTS = {
    "configmapReload": {"reloadUrl": "", "prometheus": {"enabled": True}},
    "server": {"extraFlags": ["web.enable-lifecycle"], "extraArgs": {}, "defaultFlagsOverride": [],
               "configPath": "/etc/config/prometheus.yml", "retention": "15d", "prefixURL": "",
               "persistentVolume": {"mountPath": "/data"}},
}


def helm_merge(defaults: Any, overrides: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        merged = dict(defaults)
        for key, value in overrides.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = helm_merge(defaults.get(key), value)
        return merged
    return overrides


def rendered_server(values: dict) -> dict:
    """The server container's args and the reloader sidecar, as templates/deploy.yaml (and
    sts.yaml, which renders them the same way) writes them from `values`."""
    merged = helm_merge(CHART_DEFAULTS, values)
    server = merged["server"]
    if server["defaultFlagsOverride"]:
        args = list(server["defaultFlagsOverride"])
    else:
        args = [*([f"--storage.tsdb.retention.time={server['retention']}"] if server.get("retention") else []),
                f"--config.file={server['configPath']}",
                f"--storage.tsdb.path={server['persistentVolume']['mountPath']}",
                "--web.console.libraries=/etc/prometheus/console_libraries",
                "--web.console.templates=/etc/prometheus/consoles",
                *[f"--{flag}" for flag in server["extraFlags"]],
                *[f"--{key}={value}" if value else f"--{key}" for key, value in server["extraArgs"].items()]]
    reloader = None
    if merged["configmapReload"]["prometheus"]["enabled"]:
        reloader = merged["configmapReload"]["reloadUrl"] or f"http://127.0.0.1:9090{server['prefixURL']}/-/reload"
    return {"args": args, "reload_url": reloader}


def test_the_charts_own_defaults_would_turn_the_lifecycle_api_on():
    # What the values below have to override: without them the API is on.
    assert "--web.enable-lifecycle" in rendered_server({})["args"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_prometheus_runs_without_lifecycle_or_admin_api_and_reloads_its_own_files(stack):
    values = _release_values(settled_run(stack).registrations, "prometheus")
    server = rendered_server(values)
    flags = [arg.split("=", 1)[0] for arg in server["args"]]
    assert "--web.enable-lifecycle" not in flags and "--web.enable-admin-api" not in flags
    # No sidecar posting to /-/reload (it would get 403 without the lifecycle API): Prometheus
    # reloads configuration and rule files when their checksum changes.
    assert server["reload_url"] is None
    assert "--enable-feature=auto-reload-config" in server["args"]
    assert f"--config.auto-reload-interval={addons.CONFIG_RELOAD_INTERVAL}" in server["args"]
    # The rule files it reloads are the ones the configuration names.
    config = values["serverFiles"]["prometheus.yml"]
    assert {path.rsplit("/", 1)[1] for path in config["rule_files"]} <= set(values["serverFiles"])
