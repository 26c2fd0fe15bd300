"""GPU capacity on EC2 for one model: launch template, auto scaling group, role, and API key.

The `ec2` platform's "single node or a few replicas behind a load balancer, container under
a restart policy" (the serving guide's simplest production shape), done properly:
- AMI: AWS's Deep Learning Base OSS NVIDIA Driver GPU AMI (Amazon Linux 2023), resolved at
  deploy time from its public SSM parameter (never a literal ID). A new AMI release becomes
  a new launch template version, which the instance refresh rolls out at 100% healthy.
- Instances: IMDSv2 required with hop limit 1, no public address, detailed monitoring,
  encrypted gp3 root and model-cache volumes, no key pair (Session Manager instead of SSH).
- Role: SSM core and the CloudWatch agent (managed policies), read of the model's weight
  prefix only, read of this model's API key secret only (and decrypt through Secrets
  Manager only).
- Auto scaling: ELB health checks with a grace period that covers image pull, weight
  download and model load; instance refresh and instance maintenance never drop below
  100% healthy (launch before terminate); target tracking on requests waiting per replica,
  a serving metric, never CPU. Scale-in waits for the target group's deregistration delay,
  so streams in flight finish before an instance terminates.
- Spot (a model's `spot`): a mixed instances policy keeps `on_demand_base` replicas
  on-demand and fills the rest with spot across interchangeable instance types
  (catalog.interchangeable_instances: same GPUs, at least the same host), allocated
  price-capacity-optimized, with capacity rebalancing (Auto Scaling replaces an instance
  that gets a rebalance recommendation before it is reclaimed). Each host drains itself on
  the two-minute notice (host.py WATCHER_SCRIPT).
- Schedules (a model's `schedule`): two scheduled actions raise the group's minimum at the
  start of business hours and lower it back at the end, in the schedule's time zone.
  Scale to zero (`min_replicas: 0`): components/ec2/wake.py.
Host configuration is rendered by components/ec2/host.py.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.ec2 import host as host_provisioning
from components.serving import runtimes, storage
from components.serving.images import HostImage, host_image
from components.serving.rollout import asg_max_size
from components.config import INVENTORY_KEY, PROJECT, Inventory, InventoryError, Model, stack_file_for
from components.load_balancer import HealthCheck, LoadBalancer, LoadBalancerArgs
from components.iam import service_trust_policy_json
from components.session_manager import session_logging_policy_json
from components.serving.catalog import spot_instance_types as catalog_spot_types

# AWS Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023), x86_64: NVIDIA
# driver, Docker and the NVIDIA container toolkit preinstalled; supports G5/G6/G6e/P4/P5
# (AWS DLAMI release notes). Public parameter path as used by AWS samples and terraform
# configurations alike.
GPU_AMI_PARAMETER = ("/aws/service/deeplearning/ami/x86_64/"
                     "base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id")
METRICS_NAMESPACE = "DeepSeek/Serving"
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
CLOUDWATCH_AGENT_POLICY = "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
# Root: the AMI's 75 GiB snapshot plus a 10-25 GB runtime image unpacked by Docker.
ROOT_VOLUME_GIB = 150
# Boot, package checks and agent start before the image pull begins.
BOOT_SECONDS = 300
# Conservative S3 -> EBS copy rate for the first download of the weights (MiB/s).
WEIGHTS_COPY_MIB_S = 150


@dataclass
class GpuFleetArgs:
    inventory: Inventory
    model: Model
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    load_balancer: LoadBalancer
    # Known at preview (get_caller_identity): the image reference in user data names it.
    account_id: str
    data_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    # Where the hosts' HTTPS may go (no internet): the interface endpoints' security group
    # and the S3 gateway endpoint's prefix list (components/network.py).
    endpoint_security_group_id: pulumi.Input[str]
    s3_prefix_list_id: pulumi.Input[str]
    # The stack's grant that lets Auto Scaling use the data key (components/keys.py).
    data_key_grant: Optional[pulumi.Resource] = None
    # The pull-through cache rules the image comes through: they exist before a host pulls.
    image_cache_rules: Sequence[pulumi.Resource] = ()
    partition: str = "aws"


def cache_volume_gib(launch: runtimes.RuntimeLaunch) -> int:
    """Model cache: the weights plus staging headroom (components/serving/storage.py)."""
    return storage.cache_volume_gib(launch.weights_gib, launch.runtime)


def health_check_grace_seconds(launch: runtimes.RuntimeLaunch) -> int:
    """Boot + image pull + first weight download + model load: no ELB verdict before that."""
    download = launch.weights_gib * 1024 / WEIGHTS_COPY_MIB_S
    total = BOOT_SECONDS + host_provisioning.IMAGE_PULL_SECONDS + download + launch.startup_budget_seconds
    return int(math.ceil(total / 60.0)) * 60


def max_instance_lifetime_seconds(model: Model) -> Optional[int]:
    """The ASG's maximum instance lifetime: None (unbounded) or at least a day (the API's
    minimum, 86400 s; Auto Scaling "Replace Auto Scaling instances based on maximum
    instance lifetime")."""
    if model.max_lifetime_days is None:
        return None
    return max(86400, model.max_lifetime_days * 86400)


