"""Runtime launches as plain data: the flags, routes and budgets each model server starts with."""
from __future__ import annotations

import json
import re

import pytest

from components.serving import runtimes, sizing
from components.config import parse_inventory
from tests.stack_runs import inventory_of
from tools import stack_files

DIGEST_PINNED = re.compile(r"^[^\s@]+:[^\s@/]+@sha256:[0-9a-f]{64}$")
PROMPT_LOGGING = ("--enable-log-requests", "--enable-log-outputs")


def inventory(stack: str, change=None):
    raw = inventory_of(stack)
    if change:
        change(raw)
    return parse_inventory(raw, stack=stack, secret_keys=set(stack_files.load(stack).secret_keys))


def launch_of(stack: str, model_name: str, change=None, **kwargs) -> runtimes.RuntimeLaunch:
    inv = inventory(stack, change)
    model = next(m for m in inv.models if m.name == model_name)
    return runtimes.render_for_inventory(inv, model, **kwargs)


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


# --- vLLM -------------------------------------------------------------------------------

def test_vllm_flags_come_from_the_sizing_plan_for_the_models_gpu():
    inv = inventory("dev")
    model = next(m for m in inv.models if m.runtime == "vllm")
    launch = runtimes.render_for_inventory(inv, model)
    from components.serving import catalog
    plan = sizing.plan_runtime(runtimes._catalog_model(model), catalog.get_instance(model.instance_type),
                               runtime="vllm", max_context=model.max_context, stack="dev",
                               model_name=model.name)
    for name in ("--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
                 "--gpu-memory-utilization", "--tensor-parallel-size"):
        assert flag(launch.args, name) == str(plan.args[name])
    assert flag(launch.args, "--max-model-len") == str(model.max_context)
    assert launch.capacity.source == "sizing"


def test_vllm_serves_the_verified_local_copy_under_the_inventory_name():
    launch = launch_of("dev", "r1-qwen-7b")
    # The image's entrypoint is `vllm serve`: the model path comes first, never "serve".
    assert launch.entrypoint == ("vllm", "serve")
    assert launch.args[0] == "/models/r1-qwen-7b"
    assert flag(launch.args, "--served-model-name") == "r1-qwen-7b"
    assert flag(launch.args, "--port") == "8000" and launch.port == 8000
    assert flag(launch.args, "--host") == "0.0.0.0"
    assert launch.env["HF_HUB_OFFLINE"] == "1"


def test_vllm_caps_generated_tokens_at_the_workload_max_output():
    shape = {"prompt_tokens": {"typical": 500, "p95": 2000}, "output_tokens": {"typical": 300, "max": 1024}}
    launch = launch_of("dev", "r1-qwen-7b", lambda raw: raw["models"][0].update(workload=shape))
    assert json.loads(flag(launch.args, "--override-generation-config")) == {"max_new_tokens": 1024}


def test_vllm_caps_a_reasoning_model_at_its_family_default_fitted_to_the_context():
    # R1 distills default to DeepSeek's 32,768 generated tokens; a 16,384-token context
    # keeps a 4,096-token p95 prompt and gives the rest to the output.
    launch = launch_of("dev", "r1-qwen-7b")
    assert json.loads(flag(launch.args, "--override-generation-config")) == {"max_new_tokens": 12288}


def test_vllm_starts_without_an_api_key_the_gateway_would_have_to_hold():
    launch = launch_of("dev", "r1-qwen-7b")
    assert launch.api_key_env is None
    assert "--api-key" not in launch.args
    assert "VLLM_API_KEY" not in launch.env


def test_vllm_never_logs_prompts_or_runs_in_dev_mode():
    launch = launch_of("dev", "r1-qwen-7b")
    assert not set(PROMPT_LOGGING) & set(launch.args)
    assert "VLLM_SERVER_DEV_MODE" not in launch.env
    assert launch.env.get("VLLM_LOGGING_LEVEL") != "DEBUG"


def test_vllm_readiness_is_a_route_that_lists_the_served_model():
    launch = launch_of("dev", "r1-qwen-7b")
    # /health can be green before the model serves; /v1/models lists it only when it does.
    assert launch.readiness_path == "/v1/models"
    assert launch.readiness_body_contains == "r1-qwen-7b"
    assert launch.readiness_requires_api_key is False
    assert launch.liveness_path == "/health" and launch.metrics_path == "/metrics"
    assert launch.warmup_request["json"]["model"] == "r1-qwen-7b"
    assert launch.warmup_request["json"]["max_tokens"] == 1


