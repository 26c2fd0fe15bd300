"""Cluster add-ons the model services rely on, installed as pinned Helm releases.

One release per concern, each pinned to a chart version (the chart pins its images):
- NVIDIA device plugin: only where the AMI needs it (AL2023 NVIDIA; Bottlerocket NVIDIA
  ships its own), selected by a node label the cluster puts only on those pools.
- AWS Load Balancer Controller: binds model pods to the shared internal NLB's target group
  through TargetGroupBinding objects. It runs with a least-privilege Pod Identity role that
  can only register and deregister targets in this stack's target groups: it never creates
  load balancers here (no Service of type LoadBalancer, no Ingress), and its Service
  mutating webhook is off so nothing defaults to it by accident.
- Metrics pipeline for autoscaling and dashboards: an in-cluster Prometheus server
  (prometheus-community chart, server only) that scrapes the model pods' /metrics and the
  DCGM exporter's GPU metrics, keeps `observability.metrics_retention_days` of history on
  an EBS volume encrypted with the stack's data key (the EBS CSI driver add-on with a Pod
  Identity role, and a gp3 StorageClass naming the key: EKS has no CSI driver or encrypted
  class by default), evaluates the token recording rules and alert rules
  (components/eks/monitoring.py) and serves Grafana (components/eks/grafana.py); and KEDA, whose
  ScaledObjects turn a PromQL query into an HPA: vLLM scales on
  `vllm:num_requests_waiting`, TGI on `tgi_queue_size`, Ollama (no /metrics) on DCGM GPU
  utilisation of its own pods.
- Cluster autoscaler (only with `eks.autoscaler: cluster-autoscaler`; Karpenter replaces it,
  components/eks/karpenter.py): node pools grow when scaled-out model pods do not fit and
  shrink when GPUs sit idle (managed node groups tag their Auto Scaling groups for
  auto-discovery; components/eks/cluster.py adds the GPU label and the node-template tags
  it needs to recognise GPU nodes and to scale a group up from zero).

The monitoring namespace denies every connection by default: Prometheus may reach its scrape
targets, the API server and DNS, and only the KEDA operator and Grafana may query it (Grafana's
and Alertmanager's links come with their components; components/eks/network_policy.py, the
table in docs/OPERATIONS.md). Its lifecycle and admin APIs are off: nothing that can query it can stop
or reload it, or delete series.

Why KEDA rather than prometheus-adapter + HPA: the scaling rule stays next to the model
(one ScaledObject per model with the exact PromQL), KEDA generates and owns the HPA, and the
same mechanism covers Ollama's GPU-utilisation signal without a second adapter rule set.
KEDA docs (Prometheus scaler): https://keda.sh/docs/2.17/scalers/prometheus/.

Every controller that calls AWS gets its region and VPC from values rather than from IMDS:
node launch templates set an IMDS hop limit of 1, so pods cannot reach the metadata service.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.eks import network_policy as netpol
from components.eks.cluster import (DEVICE_PLUGIN_LABEL, EFA_LABEL, GPU_TOLERATION, POOL_LABEL,
                                    SYSTEM_POOL, GpuCluster)

# Pinned charts: (repository, chart, version). Sources for the versions:
# - aws-load-balancer-controller 1.14.0 = controller v2.14.0 (aws/eks-charts releases;
#   tested on EKS 1.35 in gitops-bridge-dev/gitops-bridge-argocd-control-plane-template#59)
# - nvidia-device-plugin 0.17.1 (NVIDIA/k8s-device-plugin releases)
# - keda 2.17.2 (kedacore/charts#765)
# - prometheus 27.19.0 = Prometheus v3.4.1 (prometheus-community/helm-charts charts/prometheus)
# - dcgm-exporter 4.8.3 = exporter 4.6.0-4.8.3 (NVIDIA/dcgm-exporter#712)
# - cluster-autoscaler 9.46.0 (kubernetes/autoscaler charts); the image tag follows the
#   cluster's minor version (CLUSTER_AUTOSCALER_IMAGE below), as the autoscaler requires.
CHARTS = {
    "aws-load-balancer-controller": ("https://aws.github.io/eks-charts", "aws-load-balancer-controller", "1.14.0"),
    "nvidia-device-plugin": ("https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin", "0.17.1"),
    "keda": ("https://kedacore.github.io/charts", "keda", "2.17.2"),
    "prometheus": ("https://prometheus-community.github.io/helm-charts", "prometheus", "27.19.0"),
    "dcgm-exporter": ("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.8.3"),
    "cluster-autoscaler": ("https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.46.0"),
    # aws-efa-k8s-device-plugin v0.5.7 (aws/eks-charts stable/aws-efa-k8s-device-plugin; the
    # chart EKS documents for `vpc.amazonaws.com/efa`:
    # https://docs.aws.amazon.com/eks/latest/userguide/device-management-efa.html).
    "aws-efa-k8s-device-plugin": ("https://aws.github.io/eks-charts", "aws-efa-k8s-device-plugin", "v0.5.7"),
    # LeaderWorkerSet controller 0.9.0 from the project's OCI registry (no repository:
    # the chart reference is the OCI URL), as https://lws.sigs.k8s.io/docs/installation/
    # documents (`helm install lws oci://registry.k8s.io/lws/charts/lws --version 0.9.0`);
    # 0.11.0 needs Kubernetes 1.34, this project allows 1.31 to 1.34.
    "lws": (None, "oci://registry.k8s.io/lws/charts/lws", "0.9.0"),
}
LWS_NAMESPACE = "lws-system"
# Cluster autoscaler minor must match the cluster's (kubernetes/k8s.io#8815 promoted 1.32.5,
# 1.33.3 and 1.34.2).
CLUSTER_AUTOSCALER_IMAGE = {"1.31": "v1.31.0", "1.32": "v1.32.5", "1.33": "v1.33.3", "1.34": "v1.34.2"}

MONITORING_NAMESPACE = "monitoring"
KEDA_NAMESPACE = "keda"
SYSTEM_NAMESPACE = "kube-system"
PROMETHEUS_SERVICE = "prometheus-server"
# The server's container port (the chart's deploy.yaml); the Service listens on the same port,
# as EKS network policies want (components/eks/network_policy.py).
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local:{PROMETHEUS_PORT}"
# The Prometheus server's pods (prometheus-community/prometheus chart, server matchLabels in
# templates/_helpers.tpl, release `prometheus`).
PROMETHEUS_SERVER_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}
# The keda chart's operator pods (keda/templates/manager/deployment.yaml, operator.name
# default): the operator evaluates the ScaledObjects' Prometheus queries.
KEDA_OPERATOR_LABELS = {"app.kubernetes.io/name": "keda-operator"}
# DCGM exporter pods (NVIDIA dcgm-exporter chart: selector label, service port 9400, not on
# the host network by default).
DCGM_LABELS = {"app.kubernetes.io/name": "dcgm-exporter"}
DCGM_PORT = 9400
# How often Prometheus checks its configuration and rule files for changes (Prometheus 3
# feature flag auto-reload-config), instead of a sidecar POSTing to the lifecycle API.
CONFIG_RELOAD_INTERVAL = "30s"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
ENCRYPTED_STORAGE_CLASS = "deepseek-gp3-encrypted"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
# The keda chart's operator service account (values serviceAccount.operator.name default).
KEDA_OPERATOR_SERVICE_ACCOUNT = "keda-operator"

# Pods the model-server scrape job considers (set by ModelService on its pods).
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF_VALUE = "deepseek-serving"


@dataclass
class ClusterAddonsArgs:
    cluster: GpuCluster
    # Tags every target group of this stack carries (provider default tags): the load
    # balancer controller may register targets only in target groups that match all of them.
    target_group_tags: dict[str, str]
    partition: str = "aws"
    # Alert rules for the Prometheus server (a rule file's content) and the Alertmanager
    # (host:port) it sends them to: components/eks/monitoring.py. None: no alerting.
    alert_rules: Optional[dict] = None
    alertmanager_target: Optional[str] = None
    # A model scales to zero: KEDA's operator reads the gateway's request count in CloudWatch.
    keda_reads_cloudwatch: bool = False
    # Recording rules (a rule file's content) for the token and GPU signals.
    recording_rules: Optional[dict] = None
    # The stack's data key: Prometheus keeps its history on a volume encrypted with it.
    # None: history on an emptyDir (lost with the pod).
    data_key_arn: Optional[pulumi.Input[str]] = None
    metrics_retention_days: int = 15
    # Some model spans nodes: install the LeaderWorkerSet controller.
    leader_worker_sets: bool = False
    # Model namespace -> the port its pods serve /metrics on: where Prometheus may scrape.
    metrics_ports: Mapping[str, int] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    """Device plugin, load balancer controller, metrics pipeline, KEDA and cluster autoscaler."""

    monitoring_namespace: str
    prometheus_url: str
    # Releases that must exist before objects of their CRDs (TargetGroupBinding, ScaledObject).
    load_balancer_controller: k8s.helm.v3.Release
    keda: k8s.helm.v3.Release
    prometheus: k8s.helm.v3.Release
    # Present when a model spans nodes (LeaderWorkerSet objects need its CRD and webhook).
    leader_worker_set: Optional[k8s.helm.v3.Release]

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:k8s_addons:ClusterAddons", name, None, opts)
        self._name = name
        self._cluster = args.cluster
        self._args = args
        self.monitoring_namespace = MONITORING_NAMESPACE
        self.prometheus_url = PROMETHEUS_URL

        if any(pool.needs_device_plugin for pool in args.cluster.gpu_pools.values()):
            self._release("nvidia-device-plugin", SYSTEM_NAMESPACE, self._device_plugin_values())
        if any(pool.efa_interfaces for pool in args.cluster.gpu_pools.values()):
            self._release("aws-efa-k8s-device-plugin", SYSTEM_NAMESPACE, self._efa_plugin_values())
        self.leader_worker_set = None
        if args.leader_worker_sets:
            lws_ns = self._namespace(LWS_NAMESPACE)
            self.leader_worker_set = self._release(
                "lws", LWS_NAMESPACE, {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}}, depends_on=[lws_ns])
        self.load_balancer_controller = self._create_load_balancer_controller()
        # With Karpenter the GPU nodes are its NodePools and the system pool has a fixed size.
        if args.cluster.autoscaler == "cluster-autoscaler":
            self._create_cluster_autoscaler()

        monitoring = self._namespace(MONITORING_NAMESPACE)
        keda_ns = self._namespace(KEDA_NAMESPACE)
        self._release("dcgm-exporter", SYSTEM_NAMESPACE, self._dcgm_values())
        storage: list[pulumi.Resource] = []
        if args.data_key_arn is not None:
            storage = self._create_metrics_storage(args.data_key_arn)
        values = self._prometheus_values(args.alert_rules, args.alertmanager_target)
        values = with_recording_rules(values, args.recording_rules)
        if storage:
            values = with_persistent_storage(values, args.metrics_retention_days)
        deny = self._create_monitoring_policies(monitoring, args.metrics_ports)
        self.prometheus = self._release("prometheus", MONITORING_NAMESPACE, values,
                                        depends_on=[monitoring, deny, *storage])
        keda_deps: list[pulumi.Resource] = [keda_ns]
        if args.keda_reads_cloudwatch:
            # Pods get Pod Identity credentials only if the association exists at their start.
            keda_deps += args.cluster.workload_role(
                f"{name}-keda", namespace=KEDA_NAMESPACE, service_account=KEDA_OPERATOR_SERVICE_ACCOUNT,
                policy=json.dumps(_keda_cloudwatch_policy()), parent=self,
                description="KEDA operator: read the gateway's request metrics to wake idle models").resources
        self.keda = self._release("keda", KEDA_NAMESPACE, {
            "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        }, depends_on=keda_deps)

        self.register_outputs({
            "monitoring_namespace": self.monitoring_namespace,
            "prometheus_url": self.prometheus_url,
        })

    # --- helpers ---------------------------------------------------------------------

    def _namespace(self, name: str) -> k8s.core.v1.Namespace:
        # Third-party charts are not all written for `restricted`: enforce `baseline` (no
        # host access, no privilege) and surface `restricted` violations as warnings.
        return k8s.core.v1.Namespace(
            f"{self._name}-{name}-ns",
            metadata={"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }},
            opts=self._cluster.k8s_opts(self))

    def _network_policy(self, role: str, policy_name: str, spec: dict,
                        depends_on: list[pulumi.Resource]) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-{role}", metadata={"name": policy_name, "namespace": MONITORING_NAMESPACE},
            spec=spec, opts=self._cluster.k8s_opts(self, depends_on))

    def _create_monitoring_policies(self, namespace: k8s.core.v1.Namespace,
                                    metrics_ports: Mapping[str, int]) -> pulumi.Resource:
        """The monitoring namespace's default deny, and what Prometheus and KEDA need through
        it; Alertmanager and Grafana bring their own (components/eks/monitoring.py, grafana.py).
        The deny waits for Prometheus' allowances, so a live Prometheus is never cut off."""
        cluster = self._cluster
        allowances = [
            self._network_policy("prometheus-egress", "prometheus-egress",
                                 prometheus_egress_spec(metrics_ports, cluster.service_cidr, cluster.vpc_cidr),
                                 [namespace]),
            self._network_policy("prometheus-from-keda", "prometheus-from-keda", prometheus_from_keda_spec(),
                                 [namespace]),
        ]
        return self._network_policy("monitoring-default-deny", "default-deny", netpol.default_deny(),
                                    [namespace, *allowances])

    def _release(self, key: str, namespace: str, values: dict,
                 depends_on: Optional[list[pulumi.Resource]] = None) -> k8s.helm.v3.Release:
        repo, chart, version = CHARTS[key]
        return k8s.helm.v3.Release(
            f"{self._name}-{key}",
            name=key,
            chart=chart,
            version=version,
            repository_opts={"repo": repo} if repo else None,
            namespace=namespace,
            values=values,
            # A failed install rolls back instead of leaving half a controller behind.
            atomic=True,
            cleanup_on_fail=True,
            max_history=5,
            timeout=900,
            opts=self._cluster.k8s_opts(self, depends_on=depends_on or []))

    # --- metrics storage -------------------------------------------------------------

    def _create_metrics_storage(self, data_key_arn: pulumi.Input[str]) -> list[pulumi.Resource]:
        """The EBS CSI driver (EKS add-on, Pod Identity role) and the encrypted gp3 class."""
        cluster = self._cluster
        identity = cluster.workload_role(
            f"{self._name}-ebs-csi", namespace=SYSTEM_NAMESPACE, service_account=EBS_CSI_SERVICE_ACCOUNT,
            policy=pulumi.Output.from_input(data_key_arn).apply(
                lambda arn: json.dumps(_ebs_csi_key_policy(arn), sort_keys=True)),
            parent=self, description="EBS CSI driver: volumes for cluster add-ons, encrypted with the data key")
        # AWS's managed policy for the driver (Amazon EKS docs, "Store Kubernetes volumes with
        # Amazon EBS"): volume create/attach/delete, limited by its conditions to volumes the
        # driver tags; the inline policy above adds the customer-managed key.
        policy = aws.iam.RolePolicyAttachment(
            f"{self._name}-ebs-csi-managed", role=identity.role.name,
            policy_arn=f"arn:{self._args.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            opts=pulumi.ResourceOptions(parent=self))
        driver = aws.eks.Addon(
            f"{self._name}-ebs-csi-driver", cluster_name=cluster.cluster_name, addon_name="aws-ebs-csi-driver",
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            configuration_values=json.dumps({"controller": {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}}}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*identity.resources, policy, *cluster.ready]))
        storage_class = k8s.storage.v1.StorageClass(
            f"{self._name}-encrypted-gp3",
            metadata={"name": ENCRYPTED_STORAGE_CLASS},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": data_key_arn},
            # The volume is created in the zone the pod is scheduled to.
            volume_binding_mode="WaitForFirstConsumer",
            # Metrics history outlives an uninstall by mistake; delete the volume deliberately.
            reclaim_policy="Retain",
            allow_volume_expansion=True,
            opts=cluster.k8s_opts(self, [driver]))
        return [driver, storage_class]

    # --- device plugin ---------------------------------------------------------------

    @staticmethod
    def _device_plugin_values() -> dict:
        return {
            # Replaces the chart's default affinity (which matches any node labelled
            # nvidia.com/gpu.present, Bottlerocket included).
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": DEVICE_PLUGIN_LABEL, "operator": "In", "values": ["true"]}]}]}}},
            "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
            "priorityClassName": "system-node-critical",
        }

    @staticmethod
    def _efa_plugin_values() -> dict:
        # Only nodes whose launch template has EFA interfaces; they carry the GPU taint.
        return {
            "nodeSelector": {EFA_LABEL: "true"},
            "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        }

    # --- load balancer controller ----------------------------------------------------

    def _create_load_balancer_controller(self) -> k8s.helm.v3.Release:
        cluster = self._cluster
        role = cluster.workload_role(
            f"{self._name}-lbc", namespace=SYSTEM_NAMESPACE, service_account=LBC_SERVICE_ACCOUNT,
            policy=json.dumps(_load_balancer_controller_policy(self._args.target_group_tags,
                                                              self._args.partition)),
            parent=self, description="AWS Load Balancer Controller: TargetGroupBinding targets only")
        return k8s.helm.v3.Release(
            f"{self._name}-aws-load-balancer-controller",
            name="aws-load-balancer-controller",
            chart=CHARTS["aws-load-balancer-controller"][1],
            version=CHARTS["aws-load-balancer-controller"][2],
            repository_opts={"repo": CHARTS["aws-load-balancer-controller"][0]},
            namespace=SYSTEM_NAMESPACE,
            values={
                "clusterName": cluster.cluster_name,
                # Region and VPC from values: the IMDS hop limit of 1 hides them from pods.
                "region": cluster.region,
                "vpcId": cluster.vpc_id,
                "serviceAccount": {"create": True, "name": LBC_SERVICE_ACCOUNT},
                "replicaCount": 2,
                "podDisruptionBudget": {"maxUnavailable": 1},
                # Nothing here should become an AWS load balancer by default.
                "enableServiceMutatorWebhook": False,
                "createIngressClassResource": False,
                "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
            },
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=900,
            opts=cluster.k8s_opts(self, depends_on=role.resources))

    # --- cluster autoscaler ----------------------------------------------------------

    def _create_cluster_autoscaler(self) -> None:
        cluster = self._cluster
        role = cluster.workload_role(
            f"{self._name}-autoscaler", namespace=SYSTEM_NAMESPACE,
            service_account=AUTOSCALER_SERVICE_ACCOUNT,
            policy=cluster.cluster_name.apply(lambda cluster_name: json.dumps(_autoscaler_policy(cluster_name))),
            parent=self, description="Cluster autoscaler: resize this cluster's node groups only")
        repo, chart, version = CHARTS["cluster-autoscaler"]
        k8s.helm.v3.Release(
            f"{self._name}-cluster-autoscaler",
            name="cluster-autoscaler", chart=chart, version=version,
            repository_opts={"repo": repo}, namespace=SYSTEM_NAMESPACE,
            values={
                "cloudProvider": "aws",
                "awsRegion": cluster.region,
                "autoDiscovery": {"clusterName": cluster.cluster_name},
                "rbac": {"serviceAccount": {"create": True, "name": AUTOSCALER_SERVICE_ACCOUNT}},
                "image": {"tag": CLUSTER_AUTOSCALER_IMAGE[cluster.kubernetes_version]},
                "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
                "extraArgs": {
                    "balance-similar-node-groups": True,
                    "expander": "least-waste",
                    # Model pods stage weights in emptyDirs; without this a GPU node
                    # would never be considered for scale-down.
                    "skip-nodes-with-local-storage": False,
                    # A GPU node that was just added is expensive to churn.
                    "scale-down-unneeded-time": "15m",
                },
            },
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=900,
            opts=cluster.k8s_opts(self, depends_on=role.resources))

    # --- metrics ---------------------------------------------------------------------

    @staticmethod
    def _dcgm_values() -> dict:
        return {
            # GPU nodes only, despite their taint; scraped by the job below, not through a
            # ServiceMonitor (no Prometheus operator in this cluster).
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [GPU_TOLERATION],
            "serviceMonitor": {"enabled": False},
        }

    @staticmethod
    def _prometheus_values(alert_rules: Optional[dict] = None,
                           alertmanager_target: Optional[str] = None) -> dict:
        restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                      "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}
        values = {
            "alertmanager": {"enabled": False},
            "kube-state-metrics": {"enabled": False},
            "prometheus-node-exporter": {"enabled": False},
            "prometheus-pushgateway": {"enabled": False},
            # The chart's reloader sidecar POSTs to /-/reload, which needs the lifecycle API.
            "configmapReload": {"prometheus": {"enabled": False}},
            "server": {
                "fullnameOverride": PROMETHEUS_SERVICE,
                "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
                "containerSecurityContext": restricted,
                # Replaces the chart's default [web.enable-lifecycle]: no /-/quit or /-/reload
                # for anything that reaches port 9090 (KEDA, Grafana); the admin API
                # (--web.enable-admin-api: delete series, snapshots) stays off as by default.
                # Prometheus reloads its configuration and rule files itself when their
                # checksum changes (prometheus/prometheus v3.4.1, feature flags doc, "Auto Reload Config").
                "extraFlags": ["enable-feature=auto-reload-config",
                               f"config.auto-reload-interval={CONFIG_RELOAD_INTERVAL}"],
                # The autoscaling signal needs minutes of history, not months; no EBS CSI
                # driver or PVC to manage.
                "persistentVolume": {"enabled": False},
                "emptyDir": {"sizeLimit": "8Gi"},
                "retention": "2d",
                "global": {"scrape_interval": "15s", "scrape_timeout": "10s",
                           "evaluation_interval": "30s"},
                "service": {"servicePort": PROMETHEUS_PORT},
            },
            "serverFiles": {"prometheus.yml": {"scrape_configs": [
                _model_server_scrape_job(), _dcgm_scrape_job()]}},
        }
        if alert_rules is not None and alertmanager_target is not None:
            # The same series the autoscaler reads, judged by the same server (no second
            # pipeline): rules from the inventory thresholds, alerts to the Alertmanager that
            # publishes to the stack's SNS topic (components/eks/monitoring.py). rule_files is
            # explicit rather than inherited from the chart's defaults.
            values["server"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager_target]}]}]
            values["serverFiles"]["alerting_rules.yml"] = alert_rules
            values["serverFiles"]["prometheus.yml"]["rule_files"] = ["/etc/config/alerting_rules.yml"]
        return values


