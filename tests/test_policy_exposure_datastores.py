"""datastore-not-public through the analyzer protocol: data stores with a public switch, in dict and
typed-Args spellings and json.dumps / Output.json_dumps access policies, with compliant twins."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "datastore-not-public"
_OPEN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "es:*",
                                                 "Resource": "*"}]}


def rds_public():
    aws.rds.Instance("db", engine="postgres", instance_class="db.t4g.micro", allocated_storage=20, username="app",
                     manage_master_user_password=True, publicly_accessible=True)


def redshift_public_typed():
    aws.redshift.Cluster("dw", aws.redshift.ClusterArgs(cluster_identifier="dw", node_type="ra3.xlplus",
                                                         master_username="admin", manage_master_password=True,
                                                         publicly_accessible=True))


def dms_default():
    aws.dms.ReplicationInstance("dms", replication_instance_class="dms.t3.micro", replication_instance_id="dms")


def mq_unknown():
    aws.mq.Broker("mq", broker_name="mq", engine_type="RabbitMQ", engine_version="3.13", host_instance_type="mq.t3.micro",
                  users=[{"username": "app", "password": "x" * 12}], publicly_accessible=unknown_of(False))


def msk_public():
    aws.msk.Cluster("kafka", cluster_name="kafka", kafka_version="3.6.0", number_of_broker_nodes=3,
                    broker_node_group_info={"instance_type": "kafka.m7g.large", "client_subnets": ["a", "b", "c"],
                                            "security_groups": ["sg-1"],
                                            "connectivity_info": {"public_access": {"type": "SERVICE_PROVIDED_EIPS"}}})


def opensearch_open_policy_json():
    aws.opensearch.Domain("search", domain_name="search", access_policies=json.dumps(_OPEN))


def opensearch_open_policy_output_json_typed():
    aws.opensearch.Domain("search", aws.opensearch.DomainArgs(domain_name="search",
                                                              access_policies=pulumi.Output.json_dumps(_OPEN)))


CASES = [
    ("rds-public", rds_public, "aws:rds/instance:Instance", "db"),
    ("redshift-public-typed", redshift_public_typed, "aws:redshift/cluster:Cluster", "dw"),
    ("dms-default", dms_default, "aws:dms/replicationInstance:ReplicationInstance", "dms"),
    ("mq-unknown", mq_unknown, "aws:mq/broker:Broker", "mq"),
    ("msk-public", msk_public, "aws:msk/cluster:Cluster", "kafka"),
    ("opensearch-open-policy-json", opensearch_open_policy_json, "aws:opensearch/domain:Domain", "search"),
    ("opensearch-open-policy-output-json", opensearch_open_policy_output_json_typed, "aws:opensearch/domain:Domain",
     "search"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_public_data_store_is_a_mandatory_violation(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), POLICY, type_token, name)


def compliant_twins():
    aws.rds.Instance("db", engine="postgres", instance_class="db.t4g.micro", allocated_storage=20, username="app",
                     manage_master_user_password=True)
    aws.dms.ReplicationInstance("dms", replication_instance_class="dms.t3.micro", replication_instance_id="dms",
                                publicly_accessible=False)
    aws.opensearch.Domain("vpc-search", domain_name="vpc-search", access_policies=json.dumps(_OPEN),
                          vpc_options={"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-1"]})
    aws.opensearch.Domain("iam-search", domain_name="iam-search", access_policies=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/app"},
                                                "Action": "es:ESHttp*", "Resource": "*"}]}))


def test_the_compliant_twins_pass(pack):
    verdict = judge(pack, compliant_twins, "prod")
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "entry-point-classified")