def spot_instance_types(inventory: Inventory, model: Model) -> list[str]:
    """The model's instance type first (on-demand launches it), then the spot alternatives."""
    declared = inventory.gpu_instance_type(model)
    if model.spot is None:
        return [declared]
    return catalog_spot_types(declared, model.spot.instance_types)


def runtime_log_group_name(stack: str, model_name: str) -> str:
    return f"/deepseek/{stack}/{model_name}/runtime"


def scale_out_target(inventory: Inventory) -> float:
    """Requests waiting per replica the scaling policy holds: a quarter of the alarm level,
    so capacity is added well before the queue-depth alarm fires."""
    return float(max(1, inventory.observability.alarms.thresholds.queue_depth // 4))


def ec2_load_balancer_args(inventory: Inventory, model: Model, *, vpc_id: pulumi.Input[str],
                           subnet_ids: Sequence[pulumi.Input[str]], vpc_cidr: str,
                           subnet_cidrs: Sequence[str] = ()) -> LoadBalancerArgs:
    """The NLB in front of a GpuFleet: instance targets on the runtime's port, health from
    the host's gate (which answers 200 only while the model is listed and warmed up)."""
    settings = inventory.load_balancer
    return LoadBalancerArgs(
        model_name=model.name, vpc_id=vpc_id, subnet_ids=subnet_ids, vpc_cidr=vpc_cidr,
        subnet_cidrs=tuple(subnet_cidrs), certificate=settings.certificate, target_type="instance",
        target_port=runtimes.PORTS[model.runtime],
        health_check=HealthCheck(path="/ready", port=host_provisioning.HEALTH_GATE_PORT),
        deregistration_delay_seconds=settings.deregistration_delay_seconds,
        cross_zone=settings.cross_zone,
        unhealthy_draining_seconds=settings.unhealthy_draining_seconds,
        deletion_protection=inventory.environment == "prod")


class GpuFleet(pulumi.ComponentResource):
    asg_name: pulumi.Output[str]
    asg_arn: pulumi.Output[str]
    launch_template_id: pulumi.Output[str]
    instance_role_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    log_group_name: str
    launch: runtimes.RuntimeLaunch
    # What the hosts pull: the runtime image in ECR of the stack's region.
    image: HostImage
    user_data: str
    health_check_grace_seconds: int
    metrics_namespace: str

    def __init__(self, name: str, args: GpuFleetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:gpu_fleet:GpuFleet", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        inventory, model = args.inventory, args.model
        stack = pulumi.get_stack()
        self.metrics_namespace = METRICS_NAMESPACE
        # Inside the container the server listens on all of its own interfaces; the host
        # publishes the port on its private address only (host_provisioning).
        self.launch = runtimes.render_for_inventory(inventory, model, bind_host="0.0.0.0")
        self.health_check_grace_seconds = health_check_grace_seconds(self.launch)
        self.image = fleet_image(inventory, model, self.launch, account=args.account_id, stack=stack)

        self.log_group_name = runtime_log_group_name(stack, model.name)
        aws.cloudwatch.LogGroup(
            f"{name}-runtime-logs", name=self.log_group_name,
            retention_in_days=inventory.observability.log_retention_days,
            kms_key_id=args.logs_key_arn, opts=self._child)

        plan = host_plan(inventory, model, self.launch, self.image.reference, stack=stack)
        self.user_data = host_provisioning.render_user_data(plan)
        self._agent_config = self._create_agent_config(plan, args)

        role = self._create_role(args)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=self._child)
        self.security_group = self._create_security_group(args)
        self.launch_template = self._create_launch_template(args, profile)
        self.group = self._create_group(args)
        self._create_scaling_policy(inventory, model)
        self._create_schedule(model)
        if model.spot is not None:
            self._allow_drain(role, stack, model)

        self.asg_name = self.group.name
        self.asg_arn = self.group.arn
        self.launch_template_id = self.launch_template.id
        self.instance_role_arn = role.arn
        self.security_group_id = self.security_group.id
        self.register_outputs({
            "asg_name": self.asg_name,
            "launch_template_id": self.launch_template_id,
            "instance_role_arn": self.instance_role_arn,
            "security_group_id": self.security_group_id,
            "log_group_name": self.log_group_name,
        })

    # --- CloudWatch agent ---------------------------------------------------------------

    def _create_agent_config(self, plan: host_provisioning.HostPlan, args: GpuFleetArgs) -> list[pulumi.Resource]:
        """The agent's configuration as an SSM parameter (hosts fetch it at boot) and, where the
        agent scrapes the runtime, the log group its metric events land in (stack key, retention:
        the agent would otherwise create it unencrypted, kept forever)."""
        resources: list[pulumi.Resource] = []
        if plan.scrapes_runtime:
            resources.append(aws.cloudwatch.LogGroup(
                f"{self._name}-runtime-metrics", name=plan.prometheus_log_group_name,
                retention_in_days=args.inventory.observability.log_retention_days,
                kms_key_id=args.logs_key_arn, opts=self._child))
            resources.append(aws.ssm.Parameter(
                f"{self._name}-scrape-config", name=plan.scrape_config_parameter, type="String",
                tier="Standard", description=f"CloudWatch agent: Prometheus scrape of the {plan.model_name} runtime",
                value=json.dumps(host_provisioning.runtime_scrape_config(plan), separators=(",", ":"),
                                 sort_keys=True),
                opts=self._child))
        resources.append(aws.ssm.Parameter(
            f"{self._name}-agent-config", name=plan.agent_config_parameter, type="String", tier="Standard",
            description=f"CloudWatch agent configuration for the {plan.model_name} hosts",
            value=json.dumps(host_provisioning.cloudwatch_agent_config(plan), separators=(",", ":"), sort_keys=True),
            opts=self._child))
        return resources

    # --- identity ---------------------------------------------------------------------

    def _create_role(self, args: GpuFleetArgs) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{self._name}-role",
            assume_role_policy=service_trust_policy_json("ec2.amazonaws.com"),
            description=f"GPU hosts serving {args.model.name}",
            opts=self._child)
        # Session Manager replaces SSH (no key pair, no port 22); the agent ships logs/metrics.
        aws.iam.RolePolicyAttachment(f"{self._name}-ssm", role=role.name,
                                     policy_arn=SSM_CORE_POLICY, opts=self._child)
        # Sessions are logged and encrypted under the account's Session Manager preferences.
        aws.iam.RolePolicy(f"{self._name}-session-logging", role=role.id,
                           policy=session_logging_policy_json(args.account_id, args.inventory.region,
                                                              args.partition),
                           opts=self._child)
        aws.iam.RolePolicyAttachment(f"{self._name}-cloudwatch-agent", role=role.name,
                                     policy_arn=CLOUDWATCH_AGENT_POLICY, opts=self._child)
        # Two documents: weights and secret are named from inventory values, so reviewers and
        # the policy pack see them at preview; the KMS statement waits for the key's ARN.
        hf_token = _hf_token_secret_arn(args.model)
        aws.iam.RolePolicy(
            f"{self._name}-serving", role=role.id,
            policy=pulumi.Output.from_input(args.account_id).apply(lambda account: json.dumps(
                instance_policy(args.model, partition=args.partition,
                                secret_arns=self._readable_secret_arns(args, account, hf_token),
                                image=self.image))),
            opts=self._child)
        if hf_token:
            aws.iam.RolePolicy(
                f"{self._name}-decrypt-secret", role=role.id,
                policy=pulumi.Output.from_input(args.data_key_arn).apply(lambda key: json.dumps(
                    decrypt_policy(region=args.inventory.region, data_key_arn=key))),
                opts=self._child)
        return role

    def _readable_secret_arns(self, args: GpuFleetArgs, account: str, hf_token: Optional[str]) -> list[str]:
        return [hf_token] if hf_token else []

    # --- network ----------------------------------------------------------------------

    def _create_security_group(self, args: GpuFleetArgs) -> aws.ec2.SecurityGroup:
        lb = args.load_balancer
        group = aws.ec2.SecurityGroup(
            f"{self._name}-hosts", vpc_id=args.vpc_id,
            description=f"GPU hosts for {args.model.name}: model port from its load balancer only",
            tags={"Name": f"{self._name}-hosts", "model": args.model.name}, opts=self._child)
        # Ollama has no authentication: this reference to the NLB's group is its only guard.
        for role, port in (("model-port", lb.target_port), ("health-gate", lb.health_check_port)):
            aws.vpc.SecurityGroupIngressRule(
                f"{self._name}-from-lb-{role}", security_group_id=group.id,
                referenced_security_group_id=lb.security_group_id, ip_protocol="tcp",
                from_port=port, to_port=port,
                description=f"{role} from the {args.model.name} load balancer", opts=self._child)
        # HTTPS out to AWS only, never the internet: the interface endpoints (ECR, SSM, Secrets
        # Manager, Logs, CloudWatch, Auto Scaling, EC2, STS) by their security group, S3 (weights,
        # image layers, OS packages) by its gateway endpoint's prefix list. DNS to the VPC
        # resolver and NTP to 169.254.169.123 need no rule: security groups do not filter them
        # (Amazon VPC User Guide, "Security groups": traffic to the Route 53 Resolver, the Time
        # Sync Service and link-local addresses is not filtered).
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-to-endpoints", security_group_id=group.id, ip_protocol="tcp",
            from_port=443, to_port=443, referenced_security_group_id=args.endpoint_security_group_id,
            description="HTTPS to the VPC's interface endpoints", opts=self._child)
        aws.vpc.SecurityGroupEgressRule(
            f"{self._name}-to-s3", security_group_id=group.id, ip_protocol="tcp",
            from_port=443, to_port=443, prefix_list_id=args.s3_prefix_list_id,
            description="HTTPS to S3 through the gateway endpoint", opts=self._child)
        if args.model.weights.internet_egress:
            # The inventory's explicit opt-in (weights.internet_egress): hub downloads through the NAT.
            aws.vpc.SecurityGroupEgressRule(
                f"{self._name}-hub-over-internet", security_group_id=group.id, ip_protocol="tcp",
                from_port=443, to_port=443, cidr_ipv4="0.0.0.0/0",
                description="HTTPS to the model hub (weights.internet_egress)", opts=self._child)
        return group

    # --- compute ----------------------------------------------------------------------

    def _create_launch_template(self, args: GpuFleetArgs, profile: aws.iam.InstanceProfile):
        invoke = pulumi.InvokeOutputOptions(parent=self)
        ami_id = aws.ssm.get_parameter_output(name=GPU_AMI_PARAMETER, opts=invoke).insecure_value
        # The root device name differs between AMI families; read it from the image itself.
        root_device = aws.ec2.get_ami_output(
            owners=["amazon"], filters=[{"name": "image-id", "values": [ami_id]}],
            opts=invoke).root_device_name
        model = args.model
        instance_type = args.inventory.gpu_instance_type(model)
        return aws.ec2.LaunchTemplate(
            f"{self._name}-lt",
            description=f"{model.name} on {instance_type} ({self.launch.runtime})",
            image_id=ami_id,
            instance_type=instance_type,
            iam_instance_profile={"arn": profile.arn},
            ebs_optimized="true",
            # IMDSv2 only, and one hop: the container sits behind the docker bridge, so a
            # prompt-driven SSRF in the runtime cannot reach the instance credentials.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled"},
            monitoring={"enabled": True},
            network_interfaces=[{
                "device_index": 0,
                "associate_public_ip_address": "false",
                "delete_on_termination": "true",
                "security_groups": [self.security_group.id],
            }],
            block_device_mappings=[
                _volume(root_device, ROOT_VOLUME_GIB, args.data_key_arn),
                # Weights load at startup: more throughput than the gp3 baseline pays back.
                # On the instance store instead, the NVMe disks come with the instance (Nitro
                # encrypts them at rest) and cloud-init assembles them (host.py).
                *([] if model.local_storage == "instance_store" else [
                    _volume(host_provisioning.CACHE_DEVICE, cache_volume_gib(self.launch),
                            args.data_key_arn, iops=6000, throughput=500)]),
            ],
            # p5-class capacity: an On-Demand Capacity Reservation or a Capacity Block.
            **(model.capacity_reservation.launch_template_args() if model.capacity_reservation else {}),
            user_data=base64.b64encode(host_provisioning.user_data_payload(self.user_data, model.name)).decode(),
            update_default_version=True,
            tag_specifications=[
                {"resource_type": kind, "tags": {"Name": self._name, "model": model.name}}
                for kind in ("instance", "volume", "network-interface")],
            tags={"model": model.name},
            opts=self._child)

    def _capacity(self, args: GpuFleetArgs) -> dict:
        """Where instances come from: the launch template alone, or on-demand + spot."""
        version = self.launch_template.latest_version.apply(str)
        spot = args.model.spot
        if spot is None:
            return {"launch_template": {"id": self.launch_template.id, "version": version}}
        return {
            "mixed_instances_policy": {
                "instances_distribution": {
                    "on_demand_base_capacity": spot.on_demand_base,
                    "on_demand_percentage_above_base_capacity": spot.on_demand_percentage_above_base,
                    # The model's own type first for on-demand (what quotas were sized for).
                    "on_demand_allocation_strategy": "prioritized",
                    # Deepest spot pools at a low price: fewer interruptions than lowest-price.
                    "spot_allocation_strategy": "price-capacity-optimized",
                },
                "launch_template": {
                    "launch_template_specification": {"launch_template_id": self.launch_template.id,
                                                      "version": version},
                    "overrides": [{"instance_type": name}
                                  for name in spot_instance_types(args.inventory, args.model)],
                },
            },
            # Replace a spot instance on its rebalance recommendation, before the reclaim.
            "capacity_rebalance": True,
        }

    def _create_group(self, args: GpuFleetArgs) -> aws.autoscaling.Group:
        model = args.model
        grace = self.health_check_grace_seconds
        # Hosts read the agent's configuration at boot: it exists before the first one starts.
        return aws.autoscaling.Group(
            f"{self._name}-asg",
            vpc_zone_identifiers=list(args.subnet_ids),
            min_size=model.min_replicas,
            # One instance beyond max_replicas: an instance refresh launches before it
            # terminates, and at full scale it would otherwise wait for room that never comes
            # (components/serving/rollout.py). Throttles still count max_replicas only.
            max_size=asg_max_size(model.max_replicas),
            # No desired_capacity: it would reset what the scaling policy chose on every `up`.
            **self._capacity(args),
            target_group_arns=[args.load_balancer.target_group_arn],
            # The load balancer's verdict (the health gate: model listed and warmed up),
            # not just "the VM is running".
            health_check_type="ELB",
            health_check_grace_period=grace,
            default_instance_warmup=grace,
            # Rolling updates and health replacements launch first and terminate after:
            # serving capacity never drops below 100%.
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 100, "max_healthy_percentage": 200,
                "instance_warmup": str(grace), "skip_matching": True, "auto_rollback": True}},
            instance_maintenance_policy={"min_healthy_percentage": 100, "max_healthy_percentage": 200},
            # Periodic replacement against leaks and fragmentation (max_lifetime_days): the
            # maintenance policy above launches the replacement first, and termination waits
            # for the target group's deregistration delay, so streams finish.
            max_instance_lifetime=max_instance_lifetime_seconds(model),
            # `pulumi up` waits past the first model load instead of failing at 10 minutes.
            wait_for_capacity_timeout=f"{grace // 60 + 10}m",
            enabled_metrics=["GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity",
                             "GroupInServiceInstances", "GroupPendingInstances",
                             "GroupTerminatingInstances"],
            metrics_granularity="1Minute",
            tags=[{"key": "Name", "value": self._name, "propagate_at_launch": True},
                  {"key": "model", "value": model.name, "propagate_at_launch": True},
                  # Scopes the hosts' own drain permission to this group (see _allow_drain).
                  {"key": "stack", "value": pulumi.get_stack(), "propagate_at_launch": True}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                *([args.data_key_grant] if args.data_key_grant else []), *self._agent_config,
                *args.image_cache_rules]))

    def _allow_drain(self, role: aws.iam.Role, stack: str, model: Model) -> None:
        aws.iam.RolePolicy(f"{self._name}-drain", role=role.id,
                           policy=self.group.arn.apply(lambda arn: json.dumps(
                               drain_policy(group_arn=arn, stack=stack, model_name=model.name))),
                           opts=self._child)

    def _create_schedule(self, model: Model) -> None:
        """Business hours: the minimum rises at start and falls back at end (ASG scheduled
        actions take cron recurrences in the named time zone)."""
        schedule = model.schedule
        if schedule is None:
            return
        for role, clock, floor in (("business-hours-start", schedule.start, schedule.min_replicas),
                                   ("business-hours-end", schedule.end, model.min_replicas)):
            aws.autoscaling.Schedule(
                f"{self._name}-{role}", autoscaling_group_name=self.group.name,
                scheduled_action_name=f"{model.name}-{role}",
                recurrence=schedule.cron(clock), time_zone=schedule.timezone,
                min_size=floor, max_size=model.max_replicas, opts=self._child)

    def _create_scaling_policy(self, inventory: Inventory, model: Model) -> None:
        # NLBs publish no request count per target (that metric is ALB-only), so the
        # policy tracks the runtime's own queue: requests waiting per replica, published
        # by each host's health gate every minute (vLLM num_requests_waiting, TGI
        # queue size, Ollama connections beyond its parallel slots).
        aws.autoscaling.Policy(
            f"{self._name}-queue-depth",
            autoscaling_group_name=self.group.name,
            policy_type="TargetTrackingScaling",
            estimated_instance_warmup=self.health_check_grace_seconds,
            target_tracking_configuration={
                "target_value": scale_out_target(inventory),
                "customized_metric_specification": {
                    "namespace": METRICS_NAMESPACE,
                    "metric_name": "RequestsWaiting",
                    "statistic": "Average",
                    "unit": "Count",
                    "metric_dimensions": [{"name": "Stack", "value": pulumi.get_stack()},
                                          {"name": "Model", "value": model.name}],
                },
            },
            opts=self._child)


