"""How each model server is launched: image, flags, environment, routes and budgets, as plain data.

Both platforms consume the same `RuntimeLaunch`: the EC2 platform renders it into a systemd
unit and cloud-init (components/ec2/host.py), the EKS platform into a container
spec and probes. Keeping the launch here means a flag is decided once, and the policy pack
and the tests check the same values that run.

Nothing secret ever enters a `RuntimeLaunch`, and no runtime is started with an API key
(`api_key_env` is None for all three): the gateway would have to hold that key as a static
header value, readable by every principal with apigateway:GET in the account, and the key
only ever guarded part of each server (vLLM checks it on /v1 only; TGI only on its
generation routes; Ollama has no authentication at all). The boundary is the network: a
runtime is reachable only from its internal load balancer, which only the gateway's VPC
link reaches (docs/BACKEND_AUTH.md records the decision). `api_key_env` names the variable
a runtime would read (vLLM `VLLM_API_KEY`, TGI `API_KEY`) should a platform ever provision
one.

Capacity flags (context length, batch token budgets, concurrency caps, queue limits) come
from `_capacity_flags`, the single seam to components/serving/sizing.py (`plan_runtime` for the
catalog architecture and instance type); explicit `model.runtime_overrides` are passed to
sizing as flag overrides, win over derived values and are checked there. Entry points:
`render_for_inventory(inventory, model)` (GPU facts from the catalog) and
`render_runtime(inventory, model, gpu_count=, gpu_memory_gib=)`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from components.config import Inventory, Model
from components.serving.workload import resolve_workload

# Where weights sit inside the container; hosts and pods mount the verified copy here.
MODEL_ROOT = "/models"
# Ports the runtimes listen on; fixed so security groups, probes and target groups agree.
PORTS = {"vllm": 8000, "tgi": 8080, "ollama": 11434}

# Non-secret files every runtime container gets read-only (EC2: a bind mount of the same
# directory on the host; EKS: a ConfigMap volume): the JSON logging configuration for vLLM.
RUNTIME_CONFIG_DIR = "/etc/deepseek-runtime"
# Ollama: the Modelfile lines after FROM, appended when the model is created from its GGUF.
MODELFILE_PARAMETERS = "Modelfile.parameters"

# vLLM with priority scheduling: components/serving/priority_middleware.py, shipped under a
# name no installed package uses, imported from RUNTIME_CONFIG_DIR (on PYTHONPATH) by vLLM's
# `--middleware <module>.<class>` (vllm/entrypoints/openai/cli_args.py, api_server.py).
PRIORITY_MIDDLEWARE_FILE = "deepseek_priority_middleware.py"
PRIORITY_MIDDLEWARE = "deepseek_priority_middleware.PriorityHeaderMiddleware"
PRIORITY_MIDDLEWARE_SOURCE = Path(__file__).with_name("priority_middleware.py")

# vLLM's logging: `VLLM_LOGGING_CONFIG_PATH` is a `logging.config.dictConfig` JSON file, and
# the same variable is the default of `--log-config-file`, "Path to logging config JSON file
# for both vllm and uvicorn" (vllm/entrypoints/openai/cli_args.py; docs.vllm.ai, examples
# "Logging Configuration"). Its formatter is python-json-logger, which vLLM itself installs
# for this purpose (vllm requirements/common.txt: "python-json-logger # Used by logging as per
# examples/others/logging_configuration.md"). Every logger goes through the root's handler:
# vLLM applies this file instead of its default configuration, uvicorn (given it as
# log_config) instead of its own text format. Records carry metadata only: vLLM never logs
# prompts unless --enable-log-requests, which is never rendered; uvicorn's access record is
# the request line (client, method, path, status) and the OpenAI routes put nothing of the
# prompt in the path.
VLLM_LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.jsonlogger.JsonFormatter",
                            "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["out"], "level": "INFO"},
}

# TGI's batching knobs (text-generation-launcher --help): a running batch makes at most
# MAX_WAITING_TOKENS decode steps before waiting requests are considered for a prefill
# (default 20), and waiting requests join once they are WAITING_SERVED_RATIO of the running
# ones (default 0.3). Interactive chat is what this gateway serves: half the default step
# count lets a new request start within about ten tokens of the running batch instead of
# twenty (lower time to first token, the guide's long-tail concern), at the cost of more
# prefill interruptions of running streams; the ratio stays at TGI's default, since
# admitting even a few waiting requests keeps a queue from building behind long generations.
TGI_MAX_WAITING_TOKENS = 10
TGI_WAITING_SERVED_RATIO = 0.3

# Request bodies: a token is about 4 characters of text, and JSON escaping (\uXXXX for
# non-ASCII) can grow a character to 6 bytes; 8 bytes per token plus a fixed envelope for
# the chat structure bounds a maximal prompt without admitting arbitrarily large bodies.
BYTES_PER_TOKEN = 8
REQUEST_ENVELOPE_BYTES = 64 * 1024
# API Gateway's hard payload limit: nothing larger can arrive anyway.
GATEWAY_PAYLOAD_LIMIT = 10 * 1024 * 1024


class LaunchError(ValueError):
    """A runtime launch that cannot be rendered; the message says which setting to change."""


@dataclass(frozen=True)
class CapacityFlags:
    """The capacity numbers a runtime is started with (one set per runtime family)."""

    # Longest sequence (prompt + generation) one request may use.
    max_context: int
    # Longest prompt accepted (TGI enforces it; vLLM enforces max_context overall).
    max_input_tokens: int
    # Server-side cap on generated tokens per request.
    max_new_tokens: int
    # Requests the runtime works on at once (vLLM max-num-seqs, TGI max-concurrent-requests,
    # Ollama OLLAMA_NUM_PARALLEL).
    max_concurrency: int
    # Tokens scheduled in one engine step (vLLM max-num-batched-tokens, TGI prefill budget).
    max_batch_tokens: int
    # The KV token budget a TGI replica infers at warm-up (predicted by sizing, never a
    # flag: TGI 3 ignores --max-batch-total-tokens for flash-attention models); None for
    # vLLM and Ollama, which report their own cache usage.
    max_batch_total_tokens: Optional[int]
    # Requests allowed to wait beyond max_concurrency before the runtime answers busy
    # (Ollama OLLAMA_MAX_QUEUE; the gateway throttle bounds it for vLLM and TGI).
    max_queue: int
    tensor_parallel_size: int
    gpu_memory_utilization: float
    # The capacity flags as the runtime takes them (vLLM/TGI argv), rendered by sizing.
    flags: tuple[str, ...] = ()
    # The capacity environment (Ollama), rendered by sizing.
    env: dict[str, str] = field(default_factory=dict)
    # Where the numbers came from: "sizing" or "inventory" (explicit values and defaults).
    source: str = "inventory"
    # Nodes per replica (pipeline stages) and data-parallel attention ranks per replica.
    pipeline_parallel: int = 1
    data_parallel: int = 1

    @property
    def gpus_per_node(self) -> int:
        """GPUs one pod (one node of a replica) uses: tensor x data parallel ranks."""
        return self.tensor_parallel_size * self.data_parallel


@dataclass(frozen=True)
class RuntimeLaunch:
    runtime: str
    # repository:tag@sha256:digest: the tag says what was reviewed, the digest pins it.
    image: str
    port: int
    # Container arguments after the image's entrypoint; never a secret.
    args: list[str]
    # Non-secret environment only.
    env: dict[str, str]
    # The variable the API key is injected into from a secret; None: the runtime has no auth.
    api_key_env: Optional[str]
    served_model_name: str
    # A route that answers only once the model can serve.
    readiness_path: str
    # A cheap route proving the process is alive (never does GPU work).
    liveness_path: str
    metrics_path: Optional[str]
    # Seconds from process start to serving: weight load, compilation and warm-up.
    startup_budget_seconds: int
    # {"method", "path", "json"}: one tiny generation that initialises every lazy path.
    warmup_request: dict
    # The largest request body the runtime accepts for its maximum context.
    max_request_bytes: int
    # Seconds a stopping replica keeps serving in-flight streams before it is killed.
    drain_seconds: int
    # Whether the readiness route itself demands the API key (vLLM guards /v1/*): a probe
    # that cannot send the key must use a local gate instead (see host_provisioning).
    readiness_requires_api_key: bool = False
    # A string the readiness body must contain to prove this model is the one served.
    readiness_body_contains: Optional[str] = None
    # Where the weights are inside the container (directory; Ollama: holds one .gguf).
    model_path: str = ""
    # The capacity numbers behind the flags, for alarms, docs and the gateway.
    capacity: Optional[CapacityFlags] = None
    # Weight size used for the startup budget (GiB).
    weights_gib: float = 0.0
    # False when the catalog could not confirm the image digest (pinned by tag only).
    image_pinned_by_digest: bool = True
    # What the image's ENTRYPOINT runs; `args` follow it (documentation and full command lines).
    entrypoint: tuple[str, ...] = ()
    # Non-secret files placed read-only in RUNTIME_CONFIG_DIR inside the container (name: text).
    config_files: dict[str, str] = field(default_factory=dict)
    # Ollama only: Modelfile PARAMETER lines the served model is created with (name, value).
    modelfile_parameters: tuple[tuple[str, str], ...] = ()
    # vLLM's --scheduling-policy: "priority" honours the request body's `priority` field.
    scheduling_policy: str = "fcfs"

    @property
    def command_line(self) -> list[str]:
        """The full command the container runs (entrypoint, then args)."""
        return [*self.entrypoint, *self.args]


def modelfile_parameters_text(launch: "RuntimeLaunch") -> str:
    """The PARAMETER lines appended to the Ollama Modelfile after its FROM line (both platforms)."""
    return "".join(f"PARAMETER {key} {value}\n" for key, value in launch.modelfile_parameters)


def served_model_name(model: Model) -> str:
    """The `model` value clients send; the inventory name, stable across weight revisions."""
    return model.name


def model_path(model: Model) -> str:
    return f"{MODEL_ROOT}/{model.name}"


def request_bytes_for(max_input_tokens: int) -> int:
    """The largest body a prompt of `max_input_tokens` can need, capped at the gateway limit."""
    return min(GATEWAY_PAYLOAD_LIMIT, max_input_tokens * BYTES_PER_TOKEN + REQUEST_ENVELOPE_BYTES)


def render_runtime(inventory: Inventory, model: Model, *, gpu_count: int, gpu_memory_gib: float,
                   bind_host: str = "0.0.0.0") -> RuntimeLaunch:
    """The launch of `model` on a machine with `gpu_count` GPUs of `gpu_memory_gib` each.

    `bind_host` is the address the server listens on inside its container: "0.0.0.0" in a
    pod (the pod IP is private and NetworkPolicy filters it) and on EC2 (the container has
    its own network namespace; the host publishes the port on its private address only).
    Raises `sizing.SizingError` when the model does not fit, `LaunchError` otherwise.
    """
    if gpu_count < 1 or gpu_memory_gib <= 0:
        raise LaunchError(f"model {model.name}: a GPU runtime needs at least one GPU with memory; "
                            f"got gpu_count={gpu_count}, gpu_memory_gib={gpu_memory_gib}")
    capacity = _capacity_flags(inventory, model, gpu_count=gpu_count, gpu_memory_gib=gpu_memory_gib)
    image = model.image or _image_for(model.runtime)
    problems = []
    if not model.image and not image_pinned_by_digest(model.runtime):
        # A tag can be re-pushed; only a digest pins what was reviewed and scanned.
        problems.append(f"the catalog has no confirmed digest for the {model.runtime} image {image}")
    if not model.image and _non_root_problem(model.runtime):
        # Every container runs as a non-root UID on both platforms (serving/sandbox.py):
        # refused here rather than started as root, or failing on every start.
        problems.append(f"that image cannot run as the non-root UID every runtime container runs "
                        f"as: {_non_root_problem(model.runtime)}")
    if problems:
        rebuild = " that runs as non-root (images/tgi-nonroot, make tgi-image)" if _non_root_problem(model.runtime) else ""
        raise LaunchError(
            f"model {model.name}: {'; '.join(problems)}; set models[].image to a build{rebuild} pinned by "
            f"tag and digest (registry/repository:tag@sha256:<64 hex>), see docs/OPERATIONS.md")
    weights = _weights_gib(model)
    render = {"vllm": _vllm, "tgi": _tgi, "ollama": _ollama}[model.runtime]
    launch = render(inventory, model, capacity, image, bind_host)
    args, env = tracing_settings(inventory, model)
    launch["args"], launch["env"] = [*launch["args"], *args], {**launch["env"], **env}
    return RuntimeLaunch(
        **launch,
        startup_budget_seconds=startup_budget_seconds(weights, model.runtime),
        max_request_bytes=request_bytes_for(capacity.max_input_tokens),
        drain_seconds=inventory.load_balancer.deregistration_delay_seconds,
        model_path=model_path(model),
        capacity=capacity,
        weights_gib=weights,
        # Refused above unless pinned: by the catalog's digest or the inventory's override.
        image_pinned_by_digest=True,
    )


def tracing_settings(inventory: Inventory, model: Model) -> tuple[list[str], dict[str, str]]:
    """Flags and environment that send a runtime's OpenTelemetry traces to the stack's collector.

    vLLM v0.11.0: `--otlp-traces-endpoint` (vllm/config/observability.py), OTLP over gRPC
    unless OTEL_EXPORTER_OTLP_TRACES_PROTOCOL says otherwise (vllm/tracing.py), the service
    named by the OpenTelemetry SDK's OTEL_SERVICE_NAME; the image must carry the
    opentelemetry-sdk/-exporter-otlp packages, which the vLLM wheel does not require (a
    `models[].image` build; docs/OPERATIONS.md). TGI 3.3.5: `--otlp-endpoint` and
    `--otlp-service-name` (launcher/src/main.rs), built in. Ollama has no tracing.
    """
    tracing = inventory.observability.tracing
    if tracing is None or model.runtime == "ollama":
        return [], {}
    service = f"deepseek-{model.name}"
    if model.runtime == "vllm":
        return (["--otlp-traces-endpoint", tracing.otlp_endpoint],
                {"OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})
    return ["--otlp-endpoint", tracing.otlp_endpoint, "--otlp-service-name", service], {}


def startup_budget_seconds(weights_gib: float, runtime: str) -> int:
    """Seconds to load weights from local disk, compile and warm up, with a 2x margin.

    Local gp3/NVMe reads run at roughly 0.5 GiB/s into host memory and on to the GPU;
    vLLM additionally profiles memory and captures CUDA graphs (about two minutes on one
    GPU), TGI warms up its batch shapes, Ollama memory-maps a GGUF and is quickest. The
    budget is never under five minutes: a probe that gives up early restarts a healthy load.
    """
    fixed = {"vllm": 180, "tgi": 180, "ollama": 60}[runtime]
    load = weights_gib / 0.5
    return max(300, int(math.ceil((fixed + load) * 2 / 30.0)) * 30)


# --- per runtime --------------------------------------------------------------------------

def _vllm(inventory: Inventory, model: Model, cap: CapacityFlags, image: str, host: str) -> dict:
    name = served_model_name(model)
    # The vllm/vllm-openai image's ENTRYPOINT is ["vllm", "serve"]: arguments start with
    # the model (repeating `serve` fails with "unrecognized arguments: serve").
    args = [
        model_path(model),
        "--served-model-name", name,
        "--host", host,
        "--port", str(PORTS["vllm"]),
        # Context length, batch token budget, concurrency cap, GPU share, tensor parallelism
        # (and pipeline / data / expert parallelism for the MoE flagships).
        *cap.flags,
        # Across nodes vLLM runs its workers on a Ray cluster the pods of a group form
        # (https://docs.vllm.ai/en/stable/serving/parallelism_scaling.html).
        *(("--distributed-executor-backend", "ray") if cap.pipeline_parallel > 1 else ()),
        # A ceiling on generated tokens: vLLM treats an override of max_new_tokens as the
        # default and upper bound for max_tokens (vllm tests/entrypoints/openai
        # test_serving_chat: "--override-generation-config ... should act as a ceiling").
        "--override-generation-config", json.dumps({"max_new_tokens": cap.max_new_tokens}),
        # fcfs (vLLM's default) or priority: lower `priority` in the body is scheduled first
        # and may preempt running requests (vllm/config SchedulerConfig.policy; the OpenAI
        # request models' `priority` field: "Any priority other than 0 will raise an error
        # if the served model does not use priority scheduling").
        *(("--scheduling-policy", "priority") if model.scheduling_policy == "priority" else ()),
        # ... and that field comes from the gateway's per-tier header, never from the client
        # (see PRIORITY_MIDDLEWARE).
        *(("--middleware", PRIORITY_MIDDLEWARE) if model.scheduling_policy == "priority" else ()),
        # Browsers are not clients of this API; only the internal name may be an origin.
        "--allowed-origins", json.dumps([f"https://{inventory.load_balancer.certificate.internal_domain}"]),
        # The OpenAPI/Swagger pages list every unauthenticated route: do not serve them.
        "--disable-fastapi-docs",
    ]
    # Request logging of prompts is off by default in current vLLM; the flags that turn it
    # on (--enable-log-requests/--enable-log-outputs) are never rendered, and neither is
    # VLLM_SERVER_DEV_MODE (it exposes /reset_prefix_cache, /sleep and friends).
    env = {
        # Weights are local and verified: never reach the hub at run time.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        # JSON log lines for vLLM and uvicorn (see VLLM_LOGGING_CONFIG).
        "VLLM_LOGGING_CONFIG_PATH": f"{RUNTIME_CONFIG_DIR}/logging.json",
    }
    config_files = {"logging.json": json.dumps(VLLM_LOGGING_CONFIG, separators=(",", ":")) + "\n"}
    if model.scheduling_policy == "priority":
        # The middleware module, read-only beside the logging config; PYTHONPATH makes it
        # importable (vLLM's docker/Dockerfile installs vLLM into the system site-packages
        # with `uv pip install --system` and sets no PYTHONPATH of its own).
        config_files[PRIORITY_MIDDLEWARE_FILE] = PRIORITY_MIDDLEWARE_SOURCE.read_text()
        env["PYTHONPATH"] = RUNTIME_CONFIG_DIR
    return dict(
        config_files=config_files,
        scheduling_policy=model.scheduling_policy,
        runtime="vllm", image=image, entrypoint=("vllm", "serve"), port=PORTS["vllm"], args=args, env=env,
        api_key_env=None, served_model_name=name,
        # /health can answer before the model serves; /v1/models lists the served name only
        # once the engine is up (no API key: the network is the boundary).
        readiness_path="/v1/models", readiness_requires_api_key=False, readiness_body_contains=name,
        liveness_path="/health", metrics_path="/metrics",
        warmup_request={"method": "POST", "path": "/v1/completions",
                        "json": {"model": name, "prompt": "Hello", "max_tokens": 1, "temperature": 0}},
    )


def _tgi(inventory: Inventory, model: Model, cap: CapacityFlags, image: str, host: str) -> dict:
    name = served_model_name(model)
    request_bytes = request_bytes_for(cap.max_input_tokens)
    args = [
        "--model-id", model_path(model),
        "--hostname", host,
        "--port", str(PORTS["tgi"]),
        # Input and total token caps, prefill and KV token budgets, concurrency cap,
        # shards, GPU share (TGI cannot always infer the KV budget: sizing sets it).
        *cap.flags,
        # One prompt per request: the gateway meters requests, a batch inside one would
        # multiply the work behind a single metered call.
        "--max-client-batch-size", "1",
        "--max-best-of", "1",
        "--payload-limit", str(request_bytes),
        # Batching knobs the guide asks to tune (see TGI_MAX_WAITING_TOKENS).
        "--max-waiting-tokens", str(TGI_MAX_WAITING_TOKENS),
        "--waiting-served-ratio", f"{TGI_WAITING_SERVED_RATIO:g}",
        # One JSON object per log line (text-generation-launcher --json-output); the router
        # logs request metadata and timings, never inputs at the default INFO level.
        "--json-output",
        "--usage-stats", "off",
        "--cors-allow-origin", f"https://{inventory.load_balancer.certificate.internal_domain}",
    ]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    return dict(
        runtime="tgi", image=image, entrypoint=("text-generation-launcher",), port=PORTS["tgi"],
        args=args, env=env,
        api_key_env=None, served_model_name=name,
        # TGI's /health runs a real one-token check against the shards (503 when unhealthy)
        # and is outside the API-key layer; /info is a static answer from the router.
        readiness_path="/health", readiness_requires_api_key=False, readiness_body_contains=None,
        liveness_path="/info", metrics_path="/metrics",
        warmup_request={"method": "POST", "path": "/generate",
                        "json": {"inputs": "Hello", "parameters": {"max_new_tokens": 1}}},
    )


def _ollama(inventory: Inventory, model: Model, cap: CapacityFlags, image: str, host: str) -> dict:
    name = served_model_name(model)
    port = PORTS["ollama"]
    env = {
        # Parallel slots, context length, queue length (past it Ollama answers 503 "server
        # busy": backpressure, not unbounded waits), one loaded model, reserved VRAM.
        **cap.env,
        # Ollama binds 127.0.0.1 by default; it has no auth, so it listens only where the
        # load balancer reaches it (the host's private address, or the pod IP).
        "OLLAMA_HOST": f"{host}:{port}",
        # Negative: never unload the model between requests (no cold start mid-traffic).
        "OLLAMA_KEEP_ALIVE": "-1",
        # No browser origins beyond the internal name.
        "OLLAMA_ORIGINS": f"https://{inventory.load_balancer.certificate.internal_domain}",
        "OLLAMA_MODELS": "/var/lib/ollama/models",
        # OLLAMA_DEBUG stays unset: debug logging prints prompts. Ollama has no JSON log
        # format (slog text plus one GIN line per request: status, latency, client, method,
        # path); the EC2 exporter and the cluster's collector wrap those lines as JSON.
    }
    return dict(
        # Ollama has no server-wide cap on generated tokens: num_predict in the Modelfile is
        # the default for requests that set none (OpenAI max_tokens maps onto num_predict and
        # overrides it); a request's own larger value is bounded only by the gateway timeout.
        modelfile_parameters=(("num_predict", str(cap.max_new_tokens)),),
        config_files={MODELFILE_PARAMETERS: f"PARAMETER num_predict {cap.max_new_tokens}\n"},
        runtime="ollama", image=image, entrypoint=("ollama",), port=port, args=["serve"], env=env,
        api_key_env=None, served_model_name=name,
        # /api/tags lists local models: the served name appears once the verified GGUF was
        # created into the store (an init step, never a pull after readiness).
        readiness_path="/api/tags", readiness_requires_api_key=False, readiness_body_contains=name,
        liveness_path="/api/version", metrics_path=None,
        # One real token (not just a load): a model is ready only after it generated once.
        warmup_request={"method": "POST", "path": "/api/generate",
                        "json": {"model": name, "prompt": "Hello", "stream": False, "keep_alive": -1,
                                 "options": {"num_predict": 1, "temperature": 0}}},
    )


# --- the seams to catalog and sizing ------------------------------------------------------

def _image_for(runtime: str) -> str:
    """The runtime image from the catalog: repository:tag@sha256:digest when the digest is known.

    The catalog leaves a digest it could not confirm empty rather than guessing one; such an
    image is still pinned by tag (never `latest`) and `image_pinned_by_digest` says so, so the
    policy pack and the prod checks can refuse it.
    """
    from components.serving import catalog  # local import: the catalog is a sibling concern

    image = catalog.get_runtime_image(runtime)
    if not image.tag or image.tag == "latest":
        raise LaunchError(f"runtime image for {runtime} must be pinned to a release tag, "
                            f"not {image.tag or 'no tag'!r}; fix components/serving/catalog.py")
    reference = image.reference
    if image.digest and not re.match(r"^[^\s@]+:[^\s@/]+@sha256:[0-9a-f]{64}$", reference):
        raise LaunchError(f"runtime image for {runtime} must read repository:tag@sha256:<64 hex>; "
                            f"the catalog has {reference!r}")
    return reference


def image_pinned_by_digest(runtime: str) -> bool:
    from components.serving import catalog

    return catalog.get_runtime_image(runtime).pinned_by_digest


def _non_root_problem(runtime: str) -> Optional[str]:
    from components.serving import catalog

    return catalog.get_runtime_image(runtime).non_root_problem


def _catalog_model(model: Model):
    """The catalog's architecture entry for the inventory model (matched by repository)."""
    from components.serving import catalog

    return next((spec for spec in catalog.MODELS.values() if spec.hf_repo == model.hf_repo), None)


