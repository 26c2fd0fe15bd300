"""Family 1, per resource: the ways compute gets a public address that compute-no-public-ip
(public_endpoints.py) does not see: fleets and spot fleets, ECS task sets, auto scaling
groups placed by zone, default subnets, and globally routable IPv6 addresses.

Where AWS decides by default: a default subnet maps a public IPv4 address to every instance
launched into it, and an instance launched without a subnet goes to the default VPC's
default subnet of its zone (https://docs.aws.amazon.com/vpc/latest/userguide/default-vpc.html).
IPv6 addresses are globally unique and routable: no NAT stands between them and the internet
(https://docs.aws.amazon.com/vpc/latest/userguide/vpc-ip-addressing.html).
"""
from __future__ import annotations

from typing import Any, Iterator

from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import as_bool, as_dict, as_list, as_number, is_unknown

ASG = "aws:autoscaling/group:Group"
FLEET = "aws:ec2/fleet:Fleet"
SPOT_FLEET = "aws:ec2/spotFleetRequest:SpotFleetRequest"
TASK_SET = "aws:ecs/taskSet:TaskSet"
SUBNET = "aws:ec2/subnet:Subnet"
DEFAULT_SUBNET = "aws:ec2/defaultSubnet:DefaultSubnet"
INSTANCE_TYPES = ("aws:ec2/instance:Instance", "aws:ec2/spotInstanceRequest:SpotInstanceRequest")
# An interface created on its own and attached later carries its addresses with it.
NETWORK_INTERFACE = "aws:ec2/networkInterface:NetworkInterface"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"

_FIX = ("place the compute in private subnets you name (vpc_zone_identifiers / subnet_id) with no "
        "public IPv4 or IPv6 address; reach it through the internal load balancer")


def _subnet_set(value: Any) -> Any:
    """True when subnets are named (an id computed from a subnet is still named), False when
    none are, or the unknown sentinel when even the list is unknown."""
    if is_unknown(value):
        return value
    return any(is_unknown(s) or s for s in as_list(value))


def _check_asg(res: Resource) -> Iterator[Finding]:
    named = _subnet_set(res.get("vpcZoneIdentifiers"))
    if is_unknown(named):
        yield unknown("vpcZoneIdentifiers", _FIX)
    elif not named:
        yield violation("vpcZoneIdentifiers", res.get("vpcZoneIdentifiers"),
                        "a group placed by availability zone without subnets launches into the default "
                        "VPC's default subnets, which give every instance a public IPv4 address", _FIX)


def _overrides_name_subnets(configs: Any, path: str) -> Iterator[Finding]:
    """EC2 Fleet and Spot Fleet launch template configs: without a subnet in the overrides the
    instances land in the launch template's subnet, or the default VPC when it names none."""
    if is_unknown(configs):
        yield unknown(path, _FIX)
        return
    for index, config in enumerate(as_list(configs)):
        where = f"{path}[{index}].overrides"
        if is_unknown(config) or is_unknown(as_dict(config).get("overrides")):
            yield unknown(where, _FIX)
            continue
        overrides = as_list(as_dict(config).get("overrides"))
        subnets = [as_dict(o).get("subnetId") for o in overrides]
        if not subnets or not all(is_unknown(s) or s for s in subnets):
            yield violation(f"{where}[*].subnetId", None,
                            "an override without a subnet launches into the launch template's network "
                            "settings, and into the default VPC (public IPv4 addresses) when it names none",
                            _FIX, rendered="not set")


def _check_spot_fleet(res: Resource) -> Iterator[Finding]:
    specs = res.get("launchSpecifications")
    if is_unknown(specs):
        yield unknown("launchSpecifications", _FIX)
    else:
        for index, spec in enumerate(as_list(specs)):
            path = f"launchSpecifications[{index}]"
            if is_unknown(spec):
                yield unknown(path, _FIX)
                continue
            spec = as_dict(spec)
            public = as_bool(spec.get("associatePublicIpAddress"))
            if is_unknown(public):
                yield unknown(f"{path}.associatePublicIpAddress", _FIX)
            elif public is True:
                yield violation(f"{path}.associatePublicIpAddress", True,
                                "every spot instance of the fleet gets a public IPv4 address", _FIX)
            if not spec.get("subnetId"):  # an id computed from a subnet still names one
                yield violation(f"{path}.subnetId", None, "a launch specification without a subnet "
                                "launches into the default VPC, whose subnets give every instance a public "
                                "IPv4 address", _FIX)
    if res.get("launchTemplateConfigs") is not None:
        yield from _overrides_name_subnets(res.get("launchTemplateConfigs"), "launchTemplateConfigs")


