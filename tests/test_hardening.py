"""The committed stacks hardened for the security baseline (issue 13), checked on the
rendered program under the mock engine, and judged by the real pack with every value known."""
from __future__ import annotations

import json
from functools import lru_cache

import pytest

from components.eks import model_service
from policies.rules import all_policies
from tests.program_harness import record_main
from tests.stack_runs import preview_run
from tools import account_settings, fake_cloud, mock_engine, stack_files
from tools.analyzer import PolicyPackProcess, config_path

STACKS = ("dev", "staging", "prod")
EKS_STACKS = ("staging", "prod")
ROLE = "aws:iam/role:Role"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INTEGRATION = "aws:apigateway/integration:Integration"


@lru_cache(maxsize=None)
def settled_run(stack: str) -> mock_engine.ProgramRun:
    """The stack as `pulumi up` would judge it: every computed value known."""
    stack_file = stack_files.load(stack)
    return record_main(stack=stack, config=stack_file.config, secret_keys=stack_file.secret_keys,
                       preview=False, region=stack_file.region)


def _trust(role) -> dict:
    return json.loads(role.inputs["assumeRolePolicy"])


def _condition(role) -> dict:
    (statement,) = _trust(role)["Statement"]
    return statement.get("Condition", {})


# ---- the baseline, judged with every value known -------------------------------------------

@pytest.fixture(scope="module")
def pack():
    with PolicyPackProcess() as running:
        yield running


@pytest.mark.parametrize("stack", STACKS)
def test_the_committed_stacks_pass_the_security_baseline_with_every_value_known(pack, stack):
    run = settled_run(stack)
    family_3 = {p.name for p in all_policies()
                if p.family == 3}
    diagnostics = pack.analyze(run.registrations, config_path(stack), stack=stack)
    found = [d for d in diagnostics if d.policy_name in family_3 and d.policy_name != "integration-tls-private-ca"]
    assert found == [], "\n".join(f"{d.policy_name}: {d.message}" for d in found)
    assert not [d for d in diagnostics if d.enforcement_level == "mandatory"]


# ---- trust policies ------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_service_roles_of_confused_deputy_services_are_pinned_to_the_account(stack):
    run = settled_run(stack)
    flow_logs = run.one(ROLE, "net-flow-logs")
    condition = _condition(flow_logs)
    region = stack_files.load(stack).region
    assert condition["StringEquals"] == {"aws:SourceAccount": fake_cloud.ACCOUNT_ID}
    assert condition["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:ec2:{region}:{fake_cloud.ACCOUNT_ID}:vpc-flow-log/*"}
    gateway_roles = [r for r in run.by_type(ROLE) if "apigateway.amazonaws.com" in r.inputs["assumeRolePolicy"]]
    # Only the stack that manages its account and region's settings has API Gateway's role.
    assert bool(gateway_roles) == account_settings.manages_account_settings(stack_files.load(stack))
    for role in gateway_roles:
        assert _condition(role)["StringEquals"]["aws:SourceAccount"] == fake_cloud.ACCOUNT_ID


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_pod_identity_roles_are_conditioned_on_cluster_namespace_and_service_account(stack):
    run = settled_run(stack)
    associations = run.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert associations
    roles = {r.urn: r for r in run.by_type(ROLE)}
    for association in associations:
        (role_urn,) = [u for u in association.property_dependencies["roleArn"] if u in roles]
        equals = _condition(roles[role_urn])["StringEquals"]
        assert equals == {
            "aws:SourceAccount": fake_cloud.ACCOUNT_ID,
            "aws:RequestTag/eks-cluster-name": f"deepseek-{stack}",
            "aws:RequestTag/kubernetes-namespace": association.inputs["namespace"],
            "aws:RequestTag/kubernetes-service-account": association.inputs["serviceAccount"],
        }, association.name


# ---- Kubernetes ----------------------------------------------------------------------------

def _model_namespaces(run) -> list[str]:
    return [d.inputs["metadata"]["namespace"] for d in run.by_type(DEPLOYMENT)]


