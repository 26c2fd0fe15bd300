"""GPU capacity for the inventory's platform: per model an internal NLB and what serves behind it.

Both platforms give the gateway the same thing per model: a `LoadBalancer` and a runtime
(a `GpuFleet` on EC2, a `ModelService` on EKS) exposing the backend key and its version.
These are plain functions, not a component, so resources keep the parents (and URNs)
they have when built directly from the program.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import pulumi

from components.config import Inventory
from components.eks_cluster import GpuCluster, GpuClusterArgs
from components.gpu_fleet import GpuFleet, GpuFleetArgs, ec2_load_balancer_args
from components.k8s_addons import ClusterAddons, ClusterAddonsArgs
from components.k8s_monitoring import ALERTMANAGER_TARGET, prometheus_alert_rules
from components.keys import StackKeys
from components.load_balancer import LoadBalancer
from components.model_service import ModelService, ModelServiceArgs, eks_load_balancer_args
from components.network import Network
from components.runtimes import render_for_inventory


@dataclass
class Platform:
    load_balancers: dict[str, LoadBalancer] = field(default_factory=dict)
    runtimes: dict[str, Union[GpuFleet, ModelService]] = field(default_factory=dict)
    cluster: Optional[GpuCluster] = None
    addons: Optional[ClusterAddons] = None
    alert_rules: tuple = ()

    @property
    def fleets(self) -> dict[str, GpuFleet]:
        return {name: r for name, r in self.runtimes.items() if isinstance(r, GpuFleet)}

    @property
    def model_services(self) -> dict[str, ModelService]:
        return {name: r for name, r in self.runtimes.items() if isinstance(r, ModelService)}


def build_platform(inventory: Inventory, *, stack: str, network: Network, keys: StackKeys,
                   account_id: pulumi.Input[str], opts: pulumi.ResourceOptions) -> Platform:
    if inventory.platform == "ec2":
        return _build_ec2(inventory, network=network, keys=keys, account_id=account_id, opts=opts)
    return _build_eks(inventory, stack=stack, network=network, keys=keys, opts=opts)


def _build_ec2(inventory: Inventory, *, network: Network, keys: StackKeys,
               account_id: pulumi.Input[str], opts: pulumi.ResourceOptions) -> Platform:
    platform = Platform()
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
                         logs_key_arn=keys.logs_key_arn, data_key_grant=keys.autoscaling_grant),
            opts=opts)
    return platform


def _build_eks(inventory: Inventory, *, stack: str, network: Network, keys: StackKeys,
               opts: pulumi.ResourceOptions) -> Platform:
    cluster = GpuCluster(
        "eks",
        GpuClusterArgs(settings=inventory.eks, cluster_name=f"deepseek-{stack}", region=inventory.region,
                       environment=inventory.environment, vpc_id=network.vpc_id,
                       vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
                       data_key_arn=keys.data_key_arn, logs_key_arn=keys.logs_key_arn,
                       log_retention_days=inventory.observability.log_retention_days,
                       tags=inventory.tags, data_key_grant=keys.autoscaling_grant),
        opts=opts)
    # The Prometheus that feeds the autoscaler also evaluates the alert rules; the load
    # balancer controller may register targets only in target groups carrying these tags.
    alert_rules = prometheus_alert_rules(inventory, stack)
    addons = ClusterAddons(
        "eks-addons",
        ClusterAddonsArgs(cluster=cluster, target_group_tags={"project": "deepseek-serving", "stack": stack},
                          alert_rules=alert_rules, alertmanager_target=ALERTMANAGER_TARGET),
        opts=opts)
    platform = Platform(cluster=cluster, addons=addons, alert_rules=alert_rules)
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
                             addons=addons, load_balancer=load_balancer, data_key_arn=keys.data_key_arn),
            opts=opts)
    return platform
