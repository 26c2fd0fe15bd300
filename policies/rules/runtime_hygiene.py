"""Family 2, model servers: how vLLM, TGI and Ollama are started, wherever they run.

The same rules read Kubernetes containers (any kind with a pod template) and EC2 user
data (launch templates and instances), because a model server started by `docker run`
in cloud-init is exactly as exposed as one in a Deployment.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from pulumi_policy import Severity

from ._framework import FAMILY_HYGIENE, Finding, Resource, resource_policy, cannot_check, violation
from ._wire import as_bool, as_dict, as_list, is_unknown
from .workloads import (
    OLLAMA,
    POD_TEMPLATE_TYPES,
    SECRET_REF,
    TGI,
    USER_DATA_TYPES,
    VLLM,
    Serving,
    container_serving,
    containers,
    env_assignments,
    parse_flags,
    pod_specs,
    tokens_of,
    user_data_of,
    user_data_servings,
)

SERVING_TYPES = USER_DATA_TYPES + POD_TEMPLATE_TYPES



def servings_of(res: Resource) -> tuple[list[Serving], list[Finding]]:
    """Model servers a resource starts, and what could not be read during preview."""
    servings: list[Serving] = []
    unknowns: list[Finding] = []
    for pod in pod_specs(res.type, res.props):
        if is_unknown(pod.spec):
            unknowns.append(cannot_check(pod.path))
            continue
        for path, container in containers(pod, include_init=False):
            if is_unknown(container):
                unknowns.append(cannot_check(path))
                continue
            serving = container_serving(path, container)
            if serving is not None:
                servings.append(serving)
            elif is_unknown(as_dict(container).get("image")):
                # Whether this container is a model server is itself unknown.
                unknowns.append(cannot_check(f"{path}.image"))
    for user_data in user_data_of(res.type, res.props):
        if user_data.unknown:
            unknowns.append(cannot_check(user_data.path))
        else:
            servings.extend(user_data_servings(user_data))
    return servings, unknowns


def _flag_path(serving: Serving) -> str:
    return serving.where if serving.where.startswith("userData") else f"{serving.where}.args"


def _env_path(serving: Serving, name: str) -> str:
    return serving.where if serving.where.startswith("userData") else f"{serving.where}.env[{name}]"


def _is_enabled(value: Any) -> bool:
    """A flag or env value that switches something on ("0"/"false" switch it off)."""
    if value is None or value is SECRET_REF:
        return value is SECRET_REF
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


# ---- no prompt logging ------------------------------------------------------------------

_PROMPT_FLAGS = ("--enable-log-requests", "--enable-log-outputs")


def _check_prompt_logging(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == "aws:apigateway/methodSettings:MethodSettings":
        yield from _data_trace(res.get("settings", "dataTraceEnabled"), "settings.dataTraceEnabled")
        return
    if res.type == "aws:apigatewayv2/stage:Stage":
        yield from _data_trace(res.get("defaultRouteSettings", "dataTraceEnabled"),
                               "defaultRouteSettings.dataTraceEnabled")
        route_settings = res.get("routeSettings")
        for index, entry in enumerate(as_list(route_settings) if not is_unknown(route_settings) else []):
            yield from _data_trace(as_dict(entry).get("dataTraceEnabled"),
                                   f"routeSettings[{index}].dataTraceEnabled")
        return
    servings, unknowns = servings_of(res)
    yield from unknowns
    for serving in servings:
        found = False
        if serving.runtime == VLLM:
            for flag in _PROMPT_FLAGS:
                values = serving.flag_values(flag)
                if serving.has_flag(flag) and (not values or values[-1] is None or _is_enabled(values[-1])):
                    found = True
                    yield violation(_flag_path(serving), flag,
                                    f"{serving.title} then writes prompts or completions to its logs, "
                                    "and prompts are sensitive user data", f"remove {flag}")
            level = serving.env.get("VLLM_LOGGING_LEVEL")
            if isinstance(level, str) and level.strip().upper() == "DEBUG":
                found = True
                yield violation(_env_path(serving, "VLLM_LOGGING_LEVEL"), "DEBUG",
                                "vLLM debug logging includes request contents",
                                "use VLLM_LOGGING_LEVEL=INFO (or leave it unset)")
            if "VLLM_SERVER_DEV_MODE" in serving.env and _is_enabled(serving.env["VLLM_SERVER_DEV_MODE"]):
                found = True
                yield violation(_env_path(serving, "VLLM_SERVER_DEV_MODE"), None,
                                "dev mode exposes unauthenticated debug endpoints (cache reset, "
                                "sleep, weight reload) and verbose logging",
                                "remove VLLM_SERVER_DEV_MODE", rendered="set")
        if serving.runtime == OLLAMA and "OLLAMA_DEBUG" in serving.env \
                and _is_enabled(serving.env["OLLAMA_DEBUG"]):
            found = True
            yield violation(_env_path(serving, "OLLAMA_DEBUG"), None,
                            "Ollama's debug log records prompts", "remove OLLAMA_DEBUG",
                            rendered="enabled")
        if not found:
            yield from (cannot_check(path, why) for path, why in serving.opaque)


def _data_trace(value: Any, path: str) -> Iterator[Finding]:
    enabled = as_bool(value)
    if is_unknown(enabled):
        yield cannot_check(path)
    elif enabled is True:
        yield violation(path, True, "API Gateway execution logs then contain full request and "
                        "response bodies: every prompt and completion",
                        "set data_trace_enabled=False; use access logs (request id, key id, status) instead")


NO_PROMPT_LOGGING = resource_policy(
    name="no-prompt-logging",
    family=FAMILY_HYGIENE,
    description="Prompts and completions are never logged: no vLLM --enable-log-requests/"
                "--enable-log-outputs, VLLM_LOGGING_LEVEL=DEBUG, VLLM_SERVER_DEV_MODE or "
                "OLLAMA_DEBUG, and no API Gateway data trace.",
    resource_types=SERVING_TYPES + ("aws:apigateway/methodSettings:MethodSettings",
                                    "aws:apigatewayv2/stage:Stage"),
    check=_check_prompt_logging,
    remediation="Remove request/output logging flags and debug levels; keep data_trace_enabled off.",
)


# ---- request size and concurrency -------------------------------------------------------

def _positive_int(value: Any) -> bool:
    if value is SECRET_REF or is_unknown(value):
        return True  # set from elsewhere; its content is not the question here
    try:
        return int(float(str(value))) > 0
    except ValueError:
        return str(value).strip().lower() == "auto"


def _require(serving: Serving, settings: tuple[tuple[str | None, str | None, str], ...],
             why: str) -> Iterator[Finding]:
    """Every (flag, env, fix) setting must be given with a positive value."""
    for flag, env, fix in settings:
        present, value = serving.setting(flag, env)
        shown = flag or env
        if not present:
            if serving.opaque:
                yield from (cannot_check(path, why) for path, why in serving.opaque)
            else:
                yield violation(_flag_path(serving) if flag else _env_path(serving, env), None,
                                f"without it {serving.title} {why}", fix, rendered="missing " + shown)
        elif not _positive_int(value):
            yield violation(_flag_path(serving) if flag else _env_path(serving, env), value,
                            f"{shown} must be a positive number, otherwise {serving.title} {why}", fix)


_REQUEST_SIZE = {
    VLLM: (("--max-model-len", None, "pass --max-model-len sized to GPU memory (for example 16384)"),),
    TGI: (("--max-input-tokens", "MAX_INPUT_TOKENS", "pass --max-input-tokens (or MAX_INPUT_TOKENS)"),
          ("--max-total-tokens", "MAX_TOTAL_TOKENS", "pass --max-total-tokens (or MAX_TOTAL_TOKENS)")),
}


def _check_request_size(res: Resource, config: dict) -> Iterator[Finding]:
    servings, unknowns = servings_of(res)
    yield from unknowns
    for serving in servings:
        yield from _require(serving, _REQUEST_SIZE.get(serving.runtime, ()),
                            "accepts prompts up to the model's full context (128k+ tokens for "
                            "DeepSeek models), an out-of-memory and denial-of-service vector")


RUNTIME_REQUEST_SIZE = resource_policy(
    name="runtime-request-size-bounded",
    family=FAMILY_HYGIENE,
    description="Model servers bound request size: vLLM --max-model-len; TGI --max-input-tokens "
                "and --max-total-tokens.",
    resource_types=SERVING_TYPES,
    check=_check_request_size,
    remediation="Derive the context limits from GPU memory and pass them explicitly.",
)


_CONCURRENCY = {
    VLLM: (("--max-num-seqs", None, "pass --max-num-seqs (concurrent sequences per replica)"),),
    TGI: (("--max-concurrent-requests", "MAX_CONCURRENT_REQUESTS",
           "pass --max-concurrent-requests (TGI answers 429 past it)"),),
    OLLAMA: ((None, "OLLAMA_NUM_PARALLEL", "set OLLAMA_NUM_PARALLEL (parallel requests per model)"),
             (None, "OLLAMA_MAX_QUEUE", "set OLLAMA_MAX_QUEUE (Ollama answers 503 past it)")),
}


def _check_concurrency(res: Resource, config: dict) -> Iterator[Finding]:
    servings, unknowns = servings_of(res)
    yield from unknowns
    for serving in servings:
        yield from _require(serving, _CONCURRENCY.get(serving.runtime, ()),
                            "queues without bound, so a burst becomes timeouts for everyone instead "
                            "of fast 429/503 backpressure")


RUNTIME_CONCURRENCY = resource_policy(
    name="runtime-concurrency-bounded",
    family=FAMILY_HYGIENE,
    description="Model servers bound concurrency: vLLM --max-num-seqs; TGI "
                "--max-concurrent-requests; Ollama OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE.",
    resource_types=SERVING_TYPES,
    check=_check_concurrency,
    remediation="Set the concurrency caps explicitly so overload becomes fast backpressure.",
)


# ---- priority chosen by the gateway, not the client ---------------------------------------

# The middleware deepseek-serving ships into vLLM for this (components/serving/priority_middleware.py):
# it sets the body's `priority` from the gateway's per-tier header and drops a client's own.
PRIORITY_MIDDLEWARE = "deepseek_priority_middleware.PriorityHeaderMiddleware"


def _check_priority_source(res: Resource, config: dict) -> Iterator[Finding]:
    servings, unknowns = servings_of(res)
    yield from unknowns
    trusted = {str(m).strip() for m in config.get("priorityMiddlewares") or []}
    for serving in servings:
        if serving.runtime != VLLM:
            continue
        policies = serving.flag_values("--scheduling-policy")
        if not policies:
            # vLLM's default is fcfs; hidden arguments could still switch priority on.
            yield from (cannot_check(path, why) for path, why in serving.opaque)
            continue
        if any(is_unknown(value) for value in policies):
            yield cannot_check(_flag_path(serving))
            continue
        if str(policies[-1]).strip().lower() != "priority":
            continue
        middlewares = serving.flag_values("--middleware")
        if any(is_unknown(value) for value in middlewares):
            yield cannot_check(_flag_path(serving))
            continue
        if trusted & {str(value).strip() for value in middlewares if value is not None}:
            continue
        if serving.opaque and not middlewares:
            yield from (cannot_check(path, why) for path, why in serving.opaque)
            continue
        yield violation(_flag_path(serving), "--scheduling-policy priority",
                        f"{serving.title} then schedules by the request body's `priority`, which "
                        "every client writes itself: any caller can put its requests ahead of "
                        "everyone else's, whatever its tier",
                        f"load a middleware that sets `priority` from the gateway's per-tier header "
                        f"(--middleware {PRIORITY_MIDDLEWARE}, deepseek-serving's "
                        f"components/serving/priority_middleware.py), list your own in this "
                        f"policy's priorityMiddlewares, or use --scheduling-policy fcfs",
                        rendered="--scheduling-policy priority without a trusted --middleware")


VLLM_PRIORITY_FROM_GATEWAY = resource_policy(
    name="vllm-priority-from-gateway",
    family=FAMILY_HYGIENE,
    description="vLLM with --scheduling-policy priority loads a middleware that takes the "
                "priority from the gateway (per tier), so no client picks its own.",
    resource_types=SERVING_TYPES,
    check=_check_priority_source,
    remediation="Pass --middleware with a middleware that overwrites the body's priority from a "
                "header the gateway sets, or schedule first come, first served.",
    config_schema={"priorityMiddlewares": {
        "type": "array", "items": {"type": "string"}, "default": [PRIORITY_MIDDLEWARE],
        "description": "vLLM --middleware import paths trusted to set the request priority from "
                       "the gateway and ignore the client's"}},
)


# ---- pod hardening ----------------------------------------------------------------------

_GPU_LIMIT = re.compile(r"(^|/)(gpu|neuron|neuroncore|neurondevice)$")


def _pinned(image: Any) -> bool:
    if not isinstance(image, str):
        return True
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("latest", "")


def _check_pod_hardening(res: Resource, config: dict) -> Iterator[Finding]:
    for pod in pod_specs(res.type, res.props):
        if is_unknown(pod.spec):
            yield cannot_check(pod.path)
            continue
        runtime_paths = {path for path, c in containers(pod, include_init=False)
                         if container_serving(path, c) is not None}
        if not runtime_paths:
            continue  # hardening here is for pods that serve untrusted prompts
        spec = pod.spec
        pod_sc = spec.get("securityContext")
        if is_unknown(pod_sc):
            yield cannot_check(f"{pod.path}.securityContext")
            pod_sc = {}
        pod_sc = as_dict(pod_sc)
        automount = as_bool(spec.get("automountServiceAccountToken"))
        if is_unknown(automount):
            yield cannot_check(f"{pod.path}.automountServiceAccountToken")
        elif automount is not False:
            yield violation(f"{pod.path}.automountServiceAccountToken", automount,
                            "a model server needs no Kubernetes API access, and a mounted token "
                            "turns a prompt-injection or RCE into cluster access",
                            "set automountServiceAccountToken: false on the pod spec")
        for path, container in containers(pod):
            if is_unknown(container):
                yield cannot_check(path)
                continue
            yield from _container_hardening(path, as_dict(container), pod_sc, path in runtime_paths)


def _container_hardening(path: str, container: dict, pod_sc: dict, is_runtime: bool) -> Iterator[Finding]:
    sc = container.get("securityContext")
    if is_unknown(sc):
        yield cannot_check(f"{path}.securityContext")
        return
    sc = as_dict(sc)
    missing = []
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    non_root = as_bool(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")))
    if not (non_root is True or (isinstance(run_as_user, (int, float)) and run_as_user > 0)):
        missing.append("runAsNonRoot: true")
    if isinstance(run_as_user, (int, float)) and run_as_user == 0:
        missing.append("a non-zero runAsUser")
    if as_bool(sc.get("allowPrivilegeEscalation")) is not False:
        missing.append("allowPrivilegeEscalation: false")
    if as_bool(sc.get("privileged")) is True:
        missing.append("privileged: false")
    drops = as_dict(sc.get("capabilities")).get("drop")
    if not (isinstance(drops, list) and any(str(d).upper() == "ALL" for d in drops)):
        missing.append("capabilities.drop: [ALL]")
    seccomp = as_dict(sc.get("seccompProfile") or pod_sc.get("seccompProfile")).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        missing.append("seccompProfile.type: RuntimeDefault")
    if missing:
        yield violation(f"{path}.securityContext", None,
                        "the container serves untrusted input and would run with more privilege "
                        "than it needs", "set " + ", ".join(missing),
                        rendered="missing " + ", ".join(missing))
    image = container.get("image")
    if not is_unknown(image) and not _pinned(image):
        yield violation(f"{path}.image", image,
                        "an unpinned tag changes what runs on the next pull (and `latest` may "
                        "change runtime flags)", "pin a version tag or an @sha256 digest")
    if not is_runtime:
        return
    limits = as_dict(as_dict(container.get("resources")).get("limits"))
    needs = []
    if limits.get("memory") is None:
        needs.append("memory")
    if not any(_GPU_LIMIT.search(str(k)) for k in limits):
        needs.append("nvidia.com/gpu")
    if needs:
        yield violation(f"{path}.resources.limits", None,
                        "without them one replica can take a node's memory or see every GPU on it",
                        "set resources.limits " + " and ".join(needs),
                        rendered="missing " + " and ".join(needs))
    probes = [p for p in ("startupProbe", "readinessProbe") if container.get(p) is None]
    if probes:
        yield violation(f"{path}", None,
                        "model loading takes minutes: without a startup probe the kubelet kills "
                        "it, without a readiness probe traffic arrives before the model serves",
                        "add " + " and ".join(probes) + " (readiness on /v1/models or /health)",
                        rendered="missing " + " and ".join(probes))


MODEL_POD_HARDENING = resource_policy(
    name="model-pod-hardening",
    family=FAMILY_HYGIENE,
    description="Pods running a model server are hardened: non-root, no privilege escalation, "
                "drop ALL, seccomp RuntimeDefault, no service account token, pinned images, "
                "GPU and memory limits, startup and readiness probes.",
    resource_types=POD_TEMPLATE_TYPES,
    check=_check_pod_hardening,
    remediation="Apply the restricted security context and set limits and probes on model containers.",
)


# ---- no plaintext secrets ---------------------------------------------------------------

_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PWD", "CREDENTIAL",
                 "CREDENTIALS", "PASSPHRASE"}
# Names that *point at* a secret rather than hold one.
_REFERENCE_SUFFIXES = {"PATH", "FILE", "DIR", "ARN", "NAME", "ID", "URL", "URI", "REF", "HEADER",
                       "ENABLED", "LENGTH", "TYPE", "SOURCE"}
_SECRET_FLAGS = ("--api-key", "--hf-token", "--token", "--password", "--secret", "--auth-token")


def is_secret_name(name: str) -> bool:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name.upper()) if w]
    if not words or words[-1] in _REFERENCE_SUFFIXES:
        return False
    return any(w in _SECRET_WORDS for w in words)


def _is_literal(value: Any) -> bool:
    """A value written into the resource, as opposed to a reference resolved at runtime."""
    if not isinstance(value, str) or is_unknown(value) or not value.strip():
        return False
    stripped = value.strip()
    # $(VAR) is Kubernetes env expansion, $VAR/${VAR}/$(cmd) shell: all resolved at runtime.
    return not (stripped.startswith("$") or stripped.startswith("arn:"))


def _check_plaintext_secrets(res: Resource, config: dict) -> Iterator[Finding]:
    why = ("the value is stored in plaintext in the resource, where anyone who can describe it "
           "(kubectl get, DescribeInstanceAttribute, GetFunctionConfiguration) reads it")
    if res.type == "kubernetes:core/v1:ConfigMap":
        data = res.get("data")
        if is_unknown(data):
            yield cannot_check("data")
            return
        for key, value in as_dict(data).items():
            if is_secret_name(key) and _is_literal(value):
                yield violation(f"data[{key}]", None, why,
                                "move it to a Kubernetes Secret (or the CSI secrets store)",
                                rendered="a literal secret (redacted)")
        return
    if res.type == "aws:lambda/function:Function":
        variables = res.get("environment", "variables")
        if is_unknown(variables):
            yield cannot_check("environment.variables")
            return
        for name, value in as_dict(variables).items():
            if is_secret_name(name):
                if is_unknown(value):
                    yield cannot_check(f"environment.variables[{name}]")
                elif _is_literal(value):
                    yield violation(f"environment.variables[{name}]", None, why,
                                    "store the secret in Secrets Manager and pass its ARN; read it at "
                                    "runtime", rendered="a literal secret (redacted)")
        return
    for pod in pod_specs(res.type, res.props):
        if is_unknown(pod.spec):
            yield cannot_check(pod.path)
            continue
        for path, container in containers(pod):
            if is_unknown(container):
                yield cannot_check(path)
                continue
            yield from _container_secrets(path, as_dict(container), why)
    for user_data in user_data_of(res.type, res.props):
        if user_data.unknown:
            yield cannot_check(user_data.path)
            continue
        for name, value in env_assignments(user_data.text or ""):
            if is_secret_name(name) and _is_literal(value):
                yield violation(user_data.path, None, f"it assigns {name} a literal; {why}",
                                "fetch the secret at boot (aws secretsmanager get-secret-value / ssm "
                                "get-parameter --with-decryption) instead of embedding it",
                                rendered="a literal secret (redacted)")
        tokens, _ = tokens_of([user_data.text or ""])
        yield from _secret_flags(user_data.path, tokens, why)


def _container_secrets(path: str, container: dict, why: str) -> Iterator[Finding]:
    env = container.get("env")
    if is_unknown(env):
        yield cannot_check(f"{path}.env")
    for index, entry in enumerate(env if isinstance(env, list) else []):
        entry = as_dict(entry)
        name = entry.get("name")
        if not isinstance(name, str) or not is_secret_name(name) or entry.get("valueFrom") is not None:
            continue
        value = entry.get("value")
        if is_unknown(value):
            yield cannot_check(f"{path}.env[{index}].value")
        elif _is_literal(value):
            yield violation(f"{path}.env[{index}] ({name})", None, why,
                            "use valueFrom.secretKeyRef pointing at a Kubernetes Secret",
                            rendered="a literal value (redacted)")
    items = []
    for key in ("command", "args"):
        value = container.get(key)
        items.extend([value] if is_unknown(value) else as_list(value))
    tokens, _ = tokens_of(items)
    yield from _secret_flags(f"{path}.args", tokens, why)


def _secret_flags(path: str, tokens: list[str], why: str) -> Iterator[Finding]:
    for flag, values in parse_flags(tokens).items():
        if flag not in _SECRET_FLAGS:
            continue
        for value in values:
            if is_unknown(value):
                yield cannot_check(path)
            elif _is_literal(value):
                yield violation(path, None, f"{flag} is given a literal; {why}",
                                f"pass the key through an environment variable from a secret "
                                f"(e.g. VLLM_API_KEY via secretKeyRef, or {flag} \"$(VLLM_API_KEY)\")",
                                rendered=f"{flag} <redacted>")


NO_PLAINTEXT_SECRETS = resource_policy(
    name="no-plaintext-secrets",
    family=FAMILY_HYGIENE,
    description="No secrets in plain text: container env values and args, ConfigMaps, EC2 user "
                "data and Lambda environments use references (secretKeyRef, Secrets Manager, SSM).",
    resource_types=SERVING_TYPES + ("kubernetes:core/v1:ConfigMap", "aws:lambda/function:Function"),
    check=_check_plaintext_secrets,
    remediation="Reference secrets (valueFrom.secretKeyRef, Secrets Manager/SSM at boot); never "
                "embed them in resource properties.",
    severity=Severity.CRITICAL,
)


POLICIES = [
    NO_PROMPT_LOGGING,
    RUNTIME_REQUEST_SIZE,
    RUNTIME_CONCURRENCY,
    MODEL_POD_HARDENING,
    NO_PLAINTEXT_SECRETS,
    VLLM_PRIORITY_FROM_GATEWAY,
]