def drain_policy(*, group_arn: str, stack: str, model_name: str) -> dict:
    """A host may find its own group and put itself in Standby, in this model's group only.
    DescribeAutoScalingInstances has no resource-level permissions (read-only, on "*")."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "FindOwnGroup", "Effect": "Allow", "Action": "autoscaling:DescribeAutoScalingInstances",
         "Resource": "*"},
        {"Sid": "StandbyOnSpotNotice", "Effect": "Allow", "Action": "autoscaling:EnterStandby",
         "Resource": group_arn, "Condition": {"StringEquals": {
             "aws:ResourceTag/stack": stack, "aws:ResourceTag/model": model_name}}},
    ]}


def _volume(device: pulumi.Input[str], size_gib: int, kms_key_arn: pulumi.Input[str], *,
            iops: int = 3000, throughput: int = 125) -> dict:
    return {"device_name": device, "ebs": {
        "volume_type": "gp3", "volume_size": size_gib, "iops": iops, "throughput": throughput,
        "encrypted": "true", "kms_key_id": kms_key_arn, "delete_on_termination": "true"}}


def host_plan(inventory: Inventory, model: Model, launch: runtimes.RuntimeLaunch, image_reference: str, *,
              stack: str) -> host_provisioning.HostPlan:
    """Everything a model's hosts are provisioned from, all known at preview."""
    return host_provisioning.HostPlan(
        stack=stack, region=inventory.region, model_name=model.name, launch=launch,
        weights_source=model.weights.source, manifest_sha256=model.weights.manifest_sha256,
        s3_uri=model.weights.s3_uri, hf_repo=model.hf_repo, revision=model.revision,
        hf_token_secret_arn=_hf_token_secret_arn(model),
        log_group_name=runtime_log_group_name(stack, model.name), metrics_namespace=METRICS_NAMESPACE,
        spot=model.spot is not None, local_storage=model.local_storage, image=image_reference)


