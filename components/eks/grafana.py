"""EKS: Grafana in the cluster, with the runtime dashboards provisioned from ConfigMaps.

Why an in-cluster Grafana rather than Amazon Managed Grafana: the dashboards read the
cluster's own Prometheus (the one KEDA and the alert rules use), which has no endpoint
outside the cluster; a managed workspace would need that Prometheus exposed to it (a
managed Prometheus workspace and a second scrape pipeline, or a private data source
connection) and IAM Identity Center for its users. Here Grafana is a ClusterIP Service
that no NetworkPolicy admits anything to: the only way in is `kubectl port-forward` with the
cluster credentials that already guard everything else (docs/OPERATIONS.md).

Dashboards are code: components/eks/dashboards/<runtime>.json (vLLM, TGI, Ollama), checked
by tests/test_token_metrics.py against the metric names the runtimes export
(components/serving/metrics.py) and the recording rules (components/eks/monitoring.py).
They are mounted read-only from one ConfigMap through the chart's `dashboardsConfigMaps`
(no sidecar watching ConfigMaps cluster-wide, so Grafana needs no Kubernetes API access).
Only the dashboards of runtimes the inventory runs are provisioned.

Data sources: the cluster's Prometheus, and CloudWatch (read-only metrics through an EKS
Pod Identity role) for what no runtime exports: the Ollama dashboard's request path comes
from the gateway (latency, time to first byte, 429s) and the model's load balancer.

Chart: grafana-community `grafana` 12.11.1 = Grafana 13.2.0 (grafana-community/helm-charts
charts/grafana/Chart.yaml; the chart moved there from grafana/helm-charts in January 2026).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.config import Inventory
from components.eks import network_policy as netpol
from components.eks.addons import (MONITORING_NAMESPACE, PROMETHEUS_PORT, PROMETHEUS_SERVER_LABELS, PROMETHEUS_URL,
                                   ClusterAddons)
from components.eks.cluster import POOL_LABEL, SYSTEM_POOL, GpuCluster

GRAFANA_CHART = ("https://grafana-community.github.io/helm-charts", "grafana", "12.11.1")
GRAFANA = "grafana"
GRAFANA_PORT = 3000
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DASHBOARD_PROVIDER = "deepseek"
DASHBOARDS_CONFIGMAP = "grafana-dashboards-deepseek"
RUNTIMES = ("vllm", "tgi", "ollama")


def load_dashboard(runtime: str) -> dict:
    return json.loads((DASHBOARD_DIR / f"{runtime}.json").read_text(encoding="utf-8"))


def _set_variable(dashboard: dict, name: str, query: str) -> None:
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == name:
            variable["query"] = query
            return
    raise KeyError(f"dashboard {dashboard['uid']} has no variable {name}")


def runtime_dashboards(inventory: Inventory) -> list[str]:
    return [runtime for runtime in RUNTIMES if any(m.runtime == runtime for m in inventory.models)]


def dashboard_json(runtime: str, inventory: Inventory, *, api_name: str = "", stage: Optional[str] = "", api_id: str = "",
                   load_balancers: Optional[Mapping[str, str]] = None) -> str:
    """One ConfigMap entry. The Ollama dashboard reads CloudWatch, so the deployment fills in
    what only it knows: the REST API's name, stage and id, and each Ollama model's load
    balancer (ARN suffix), as a `model : load balancer` choice. `stage` None (a stage per
    tier): the wildcard "*", one series per tier's stage."""
    dashboard = load_dashboard(runtime)
    if runtime == "ollama":
        models = [m.name for m in inventory.models if m.runtime == "ollama"]
        _set_variable(dashboard, "model", ",".join(f"{name} : {(load_balancers or {})[name]}" for name in models))
        for name, value in (("api_name", api_name), ("stage", "*" if stage is None else stage), ("api_id", api_id)):
            _set_variable(dashboard, name, value)
    return json.dumps(dashboard, indent=1, sort_keys=True)


