"""From nothing to a live private EKS stack: two phases, an SSM tunnel, and the CLI wrapped
so the policy pack is never forgotten.

The real CLI is not on this machine: the wrapper is run against stand-in `pulumi` and `aws`
executables on PATH that record how they were called (and, for `aws ssm start-session`,
listen on the forwarded port as Session Manager would).
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pulumi
import pytest

from tests import stack_runs
from tests.conftest import ROOT
from tools import preview

K8S_PROVIDER = "pulumi:providers:kubernetes"


def test_phase_cluster_builds_the_cluster_and_the_way_in_but_nothing_inside():
    plan = preview.preview("prod", phase="cluster")
    types = {r["type"] for r in plan["resources"]}
    assert {"aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "deepseek:api_tunnel:ApiTunnel"} <= types
    assert not any(t.startswith("kubernetes:") for t in types)
    assert "aws:apigateway/restApi:RestApi" not in types
    assert plan["summary"]["mandatory"] == 0, plan["diagnostics"]
    assert plan["policies"]["config"] == "policies/config/prod.json"


def test_phase_all_keeps_the_tunnel_so_later_applies_reach_the_cluster_too():
    plan = preview.preview("prod", with_policies=False)
    assert any(r["type"] == "deepseek:api_tunnel:ApiTunnel" for r in plan["resources"])
    assert plan["outputs"]["eks"]["api_tunnel"]["instance_id"] == "[unknown]"


def test_the_tunnel_host_has_no_way_in_but_session_manager():
    run = stack_runs.preview_run("prod")
    host = run.one("aws:ec2/instance:Instance", "eks-api-tunnel-host").inputs
    assert host["associatePublicIpAddress"] is False
    assert host["metadataOptions"]["httpTokens"] == "required"
    assert host["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert host["rootBlockDevice"]["encrypted"] is True
    tunnel_group = run.one("aws:ec2/securityGroup:SecurityGroup", "eks-api-tunnel-sg")
    assert "ingress" not in tunnel_group.inputs or tunnel_group.inputs["ingress"] == []
    ingress_rules = run.by_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    into_tunnel = [r for r in ingress_rules
                   if tunnel_group.urn in r.property_dependencies.get("securityGroupId", [])]
    from_tunnel = [r for r in ingress_rules
                   if tunnel_group.urn in r.property_dependencies.get("referencedSecurityGroupId", [])]
    assert into_tunnel == [] and {r.inputs["fromPort"] for r in from_tunnel} == {443}
    egress = {r.name: r.inputs for r in run.by_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.name.startswith("eks-api-tunnel")}
    assert {e["fromPort"] for e in egress.values()} == {443}
    assert all("cidrIpv4" not in e for e in egress.values())


@pulumi.runtime.test
def test_the_kubernetes_provider_goes_through_the_tunnel_and_still_verifies_the_cluster():
    run = stack_runs.run_with_inventory("prod", lambda inventory: None, preview=False)
    provider = next(r for r in run.registrations if r.type == K8S_PROVIDER)
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:8443"
    assert cluster["tls-server-name"] and "127.0.0.1" not in cluster["tls-server-name"]
    assert cluster["certificate-authority-data"]
    # Reaching the cluster another way must update the provider, not replace every object.
    assert provider.inputs["clusterIdentifier"]
    return pulumi.Output.from_input(provider.inputs["clusterIdentifier"])


@pulumi.runtime.test
def test_in_vpc_access_talks_to_the_endpoint_directly_and_creates_no_tunnel():
    def in_vpc(inventory):
        inventory["eks"]["api_access"] = "in_vpc"
    run = stack_runs.run_with_inventory("prod", in_vpc, preview=False)
    assert not run.by_type("deepseek:api_tunnel:ApiTunnel")
    provider = next(r for r in run.registrations if r.type == K8S_PROVIDER)
    cluster = json.loads(provider.inputs["kubeconfig"])["clusters"][0]["cluster"]
    assert "tls-server-name" not in cluster and cluster["server"].startswith("https://")
    return pulumi.Output.from_input(cluster["server"])


# ------------------------------------------------------------------ the CLI wrapper

FAKE_PULUMI = textwrap.dedent('''\
    #!{python}
    import json, os, socket, sys
    log = os.environ["FAKE_LOG"]
    args = sys.argv[1:]
    tunnel_open = False
    with socket.socket() as probe:
        probe.settimeout(0.5)
        tunnel_open = probe.connect_ex(("127.0.0.1", 8443)) == 0
    with open(log, "a") as out:
        out.write(json.dumps({{"argv": args, "tunnel_open": tunnel_open}}) + "\\n")
    if args[:2] == ["stack", "output"]:
        print(json.dumps({{"cluster_name": "c", "api_tunnel": {{"instance_id": "i-0abc",
              "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com"}}}}))
''')

FAKE_AWS = textwrap.dedent('''\
    #!{python}
    import json, os, socket, sys, time
    args = sys.argv[1:]
    with open(os.environ["FAKE_LOG"], "a") as out:
        out.write(json.dumps({{"aws": args}}) + "\\n")
    parameters = json.loads(args[args.index("--parameters") + 1])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(parameters["localPortNumber"][0])))
    server.listen()
    server.settimeout(0.2)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection, _ = server.accept()
            connection.close()
        except OSError:
            pass
''')


def fake_bin(tmp_path: Path, *, pulumi_cli: bool = True) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"aws": FAKE_AWS, "session-manager-plugin": "#!/bin/sh\nexit 0\n"}
    if pulumi_cli:
        scripts["pulumi"] = FAKE_PULUMI
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable) if name != "session-manager-plugin" else text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), "MAKELEVEL": "1"}


def calls(env: dict) -> list[dict]:
    path = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def live(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.live", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_make_up_refuses_without_the_cli_and_runs_nothing(tmp_path):
    env = fake_bin(tmp_path, pulumi_cli=False)
    result = live(env, "up", "--stack", "dev")
    assert result.returncode == 2
    assert "`pulumi` is not on PATH" in result.stderr and "make preview" in result.stderr
    assert calls(env) == []


def test_make_up_always_passes_the_pack_and_the_environments_config(tmp_path):
    env = fake_bin(tmp_path)
    assert live(env, "up", "--stack", "dev").returncode == 0
    [call] = calls(env)
    argv = call["argv"]
    assert argv[:3] == ["up", "--stack", "dev"]
    assert argv[argv.index("--policy-pack") + 1] == "policies"
    assert argv[argv.index("--policy-pack-config") + 1] == "policies/config/dev.json"
    assert "deepseek-serving:phase=all" in argv


def test_the_first_apply_of_a_private_cluster_needs_no_tunnel(tmp_path):
    env = fake_bin(tmp_path)
    assert live(env, "up", "--stack", "prod", "--phase", "cluster").returncode == 0
    [call] = calls(env)
    assert "deepseek-serving:phase=cluster" in call["argv"]
    assert call["argv"][call["argv"].index("--policy-pack-config") + 1] == "policies/config/prod.json"


def test_later_applies_run_through_the_ssm_tunnel(tmp_path):
    env = fake_bin(tmp_path)
    result = live(env, "preview", "--stack", "prod")
    assert result.returncode == 0, result.stderr
    recorded = calls(env)
    session = next(c["aws"] for c in recorded if "aws" in c)
    assert session[:3] == ["ssm", "start-session", "--target"] and "i-0abc" in session
    assert "AWS-StartPortForwardingSessionToRemoteHost" in session
    assert json.loads(session[session.index("--parameters") + 1]) == {
        "host": ["ABC.gr7.us-east-1.eks.amazonaws.com"], "portNumber": ["443"], "localPortNumber": ["8443"]}
    [preview_call] = [c for c in recorded if c.get("argv", [""])[0] == "preview"]
    assert preview_call["tunnel_open"] is True
    assert "--policy-pack" in preview_call["argv"]
