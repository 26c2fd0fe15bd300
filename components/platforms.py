"""GPU capacity for the inventory's platform: per model an internal NLB and what serves behind it.

Both platforms give the gateway the same thing per model: a `LoadBalancer` and a runtime
(a `GpuFleet` on EC2, a `ModelService` on EKS) exposing the backend key and its version.
These are plain functions, not a component, so resources keep the parents (and URNs)
they have when built directly from the program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pulumi

from components.config import Inventory, Model
from components.ec2.fleet import (GpuFleet, GpuFleetArgs, check_hosts, ec2_load_balancer_args, fleet_image,
                                  health_check_grace_seconds)
from components.ec2.image_cache import PullThroughCache, PullThroughCacheArgs
from components.eks.addons import ClusterAddons, ClusterAddonsArgs
from components.eks.api_tunnel import ApiTunnel, ApiTunnelArgs
from components.eks.cluster import GpuCluster, GpuClusterArgs
from components.eks.grafana import ClusterDashboards, ClusterDashboardsArgs
from components.eks.karpenter import Karpenter, KarpenterArgs
from components.eks.logging import ClusterLogging, ClusterLoggingArgs
from components.ec2.wake import ScaleToZero, ScaleToZeroArgs
from components.eks.model_service import (ModelService, ModelServiceArgs, RequestMetrics, eks_load_balancer_args,
                                          staging_seconds)
from components.eks.monitoring import (ALERTMANAGER_TARGET, ClusterMonitoring, ClusterMonitoringArgs,
                                       prometheus_alert_rules, prometheus_recording_rules, rule_names)
from components.gateway.api import Backend, request_metric_dimensions
from components.keys import StackKeys
from components.load_balancer import LoadBalancer
from components.network import EC2_HOST_ENDPOINT_SERVICES, Network
from components.observability import ModelTargets
from components.serving.runtimes import RuntimeLaunch, render_for_inventory


def request_limits(launch: RuntimeLaunch) -> dict[str, int]:
    """What one request may ask of a model, as clients and the smoke test read it."""
    capacity = launch.capacity
    assert capacity is not None  # every rendered launch carries its capacity
    return {"max_context": capacity.max_context, "max_input_tokens": capacity.max_input_tokens,
            "max_output_tokens": capacity.max_new_tokens}


def metrics_ports(inventory: Inventory) -> dict[str, int]:
    """Model namespace -> the port its pods serve /metrics on (runtimes that export metrics)."""
    launches = {model.name: render_for_inventory(inventory, model) for model in inventory.models}
    return {name: launch.port for name, launch in launches.items() if launch.metrics_path}


def startup_seconds(inventory: Inventory, launch: RuntimeLaunch, model: Optional[Model] = None) -> int:
    """How long a new replica is unhealthy on purpose: boot or weight staging plus model load."""
    if inventory.platform == "ec2":
        return health_check_grace_seconds(launch)
    pool = next((p for p in inventory.eks.gpu_pools if model and p.name == model.node_pool), None)
    return staging_seconds(launch, pool.local_storage if pool else "ebs") + launch.startup_budget_seconds


@dataclass
class Platform:
    load_balancers: dict[str, LoadBalancer] = field(default_factory=dict)
    runtimes: dict[str, Union[GpuFleet, ModelService]] = field(default_factory=dict)
    cluster: Optional[GpuCluster] = None
    addons: Optional[ClusterAddons] = None
    karpenter: Optional[Karpenter] = None
    alert_rules: tuple = ()
    tunnel: Optional[ApiTunnel] = None

    @property
    def fleets(self) -> dict[str, GpuFleet]:
        return {name: r for name, r in self.runtimes.items() if isinstance(r, GpuFleet)}

    @property
    def model_services(self) -> dict[str, ModelService]:
        return {name: r for name, r in self.runtimes.items() if isinstance(r, ModelService)}

    @property
    def prometheus_rules(self) -> tuple[str, ...]:
        """Names of the Prometheus alert rules on EKS (shown on the dashboard)."""
        return tuple(rule_names(self.alert_rules)) if self.cluster is not None else ()

    def gateway_backends(self, inventory: Inventory) -> list[Backend]:
        """Each model's internal load balancer, as the gateway reaches it."""
        return [Backend(model_name=model.name, nlb_arn=self.load_balancers[model.name].arn,
                        host=self.load_balancers[model.name].internal_domain,
                        port=self.load_balancers[model.name].listener_port,
                        skip_tls_verification=self.load_balancers[model.name].tls_skip_verification,
                        request_limits=request_limits(render_for_inventory(inventory, model)),
                        priority_scheduling=model.scheduling_policy == "priority")
                for model in inventory.models]

    def observed_models(self, inventory: Inventory) -> dict[str, ModelTargets]:
        """Where each model's load balancer and capacity metrics live, for the alarms."""
        return {model.name: ModelTargets(
                    load_balancer_arn_suffix=self.load_balancers[model.name].arn_suffix,
                    target_group_arn_suffix=self.load_balancers[model.name].target_group_arn_suffix,
                    startup_seconds=startup_seconds(inventory, render_for_inventory(inventory, model), model),
                    asg_name=self.fleets[model.name].asg_name if model.name in self.fleets else None)
                for model in inventory.models}

    def watch_cluster(self, inventory: Inventory, *, stack: str, topic_arn: pulumi.Input[str],
                      topic_key_arn: pulumi.Input[str], opts: pulumi.ResourceOptions,
                      rest_api_name: pulumi.Input[str] = "", stage_name: pulumi.Input[str] = "",
                      rest_api_id: pulumi.Input[str] = "") -> None:
        """On EKS the cluster's Prometheus alerts reach the stack's topic through Alertmanager,
        and Grafana shows the runtimes' dashboards (the gateway's names feed the CloudWatch panels)."""
        if self.cluster is None:
            return
        ClusterDashboards(
            "eks-dashboards",
            ClusterDashboardsArgs(cluster=self.cluster, addons=self.addons, inventory=inventory,
                                  rest_api_name=rest_api_name, stage_name=stage_name, rest_api_id=rest_api_id,
                                  load_balancers={name: lb.arn_suffix for name, lb in self.load_balancers.items()}),
            opts=opts)
        ClusterMonitoring(
            "eks-monitoring",
            ClusterMonitoringArgs(cluster=self.cluster, addons=self.addons,
                                  topic_arns=[topic_arn, *inventory.observability.alarms.sns_topic_arns],
                                  topic_key_arn=topic_key_arn, region=inventory.region, stack=stack),
            opts=opts)

    def wake_on_requests(self, inventory: Inventory, *, rest_api_name: pulumi.Input[str],
                         stage_names: list, opts: pulumi.ResourceOptions) -> None:
        """Models with min_replicas 0 sleep when idle and wake on the gateway's request count
        (AWS/ApiGateway Count per route): alarms on EC2, KEDA triggers on EKS."""
        for model in inventory.models:
            if model.min_replicas != 0:
                continue
            # Every stage's routes: a request on any tier's stage wakes the model.
            dimensions = request_metric_dimensions(rest_api_name, stage_names, model.name)
            if model.name in self.fleets:
                ScaleToZero(f"{model.name}-wake", ScaleToZeroArgs(
                    model_name=model.name, asg_name=self.fleets[model.name].asg_name,
                    request_dimensions=dimensions, idle_minutes=model.idle_minutes), opts=opts)
            else:
                self.model_services[model.name].wake_on_requests(
                    RequestMetrics(region=inventory.region, dimensions=tuple(dimensions)))

    def stack_outputs(self) -> dict[str, Any]:
        """Names, namespaces and metric dimensions of what serves each model."""
        if self.fleets:
            return {"gpu_fleets": {
                name: {"asg_name": fleet.asg_name,
                       "load_balancer_arn_suffix": self.load_balancers[name].arn_suffix,
                       "target_group_arn_suffix": self.load_balancers[name].target_group_arn_suffix,
                       "runtime_log_group": fleet.log_group_name,
                       # What the hosts pull (warm the pull-through cache with its tag once).
                       "image": fleet.image.reference,
                       "internal_domain": self.load_balancers[name].internal_domain}
                for name, fleet in self.fleets.items()}}
        if self.cluster is None:
            return {}
        tunnel = {"api_tunnel": {"instance_id": self.tunnel.instance_id, "endpoint": self.cluster.endpoint}
                  } if self.tunnel is not None else {}
        if self.addons is None:  # phase cluster
            return {"eks": {"cluster_name": self.cluster.cluster_name, **tunnel}}
        return {"eks": {
            **tunnel,
            "cluster_name": self.cluster.cluster_name,
            "monitoring_namespace": self.addons.monitoring_namespace,
            "prometheus_url": self.addons.prometheus_url,
            "models": {
                name: {"namespace": service.namespace,
                       "deployment": service.deployment_name,
                       "service": service.service_name,
                       "runtime": service.runtime,
                       "load_balancer_arn_suffix": service.load_balancer_arn_suffix,
                       "target_group_arn_suffix": service.target_group_arn_suffix,
                       "internal_domain": service.internal_domain,
                       "scaling_query": service.scaling_query}
                for name, service in self.model_services.items()},
        }}


