"""One ModelService per model: the pod, its exposure, disruption budget, network policy and
autoscaler, checked per runtime on what the real program registers.

vLLM comes from the prod stack (tensor parallel 4 and 1), TGI from staging, Ollama from a
test-only variant of staging (one model switched to Ollama with GGUF weights from S3):
neither committed EKS stack runs Ollama.
"""
from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass

import pytest

from components.eks import model_service
from components.serving.catalog import get_instance
from components.config import parse_inventory
from components.eks.cluster import GPU_TOLERATION, POOL_LABEL
from components.network import subnet_plan
from components.serving.runtimes import render_for_inventory
from tests import stack_runs
from tools import mock_engine
from tests.program_harness import record_main

OLLAMA_WEIGHTS = {"source": "s3", "s3_uri": "s3://acme-llm-weights-staging/r1-llama-8b-q4-k-m/",
                  "manifest_sha256": "7c" * 32}


def ollama_variant(inventory: dict) -> None:
    """Staging with its first model served by Ollama, and only that model."""
    inventory["models"] = inventory["models"][:1]
    model = inventory["models"][0]
    model.update(runtime="ollama", quantization="q4_k_m", weights=dict(OLLAMA_WEIGHTS))


@functools.lru_cache(maxsize=None)
def ollama_run() -> mock_engine.ProgramRun:
    return stack_runs.run_with_inventory("staging", ollama_variant)


@functools.lru_cache(maxsize=None)
def _inventory(stack: str, variant: str):
    raw = stack_runs.inventory_of(stack)
    if variant == "ollama":
        ollama_variant(raw)
    return parse_inventory(raw, stack=stack)


@functools.lru_cache(maxsize=None)
def _launch(stack: str, variant: str, model_name: str):
    inventory = _inventory(stack, variant)
    return render_for_inventory(inventory, next(m for m in inventory.models if m.name == model_name))


@dataclass(frozen=True)
class Case:
    """One model of one stack run, and what the inventory says about it."""

    stack: str
    model_name: str
    variant: str = ""

    @property
    def id(self) -> str:
        return f"{self.variant or self.stack}-{self.model_name}"

    def run(self) -> mock_engine.ProgramRun:
        return ollama_run() if self.variant == "ollama" else stack_runs.preview_run(self.stack)

    def inventory(self):
        return _inventory(self.stack, self.variant)

    def model(self):
        return next(m for m in self.inventory().models if m.name == self.model_name)

    def launch(self):
        return _launch(self.stack, self.variant, self.model_name)

    def objects(self, type_token: str) -> list[dict]:
        return [r.inputs for r in self.run().by_type(type_token)
                if r.inputs.get("metadata", {}).get("namespace") == self.model_name
                or r.inputs.get("metadata", {}).get("name") == self.model_name and type_token.endswith("Namespace")]

    def one(self, type_token: str) -> dict:
        (found,) = self.objects(type_token)
        return found

    def named(self, type_token: str, name: str) -> dict:
        (found,) = [o for o in self.objects(type_token) if o["metadata"]["name"] == name]
        return found

    def pod(self) -> dict:
        return self.one("kubernetes:apps/v1:Deployment")["spec"]["template"]

    def server(self) -> dict:
        (container,) = self.pod()["spec"]["containers"]
        return container


CASES = [Case("prod", "r1-qwen-32b"), Case("prod", "r1-qwen-7b"), Case("staging", "r1-llama-8b"),
         Case("staging", "r1-llama-8b", variant="ollama")]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request) -> Case:
    return request.param


def _by_runtime(runtime: str) -> Case:
    return next(c for c in CASES if c.launch().runtime == runtime)


# --- one service per model -----------------------------------------------------------

@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_model_gets_one_model_service_with_its_own_load_balancer(stack):
    run = stack_runs.preview_run(stack)
    names = [m["name"] for m in stack_runs.inventory_of(stack)["models"]]
    services = run.by_type("deepseek:model_service:ModelService")
    assert sorted(s.name for s in services) == sorted(names)
    target_groups = stack_runs.inputs(run, "aws:lb/targetGroup:TargetGroup")
    assert sorted(t["tags"]["model"] for t in target_groups) == sorted(names)
    assert all(t["targetType"] == "ip" for t in target_groups)


