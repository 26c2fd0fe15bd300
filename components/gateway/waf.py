"""The WAFv2 web ACL in front of the API stage: per-IP rate limit, body size, AWS common rules.

API keys and usage plans meter known callers; AWS says usage-plan throttles are best
effort and keys should not be the only control ("Usage plans and API keys",
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html). The web ACL is evaluated
before API Gateway authenticates anything, so it also sheds unauthenticated floods.

Rules, in evaluation order:
0. `rate-per-ip`: a rate-based rule per client IP (inventory `gateway.waf`); blocks with a
   429 and `Retry-After` of one window, the longest it can take the count to fall.
1. `request-size`: refuses bodies larger than `max_request_bytes` with a 413. WAF sees at
   most 16 KB of a body by default and 64 KB with the web ACL's association config, far
   less than a long prompt, so the rule reads the `Content-Length` header numerically (a
   regex over its digits). When the limit fits the inspection window, a body size
   constraint with `oversize_handling = MATCH` also checks the bytes themselves: every
   body past the window is then past the limit too.
2. `request-size-magnitude`: a plain size constraint refusing a `Content-Length` with more
   digits than the limit. Rule 1 already covers it; it stays because it is the form the
   policy pack (policies/rules/stack_hygiene.py `size_cap`) and other scanners recognise as
   a size limit, and it keeps a coarse cap should rule 1's regex ever be edited wrongly.
3. `length-required`: a POST/PUT/PATCH without a numeric `Content-Length` (a chunked body)
   is refused with 411, or it would slip past rule 1. OpenAI SDKs and curl always send it.
4. `aws-common`: AWSManagedRulesCommonRuleSet. Its SizeRestrictions_BODY rule blocks every
   body over 8 KB, a fixed limit no setting raises (AWS knowledge center "How does AWS WAF
   handle body inspections for HTTP requests?"; Classmethod "SizeRestrictions_BODY limit
   cannot be raised"): it would refuse ordinary prompts, so it only counts and rule 1 is
   the size limit. `gateway.waf.count_only_rules` turns further body rules to count.
5. `gateway-set-headers` (only when the gateway sets such a header, e.g. the tier's
   `X-DeepSeek-Priority`): a request that already carries one is refused with 400. The
   integration maps the gateway's own value into the header; refusing the client's copy
   at the edge means no client-sent value can ever sit beside it, however the integration
   merges headers of the same name.

The web ACL is associated with every stage of the API (one association per stage ARN; a
web ACL may protect many resources, a resource has at most one web ACL).

Custom responses take precedence over the protected resource's own responses (AWS WAF
"Custom responses for Block actions"), so these blocks reach clients as 413/411/429 JSON
in the OpenAI error shape, not as API Gateway's WAF_FILTERED 403. A WAF body is static:
it cannot carry the request id, so it asks the client to quote the `x-amzn-RequestId`
response header instead.

Logging goes to a CloudWatch log group whose name starts with `aws-waf-logs-` (WAF
refuses others), encrypted with the stack's logs key. WAF logs carry headers, never
bodies; `authorization` and `x-api-key` are redacted. Sampled requests stay off: the
console would show their headers, API keys included, to anyone with WAF read access.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import Waf as WafSettings
from components.gateway.responses import error_body

COMMON_RULE_SET = "AWSManagedRulesCommonRuleSet"
# Blocks every body over 8 KB: always counted, never blocking (see the module docstring).
ALWAYS_COUNT = ("SizeRestrictions_BODY",)
# The body bytes WAF can be told to inspect for API Gateway, and their setting names.
INSPECTION_LIMITS = ((16 * 1024, "KB_16"), (32 * 1024, "KB_32"), (48 * 1024, "KB_48"),
                     (64 * 1024, "KB_64"))
# Headers WAF must never write to its logs: they hold API keys and bearer tokens.
REDACTED_HEADERS = ("authorization", "x-api-key")
BODY_METHODS_REGEX = "^(POST|PUT|PATCH)$"
NUMERIC_REGEX = "^[0-9]+$"

SIZE_BODY_KEY = "request-too-large"
LENGTH_BODY_KEY = "length-required"
RATE_BODY_KEY = "ip-rate-limited"
HEADER_BODY_KEY = "gateway-header-sent"
# A WAF response is static: the request id exists only in API Gateway's response header.
WAF_REQUEST_ID = "unavailable: quote the x-amzn-RequestId response header"


def content_length_above(limit: int) -> str:
    """A regex matching exactly the decimal integers greater than `limit`.

    WAF compares strings, not numbers; this spells "greater than" digit by digit: a
    longer number, or the same length with a larger digit after an equal prefix. Leading
    zeros are allowed and ignored. Only the RE2/PCRE subset WAF supports is used.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    width = len(digits)
    # More significant digits than the limit has.
    branches = [f"[1-9][0-9]{{{width},}}"]
    # Same length: equal up to position i, larger at i, anything after.
    for index, digit in enumerate(digits):
        value = int(digit)
        if value == 9:
            continue
        larger = "9" if value == 8 else f"[{value + 1}-9]"
        rest = width - index - 1
        tail = "" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
        branches.append(f"{digits[:index]}{larger}{tail}")
    return "^0*(" + "|".join(branches) + ")$"