def endpoint_settings(inventory: Inventory) -> dict[str, Any]:
    """What the VPC endpoints carry for the platform (NetworkArgs). EC2 hosts have no internet
    egress: every AWS API they call gets an endpoint, and the S3 endpoint reads only the
    weights and AWS's own buckets. EKS keeps S3 open: its nodes pull third-party images
    through the NAT, whose blobs may sit in S3 buckets of the region."""
    if inventory.platform != "ec2":
        return {}
    return {"extra_interface_services": EC2_HOST_ENDPOINT_SERVICES,
            "s3_read_buckets": tuple(sorted({m.weights.s3_bucket for m in inventory.models if m.weights.s3_bucket}))}


def check_platform(inventory: Inventory, stack: str) -> None:
    """What only the platform can refuse, run by admission before anything registers."""
    if inventory.platform == "ec2":
        check_hosts(inventory, stack)


def build_platform(inventory: Inventory, *, stack: str, network: Network, keys: StackKeys,
                   account_id: pulumi.Input[str], opts: pulumi.ResourceOptions,
                   phase: str = "all") -> Platform:
    if inventory.platform == "ec2":
        return _build_ec2(inventory, stack=stack, network=network, keys=keys, account_id=account_id, opts=opts)
    return _build_eks(inventory, stack=stack, network=network, keys=keys, account_id=account_id, opts=opts,
                      phase=phase)