# Admission renders user data before the account is known (get_caller_identity needs the
# provider): every AWS account id has 12 digits, so the document's size and validity do
# not depend on which one.
ADMISSION_ACCOUNT = "000000000000"


def check_hosts(inventory: Inventory, stack: str) -> None:
    """Render every model's host user data before anything registers, so what cannot be
    provisioned (a hub token the host cannot fetch, a quote in a runtime argument, user data
    over EC2's 16 KB) is refused like a bad inventory value instead of failing mid-program."""
    problems = []
    for index, model in enumerate(inventory.models):
        try:
            launch = runtimes.render_for_inventory(inventory, model, bind_host="0.0.0.0")
            image = fleet_image(inventory, model, launch, account=ADMISSION_ACCOUNT, stack=stack)
            host_provisioning.render_user_data(host_plan(inventory, model, launch, image.reference, stack=stack))
        except host_provisioning.HostProvisioningError as error:
            problems.append(f"  {PROJECT}:{INVENTORY_KEY}.models[{index}] ({model.name}): {error}")
    if problems:
        raise InventoryError(f"{stack_file_for(stack)}: invalid inventory\n" + "\n".join(problems))


def _hf_token_secret_arn(model: Model) -> Optional[str]:
    """A hub token the host can fetch: only a Secrets Manager reference works on EC2."""
    if model.weights.source != "hub" or model.hf_token is None:
        return None
    if model.hf_token.secrets_manager_arn is None:
        raise host_provisioning.HostProvisioningError(
            f"model {model.name}: on platform ec2 the host fetches hf_token itself; give "
            f"hf_token as {{secrets_manager_arn: <arn>}} (a stack config secret cannot reach it)")
    return model.hf_token.secrets_manager_arn