# --- namespace and identity ----------------------------------------------------------

def test_the_namespace_enforces_pod_security_restricted(case):
    (namespace,) = [n for n in stack_runs.inputs(case.run(), "kubernetes:core/v1:Namespace")
                    if n["metadata"]["name"] == case.model_name]
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"


def test_no_service_account_token_is_mounted(case):
    assert case.one("kubernetes:core/v1:ServiceAccount")["automountServiceAccountToken"] is False
    assert case.pod()["spec"]["automountServiceAccountToken"] is False


# --- the pod ---------------------------------------------------------------------------

def test_the_server_runs_the_runtime_flags_from_the_shared_launch(case):
    launch = case.launch()
    server = case.server()
    assert server["image"] == launch.image
    assert server["args"] == launch.args
    assert "command" not in server  # the image's entrypoint takes the launch's arguments
    literal = {e["name"]: e["value"] for e in server["env"] if "value" in e}
    for key, value in launch.env.items():
        assert literal[key] == value
    assert server["ports"] == [{"name": "http", "containerPort": launch.port, "protocol": "TCP"}]


def test_the_server_gets_no_key_and_no_secret(case):
    # No backend key (docs/BACKEND_AUTH.md): no Kubernetes Secret for one, no key variable.
    server = case.server()
    assert not any(e["name"] in ("VLLM_API_KEY", "API_KEY") for e in server["env"])
    assert not any(arg.startswith("--api-key") for arg in server["args"])
    if case.model().weights.source != "hub" or case.model().hf_token is None:
        assert case.objects("kubernetes:core/v1:Secret") == []


def test_gpu_and_memory_requests_equal_limits_and_follow_tensor_parallel(case):
    launch = case.launch()
    resources = case.server()["resources"]
    tp = launch.capacity.tensor_parallel_size
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == str(tp)
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    instance = get_instance(case.inventory().gpu_instance_type(case.model()))
    memory_gib = int(resources["limits"]["memory"].removesuffix("Gi"))
    assert 0 < memory_gib < instance.memory_gib * tp / instance.gpu_count


def test_the_pod_tolerates_the_gpu_taint_and_selects_its_pool(case):
    spec = case.pod()["spec"]
    assert spec["tolerations"] == [GPU_TOLERATION]
    assert spec["nodeSelector"] == {POOL_LABEL: case.model().node_pool}


def test_replicas_spread_across_zones(case):
    constraints = case.pod()["spec"]["topologySpreadConstraints"]
    zone = next(c for c in constraints if c["topologyKey"] == "topology.kubernetes.io/zone")
    assert zone["maxSkew"] == 1
    assert zone["labelSelector"]["matchLabels"] == model_service.selector_labels(case.model())