def prometheus_egress_spec(metrics_ports: Mapping[str, int], service_cidr: str, vpc_cidr: str) -> dict:
    """Where the Prometheus server may connect: the scrape targets of its jobs (each model's
    pods on its metrics port, the DCGM exporter), the API server its pod discovery watches,
    and DNS. Alertmanager is admitted by components/eks/monitoring.py."""
    scrape_model_servers = [
        {"to": [netpol.pods(namespace, {PART_OF_LABEL: PART_OF_VALUE})], "ports": [netpol.tcp(port)]}
        for namespace, port in sorted(metrics_ports.items())]
    return netpol.egress_policy(PROMETHEUS_SERVER_LABELS, [
        *scrape_model_servers,
        {"to": [netpol.pods(SYSTEM_NAMESPACE, DCGM_LABELS)], "ports": [netpol.tcp(DCGM_PORT)]},
        netpol.kubernetes_api_egress(service_cidr, vpc_cidr),
        netpol.dns_egress(),
    ])


def prometheus_from_keda_spec() -> dict:
    """The KEDA operator runs the ScaledObjects' queries; nothing else outside the namespace
    may query Prometheus."""
    return netpol.ingress_policy(PROMETHEUS_SERVER_LABELS, [netpol.pods(KEDA_NAMESPACE, KEDA_OPERATOR_LABELS)],
                                 [netpol.tcp(PROMETHEUS_PORT)])