def test_explicit_runtime_overrides_win_over_derived_values():
    launch = launch_of("dev", "r1-qwen-7b",
                       lambda raw: raw["models"][0].update(runtime_overrides={"max_num_seqs": 12}))
    assert flag(launch.args, "--max-num-seqs") == "12"
    assert launch.capacity.max_concurrency == 12


def test_a_model_that_does_not_fit_its_gpu_fails_with_the_sizing_explanation():
    def bigger(raw):
        raw["models"][0].update(hf_repo="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", instance_type="g6.xlarge")

    with pytest.raises(sizing.SizingError, match="r1-qwen-7b"):
        launch_of("dev", "r1-qwen-7b", bigger)


def test_a_repository_the_catalog_cannot_size_falls_back_to_explicit_values():
    def unknown(raw):
        raw["models"][0].update(hf_repo="acme/Custom-Distill-7B",
                                runtime_overrides={"max_num_seqs": 8, "max_num_batched_tokens": 4096})

    launch = launch_of("dev", "r1-qwen-7b", unknown)
    assert launch.capacity.source == "inventory"
    assert flag(launch.args, "--max-num-seqs") == "8"
    assert flag(launch.args, "--max-num-batched-tokens") == "4096"


# --- TGI --------------------------------------------------------------------------------

def test_tgi_bounds_request_size_batches_and_concurrency():
    launch = launch_of("staging", "r1-llama-8b")
    args = launch.args
    max_input, max_total = int(flag(args, "--max-input-tokens")), int(flag(args, "--max-total-tokens"))
    assert max_input < max_total == 16384
    assert int(flag(args, "--max-batch-prefill-tokens")) >= max_input
    # TGI 3 infers its batch budget at warm-up and ignores the flag: it is never rendered,
    # and the predicted budget holds at least one full sequence.
    assert "--max-batch-total-tokens" not in args
    assert launch.capacity.max_batch_total_tokens >= max_total
    # The max output is the part of the context a prompt cannot take.
    assert max_total - max_input == launch.capacity.max_new_tokens
    assert int(flag(args, "--max-concurrent-requests")) >= 1
    assert int(flag(args, "--payload-limit")) == launch.max_request_bytes
    assert flag(args, "--max-client-batch-size") == "1"


def test_tgi_logs_json_without_usage_stats_and_without_an_api_key():
    launch = launch_of("staging", "r1-llama-8b")
    assert "--json-output" in launch.args
    assert flag(launch.args, "--usage-stats") == "off"
    assert launch.api_key_env is None
    assert "--api-key" not in launch.args and "API_KEY" not in launch.env
    # TGI's /health runs a real check (503 when unhealthy).
    assert launch.readiness_path == "/health" and not launch.readiness_requires_api_key
    assert launch.metrics_path == "/metrics"


# --- Ollama -----------------------------------------------------------------------------

def test_ollama_binds_where_asked_and_bounds_parallelism_and_queue():
    launch = launch_of("dev", "r1-qwen-1-5b-gguf", bind_host="10.20.1.7")
    env = launch.env
    assert env["OLLAMA_HOST"] == "10.20.1.7:11434"
    assert int(env["OLLAMA_NUM_PARALLEL"]) >= 1
    assert int(env["OLLAMA_MAX_QUEUE"]) >= 1
    assert int(env["OLLAMA_KEEP_ALIVE"]) < 0
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert env["OLLAMA_ORIGINS"] == "https://llm.dev.internal.acme.example"


def test_ollama_has_no_auth_and_no_metrics_and_generates_one_token_at_warm_up():
    launch = launch_of("dev", "r1-qwen-1-5b-gguf")
    assert launch.api_key_env is None and launch.metrics_path is None
    assert launch.readiness_body_contains == "r1-qwen-1-5b-gguf"
    assert launch.warmup_request == {
        "method": "POST", "path": "/api/generate",
        "json": {"model": "r1-qwen-1-5b-gguf", "prompt": "Hello", "stream": False, "keep_alive": -1,
                 "options": {"num_predict": 1, "temperature": 0}}}


# --- budgets and images -----------------------------------------------------------------

@pytest.mark.parametrize("stack, model", [("dev", "r1-qwen-7b"), ("dev", "r1-qwen-1-5b-gguf"),
                                          ("prod", "r1-qwen-32b")])
def test_images_are_pinned_by_tag_and_digest(stack, model):
    launch = launch_of(stack, model)
    assert DIGEST_PINNED.match(launch.image), launch.image
    assert launch.image_pinned_by_digest


def test_an_image_the_catalog_could_not_pin_by_digest_is_reported():
    launch = launch_of("staging", "r1-llama-8b")
    assert ":latest" not in launch.image
    assert launch.image_pinned_by_digest == (DIGEST_PINNED.match(launch.image) is not None)