def test_dev_shm_is_a_memory_volume_only_with_tensor_parallel(case):
    spec = case.pod()["spec"]
    shm_volumes = [v for v in spec["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    shm_mounts = [m for m in case.server()["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    if case.launch().capacity.tensor_parallel_size > 1:
        (volume,) = shm_volumes
        assert volume["emptyDir"]["sizeLimit"].endswith("Gi")
        assert shm_mounts == [{"name": volume["name"], "mountPath": "/dev/shm"}]
    else:
        assert shm_volumes == [] and shm_mounts == []


def test_weights_are_staged_and_verified_by_an_init_container_before_start(case):
    model, launch = case.model(), case.launch()
    init = case.pod()["spec"]["initContainers"][0]
    assert init["name"] == "stage-weights"
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["MANIFEST_SHA256"] == model.weights.manifest_sha256
    script = init["command"][-1]
    assert 'echo "$MANIFEST_SHA256  SHA256SUMS" | sha256sum --check --strict' in script
    # Every file against the manifest, the manifest split over the CPUs and checked in parallel.
    assert "split -en r/$n SHA256SUMS $c/" in script
    assert "xargs -n1 -P$n sha256sum -c --strict --quiet" in script
    if model.weights.source == "s3":
        assert init["image"] == model_service.WEIGHTS_STAGING_IMAGE
        assert "@sha256:" in init["image"]
        assert env["S3_URI"] == model.weights.s3_uri
    else:
        assert init["image"] == launch.image
        assert env["REVISION"] == model.revision and len(model.revision) == 40
    # The server reads the verified copy read-only.
    (weights,) = [m for m in case.server()["volumeMounts"] if m["name"] == "weights"]
    assert weights == {"name": "weights", "mountPath": launch.model_path, "readOnly": True}


def test_the_startup_probe_covers_the_model_load_budget(case):
    launch = case.launch()
    startup = case.server()["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= launch.startup_budget_seconds
    # The startup probe is the warm-up generation (tests/test_guide_serving.py runs it).
    assert startup["exec"]["command"] == model_service.warmup_exec(launch)
    assert "initialDelaySeconds" not in startup


def test_readiness_proves_the_model_serves(case):
    launch = case.launch()
    readiness = case.server()["readinessProbe"]
    if launch.runtime == "vllm":
        # /v1/models must name the served model: a body check, so an exec probe.
        script = " ".join(readiness["exec"]["command"])
        assert f"127.0.0.1:{launch.port}/v1/models" in script
        assert "os.environ" not in script
        assert repr(launch.served_model_name) in script
    elif launch.runtime == "tgi":
        assert readiness["httpGet"] == {"path": launch.readiness_path, "port": "http"}
    else:
        assert readiness["exec"]["command"] == ["ollama", "show", launch.served_model_name]


def test_liveness_is_cheap_and_patient_so_long_generations_survive(case):
    launch = case.launch()
    liveness = case.server()["livenessProbe"]
    assert liveness["httpGet"]["path"] == launch.liveness_path
    assert liveness["timeoutSeconds"] >= 5
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 120


def test_every_container_runs_restricted(case):
    spec = case.pod()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*spec["initContainers"], *spec["containers"]]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert context["readOnlyRootFilesystem"] is True
        assert not container.get("ports", [{}])[0].get("hostPort")
    assert not spec.get("hostNetwork")


def test_termination_lets_in_flight_streams_finish(case):
    launch = case.launch()
    spec = case.pod()["spec"]
    sleep = case.server()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep > 0
    assert spec["terminationGracePeriodSeconds"] >= sleep + launch.drain_seconds


def test_rollouts_never_remove_a_serving_replica_first(case):
    deployment = case.run().by_type("kubernetes:apps/v1:Deployment")
    (registration,) = [r for r in deployment if r.inputs["metadata"]["namespace"] == case.model_name]
    strategy = registration.inputs["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert registration.inputs["spec"]["replicas"] == case.model().min_replicas
    assert "spec.replicas" in registration.ignore_changes  # KEDA's HPA owns it afterwards


# --- exposure, disruption, network ---------------------------------------------------

def test_the_service_is_cluster_internal(case):
    service = case.one("kubernetes:core/v1:Service")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == model_service.selector_labels(case.model())
    assert service["ports"][0]["port"] == case.launch().port


def test_the_pods_are_bound_to_the_shared_nlb_target_group(case):
    run = case.run()
    (binding,) = [r for r in run.by_type("kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
                  if r.inputs["metadata"]["namespace"] == case.model_name]
    spec = binding.inputs["spec"]
    assert spec["targetType"] == "ip"
    assert spec["serviceRef"] == {"name": case.model_name, "port": case.launch().port}
    target_group = run.one("aws:lb/targetGroup:TargetGroup", f"{case.model_name}-lb-targets")
    assert target_group.urn in binding.property_dependencies["spec"]
    controller = run.one("kubernetes:helm.sh/v3:Release", "eks-addons-aws-load-balancer-controller")
    assert controller.urn in binding.dependencies


def test_only_the_nlb_security_group_reaches_the_pods_port(case):
    run = case.run()
    rule = run.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", f"{case.model_name}-from-nlb")
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == case.launch().port
    assert "cidrIpv4" not in rule.inputs
    nlb_group = run.one("aws:ec2/securityGroup:SecurityGroup", f"{case.model_name}-lb-sg")
    assert nlb_group.urn in rule.property_dependencies["referencedSecurityGroupId"]


def test_the_nlb_health_check_uses_an_open_route_that_answers_once_serving(case):
    launch = case.launch()
    target_group = case.run().one("aws:lb/targetGroup:TargetGroup", f"{case.model_name}-lb-targets")
    check = target_group.inputs["healthCheck"]
    assert check["port"] == "traffic-port"
    expected = launch.liveness_path if launch.readiness_requires_api_key else launch.readiness_path
    assert check["path"] == expected


def test_a_disruption_budget_keeps_all_but_one_replica(case):
    pdb = case.one("kubernetes:policy/v1:PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == model_service.selector_labels(case.model())
    pod_labels = case.pod()["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_network_policy_admits_only_the_load_balancer_path_and_the_scraper(case):
    launch = case.launch()
    policy = case.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "load-balancer-and-metrics-only")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == model_service.selector_labels(case.model())
    # Only the load balancers' own subnets: not the VPC, where other pods and hosts live.
    inventory = case.inventory()
    _, _, load_balancer_cidrs = subnet_plan(inventory.network.cidr, inventory.network.az_count)
    port = [{"protocol": "TCP", "port": launch.port}]
    expected = [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in load_balancer_cidrs], "ports": port}]
    assert not any(ipaddress.IPv4Network(c) == inventory.network.cidr for c in load_balancer_cidrs)
    if launch.metrics_path:
        # The Prometheus server's pods, not every pod of the monitoring namespace.
        expected.append({"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}}}],
            "ports": port})
    assert policy["ingress"] == expected


# --- autoscaling -----------------------------------------------------------------------

def _scaled_object(case: Case) -> dict:
    return case.one("kubernetes:keda.sh/v1alpha1:ScaledObject")


def test_the_autoscaler_follows_the_model_replica_bounds(case):
    spec = _scaled_object(case)["spec"]
    model = case.model()
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": case.model_name}
    assert spec["minReplicaCount"] == model.min_replicas
    assert spec["maxReplicaCount"] == model.max_replicas


@pytest.mark.parametrize("runtime,metric", [("vllm", "vllm:num_requests_waiting"), ("tgi", "tgi_queue_size")])
def test_vllm_and_tgi_scale_on_their_queue_depth(runtime, metric):
    case = _by_runtime(runtime)
    # Beside the queue trigger a sleeping model has wake and business-hours triggers
    # (tests/test_scale_to_zero.py).
    (trigger,) = [t for t in _scaled_object(case)["spec"]["triggers"] if t["type"] == "prometheus"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["query"] == f'sum({metric}{{namespace="{case.model_name}"}})'
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-server.monitoring.svc.cluster.local:9090"
    assert float(trigger["metadata"]["threshold"]) >= 1
    assert case.pod()["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_the_scaled_object_waits_for_keda_and_the_deployment():
    case = _by_runtime("vllm")
    run = case.run()
    (scaled,) = [r for r in run.by_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
                 if r.inputs["metadata"]["namespace"] == case.model_name]
    keda = run.one("kubernetes:helm.sh/v3:Release", "eks-addons-keda")
    deployment = run.one("kubernetes:apps/v1:Deployment", f"{case.model_name}-deployment")
    assert {keda.urn, deployment.urn} <= set(scaled.dependencies)


# --- Ollama ----------------------------------------------------------------------------

def test_ollama_has_its_model_before_readiness_from_an_init_step():
    case = _by_runtime("ollama")
    spec = case.pod()["spec"]
    names = [c["name"] for c in spec["initContainers"]]
    assert names == ["stage-weights", "import-model"]
    importer = spec["initContainers"][1]
    assert f"ollama create {case.model_name} -f /tmp/Modelfile" in importer["command"][-1]
    assert importer["image"] == case.launch().image
    # The model store the init step filled is the one the server reads.
    store = case.launch().env["OLLAMA_MODELS"]
    assert any(m["mountPath"] == store for m in importer["volumeMounts"])
    assert any(m["mountPath"] == store for m in case.server()["volumeMounts"])
    assert "postStart" not in case.server().get("lifecycle", {})


def test_ollama_keeps_the_model_loaded_and_bounds_parallelism_and_queue():
    env = {e["name"]: e.get("value") for e in _by_runtime("ollama").server()["env"]}
    assert int(env["OLLAMA_KEEP_ALIVE"]) < 0
    assert int(env["OLLAMA_NUM_PARALLEL"]) >= 1
    assert int(env["OLLAMA_MAX_QUEUE"]) >= 1


def test_ollama_scales_on_gpu_utilisation_not_on_metrics_it_lacks():
    case = _by_runtime("ollama")
    (trigger,) = [t for t in _scaled_object(case)["spec"]["triggers"] if t["type"] == "prometheus"]
    assert trigger["metricType"] == "Value"
    assert "DCGM_FI_DEV_GPU_UTIL" in trigger["metadata"]["query"]
    assert f'namespace="{case.model_name}"' in trigger["metadata"]["query"]
    assert "prometheus.io/scrape" not in case.pod()["metadata"].get("annotations", {})


# --- pure helpers ------------------------------------------------------------------------

def test_a_replica_that_needs_more_gpus_than_its_node_has_is_refused():
    case = Case("prod", "r1-qwen-32b")
    with pytest.raises(model_service.ModelServiceError, match="tensor parallel"):
        model_service.pod_resources(case.launch(), get_instance("g6e.xlarge"))


def test_rollout_deadline_covers_staging_and_model_load():
    case = Case("prod", "r1-qwen-32b")
    deadline = case.one("kubernetes:apps/v1:Deployment")["spec"]["progressDeadlineSeconds"]
    launch = case.launch()
    assert deadline >= model_service.staging_seconds(launch) + launch.startup_budget_seconds
    assert math.isclose(model_service.staging_seconds(launch),
                        model_service.STAGING_FIXED_SECONDS + launch.weights_gib / model_service.STAGING_GIB_PER_SECOND,
                        abs_tol=1)


def test_pods_start_only_after_their_network_policy_and_the_readiness_gate_webhook(case):
    run = case.run()
    deployment = run.one("kubernetes:apps/v1:Deployment", f"{case.model_name}-deployment")
    policy = run.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{case.model_name}-network-policy")
    controller = run.one("kubernetes:helm.sh/v3:Release", "eks-addons-aws-load-balancer-controller")
    assert {policy.urn, controller.urn} <= set(deployment.dependencies)


def test_a_gated_hub_model_gets_its_token_from_a_secret_only_in_the_staging_step():
    from tests.conftest import ROOT
    from tools import stack_files

    stack_file = stack_files.load("staging")
    config = dict(stack_file.config)
    inventory = stack_runs.inventory_of("staging")
    inventory["models"][0]["hf_token"] = {"config": "hfToken"}
    config["deepseek-serving:inventory"] = inventory
    config["deepseek-serving:hfToken"] = stack_files.SECRET_PLACEHOLDER
    run = record_main(stack="staging", config=config,
                      secret_keys=[*stack_file.secret_keys, "deepseek-serving:hfToken"],
                               preview=True, region=stack_file.region)
    (token,) = [s for s in stack_runs.inputs(run, "kubernetes:core/v1:Secret")
                if s["metadata"]["name"] == model_service.HF_TOKEN_SECRET]
    assert token["stringData"][mock_engine.SECRET_SIG_KEY] == mock_engine.SECRET_SIG
    (deployment,) = [d for d in stack_runs.inputs(run, "kubernetes:apps/v1:Deployment")
                     if d["metadata"]["namespace"] == inventory["models"][0]["name"]]
    stage = deployment["spec"]["template"]["spec"]["initContainers"][0]
    (entry,) = [e for e in stage["env"] if e["name"] == "HF_TOKEN"]
    assert entry["valueFrom"]["secretKeyRef"]["name"] == model_service.HF_TOKEN_SECRET
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "HF_TOKEN" not in {e["name"] for e in server["env"]}
    assert stack_files.SECRET_PLACEHOLDER not in repr(deployment)
