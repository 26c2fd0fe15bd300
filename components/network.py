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
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[t.id for t in private_route_tables],
            opts=self._child)
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints", vpc_id=self.vpc.id,
            description="Interface endpoints: HTTPS from inside the VPC only",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443,
                      "cidr_blocks": [self.vpc_cidr], "description": "HTTPS from the VPC"}],
            egress=[],
            opts=self._child)
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}", vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=self.private_subnet_ids,
                security_group_ids=[endpoint_sg.id], opts=self._child)
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


def _zone(names: list[str], index: int, wanted: int) -> str:
    if len(names) < wanted:
        raise ValueError(
            f"the region offers {len(names)} Availability Zones to this account but network.az_count "
            f"is {wanted}; lower az_count or choose another region")
    return names[index]