def _build_ec2(inventory: Inventory, *, stack: str, network: Network, keys: StackKeys,
               account_id: str, opts: pulumi.ResourceOptions) -> Platform:
    platform = Platform()
    # Public images reach the hosts through the stack's ECR pull-through cache.
    cache = PullThroughCache("image-cache", PullThroughCacheArgs(
        stack=stack, credentials=dict(inventory.image_cache.credentials),
        images=[fleet_image(inventory, model, render_for_inventory(inventory, model), account=account_id, stack=stack)
                for model in inventory.models]), opts=opts)
    for model in inventory.models:
        load_balancer = LoadBalancer(
            f"{model.name}-lb",
            ec2_load_balancer_args(inventory, model, vpc_id=network.vpc_id,
                                   subnet_ids=network.load_balancer_subnet_ids, vpc_cidr=network.vpc_cidr,
                                   subnet_cidrs=network.load_balancer_cidrs),
            opts=opts)
        platform.load_balancers[model.name] = load_balancer
        platform.runtimes[model.name] = GpuFleet(
            model.name,
            GpuFleetArgs(inventory=inventory, model=model, vpc_id=network.vpc_id,
                         subnet_ids=network.private_subnet_ids, load_balancer=load_balancer,
                         account_id=account_id, data_key_arn=keys.data_key_arn,
                         logs_key_arn=keys.logs_key_arn, data_key_grant=keys.autoscaling_grant,
                         endpoint_security_group_id=network.endpoint_security_group_id,
                         s3_prefix_list_id=network.s3_prefix_list_id, image_cache_rules=cache.rules),
            opts=opts)
    return platform


