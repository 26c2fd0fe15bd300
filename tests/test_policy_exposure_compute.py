"""compute-placement-no-public-ip through the analyzer protocol: every way compute gets a public
address beyond instances and launch templates, each in dict and typed-Args spellings, with a
compliant twin that must pass."""
from __future__ import annotations

import pulumi_aws as aws
import pytest

from tests.policy_helpers import ASG, SUBNET, expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "compute-placement-no-public-ip"
FLEET = "aws:ec2/fleet:Fleet"
SPOT_FLEET = "aws:ec2/spotFleetRequest:SpotFleetRequest"
TASK_SET = "aws:ecs/taskSet:TaskSet"
DEFAULT_SUBNET = "aws:ec2/defaultSubnet:DefaultSubnet"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NETWORK_INTERFACE = "aws:ec2/networkInterface:NetworkInterface"


def _lt():
    return aws.ec2.LaunchTemplate("lt", image_id="ami-1", instance_type="g6.xlarge")


def asg_by_zone_dict():
    aws.autoscaling.Group("asg", min_size=1, max_size=2, availability_zones=["us-east-1a", "us-east-1b"],
                          launch_template={"id": _lt().id, "version": "$Latest"})


def asg_by_zone_typed():
    aws.autoscaling.Group("asg", min_size=1, max_size=2, availability_zones=["us-east-1a"],
                          mixed_instances_policy=aws.autoscaling.GroupMixedInstancesPolicyArgs(
                              launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
                                  launch_template_specification=aws.autoscaling.
                                  GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                                      launch_template_id=_lt().id))))


def asg_subnets_unknown():
    aws.autoscaling.Group("asg", min_size=1, max_size=2, vpc_zone_identifiers=unknown_of(["subnet-1"]),
                          launch_template={"id": _lt().id})


def fleet_without_subnet_dict():
    aws.ec2.Fleet("fleet", launch_template_configs=[{
        "launch_template_specification": {"launch_template_id": _lt().id, "version": "$Latest"},
        "overrides": [{"instance_type": "g6.xlarge"}]}],
        target_capacity_specification={"default_target_capacity_type": "spot", "total_target_capacity": 2})


def fleet_without_overrides_typed():
    aws.ec2.Fleet("fleet", launch_template_configs=[aws.ec2.FleetLaunchTemplateConfigArgs(
        launch_template_specification=aws.ec2.FleetLaunchTemplateConfigLaunchTemplateSpecificationArgs(
            launch_template_id=_lt().id, version="1"))],
        target_capacity_specification=aws.ec2.FleetTargetCapacitySpecificationArgs(
            default_target_capacity_type="on-demand", total_target_capacity=1))


def spot_fleet_public_dict():
    aws.ec2.SpotFleetRequest("spot", iam_fleet_role="arn:aws:iam::1:role/fleet", target_capacity=2,
                             launch_specifications=[{"ami": "ami-1", "instance_type": "g6.xlarge",
                                                     "subnet_id": "subnet-1", "associate_public_ip_address": True}])


def spot_fleet_default_vpc_typed():
    aws.ec2.SpotFleetRequest("spot", iam_fleet_role="arn:aws:iam::1:role/fleet", target_capacity=1,
                             launch_specifications=[aws.ec2.SpotFleetRequestLaunchSpecificationArgs(
                                 ami="ami-1", instance_type="g6.xlarge", availability_zone="us-east-1a")])


def task_set_public_dict():
    aws.ecs.TaskSet("blue", cluster="c", service="svc", task_definition="td:1", launch_type="FARGATE",
                    network_configuration={"subnets": ["subnet-1"], "assign_public_ip": True})


def task_set_public_typed():
    aws.ecs.TaskSet("blue", cluster="c", service="svc", task_definition="td:1",
                    network_configuration=aws.ecs.TaskSetNetworkConfigurationArgs(
                        subnets=["subnet-1"], assign_public_ip=True))


def default_subnet_untouched():
    aws.ec2.DefaultSubnet("default-a", availability_zone="us-east-1a")


def default_subnet_mapping_on():
    aws.ec2.DefaultSubnet("default-a", availability_zone="us-east-1a", map_public_ip_on_launch=True)


def subnet_ipv6_on_creation():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16", assign_generated_ipv6_cidr_block=True)
    aws.ec2.Subnet("private", vpc_id=vpc.id, cidr_block="10.0.1.0/24", ipv6_cidr_block="2600:1f18::/64",
                   assign_ipv6_address_on_creation=True)


def instance_ipv6_count():
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id="subnet-1", ipv6_address_count=1)