def inspection_limit_for(max_request_bytes: int) -> Optional[str]:
    """The smallest body inspection setting covering the limit, or None beyond 64 KB."""
    for size, name in INSPECTION_LIMITS:
        if max_request_bytes <= size:
            return name
    return None


def _visibility(metric: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric,
            "sampled_requests_enabled": False}


def _header(name: str) -> dict:
    return {"single_header": {"name": name}}


_NONE = [{"priority": 0, "type": "NONE"}]


def _block(status: int, body_key: str, headers: Optional[dict] = None) -> dict:
    response: dict = {"response_code": status, "custom_response_body_key": body_key}
    if headers:
        response["response_headers"] = [{"name": k, "value": v} for k, v in headers.items()]
    return {"block": {"custom_response": response}}


def size_statement(max_request_bytes: int) -> dict:
    """Matches requests whose declared or inspected body is larger than the limit."""
    declared = {"regex_match_statement": {
        "regex_string": content_length_above(max_request_bytes),
        "field_to_match": _header("content-length"),
        "text_transformations": _NONE,
    }}
    if inspection_limit_for(max_request_bytes) is None:
        return declared
    inspected = {"size_constraint_statement": {
        "comparison_operator": "GT",
        "size": max_request_bytes,
        "field_to_match": {"body": {"oversize_handling": "MATCH"}},
        "text_transformations": _NONE,
    }}
    return {"or_statement": {"statements": [declared, inspected]}}


def refused_headers_rule(headers: Sequence[str], priority: int) -> dict:
    """Block a request carrying any of `headers` (lowercase names; WAF matches header names
    case-insensitively). A size constraint `size >= 0` matches whenever the header exists:
    "if a web request doesn't have the request component that's specified in the rule
    statement, AWS WAF evaluates the request as not matching" (AWS WAF "Request components
    in AWS WAF"), so only a request that sends the header matches."""
    present = [{"size_constraint_statement": {
        "comparison_operator": "GE", "size": 0, "field_to_match": _header(header),
        "text_transformations": _NONE}} for header in headers]
    return {
        "name": "gateway-set-headers",
        "priority": priority,
        "action": _block(400, HEADER_BODY_KEY),
        "statement": present[0] if len(present) == 1 else {"or_statement": {"statements": present}},
        "visibility_config": _visibility("gateway-set-headers"),
    }


def web_acl_rules(settings: WafSettings, max_request_bytes: int,
                  refused_headers: Sequence[str] = ()) -> list[dict]:
    """The web ACL's rules as pulumi-aws v7 `WebAclRuleArgsDict`s (snake_case keys)."""
    count_only = list(ALWAYS_COUNT) + [r for r in settings.count_only_rules if r not in ALWAYS_COUNT]
    extra = [refused_headers_rule(refused_headers, 5)] if refused_headers else []
    return [
        {
            "name": "rate-per-ip",
            "priority": 0,
            "action": _block(429, RATE_BODY_KEY, {"Retry-After": str(settings.window_seconds)}),
            "statement": {"rate_based_statement": {
                "aggregate_key_type": "IP",
                "limit": settings.rate_limit_per_ip,
                "evaluation_window_sec": settings.window_seconds,
            }},
            "visibility_config": _visibility("rate-per-ip"),
        },
        {
            "name": "request-size",
            "priority": 1,
            "action": _block(413, SIZE_BODY_KEY),
            "statement": size_statement(max_request_bytes),
            "visibility_config": _visibility("request-size"),
        },
        {
            "name": "request-size-magnitude",
            "priority": 2,
            "action": _block(413, SIZE_BODY_KEY),
            "statement": {"size_constraint_statement": {
                # Measures the header's text: more digits than the limit has is always over it.
                "comparison_operator": "GT",
                "size": len(str(max_request_bytes)),
                "field_to_match": _header("content-length"),
                "text_transformations": _NONE,
            }},
            "visibility_config": _visibility("request-size-magnitude"),
        },
        {
            "name": "length-required",
            "priority": 3,
            "action": _block(411, LENGTH_BODY_KEY),
            "statement": {"and_statement": {"statements": [
                {"regex_match_statement": {"regex_string": BODY_METHODS_REGEX,
                                           "field_to_match": {"method": {}},
                                           "text_transformations": _NONE}},
                {"not_statement": {"statement": {"regex_match_statement": {
                    "regex_string": NUMERIC_REGEX,
                    "field_to_match": _header("content-length"),
                    "text_transformations": _NONE}}}},
            ]}},
            "visibility_config": _visibility("length-required"),
        },
        {
            "name": "aws-common",
            "priority": 4,
            "override_action": {"none": {}},
            "statement": {"managed_rule_group_statement": {
                "vendor_name": "AWS",
                "name": COMMON_RULE_SET,
                "rule_action_overrides": [
                    {"name": rule, "action_to_use": {"count": {}}} for rule in count_only
                ],
            }},
            "visibility_config": _visibility("aws-common"),
        },
        *extra,
    ]