_BYTES_PER_PARAM = {"none": 2.0, "fp8": 1.0, "awq": 0.55, "gptq": 0.55, "q4_k_m": 0.6, "q8_0": 1.07}


def _weights_gib(model: Model) -> float:
    """Weight size on disk (GiB): sizing's weight bytes for the catalog architecture."""
    spec = _catalog_model(model)
    if spec is not None:
        from components.serving import sizing

        quantization = SIZING_QUANTIZATION[model.quantization] or sizing.default_quantization(spec, model.runtime)
        return round(sizing.weight_bytes(spec, quantization) / 2**30, 1)
    # A repository the catalog does not list: parameters from its name (for example 7B).
    match = re.search(r"(\d+(?:\.\d+)?)B\b", model.hf_repo)
    params = float(match.group(1)) * 1e9 if match else 7e9
    return round(params * _BYTES_PER_PARAM[model.quantization] / 2**30, 1)


def gpu_facts(inventory: Inventory, model: Model) -> tuple[int, float]:
    """(GPU count, usable GiB per GPU) of the instance type the model runs on, from the catalog."""
    from components.serving import catalog

    instance_type = inventory.gpu_instance_type(model)
    if instance_type not in catalog.INSTANCES and not GPU_FAMILY.match(instance_type):
        # A CPU instance cannot start any of these runtimes as deployed here (vLLM and TGI
        # need a CUDA GPU; Ollama is sized and scheduled onto a GPU too): say what can.
        raise LaunchError(
            f"model {model.name}: instance type {instance_type} has no NVIDIA GPU, and "
            f"{model.runtime} is deployed here on GPU instances only; choose a GPU instance "
            f"type ({', '.join(sorted(catalog.INSTANCES))}), or, for a small quantized model "
            f"at low traffic or for offline work, see docs/ALTERNATIVES.md (CPU-only serving, "
            f"batch jobs)")
    instance = catalog.get_instance(instance_type)
    return instance.gpu_count, instance.gpu.usable_gib