def _policies(run, namespace: str) -> dict[str, dict]:
    return {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in run.by_type(NETWORK_POLICY)
            if p.inputs["metadata"].get("namespace") == namespace}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_model_namespace_denies_by_default_in_both_directions(stack):
    run = preview_run(stack)
    for namespace in _model_namespaces(run):
        assert _policies(run, namespace)["default-deny"] == {"podSelector": {},
                                                             "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_model_pods_egress_only_to_dns_the_pod_identity_agent_and_their_weights(stack):
    run = settled_run(stack)
    inventory = {m["name"]: m for m in stack_files.load(stack).config["deepseek-serving:inventory"]["models"]}
    for namespace in _model_namespaces(run):
        egress = _policies(run, namespace)["dns-credentials-and-weights-only"]
        assert egress["policyTypes"] == ["Egress"]
        rules = egress["egress"]
        assert rules[0]["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
        assert {p["port"] for p in rules[0]["ports"]} == {53}
        destinations = [peer["ipBlock"] for rule in rules[1:] for peer in rule["to"]]
        if inventory[namespace]["weights"]["source"] == "s3":
            assert {"cidr": "169.254.170.23/32"} in destinations
            assert {d["cidr"] for d in destinations[1:]} == set(fake_cloud.S3_PREFIX_LIST_CIDRS)
            assert all(rule["ports"] in ([{"protocol": "TCP", "port": 443}], [{"protocol": "TCP", "port": 80}])
                       for rule in rules[1:])
        else:
            # A hub download: public addresses on 443, never the VPC or the metadata service.
            (block,) = destinations
            assert block["cidr"] == "0.0.0.0/0"
            assert {"10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except"])


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_the_metrics_scraper_is_admitted_by_its_pod_labels_not_its_namespace(stack):
    run = preview_run(stack)
    for namespace in _model_namespaces(run):
        ingress = _policies(run, namespace)["load-balancer-and-metrics-only"]["ingress"]
        peers = [peer for rule in ingress for peer in rule["from"] if "namespaceSelector" in peer]
        assert peers and all(peer["podSelector"] == {"matchLabels": model_service.PROMETHEUS_SERVER_LABELS}
                             for peer in peers)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_pods_and_containers_run_as_a_uid_of_10000_or_above(stack):
    for deployment in preview_run(stack).by_type(DEPLOYMENT):
        spec = deployment.inputs["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] >= 10000
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["securityContext"]["runAsUser"] >= 10000, container["name"]
            assert container["securityContext"]["runAsGroup"] >= 10000, container["name"]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_only_the_weight_stager_receives_pod_identity_credentials(stack):
    for deployment in preview_run(stack).by_type(DEPLOYMENT):
        template = deployment.inputs["spec"]["template"]
        skipped = set(template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"].split(","))
        names = {c["name"] for c in template["spec"]["containers"] + template["spec"].get("initContainers", [])}
        assert skipped == names - {"stage-weights"}
        assert "server" in skipped


# ---- the gateway holds no backend credential ------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_no_integration_carries_a_static_credential(stack):
    run = preview_run(stack)
    for integration in run.by_type(INTEGRATION):
        parameters = integration.inputs["requestParameters"]
        assert parameters["integration.request.header.Authorization"] == "'none'"
        assert not any(isinstance(value, dict) for value in parameters.values()), integration.name


@pytest.mark.parametrize("stack", STACKS)
def test_access_logs_record_the_callers_identity_claims(stack):
    stages = preview_run(stack).by_type("aws:apigateway/stage:Stage")
    assert stages  # one shared stage, or one per tier (staging)
    for stage in stages:
        fields = json.loads(stage.inputs["accessLogSettings"]["format"])
        assert fields["callerSub"] == "$context.authorizer.claims.sub"
        assert fields["callerClientId"] == "$context.authorizer.claims.client_id"
        assert fields["principal"] == "$context.authorizer.principalId"
        assert fields["apiKeyId"] == "$context.identity.apiKeyId"


@pytest.mark.parametrize("stack", ("staging", "prod"))
def test_outside_dev_an_api_key_is_never_the_only_credential(stack):
    run = preview_run(stack)
    authorizers = run.by_type("aws:apigateway/authorizer:Authorizer")
    allow_listed = [p for p in run.by_type("aws:apigateway/restApiPolicy:RestApiPolicy")
                    if "aws:SourceIp" in str(p.inputs.get("policy"))]
    assert authorizers or allow_listed


# --- trace collector egress (observability.tracing) ----------------------------------------

@pytest.mark.parametrize("endpoint, peers", [
    ("http://otel-collector.observability.svc:4317",
     [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}]),
    ("http://adot.tracing.svc.cluster.local:4317",
     [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tracing"}}}]),
    ("http://10.40.7.12:4317", [{"ipBlock": {"cidr": "10.40.7.12/32"}}]),
    ("https://collector.internal.example.com:4317",
     [{"ipBlock": {"cidr": c}} for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]),
])
def test_the_collector_is_admitted_by_what_its_url_names_and_only_on_its_port(endpoint, peers):
    from components.eks.network_policy import collector_egress_rule

    rule = collector_egress_rule(endpoint)
    assert rule == {"to": peers, "ports": [{"protocol": "TCP", "port": 4317}]}
    # Never the node's metadata service or the Pod Identity agent.
    assert not any("169.254" in peer.get("ipBlock", {}).get("cidr", "") for peer in rule["to"])


def test_model_pods_reach_the_trace_collector_only_when_their_runtime_exports_traces():
    stack_file = stack_files.load("eks-runtimes")
    config = json.loads(json.dumps(stack_file.config))
    inventory = config["deepseek-serving:inventory"]
    inventory.setdefault("observability", {})["tracing"] = {
        "otlp_endpoint": "http://otel-collector.observability.svc:4317"}
    run = record_main(stack="eks-runtimes", config=config, secret_keys=stack_file.secret_keys,
                      preview=False, region=stack_file.region)
    runtimes = {m["name"]: m.get("runtime", "vllm") for m in inventory["models"]}
    checked = 0
    for namespace in _model_namespaces(run):
        rules = _policies(run, namespace)["dns-credentials-and-weights-only"]["egress"]
        collector = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 4317}]]
        if runtimes[namespace] == "ollama":
            assert collector == []
        else:
            assert collector == [{"to": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "observability"}}}], "ports": [{"protocol": "TCP", "port": 4317}]}]
            checked += 1
    assert checked == 2 and "ollama" in runtimes.values()  # vLLM and TGI export, Ollama cannot
    # Without tracing, no model pod has a rule for it.
    plain = settled_run("eks-runtimes")
    for namespace in _model_namespaces(plain):
        rules = _policies(plain, namespace)["dns-credentials-and-weights-only"]["egress"]
        assert not [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 4317}]]
