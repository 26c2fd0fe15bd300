"""The EKS platform: a private cluster, its node pools, and the Kubernetes provider built from it.

Everything is built from pulumi-aws and pulumi-kubernetes primitives (no pulumi-eks, no
awsx): remote components are not expanded by the mock engine, so their children would
never reach the policy pack or the offline plan.

Choices worth knowing before changing anything here:
- The API endpoint is private. A public endpoint exists only when the inventory lists
  `eks.public_access_cidrs` (the validator already refuses anything wider than a /8), so
  `pulumi up` runs inside the VPC, over a VPN, or from those CI egress addresses.
- Authentication is `API` mode: access entries, never the aws-auth ConfigMap. Managed
  node groups get their EC2_LINUX access entries from EKS itself; the identity that runs
  `pulumi up` is the bootstrap admin (it must apply the workloads right after create);
  `eks.admin_role_arns` get AmazonEKSClusterAdminPolicy through their own entries.
- Workload identity is EKS Pod Identity (the eks-pod-identity-agent add-on plus one
  `PodIdentityAssociation` per service account) rather than IRSA: no OIDC provider or
  thumbprint to manage, and the trust policy names one service principal. The agent runs
  on the host network, so it keeps working with an IMDS hop limit of 1, which stops every
  other pod from reaching the node role's credentials.
- `bootstrap_self_managed_addons=False`: vpc-cni, kube-proxy, CoreDNS and the Pod
  Identity agent are EKS managed add-ons owned by this component, so each has exactly one
  owner and shows up in a plan. The VPC CNI is started with `enableNetworkPolicy` so the
  NetworkPolicies the model services declare are enforced (they are accepted but ignored
  without it: https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy.html).
- Node pools are managed node groups with launch templates: IMDSv2 required with a hop
  limit of 1, encrypted gp3 volumes under the stack's data key sized for 10-25 GB runtime
  images plus staged weights, no public addresses (private subnets only). GPU pools carry
  the `nvidia.com/gpu=true:NoSchedule` taint so only pods that ask for a GPU land there.
- For the cluster autoscaler, GPU nodes carry `k8s.amazonaws.com/accelerator` (how its AWS
  provider tells GPU nodes), and each GPU group's Auto Scaling group carries the
  `k8s.io/cluster-autoscaler/node-template/...` tags (labels, taint, GPUs, ephemeral
  storage, EFA devices) it needs to scale a group up from zero nodes: EKS does not copy a
  managed node group's labels or taints to its Auto Scaling group, and the autoscaler asks
  EKS for them only for a group that never had a node.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import Eks, NodePool
from components.eks.api_tunnel import tls_server_name, tunnelled_server
from components.iam import service_trust_policy_json
from components.session_manager import session_logging_policy_json
from components.serving.catalog import INSTANCES, InstanceSpec
from components.serving.storage import node_ephemeral_gib

# Label keys this project puts on nodes; pods select their pool with POOL_LABEL.
LABEL_PREFIX = "deepseek-serving"
POOL_LABEL = f"{LABEL_PREFIX}/pool"
# Only AL2023 NVIDIA nodes carry this: the device plugin DaemonSet requires it, so it never
# runs beside Bottlerocket's built-in plugin (two plugins would advertise GPUs twice).
DEVICE_PLUGIN_LABEL = f"{LABEL_PREFIX}/nvidia-device-plugin"
# Nodes with EFA interfaces: the EFA device plugin DaemonSet runs only there.
EFA_LABEL = f"{LABEL_PREFIX}/efa"
SYSTEM_POOL = "system"

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
# How the taint is tolerated in a pod spec (Kubernetes spelling of NO_SCHEDULE).
GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Equal", "value": GPU_TAINT_VALUE,
                  "effect": "NoSchedule"}

# The cluster autoscaler's AWS provider recognises GPU nodes by this label
# (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/aws_cloud_provider.go, GPULabel;
# README "Special note on GPU instances"). A node that carries it from the moment it joins
# counts as a GPU node still starting until the device plugin advertises nvidia.com/gpu, so the
# autoscaler does not add more nodes meanwhile, and scale-down judges it by its GPU requests.
GPU_ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
# Values as that provider names GPUs (availableGPUTypes there); others follow its pattern.
_ACCELERATOR_NAMES = {"A10G": "nvidia-a10g", "L4": "nvidia-l4", "L40S": "nvidia-l40s", "A100": "nvidia-tesla-a100"}
# What the autoscaler builds a node from when a group has none to look at (scale from zero):
# Auto Scaling group tags (same README, "node-template" tags). Managed node groups do not copy
# their labels, taints or tags to the group they create (aws/containers-roadmap#608; eksctl's
# `propagateASGTags` exists for this), so the tags are set on it here.
NODE_TEMPLATE_TAG = "k8s.io/cluster-autoscaler/node-template"
_TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
EFA_RESOURCE = "vpc.amazonaws.com/efa"

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"

# AMI type -> the block devices that hold the OS and the container images. Bottlerocket
# keeps images on a second (data) volume; AL2023 has one root volume.
_BOTTLEROCKET_OS_GIB = 8
_SYSTEM_ROOT_GIB = 100


def _managed_policy(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


@dataclass
class GpuPoolInfo:
    """What a model service needs to know about the pool it runs on."""

    name: str
    instance_type: str
    ami_type: str
    # The nodeSelector that pins a pod to this pool.
    node_selector: dict[str, str]
    needs_device_plugin: bool
    # EFA interfaces per node (0: none); pods of multi-node replicas request them.
    efa_interfaces: int = 0
    # Where pod ephemeral storage lives: "ebs" (root volume) or "instance_store" (NVMe RAID0).
    local_storage: str = "ebs"


@dataclass
class WorkloadIdentity:
    """An IAM role bound to one service account; pods must start after both exist (the Pod
    Identity webhook injects credentials at admission only when the association exists)."""

    role: aws.iam.Role
    association: aws.eks.PodIdentityAssociation

    @property
    def resources(self) -> list[pulumi.Resource]:
        return [self.role, self.association]


@dataclass
class GpuClusterArgs:
    settings: Eks
    # Physical cluster name: the control-plane log group is named after it and must exist
    # before the cluster does (EKS would otherwise create it unencrypted, kept forever).
    cluster_name: str
    region: str
    environment: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: Sequence[pulumi.Input[str]]
    data_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    partition: str = "aws"
    # Pins Pod Identity roles to this account (aws:SourceAccount).
    account_id: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    # The stack's grant that lets Auto Scaling (which launches managed nodes) use the data key.
    data_key_grant: Optional[pulumi.Resource] = None


class GpuCluster(pulumi.ComponentResource):
    """A private EKS cluster with a CPU system pool, tainted GPU pools and a Kubernetes provider."""

    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    # The security group EKS attaches to the control plane and, with no group in the launch
    # template, to every managed node: pod ENIs use it, so load balancer rules go here.
    cluster_security_group_id: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    gpu_pools: dict[str, GpuPoolInfo]
    # Resources Kubernetes objects must wait for (nodes and core add-ons).
    ready: list[pulumi.Resource]
    kubernetes_version: str
    # "karpenter" or "cluster-autoscaler": who owns the GPU nodes.
    autoscaler: str
    node_role: aws.iam.Role
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    # Services' ClusterIP range; its first address is the API server's `kubernetes` Service.
    service_cidr: str
    region: str

    def __init__(self, name: str, args: GpuClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:eks_cluster:GpuCluster", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        self.kubernetes_version = settings.kubernetes_version
        self.autoscaler = settings.autoscaler
        self.vpc_id = pulumi.Output.from_input(args.vpc_id)
        self.vpc_cidr = args.vpc_cidr
        self.service_cidr = str(settings.service_cidr)
        self.region = args.region

        cluster_role = self._create_cluster_role()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=self._child)
        self.cluster = self._create_cluster(cluster_role, log_group)
        self.cluster_name = self.cluster.name
        self.cluster_arn = self.cluster.arn
        self.endpoint = self.cluster.endpoint
        self.cluster_security_group_id = self.cluster.vpc_config.cluster_security_group_id
        self._create_admin_access(settings.admin_role_arns)

        early_addons = self._create_addons_before_nodes()
        node_role = self._create_node_role()
        self.node_role = node_role
        self.node_role_arn = node_role.arn
        system_group = self._create_system_pool(node_role, early_addons)
        self.gpu_pools = {_pool_info(pool).name: _pool_info(pool) for pool in settings.gpu_pools}
        # With Karpenter the GPU nodes are its NodePools (components/eks/karpenter.py); they
        # join with the node role, whose access entry EKS made for the system node group.
        gpu_groups = ([] if settings.autoscaler == "karpenter"
                      else [self._create_gpu_pool(pool, node_role, early_addons) for pool in settings.gpu_pools])
        coredns = aws.eks.Addon(
            f"{name}-coredns", cluster_name=self.cluster.name, addon_name="coredns",
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            # CoreDNS needs a node to run on; created earlier it would sit DEGRADED.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system_group]))
        self.ready = [system_group, *gpu_groups, *early_addons, coredns]

        tunnel_port = settings.api_tunnel_port if settings.api_access == "ssm_tunnel" else None
        self.kubeconfig = pulumi.Output.all(
            self.cluster.name, self.cluster.endpoint, self.cluster.certificate_authority.data,
        ).apply(lambda parts: _kubeconfig(parts[0], parts[1], parts[2], args.region, tunnel_port))
        # Never an ambient kubeconfig: every Kubernetes object gets this provider explicitly.
        # The cluster's ARN identifies it, so reaching it another way (a tunnel, or from
        # inside the VPC) updates the provider instead of replacing every object it manages.
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig, enable_server_side_apply=True,
            cluster_identifier=self.cluster.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.ready))

        self.register_outputs({
            "cluster_name": self.cluster_name,
            "cluster_arn": self.cluster_arn,
            "endpoint": self.endpoint,
            "cluster_security_group_id": self.cluster_security_group_id,
            "node_role_arn": self.node_role_arn,
        })

    # --- public helpers --------------------------------------------------------------

    def k8s_opts(self, parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
        """Options for a Kubernetes object: this cluster's provider, never an ambient one."""
        return pulumi.ResourceOptions(parent=parent, provider=self.provider,
                                      depends_on=list(depends_on) or None)

    def workload_role(self, name: str, *, namespace: str, service_account: pulumi.Input[str],
                      policy: pulumi.Input[str], parent: pulumi.Resource,
                      description: str) -> WorkloadIdentity:
        """An IAM role for one Kubernetes service account, bound through EKS Pod Identity.

        The association binds the role to one service account; the trust policy says the
        same through the session tags Pod Identity sets (cluster, namespace, service
        account), so an association made elsewhere in the account cannot use the role.
        """
        child = pulumi.ResourceOptions(parent=parent)
        role = aws.iam.Role(
            f"{name}-role", description=description,
            # Pod Identity tags sessions with cluster, namespace and service account.
            assume_role_policy=service_trust_policy_json(
                POD_IDENTITY_PRINCIPAL, tag_session=True, source_account=self._args.account_id,
                request_tags={"eks-cluster-name": self._args.cluster_name,
                              "kubernetes-namespace": namespace,
                              "kubernetes-service-account": service_account}),
            opts=child)
        aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity", cluster_name=self.cluster.name, namespace=namespace,
            service_account=service_account, role_arn=role.arn, opts=child)
        return WorkloadIdentity(role, association)

    # --- control plane ---------------------------------------------------------------

    def _create_cluster_role(self) -> aws.iam.Role:
        partition = self._args.partition
        role = aws.iam.Role(
            f"{self._name}-cluster-role",
            assume_role_policy=service_trust_policy_json("eks.amazonaws.com", tag_session=True),
            opts=self._child)
        self._cluster_policy = aws.iam.RolePolicyAttachment(
            f"{self._name}-cluster-policy", role=role.name,
            policy_arn=_managed_policy(partition, "AmazonEKSClusterPolicy"), opts=self._child)
        # Envelope encryption: the control plane wraps each secret's data key with the
        # stack's data key; the key policy delegates to IAM, so the role is granted here.
        self._cluster_kms = aws.iam.RolePolicy(
            f"{self._name}-cluster-kms", role=role.id,
            policy=pulumi.Output.from_input(self._args.data_key_arn).apply(lambda arn: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow",
                               "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey",
                                          "kms:ListGrants", "kms:CreateGrant"],
                               "Resource": arn}],
            })),
            opts=self._child)
        return role

    def _create_cluster(self, role: aws.iam.Role, log_group: aws.cloudwatch.LogGroup) -> aws.eks.Cluster:
        settings = self._args.settings
        public_cidrs = [str(cidr) for cidr in settings.public_access_cidrs]
        vpc_config: dict = {
            "subnet_ids": list(self._args.private_subnet_ids),
            "endpoint_private_access": True,
            # Public only when the inventory lists who may reach it; never 0.0.0.0/0.
            "endpoint_public_access": bool(public_cidrs),
        }
        if public_cidrs:
            vpc_config["public_access_cidrs"] = public_cidrs
        return aws.eks.Cluster(
            f"{self._name}-cluster",
            name=self._args.cluster_name,
            role_arn=role.arn,
            version=settings.kubernetes_version,
            vpc_config=vpc_config,
            encryption_config={"provider": {"key_arn": self._args.data_key_arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            access_config={
                "authentication_mode": "API",
                # The identity running `pulumi up` applies the workloads right after create.
                "bootstrap_cluster_creator_admin_permissions": True,
            },
            kubernetes_network_config={"service_ipv4_cidr": str(settings.service_cidr),
                                       "ip_family": "ipv4"},
            bootstrap_self_managed_addons=False,
            # Deleting prod's cluster takes a deliberate change first.
            deletion_protection=self._args.environment == "prod",
            tags={"Name": self._args.cluster_name},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self._cluster_policy, self._cluster_kms, log_group]))

    def _create_admin_access(self, admin_role_arns: list[str]) -> None:
        for index, principal in enumerate(admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{self._name}-admin-{index}", cluster_name=self.cluster.name,
                principal_arn=principal, type="STANDARD", opts=self._child)
            aws.eks.AccessPolicyAssociation(
                f"{self._name}-admin-{index}", cluster_name=self.cluster.name,
                principal_arn=principal, policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]))

    def _create_addons_before_nodes(self) -> list[aws.eks.Addon]:
        # Nodes only turn Ready with a CNI and kube-proxy; the Pod Identity agent must be
        # there before any workload asks for credentials.
        def addon(role: str, addon_name: str, configuration: Optional[dict] = None) -> aws.eks.Addon:
            return aws.eks.Addon(
                f"{self._name}-{role}", cluster_name=self.cluster.name, addon_name=addon_name,
                configuration_values=json.dumps(configuration) if configuration else None,
                resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                opts=self._child)

        return [
            addon("vpc-cni", "vpc-cni", {"enableNetworkPolicy": "true"}),
            addon("kube-proxy", "kube-proxy"),
            addon("pod-identity-agent", "eks-pod-identity-agent"),
        ]

    # --- nodes -----------------------------------------------------------------------

    def _create_node_role(self) -> aws.iam.Role:
        partition = self._args.partition
        role = aws.iam.Role(
            f"{self._name}-node-role",
            assume_role_policy=service_trust_policy_json("ec2.amazonaws.com"),
            opts=self._child)
        # Worker + CNI + ECR pulls, and SSM instead of SSH. Pods cannot borrow any of this:
        # the IMDS hop limit of 1 keeps the node role on the host network.
        self._node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{self._name}-node-{policy.lower()}", role=role.name,
                policy_arn=_managed_policy(partition, policy), opts=self._child)
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                           "AmazonEC2ContainerRegistryReadOnly", "AmazonSSMManagedInstanceCore")
        ]
        # Sessions are logged and encrypted under the account's Session Manager preferences.
        aws.iam.RolePolicy(
            f"{self._name}-node-session-logging", role=role.id,
            policy=session_logging_policy_json(self._args.account_id or "*", self._args.region, partition),
            opts=self._child)
        return role

    def _launch_template(self, role: str, ami_type: str, volume_gib: int,
                         extra: Optional[dict] = None) -> aws.ec2.LaunchTemplate:
        ebs = {"volume_type": "gp3", "encrypted": "true", "kms_key_id": self._args.data_key_arn,
               "delete_on_termination": "true"}
        if ami_type.startswith("BOTTLEROCKET"):
            # Bottlerocket: a small OS volume and a data volume that holds images and pods.
            devices = [
                {"device_name": "/dev/xvda", "ebs": {**ebs, "volume_size": _BOTTLEROCKET_OS_GIB}},
                {"device_name": "/dev/xvdb", "ebs": {**ebs, "volume_size": volume_gib,
                                                     "iops": 6000, "throughput": 500}},
            ]
        else:
            # gp3 above its 3000 IOPS / 125 MB/s baseline: image pulls and weight staging
            # are the critical path of a replica's cold start.
            devices = [{"device_name": "/dev/xvda", "ebs": {**ebs, "volume_size": volume_gib,
                                                            "iops": 6000, "throughput": 500}}]
        tags = {**self._args.tags, "Name": f"{self._args.cluster_name}-{role}"}
        return aws.ec2.LaunchTemplate(
            f"{self._name}-{role}-lt",
            description=f"EKS {role} nodes: IMDSv2 only, hop limit 1, encrypted volumes",
            update_default_version=True,
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                # Containers are one hop further than the host: with 1 they cannot reach
                # IMDS, so a compromised model server cannot take the node's credentials.
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            block_device_mappings=devices,
            # Provider default tags stop at the launch template: instances and volumes the
            # node group launches need their own.
            tag_specifications=[{"resource_type": "instance", "tags": tags},
                                {"resource_type": "volume", "tags": tags}],
            **(extra or {}),
            opts=self._child)

    def _node_group(self, role: str, *, instance_type: str, ami_type: str, min_size: int,
                    max_size: int, labels: dict[str, str], taints: list[dict],
                    launch_template: aws.ec2.LaunchTemplate, node_role: aws.iam.Role,
                    depends_on: list[pulumi.Resource], capacity_type: str = "ON_DEMAND",
                    subnet_ids: Optional[list] = None) -> aws.eks.NodeGroup:
        return aws.eks.NodeGroup(
            f"{self._name}-{role}",
            cluster_name=self.cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=subnet_ids or list(self._args.private_subnet_ids),
            ami_type=ami_type,
            capacity_type=capacity_type,
            instance_types=[instance_type],
            scaling_config={"min_size": min_size, "max_size": max_size, "desired_size": min_size},
            update_config={"max_unavailable": 1},
            labels=labels,
            taints=taints,
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            # Managed node groups replace unhealthy nodes (GPU Xid errors, NotReady) themselves.
            node_repair_config={"enabled": True},
            tags={"Name": f"{self._args.cluster_name}-{role}"},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*self._node_policies, *depends_on,
                                         *([self._args.data_key_grant] if self._args.data_key_grant else [])],
                # The cluster autoscaler owns the current size between min and max.
                ignore_changes=["scalingConfig.desiredSize"]))

    def _create_system_pool(self, node_role: aws.iam.Role, addons: list[aws.eks.Addon]) -> aws.eks.NodeGroup:
        system = self._args.settings.system_pool
        ami_type = "AL2023_x86_64_STANDARD"
        return self._node_group(
            SYSTEM_POOL, instance_type=system.instance_type, ami_type=ami_type,
            min_size=system.min_size, max_size=system.max_size,
            labels={POOL_LABEL: SYSTEM_POOL}, taints=[],
            launch_template=self._launch_template(SYSTEM_POOL, ami_type, _SYSTEM_ROOT_GIB),
            node_role=node_role, depends_on=addons)

    def _create_gpu_pool(self, pool: NodePool, node_role: aws.iam.Role,
                         addons: list[aws.eks.Addon]) -> aws.eks.NodeGroup:
        labels = {POOL_LABEL: pool.name, "nvidia.com/gpu.present": "true"}
        instance = INSTANCES.get(pool.instance_type)
        if instance is not None:
            labels[GPU_ACCELERATOR_LABEL] = accelerator_label(instance)
        if self.gpu_pools[pool.name].needs_device_plugin:
            labels[DEVICE_PLUGIN_LABEL] = "true"
        efa_interfaces = self.gpu_pools[pool.name].efa_interfaces
        if efa_interfaces:
            labels[EFA_LABEL] = "true"
        role = f"pool-{pool.name}"
        extra: dict = {}
        subnet_ids = None
        if pool.local_storage == "instance_store":
            extra["user_data"] = base64.b64encode(nodeadm_user_data().encode()).decode()
        if pool.capacity_reservation is not None:
            extra.update(pool.capacity_reservation.launch_template_args())
        if efa_interfaces:
            extra.update(self._efa_placement(role, efa_interfaces))
            # A cluster placement group lives in one Availability Zone.
            subnet_ids = [self._args.private_subnet_ids[0]]
        # A Capacity Block is its own capacity type for managed node groups
        # (https://docs.aws.amazon.com/eks/latest/userguide/capacity-blocks-mng.html).
        capacity_type = ("CAPACITY_BLOCK" if pool.capacity_reservation is not None
                         and pool.capacity_reservation.market_type == "capacity-block"
                         else pool.capacity_types[0].upper().replace("-", "_"))
        taints = [{"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": "NO_SCHEDULE"}]
        group = self._node_group(
            role, instance_type=pool.instance_type, ami_type=pool.ami_type,
            min_size=pool.min_size, max_size=pool.max_size, labels=labels, taints=taints,
            launch_template=self._launch_template(role, pool.ami_type, pool.root_volume_gib, extra),
            node_role=node_role, depends_on=addons, capacity_type=capacity_type,
            subnet_ids=subnet_ids)
        # The template's CPU, memory and GPUs come from the instance type; model pods also
        # request ephemeral storage (and EFA devices), which only a tag can tell.
        resources: dict[str, str] = {}
        if instance is not None:
            resources["nvidia.com/gpu"] = str(instance.gpu_count)
            resources["ephemeral-storage"] = f"{node_ephemeral_gib(pool, instance)}Gi"
        if efa_interfaces:
            resources[EFA_RESOURCE] = str(efa_interfaces)
        self._tag_node_template(role, group, node_template_tags(labels, taints, resources))
        return group

    def _tag_node_template(self, role: str, group: aws.eks.NodeGroup, tags: dict[str, str]) -> None:
        """One tag per fact on the group's Auto Scaling group, not copied to its instances."""
        asg_name = group.resources.apply(_autoscaling_group_name)
        for key, value in tags.items():
            slug = "-".join(filter(None, re.split(r"[^a-z0-9]+", key.removeprefix(NODE_TEMPLATE_TAG).lower())))
            aws.autoscaling.Tag(
                f"{self._name}-{role}-ca-{slug}", autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False}, opts=self._child)

    def _efa_placement(self, role: str, interfaces: int) -> dict:
        """EFA for a pool: a security group that admits all traffic from and to itself (EFA's
        requirement: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-start.html#efa-start-security),
        a cluster placement group, and one EFA interface per network card. With interfaces in
        the launch template EKS no longer attaches the cluster security group itself, so it is
        listed on every interface."""
        efa_group = aws.ec2.SecurityGroup(
            f"{self._name}-{role}-efa", vpc_id=self._args.vpc_id,
            description=f"EFA traffic between {role} nodes only",
            tags={"Name": f"{self._args.cluster_name}-{role}-efa"}, opts=self._child)
        aws.vpc.SecurityGroupIngressRule(
            f"{self._name}-{role}-efa-in", security_group_id=efa_group.id,
            referenced_security_group_id=efa_group.id, ip_protocol="-1",
            description="EFA: all traffic from this group", opts=self._child)
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-{role}-efa-out", security_group_id=efa_group.id,
            referenced_security_group_id=efa_group.id, ip_protocol="-1",
            description="EFA: all traffic to this group", opts=self._child)
        placement = aws.ec2.PlacementGroup(
            f"{self._name}-{role}-placement", strategy="cluster",
            tags={"Name": f"{self._args.cluster_name}-{role}"}, opts=self._child)
        groups = [self.cluster_security_group_id, efa_group.id]
        return {
            "placement": {"group_name": placement.name},
            "network_interfaces": [
                {"device_index": 0 if card == 0 else 1, "network_card_index": card,
                 "interface_type": "efa", "associate_public_ip_address": "false",
                 "delete_on_termination": "true", "security_groups": groups}
                for card in range(interfaces)],
        }


