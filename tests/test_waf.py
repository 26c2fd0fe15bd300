"""The web ACL on the stage: per-IP rate rule, body size limit, AWS common rules, logging.

The size rule's Content-Length regex is checked against every integer it could meet
(it is the only size check WAF can make on a body past its 64 KB inspection window), and
the component's registrations are checked as the engine records them.
"""
from __future__ import annotations

import json
import random
import re

import pytest
import requests

from components.config import Waf
from components.gateway.waf import (
    ALWAYS_COUNT,
    COMMON_RULE_SET,
    REDACTED_HEADERS,
    content_length_above,
    custom_response_bodies,
    inspection_limit_for,
    size_statement,
    web_acl_rules,
)
from tests.test_api_gateway import STAGE, cached_run, gateway_run, inventory_for
from tools.smoke import inspect_error_body

WEB_ACL = "aws:wafv2/webAcl:WebAcl"


# ------------------------------------------------------------- size arithmetic


@pytest.mark.parametrize("limit", [0, 1, 8, 9, 10, 99, 100, 1000, 65536, 147456, 196608,
                                   10 * 1024 * 1024])
def test_content_length_regex_matches_exactly_the_numbers_above_the_limit(limit):
    pattern = re.compile(content_length_above(limit))
    rng = random.Random(limit)
    candidates = set(range(0, 2100)) | {limit - 1, limit, limit + 1, limit * 10, 10 ** 12}
    candidates |= {rng.randint(0, 3 * limit + 10) for _ in range(4000)}
    for value in sorted(c for c in candidates if c >= 0):
        assert bool(pattern.match(str(value))) == (value > limit), (limit, value)
        assert bool(pattern.match(f"000{value}")) == (value > limit), (limit, value)
    for junk in ("", "abc", "12a", "-5", " 5", "5 ", "1e9"):
        assert not pattern.match(junk)


def test_content_length_regex_stays_within_wafs_size_limit():
    # WAF regex strings are at most 512 characters.
    assert len(content_length_above(10 * 1024 * 1024)) < 512


@pytest.mark.parametrize("limit,setting", [(1024, "KB_16"), (16 * 1024, "KB_16"), (16 * 1024 + 1, "KB_32"),
                                           (64 * 1024, "KB_64"), (64 * 1024 + 1, None)])
def test_body_inspection_window_is_the_smallest_that_covers_the_limit(limit, setting):
    assert inspection_limit_for(limit) == setting


def test_bodies_are_inspected_directly_only_when_the_limit_fits_the_window():
    small = size_statement(32 * 1024)["or_statement"]["statements"]
    body = next(s["size_constraint_statement"] for s in small if "size_constraint_statement" in s)
    assert body["comparison_operator"] == "GT" and body["size"] == 32 * 1024
    # Past the window WAF cannot see the rest; with MATCH those bodies are over the limit too.
    assert body["field_to_match"] == {"body": {"oversize_handling": "MATCH"}}
    large = size_statement(196_608)
    assert set(large) == {"regex_match_statement"}
    assert large["regex_match_statement"]["field_to_match"] == {"single_header": {"name": "content-length"}}


# ----------------------------------------------------------------------- rules


def rule_named(rules: list[dict], name: str) -> dict:
    return next(rule for rule in rules if rule["name"] == name)


def _depth(statement: dict) -> int:
    nested = []
    for kind in ("and_statement", "or_statement"):
        if kind in statement:
            nested += statement[kind]["statements"]
    if "not_statement" in statement:
        nested.append(statement["not_statement"]["statement"])
    return 1 + max((_depth(s) for s in nested), default=0)


def test_rules_are_ordered_uniquely_and_nest_at_most_three_levels():
    rules = web_acl_rules(Waf(), 196_608)
    assert [r["name"] for r in rules] == ["rate-per-ip", "request-size", "request-size-magnitude",
                                          "length-required", "aws-common"]
    assert [r["priority"] for r in rules] == [0, 1, 2, 3, 4]
    for rule in rules:
        # Deeper statements need rule_json in the provider, which loses drift detection.
        assert _depth(rule["statement"]) <= 3, rule["name"]
        assert rule["visibility_config"]["sampled_requests_enabled"] is False