def _check_task_set(res: Resource) -> Iterator[Finding]:
    value = as_bool(res.get("networkConfiguration", "assignPublicIp"))
    if is_unknown(value):
        yield unknown("networkConfiguration.assignPublicIp", _FIX)
    elif value is True:
        yield violation("networkConfiguration.assignPublicIp", True,
                        "every task of the task set gets a public IPv4 address", _FIX)


def _check_subnet(res: Resource) -> Iterator[Finding]:
    if res.type == DEFAULT_SUBNET:
        mapped = as_bool(res.get("mapPublicIpOnLaunch"))
        if is_unknown(mapped):
            yield unknown("mapPublicIpOnLaunch", _FIX)
        elif mapped is not False:
            yield violation("mapPublicIpOnLaunch", res.get("mapPublicIpOnLaunch"),
                            "a default subnet maps a public IPv4 address to every instance launched into "
                            "it unless this is explicitly false",
                            "set map_public_ip_on_launch=False, or launch nothing into default subnets")
    ipv6 = as_bool(res.get("assignIpv6AddressOnCreation"))
    if is_unknown(ipv6):
        yield unknown("assignIpv6AddressOnCreation", _FIX)
    elif ipv6 is True:
        yield violation("assignIpv6AddressOnCreation", True,
                        "every network interface created in the subnet gets a globally routable IPv6 "
                        "address, with no NAT between it and the internet",
                        "set assign_ipv6_address_on_creation=False; give IPv6 egress through an "
                        "egress-only internet gateway")


def _ipv6_addresses(node: dict, path: str, what: str) -> Iterator[Finding]:
    # Addresses by count or by list, and delegated prefixes (each a routable /80).
    for count_key, list_key in (("ipv6AddressCount", "ipv6Addresses"), ("ipv6PrefixCount", "ipv6Prefixes"),
                                ("ipv6AddressCount", "ipv6AddressLists")):
        count, addresses = node.get(count_key), node.get(list_key)
        if is_unknown(count) or is_unknown(addresses):
            yield unknown(f"{path}{count_key}", _FIX)
            return
        number = as_number(count)
        if (isinstance(number, float) and number > 0) or as_list(addresses):
            yield violation(f"{path}{count_key if number else list_key}", count if number else addresses,
                            f"{what} gets a globally routable IPv6 address", _FIX)
            return


def _check_ipv6_compute(res: Resource) -> Iterator[Finding]:
    if res.type in INSTANCE_TYPES:
        yield from _ipv6_addresses(res.props, "", "the instance")
        return
    if res.type == NETWORK_INTERFACE:
        yield from _ipv6_addresses(res.props, "", "the network interface (and whatever it is attached to)")
        return
    interfaces = res.get("networkInterfaces")
    if is_unknown(interfaces):
        return  # compute-no-public-ip reports the unknown interfaces
    for index, interface in enumerate(as_list(interfaces)):
        if not is_unknown(interface):
            yield from _ipv6_addresses(as_dict(interface), f"networkInterfaces[{index}].",
                                       "every instance launched from the template")


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == ASG:
        yield from _check_asg(res)
    elif res.type == FLEET:
        yield from _overrides_name_subnets(res.get("launchTemplateConfigs"), "launchTemplateConfigs")
    elif res.type == SPOT_FLEET:
        yield from _check_spot_fleet(res)
    elif res.type == TASK_SET:
        yield from _check_task_set(res)
    elif res.type in (SUBNET, DEFAULT_SUBNET):
        yield from _check_subnet(res)
    else:
        yield from _check_ipv6_compute(res)


COMPUTE_PLACEMENT_NO_PUBLIC_IP = resource_policy(
    name="compute-placement-no-public-ip",
    family=FAMILY_EXPOSURE,
    description="Auto scaling groups name their subnets (no placement by zone into the default VPC), "
                "EC2 fleets and spot fleets name subnets and assign no public IP, ECS task sets assign "
                "no public IP, default subnets do not map public IPs, and no subnet, instance or launch "
                "template or network interface hands out globally routable IPv6 addresses or prefixes.",
    resource_types=(ASG, FLEET, SPOT_FLEET, TASK_SET, DEFAULT_SUBNET, SUBNET, *INSTANCE_TYPES, LAUNCH_TEMPLATE,
                    NETWORK_INTERFACE),
    check=_check,
    remediation="Launch compute only into private subnets you name, without public IPv4 or IPv6 addresses.",
)

POLICIES = [COMPUTE_PLACEMENT_NO_PUBLIC_IP]