def test_startup_budget_grows_with_the_weights_and_never_drops_below_five_minutes():
    assert runtimes.startup_budget_seconds(1.0, "ollama") == 300
    assert runtimes.startup_budget_seconds(61.0, "vllm") > runtimes.startup_budget_seconds(14.0, "vllm")
    assert launch_of("prod", "r1-qwen-32b").startup_budget_seconds > launch_of("prod", "r1-qwen-7b").startup_budget_seconds


def test_request_bytes_follow_the_context_and_stop_at_the_gateway_limit():
    launch = launch_of("dev", "r1-qwen-7b")
    assert launch.max_request_bytes == 16384 * runtimes.BYTES_PER_TOKEN + runtimes.REQUEST_ENVELOPE_BYTES
    assert runtimes.request_bytes_for(10_000_000) == runtimes.GATEWAY_PAYLOAD_LIMIT


def test_drain_time_is_the_load_balancers_deregistration_delay():
    assert launch_of("prod", "r1-qwen-7b").drain_seconds == 600
    assert launch_of("dev", "r1-qwen-7b").drain_seconds == 300


def test_an_inventory_image_override_replaces_the_catalog_image_and_counts_as_pinned():
    from components.config import parse_inventory
    from components.serving.runtimes import render_for_inventory
    from tests.stack_runs import inventory_of

    raw = inventory_of("staging")
    rebuilt = "123456789012.dkr.ecr.us-west-2.amazonaws.com/tgi-nonroot:3.3.5@sha256:" + "ab" * 32
    raw["models"][0]["image"] = rebuilt
    inventory = parse_inventory(raw, stack="staging", secret_keys=set())
    launch = render_for_inventory(inventory, inventory.models[0])
    assert launch.image == rebuilt and launch.image_pinned_by_digest is True


# --- OpenTelemetry tracing (observability.tracing) ----------------------------------------

def _traced(raw: dict) -> None:
    raw.setdefault("observability", {})["tracing"] = {"otlp_endpoint": "http://otel-collector.observability.svc:4317"}


def test_tracing_is_off_unless_the_stack_names_a_collector():
    for stack, model in (("prod", "r1-qwen-7b"), ("staging", "r1-llama-8b")):
        launch = launch_of(stack, model)
        assert not any("otlp" in arg for arg in launch.args)
        assert not any(name.startswith("OTEL_") for name in launch.env)


def test_vllm_sends_traces_to_the_stack_s_collector():
    launch = launch_of("prod", "r1-qwen-7b", _traced)
    assert flag(launch.args, "--otlp-traces-endpoint") == "http://otel-collector.observability.svc:4317"
    assert launch.env["OTEL_SERVICE_NAME"] == "deepseek-r1-qwen-7b"
    assert launch.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "grpc"


def test_tgi_sends_traces_with_its_own_flags_and_ollama_has_none():
    launch = launch_of("staging", "r1-llama-8b", _traced)
    assert flag(launch.args, "--otlp-endpoint") == "http://otel-collector.observability.svc:4317"
    assert flag(launch.args, "--otlp-service-name") == "deepseek-r1-llama-8b"
    ollama = launch_of("dev", "r1-qwen-1-5b-gguf", _traced)
    assert not any("otlp" in arg for arg in ollama.args) and "OTEL_SERVICE_NAME" not in ollama.env


@pytest.mark.parametrize("endpoint", ["otel-collector:4317", "http://collector", "grpc://c:4317", "http://a b:1"])
def test_a_collector_that_is_not_an_http_url_with_a_port_is_refused(endpoint):
    from components.config import InventoryError

    def change(raw: dict) -> None:
        raw.setdefault("observability", {})["tracing"] = {"otlp_endpoint": endpoint}

    with pytest.raises(InventoryError, match="observability.tracing.otlp_endpoint"):
        inventory("prod", change)


def test_a_traced_stack_renders_the_flag_into_the_model_pods_and_keeps_gateway_xray_separate():
    from tests import stack_runs

    def change(raw: dict) -> None:
        _traced(raw)
        raw["gateway"]["xray_tracing"] = True

    run = stack_runs.run_with_inventory("prod", change)
    containers = [c for d in stack_runs.inputs(run, "kubernetes:apps/v1:Deployment")
                  for c in d["spec"]["template"]["spec"]["containers"]]
    vllm = [c for c in containers if "--otlp-traces-endpoint" in (c.get("args") or [])]
    assert len(vllm) == len(inventory("prod").models)
    (stage,) = stack_runs.inputs(run, "aws:apigateway/stage:Stage")
    assert stage["xrayTracingEnabled"] is True