def test_the_rate_rule_counts_per_ip_with_the_inventory_limit_and_answers_429():
    rule = rule_named(web_acl_rules(Waf(rate_limit_per_ip=600, window_seconds=120), 1024), "rate-per-ip")
    statement = rule["statement"]["rate_based_statement"]
    assert statement == {"aggregate_key_type": "IP", "limit": 600, "evaluation_window_sec": 120}
    response = rule["action"]["block"]["custom_response"]
    assert response["response_code"] == 429
    assert response["response_headers"] == [{"name": "Retry-After", "value": "120"}]


def test_the_common_rule_set_never_blocks_ordinary_prompts_over_8_kb():
    rule = rule_named(web_acl_rules(Waf(), 196_608), "aws-common")
    group = rule["statement"]["managed_rule_group_statement"]
    assert (group["vendor_name"], group["name"]) == ("AWS", COMMON_RULE_SET)
    assert rule["override_action"] == {"none": {}}
    overrides = {o["name"]: o["action_to_use"] for o in group["rule_action_overrides"]}
    assert overrides["SizeRestrictions_BODY"] == {"count": {}}
    assert set(overrides) == set(ALWAYS_COUNT)


def test_operators_can_turn_further_body_rules_to_count():
    rule = rule_named(web_acl_rules(Waf(count_only_rules=["CrossSiteScripting_BODY"]), 1024), "aws-common")
    names = [o["name"] for o in rule["statement"]["managed_rule_group_statement"]["rule_action_overrides"]]
    assert names == ["SizeRestrictions_BODY", "CrossSiteScripting_BODY"]


def test_a_content_length_with_more_digits_than_the_limit_is_refused_by_a_plain_size_rule():
    rule = rule_named(web_acl_rules(Waf(), 196_608), "request-size-magnitude")
    statement = rule["statement"]["size_constraint_statement"]
    # Six digits allowed: 1,000,000 bytes and more are refused even without the regex.
    assert (statement["comparison_operator"], statement["size"]) == ("GT", 6)
    assert statement["field_to_match"] == {"single_header": {"name": "content-length"}}
    assert rule["action"]["block"]["custom_response"]["response_code"] == 413


def test_a_body_without_content_length_is_refused_so_it_cannot_skip_the_size_rule():
    rule = rule_named(web_acl_rules(Waf(), 196_608), "length-required")
    statements = rule["statement"]["and_statement"]["statements"]
    method = statements[0]["regex_match_statement"]
    assert re.match(method["regex_string"], "POST") and not re.match(method["regex_string"], "GET")
    numeric = statements[1]["not_statement"]["statement"]["regex_match_statement"]
    assert numeric["field_to_match"] == {"single_header": {"name": "content-length"}}
    assert rule["action"]["block"]["custom_response"]["response_code"] == 411