def cloudwatch_read_policy() -> dict:
    """Metrics and alarm states only: no logs, no writes (Grafana docs, "CloudWatch data source",
    IAM policy, metrics part). These actions take no resource-level permissions."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadMetrics", "Effect": "Allow", "Resource": "*",
        "Action": ["cloudwatch:GetMetricData", "cloudwatch:ListMetrics", "cloudwatch:DescribeAlarms",
                   "cloudwatch:DescribeAlarmsForMetric", "cloudwatch:DescribeAlarmHistory"]}]}


def grafana_values(region: str) -> dict:
    """Values for the grafana-community `grafana` chart."""
    return {
        "fullnameOverride": GRAFANA,
        "replicas": 1,
        "service": {"enabled": True, "type": "ClusterIP", "port": 80, "targetPort": GRAFANA_PORT},
        "ingress": {"enabled": False},
        # Pod Identity brings the AWS credentials; without a sidecar Grafana never calls the
        # Kubernetes API, so no token and no RBAC.
        "serviceAccount": {"create": True, "name": GRAFANA, "automountServiceAccountToken": False},
        "automountServiceAccountToken": False,
        "rbac": {"create": False},
        "testFramework": {"enabled": False},
        # Dashboards and data sources are provisioned; nothing to keep across restarts.
        "persistence": {"enabled": False},
        "initChownData": {"enabled": False},
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 472, "runAsGroup": 472, "fsGroup": 472,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                     "capabilities": {"drop": ["ALL"]},
                                     "seccompProfile": {"type": "RuntimeDefault"}},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "grafana.ini": {
            # A private cluster: no calls home, no sign-ups, no anonymous viewers.
            "analytics": {"reporting_enabled": False, "check_for_updates": False,
                          "check_for_plugin_updates": False},
            "users": {"allow_sign_up": False},
            "auth.anonymous": {"enabled": False},
            "security": {"disable_gravatar": True, "cookie_secure": False},
            "news": {"news_feed_enabled": False},
        },
        "datasources": {"datasources.yaml": {"apiVersion": 1, "datasources": [
            {"name": "Prometheus", "type": "prometheus", "uid": "prometheus", "access": "proxy",
             "url": PROMETHEUS_URL, "isDefault": True, "editable": False,
             "jsonData": {"timeInterval": "15s"}},
            {"name": "CloudWatch", "type": "cloudwatch", "uid": "cloudwatch", "editable": False,
             "jsonData": {"authType": "default", "defaultRegion": region}},
        ]}},
        "dashboardProviders": {"dashboardproviders.yaml": {"apiVersion": 1, "providers": [
            {"name": DASHBOARD_PROVIDER, "orgId": 1, "folder": "DeepSeek", "type": "file",
             "disableDeletion": True, "editable": False, "allowUiUpdates": False,
             "options": {"path": f"/var/lib/grafana/dashboards/{DASHBOARD_PROVIDER}"}}]}},
        "dashboardsConfigMaps": {DASHBOARD_PROVIDER: DASHBOARDS_CONFIGMAP},
    }


def grafana_labels() -> dict[str, str]:
    """The chart's selector labels for release `grafana`."""
    return {"app.kubernetes.io/name": GRAFANA, "app.kubernetes.io/instance": GRAFANA}


def grafana_network_policy() -> dict:
    """No ingress at all: `kubectl port-forward` reaches the pod over its loopback, which no
    NetworkPolicy filters; nothing in or outside the cluster can connect to it."""
    return {"podSelector": {"matchLabels": grafana_labels()}, "policyTypes": ["Ingress"], "ingress": []}


def grafana_egress_spec(vpc_cidr: str) -> dict:
    """The two data sources: Prometheus on its port, CloudWatch on 443 with Pod Identity
    credentials (no CloudWatch endpoint in the VPC: through the NAT), and DNS. No plugin or
    update downloads (`grafana.ini` turns the checks off)."""
    return netpol.egress_policy(grafana_labels(), [
        {"to": [netpol.pods(MONITORING_NAMESPACE, PROMETHEUS_SERVER_LABELS)], "ports": [netpol.tcp(PROMETHEUS_PORT)]},
        netpol.dns_egress(), netpol.pod_identity_egress(), netpol.aws_api_egress(vpc_cidr)])


