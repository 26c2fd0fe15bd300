"""The guide's serving advice as configuration: priority scheduling, periodic restarts,
per-request limits, warm-up before readiness on EKS, JSON runtime logs, IP allow-lists and
refusals that point at the alternatives. Checked on what the real program registers and
on the real scripts run against local servers.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import logging.config
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes_validate
import pytest

from components.admission import INVENTORY_PROBLEMS
from components.config import InventoryError, parse_inventory
from components.eks import model_service
from components.serving import runtimes
from tests.stack_runs import inventory_of, run_with_inventory
from tools import stack_files

GROUP = "aws:autoscaling/group:Group"
CRON_JOB = "kubernetes:batch/v1:CronJob"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def parse(raw: dict, stack: str):
    return parse_inventory(raw, stack=stack, secret_keys=set(stack_files.load(stack).secret_keys))


def launch_for(stack: str, change=None, model_index: int = 0) -> runtimes.RuntimeLaunch:
    raw = inventory_of(stack)
    if change:
        change(raw)
    inventory = parse(raw, stack)
    return runtimes.render_for_inventory(inventory, inventory.models[model_index])


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# --- 1. priority scheduling ---------------------------------------------------------------

def test_a_vllm_model_can_schedule_by_the_request_priority():
    def priority(raw):
        raw["models"][0]["scheduling_policy"] = "priority"
    assert flag(launch_for("dev", priority).args, "--scheduling-policy") == "priority"
    # vLLM's default stays implicit: nothing changes for first-come, first-served models.
    assert "--scheduling-policy" not in launch_for("dev").args


def test_priority_scheduling_on_a_runtime_without_it_is_refused_with_the_alternative():
    raw = inventory_of("staging")
    raw["models"][0]["scheduling_policy"] = "priority"
    with pytest.raises(InventoryError) as error:
        parse(raw, "staging")
    message = str(error.value)
    assert "models[0]" in message and "scheduling_policy priority" in message
    assert "tgi" in message and "fcfs" in message


def test_each_tier_publishes_the_priority_its_clients_send():
    def tiers(raw):
        raw["gateway"]["tiers"][0]["priority"] = -5
    run = run_with_inventory("dev", tiers)
    limits = run.outputs["tier_limits"]
    first = inventory_of("dev")["gateway"]["tiers"][0]["name"]
    assert limits[first]["priority"] == -5
    assert all("priority" in tier for tier in limits.values())


# --- 2. periodic restarts -------------------------------------------------------------------

def test_ec2_replicas_are_replaced_after_the_maximum_lifetime():
    def lifetime(raw):
        raw["models"][0]["max_lifetime_days"] = 2
    run = run_with_inventory("dev", lifetime)
    groups = {r.inputs["tags"][1]["value"]: r.inputs for r in run.by_type(GROUP)}
    first, second = (m["name"] for m in inventory_of("dev")["models"])
    assert groups[first]["maxInstanceLifetime"] == 2 * 86400
    # Replacement launches before it terminates, so serving capacity never drops.
    assert groups[first]["instanceMaintenancePolicy"]["minHealthyPercentage"] == 100
    assert "maxInstanceLifetime" not in groups[second]


@functools.lru_cache(maxsize=None)
def restarting_prod():
    def lifetime(raw):
        raw["models"][0]["max_lifetime_days"] = 1
    return run_with_inventory("prod", lifetime)


def test_eks_pods_are_restarted_on_a_schedule_by_a_job_that_may_only_patch_its_deployment():
    run = restarting_prod()
    model = inventory_of("prod")["models"][0]["name"]
    (cron,) = [r.inputs for r in run.by_type(CRON_JOB)]
    assert cron["metadata"]["namespace"] == model
    spec = cron["spec"]
    assert spec["schedule"].split()[1:] == ["3", "*", "*", "*"] and spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    container = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["rollout", "restart", f"deployment/{model}", "--namespace", model]
    assert "@sha256:" in container["image"]
    (role,) = [r.inputs for r in run.by_type(ROLE) if r.inputs["metadata"]["name"] == "restarter"]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"],
                              "resourceNames": [model], "verbs": ["get", "patch"]}]
    # The restart rolls with the Deployment's own strategy: a new pod serves before an old stops.
    (deployment,) = [r.inputs for r in run.by_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == model]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_restart_cronjob_is_a_valid_kubernetes_object():
    (cron,) = [r.inputs for r in restarting_prod().by_type(CRON_JOB)]
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "CronJob", **cron}, "1.33", strict=True)


def test_a_lifetime_under_a_day_is_refused():
    raw = inventory_of("dev")
    raw["models"][0]["max_lifetime_days"] = 0
    with pytest.raises(InventoryError, match=r"models\[0\]\.max_lifetime_days"):
        parse(raw, "dev")


def test_models_without_a_lifetime_get_no_restart_job():
    assert not list(run_with_inventory("prod", lambda raw: None).by_type(CRON_JOB))


# --- 3. limits on a single request ------------------------------------------------------------

def test_tgi_batching_knobs_are_set_explicitly():
    args = launch_for("staging").args
    assert flag(args, "--max-waiting-tokens") == str(runtimes.TGI_MAX_WAITING_TOKENS)
    assert flag(args, "--waiting-served-ratio") == f"{runtimes.TGI_WAITING_SERVED_RATIO:g}"


def test_ollama_models_are_created_with_the_workloads_output_cap_as_default():
    def cap(raw):
        raw["models"][1]["workload"] = {"prompt_tokens": {"typical": 500, "p95": 2000},
                                        "output_tokens": {"typical": 200, "max": 1024}}
    launch = launch_for("dev", cap, model_index=1)
    assert launch.modelfile_parameters == (("num_predict", "1024"),)
    assert launch.config_files[runtimes.MODELFILE_PARAMETERS] == "PARAMETER num_predict 1024\n"


# --- 4. warm-up before readiness on EKS ------------------------------------------------------

class FakeRuntime:
    """A local server answering like a runtime: lists the model, generates when asked."""

    def __init__(self, model: str, *, listed: bool = True, generation_status: int = 200,
                 key: str | None = None):
        self.generations: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _authorized(self) -> bool:
                return key is None or self.headers.get("Authorization") == f"Bearer {key}"

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if not self._authorized():
                    return self._reply(401, {"error": "unauthorized"})
                self._reply(200, {"data": [{"id": model}] if listed else []})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return self._reply(401, {"error": "unauthorized"})
                fake.generations.append({"path": self.path, "body": body})
                self._reply(generation_status, {"ok": generation_status == 200})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_probe(command: list[str], launch: runtimes.RuntimeLaunch, port: int, env: dict) -> int:
    """The startup probe's command, pointed at the local server instead of the pod's port."""
    if command[0] == "python3":
        command = [sys.executable, *command[1:]]
    local = [part.replace(f"127.0.0.1:{launch.port}", f"127.0.0.1:{port}")
             .replace(f"/dev/tcp/127.0.0.1/{launch.port}", f"/dev/tcp/127.0.0.1/{port}") for part in command]
    return subprocess.run(local, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, timeout=60).returncode


@pytest.mark.parametrize("stack, index", [("dev", 0), ("staging", 0), ("dev", 1)],
                         ids=["vllm", "tgi", "ollama"])
def test_the_eks_startup_probe_passes_only_after_one_real_generation(stack, index):
    launch = launch_for(stack, model_index=index)
    command = model_service.warmup_exec(launch)
    key = "runtime-key-for-the-probe"
    env = {launch.api_key_env: key} if launch.api_key_env else {}
    runtime = FakeRuntime(launch.served_model_name, key=key if launch.api_key_env else None)
    try:
        assert run_probe(command, launch, runtime.port, env) == 0
        assert [g["path"] for g in runtime.generations] == [launch.warmup_request["path"]]
        assert runtime.generations[0]["body"] == launch.warmup_request["json"]
    finally:
        runtime.close()


@pytest.mark.parametrize("stack, index", [("dev", 0), ("staging", 0), ("dev", 1)],
                         ids=["vllm", "tgi", "ollama"])
def test_the_eks_startup_probe_fails_while_the_model_cannot_generate(stack, index):
    launch = launch_for(stack, model_index=index)
    key = "runtime-key-for-the-probe"
    env = {launch.api_key_env: key} if launch.api_key_env else {}
    runtime = FakeRuntime(launch.served_model_name, generation_status=503,
                          key=key if launch.api_key_env else None)
    try:
        assert run_probe(model_service.warmup_exec(launch), launch, runtime.port, env) != 0
    finally:
        runtime.close()


def test_a_vllm_model_not_yet_listed_is_not_warmed_up():
    launch = launch_for("dev")
    runtime = FakeRuntime(launch.served_model_name, listed=False)
    try:
        assert run_probe(model_service.warmup_exec(launch), launch, runtime.port, {}) != 0
        assert runtime.generations == []
    finally:
        runtime.close()


def test_ec2_and_eks_warm_up_with_the_same_request():
    """Both platforms send the launch's warm-up request: the EC2 host writes it to warmup.json,
    the EKS probe embeds it."""
    for stack, index in (("dev", 0), ("dev", 1), ("staging", 0)):
        launch = launch_for(stack, model_index=index)
        script = " ".join(model_service.warmup_exec(launch))
        assert launch.warmup_request["path"] in script
        assert (launch.warmup_request["json"].get("max_tokens") == 1
                or launch.warmup_request["json"].get("parameters", {}).get("max_new_tokens") == 1
                or launch.warmup_request["json"].get("options", {}).get("num_predict") == 1)


# --- 6. structured logs ---------------------------------------------------------------------

def test_vllm_logs_json_lines_through_the_shipped_logging_config():
    launch = launch_for("dev")
    path = launch.env["VLLM_LOGGING_CONFIG_PATH"]
    assert path == f"{runtimes.RUNTIME_CONFIG_DIR}/logging.json"
    config = json.loads(launch.config_files["logging.json"])
    stream = io.StringIO()
    config["handlers"]["out"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("vllm.engine").info("engine started in %.1f s", 12.5)
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.9", "POST",
                                                  "/v1/chat/completions", "1.1", 200)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "engine started in 12.5 s" and lines[0]["levelname"] == "INFO"
    assert lines[1]["name"] == "uvicorn.access" and "/v1/chat/completions" in lines[1]["message"]


def test_every_runtime_logs_without_prompts_and_tgi_and_vllm_log_json():
    assert "--json-output" in launch_for("staging").args
    for launch in (launch_for("dev"), launch_for("staging"), launch_for("dev", model_index=1)):
        line = " ".join(launch.command_line) + " " + " ".join(f"{k}={v}" for k, v in launch.env.items())
        for switch in ("--enable-log-requests", "--enable-log-outputs", "OLLAMA_DEBUG=1"):
            assert switch not in line


def test_runtime_config_files_reach_the_pod_and_a_change_rolls_it():
    run = restarting_prod()
    model = inventory_of("prod")["models"][0]["name"]
    maps = [r.inputs for r in run.by_type(CONFIG_MAP) if r.inputs["metadata"]["namespace"] == model]
    assert any("logging.json" in m.get("data", {}) for m in maps)
    (deployment,) = [r.inputs for r in run.by_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == model]
    pod = deployment["spec"]["template"]
    server = pod["spec"]["containers"][0]
    assert {"name": "runtime-config", "mountPath": runtimes.RUNTIME_CONFIG_DIR, "readOnly": True} \
        in server["volumeMounts"]
    assert "deepseek-serving/runtime-config" in pod["metadata"]["annotations"]


# --- 5. IP allow-lists ----------------------------------------------------------------------

def test_an_allow_list_denies_other_networks_before_the_key_is_checked():
    def allow(raw):
        raw["gateway"]["allowed_source_cidrs"] = ["203.0.113.0/24", "198.51.100.7/32"]
    run = run_with_inventory("dev", allow)
    (policy,) = [r.inputs for r in run.by_type("aws:apigateway/restApiPolicy:RestApiPolicy")]
    document = json.loads(policy["policy"])
    deny = next(s for s in document["Statement"] if s["Effect"] == "Deny")
    assert deny["Condition"] == {"NotIpAddress": {"aws:SourceIp": ["198.51.100.7/32", "203.0.113.0/24"]}}
    assert deny["Resource"] == "execute-api:/*" and deny["Action"] == "execute-api:Invoke"
    # The API key is still required on every method.
    methods = [r.inputs for r in run.by_type("aws:apigateway/method:Method")]
    assert methods and all(m["apiKeyRequired"] for m in methods)


def test_no_allow_list_no_resource_policy_and_a_world_allow_list_is_refused():
    assert not list(run_with_inventory("dev", lambda raw: None).by_type("aws:apigateway/restApiPolicy:RestApiPolicy"))
    raw = inventory_of("dev")
    raw["gateway"]["allowed_source_cidrs"] = ["0.0.0.0/0"]
    with pytest.raises(InventoryError, match="allowed_source_cidrs"):
        parse(raw, "dev")


# --- 10. alternatives -----------------------------------------------------------------------

@pytest.mark.parametrize("instance_type", ["m7i.2xlarge", "c7i.4xlarge", "r7i.8xlarge"])
def test_a_cpu_instance_is_refused_with_a_pointer_to_the_alternatives(instance_type):
    raw = inventory_of("dev")
    raw["models"][0]["instance_type"] = instance_type
    inventory = parse(raw, "dev")
    with pytest.raises(INVENTORY_PROBLEMS) as error:
        runtimes.render_for_inventory(inventory, inventory.models[0])
    assert instance_type in str(error.value) and "docs/ALTERNATIVES.md" in str(error.value)


def test_the_allow_list_policy_is_not_an_open_invoke_for_the_pack():
    """The pack's no-public-invoke rule reads an open Allow paired with a Deny outside the
    listed networks as confined; this is the document the gateway registers."""
    from components.gateway.api import source_ip_policy
    from policies.rules import policy_documents

    document = source_ip_policy(["203.0.113.0/24"])
    assert policy_documents.open_statements(document, ["execute-api:Invoke"]) == []


# --- 7. what the smoke test's worst case is built from ----------------------------------------

def test_the_stack_exports_each_models_request_limits_from_its_launch():
    run = run_with_inventory("dev", lambda raw: None)
    limits = run.outputs["model_limits"]
    for index, model in enumerate(inventory_of("dev")["models"]):
        capacity = launch_for("dev", model_index=index).capacity
        assert limits[model["name"]] == {"max_context": capacity.max_context,
                                         "max_input_tokens": capacity.max_input_tokens,
                                         "max_output_tokens": capacity.max_new_tokens}
