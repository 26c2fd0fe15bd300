"""Private networking: GPU capacity and endpoints live in private subnets only.

Public subnets exist solely to hold NAT gateways; nothing launched there gets a public
address. AWS APIs the hosts and pods need (ECR, STS, SSM, Logs, Secrets Manager, S3) are
reached through VPC endpoints, so model hosts pull images and weights without crossing
the internet and the NAT carries little.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.config import Network as NetworkSettings
from components.iam import service_trust_policy_json

# Interface endpoints every private GPU host or pod needs: image pulls (ECR api + dkr),
# role credentials (STS), Session Manager instead of SSH (ssm, ssmmessages, ec2messages, and
# kms: the agent decrypts KMS-encrypted session data, components/session_manager.py), logs,
# and the API key secret.
INTERFACE_ENDPOINT_SERVICES = (
    "ecr.api", "ecr.dkr", "sts", "ssm", "ssmmessages", "ec2messages", "kms", "logs", "secretsmanager",
)
# EC2 hosts have no internet egress, so every AWS API their scripts and agents call needs an
# endpoint too: the health gate publishes CloudWatch metrics (monitoring), the spot watcher
# puts its instance in Standby (autoscaling), and the CloudWatch agent reads the instance's
# Auto Scaling group from its tags (ec2 DescribeTags, for the AutoScalingGroupName dimension).
EC2_HOST_ENDPOINT_SERVICES = ("monitoring", "autoscaling", "ec2")

# AWS-owned buckets EC2 hosts read through the S3 gateway endpoint, besides the weights:
# - ECR image layers (AWS, "Amazon ECR interface VPC endpoints (AWS PrivateLink)", minimum
#   S3 gateway endpoint policy: https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html);
# - Amazon Linux 2023 packages (the CloudWatch agent or mdadm when the AMI lacks them): the
#   AL2023 repository definition's mirrorlist is
#   https://al2023-repos-$awsregion-de612dc2.s3.dualstack.$awsregion.$awsdomain/...;
# - SSM Agent updates (AWS Systems Manager, "SSM Agent communications with AWS managed S3
#   buckets": https://docs.aws.amazon.com/systems-manager/latest/userguide/ssm-agent-minimum-s3-permissions.html).
#   Patch Manager and Distributor buckets are left out: the hosts use neither.
AWS_OWNED_BUCKETS = ("prod-{region}-starport-layer-bucket", "al2023-repos-{region}-de612dc2", "amazon-ssm-{region}")


@dataclass
class NetworkArgs:
    settings: NetworkSettings
    region: str
    logs_key_arn: pulumi.Input[str]
    # Pins the flow-logs role to this account (aws:SourceAccount/aws:SourceArn).
    account_id: Optional[str] = None
    partition: str = "aws"
    # Extra tags on private subnets, e.g. the EKS internal-ELB role tag.
    private_subnet_tags: dict[str, str] = field(default_factory=dict)
    # Interface endpoints beyond INTERFACE_ENDPOINT_SERVICES (EC2_HOST_ENDPOINT_SERVICES on ec2).
    extra_interface_services: tuple[str, ...] = ()
    # Buckets whose objects the VPC may read through the S3 gateway endpoint (the models'
    # weights). None: the endpoint's policy stays AWS's default (full access), as on EKS,
    # where nodes pull third-party images whose blobs may sit in S3 buckets of the region.
    s3_read_buckets: Optional[tuple[str, ...]] = None


def subnet_plan(cidr: ipaddress.IPv4Network, az_count: int) -> tuple[list[str], list[str], list[str]]:
    """Private, public and load-balancer subnet CIDRs, one of each per AZ.

    The VPC is cut in eight; the first `az_count` eighths are private subnets (room for
    thousands of pod IPs on EKS). The last eighth is carved into small subnets: public ones
    that only ever hold NAT gateways, and private ones that only hold the internal NLBs, so
    a model's NetworkPolicy can admit the load balancers' addresses and nothing else in
    the VPC.
    """
    eighths = list(cidr.subnets(prefixlen_diff=3))
    private = [str(net) for net in eighths[:az_count]]
    small = [str(net) for net in eighths[-1].subnets(prefixlen_diff=5)]
    public = small[:az_count]
    load_balancer = small[az_count:2 * az_count]
    return private, public, load_balancer


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    # Subnets that hold only internal load balancers, and their CIDRs (known at preview).
    load_balancer_subnet_ids: list[pulumi.Output[str]]
    load_balancer_cidrs: list[str]
    availability_zones: list[pulumi.Output[str]]
    endpoint_security_group_id: pulumi.Output[str]
    # com.amazonaws.<region>.s3: the addresses the S3 gateway endpoint routes (for egress rules).
    s3_prefix_list_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("deepseek:network:Network", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        self.vpc_cidr = str(settings.cidr)
        private_cidrs, public_cidrs, load_balancer_cidrs = subnet_plan(settings.cidr, settings.az_count)

        if settings.availability_zones:
            # Chosen by the inventory (for example the zones that offer its GPUs).
            self.availability_zones = [pulumi.Output.from_input(zone) for zone in settings.availability_zones]
        else:
            zones = aws.get_availability_zones_output(
                state="available",
                filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            self.availability_zones = [
                zones.names.apply(lambda names, i=i: _zone(names, i, settings.az_count))
                for i in range(settings.az_count)
            ]

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=self.vpc_cidr, enable_dns_hostnames=True,
            enable_dns_support=True, tags={"Name": f"{name}-vpc"}, opts=self._child)
        self.vpc_id = self.vpc.id
        self._strip_default_security_group()

        public_subnets = self._create_public_subnets(public_cidrs)
        nat_ids = self._create_nat_gateways(public_subnets, settings.nat_gateways)
        private_subnets, private_route_tables = self._create_private_subnets(
            private_cidrs, nat_ids, args.private_subnet_tags)
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.load_balancer_cidrs = load_balancer_cidrs
        self.load_balancer_subnet_ids = [
            s.id for s in self._create_load_balancer_subnets(load_balancer_cidrs, private_route_tables)]

        self.endpoint_security_group_id = self._create_endpoints(
            args.region, private_route_tables)
        self._create_flow_logs(settings.flow_log_retention_days, args.logs_key_arn)

        self.register_outputs({
            "vpc_id": self.vpc_id,
            "private_subnet_ids": self.private_subnet_ids,
            "public_subnet_ids": self.public_subnet_ids,
            "load_balancer_subnet_ids": self.load_balancer_subnet_ids,
        })

    def _strip_default_security_group(self) -> None:
        # Adopting the default group with no rules removes AWS's allow-all-within-group
        # ingress and allow-all egress, so nothing can fall back on it.
        aws.ec2.DefaultSecurityGroup(
            f"{self._name}-default-sg", vpc_id=self.vpc.id, ingress=[], egress=[],
            tags={"Name": f"{self._name}-default-do-not-use"}, opts=self._child)

    def _create_public_subnets(self, cidrs: list[str]) -> list[aws.ec2.Subnet]:
        igw = aws.ec2.InternetGateway(f"{self._name}-igw", vpc_id=self.vpc.id, opts=self._child)
        table = aws.ec2.RouteTable(f"{self._name}-public-rt", vpc_id=self.vpc.id, opts=self._child)
        aws.ec2.Route(f"{self._name}-public-default", route_table_id=table.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=self._child)
        subnets = []
        for index, cidr in enumerate(cidrs):
            subnet = aws.ec2.Subnet(
                f"{self._name}-public-{index}", vpc_id=self.vpc.id, cidr_block=cidr,
                availability_zone=self.availability_zones[index],
                # NAT gateways bring their own Elastic IP; nothing else may get a public one.
                map_public_ip_on_launch=False,
                tags={"Name": f"{self._name}-public-{index}", "tier": "public-nat-only"},
                opts=self._child)
            aws.ec2.RouteTableAssociation(f"{self._name}-public-{index}", subnet_id=subnet.id,
                                          route_table_id=table.id, opts=self._child)
            subnets.append(subnet)
        return subnets

    def _create_nat_gateways(self, public_subnets: list[aws.ec2.Subnet], mode: str) -> list[pulumi.Output[str]]:
        count = 1 if mode == "single" else len(public_subnets)
        nat_ids = []
        for index in range(count):
            eip = aws.ec2.Eip(f"{self._name}-nat-{index}", domain="vpc",
                              tags={"Name": f"{self._name}-nat-{index}"}, opts=self._child)
            nat = aws.ec2.NatGateway(
                f"{self._name}-nat-{index}", allocation_id=eip.id,
                subnet_id=public_subnets[index].id, connectivity_type="public",
                tags={"Name": f"{self._name}-nat-{index}"}, opts=self._child)
            nat_ids.append(nat.id)
        return nat_ids

    def _create_private_subnets(self, cidrs: list[str], nat_ids: list[pulumi.Output[str]],
                                extra_tags: dict[str, str]):
        subnets, tables = [], []
        for index, cidr in enumerate(cidrs):
            subnet = aws.ec2.Subnet(
                f"{self._name}-private-{index}", vpc_id=self.vpc.id, cidr_block=cidr,
                availability_zone=self.availability_zones[index], map_public_ip_on_launch=False,
                tags={"Name": f"{self._name}-private-{index}", "tier": "private", **extra_tags},
                opts=self._child)
            table = aws.ec2.RouteTable(f"{self._name}-private-{index}-rt", vpc_id=self.vpc.id,
                                       opts=self._child)
            # With one NAT every zone shares it; with one per zone a zone outage stays local.
            aws.ec2.Route(f"{self._name}-private-{index}-default", route_table_id=table.id,
                          destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nat_ids[index % len(nat_ids)], opts=self._child)
            aws.ec2.RouteTableAssociation(f"{self._name}-private-{index}", subnet_id=subnet.id,
                                          route_table_id=table.id, opts=self._child)
            subnets.append(subnet)
            tables.append(table)
        return subnets, tables

    def _create_load_balancer_subnets(self, cidrs: list[str], private_route_tables) -> list[aws.ec2.Subnet]:
        subnets = []
        for index, cidr in enumerate(cidrs):
            subnet = aws.ec2.Subnet(
                f"{self._name}-lb-{index}", vpc_id=self.vpc.id, cidr_block=cidr,
                availability_zone=self.availability_zones[index], map_public_ip_on_launch=False,
                tags={"Name": f"{self._name}-lb-{index}", "tier": "internal-load-balancers"},
                opts=self._child)
            aws.ec2.RouteTableAssociation(f"{self._name}-lb-{index}", subnet_id=subnet.id,
                                          route_table_id=private_route_tables[index].id, opts=self._child)
            subnets.append(subnet)
        return subnets

    def _create_endpoints(self, region: str, private_route_tables) -> pulumi.Output[str]:
        args = self._args
        s3_policy = None if args.s3_read_buckets is None else json.dumps(
            s3_endpoint_policy(region=region, account_id=args.account_id, weights_buckets=args.s3_read_buckets,
                               partition=args.partition), sort_keys=True)
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[t.id for t in private_route_tables],
            policy=s3_policy, opts=self._child)
        self.s3_prefix_list_id = aws.ec2.get_prefix_list_output(
            name=f"com.amazonaws.{region}.s3", opts=pulumi.InvokeOutputOptions(parent=self)).id
        interface_policy = None if args.account_id is None else json.dumps(
            interface_endpoint_policy(args.account_id), sort_keys=True)
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints", vpc_id=self.vpc.id,
            description="Interface endpoints: HTTPS from inside the VPC only",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443,
                      "cidr_blocks": [self.vpc_cidr], "description": "HTTPS from the VPC"}],
            egress=[],
            opts=self._child)
        for service in (*INTERFACE_ENDPOINT_SERVICES, *args.extra_interface_services):
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}", vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=self.private_subnet_ids,
                security_group_ids=[endpoint_sg.id], policy=interface_policy, opts=self._child)
        return endpoint_sg.id

    def _flow_logs_trust(self) -> pulumi.Input[str]:
        account, region = self._args.account_id, self._args.region
        if account is None:
            return service_trust_policy_json("vpc-flow-logs.amazonaws.com")
        return service_trust_policy_json(
            "vpc-flow-logs.amazonaws.com", source_account=account,
            source_arn=f"arn:{self._args.partition}:ec2:{region}:{account}:vpc-flow-log/*")

    def _create_flow_logs(self, retention_days: int, logs_key_arn: pulumi.Input[str]) -> None:
        log_group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs", retention_in_days=retention_days, kms_key_id=logs_key_arn,
            opts=self._child)
        role = aws.iam.Role(
            f"{self._name}-flow-logs",
            assume_role_policy=self._flow_logs_trust(),
            opts=self._child)
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs", role=role.id,
            policy=log_group.arn.apply(lambda arn: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow",
                               "Action": ["logs:CreateLogStream", "logs:PutLogEvents",
                                          "logs:DescribeLogStreams"],
                               "Resource": [arn, f"{arn}:*"]}],
            })), opts=self._child)
        aws.ec2.FlowLog(
            f"{self._name}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL",
            log_destination_type="cloud-watch-logs", log_destination=log_group.arn,
            iam_role_arn=role.arn, max_aggregation_interval=60, opts=self._child)


def interface_endpoint_policy(account_id: str) -> dict:
    """Any action, by principals of this account only: credentials taken from elsewhere (another
    account's keys on a compromised host) cannot use the endpoint to reach their own account
    (AWS PrivateLink Guide, "Control access to VPC endpoints using endpoint policies")."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ThisAccountsPrincipalsOnly", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": account_id}}}]}


def s3_endpoint_policy(*, region: str, account_id: Optional[str], weights_buckets: tuple[str, ...],
                       partition: str = "aws") -> dict:
    """Reads of the weights buckets by this account, and of the AWS-owned buckets the hosts need
    (AWS_OWNED_BUCKETS, read anonymously or with AWS's presigned URLs, so no account condition);
    every other bucket, and every write, is refused at the endpoint."""
    weights = sorted(set(weights_buckets))
    statements = []
    if weights:
        statement = {
            "Sid": "ReadModelWeights", "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [arn for bucket in weights
                         for arn in (f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*")]}
        if account_id is not None:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalAccount": account_id}}
        statements.append(statement)
    statements.append({
        "Sid": "ReadAwsOwnedBuckets", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": [f"arn:{partition}:s3:::{bucket.format(region=region)}/*" for bucket in AWS_OWNED_BUCKETS]})
    return {"Version": "2012-10-17", "Statement": statements}


def _zone(names: list[str], index: int, wanted: int) -> str:
    if len(names) < wanted:
        raise ValueError(
            f"the region offers {len(names)} Availability Zones to this account but network.az_count "
            f"is {wanted}; lower az_count or choose another region")
    return names[index]