def metrics_volume_gib(retention_days: int) -> int:
    """Volume for `retention_days` of history: about 3 GiB a day for a few models' runtime and
    GPU series at a 15 s interval, never below 20 GiB (gp3's price per GiB is small; a full
    volume stops ingestion)."""
    return max(20, 3 * retention_days)


def with_persistent_storage(values: dict, retention_days: int) -> dict:
    """Prometheus values keeping `retention_days` on an encrypted EBS volume (a PVC the chart
    creates in the encrypted class; the server's Deployment uses the Recreate strategy, which
    a ReadWriteOnce volume needs)."""
    size = metrics_volume_gib(retention_days)
    server = dict(values["server"])
    server.pop("emptyDir", None)
    server.update({
        "persistentVolume": {"enabled": True, "storageClass": ENCRYPTED_STORAGE_CLASS, "size": f"{size}Gi",
                             "accessModes": ["ReadWriteOnce"]},
        "retention": f"{retention_days}d",
        # Prometheus deletes the oldest blocks before the volume fills up.
        "retentionSize": f"{int(size * 0.85)}GB",
        "strategy": {"type": "Recreate"},
        # The volume is owned by the server's group.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534},
    })
    return {**values, "server": server}


def with_recording_rules(values: dict, recording_rules: Optional[dict]) -> dict:
    if not recording_rules:
        return values
    files = dict(values["serverFiles"])
    files["recording_rules.yml"] = recording_rules
    config = dict(files["prometheus.yml"])
    config["rule_files"] = ["/etc/config/recording_rules.yml", *config.get("rule_files", [])]
    files["prometheus.yml"] = config
    return {**values, "serverFiles": files}


