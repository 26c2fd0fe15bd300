"""Karpenter: GPU nodes sized to the pods that wait for them, spot first, on-demand behind.

With `eks.autoscaler: karpenter` (the default for new stacks) the GPU pools are not managed
node groups: Karpenter launches a node when a model pod cannot be scheduled and removes it
once it is empty. The system pool stays a managed node group; Karpenter runs there and never
manages it.

What is here and why:
- Controller: the `karpenter` chart from its OCI registry, pinned (KARPENTER_CHART). Its AWS
  identity is an EKS Pod Identity role (the cluster's `workload_role`, like every controller
  in this project), scoped the way Karpenter's own reference policy scopes it (launches and
  terminations only of resources tagged for this cluster and a nodepool), minus the
  instance-profile management: the instance profile is created here and named in the
  EC2NodeClass, so the controller never needs iam:CreateInstanceProfile. Region and cluster
  endpoint come from values: the nodes' IMDS hop limit of 1 keeps pods away from IMDS.
- Interruptions: an SQS queue (SSE, 5-minute retention as in Karpenter's getting-started
  template) fed by four EventBridge rules: spot interruption warnings, rebalance
  recommendations, instance state changes and AWS Health scheduled changes. Karpenter
  cordons and drains the node as soon as the warning arrives (two minutes before a spot
  reclaim) and launches the replacement in parallel. The queue policy admits EventBridge
  only for these four rules (aws:SourceArn), not for any rule in any account.
- EC2NodeClass, one per GPU pool: the AL2023 EKS AMI by a pinned alias (Karpenter picks the
  NVIDIA variant for GPU instance types; a new alias is a deliberate, drift-driven rollout),
  IMDSv2 required with a hop limit of 1, an encrypted gp3 root volume under the stack's data
  key, and `instanceStorePolicy: RAID0` so containerd and kubelet (image layers, emptyDir
  weights) live on the instance-store NVMe where the type has it.
- NodePool, one per GPU pool and capacity type, in the pool's order of preference: the
  first type has the highest weight, so with [spot, on-demand] Karpenter tries spot across
  every interchangeable instance type (catalog.interchangeable_instances) and falls back to
  on-demand (the declared type) when spot has no capacity. Each carries the GPU taint, the
  pool label model pods select, and a `nvidia.com/gpu` limit of max_size nodes' GPUs: a pool
  without limits would be unbounded capacity.
- No `k8s.amazonaws.com/accelerator` label or node-template tags (what the cluster
  autoscaler needs, components/eks/cluster.py): Karpenter knows each instance type's GPUs
  (`nvidia.com/gpu`) from EC2's instance data and labels its nodes `karpenter.k8s.aws/
  instance-gpu-*` itself, and the cluster autoscaler does not run beside it.
- Disruption that never cuts a live stream: consolidation only of empty nodes
  (WhenEmpty, after CONSOLIDATE_AFTER), a budget of one node at a time, `expireAfter: Never`
  (expiry is forceful in Karpenter v1 and ignores do-not-disrupt), and model pods carry
  `karpenter.sh/do-not-disrupt` (components/eks/model_service.py), so only an involuntary
  interruption (spot reclaim, health event) ever drains a node that serves.

Docs: https://karpenter.sh/docs/concepts/nodepools/ (weights, limits, disruption budgets),
https://karpenter.sh/docs/concepts/nodeclasses/ (alias, instanceStorePolicy, metadataOptions),
https://karpenter.sh/docs/concepts/disruption/ (interruption queue, do-not-disrupt, expiry).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config import NodePool
from components.eks.cluster import (DEVICE_PLUGIN_LABEL, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL,
                                    SYSTEM_POOL, GpuCluster)
from components.serving.catalog import get_instance, interchangeable_instances

# Chart 1.12.1 = Karpenter v1.12.1. The CRD schemas the tests validate against are those of
# @kubernetes-models/karpenter 2.0.0 (npm), generated from karpenter-provider-aws v1.12.1 and
# sigs.k8s.io/karpenter v1.12.0 (its go.mod in tommy351/kubernetes-models-ts
# third-party/karpenter): the pin follows the schema that can be checked offline. Karpenter
# 1.12 supports EKS 1.31-1.34 (karpenter.sh compatibility matrix). Confirm with
# `helm show chart oci://public.ecr.aws/karpenter/karpenter --version 1.12.1` before release.
KARPENTER_CHART = ("oci://public.ecr.aws/karpenter/karpenter", "1.12.1")
# The AL2023 EKS-optimized AMI release the nodes boot; Karpenter resolves the alias to the
# NVIDIA variant for GPU types. A new release is a one-line change that drifts nodes.
AL2023_ALIAS = "al2023@v20250410"
BOTTLEROCKET_ALIAS = "bottlerocket@1.43.0"
SERVICE_ACCOUNT = "karpenter"
NAMESPACE = "kube-system"
# An empty GPU node is removed this long after its last pod left: long enough that a
# scale-down followed by a scale-up (a new replica loading) reuses it.
CONSOLIDATE_AFTER = "10m"
# Weights by preference rank: the first capacity type wins when both can launch.
PREFERENCE_WEIGHTS = (100, 10)
# Instance types beyond the declared one a spot NodePool may use.
MAX_SPOT_TYPES = 4
# How long a drain may take when it must (spot reclaim aside): streams get their time.
TERMINATION_GRACE = "1h"

INTERRUPTION_EVENTS = {
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
}


def pool_instance_types(pool: NodePool, capacity_type: str) -> list[str]:
    """Spot draws on every interchangeable type (more spot pools, fewer interruptions);
    on-demand launches the declared type the quota and the cost estimate were sized for."""
    if capacity_type == "on-demand":
        return [pool.instance_type]
    return [i.name for i in interchangeable_instances(pool.instance_type)][:MAX_SPOT_TYPES]


def gpu_limit(pool: NodePool) -> int:
    return pool.max_size * get_instance(pool.instance_type).gpu_count


def node_pool_name(pool: NodePool, capacity_type: str) -> str:
    return f"{pool.name}-{capacity_type}"


def node_class_spec(pool: NodePool, *, instance_profile: pulumi.Input[str],
                    subnet_ids: Sequence[pulumi.Input[str]], security_group_id: pulumi.Input[str],
                    data_key_arn: pulumi.Input[str], tags: dict[str, str]) -> dict:
    alias = BOTTLEROCKET_ALIAS if pool.ami_type.startswith("BOTTLEROCKET") else AL2023_ALIAS
    ebs = {"volumeSize": f"{pool.root_volume_gib}Gi", "volumeType": "gp3", "iops": 6000,
           "throughput": 500, "encrypted": True, "kmsKeyID": data_key_arn, "deleteOnTermination": True}
    if pool.ami_type.startswith("BOTTLEROCKET"):
        # Bottlerocket: a small OS volume and a data volume for images and pods.
        devices = [{"deviceName": "/dev/xvda", "ebs": {**ebs, "volumeSize": "8Gi", "iops": 3000,
                                                        "throughput": 125}},
                   {"deviceName": "/dev/xvdb", "ebs": ebs, "rootVolume": True}]
    else:
        devices = [{"deviceName": "/dev/xvda", "ebs": ebs, "rootVolume": True}]
    return {
        "amiSelectorTerms": [{"alias": alias}],
        "instanceProfile": instance_profile,
        "subnetSelectorTerms": [{"id": subnet} for subnet in subnet_ids],
        # The cluster security group, as on managed nodes: the NLB-to-pod rules live there.
        "securityGroupSelectorTerms": [{"id": security_group_id}],
        "associatePublicIPAddress": False,
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": 1, "httpTokens": "required"},
        "blockDeviceMappings": devices,
        "instanceStorePolicy": "RAID0",
        "detailedMonitoring": True,
        "tags": dict(tags),
    }


def node_pool_spec(pool: NodePool, capacity_type: str, *, node_class: str) -> dict:
    rank = pool.capacity_types.index(capacity_type)
    labels = {POOL_LABEL: pool.name, "nvidia.com/gpu.present": "true"}
    if pool.ami_type.startswith("AL2023"):
        labels[DEVICE_PLUGIN_LABEL] = "true"
    return {
        "weight": PREFERENCE_WEIGHTS[rank],
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class},
                "taints": [{"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": "NoSchedule"}],
                "requirements": [
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity_type]},
                    {"key": "node.kubernetes.io/instance-type", "operator": "In",
                     "values": pool_instance_types(pool, capacity_type)},
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                ],
                "expireAfter": "Never",
                "terminationGracePeriod": TERMINATION_GRACE,
            },
        },
        "disruption": {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": CONSOLIDATE_AFTER,
            "budgets": [{"nodes": "1"}],
        },
        "limits": {"nvidia.com/gpu": str(gpu_limit(pool))},
    }


def controller_policy(*, partition: str, region: str, account_id: str, cluster_name: str,
                      queue_arn: str, node_role_arn: str, instance_profile_arn: str,
                      data_key_arn: str) -> dict:
    """Karpenter's reference controller policy (getting-started CloudFormation template,
    KarpenterControllerPolicy), narrowed: no instance-profile management (the profile is
    created here), the stack's data key only through EC2."""
    ec2 = f"arn:{partition}:ec2:{region}"
    owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    tagged = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    launched = [f"{ec2}:*:{kind}/*" for kind in ("fleet", "instance", "volume", "network-interface",
                                                 "launch-template")]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "LaunchFromSharedResources", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
         "Resource": [f"{ec2}::image/*", f"{ec2}::snapshot/*", f"{ec2}:*:spot-instances-request/*",
                      f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*", f"{ec2}:*:launch-template/*",
                      f"{ec2}:*:capacity-reservation/*"]},
        {"Sid": "LaunchTaggedForThisCluster", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
         "Resource": launched,
         "Condition": {"StringEquals": owned, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": launched,
         "Condition": {"StringEquals": {**owned, "ec2:CreateAction": ["RunInstances", "CreateFleet",
                                                                      "CreateLaunchTemplate"]},
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "TagOwnInstances", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": f"{ec2}:*:instance/*",
         "Condition": {"StringEquals": tagged, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                       "ForAllValues:StringEquals": {"aws:TagKeys": ["karpenter.sh/nodeclaim", "Name"]}}},
        {"Sid": "DeleteOwnResources", "Effect": "Allow",
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
         "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
         "Condition": {"StringEquals": tagged, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "RegionalReads", "Effect": "Allow", "Resource": "*",
         "Action": ["ec2:DescribeAvailabilityZones", "ec2:DescribeImages", "ec2:DescribeInstances",
                    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates", "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets",
                    "ec2:DescribeCapacityReservations"],
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "AmiAliases", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*"},
        {"Sid": "Prices", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {"Sid": "InterruptionQueue", "Effect": "Allow", "Resource": queue_arn,
         "Action": ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]},
        {"Sid": "PassNodeRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": node_role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "ReadNodeInstanceProfile", "Effect": "Allow", "Action": "iam:GetInstanceProfile",
         "Resource": instance_profile_arn},
        {"Sid": "EncryptedNodeVolumes", "Effect": "Allow", "Resource": data_key_arn,
         "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey",
                    "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"],
         "Condition": {"StringEquals": {"kms:ViaService": f"ec2.{region}.amazonaws.com"}}},
        {"Sid": "ClusterEndpoint", "Effect": "Allow", "Action": "eks:DescribeCluster",
         "Resource": f"arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}"},
    ]}


def queue_policy(queue_arn: str, rule_arns: Sequence[str]) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "InterruptionEventsFromThisStacksRules", "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": list(rule_arns)}}}]}


@dataclass
class KarpenterArgs:
    cluster: GpuCluster
    pools: Sequence[NodePool]
    region: str
    account_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    data_key_arn: pulumi.Input[str]
    partition: str = "aws"
    tags: Optional[dict[str, str]] = None


class Karpenter(pulumi.ComponentResource):
    """The Karpenter controller, its interruption queue, and a NodeClass + NodePools per GPU pool."""

    queue_arn: pulumi.Output[str]
    release: k8s.helm.v3.Release
    # NodePool objects by name (spec as registered), for tests and the cost estimate.
    node_pools: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KarpenterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:eks_karpenter:Karpenter", name, None, opts)
        self._name = name
        child = pulumi.ResourceOptions(parent=self)
        cluster = args.cluster

        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            # Interruption notices are useless after the two minutes they announce.
            message_retention_seconds=300,
            # SQS-managed SSE: EventBridge can deliver without a key policy grant.
            sqs_managed_sse_enabled=True,
            opts=child)
        self.queue_arn = queue.arn
        rules = []
        for role, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{role}", description=f"Karpenter interruption handling: {role}",
                event_pattern=json.dumps(pattern), opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{role}", rule=rule.name, arn=queue.arn,
                                       target_id="karpenter-interruption-queue", opts=child)
            rules.append(rule)
        aws.sqs.QueuePolicy(
            f"{name}-interruptions-policy", queue_url=queue.url,
            policy=pulumi.Output.all(queue.arn, *[r.arn for r in rules]).apply(
                lambda arns: json.dumps(queue_policy(arns[0], arns[1:]))),
            opts=child)

        profile = aws.iam.InstanceProfile(f"{name}-node-profile", role=cluster.node_role.name, opts=child)
        identity = cluster.workload_role(
            f"{name}-controller", namespace=NAMESPACE, service_account=SERVICE_ACCOUNT,
            policy=pulumi.Output.all(args.account_id, cluster.cluster_name, queue.arn, cluster.node_role_arn,
                                     profile.arn, args.data_key_arn).apply(
                lambda v: json.dumps(controller_policy(
                    partition=args.partition, region=args.region, account_id=v[0], cluster_name=v[1],
                    queue_arn=v[2], node_role_arn=v[3], instance_profile_arn=v[4], data_key_arn=v[5]))),
            parent=self, description="Karpenter controller: launch and retire this cluster's GPU nodes")

        chart, version = KARPENTER_CHART
        self.release = k8s.helm.v3.Release(
            f"{name}-controller",
            name="karpenter", chart=chart, version=version, namespace=NAMESPACE,
            values={
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "settings": {"clusterName": cluster.cluster_name, "clusterEndpoint": cluster.endpoint,
                             "interruptionQueue": queue.name},
                "replicas": 2,
                "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
                "controller": {"env": [{"name": "AWS_REGION", "value": args.region}]},
                "podDisruptionBudget": {"name": "karpenter", "maxUnavailable": 1},
            },
            atomic=True, cleanup_on_fail=True, max_history=5, timeout=900,
            opts=cluster.k8s_opts(self, depends_on=identity.resources))

        self.node_pools = {}
        for pool in args.pools:
            # Outputs stay leaves of the spec, so a preview shows every other field.
            spec = node_class_spec(pool, instance_profile=profile.name,
                                   security_group_id=cluster.cluster_security_group_id,
                                   data_key_arn=args.data_key_arn, subnet_ids=list(args.private_subnet_ids),
                                   tags={**(args.tags or {}), "deepseek-serving/pool": pool.name})
            node_class = k8s.apiextensions.CustomResource(
                f"{name}-{pool.name}-node-class", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
                metadata={"name": pool.name}, spec=spec,
                opts=cluster.k8s_opts(self, depends_on=[self.release]))
            for capacity_type in pool.capacity_types:
                object_name = node_pool_name(pool, capacity_type)
                self.node_pools[object_name] = k8s.apiextensions.CustomResource(
                    f"{name}-{object_name}", api_version="karpenter.sh/v1", kind="NodePool",
                    metadata={"name": object_name},
                    spec=node_pool_spec(pool, capacity_type, node_class=pool.name),
                    opts=cluster.k8s_opts(self, depends_on=[self.release, node_class]))

        self.register_outputs({"queue_arn": self.queue_arn})
