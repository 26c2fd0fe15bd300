"""prefix-list-no-internet through the analyzer protocol: a prefix list stands for its CIDRs, so
ingress from a list with an internet range is internet ingress, whichever way the list and
the rule are spelled; undeclared (AWS-managed, literal) lists fail closed."""
from __future__ import annotations

import pulumi_aws as aws
import pytest

from tests.policy_helpers import SG, SG_INGRESS_RULE, SG_RULE, expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "prefix-list-no-internet"


def _world_list(name="anyone", cidr="0.0.0.0/0"):
    return aws.ec2.ManagedPrefixList(name, name=name, address_family="IPv4" if ":" not in cidr else "IPv6",
                                     max_entries=5, entries=[{"cidr": cidr, "description": "everyone"}])


def inline_ingress_world_list():
    pl = _world_list()
    aws.ec2.SecurityGroup("web", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 8000, "to_port": 8000, "prefix_list_ids": [pl.id]}])


def ingress_rule_entry_resource_ipv6_typed():
    pl = aws.ec2.ManagedPrefixList("v6", name="v6", address_family="IPv6", max_entries=5)
    aws.ec2.ManagedPrefixListEntry("all-v6", prefix_list_id=pl.id, cidr="::/0")
    group = aws.ec2.SecurityGroup("web", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("from-list", aws.vpc.SecurityGroupIngressRuleArgs(
        security_group_id=group.id, prefix_list_id=pl.id, ip_protocol="tcp", from_port=443, to_port=443))


def sg_rule_public_range_list():
    pl = _world_list("partners", "198.51.100.0/24")
    group = aws.ec2.SecurityGroup("web", vpc_id="vpc-1")
    aws.ec2.SecurityGroupRule("partners", type="ingress", security_group_id=group.id, protocol="tcp",
                              from_port=8000, to_port=8000, prefix_list_ids=[pl.id])


def aws_managed_cloudfront_list_literal():
    group = aws.ec2.SecurityGroup("origin", vpc_id="vpc-1")
    aws.vpc.SecurityGroupIngressRule("cloudfront", security_group_id=group.id, prefix_list_id="pl-3b927c52",
                                     ip_protocol="tcp", from_port=80, to_port=80)


def list_entries_unknown():
    pl = aws.ec2.ManagedPrefixList("computed", name="computed", address_family="IPv4", max_entries=5,
                                   entries=[{"cidr": unknown_of("0.0.0.0/0")}])
    group = aws.ec2.SecurityGroup("web", vpc_id="vpc-1")
    aws.ec2.SecurityGroupRule("from-list", type="ingress", security_group_id=group.id, protocol="tcp",
                              from_port=22, to_port=22, prefix_list_ids=[pl.id])


CASES = [
    ("inline-ingress-world-list", inline_ingress_world_list, SG, "web"),
    ("ingress-rule-entry-resource-ipv6-typed", ingress_rule_entry_resource_ipv6_typed, SG_INGRESS_RULE, "from-list"),
    ("sg-rule-public-range-list", sg_rule_public_range_list, SG_RULE, "partners"),
    ("aws-managed-cloudfront-list-literal", aws_managed_cloudfront_list_literal, SG_INGRESS_RULE, "cloudfront"),
    ("list-entries-unknown", list_entries_unknown, SG_RULE, "from-list"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_ingress_from_an_internet_prefix_list_is_a_mandatory_violation(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), POLICY, type_token, name)


def compliant_twins():
    pl = aws.ec2.ManagedPrefixList("corp", name="corp", address_family="IPv4", max_entries=5,
                                   entries=[{"cidr": "10.0.0.0/8"}, {"cidr": "172.16.0.0/12"}])
    aws.ec2.ManagedPrefixListEntry("lab", prefix_list_id=pl.id, cidr="192.168.0.0/16")
    group = aws.ec2.SecurityGroup("web", vpc_id="vpc-1", ingress=[
        {"protocol": "tcp", "from_port": 8000, "to_port": 8000, "prefix_list_ids": [pl.id]}])
    aws.vpc.SecurityGroupIngressRule("from-corp", security_group_id=group.id, prefix_list_id=pl.id,
                                     ip_protocol="tcp", from_port=443, to_port=443)
    world = _world_list()
    # Egress to a world list is not ingress.
    aws.ec2.SecurityGroupRule("out", type="egress", security_group_id=group.id, protocol="-1", from_port=0,
                              to_port=0, prefix_list_ids=[world.id])


def test_private_lists_and_egress_pass(pack):
    verdict = judge(pack, compliant_twins, "prod")
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "entry-point-classified")