def _ebs_csi_key_policy(key_arn: str) -> dict:
    """What the EBS CSI driver needs on a customer-managed key (Amazon EKS docs, "Store
    Kubernetes volumes with Amazon EBS", KMS key policy): grants for EC2 only, and data keys."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "GrantsForAttachedVolumes", "Effect": "Allow", "Resource": key_arn,
             "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
             "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
            {"Sid": "EncryptVolumes", "Effect": "Allow", "Resource": key_arn,
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                        "kms:DescribeKey"]},
        ],
    }


def _model_server_scrape_job() -> dict:
    """Model pods that opt in with prometheus.io/* annotations, labelled namespace and pod."""
    return {
        "job_name": "model-servers",
        "kubernetes_sd_configs": [{"role": "pod", "selectors": [
            {"role": "pod", "label": f"{PART_OF_LABEL}={PART_OF_VALUE}"}]}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
             "action": "keep", "regex": "true"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
             "action": "replace", "target_label": "__metrics_path__", "regex": "(.+)"},
            {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
             "action": "replace", "target_label": "__address__",
             "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def _dcgm_scrape_job() -> dict:
    """DCGM exporter pods; honor_labels keeps the namespace/pod of the GPU's consumer."""
    return {
        "job_name": "dcgm-exporter",
        "honor_labels": True,
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [SYSTEM_NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
             "action": "keep", "regex": DCGM_LABELS["app.kubernetes.io/name"]},
            {"source_labels": ["__meta_kubernetes_pod_container_port_number"],
             "action": "keep", "regex": str(DCGM_PORT)},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
        ],
    }


def _load_balancer_controller_policy(target_group_tags: dict[str, str], partition: str) -> dict:
    """What TargetGroupBinding needs, and nothing that creates or changes load balancers.

    Derived from the controller's reference policy (kubernetes-sigs/aws-load-balancer-
    controller docs/install/iam_policy.json): its describe statements, and Register/
    DeregisterTargets narrowed from "target groups the controller created" to "target groups
    this stack created" (the reference conditions on the controller's own cluster tags,
    which Pulumi-created target groups do not carry).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
                "ec2:DescribeAccountAttributes", "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeTags",
                "ec2:DescribeVpcs",
                "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
            ]},
            {"Sid": "RegisterPodsInThisStacksTargetGroups", "Effect": "Allow",
             "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
             "Resource": f"arn:{partition}:elasticloadbalancing:*:*:targetgroup/*",
             "Condition": {"StringEquals": {f"aws:ResourceTag/{key}": value
                                            for key, value in sorted(target_group_tags.items())}}},
        ],
    }


def _keda_cloudwatch_policy() -> dict:
    """GetMetricData has no resource-level permissions (CloudWatch "Actions, resources, and
    condition keys"): it is read-only, on every metric of the account."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadGatewayRequestCounts", "Effect": "Allow",
        "Action": ["cloudwatch:GetMetricData"], "Resource": "*"}]}


def _autoscaler_policy(cluster_name: str) -> dict:
    """The cluster autoscaler's documented AWS policy, scoped to this cluster's groups.

    kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md ("Full Cluster
    Autoscaler Features Policy"): describe calls everywhere, resize and terminate only in
    Auto Scaling groups tagged as owned by this cluster (EKS tags managed node groups so).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
                "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
                "eks:DescribeNodegroup",
            ]},
            {"Sid": "ResizeOwnGroups", "Effect": "Allow", "Resource": "*",
             "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
             "Condition": {"StringEquals": {
                 f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
        ],
    }
