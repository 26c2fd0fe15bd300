"""Family 1, per resource: service networks and endpoint services, and who may connect.

- VPC Lattice: a service network or service with auth type NONE (the default) lets every
  client in every associated VPC, and every account it is shared with, call its services
  anonymously; with AWS_IAM, an auth policy that allows every principal without a
  restricting condition does the same
  (https://docs.aws.amazon.com/vpc-lattice/latest/ug/auth-policies.html). A resource policy
  that shares a network or service with every principal lets any account associate to it.
- PrivateLink: an endpoint service that allows every principal ("*") and accepts connections
  automatically lets any AWS account reach the load balancer behind it
  (https://docs.aws.amazon.com/vpc/latest/privatelink/configure-endpoint-service.html).
"""
from __future__ import annotations

from typing import Any, Iterator

from . import policy_documents
from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import as_bool, as_list, is_unknown

SERVICE_NETWORK = "aws:vpclattice/serviceNetwork:ServiceNetwork"
LATTICE_SERVICE = "aws:vpclattice/service:Service"
AUTH_POLICY = "aws:vpclattice/authPolicy:AuthPolicy"
LATTICE_RESOURCE_POLICY = "aws:vpclattice/resourcePolicy:ResourcePolicy"
ENDPOINT_SERVICE = "aws:ec2/vpcEndpointService:VpcEndpointService"
ALLOWED_PRINCIPAL = "aws:ec2/vpcEndpointServiceAllowedPrinciple:VpcEndpointServiceAllowedPrinciple"

_LATTICE_FIX = ("set auth_type=\"AWS_IAM\" and attach an auth policy that names the calling principals "
                "or confines them with aws:PrincipalOrgID / aws:SourceVpc conditions")
_ENDPOINT_FIX = ("allow named principals (account or role ARNs), or keep acceptance_required=True and "
                 "review each connection request")
_LATTICE_ACTIONS = ("vpc-lattice-svcs:Invoke", "vpc-lattice-svcs:Connect",
                    "vpc-lattice:CreateServiceNetworkVpcAssociation",
                    "vpc-lattice:CreateServiceNetworkServiceAssociation",
                    "vpc-lattice:CreateServiceNetworkResourceAssociation", "vpc-lattice:AssociateViaAWSService")


def _open_principal(value: Any) -> bool:
    return isinstance(value, str) and value.strip() in ("*", "arn:aws:iam::*:root")


def _check_auth_type(res: Resource) -> Iterator[Finding]:
    auth = res.get("authType")
    if is_unknown(auth):
        yield unknown("authType", _LATTICE_FIX)
    elif str(auth or "NONE").upper() == "NONE":
        what = "service network" if res.type == SERVICE_NETWORK else "service"
        yield violation("authType", auth or "NONE",
                        f"the {what} authenticates nobody: every client in every associated VPC, and every "
                        "account it is shared with, can call it anonymously", _LATTICE_FIX)


def _check_document(res: Resource, actions: tuple[str, ...], why: str, fix: str) -> Iterator[Finding]:
    document = policy_documents.parse(res.props.get("policy"))
    if document is None:
        return
    if is_unknown(document):
        yield unknown("policy", fix)
        return
    if document == "unreadable":
        yield violation("policy", None, "it is not a JSON policy document the guardrail can read, so who "
                        "may connect cannot be established", fix, rendered="unreadable")
        return
    where = policy_documents.first_unknown(document)
    if where:
        yield unknown(f"policy.{where}", fix)
        return
    for index, _statement in policy_documents.open_statements(document, actions):
        yield violation(f"policy.Statement[{index}]", None, why, fix, rendered='an Allow for Principal "*"')


def _check_endpoint_service(res: Resource) -> Iterator[Finding]:
    principals = res.get("allowedPrincipals")
    if is_unknown(principals):
        yield unknown("allowedPrincipals", _ENDPOINT_FIX)
        return
    for index, principal in enumerate(as_list(principals)):
        if is_unknown(principal):
            yield unknown(f"allowedPrincipals[{index}]", _ENDPOINT_FIX)
            continue
        if not _open_principal(principal):
            continue
        acceptance = as_bool(res.get("acceptanceRequired"))
        if is_unknown(acceptance):
            yield unknown("acceptanceRequired", _ENDPOINT_FIX)
        elif acceptance is not True:
            yield violation(f"allowedPrincipals[{index}]", principal,
                            "every AWS account may create an endpoint to the service and connections are "
                            "accepted automatically, so anyone reaches the load balancer behind it",
                            _ENDPOINT_FIX)


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type in (SERVICE_NETWORK, LATTICE_SERVICE):
        yield from _check_auth_type(res)
    elif res.type == AUTH_POLICY:
        yield from _check_document(res, _LATTICE_ACTIONS,
                                   "it lets every principal invoke the services with no condition that confines "
                                   "the caller", _LATTICE_FIX)
    elif res.type == LATTICE_RESOURCE_POLICY:
        yield from _check_document(res, _LATTICE_ACTIONS,
                                   "it shares the service network or service with every AWS account",
                                   "share with named accounts or your organization (aws:PrincipalOrgID)")
    elif res.type == ENDPOINT_SERVICE:
        yield from _check_endpoint_service(res)
    elif res.type == ALLOWED_PRINCIPAL:
        principal = res.get("principalArn")
        if is_unknown(principal):
            yield unknown("principalArn", _ENDPOINT_FIX)
        elif _open_principal(principal):
            yield violation("principalArn", principal,
                            "every AWS account may create an endpoint to the service (whether connections "
                            "need acceptance is set on the service, not here)", _ENDPOINT_FIX)


SERVICE_NETWORK_AUTHENTICATED = resource_policy(
    name="service-network-authenticated",
    family=FAMILY_EXPOSURE,
    description="VPC Lattice service networks and services authenticate (AWS_IAM) with auth and resource "
                "policies that do not open them to every principal; VPC endpoint services do not let every "
                "principal connect without acceptance.",
    resource_types=(SERVICE_NETWORK, LATTICE_SERVICE, AUTH_POLICY, LATTICE_RESOURCE_POLICY, ENDPOINT_SERVICE,
                    ALLOWED_PRINCIPAL),
    check=_check,
    remediation="Use auth_type AWS_IAM with a confining auth policy; allow named principals on endpoint services.",
)

POLICIES = [SERVICE_NETWORK_AUTHENTICATED]