def nodeadm_user_data() -> str:
    """AL2023 node configuration that puts kubelet and containerd on the instance store:
    nodeadm assembles the NVMe disks as RAID0 and mounts them over /var/lib/kubelet and
    /var/lib/containerd (`spec.instance.localStorage.strategy: RAID0`,
    https://awslabs.github.io/amazon-eks-ami/nodeadm/doc/api/). Managed node groups merge
    this MIME part with their own cluster settings
    (https://docs.aws.amazon.com/eks/latest/userguide/launch-templates.html)."""
    node_config = ("---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n"
                   "spec:\n  instance:\n    localStorage:\n      strategy: RAID0\n")
    return ("MIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="//"\n\n'
            "--//\nContent-Type: application/node.eks.aws\n\n"
            f"{node_config}\n--//--\n")


def accelerator_label(instance: InstanceSpec) -> str:
    """The cluster autoscaler's GPU type name for an instance's GPU (nvidia-l40s, nvidia-h100...)."""
    name = instance.aws_gpu_name
    return _ACCELERATOR_NAMES.get(name, f"nvidia-{name.lower()}")


def node_template_tags(labels: dict[str, str], taints: list[dict], resources: dict[str, str]) -> dict[str, str]:
    """Auto Scaling group tags describing a group's nodes to the cluster autoscaler: every label
    and taint the nodes get (taints in the managed node group's NO_SCHEDULE spelling), and
    resources beyond what the instance type tells it."""
    tags = {f"{NODE_TEMPLATE_TAG}/label/{key}": value for key, value in labels.items()}
    tags.update({f"{NODE_TEMPLATE_TAG}/taint/{taint['key']}": f"{taint['value']}:{_TAINT_EFFECTS[taint['effect']]}"
                 for taint in taints})
    tags.update({f"{NODE_TEMPLATE_TAG}/resources/{name}": value for name, value in resources.items()})
    return tags


def _autoscaling_group_name(resources) -> str:
    # A managed node group has one Auto Scaling group (DescribeNodegroup resources).
    (group,) = resources[0].autoscaling_groups
    return group.name


def _pool_info(pool: NodePool) -> GpuPoolInfo:
    instance = INSTANCES.get(pool.instance_type)
    return GpuPoolInfo(name=pool.name, instance_type=pool.instance_type, ami_type=pool.ami_type,
                       node_selector={POOL_LABEL: pool.name},
                       needs_device_plugin=pool.ami_type.startswith("AL2023"),
                       efa_interfaces=instance.efa_interfaces if instance and pool.efa else 0,
                       local_storage=pool.local_storage)


def _kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str,
                tunnel_port: Optional[int] = None) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no static credentials).

    Through the SSM tunnel the server is the local end of the port forward, and TLS still
    verifies the cluster's own name (`tls-server-name`) against its CA."""
    cluster = {"server": endpoint, "certificate-authority-data": ca_data}
    if tunnel_port is not None:
        cluster = {"server": tunnelled_server(tunnel_port), "certificate-authority-data": ca_data,
                   "tls-server-name": tls_server_name(endpoint)}
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region,
                     "--output", "json"],
            "interactiveMode": "Never",
        }}}],
    })