def prometheus_from_grafana_spec() -> dict:
    """The Prometheus server's side of the data source link."""
    return netpol.ingress_policy(PROMETHEUS_SERVER_LABELS, [netpol.pods(MONITORING_NAMESPACE, grafana_labels())],
                                 [netpol.tcp(PROMETHEUS_PORT)])


@dataclass
class ClusterDashboardsArgs:
    cluster: GpuCluster
    addons: ClusterAddons
    inventory: Inventory
    rest_api_name: pulumi.Input[str]
    # None with a stage per tier (the dashboard then shows every stage).
    stage_name: Optional[pulumi.Input[str]]
    rest_api_id: pulumi.Input[str]
    # Model name -> its internal load balancer's ARN suffix.
    load_balancers: Mapping[str, pulumi.Input[str]]


class ClusterDashboards(pulumi.ComponentResource):
    """Grafana (ClusterIP, no ingress) with the runtime dashboards and two read-only data sources."""

    def __init__(self, name: str, args: ClusterDashboardsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:k8s_dashboards:ClusterDashboards", name, None, opts)
        cluster, inventory = args.cluster, args.inventory
        identity = cluster.workload_role(
            f"{name}-grafana", namespace=MONITORING_NAMESPACE, service_account=GRAFANA,
            policy=json.dumps(cloudwatch_read_policy(), sort_keys=True), parent=self,
            description="Grafana: read CloudWatch metrics for the dashboards")
        # Only the Ollama dashboard waits for the gateway's and load balancers' names; the
        # others are known at preview, so reviewers and the policy pack see them.
        data: dict[str, pulumi.Input[str]] = {}
        for runtime in runtime_dashboards(inventory):
            if runtime != "ollama":
                data[f"{runtime}.json"] = dashboard_json(runtime, inventory)
                continue
            data["ollama.json"] = pulumi.Output.all(
                api_name=args.rest_api_name, stage=args.stage_name, api_id=args.rest_api_id,
                load_balancers=pulumi.Output.all(**dict(args.load_balancers)),
            ).apply(lambda v: dashboard_json("ollama", inventory, api_name=v["api_name"], stage=v["stage"],
                                             api_id=v["api_id"], load_balancers=v["load_balancers"]))
        dashboards = k8s.core.v1.ConfigMap(
            f"{name}-dashboards",
            metadata={"name": DASHBOARDS_CONFIGMAP, "namespace": MONITORING_NAMESPACE,
                      "labels": {"app.kubernetes.io/part-of": "deepseek-serving"}},
            data=data,
            opts=cluster.k8s_opts(self, [args.addons.prometheus]))
        # Grafana's links through the monitoring namespace's default deny, before its pod starts.
        policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-grafana-ingress",
                metadata={"name": GRAFANA, "namespace": MONITORING_NAMESPACE, "labels": grafana_labels()},
                spec=grafana_network_policy(),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-grafana-egress",
                metadata={"name": f"{GRAFANA}-egress", "namespace": MONITORING_NAMESPACE, "labels": grafana_labels()},
                spec=grafana_egress_spec(cluster.vpc_cidr),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-prometheus-from-grafana",
                metadata={"name": "prometheus-from-grafana", "namespace": MONITORING_NAMESPACE},
                spec=prometheus_from_grafana_spec(),
                opts=cluster.k8s_opts(self, [args.addons.prometheus])),
        ]
        repo, chart, version = GRAFANA_CHART
        self.release = k8s.helm.v3.Release(
            f"{name}-grafana",
            name=GRAFANA, chart=chart, version=version, repository_opts={"repo": repo},
            namespace=MONITORING_NAMESPACE, values=grafana_values(inventory.region),
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=600,
            opts=cluster.k8s_opts(self, [dashboards, *identity.resources, *policies]))
        self.register_outputs({"grafana_service": f"{GRAFANA}.{MONITORING_NAMESPACE}"})
