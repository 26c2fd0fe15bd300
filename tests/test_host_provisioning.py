"""Host provisioning as data: cloud-init parsed with a YAML parser, units and scripts run for real."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import base64
import gzip
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.ec2 import fleet as gpu_fleet, host as hp
from components.serving import runtimes
from components.config import parse_inventory
from policies.rules.runtime_hygiene import is_secret_name
from policies.rules.workloads import env_assignments, runtimes_in_text
from tests.stack_runs import inventory_of
from tools import stack_files


def plan_for(model_name: str, stack: str = "dev", change=None) -> hp.HostPlan:
    raw = inventory_of(stack)
    if change:
        change(raw)
    inv = parse_inventory(raw, stack=stack, secret_keys=set(stack_files.load(stack).secret_keys))
    model = next(m for m in inv.models if m.name == model_name)
    launch = runtimes.render_for_inventory(inv, model)
    return hp.HostPlan(
        stack=stack, region=inv.region, model_name=model.name, launch=launch,
        weights_source=model.weights.source, manifest_sha256=model.weights.manifest_sha256,
        s3_uri=model.weights.s3_uri, hf_repo=model.hf_repo, revision=model.revision,
        hf_token_secret_arn=None, log_group_name=gpu_fleet.runtime_log_group_name(stack, model.name),
        metrics_namespace=gpu_fleet.METRICS_NAMESPACE)


def cloud_config(plan: hp.HostPlan) -> dict:
    text = hp.render_user_data(plan)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def written(config: dict, path: str) -> str:
    matches = [f for f in config["write_files"] if f["path"] == path]
    assert len(matches) == 1, f"{path} written {len(matches)} times"
    if matches[0].get("encoding") == "gz+b64":
        # As cloud-init decodes it.
        return gzip.decompress(base64.b64decode(matches[0]["content"])).decode()
    return matches[0]["content"]


def unit(config: dict, name: str) -> dict[str, list[str]]:
    """A systemd unit as {key: [values]} (keys repeat, e.g. ExecStartPre)."""
    parsed: dict[str, list[str]] = {}
    for line in written(config, f"/etc/systemd/system/{name}").splitlines():
        if "=" in line and not line.startswith(("[", "#")):
            key, value = line.split("=", 1)
            parsed.setdefault(key, []).append(value)
    return parsed


def docker_argv(config: dict) -> list[str]:
    (exec_start,) = unit(config, "deepseek-runtime.service")["ExecStart"]
    return shlex.split(exec_start)


def env_file(config: dict) -> dict[str, str]:
    text = written(config, hp.ENV_FILE)
    return {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in text.splitlines())}


# --- the document ----------------------------------------------------------------------

@pytest.mark.parametrize("model", ["r1-qwen-7b", "r1-qwen-1-5b-gguf"])
def test_user_data_is_a_cloud_config_within_the_ec2_limit(model):
    text = hp.render_user_data(plan_for(model))
    assert len(text.encode()) <= hp.USER_DATA_LIMIT
    config = yaml.safe_load(text)
    assert config == hp.cloud_config(plan_for(model))
    assert {"write_files", "runcmd", "fs_setup", "mounts"} <= set(config)


def test_the_cache_volume_is_formatted_once_and_mounted_by_label():
    config = cloud_config(plan_for("r1-qwen-7b"))
    (fs,) = config["fs_setup"]
    assert fs["overwrite"] is False and fs["device"] == hp.CACHE_DEVICE
    (mount,) = config["mounts"]
    assert mount[0] == f"LABEL={fs['label']}" and mount[1] == hp.CACHE_MOUNT


def test_host_preparation_installs_only_what_is_missing():
    script = written(cloud_config(plan_for("r1-qwen-7b")), "/usr/local/sbin/deepseek-prepare-host")
    assert "if ! command -v docker" in script
    assert "if ! command -v nvidia-ctk" in script
    assert "grep -q nvidia" in script  # the docker runtime is configured only when absent


# --- the runtime unit ------------------------------------------------------------------

def test_the_runtime_runs_under_systemd_with_restart_always_and_a_drain_on_stop():
    plan = plan_for("r1-qwen-7b")
    runtime = unit(cloud_config(plan), "deepseek-runtime.service")
    assert runtime["Restart"] == ["always"]
    assert runtime["StartLimitIntervalSec"] == ["0"]
    drain = plan.launch.drain_seconds
    assert f"/usr/bin/docker stop --time {drain} {hp.CONTAINER}" in runtime["ExecStop"]
    assert int(runtime["TimeoutStopSec"][0]) > drain
    assert int(runtime["TimeoutStartSec"][0]) >= plan.launch.startup_budget_seconds
    assert runtime["ExecStartPost"] == ["/usr/local/sbin/deepseek-warmup"]


def test_the_container_image_is_pinned_by_tag_and_digest():
    argv = docker_argv(cloud_config(plan_for("r1-qwen-7b")))
    images = [a for a in argv if a.startswith("vllm/vllm-openai:")]
    assert len(images) == 1
    assert re.fullmatch(r"vllm/vllm-openai:v[\d.]+@sha256:[0-9a-f]{64}", images[0])


def test_the_vllm_container_gets_the_rendered_flags_and_nothing_that_logs_prompts():
    plan = plan_for("r1-qwen-7b")
    argv = docker_argv(cloud_config(plan))
    runtime_args = argv[argv.index(plan.launch.image) + 1:]
    assert runtime_args == plan.launch.args
    for name in ("--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
                 "--gpu-memory-utilization", "--tensor-parallel-size", "--served-model-name"):
        assert name in runtime_args
    assert not {"--enable-log-requests", "--enable-log-outputs", "--api-key"} & set(argv)
    assert not any(a.startswith("VLLM_SERVER_DEV_MODE") for a in argv)


def test_the_container_is_published_on_the_private_address_only_and_never_on_the_host_network():
    plan = plan_for("r1-qwen-1-5b-gguf")
    argv = docker_argv(cloud_config(plan))
    assert argv[argv.index("--publish") + 1] == "${HOST_PRIVATE_IP}:11434:11434"
    assert "--network" not in argv and "--net" not in argv and "--privileged" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert "OLLAMA_HOST=0.0.0.0:11434" in env  # inside the container's own network namespace
    assert "OLLAMA_KEEP_ALIVE=-1" in env


def test_the_private_address_comes_from_imdsv2_with_a_token():
    script = written(cloud_config(plan_for("r1-qwen-7b")), "/usr/local/sbin/deepseek-host-env")
    assert "-X PUT http://169.254.169.254/latest/api/token" in script
    assert "X-aws-ec2-metadata-token:" in script


def test_logs_go_to_journald_and_the_agent_ships_the_json_export():
    plan = plan_for("r1-qwen-7b")
    config = cloud_config(plan)
    argv = docker_argv(config)
    assert argv[argv.index("--log-driver") + 1] == "journald"
    exporter = unit(config, "deepseek-log-export.service")["ExecStart"][0]
    assert "--output=json" in exporter and hp.RUNTIME_LOG in exporter
    # The agent's configuration is an SSM parameter the agent fetches (user data has 16 KB).
    fetch = next(cmd for cmd in config["runcmd"] if "fetch-config" in cmd)
    assert fetch[fetch.index("-c") + 1] == f"ssm:{plan.agent_config_parameter}"
    assert plan.agent_config_parameter.startswith("AmazonCloudWatch-")  # CloudWatchAgentServerPolicy reads these
    agent = hp.cloudwatch_agent_config(plan)
    (collected,) = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert collected["file_path"] == hp.RUNTIME_LOG
    assert collected["log_group_name"] == "/deepseek/dev/r1-qwen-7b/runtime"
    assert "nvidia_gpu" in agent["metrics"]["metrics_collected"]


# --- secrets ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["r1-qwen-7b", "r1-qwen-1-5b-gguf"])
def test_user_data_holds_no_key_and_the_runtime_gets_none(model):
    # The runtimes start without an API key (docs/BACKEND_AUTH.md): nothing fetches one, and
    # the container gets no environment file a key could arrive through.
    config = cloud_config(plan_for(model))
    text = hp.render_user_data(plan_for(model))
    assert "--api-key" not in text and "secretsmanager" not in written(config, "/usr/local/sbin/deepseek-warmup")
    # The policy pack's own reading of user data: no secret-named variable gets a literal.
    for name, value in env_assignments(text):
        assert not (is_secret_name(name) and value and not value.startswith("$")), (name, value)
    assert not {"KEY_SECRET_NAME", "KEY_VAR_NAME"} & set(env_file(config))
    assert not any("fetch-key" in entry["path"] for entry in config["write_files"])
    runtime = unit(config, "deepseek-runtime.service")
    assert not any("secret" in line or "key" in line for line in runtime["ExecStartPre"])
    assert "--env-file" not in docker_argv(config)


@pytest.mark.parametrize("model, runtime", [("r1-qwen-7b", "vllm"), ("r1-qwen-1-5b-gguf", "ollama")])
def test_user_data_mentions_only_the_runtime_it_starts(model, runtime):
    # Reviewers and the policy pack read the runtime off the user data: one host, one runtime.
    assert runtimes_in_text(hp.render_user_data(plan_for(model))) == [runtime]


# --- weights: the real script against a fake S3 ------------------------------------------

def _weights(root: Path, files: dict[str, bytes]) -> str:
    root.mkdir(parents=True)
    lines = []
    for name, content in files.items():
        (root / name).write_bytes(content)
        lines.append(f"{hashlib.sha256(content).hexdigest()}  {name}\n")
    manifest = "".join(lines).encode()
    (root / "SHA256SUMS").write_bytes(manifest)
    return hashlib.sha256(manifest).hexdigest()


def _run_fetch(tmp_path: Path, plan: hp.HostPlan) -> subprocess.CompletedProcess:
    config = cloud_config(plan)
    script = tmp_path / "fetch-weights"
    script.write_text(written(config, "/usr/local/sbin/deepseek-fetch-weights"))
    env = {**env_file(config), "MODEL_DIR": str(tmp_path / "models" / plan.model_name)}
    (tmp_path / "model.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # `aws s3 cp --recursive s3://bucket/prefix/ dest/` served from a local directory.
    (bin_dir / "aws").write_text(
        '#!/bin/bash\nset -e\n[[ $1 == configure ]] && { echo "$*" >> "$FAKE_S3/configured"; exit 0; }\n'
        '[[ $1 == s3 && $2 == cp ]] || exit 9\n[[ -s "$FAKE_S3/configured" ]] || exit 8\n'
        'src="${@: -2:1}"; dst="${@: -1}"\ncp -r "$FAKE_S3/${src#s3://}." "$dst"\n')
    (bin_dir / "aws").chmod(0o755)
    # Ownership changes are recorded, not made: the test need not run as root.
    (bin_dir / "chown").write_text('#!/bin/bash\necho "$*" >> "$CHOWN_LOG"\n')
    (bin_dir / "chown").chmod(0o755)
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env={
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"),
        "DEEPSEEK_ENV": str(tmp_path / "model.env"), "CHOWN_LOG": str(tmp_path / "chown.log")})


def _s3_plan(tmp_path: Path, files: dict[str, bytes], manifest: str | None = None) -> hp.HostPlan:
    plan = plan_for("r1-qwen-7b")
    bucket_path = tmp_path / "s3" / plan.s3_uri[len("s3://"):]
    digest = _weights(bucket_path, files)
    return dataclasses.replace(plan, manifest_sha256=manifest or digest)


FILES = {"config.json": b'{"architectures": ["Qwen2ForCausalLM"]}', "model.safetensors": b"\x00" * 4096}


def test_verified_weights_are_moved_into_place_and_not_fetched_twice(tmp_path):
    plan = _s3_plan(tmp_path, FILES)
    first = _run_fetch(tmp_path, plan)
    assert first.returncode == 0, first.stderr
    final = tmp_path / "models" / plan.model_name
    assert (final / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (final / ".verified").read_text().strip() == plan.manifest_sha256
    assert not (tmp_path / "models" / f"{plan.model_name}.partial").exists()
    again = _run_fetch(tmp_path, plan)
    assert again.returncode == 0 and "already verified" in again.stdout


def test_a_tampered_weight_file_never_reaches_the_model_directory(tmp_path):
    plan = _s3_plan(tmp_path, FILES)
    (tmp_path / "s3" / plan.s3_uri[len("s3://"):] / "model.safetensors").write_bytes(b"\x01" * 4096)
    result = _run_fetch(tmp_path, plan)
    assert result.returncode != 0
    assert not (tmp_path / "models" / plan.model_name).exists()


def test_a_manifest_other_than_the_pinned_one_is_refused(tmp_path):
    plan = _s3_plan(tmp_path, FILES, manifest="0" * 64)
    result = _run_fetch(tmp_path, plan)
    assert result.returncode != 0
    assert not (tmp_path / "models" / plan.model_name).exists()


def test_files_missing_from_the_manifest_are_refused(tmp_path):
    plan = _s3_plan(tmp_path, FILES)
    (tmp_path / "s3" / plan.s3_uri[len("s3://"):] / "extra.py").write_text("import os")
    result = _run_fetch(tmp_path, plan)
    assert result.returncode != 0 and "not in the manifest" in result.stderr
    assert not (tmp_path / "models" / plan.model_name).exists()


def test_hub_weights_are_downloaded_at_the_pinned_revision_then_verified():
    plan = plan_for("r1-llama-8b", stack="staging")
    env = env_file(cloud_config(plan))
    assert env["WEIGHTS_SOURCE"] == "hub"
    assert env["REVISION"] == "6a6f4aa4197940add57724a7707d069478df56b1"
    script = written(cloud_config(plan), "/usr/local/sbin/deepseek-fetch-weights")
    assert "revision='$REVISION'" in script
    # Same verification as S3 after the download branch.
    assert script.index("snapshot_download") < script.index("sha256sum -c --strict --quiet")


# --- the health gate: the real script against a fake runtime -------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeVllm(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/models":
            body = json.dumps({"data": [{"id": "r1-qwen-7b"}]}).encode()
        elif self.path == "/health":
            body = b""
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_health_gate_is_ready_only_when_warm_and_the_model_is_listed(tmp_path):
    plan = plan_for("r1-qwen-7b")
    config = cloud_config(plan)
    runtime_port, gate_port = _free_port(), _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", runtime_port), _FakeVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gate_file = tmp_path / "gate.py"
    gate_file.write_text(written(config, "/usr/local/lib/deepseek/health_gate.py"))
    # No AWS credentials and no aws CLI: the gate's metric publisher must not reach AWS.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({**env_file(config), "HOST_PRIVATE_IP": "127.0.0.1", "AWS_EC2_METADATA_DISABLED": "true",
                "PATH": os.path.dirname(sys.executable), "RUNTIME_PORT": str(runtime_port),
                "GATE_PORT": str(gate_port), "STATE_DIR": str(tmp_path)})
    gate = subprocess.Popen([sys.executable, str(gate_file)], env=env)
    ready = f"http://127.0.0.1:{gate_port}/ready"
    try:
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            try:
                first = _status(ready)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert first is not None, "the health gate never answered"
        assert first == 503  # the model serves but the warm-up has not finished
        (tmp_path / "warm").touch()
        assert _status(ready) == 200
        assert _status(f"http://127.0.0.1:{gate_port}/live") == 200
        (tmp_path / "draining").touch()  # the spot watcher got a notice: stop admitting
        assert _status(ready) == 503
        (tmp_path / "draining").unlink()
        assert _status(ready) == 200
        server.shutdown()
        server.server_close()
        assert _status(ready) == 503  # the runtime went away: stop sending traffic
    finally:
        gate.terminate()
        gate.wait(timeout=10)
        server.shutdown()
        server.server_close()


def test_the_warm_up_creates_the_ollama_model_before_marking_the_host_ready():
    config = cloud_config(plan_for("r1-qwen-1-5b-gguf"))
    script = written(config, "/usr/local/sbin/deepseek-warmup")
    assert script.index("ollama create") < script.index("touch /run/deepseek/warm")
    assert json.loads(written(config, "/etc/deepseek/warmup.json"))["options"]["num_predict"] == 1
    # The Modelfile takes the server-side default cap on generated tokens before create.
    assert script.index("Modelfile.parameters") < script.index("ollama create")
    cap = plan_for("r1-qwen-1-5b-gguf").launch.capacity.max_new_tokens
    assert written(config, "/etc/deepseek-runtime/Modelfile.parameters") == f"PARAMETER num_predict {cap}\n"
    assert env_file(config)["READINESS_PATH"] == "/api/tags"


def test_rendered_scripts_are_valid_shell_and_python():
    config = cloud_config(plan_for("r1-qwen-7b"))
    for entry in config["write_files"]:
        if entry["path"].startswith("/usr/local/sbin/"):
            subprocess.run(["bash", "-n"], input=written(config, entry["path"]), text=True, check=True)
    compile(written(config, "/usr/local/lib/deepseek/health_gate.py"), "health_gate.py", "exec")


def test_a_single_quote_in_a_runtime_argument_is_refused():
    with pytest.raises(hp.HostProvisioningError, match="single quote"):
        hp.exec_line(["docker", "run", "it's"])


def test_the_tgi_host_config_carries_the_tgi_knobs_and_no_key():
    plan = plan_for("r1-llama-8b", stack="staging")
    config = cloud_config(plan)
    argv = docker_argv(config)
    runtime_args = argv[argv.index(plan.launch.image) + 1:]
    assert runtime_args == plan.launch.args
    for name in ("--max-input-tokens", "--max-total-tokens", "--max-batch-prefill-tokens",
                 "--max-concurrent-requests", "--payload-limit"):
        assert name in runtime_args
    # Ignored by TGI 3 for flash-attention models, so never rendered.
    assert "--max-batch-total-tokens" not in runtime_args
    assert "--json-output" in runtime_args
    assert runtime_args[runtime_args.index("--usage-stats") + 1] == "off"
    assert not env_file(config).get("KEY_VAR_NAME") and not env_file(config).get("KEY_SECRET_NAME")
    assert runtimes_in_text(hp.render_user_data(plan)) == ["tgi"]


class _MetricsVllm(_FakeVllm):
    def do_GET(self):
        if self.path != "/metrics":
            return super().do_GET()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'# HELP vllm:num_requests_waiting x\n'
                         b'vllm:num_requests_waiting{model_name="r1-qwen-7b"} 3.0\n'
                         b'vllm:num_requests_running{model_name="r1-qwen-7b"} 7.0\n'
                         b'vllm:kv_cache_usage_perc{model_name="r1-qwen-7b"} 0.42\n')


def test_the_gate_turns_the_runtimes_gauges_into_the_published_serving_metrics(tmp_path):
    config = cloud_config(plan_for("r1-qwen-7b"))
    port = _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _MetricsVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = written(config, "/usr/local/lib/deepseek/health_gate.py")
    # Everything above the thread start: the functions, not the server.
    module_source = source[:source.index("threading.Thread(target=publish")]
    env = {**env_file(config), "HOST_PRIVATE_IP": "127.0.0.1", "RUNTIME_PORT": str(port),
           "STATE_DIR": str(tmp_path)}
    probe = module_source + "\nprint(json.dumps(samples()))\n"
    try:
        result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"RequestsWaiting": 3.0, "RequestsRunning": 7.0,
                                         "KvCacheUsagePercent": 42.0}


# --- token metrics on EC2 -------------------------------------------------------------

def test_the_agent_scrapes_the_runtime_s_counters_and_gauges_into_emf_metrics():
    from components.serving import metrics

    plan = plan_for("r1-qwen-7b")
    section = hp.cloudwatch_agent_config(plan)["logs"]["metrics_collected"]["prometheus"]
    assert section["prometheus_config_path"] == hp.PROMETHEUS_CONFIG
    assert section["log_group_name"] == "/deepseek/dev/r1-qwen-7b/prometheus"
    emf = section["emf_processor"]
    assert emf["metric_namespace"] == plan.metrics_namespace
    (declaration,) = emf["metric_declaration"]
    assert declaration["dimensions"] == [["Stack", "Model"]]
    selected = {selector.strip("^$").replace("\\", "") for selector in declaration["metric_selectors"]}
    assert {"vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_preemptions_total"} <= selected
    assert selected <= metrics.exported_series("vllm")
    scrape = hp.runtime_scrape_config(plan)
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == declaration["label_matcher"].strip("^$")
    assert job["static_configs"] == [{"targets": [f"@HOST@:{plan.launch.port}"]}]
    assert {"target_label": "Stack", "replacement": "dev"} in job["relabel_configs"]
    # The host fills in its private address and writes the file before the agent starts.
    config = cloud_config(plan)
    host_env = written(config, "/usr/local/sbin/deepseek-host-env")
    assert 'sed "s/@HOST@/$ip/"' in host_env and hp.PROMETHEUS_CONFIG in host_env
    assert env_file(config)["PROM_PARAM"] == plan.scrape_config_parameter
    commands = [" ".join(cmd) for cmd in config["runcmd"]]
    start = next(i for i, c in enumerate(commands) if "deepseek-host-env" in c)
    assert start < next(i for i, c in enumerate(commands) if "fetch-config" in c)


def test_ollama_hosts_have_no_runtime_scrape():
    plan = plan_for("r1-qwen-1-5b-gguf")
    assert not plan.scrapes_runtime
    assert "metrics_collected" not in hp.cloudwatch_agent_config(plan)["logs"]
    assert "PROM_PARAM" not in env_file(cloud_config(plan))


class _HistogramVllm(http.server.BaseHTTPRequestHandler):
    """Cumulative TTFT buckets that grow by a known set of observations between two scrapes."""

    scrapes = 0

    def do_GET(self):
        type(self).scrapes += 1
        # Second scrape: 100 more observations, 50 <= 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1].
        first = type(self).scrapes == 1
        buckets = [("0.1", 10 if first else 60), ("0.5", 10 if first else 100), ("1.0", 10 if first else 110),
                   ("+Inf", 10 if first else 110)]
        lines = [f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="{le}",model_name="m"}} {n}'
                 for le, n in buckets]
        lines.append(f'vllm:num_requests_waiting{{model_name="m"}} 1.0')
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_gate_publishes_the_p95_of_the_last_minute_s_histogram_observations(tmp_path):
    config = cloud_config(plan_for("r1-qwen-7b"))
    port = _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _HistogramVllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = written(config, "/usr/local/lib/deepseek/health_gate.py")
    module_source = source[:source.index("threading.Thread(target=publish")]
    env = {**env_file(config), "HOST_PRIVATE_IP": "127.0.0.1", "RUNTIME_PORT": str(port), "STATE_DIR": str(tmp_path)}
    probe = module_source + "\nprint(json.dumps([samples(), samples()]))\n"
    try:
        result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    # Nothing to compare the first scrape with.
    assert "TimeToFirstTokenP95Seconds" not in first
    # The 95th of 100 new observations is the 5th of the 10 in (0.5, 1.0]: 0.5 + 0.5 * 5/10.
    assert second["TimeToFirstTokenP95Seconds"] == pytest.approx(0.75)
    assert second["RequestsWaiting"] == 1.0
