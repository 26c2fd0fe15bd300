"""Family 3, logging: access logs on API stages, flow logs on every VPC, WAF logs that
redact credentials, and log groups that are encrypted with a key you control and expire.

Anchors: Checkov CKV_AWS_76 (stage access logging), CKV2_AWS_11 (VPC flow logs),
CKV_AWS_158/338 (log group KMS and retention); AWS WAF developer guide, "Log fields" and
"Redacting fields": headers such as authorization are logged verbatim unless redacted.
"""
from __future__ import annotations

from typing import Any, Iterator

from pulumi_policy import Severity

from ._framework import (
    FAMILY_BASELINE, Finding, Resource, Stack, StackResource, cannot_check, resource_policy, stack_policy,
    violation,
)
from ._wire import as_dict, as_list, as_number, is_unknown

# ---- access logs on stages ------------------------------------------------------------------

STAGE_TYPES = ("aws:apigateway/stage:Stage", "aws:apigatewayv2/stage:Stage")


def _check_access_logs(res: Resource, config: dict) -> Iterator[Finding]:
    settings = res.get("accessLogSettings")
    if is_unknown(settings):
        yield cannot_check("accessLogSettings")
        return
    destination = as_dict(settings).get("destinationArn")
    if destination is None or destination == "":
        yield violation("accessLogSettings.destinationArn", destination,
                        "without access logs there is no record of which caller (key, identity, source "
                        "address) sent which request, so key abuse cannot be investigated",
                        "set access_log_settings={destination_arn: <log group ARN>, format: <JSON with "
                        "$context.requestId, $context.identity.apiKeyId, $context.authorizer.claims.sub>}")


STAGE_ACCESS_LOGS = resource_policy(
    name="stage-access-logs",
    family=FAMILY_BASELINE,
    description="API Gateway stages (REST and HTTP APIs) write access logs (accessLogSettings).",
    resource_types=STAGE_TYPES,
    check=_check_access_logs,
    remediation="Send access logs to a CloudWatch log group.",
    severity=Severity.MEDIUM,
)


# ---- flow logs on every VPC -----------------------------------------------------------------

VPC_TYPES = ("aws:ec2/vpc:Vpc", "aws:ec2/defaultVpc:DefaultVpc")
FLOW_LOG = "aws:ec2/flowLog:FlowLog"


def _ancestors(stack: Stack, res: StackResource) -> set[str]:
    found: set[str] = set()
    parent = res.parent
    while parent and parent not in found:
        found.add(parent)
        owner = stack.get(parent)
        parent = owner.parent if owner is not None else None
    return found


def _check_flow_logs(stack: Stack, config: dict) -> Iterator[tuple[str, Finding]]:
    flow_logs = stack.of_type(FLOW_LOG)
    for vpc in stack.of_type(*VPC_TYPES):
        # A flow log belongs to this VPC when its vpcId was computed from it (ids are
        # unknown during a first preview; the dependency is not), or from the component that
        # made it: the output of a multi-language component such as awsx.ec2.Vpc depends on
        # the component's URN, not on the aws:ec2/vpc:Vpc inside it.
        owners = {vpc.urn} | _ancestors(stack, vpc)
        if any(owners & set(fl.property_dependencies.get("vpcId", [])) for fl in flow_logs):
            continue
        yield vpc.urn, violation(
            "flow logs", None,
            "no aws.ec2.FlowLog takes its vpc_id from this VPC, so rejected and accepted connections "
            "(exfiltration, scanning, a model pod calling out) leave no trace",
            "add aws.ec2.FlowLog(vpc_id=vpc.id, traffic_type=\"ALL\", log_destination=<log group or "
            "bucket>, ...)", rendered="not configured")


VPC_FLOW_LOGS = stack_policy(
    name="vpc-flow-logs",
    family=FAMILY_BASELINE,
    description="Every VPC declared in the stack has a flow log whose vpc_id is that VPC.",
    resource_types=VPC_TYPES + (FLOW_LOG,),
    check=_check_flow_logs,
    remediation="Declare an aws.ec2.FlowLog per VPC.",
    severity=Severity.MEDIUM,
)


# ---- WAF logs redact credentials ------------------------------------------------------------

WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
DEFAULT_REDACTED_HEADERS = ["authorization", "x-api-key"]


# WAF Classic (global and regional) web ACLs carry their logging inline:
# logging_configuration.redacted_fields.field_to_matches[{type: HEADER, data: <name>}].
CLASSIC_WEB_ACLS = ("aws:waf/webAcl:WebAcl", "aws:wafregional/webAcl:WebAcl")


