"""Family 1, per resource: resource-based permissions that let everyone invoke.

- A Lambda permission for principal "*" with no source condition lets every AWS account
  invoke the function (and, with function_url_auth_type NONE, everyone on the internet);
  one for a service principal (apigateway.amazonaws.com, elasticloadbalancing...) without
  source_arn/source_account lets that service invoke it on behalf of any account, so anyone
  can put their own public API or load balancer in front of it
  (https://docs.aws.amazon.com/lambda/latest/dg/permissions-function-services.html).
- A Lambda or API Gateway resource policy with an Allow for every principal and no
  restricting condition: for an API, IAM-authorized methods then accept a signature from any
  AWS account, and a private API is reachable from every VPC endpoint
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-resource-policies.html).
"""
from __future__ import annotations

from typing import Iterator

from . import policy_documents
from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import is_unknown

PERMISSION = "aws:lambda/permission:Permission"
LAMBDA_POLICY = "aws:lambda/resourcePolicy:ResourcePolicy"
REST_API = "aws:apigateway/restApi:RestApi"
REST_API_POLICY = "aws:apigateway/restApiPolicy:RestApiPolicy"

_INVOKE = {LAMBDA_POLICY: ("lambda:InvokeFunction", "lambda:InvokeFunctionUrl"),
           REST_API: ("execute-api:Invoke",), REST_API_POLICY: ("execute-api:Invoke",)}
_PERMISSION_FIX = ("name the caller: a principal account, or keep the service principal and set source_arn "
                   "(the API's execution ARN, the target group ARN) or source_account / principal_org_id")
_POLICY_FIX = ("allow only named accounts or services, or add a condition that confines callers "
               "(aws:SourceVpce, aws:PrincipalOrgID, aws:SourceArn, aws:SourceAccount, a private aws:SourceIp)")


def _check_permission(res: Resource) -> Iterator[Finding]:
    principal = res.get("principal")
    if is_unknown(principal):
        yield unknown("principal", _PERMISSION_FIX)
        return
    # Lambda turns source_arn into an ArnLike condition: a wildcard in the account field
    # ("arn:aws:execute-api:*:*:*", "*") matches any account's API or load balancer.
    sources = (("sourceArn", "aws:sourcearn", True), ("sourceAccount", "aws:sourceaccount", False),
               ("principalOrgId", "aws:principalorgid", False))
    if any(is_unknown(res.props.get(prop)) or (res.props.get(prop) and policy_documents.pins_caller(
            key, res.props.get(prop), like)) for prop, key, like in sources):
        return  # an unknown one is set: it names a source
    principal = str(principal or "").strip()
    if principal == "*" or principal == "arn:aws:iam::*:root":
        url_auth = res.get("functionUrlAuthType")
        public_url = isinstance(url_auth, str) and url_auth.upper() == "NONE"
        yield violation("principal", principal,
                        "with no source_arn, source_account or principal_org_id naming one account, every "
                        "AWS account may invoke the function" + (", and with function_url_auth_type NONE anyone on the internet "
                                          "through its URL" if public_url else ""), _PERMISSION_FIX)
    elif principal.endswith(".amazonaws.com"):
        yield violation("sourceArn", None,
                        f"{principal} may invoke the function on behalf of any account, so anyone can put "
                        "their own public API or load balancer in front of it", _PERMISSION_FIX,
                        rendered=(f"{res.props.get('sourceArn')!r}, which matches any account's ARN "
                                  f"(principal {principal})" if res.props.get("sourceArn")
                                  else f"not set (principal {principal})"))


def _check_document(res: Resource, prop: str) -> Iterator[Finding]:
    document = policy_documents.parse(res.props.get(prop))
    if document is None:
        return
    if is_unknown(document):
        yield unknown(prop, _POLICY_FIX)
        return
    if document == "unreadable":
        yield violation(prop, None, "it is not a JSON policy document the guardrail can read, so who may "
                        "invoke cannot be established", _POLICY_FIX, rendered="unreadable")
        return
    where = policy_documents.first_unknown(document)
    if where:
        yield unknown(f"{prop}.{where}", _POLICY_FIX)
        return
    for index, _statement in policy_documents.open_statements(document, _INVOKE[res.type]):
        yield violation(f"{prop}.Statement[{index}]", None,
                        "it allows every principal to invoke with no condition that confines the caller, so "
                        "any AWS account (and for unauthenticated or IAM-authorized operations, anyone) can "
                        "call it", _POLICY_FIX, rendered='an Allow for Principal "*"')


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == PERMISSION:
        yield from _check_permission(res)
    else:
        yield from _check_document(res, "policy")


NO_PUBLIC_INVOKE = resource_policy(
    name="no-public-invoke",
    family=FAMILY_EXPOSURE,
    description="Lambda permissions and resource policies, and API Gateway resource policies, do not let "
                "every principal invoke: principal \"*\" or a service principal needs a source condition.",
    resource_types=(PERMISSION, LAMBDA_POLICY, REST_API, REST_API_POLICY),
    check=_check,
    remediation="Name the calling account or service and confine it with source_arn/source_account or "
                "a restricting condition.",
)

POLICIES = [NO_PUBLIC_INVOKE]
