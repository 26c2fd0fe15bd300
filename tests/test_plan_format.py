"""Plans match what the engine would show: its URNs, its numbers, and whether policies ran.

The engine's URN rule (https://www.pulumi.com/docs/iac/concepts/resources/names/#urns):
`urn:pulumi:<stack>::<project>::<qualified type>::<name>`, where the qualified type is the
parent's qualified type, `$`, then the resource's own type, and the root stack's type
(`pulumi:pulumi:Stack`) is part of no chain.
"""
from __future__ import annotations

import json

import pytest

from tools import plan as plan_module
from tools import preview
from tools.plan_diff import diff_plans, engine_urns


@pytest.fixture(scope="module")
def staging_plan() -> dict:
    return preview.preview("staging", with_policies=False)


def documented_urn(resource: dict, by_urn: dict[str, dict], stack: str) -> str:
    chain, parent = [resource["type"]], resource["parent"]
    while parent:
        chain.insert(0, by_urn[parent]["type"])
        parent = by_urn[parent]["parent"]
    return f"urn:pulumi:{stack}::deepseek-serving::{'$'.join(chain)}::{resource['name']}"


def test_every_urn_follows_the_engines_rule(staging_plan):
    by_urn = {r["urn"]: r for r in staging_plan["resources"]}
    for resource in staging_plan["resources"]:
        assert resource["urn"] == documented_urn(resource, by_urn, "staging")
        assert "pulumi:pulumi:Stack" not in resource["urn"]


def test_nested_resources_carry_the_whole_parent_chain(staging_plan):
    acl = next(r for r in staging_plan["resources"] if r["type"] == "aws:wafv2/webAcl:WebAcl")
    # ApiGateway > GatewayWaf > WebAcl: both component types stand in the chain.
    assert acl["urn"] == ("urn:pulumi:staging::deepseek-serving::deepseek:api_gateway:ApiGateway"
                          f"$deepseek:waf:GatewayWaf$aws:wafv2/webAcl:WebAcl::{acl['name']}")
    top = next(r for r in staging_plan["resources"] if r["type"] == "deepseek:network:Network")
    assert top["urn"] == "urn:pulumi:staging::deepseek-serving::deepseek:network:Network::net"
    assert top["parent"] == ""


def test_whole_numbers_stay_integers(staging_plan):
    text = plan_module.dumps(staging_plan)
    listener = next(r for r in staging_plan["resources"] if r["type"] == "aws:lb/listener:Listener")
    assert listener["inputs"]["port"] == 443 and isinstance(listener["inputs"]["port"], int)
    assert '"port": 443.0' not in text
    assert plan_module.mask(0.5) == 0.5 and plan_module.mask(True) is True


def test_a_plan_says_whether_the_pack_judged_it(staging_plan):
    assert staging_plan["policies"] == {"ran": False, "config": None}
    judged = preview.preview("dev")
    assert judged["policies"] == {"ran": True, "config": "policies/config/dev.json"}


def test_a_diff_with_a_plan_made_without_policies_says_so(staging_plan):
    judged = {**staging_plan, "policies": {"ran": True, "config": "policies/config/staging.json"},
              "diagnostics": [{"policy": "p", "pack": "k", "level": "mandatory", "urn": "u", "message": "m"}]}
    report = diff_plans(judged, staging_plan)
    assert report.diagnostics == ()
    assert any("Policies did not run for the new plan" in note for note in report.notes)
    assert not any("Policies did not run" in note for note in diff_plans(judged, judged).notes)


def test_plans_with_the_mock_monitors_urns_still_pair_with_engine_urns(staging_plan):
    # Plans written before this fix carried the SDK mock monitor's URNs: top-level
    # resources under the stack's type, children under their parent's last type only.
    def mock_urn(resource: dict, by_urn: dict) -> str:
        parent = by_urn.get(resource["parent"])
        chain = (f"pulumi:pulumi:Stack${resource['type']}" if parent is None
                 else f"{parent['type']}${resource['type']}")
        return f"urn:pulumi:staging::deepseek-serving::{chain}::{resource['name']}"

    by_urn = {r["urn"]: r for r in staging_plan["resources"]}
    old_urns = {urn: mock_urn(r, by_urn) for urn, r in by_urn.items()}
    old = json.loads(json.dumps(staging_plan))
    for resource in old["resources"]:
        resource["urn"] = old_urns[resource["urn"]]
        resource["parent"] = old_urns.get(resource["parent"], "")
    assert set(engine_urns(old["resources"]).values()) == set(by_urn)
    report = diff_plans(old, staging_plan)
    assert report.resources == () and report.unchanged == len(by_urn)
