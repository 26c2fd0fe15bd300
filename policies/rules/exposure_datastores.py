"""Family 1, per resource: data stores and brokers with a switch that puts them on the internet.

A database, warehouse or broker that accepts connections from the internet is an entry point
guarded only by its own credentials, next to the models' data. Defaults as the provider
documents them: RDS instances, Redshift clusters and workgroups, Amazon MQ brokers are
private unless `publicly_accessible` is true; a DMS replication instance is public unless it
is false (the DMS API's default,
https://docs.aws.amazon.com/dms/latest/APIReference/API_CreateReplicationInstance.html); an
MSK cluster is public with public access type SERVICE_PROVIDED_EIPS; an OpenSearch or
Elasticsearch domain without `vpc_options` has a public endpoint, which is open when its
access policy allows every principal without a confining condition
(https://docs.aws.amazon.com/opensearch-service/latest/developerguide/ac.html).
"""
from __future__ import annotations

from typing import Iterator

from . import policy_documents
from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import as_bool, is_unknown

PRIVATE_BY_DEFAULT = ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance",
                      "aws:redshift/cluster:Cluster", "aws:redshiftserverless/workgroup:Workgroup",
                      "aws:mq/broker:Broker")
DMS = "aws:dms/replicationInstance:ReplicationInstance"
MSK = "aws:msk/cluster:Cluster"
DOMAINS = ("aws:opensearch/domain:Domain", "aws:elasticsearch/domain:Domain")

_FIX = ("keep it private (publicly_accessible=False, VPC options) and reach it from inside the VPC; "
        "never put a data store on the internet")


def _check_switch(res: Resource) -> Iterator[Finding]:
    public = as_bool(res.get("publiclyAccessible"))
    if is_unknown(public):
        yield unknown("publiclyAccessible", _FIX)
    elif public is True or (res.type == DMS and public is None):
        yield violation("publiclyAccessible", public,
                        "it then accepts connections from the internet" +
                        (" (DMS makes a replication instance public unless this is false)" if public is None else ""),
                        _FIX)


def _check_msk(res: Resource) -> Iterator[Finding]:
    kind = res.get("brokerNodeGroupInfo", "connectivityInfo", "publicAccess", "type")
    if is_unknown(kind):
        yield unknown("brokerNodeGroupInfo.connectivityInfo.publicAccess.type", _FIX)
    elif str(kind or "DISABLED").upper() != "DISABLED":
        yield violation("brokerNodeGroupInfo.connectivityInfo.publicAccess.type", kind,
                        "the brokers get public addresses reachable from the internet", _FIX)


def _check_domain(res: Resource) -> Iterator[Finding]:
    vpc = res.get("vpcOptions")
    if is_unknown(vpc):
        yield unknown("vpcOptions", _FIX)
        return
    if vpc:
        return  # a VPC domain has no public endpoint
    document = policy_documents.parse(res.props.get("accessPolicies"))
    if is_unknown(document):
        yield unknown("accessPolicies", _FIX)
    elif document == "unreadable":
        yield violation("accessPolicies", None, "the domain has a public endpoint and its access policy "
                        "cannot be read", _FIX, rendered="unreadable")
    elif isinstance(document, dict) and policy_documents.open_statements(document, ("es:ESHttpPost", "es:ESHttpGet")):
        yield violation("accessPolicies", None, "the domain has a public endpoint (no vpc_options) and its access "
                        "policy lets every principal in with no confining condition", _FIX,
                        rendered='an Allow for Principal "*"')


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == MSK:
        yield from _check_msk(res)
    elif res.type in DOMAINS:
        yield from _check_domain(res)
    else:
        yield from _check_switch(res)


DATASTORE_NOT_PUBLIC = resource_policy(
    name="datastore-not-public",
    family=FAMILY_EXPOSURE,
    description="RDS instances, Redshift clusters and workgroups, MQ brokers and DMS replication instances are "
                "not publicly accessible, MSK brokers have no public access, and OpenSearch/Elasticsearch "
                "domains outside a VPC have no open access policy.",
    resource_types=(*PRIVATE_BY_DEFAULT, DMS, MSK, *DOMAINS),
    check=_check,
    remediation="Keep data stores in private subnets without public access; reach them from inside the VPC.",
)

POLICIES = [DATASTORE_NOT_PUBLIC]
