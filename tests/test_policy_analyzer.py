"""tools/analyzer.py: the pack is launched and driven exactly as the engine does it, config
is reconciled and validated like the CLI does, and the results are what preview needs."""
from __future__ import annotations

import copy
import json
import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest

from policies.rules import PACK_NAME, all_policies
from tests.policy_helpers import METHOD, SG, expect_violation, judge, model_deployment, pack, vllm_container
from tests.program_harness import record
from tools import mock_engine
from tools.analyzer import (
    PolicyConfigError, PolicyPackProcess, analyze, config_path, has_mandatory, load_policy_config,
)

__all__ = ["pack"]


def _open_method():
    api = aws.apigateway.RestApi("llm-api")
    aws.apigateway.Method("post", rest_api=api.id, resource_id=api.root_resource_id, http_method="POST",
                          authorization="NONE")


def test_the_pack_describes_every_policy_with_its_default_level_type_and_schema(pack):
    info = pack.info
    assert info.name == PACK_NAME
    assert info.version == "1.0.0"  # from PulumiPolicy.yaml, as the CLI reports it
    assert [p.name for p in info.policies] == [p.name for p in all_policies()]
    by_name = {p.name: p for p in info.policies}
    for policy in all_policies():
        expected = "mandatory" if policy.family == 1 else "advisory"
        assert by_name[policy.name].enforcement_level == expected
    assert by_name["internet-reachability"].policy_type == "stack"
    assert by_name["apigateway-method-auth"].policy_type == "resource"
    assert by_name["approved-capacity"].config_schema["maxReplicas"]["type"] == "integer"
    assert pack.plugin_version()


def test_config_files_are_reconciled_with_schema_defaults(pack):
    resolved = load_policy_config(config_path("staging"), pack.info)
    assert resolved["eks-endpoint-private"] == {"enforcementLevel": "mandatory",
                                                "allowedPublicAccessCidrs": ["203.0.113.0/28"]}
    assert resolved["approved-capacity"]["allowedInstanceFamilies"][:3] == ["g5", "g6", "g6e"]
    assert resolved["gateway-protection"]["maxRequestBytes"] == 1048576


def test_all_and_shorthand_levels_apply_like_the_cli(pack):
    resolved = load_policy_config({"all": "disabled", "function-url-auth": "advisory"}, pack.info)
    assert resolved["function-url-auth"]["enforcementLevel"] == "advisory"
    assert {e["enforcementLevel"] for n, e in resolved.items() if n != "function-url-auth"} == {"disabled"}


@pytest.mark.parametrize("config, fragment", [
    ({"apigateway-method-auht": "mandatory"}, "'apigateway-method-auht' is not a policy"),
    ({"apigateway-method-auth": "blocking"}, "expected one of advisory, mandatory"),
    ({"security-group-no-internet-ingress": {"allowedIngressCidrs": ["0.0.0.0/0"]}}, "allowedIngressCidrs.0"),
    ({"approved-capacity": {"maxReplicas": "many"}}, "approved-capacity.maxReplicas"),
    ({"approved-capacity": {"maxReplica": 3}}, "Additional properties are not allowed"),
])
def test_a_config_that_does_not_fit_the_pack_is_refused(pack, config, fragment):
    with pytest.raises(PolicyConfigError, match=re.escape(fragment)):
        load_policy_config(config, pack.info)


def test_a_disabled_policy_reports_nothing_and_remediate_counts_as_mandatory(pack):
    base = json.loads(config_path("prod").read_text())
    disabled = copy.deepcopy(base)
    disabled["apigateway-method-auth"]["enforcementLevel"] = "disabled"
    assert not judge(pack, _open_method, config=disabled).of("apigateway-method-auth")

    remediate = copy.deepcopy(base)
    remediate["apigateway-method-auth"]["enforcementLevel"] = "remediate"
    verdict = judge(pack, _open_method, config=remediate)
    expect_violation(verdict, "apigateway-method-auth", METHOD, "post", level="mandatory")
    assert has_mandatory(verdict.diagnostics)


def test_secrets_reach_the_pack_as_envelopes_and_never_come_back_in_messages(pack):
    token = "sk-policy-test-000000000000000000000000"

    def program():
        model_deployment("leaky", vllm_container(env=[{"name": "OPENAI_API_KEY",
                                                       "value": pulumi.Output.secret(token)}]))

    verdict = judge(pack, program)
    deployment = verdict.run.one("kubernetes:apps/v1:Deployment", "leaky")
    assert "1b47061264138c4ac30d75fd1eb44270" in json.dumps(deployment.inputs)  # the envelope went over the wire
    assert verdict.of("no-plaintext-secrets")
    assert all(token not in d.message and token not in d.description for d in verdict.diagnostics)


def test_diagnostics_carry_what_preview_prints_and_puts_in_the_plan(pack):
    verdict = judge(pack, _open_method, "dev")
    diagnostic = expect_violation(verdict, "apigateway-method-auth", METHOD, "post")
    as_json = diagnostic.to_json()
    assert set(as_json) == {"policy_name", "policy_pack", "policy_pack_version", "urn", "message",
                            "description", "enforcement_level", "severity"}
    assert as_json["policy_pack"] == PACK_NAME and as_json["severity"] == "high"
    # The SDK prefixes the description; the analyzer keeps it in `description` only.
    assert not diagnostic.message.startswith(diagnostic.description)
    assert json.loads(json.dumps(as_json)) == as_json


def test_the_one_shot_form_starts_and_stops_its_own_pack():
    run = record(_open_method, stack="dev")
    diagnostics = analyze(run.registrations, policy_config=config_path("dev"), stack="dev")
    assert [d.policy_name for d in diagnostics if d.is_mandatory] == ["apigateway-method-auth"]


def test_closing_the_pack_interrupts_it_and_it_exits_cleanly():
    running = PolicyPackProcess()
    running.start()
    process = running._process  # the subprocess the engine would own
    try:
        assert process is not None and process.poll() is None
    finally:
        running.close()
    assert process.returncode == 0  # stopped by SIGINT, not killed
    with pytest.raises(Exception, match="not running"):
        running.configure(None)


def test_a_pack_directory_without_pulumipolicy_yaml_is_refused(tmp_path):
    with pytest.raises(Exception, match="not a policy pack"):
        PolicyPackProcess(tmp_path).start()


def test_unknown_values_are_sent_as_the_engine_sentinel(pack):
    def program():
        # AWS allocates the VPC's IPv6 block, so nobody knows it during a first preview.
        vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16", assign_generated_ipv6_cidr_block=True)
        aws.ec2.SecurityGroup("computed", ingress=[
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "ipv6_cidr_blocks": [vpc.ipv6_cidr_block]}])

    verdict = judge(pack, program)
    group = verdict.run.one(SG, "computed")
    assert group.inputs["ingress"][0]["ipv6CidrBlocks"] == [mock_engine.UNKNOWN]
    expect_violation(verdict, "security-group-no-internet-ingress", SG, "computed",
                     contains=["unknown during preview"])