# EC2 GPU families (g4dn, g5, g6, g6e, p4d, p5, ...); anything else has no NVIDIA GPU.
GPU_FAMILY = re.compile(r"^(g|p)\d")


def render_for_inventory(inventory: Inventory, model: Model, *, bind_host: str = "0.0.0.0") -> RuntimeLaunch:
    """`render_runtime` with the GPU facts of the model's instance type (either platform)."""
    gpu_count, gpu_gib = gpu_facts(inventory, model)
    return render_runtime(inventory, model, gpu_count=gpu_count, gpu_memory_gib=gpu_gib,
                          bind_host=bind_host)


def _capacity_flags(inventory: Inventory, model: Model, *, gpu_count: int,
                    gpu_memory_gib: float) -> CapacityFlags:
    """The capacity flags for `model`: sizing's plan (overrides applied and checked there).

    A repository the catalog does not describe cannot be sized; it falls back to explicit
    inventory values and conservative defaults, flagged `source="inventory"`.
    """
    spec = _catalog_model(model)
    if spec is None:
        return _from_inventory(model, gpu_count)
    from components.serving import catalog, sizing

    instance = catalog.get_instance(inventory.gpu_instance_type(model))
    if instance.gpu_count != gpu_count or abs(instance.gpu.usable_gib - gpu_memory_gib) > 0.5:
        # A caller sizing for a different machine than the inventory names (tests, what-ifs).
        instance = _instance_like(instance, gpu_count, gpu_memory_gib)
    plan = sizing.plan_runtime(
        spec, instance, runtime=model.runtime, max_context=model.max_context,
        quantization=SIZING_QUANTIZATION[model.quantization], tensor_parallel=model.tensor_parallel,
        gpu_memory_utilization=model.gpu_memory_utilization,
        overrides=sizing_overrides(model), stack=inventory.stack_name, model_name=model.name,
        workload=resolve_workload(model, spec),
        pipeline_parallel=model.pipeline_parallel, data_parallel=model.data_parallel,
        expert_parallel=model.expert_parallel)
    return _capacity_from_plan(model, plan)


