"""The internal TLS load balancer per model, as the real program registers it on the ec2 stack."""
from __future__ import annotations

import pulumi
import pytest

from components.load_balancer import LISTENER_PORT, TLS_POLICY
from tests import program_harness
from tests.stack_runs import inventory_of, preview_run, run_with_inventory
from tools import mock_engine

NLB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
CERTIFICATE = "aws:acm/certificate:Certificate"
DEV_MODELS = {"r1-qwen-7b": 8000, "r1-qwen-1-5b-gguf": 11434}
GATE_PORT = 8099


@pytest.fixture(scope="module")
def dev() -> mock_engine.ProgramRun:
    return preview_run("dev")


@pytest.fixture(scope="module")
def dev_inventory() -> dict:
    return inventory_of("dev")


def test_every_model_gets_its_own_internal_nlb_with_security_groups_from_creation(dev, dev_inventory):
    nlbs = {r.name: r.inputs for r in dev.by_type(NLB)}
    assert set(nlbs) == {f"{model}-lb-nlb" for model in DEV_MODELS}
    for inputs in nlbs.values():
        assert inputs["internal"] is True
        assert inputs["loadBalancerType"] == "network"
        assert len(inputs["securityGroups"]) == 1
        # PrivateLink (the gateway's VPC link) bypasses inbound rules; nothing else gets in.
        assert inputs["enforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"
        assert inputs["enableCrossZoneLoadBalancing"] is dev_inventory["load_balancer"]["cross_zone"]


def test_the_listener_is_tls_on_443_with_a_tls12_plus_policy_and_the_inventory_certificate(dev, dev_inventory):
    listeners = dev.by_type(LISTENER)
    assert len(listeners) == len(DEV_MODELS)
    for listener in listeners:
        inputs = listener.inputs
        assert inputs["protocol"] == "TLS" and inputs["port"] == LISTENER_PORT
        assert inputs["sslPolicy"] == TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
        assert inputs["certificateArn"] == dev_inventory["load_balancer"]["certificate"]["certificate_arn"]
        (action,) = inputs["defaultActions"]
        assert action["type"] == "forward"


@pytest.mark.parametrize("model, port", sorted(DEV_MODELS.items()))
def test_health_checks_ask_the_host_gate_and_never_reset_live_streams(dev, dev_inventory, model, port):
    group = dev.one(TARGET_GROUP, f"{model}-lb-targets").inputs
    assert group["protocol"] == "TCP" and group["port"] == port and group["targetType"] == "instance"
    check = group["healthCheck"]
    assert (check["protocol"], check["path"], check["port"], check["matcher"]) == ("HTTP", "/ready", str(GATE_PORT), "200")
    (state,) = group["targetHealthStates"]
    assert state["enableUnhealthyConnectionTermination"] is False
    assert state["unhealthyDrainingInterval"] == 300  # the secure default of the inventory
    assert group["deregistrationDelay"] == 300
    assert group["connectionTermination"] is False


def test_the_draining_times_follow_the_inventory():
    def change(raw):
        raw["load_balancer"].update(deregistration_delay_seconds=900, unhealthy_draining_seconds=120,
                                    cross_zone=False)

    run = run_with_inventory("dev", change)
    for group in run.by_type(TARGET_GROUP):
        assert group.inputs["deregistrationDelay"] == 900
        assert group.inputs["targetHealthStates"][0]["unhealthyDrainingInterval"] == 120
    assert all(n.inputs["enableCrossZoneLoadBalancing"] is False for n in run.by_type(NLB))


@pytest.mark.parametrize("model, port", sorted(DEV_MODELS.items()))
def test_the_nlb_group_admits_no_address_range_and_reaches_only_its_targets(dev, dev_inventory, model, port):
    group = dev.one(SG, f"{model}-lb-sg").inputs
    assert group.get("ingress", []) == []
    cidr = dev_inventory["network"]["cidr"]
    assert sorted((e["fromPort"], e["toPort"]) for e in group["egress"]) == sorted({(port, port), (GATE_PORT, GATE_PORT)})
    assert all(e["cidrBlocks"] == [cidr] and e["protocol"] == "tcp" for e in group["egress"])


@pytest.mark.parametrize("model, port", sorted(DEV_MODELS.items()))
def test_hosts_admit_the_model_and_gate_ports_only_from_their_load_balancer(dev, model, port):
    by_urn = dev.by_urn()
    lb_group = dev.one(SG, f"{model}-lb-sg")
    host_group = dev.one(SG, f"{model}-hosts")
    rules = [r for r in dev.by_type(INGRESS)
             if host_group.urn in r.property_dependencies.get("securityGroupId", [])]
    assert sorted(r.inputs["fromPort"] for r in rules) == sorted([port, GATE_PORT])
    for rule in rules:
        assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs
        assert rule.property_dependencies["referencedSecurityGroupId"] == [lb_group.urn]
        assert by_urn[lb_group.urn].type == SG
    # Nothing else opens the host group.
    assert not host_group.inputs.get("ingress")


def test_a_private_ca_certificate_is_issued_for_the_internal_domain_and_used_by_the_listener():
    def private_ca(raw):
        raw["load_balancer"]["certificate"] = {
            "mode": "private_ca", "internal_domain": "llm.dev.internal.acme.example",
            "private_ca_arn": "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/"
                              "1c3e5a7b-9d2f-4e6a-8b1c-3d5e7f9a2b4c"}

    run = run_with_inventory("dev", private_ca)
    certificates = run.by_type(CERTIFICATE)
    assert len(certificates) == len(DEV_MODELS)
    for certificate in certificates:
        assert certificate.inputs["domainName"] == "llm.dev.internal.acme.example"
        assert certificate.inputs["certificateAuthorityArn"].endswith("1c3e5a7b-9d2f-4e6a-8b1c-3d5e7f9a2b4c")
        assert certificate.inputs["keyAlgorithm"] in ("EC_prime256v1", "RSA_2048")
    cert_urns = {c.urn for c in certificates}
    for listener in run.by_type(LISTENER):
        assert set(listener.property_dependencies["certificateArn"]) <= cert_urns


def test_load_balancers_belong_to_their_component(dev):
    components = {r.name: r.urn for r in dev.by_type("deepseek:load_balancer:LoadBalancer")}
    assert set(components) == {f"{model}-lb" for model in DEV_MODELS}
    for model in DEV_MODELS:
        for token, name in ((NLB, f"{model}-lb-nlb"), (LISTENER, f"{model}-lb-tls"),
                            (TARGET_GROUP, f"{model}-lb-targets"), (SG, f"{model}-lb-sg")):
            assert dev.one(token, name).parent == components[f"{model}-lb"]


@pulumi.runtime.test
def test_the_gateway_reads_what_it_needs_from_each_load_balancer():
    program_harness.fresh_event_loop()
    program = program_harness.start("dev")
    balancers = program["platform"].load_balancers
    assert set(balancers) == set(DEV_MODELS)

    def check(values):
        for model, (arn, suffix, tg_suffix) in zip(sorted(balancers), values):
            balancer = balancers[model]
            assert arn.startswith("arn:aws:elasticloadbalancing:")
            assert suffix.startswith(f"net/{model}-lb-nlb/")
            assert tg_suffix.startswith(f"targetgroup/{model}-lb-targets/")
            assert balancer.internal_domain == "llm.dev.internal.acme.example"
            assert balancer.listener_port == 443 and balancer.tls_skip_verification is False

    return pulumi.Output.all(*[
        pulumi.Output.all(balancers[m].arn, balancers[m].arn_suffix, balancers[m].target_group_arn_suffix)
        for m in sorted(balancers)]).apply(check)