def fleet_image(inventory: Inventory, model: Model, launch: runtimes.RuntimeLaunch, *, account: str,
                stack: str) -> HostImage:
    """What the model's hosts pull: its image in ECR of the stack's region (components/serving/images.py)."""
    if not isinstance(account, str):
        raise TypeError("GpuFleetArgs.account_id must be known at preview (aws.get_caller_identity): "
                        "the image reference in user data names the account's registry")
    return host_image(launch.image, account=account, region=inventory.region, stack=stack)


def image_statements(image: HostImage, partition: str) -> list[dict]:
    """Pull the model's one repository; through the cache, also import the upstream image into it
    and create it on the first pull (AWS, "IAM permissions required to sync an upstream registry
    with an Amazon ECR private registry"). GetAuthorizationToken has no resource-level permissions."""
    repository = image.repository_arn(partition)
    statements = [
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullRuntimeImage", "Effect": "Allow",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
         "Resource": repository},
    ]
    if image.upstream is not None:
        statements.append({"Sid": "FillPullThroughCache", "Effect": "Allow",
                           "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
                           "Resource": repository})
    return statements


def instance_policy(model: Model, *, partition: str, secret_arns: Sequence[str],
                    image: Optional[HostImage] = None) -> dict:
    """The hosts' own permissions beyond the managed SSM and CloudWatch agent policies."""
    statements: list[dict] = [] if image is None else image_statements(image, partition)
    weights = model.weights
    if weights.source == "s3":
        bucket, prefix = weights.s3_bucket, weights.s3_prefix or ""
        statements += [
            {"Sid": "ReadModelWeights", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:{partition}:s3:::{bucket}/{prefix}*"},
            {"Sid": "ListModelWeights", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:{partition}:s3:::{bucket}",
             "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}},
        ]
    if secret_arns:
        statements.append({"Sid": "ReadHubToken", "Effect": "Allow",
                           "Action": "secretsmanager:GetSecretValue", "Resource": list(secret_arns)})
    return {"Version": "2012-10-17", "Statement": statements}


def decrypt_policy(*, region: str, data_key_arn: str) -> dict:
    """Secrets the host reads are encrypted with the stack's data key: decrypt only via Secrets Manager."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "DecryptHubToken", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": data_key_arn,
        "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}}]}
