"""The private network each stack gets, checked on the real program under the mock engine."""
from __future__ import annotations

import ipaddress
import json

import pulumi
import pytest

from components.network import INTERFACE_ENDPOINT_SERVICES, subnet_plan
from tests.program_harness import check_program, fresh_event_loop, start

STACKS = {"dev": (2, 1), "staging": (2, 2), "prod": (3, 3)}  # stack -> (AZs, NAT gateways)


@pytest.fixture(autouse=True)
def _own_event_loop():
    fresh_event_loop()


def _inputs(registrations, type_token):
    return [r.inputs for r in registrations if r.type == type_token]


@pytest.mark.parametrize("stack", STACKS)
def test_no_subnet_maps_public_ips_and_private_subnets_span_the_configured_azs(stack):
    az_count, _ = STACKS[stack]

    def check(program, registrations):
        subnets = _inputs(registrations, "aws:ec2/subnet:Subnet")
        assert subnets and all(s["mapPublicIpOnLaunch"] is False for s in subnets)
        private = [s for s in subnets if s["tags"]["tier"] == "private"]
        assert len({s["availabilityZone"] for s in private}) == az_count

    check_program(stack, check)


@pytest.mark.parametrize("stack", STACKS)
def test_nat_gateway_count_follows_the_inventory(stack):
    _, nat_count = STACKS[stack]

    def check(program, registrations):
        assert len(_inputs(registrations, "aws:ec2/natGateway:NatGateway")) == nat_count
        routes = [r for r in _inputs(registrations, "aws:ec2/route:Route") if "natGatewayId" in r]
        assert len(routes) == STACKS[stack][0]

    check_program(stack, check)


@pytest.mark.parametrize("stack", STACKS)
def test_vpc_endpoints_are_private_and_admit_only_the_vpc(stack):
    def check(program, registrations):
        network = program["network"]
        region = program["inventory"].region
        endpoints = {e["serviceName"]: e for e in _inputs(registrations, "aws:ec2/vpcEndpoint:VpcEndpoint")}
        assert endpoints[f"com.amazonaws.{region}.s3"]["vpcEndpointType"] == "Gateway"
        for service in INTERFACE_ENDPOINT_SERVICES:
            endpoint = endpoints[f"com.amazonaws.{region}.{service}"]
            assert endpoint["vpcEndpointType"] == "Interface"
            assert endpoint["privateDnsEnabled"] is True
        group = next(r for r in registrations if r.name == "net-endpoints").inputs
        assert [rule["cidrBlocks"] for rule in group["ingress"]] == [[network.vpc_cidr]]
        assert [rule["fromPort"] for rule in group["ingress"]] == [443]

    check_program(stack, check)


@pytest.mark.parametrize("stack", STACKS)
def test_flow_logs_go_to_an_encrypted_log_group_with_retention(stack):
    def check(program, registrations):
        inventory = program["inventory"]
        group = next(r for r in registrations if r.name == "net-flow-logs"
                     and r.type == "aws:cloudwatch/logGroup:LogGroup").inputs
        assert group["kmsKeyId"].startswith("arn:aws:kms:")
        assert group["retentionInDays"] == inventory.network.flow_log_retention_days
        flow_log = _inputs(registrations, "aws:ec2/flowLog:FlowLog")[0]
        assert flow_log["trafficType"] == "ALL"
        # The mock provider names created ARNs after the resource: the destination is this group.
        assert flow_log["logDestination"].startswith("arn:aws:logs:")
        assert ":net-flow-logs/" in flow_log["logDestination"]

    check_program(stack, check)


def test_default_security_group_is_stripped_of_rules():
    def check(program, registrations):
        default = _inputs(registrations, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
        assert len(default) == 1
        assert default[0]["ingress"] == [] and default[0]["egress"] == []

    check_program("dev", check)


def test_provider_tags_every_resource_with_stack_and_inventory_tags():
    @pulumi.runtime.test
    def check_stack():
        program = start("prod")

        def check(args):
            provider_urn, registrations = args
            provider = next(r for r in registrations if r.type == "pulumi:providers:aws").inputs
            raw = provider["defaultTags"]
            tags = (json.loads(raw) if isinstance(raw, str) else raw)["tags"]
            assert tags["environment"] == "prod" and tags["data-classification"] == "confidential"
            assert tags["managed-by"] == "pulumi" and tags["stack"] == "prod"
            assert provider["region"] == "us-east-1"
            aws_resources = [r for r in registrations if r.custom and r.type.startswith("aws:")]
            assert aws_resources and all(r.provider.startswith(provider_urn + "::")
                                         for r in aws_resources)

        return pulumi.Output.all(program["aws_provider"].urn, program.settled()).apply(check)

    check_stack()


def test_subnet_plan_keeps_private_public_and_load_balancer_ranges_disjoint_and_inside_the_vpc():
    vpc = ipaddress.IPv4Network("10.40.0.0/16")
    private, public, load_balancer = subnet_plan(vpc, 3)
    networks = [ipaddress.IPv4Network(c) for c in private + public + load_balancer]
    assert all(n.subnet_of(vpc) for n in networks)
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])
    assert [n.prefixlen for n in networks] == [19, 19, 19, 24, 24, 24, 24, 24, 24]


def test_the_smallest_vpc_still_gives_load_balancers_room_for_their_nodes():
    # An NLB needs at least 8 free addresses in each subnet it is placed in; AWS keeps 5.
    _, _, load_balancer = subnet_plan(ipaddress.IPv4Network("10.50.0.0/20"), 6)
    assert all(ipaddress.IPv4Network(c).num_addresses - 5 >= 8 for c in load_balancer)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_load_balancers_sit_only_in_their_own_subnets(stack):
    def check(program, registrations):
        network = program["network"]
        lb_subnets = [r for r in registrations if r.type == "aws:ec2/subnet:Subnet"
                      and r.inputs["tags"]["tier"] == "internal-load-balancers"]
        assert sorted(s.inputs["cidrBlock"] for s in lb_subnets) == sorted(network.load_balancer_cidrs)
        balancers = _inputs(registrations, "aws:lb/loadBalancer:LoadBalancer")
        assert balancers and all(lb["internal"] is True for lb in balancers)
        assert all(len(lb["subnets"]) == len(lb_subnets) for lb in balancers)

    check_program(stack, check)