# Inventory quantization names -> sizing's; None lets sizing pick the checkpoint's dtype.
SIZING_QUANTIZATION = {"none": None, "fp8": "fp8", "awq": "awq", "gptq": "gptq",
                       "q4_k_m": "gguf_q4_k_m", "q8_0": "gguf_q8_0"}


def sizing_overrides(model: Model) -> dict[str, Any]:
    """`model.runtime_overrides` (inventory keys) as the runtime flags sizing checks."""
    if model.runtime == "ollama":
        return {f"OLLAMA_{key.upper()}": value for key, value in model.runtime_overrides.items()}
    return {"--" + key.replace("_", "-"): value for key, value in model.runtime_overrides.items()}


def _instance_like(instance: Any, gpu_count: int, gpu_memory_gib: float) -> Any:
    from dataclasses import replace

    return replace(instance, gpu_count=gpu_count, gpu=replace(instance.gpu, usable_gib=gpu_memory_gib))


def _capacity_from_plan(model: Model, plan: Any) -> CapacityFlags:
    args = dict(plan.args)
    if model.runtime == "vllm":
        ctx = int(args["--max-model-len"])
        return CapacityFlags(
            max_context=ctx, max_input_tokens=ctx, max_new_tokens=plan.max_output_tokens,
            # --max-num-seqs is per data-parallel rank; the replica runs dp times as many.
            max_concurrency=int(args["--max-num-seqs"]) * plan.data_parallel,
            max_batch_tokens=int(args["--max-num-batched-tokens"]), max_batch_total_tokens=None,
            max_queue=max(0, plan.max_inflight_requests - plan.running_slots),
            tensor_parallel_size=int(args["--tensor-parallel-size"]),
            gpu_memory_utilization=float(args["--gpu-memory-utilization"]),
            flags=tuple(plan.cli_args()), env={}, source="sizing",
            pipeline_parallel=plan.pipeline_parallel, data_parallel=plan.data_parallel)
    if model.runtime == "tgi":
        total = int(args["--max-total-tokens"])
        max_input = int(args["--max-input-tokens"])
        concurrent = int(args["--max-concurrent-requests"])
        return CapacityFlags(
            max_context=total, max_input_tokens=max_input,
            max_new_tokens=min(plan.max_output_tokens, total - max_input),
            max_concurrency=concurrent,
            max_batch_tokens=int(args["--max-batch-prefill-tokens"]),
            max_batch_total_tokens=plan.kv_capacity_tokens,
            max_queue=max(0, concurrent - plan.running_slots),
            tensor_parallel_size=int(args["--num-shard"]),
            gpu_memory_utilization=plan.gpu_memory_utilization,
            flags=tuple(plan.cli_args()), env={}, source="sizing")
    env = dict(plan.env)
    ctx = int(env["OLLAMA_CONTEXT_LENGTH"])
    return CapacityFlags(
        max_context=ctx, max_input_tokens=ctx, max_new_tokens=plan.max_output_tokens,
        max_concurrency=int(env["OLLAMA_NUM_PARALLEL"]), max_batch_tokens=plan.max_num_batched_tokens,
        max_batch_total_tokens=None, max_queue=int(env["OLLAMA_MAX_QUEUE"]),
        tensor_parallel_size=plan.tensor_parallel, gpu_memory_utilization=plan.gpu_memory_utilization,
        flags=(), env=env, source="sizing")


