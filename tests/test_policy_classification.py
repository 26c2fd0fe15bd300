"""The closed world: every type of the pinned providers is classified, the table is what the
rules and the curated knowledge generate, and an entry point the pack cannot judge (or has
never heard of) fails closed in staging and prod unless a security team reviewed the type."""
from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from policies.rules import all_policies, type_classes
from tests.policy_helpers import expect_clean, expect_violation, judge, pack
from tools import classify
from tools.analyzer import config_path

__all__ = ["pack"]

POLICY = "entry-point-classified"
CLASSES = {type_classes.NO_SURFACE, type_classes.UNJUDGEABLE}


def _committed() -> dict:
    return json.loads(type_classes.TABLE_PATH.read_text())


@pytest.mark.parametrize("provider", ["aws", "kubernetes"])
def test_every_type_of_the_installed_providers_is_classified(provider):
    types = classify.installed_types(provider)
    assert len(types) > (1500 if provider == "aws" else 500)  # the enumeration itself works
    table = _committed()["types"]
    missing = sorted(types - set(table))
    assert not missing, f"{len(missing)} unclassified types, e.g. {missing[:5]}: run make classify"
    assert _committed()["providers"][provider] == classify.provider_versions()[provider]


def test_each_type_has_exactly_one_known_class_and_judges_are_family_one_rules():
    names = {p.name for p in all_policies() if p.family == 1}
    for token, value in _committed()["types"].items():
        if value.startswith(type_classes.JUDGED_PREFIX):
            assert value[len(type_classes.JUDGED_PREFIX):] in names - {POLICY}, token
        else:
            assert value in CLASSES, (token, value)


def test_the_committed_table_is_what_the_rules_and_providers_generate():
    assert type_classes.TABLE_PATH.read_text() == classify.render(), "run: make classify"
    assert classify.main(["--check"]) == 0


def test_a_type_a_rule_declares_is_judged_by_that_rule_not_left_unjudgeable():
    table = _committed()["types"]
    for policy in all_policies():
        if policy.family != 1 or not getattr(policy, "judges_exposure", True):
            continue
        for token in policy.resource_types:
            if "*" not in token:
                assert table[token].startswith(type_classes.JUDGED_PREFIX), (policy.name, token)


def test_the_classifier_derives_judged_from_rules_and_entry_points_from_the_curated_lists():
    class Rule:  # the attributes the framework attaches to every policy
        family = 1
        name = "some-rule"
        resource_types = ("aws:amplify/app:App",)

    classes = classify.classify(["aws:amplify/app:App", "aws:amplify/branch:Branch", "aws:iam/role:Role"],
                                policies=[Rule()])
    assert classes == {"aws:amplify/app:App": "judged:some-rule",
                       "aws:amplify/branch:Branch": type_classes.UNJUDGEABLE,
                       "aws:iam/role:Role": type_classes.NO_SURFACE}


@pytest.mark.parametrize("token,capable", [
    ("aws:cloudfront/newEdgeThing:NewEdgeThing", True),   # a newer provider, entry-point module
    ("aws:iam/newThing:NewThing", False),
    ("kubernetes:gateway.networking.k8s.io/v1:BackendTLSPolicy", True),
    ("kubernetes:core/v2:Service", True),
    ("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", False),
    ("cloudflare:index/someNewThing:SomeNewThing", True),
    ("acme:index:Gateway", True),
    ("random:index/randomPassword:RandomPassword", False),
    ("pulumi:providers:aws", False),
])
def test_an_unheard_of_type_is_entry_point_capable_by_where_it_lives(token, capable):
    assert type_classes.entry_point_capable(token) is capable


# ---- through the analyzer protocol --------------------------------------------------------------

def _unjudgeable():
    aws.transfer.Server("site", endpoint_type="PUBLIC", identity_provider_type="SERVICE_MANAGED")


def _unknown_provider():
    pulumi.CustomResource("cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared", "tunnel",
                          {"accountId": "a", "name": "to-the-nlb"})
    pulumi.CustomResource("acme:edge/publicRoute:PublicRoute", "route", {"target": "10.0.0.5"})


def _newer_aws_type():
    pulumi.CustomResource("aws:apprunner/publicEndpoint:PublicEndpoint", "newer", {"serviceArn": "arn"})


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_an_unjudgeable_entry_point_fails_closed_in_staging_and_prod(pack, env):
    verdict = judge(pack, _unjudgeable, env)
    expect_violation(verdict, POLICY, "aws:transfer/server:Server", "site",
                     contains=['type is "aws:transfer/server:Server"', "reviewedTypes"])


def test_it_is_advisory_in_dev(pack):
    verdict = judge(pack, _unjudgeable, "dev")
    expect_violation(verdict, POLICY, "aws:transfer/server:Server", "site", level="advisory")


def test_types_of_other_providers_and_newer_aws_types_fail_closed(pack):
    verdict = judge(pack, _unknown_provider, "prod")
    expect_violation(verdict, POLICY, "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
                     "tunnel", contains=["no rule of this pack"])
    expect_violation(verdict, POLICY, "acme:edge/publicRoute:PublicRoute", "route",
                     contains=["never classified this type"])
    verdict = judge(pack, _newer_aws_type, "prod")
    expect_violation(verdict, POLICY, "aws:apprunner/publicEndpoint:PublicEndpoint", "newer",
                     contains=["make classify"])


def test_reviewed_types_are_allowed_and_nothing_else_is(pack):
    config = json.loads(config_path("prod").read_text())
    config[POLICY] = {"enforcementLevel": "mandatory", "reviewedTypes": [
        "aws:transfer/server:Server", "acme:edge/publicRoute:PublicRoute"]}

    def program():
        _unjudgeable()
        _unknown_provider()

    verdict = judge(pack, program, "prod", config=config)
    assert not verdict.on(POLICY, "aws:transfer/server:Server", "site")
    assert not verdict.on(POLICY, "acme:edge/publicRoute:PublicRoute", "route")
    expect_violation(verdict, POLICY, "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared",
                     "tunnel")


def test_judged_and_harmless_types_raise_nothing(pack):
    def program():
        aws.iam.Role("role", assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": []}))
        aws.lambda_.FunctionUrl("url", function_name="chat", authorization_type="AWS_IAM")
        pulumi.CustomResource("random:index/randomPassword:RandomPassword", "pw", {"length": 32})
        pulumi.CustomResource("kubernetes:monitoring.coreos.com/v1:ServiceMonitor", "sm", {"spec": {}})

    expect_clean(judge(pack, program, "prod"), POLICY)


def test_the_check_fails_when_the_table_is_stale(tmp_path, monkeypatch, capsys):
    stale = _committed()
    stale["types"].pop("aws:ec2/instance:Instance")
    path = tmp_path / "classification.json"
    path.write_text(json.dumps(stale, indent=1) + "\n")
    monkeypatch.setattr(type_classes, "TABLE_PATH", path)
    assert classify.main(["--check"]) == 1
    assert "make classify" in capsys.readouterr().err