def _as_response(status: int, content: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "application/json"
    response._content = content.encode()
    return response


def test_blocking_rules_answer_with_openai_errors_the_smoke_test_accepts():
    settings = Waf()
    rules = {r["name"]: r for r in web_acl_rules(settings, 196_608)}
    bodies = {b["key"]: b for b in custom_response_bodies(settings, 196_608)}
    for name, status in (("rate-per-ip", 429), ("request-size", 413), ("length-required", 411)):
        response = rules[name]["action"]["block"]["custom_response"]
        assert response["response_code"] == status
        body = bodies[response["custom_response_body_key"]]
        assert body["content_type"] == "APPLICATION_JSON"
        ok, description = inspect_error_body(_as_response(status, body["content"]))
        assert ok, f"{name}: {description}"
    assert "196608" in json.loads(bodies["request-too-large"]["content"])["error"]["message"]


# ------------------------------------------------------------------- component


def _acl_and_friends(stack: str = "dev"):
    run = cached_run(stack)
    return run, run.one(WEB_ACL, "gateway-waf-acl")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_web_acl_is_associated_with_the_stage_with_size_and_rate_rules(stack):
    run = cached_run(stack)
    acl = run.one(WEB_ACL, "gateway-waf-acl")
    assert acl.inputs["scope"] == "REGIONAL"
    assert acl.inputs["defaultAction"] == {"allow": {}}
    names = {rule["name"] for rule in acl.inputs["rules"]}
    assert {"rate-per-ip", "request-size", "aws-common"} <= names
    associations = {a.name: a for a in run.by_type("aws:wafv2/webAclAssociation:WebAclAssociation")}
    stages = run.by_type(STAGE)
    assert len(associations) == len(stages) >= 1
    for stage in stages:
        # One association per stage (a stage per tier: named after the tier). Referencing
        # stage.arn orders the association after the stage, which must exist first.
        association = associations[stage.name.replace("gateway-stage", "gateway-waf-association")]
        assert stage.urn in association.property_dependencies["resourceArn"]
        assert acl.urn in association.property_dependencies["webAclArn"]


def test_the_recorded_rules_use_the_inventory_rate_and_the_gateway_size_limit():
    inventory, _, _ = inventory_for("dev")
    _, acl = _acl_and_friends()
    rules = {rule["name"]: rule for rule in acl.inputs["rules"]}
    rate = rules["rate-per-ip"]["statement"]["rateBasedStatement"]
    assert rate["limit"] == inventory.gateway.waf.rate_limit_per_ip
    assert rate["evaluationWindowSec"] == inventory.gateway.waf.window_seconds
    regex = rules["request-size"]["statement"]["regexMatchStatement"]["regexString"]
    assert regex == content_length_above(16384 * 8 + 64 * 1024)
    keys = {body["key"] for body in acl.inputs["customResponseBodies"]}
    assert {"request-too-large", "ip-rate-limited", "length-required"} == keys
    # Beyond 64 KB the body is not read, so no paid larger inspection window either.
    assert "associationConfig" not in acl.inputs


def test_a_small_limit_buys_the_inspection_window_it_needs():
    run = gateway_run("dev", lambda inv: inv["gateway"].update(max_request_bytes=40_000))
    acl = run.one(WEB_ACL, "gateway-waf-acl")
    assert acl.inputs["associationConfig"] == {
        "requestBodies": [{"apiGateway": {"defaultSizeInspectionLimit": "KB_48"}}]}


def test_waf_logs_go_to_an_encrypted_aws_waf_logs_group_with_credentials_redacted():
    run, acl = _acl_and_friends()
    group = run.one("aws:cloudwatch/logGroup:LogGroup", "gateway-waf-logs")
    assert group.inputs["namePrefix"].startswith("aws-waf-logs-")
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert group.inputs["retentionInDays"] == 30
    logging = run.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", "gateway-waf-logging")
    assert acl.urn in logging.property_dependencies["resourceArn"]
    assert group.urn in logging.property_dependencies["logDestinationConfigs"]
    redacted = {field["singleHeader"]["name"] for field in logging.inputs["redactedFields"]}
    assert redacted == set(REDACTED_HEADERS) == {"authorization", "x-api-key"}


def test_waf_log_delivery_is_limited_to_this_account():
    run = cached_run("dev", preview=False)
    policy = run.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "gateway-waf-logs-delivery")
    document = json.loads(policy.inputs["policyDocument"])
    statement = document["Statement"][0]
    assert statement["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert all(resource.endswith(":*") for resource in statement["Resource"])


@pytest.fixture(scope="module")
def policy_pack():
    from tools.analyzer import PolicyPackProcess

    with PolicyPackProcess() as pack:
        yield pack


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_policy_packs_gateway_protection_accepts_the_gateway(policy_pack, stack):
    from tools.analyzer import config_path

    run = cached_run(stack)
    diagnostics = policy_pack.analyze(run.registrations, config_path(stack), stack=stack)
    gateway = [d for d in diagnostics if d.policy_name == "gateway-protection"]
    assert not gateway, "\n".join(d.message for d in gateway)