# Conservative values used only for a repository the catalog cannot size: small enough
# to fit a 24 GB GPU with a 7B model at 16k context, and always overridable per model.
_FALLBACK = {"max_num_seqs": 16, "max_num_batched_tokens": 8192, "max_concurrent_requests": 32,
             "num_parallel": 2, "max_queue": 64}


def _from_inventory(model: Model, gpu_count: int) -> CapacityFlags:
    """Explicit inventory values and conservative defaults (no catalog entry to size from)."""
    if model.pipeline_parallel > 1 or model.data_parallel > 1 or model.expert_parallel:
        raise LaunchError(f"model {model.name}: {model.hf_repo} is not in the catalog, so its "
                          f"layers and experts cannot be sized across nodes or data-parallel "
                          f"ranks; use pipeline_parallel 1, data_parallel 1 and no expert_parallel")
    o = model.runtime_overrides
    tp = int(o.get("tensor_parallel_size", model.tensor_parallel or gpu_count))
    if tp > gpu_count:
        raise LaunchError(f"model {model.name}: tensor_parallel {tp} exceeds the {gpu_count} GPU(s) "
                            f"of its instance; lower tensor_parallel or choose a larger instance")
    util = model.gpu_memory_utilization
    if model.runtime == "vllm":
        ctx = int(o.get("max_model_len", model.max_context))
        seqs = int(o.get("max_num_seqs", _FALLBACK["max_num_seqs"]))
        batched = int(o.get("max_num_batched_tokens", _FALLBACK["max_num_batched_tokens"]))
        flags = ("--max-model-len", str(ctx), "--max-num-seqs", str(seqs),
                 "--max-num-batched-tokens", str(batched), "--tensor-parallel-size", str(tp),
                 "--gpu-memory-utilization", f"{util:g}")
        if model.quantization == "fp8":
            flags += ("--quantization", "fp8")
        return CapacityFlags(
            max_context=ctx, max_input_tokens=ctx, max_new_tokens=min(resolve_workload(model, None).output_max, ctx),
            max_concurrency=seqs, max_batch_tokens=batched, max_batch_total_tokens=None,
            max_queue=0, tensor_parallel_size=tp, gpu_memory_utilization=util, flags=flags)
    if model.runtime == "tgi":
        total = int(o.get("max_total_tokens", model.max_context))
        max_input = int(o.get("max_input_tokens", total * 3 // 4))
        if max_input >= total:
            raise LaunchError(f"model {model.name}: TGI needs max_input_tokens < max_total_tokens; "
                                f"got {max_input} >= {total}")
        concurrency = int(o.get("max_concurrent_requests", _FALLBACK["max_concurrent_requests"]))
        prefill = int(o.get("max_batch_prefill_tokens", max_input + 50))
        flags = ("--max-input-tokens", str(max_input), "--max-total-tokens", str(total),
                 "--max-batch-prefill-tokens", str(prefill),
                 "--max-concurrent-requests", str(concurrency), "--num-shard", str(tp),
                 "--cuda-memory-fraction", f"{util:g}")
        total_tokens = int(o["max_batch_total_tokens"]) if "max_batch_total_tokens" in o else None
        if total_tokens is not None:
            flags += ("--max-batch-total-tokens", str(total_tokens))
        if model.quantization in ("awq", "gptq", "fp8"):
            flags += ("--quantize", model.quantization)
        return CapacityFlags(
            max_context=total, max_input_tokens=max_input,
            max_new_tokens=min(resolve_workload(model, None).output_max, total - max_input), max_concurrency=concurrency,
            max_batch_tokens=prefill, max_batch_total_tokens=total_tokens, max_queue=0,
            tensor_parallel_size=tp, gpu_memory_utilization=util, flags=flags)
    ctx = int(o.get("context_length", model.max_context))
    parallel = int(o.get("num_parallel", _FALLBACK["num_parallel"]))
    queue = int(o.get("max_queue", _FALLBACK["max_queue"]))
    env = {"OLLAMA_NUM_PARALLEL": str(parallel), "OLLAMA_CONTEXT_LENGTH": str(ctx),
           "OLLAMA_MAX_QUEUE": str(queue), "OLLAMA_MAX_LOADED_MODELS": "1"}
    return CapacityFlags(
        max_context=ctx, max_input_tokens=ctx, max_new_tokens=min(resolve_workload(model, None).output_max, ctx),
        max_concurrency=parallel, max_batch_tokens=ctx, max_batch_total_tokens=None,
        max_queue=queue, tensor_parallel_size=1, gpu_memory_utilization=util, env=env)