def custom_response_bodies(settings: WafSettings, max_request_bytes: int,
                           refused_headers: Sequence[str] = ()) -> list[dict]:
    """The JSON bodies the blocking rules answer with, in the OpenAI error shape."""
    def body(key: str, message: str, error_type: str, code: str) -> dict:
        return {"key": key, "content_type": "APPLICATION_JSON",
                "content": error_body(message=message, error_type=error_type, code=code,
                                      request_id=WAF_REQUEST_ID)}

    extra = [body(HEADER_BODY_KEY,
                  f"Do not send the {', '.join(refused_headers)} header: the gateway sets it from your "
                  "API key's tier.", "invalid_request_error", "GATEWAY_HEADER_SENT")] if refused_headers else []
    return [
        body(SIZE_BODY_KEY,
             f"The request body is larger than this API accepts ({max_request_bytes} bytes). "
             "Shorten the prompt or the conversation history.",
             "invalid_request_error", "REQUEST_TOO_LARGE"),
        body(LENGTH_BODY_KEY,
             "Send the request body with a Content-Length header (chunked uploads are refused).",
             "invalid_request_error", "LENGTH_REQUIRED"),
        body(RATE_BODY_KEY,
             f"Too many requests from your network address (more than {settings.rate_limit_per_ip} "
             f"in {settings.window_seconds} s). Retry after the Retry-After seconds.",
             "rate_limit_error", "IP_RATE_LIMITED"),
        *extra,
    ]


def logging_policy(log_group_arn: str, account_id: str, region: str, partition: str) -> str:
    """Lets WAF's log delivery write to the group, only for this account's web ACLs."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "WafLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn}:*"],
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": f"arn:{partition}:logs:{region}:{account_id}:*"},
            },
        }],
    }, sort_keys=True)


@dataclass
class GatewayWafArgs:
    settings: WafSettings
    max_request_bytes: int
    # The API stage's ARN: referencing stage.arn orders the association after the stage.
    resource_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    region: str
    account_id: pulumi.Input[str]
    partition: str = "aws"
    # With a stage per tier: {tier: stage ARN}, one association each (resource_arn unused).
    stage_arns: Optional[Mapping[str, pulumi.Input[str]]] = None
    # Headers only the gateway may set (lowercase): a request carrying one is refused.
    refused_headers: Sequence[str] = ()


class GatewayWaf(pulumi.ComponentResource):
    web_acl_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    rule_names: Sequence[str]
    # The web ACL's name and metric name: the WebACL dimension of its AWS/WAFV2 metrics.
    metric_name: str

    def __init__(self, name: str, args: GatewayWafArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:waf:GatewayWaf", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rules = web_acl_rules(args.settings, args.max_request_bytes, args.refused_headers)
        self.rule_names = [rule["name"] for rule in rules]

        inspection = inspection_limit_for(args.max_request_bytes)
        association_config = None
        if inspection is not None and inspection != "KB_16":
            # Only pay for a larger inspection window when the size rule reads the body.
            association_config = {"request_bodies": [
                {"api_gateway": {"default_size_inspection_limit": inspection}}]}

        # Name and metric name carry the stack: AWS/WAFV2 metrics are keyed by them (WebACL
        # dimension), so two stacks in one account and region never share a series, and the
        # dashboard and alarms can name the series at preview (components/observability.py).
        self.metric_name = f"deepseek-{pulumi.get_stack()}-{name}"
        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=self.metric_name,
            scope="REGIONAL",
            description="deepseek-serving API: per-IP rate, body size, AWS common rules",
            default_action={"allow": {}},
            rules=rules,
            custom_response_bodies=custom_response_bodies(args.settings, args.max_request_bytes,
                                                          args.refused_headers),
            association_config=association_config,
            visibility_config=_visibility(self.metric_name),
            opts=child,
        )

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            # WAF only delivers to groups named aws-waf-logs-*; the prefix keeps auto-naming.
            name_prefix="aws-waf-logs-deepseek-",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=child,
        )
        policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-logs-delivery",
            policy_name=pulumi.Output.concat("waf-logs-", self.log_group.name),
            policy_document=pulumi.Output.all(self.log_group.arn, args.account_id).apply(
                lambda values: logging_policy(values[0], values[1], args.region, args.partition)),
            opts=child,
        )
        aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-logging",
            resource_arn=self.web_acl.arn,
            log_destination_configs=[self.log_group.arn],
            redacted_fields=[{"single_header": {"name": header}} for header in REDACTED_HEADERS],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        if args.stage_arns is None:
            self.association = aws.wafv2.WebAclAssociation(
                f"{name}-association",
                resource_arn=args.resource_arn,
                web_acl_arn=self.web_acl.arn,
                opts=child,
            )
        else:
            self.associations = {
                key: aws.wafv2.WebAclAssociation(
                    f"{name}-association-{key}", resource_arn=arn, web_acl_arn=self.web_acl.arn, opts=child)
                for key, arn in args.stage_arns.items()}

        self.web_acl_arn = self.web_acl.arn
        self.log_group_name = self.log_group.name
        self.register_outputs({"web_acl_arn": self.web_acl_arn, "log_group_name": self.log_group_name})