def _build_eks(inventory: Inventory, *, stack: str, network: Network, keys: StackKeys,
               account_id: pulumi.Input[str], opts: pulumi.ResourceOptions, phase: str) -> Platform:
    cluster = GpuCluster(
        "eks",
        GpuClusterArgs(settings=inventory.eks, cluster_name=f"deepseek-{stack}", region=inventory.region,
                       environment=inventory.environment, vpc_id=network.vpc_id,
                       vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
                       data_key_arn=keys.data_key_arn, logs_key_arn=keys.logs_key_arn,
                       log_retention_days=inventory.observability.log_retention_days,
                       tags=inventory.tags, data_key_grant=keys.autoscaling_grant, account_id=account_id),
        opts=opts)
    tunnel = None
    if inventory.eks.api_access == "ssm_tunnel":
        tunnel = ApiTunnel("eks-api-tunnel", ApiTunnelArgs(
            vpc_id=network.vpc_id, subnet_id=network.private_subnet_ids[0],
            cluster_security_group_id=cluster.cluster_security_group_id,
            endpoint_security_group_id=network.endpoint_security_group_id, data_key_arn=keys.data_key_arn,
            region=inventory.region, account_id=account_id),
            opts=opts)
    if phase == "cluster":
        # The first apply: nothing yet that has to reach inside the private cluster.
        return Platform(cluster=cluster, tunnel=tunnel)
    # The Prometheus that feeds the autoscaler also evaluates the alert rules; the load
    # balancer controller may register targets only in target groups carrying these tags.
    alert_rules = prometheus_alert_rules(inventory, stack)
    addons = ClusterAddons(
        "eks-addons",
        ClusterAddonsArgs(cluster=cluster, target_group_tags={"project": "deepseek-serving", "stack": stack},
                          alert_rules=alert_rules, alertmanager_target=ALERTMANAGER_TARGET,
                          recording_rules=prometheus_recording_rules(inventory), data_key_arn=keys.data_key_arn,
                          metrics_retention_days=inventory.observability.metrics_retention_days,
                          keda_reads_cloudwatch=any(m.min_replicas == 0 for m in inventory.models),
                          leader_worker_sets=any(m.pipeline_parallel > 1 for m in inventory.models),
                          metrics_ports=metrics_ports(inventory)),
        opts=opts)
    # The model pods' logs leave the nodes for an encrypted log group, filtered of request content.
    ClusterLogging("eks-logging", ClusterLoggingArgs(cluster=cluster, inventory=inventory, stack=stack,
                                                     logs_key_arn=keys.logs_key_arn), opts=opts)
    platform = Platform(cluster=cluster, addons=addons, alert_rules=alert_rules, tunnel=tunnel)
    capacity: list[pulumi.Resource] = []
    if inventory.eks.autoscaler == "karpenter":
        platform.karpenter = Karpenter(
            "karpenter",
            KarpenterArgs(cluster=cluster, pools=inventory.eks.gpu_pools, region=inventory.region,
                          account_id=account_id, private_subnet_ids=network.private_subnet_ids,
                          data_key_arn=keys.data_key_arn, tags=inventory.tags),
            opts=opts)
        # Model pods wait for somewhere to run; the rollout's deadline starts after that.
        capacity = list(platform.karpenter.node_pools.values())
    for model in inventory.models:
        launch = render_for_inventory(inventory, model)
        load_balancer = LoadBalancer(
            f"{model.name}-lb",
            eks_load_balancer_args(inventory, model, launch, vpc_id=network.vpc_id,
                                   subnet_ids=network.load_balancer_subnet_ids, vpc_cidr=network.vpc_cidr,
                                   subnet_cidrs=network.load_balancer_cidrs),
            opts=opts)
        platform.load_balancers[model.name] = load_balancer
        platform.runtimes[model.name] = ModelService(
            model.name,
            ModelServiceArgs(inventory=inventory, model=model, launch=launch, cluster=cluster,
                             addons=addons, load_balancer=load_balancer, capacity=capacity),
            opts=opts)
    return platform