def _classic_redacted(res: Resource) -> tuple[str, Any]:
    """(path, header names or the unknown sentinel) of a Classic web ACL's logging."""
    path = "loggingConfiguration.redactedFields.fieldToMatches"
    matches = res.get("loggingConfiguration", "redactedFields", "fieldToMatches")
    if is_unknown(matches):
        return path, matches
    names = []
    for entry in as_list(matches):
        entry = as_dict(entry)
        if is_unknown(entry.get("type")) or is_unknown(entry.get("data")):
            return path, entry.get("data") if is_unknown(entry.get("data")) else entry.get("type")
        if str(entry.get("type") or "").upper() == "HEADER" and isinstance(entry.get("data"), str):
            names.append(entry["data"])
    return path, names


def _check_waf_redaction(res: Resource, config: dict) -> Iterator[Finding]:
    required = [h.lower() for h in config.get("redactedHeaders") or DEFAULT_REDACTED_HEADERS]
    if res.type in CLASSIC_WEB_ACLS:
        logging_config = res.get("loggingConfiguration")
        if logging_config is None:
            return  # no logs, nothing written verbatim
        path, names = _classic_redacted(res)
        if is_unknown(names):
            yield cannot_check(path)
            return
        redacted = {n.strip().lower() for n in names}
        missing = [h for h in required if h not in redacted]
        if missing:
            yield violation(path, sorted(redacted) or None,
                            f"WAF logs every request header verbatim, so {', '.join(missing)} (callers' tokens "
                            "and API keys) would be readable by anyone who can read the log",
                            "add logging_configuration.redacted_fields.field_to_matches=[" + ", ".join(
                                f"{{type: \"HEADER\", data: \"{h}\"}}" for h in missing) + "]",
                            rendered=(", ".join(sorted(redacted)) if redacted else "not set"))
        return
    fields = res.get("redactedFields")
    if is_unknown(fields):
        yield cannot_check("redactedFields")
        return
    redacted = set()
    for index, entry in enumerate(as_list(fields)):
        header = as_dict(entry).get("singleHeader")
        if is_unknown(header):
            yield cannot_check(f"redactedFields[{index}].singleHeader")
            return
        name = as_dict(header).get("name")
        if is_unknown(name):
            yield cannot_check(f"redactedFields[{index}].singleHeader.name")
            return
        if isinstance(name, str):
            redacted.add(name.strip().lower())
    missing = [h for h in required if h not in redacted]
    if missing:
        yield violation("redactedFields", sorted(redacted) or None,
                        f"WAF logs every request header verbatim, so {', '.join(missing)} (callers' "
                        "tokens and API keys) would be readable by anyone who can read the log",
                        "add redacted_fields=[" + ", ".join(
                            f"{{single_header: {{name: \"{h}\"}}}}" for h in missing) + "]",
                        rendered=(", ".join(sorted(redacted)) if redacted else "not set"))


WAF_LOGS_REDACT_CREDENTIALS = resource_policy(
    name="waf-logs-redact-credentials",
    family=FAMILY_BASELINE,
    description="Web ACL logging configurations (WAFv2, and the inline logging of WAF Classic web ACLs) "
                "redact the authorization and x-api-key headers (redactedFields single_header, case-insensitive).",
    resource_types=(WAF_LOGGING,) + CLASSIC_WEB_ACLS,
    check=_check_waf_redaction,
    config_schema={"redactedHeaders": {
        "type": "array", "items": {"type": "string"}, "default": DEFAULT_REDACTED_HEADERS,
        "description": "Header names every WAF logging configuration must redact.",
    }},
    remediation="Redact credential headers in WAF logs.",
)


# ---- log groups: KMS and retention ----------------------------------------------------------

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def _check_log_group(res: Resource, config: dict) -> Iterator[Finding]:
    key = res.get("kmsKeyId")
    # An unknown key ARN is still a key; a blank one is none.
    if key is None or (isinstance(key, str) and not is_unknown(key) and not key.strip()):
        yield violation("kmsKeyId", key or None,
                        "the logs (caller identities, request ids, errors) are then encrypted only with "
                        "a key AWS owns: you cannot restrict or audit who decrypts them",
                        "set kms_key_id to a customer-managed KMS key whose policy allows "
                        "logs.<region>.amazonaws.com")
    days = as_number(res.get("retentionInDays"))
    if is_unknown(days):
        yield cannot_check("retentionInDays")
    elif days is None or days == 0:
        yield violation("retentionInDays", res.get("retentionInDays"),
                        "logs then never expire: personal data in them is kept forever and cost grows "
                        "without bound", "set retention_in_days (e.g. 30, 90, 365)")


LOG_GROUP_PROTECTED = resource_policy(
    name="log-group-protected",
    family=FAMILY_BASELINE,
    description="CloudWatch log groups have a customer-managed KMS key and a retention period.",
    resource_types=(LOG_GROUP,),
    check=_check_log_group,
    remediation="Set kms_key_id and retention_in_days on every log group.",
    severity=Severity.MEDIUM,
)


POLICIES = [STAGE_ACCESS_LOGS, VPC_FLOW_LOGS, WAF_LOGS_REDACT_CREDENTIALS, LOG_GROUP_PROTECTED]