def launch_template_ipv6_typed():
    aws.ec2.LaunchTemplate("lt6", image_id="ami-1", network_interfaces=[
        aws.ec2.LaunchTemplateNetworkInterfaceArgs(device_index=0, subnet_id="subnet-1",
                                                   ipv6_addresses=["2600:1f18::10"])])


def network_interface_ipv6_dict():
    aws.ec2.NetworkInterface("eni", subnet_id="subnet-1", ipv6_address_count=1)


def network_interface_ipv6_prefix_typed():
    aws.ec2.NetworkInterface("eni", subnet_id="subnet-1", ipv6_prefixes=["2600:1f18:0:1::/80"])


CASES = [
    ("asg-by-zone-dict", asg_by_zone_dict, ASG, "asg"),
    ("asg-by-zone-typed", asg_by_zone_typed, ASG, "asg"),
    ("asg-subnets-unknown", asg_subnets_unknown, ASG, "asg"),
    ("fleet-without-subnet-dict", fleet_without_subnet_dict, FLEET, "fleet"),
    ("fleet-without-overrides-typed", fleet_without_overrides_typed, FLEET, "fleet"),
    ("spot-fleet-public-dict", spot_fleet_public_dict, SPOT_FLEET, "spot"),
    ("spot-fleet-default-vpc-typed", spot_fleet_default_vpc_typed, SPOT_FLEET, "spot"),
    ("task-set-public-dict", task_set_public_dict, TASK_SET, "blue"),
    ("task-set-public-typed", task_set_public_typed, TASK_SET, "blue"),
    ("default-subnet-untouched", default_subnet_untouched, DEFAULT_SUBNET, "default-a"),
    ("default-subnet-mapping-on", default_subnet_mapping_on, DEFAULT_SUBNET, "default-a"),
    ("subnet-ipv6-on-creation", subnet_ipv6_on_creation, SUBNET, "private"),
    ("instance-ipv6-count", instance_ipv6_count, INSTANCE, "box"),
    ("launch-template-ipv6-typed", launch_template_ipv6_typed, LAUNCH_TEMPLATE, "lt6"),
    ("network-interface-ipv6-count", network_interface_ipv6_dict, NETWORK_INTERFACE, "eni"),
    ("network-interface-ipv6-prefix", network_interface_ipv6_prefix_typed, NETWORK_INTERFACE, "eni"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_public_address_source_is_a_mandatory_violation(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), POLICY, type_token, name)


def test_the_unknown_subnet_list_says_so(pack):
    expect_violation(judge(pack, asg_subnets_unknown, "prod"), POLICY, ASG, "asg",
                     contains=["unknown during preview"])


def compliant_twins():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    private = aws.ec2.Subnet("private", vpc_id=vpc.id, cidr_block="10.0.1.0/24", map_public_ip_on_launch=False,
                             assign_ipv6_address_on_creation=False)
    lt = aws.ec2.LaunchTemplate("lt", image_id="ami-1", network_interfaces=[
        aws.ec2.LaunchTemplateNetworkInterfaceArgs(device_index=0, associate_public_ip_address="false",
                                                   ipv6_address_count=0)])
    aws.autoscaling.Group("asg", min_size=1, max_size=2, vpc_zone_identifiers=[private.id],
                          launch_template={"id": lt.id, "version": "$Latest"})
    aws.ec2.Fleet("fleet", launch_template_configs=[{
        "launch_template_specification": {"launch_template_id": lt.id, "version": "$Latest"},
        "overrides": [{"instance_type": "g6.xlarge", "subnet_id": private.id}]}],
        target_capacity_specification={"default_target_capacity_type": "spot", "total_target_capacity": 2})
    aws.ec2.SpotFleetRequest("spot", iam_fleet_role="arn:aws:iam::1:role/fleet", target_capacity=1,
                             launch_specifications=[{"ami": "ami-1", "instance_type": "g6.xlarge",
                                                     "subnet_id": private.id,
                                                     "associate_public_ip_address": False}])
    aws.ecs.TaskSet("blue", cluster="c", service="svc", task_definition="td:1",
                    network_configuration={"subnets": [private.id], "assign_public_ip": False})
    aws.ec2.DefaultSubnet("default-a", availability_zone="us-east-1a", map_public_ip_on_launch=False)
    aws.ec2.Instance("box", ami="ami-1", instance_type="t3.micro", subnet_id=private.id)
    aws.ec2.NetworkInterface("eni", subnet_id=private.id, private_ips=["10.0.1.10"])


def test_the_compliant_twins_pass(pack):
    verdict = judge(pack, compliant_twins, "prod")
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "entry-point-classified")
