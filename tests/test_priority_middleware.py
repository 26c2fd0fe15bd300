"""The priority a request is scheduled with comes from the gateway's per-tier header, never
from the client's body: the middleware file the containers mount, imported the way vLLM's
`--middleware` flag imports it and run through the ASGI protocol in front of a FastAPI app
shaped like vLLM's (the framework vLLM's API server is built on), and the flag, module and
mount each platform renders for a `scheduling_policy: priority` model.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import gzip
import importlib
import inspect
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

import httpx
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from components.config import UsageTier
from components.eks import model_service
from components.serving import runtimes
from tests import stack_runs
from tests.test_host_provisioning import plan_for
from tools import vllm_flags

HEADER = "X-DeepSeek-Priority"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"


def priority_launch(stack: str = "dev", model_index: int = 0) -> runtimes.RuntimeLaunch:
    raw = stack_runs.inventory_of(stack)
    raw["models"][model_index]["scheduling_policy"] = "priority"
    from tests.test_guide_serving import parse
    inventory = parse(raw, stack)
    return runtimes.render_for_inventory(inventory, inventory.models[model_index])


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """The middleware class as vLLM loads it in the container: the launch's config files
    written to a directory standing for RUNTIME_CONFIG_DIR, that directory on the import
    path (the container's PYTHONPATH), then `--middleware`'s value split and imported as
    vllm/entrypoints/openai/api_server.py `build_app` does."""
    launch = priority_launch()
    for name, text in launch.config_files.items():
        (tmp_path / name).write_text(text)
    assert launch.env["PYTHONPATH"] == runtimes.RUNTIME_CONFIG_DIR
    monkeypatch.syspath_prepend(str(tmp_path))
    module_path, object_name = flag(launch.args, "--middleware").rsplit(".", 1)
    monkeypatch.delitem(sys.modules, module_path, raising=False)
    imported = getattr(importlib.import_module(module_path), object_name)
    assert Path(sys.modules[module_path].__file__).parent == tmp_path
    assert inspect.isclass(imported)  # vLLM: a class goes through app.add_middleware
    yield imported
    sys.modules.pop(module_path, None)


# --- against a FastAPI app shaped like vLLM's ------------------------------------------------

class GenerationRequest(BaseModel):
    """vLLM's request models in what matters here (vllm/entrypoints/openai/protocol.py:
    OpenAIBaseModel allows extra fields; `priority: int = 0`)."""
    model_config = ConfigDict(extra="allow")
    model: str
    priority: int = 0


def vllm_like_app(middleware) -> FastAPI:
    app = FastAPI()

    async def generate(request: GenerationRequest, raw_request: Request) -> dict:
        return {"priority": request.priority, "body": (await raw_request.body()).decode(),
                "content_length": raw_request.headers.get("content-length")}

    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"):
        app.post(path)(generate)

    @app.post("/tokenize")
    async def tokenize(raw_request: Request) -> dict:
        return {"body": (await raw_request.body()).decode()}

    @app.get("/v1/models")
    async def models(raw_request: Request) -> dict:
        return {"data": [{"id": "m"}], "query": raw_request.url.query}

    app.add_middleware(middleware)
    return app


def call(app, method: str, path: str, *, body=None, content: Optional[bytes] = None,
         priority: str | bytes | None = None) -> httpx.Response:
    async def go():
        headers = {HEADER: priority} if priority is not None else {}
        if content is not None:
            headers["content-type"] = "application/json"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vllm") as client:
            return await client.request(method, path, json=body, content=content, headers=headers)
    return asyncio.run(go())


CHAT = {"model": "m", "messages": [{"role": "user", "content": "Grüße, \u2603"}], "stream": False}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses",
                                  "/v1/embeddings"])
def test_the_gateway_header_overrides_the_priority_a_client_puts_in_the_body(shipped, path):
    answer = call(vllm_like_app(shipped), "POST", path, body={**CHAT, "priority": -100}, priority="7")
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["priority"] == 7
    forwarded = json.loads(seen["body"])
    assert forwarded == {**CHAT, "priority": 7}  # everything else as the client sent it
    assert seen["content_length"] == str(len(seen["body"].encode()))


def test_the_header_sets_the_priority_when_the_client_sent_none(shipped):
    seen = call(vllm_like_app(shipped), "POST", "/v1/chat/completions", body=CHAT, priority="-3").json()
    assert seen["priority"] == -3


def test_without_the_header_a_client_sent_priority_is_removed(shipped):
    seen = call(vllm_like_app(shipped), "POST", "/v1/completions",
                body={"model": "m", "prompt": "hi", "priority": -100}).json()
    assert seen["priority"] == 0  # vLLM's default
    assert "priority" not in json.loads(seen["body"])


def test_an_empty_header_counts_as_no_header(shipped):
    seen = call(vllm_like_app(shipped), "POST", "/v1/completions",
                body={"model": "m", "prompt": "hi", "priority": -100}, priority=" ").json()
    assert seen["priority"] == 0


def test_a_repeated_priority_key_cannot_smuggle_a_value_past_the_header(shipped):
    # json keeps the last of repeated keys, as vLLM's framework reads them; an escaped key
    # spells the same name.
    body = b'{"model":"m","prompt":"hi","priority":5,"priorit\\u0079":-100}'
    app = vllm_like_app(shipped)
    assert call(app, "POST", "/v1/completions", content=body, priority="5").json()["priority"] == 5
    assert call(app, "POST", "/v1/completions", content=body).json()["priority"] == 0


def test_strings_reach_vllm_exactly_as_the_client_wrote_them(shipped):
    # Non-ASCII text, escapes and a lone surrogate (valid JSON, not valid UTF-8) survive.
    body = b'{"model":"m","prompt":"caf\xc3\xa9 \\u2603 \\ud800 \\"q\\" \\\\","priority":1}'
    seen = call(vllm_like_app(shipped), "POST", "/v1/completions", content=body, priority="2").json()
    assert json.loads(seen["body"])["prompt"] == json.loads(body)["prompt"]


@pytest.mark.parametrize("value", ["high", "1.5", "0x10", "101", "-101", "99999999999", "٣".encode(), "1 2", "--1"])
def test_a_header_that_is_not_an_allowed_integer_is_refused_in_vllm_s_error_shape(shipped, value):
    answer = call(vllm_like_app(shipped), "POST", "/v1/chat/completions",
                  content=json.dumps(CHAT).encode(), priority=value)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == 400
    assert HEADER in error["message"] and "Grüße" not in answer.text


def test_two_priority_headers_are_refused(shipped):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=vllm_like_app(shipped)),
                                     base_url="http://vllm") as client:
            return await client.post("/v1/completions", json={"model": "m", "prompt": "x"},
                                     headers=[(HEADER, "1"), (HEADER, "9")])
    assert asyncio.run(go()).status_code == 400


def test_other_routes_and_methods_pass_untouched(shipped):
    app = vllm_like_app(shipped)
    body = json.dumps({"model": "m", "prompt": "hi", "priority": -100})
    assert call(app, "POST", "/tokenize", content=body.encode(), priority="5").json()["body"] == body
    listed = call(app, "GET", "/v1/models?x=1", priority="5")
    assert listed.status_code == 200 and listed.json()["query"] == "x=1"


# --- the ASGI exchange itself, message by message ----------------------------------------------

class Recorder:
    """A real ASGI app that records what reaches it and answers with a token stream."""

    def __init__(self, chunks=(b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n")):
        self.scope, self.body, self.after_body, self.chunks = None, b"", None, chunks

    async def __call__(self, scope, receive, send):
        self.scope = scope
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        # vLLM polls for a disconnect while it streams: it must still arrive.
        self.after_body = await receive()

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.scope["headers"] if k == name]


def exchange(middleware_class, app, *, path="/v1/chat/completions", method="POST",
             parts=(b"",), headers=()):
    """Drive one request through the middleware: `parts` arrive as separate
    http.request messages; returns the messages sent back."""
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)] + [{"type": "http.disconnect"}]
    sent = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower(), v) for k, v in headers]}
    asyncio.run(middleware_class(app)(scope, receive, send))
    return sent


def test_a_body_in_several_chunks_is_rewritten_whole_with_one_content_length(shipped):
    body = json.dumps({**CHAT, "priority": -100}).encode()
    parts = (body[:10], body[10:25], body[25:], b"")
    app = Recorder()
    exchange(shipped, app, parts=parts,
             headers=[(b"transfer-encoding", b"chunked"), (HEADER.encode(), b"4")])
    assert json.loads(app.body) == {**CHAT, "priority": 4}
    assert app.header(b"content-length") == [str(len(app.body)).encode()]
    assert app.header(b"transfer-encoding") == []
    assert app.header(HEADER.lower().encode()) == [b"4"]


def test_the_response_stream_passes_through_message_for_message(shipped):
    app = Recorder()
    body = json.dumps({**CHAT, "stream": True}).encode()
    sent = exchange(shipped, app, parts=(body,), headers=[(b"content-length", str(len(body)).encode()),
                                                          (HEADER.encode(), b"1")])
    assert [m.get("body") for m in sent[1:]] == [*app.chunks, b""]
    assert [m.get("more_body") for m in sent[1:]] == [True, True, True, False]
    assert app.after_body == {"type": "http.disconnect"}


def test_a_body_that_is_not_a_json_object_reaches_vllm_unchanged(shipped):
    for raw in (b'{"model": "m", "prompt": ', b'[{"priority": -100}]', b"", b"\xff\xfe{"):
        app = Recorder()
        headers = [(b"content-length", str(len(raw)).encode()), (HEADER.encode(), b"3")]
        exchange(shipped, app, parts=(raw[:3], raw[3:]), headers=headers)
        assert app.body == raw and app.header(b"content-length") == [str(len(raw)).encode()]


def test_without_a_priority_to_remove_the_body_is_not_rewritten(shipped):
    raw = b'{ "model" : "m",  "prompt": "hi" }'
    app = Recorder()
    exchange(shipped, app, parts=(raw,), headers=[(b"content-length", str(len(raw)).encode())])
    assert app.body == raw


def test_a_body_over_the_gateway_limit_is_refused_before_vllm_sees_it(shipped):
    module = sys.modules[shipped.__module__]
    declared = Recorder()
    sent = exchange(shipped, declared, parts=(b"{}",),
                    headers=[(b"content-length", str(module.MAX_BODY_BYTES + 1).encode())])
    assert sent[0]["status"] == 413 and declared.scope is None
    assert json.loads(sent[1]["body"])["error"]["code"] == 413
    streamed = Recorder()
    part = b" " * (1024 * 1024)
    sent = exchange(shipped, streamed, parts=(part,) * 11)
    assert sent[0]["status"] == 413 and streamed.scope is None


def test_a_client_that_leaves_while_sending_ends_the_request_without_vllm(shipped):
    app = Recorder()
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/completions", "headers": []}
    asyncio.run(shipped(app)(scope, receive, send))
    assert sent == [] and app.scope is None


def test_lifespan_and_websocket_scopes_pass_through(shipped):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    async def nothing():
        return {}

    async def ignore(message):
        pass

    for kind in ("lifespan", "websocket"):
        asyncio.run(shipped(app)({"type": kind, "path": "/v1/completions"}, nothing, ignore))
    assert seen == ["lifespan", "websocket"]


# --- what the shipped file may rely on -------------------------------------------------------

def test_the_shipped_module_imports_only_the_standard_library():
    tree = ast.parse(runtimes.PRIORITY_MIDDLEWARE_SOURCE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_mounted_module_imports_in_an_interpreter_that_has_only_the_mount(tmp_path):
    launch = priority_launch()
    mount = tmp_path / "etc-deepseek-runtime"
    mount.mkdir()
    for name, text in launch.config_files.items():
        (mount / name).write_text(text)
    import_path = flag(launch.args, "--middleware")
    script = ("import importlib, inspect, sys; m, c = sys.argv[1].rsplit('.', 1); "
              "cls = getattr(importlib.import_module(m), c); assert inspect.isclass(cls); "
              "print(sys.modules[m].__file__)")
    # -S: no site-packages (the project's venv), a cwd outside the repository.
    done = subprocess.run([sys.executable, "-S", "-c", script, import_path], cwd=tmp_path,
                          env={"PYTHONPATH": str(mount)}, capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()).parent == mount


def test_the_limits_match_the_inventory_and_the_gateway():
    from components.serving import priority_middleware as module
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower())
              for m in UsageTier.model_fields["priority"].metadata}
    assert (module.PRIORITY_MIN, module.PRIORITY_MAX) == (bounds["Ge"], bounds["Le"])
    assert module.MAX_BODY_BYTES == runtimes.GATEWAY_PAYLOAD_LIMIT
    assert module.PRIORITY_HEADER == HEADER


# --- rendering: flag, module and mount, only for priority models ------------------------------

def test_a_priority_model_loads_the_middleware_with_vllm_s_own_flag():
    launch = priority_launch()
    parsed = vllm_flags.check_args(launch.args)
    assert parsed.middleware == runtimes.PRIORITY_MIDDLEWARE and parsed.scheduling_policy == "priority"
    assert launch.config_files[runtimes.PRIORITY_MIDDLEWARE_FILE] == runtimes.PRIORITY_MIDDLEWARE_SOURCE.read_text()
    assert launch.env["PYTHONPATH"] == runtimes.RUNTIME_CONFIG_DIR
    assert runtimes.PRIORITY_MIDDLEWARE.split(".")[0] + ".py" == runtimes.PRIORITY_MIDDLEWARE_FILE


def test_a_first_come_first_served_model_gets_none_of_it():
    from tests.test_guide_serving import launch_for
    launch = launch_for("dev")
    assert "--middleware" not in launch.args and "--scheduling-policy" not in launch.args
    assert "PYTHONPATH" not in launch.env
    assert not any(name.endswith(".py") for name in launch.config_files)


def _server(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_eks_pod_mounts_the_module_read_only_on_its_python_path():
    run = stack_runs.preview_run("prod")
    priority_model, fcfs_model = (m["name"] for m in stack_runs.inventory_of("prod")["models"][:2])
    deployments = {r.inputs["metadata"]["name"]: r.inputs for r in run.by_type(DEPLOYMENT)}
    maps = {r.inputs["metadata"]["namespace"]: r.inputs for r in run.by_type(CONFIG_MAP)
            if r.inputs["metadata"]["name"] == model_service.RUNTIME_CONFIG_MAP}

    deployment = deployments[priority_model]
    kubernetes_validate.validate({"apiVersion": "apps/v1", "kind": "Deployment", **deployment},
                                 "1.33", strict=True)
    server = _server(deployment)
    assert flag(server["args"], "--middleware") == runtimes.PRIORITY_MIDDLEWARE
    assert {"name": "PYTHONPATH", "value": runtimes.RUNTIME_CONFIG_DIR} in server["env"]
    assert {"name": "runtime-config", "mountPath": runtimes.RUNTIME_CONFIG_DIR, "readOnly": True} \
        in server["volumeMounts"]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "runtime-config", "configMap": {"name": model_service.RUNTIME_CONFIG_MAP}} in volumes
    assert maps[priority_model]["data"][runtimes.PRIORITY_MIDDLEWARE_FILE] == \
        runtimes.PRIORITY_MIDDLEWARE_SOURCE.read_text()

    fcfs = _server(deployments[fcfs_model])
    assert "--middleware" not in fcfs["args"]
    assert not any(e["name"] == "PYTHONPATH" for e in fcfs["env"])
    assert runtimes.PRIORITY_MIDDLEWARE_FILE not in maps[fcfs_model]["data"]


def test_a_changed_module_rolls_the_pods(monkeypatch, tmp_path):
    launch = priority_launch("prod")
    before = model_service.runtime_config_hash(launch)
    changed = tmp_path / "priority_middleware.py"
    changed.write_text(runtimes.PRIORITY_MIDDLEWARE_SOURCE.read_text() + "# changed\n")
    monkeypatch.setattr(runtimes, "PRIORITY_MIDDLEWARE_SOURCE", changed)
    after_launch = priority_launch("prod")
    assert after_launch.config_files[runtimes.PRIORITY_MIDDLEWARE_FILE].endswith("# changed\n")
    assert model_service.runtime_config_hash(after_launch) != before


def test_a_multi_node_leader_serves_with_the_middleware_mounted():
    def priority(raw):
        raw["models"][0]["scheduling_policy"] = "priority"
    run = stack_runs.run_with_inventory("flagship", priority)
    lws = [r.inputs for r in run.by_type(LWS)][0]
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    container = leader["spec"]["containers"][0]
    assert flag(container["args"], "--middleware") == runtimes.PRIORITY_MIDDLEWARE
    vllm_flags.check_args(container["args"][1:])
    assert {"name": "PYTHONPATH", "value": runtimes.RUNTIME_CONFIG_DIR} in container["env"]
    assert {"name": "runtime-config", "mountPath": runtimes.RUNTIME_CONFIG_DIR, "readOnly": True} \
        in container["volumeMounts"]
    assert "deepseek-serving/runtime-config" in leader["metadata"]["annotations"]


def _cloud_config(plan) -> dict:
    from components.ec2 import host
    text = host.render_user_data(plan)
    assert len(host.user_data_payload(text, plan.model_name)) <= host.USER_DATA_LIMIT
    return yaml.safe_load(text)


def _docker_argv(config: dict) -> list[str]:
    (unit,) = [f for f in config["write_files"] if f["path"] == "/etc/systemd/system/deepseek-runtime.service"]
    (line,) = [l for l in unit["content"].splitlines() if l.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_the_ec2_host_writes_the_module_and_mounts_it_read_only_into_the_container():
    config = _cloud_config(plan_for("r1-qwen-7b", stack="ec2-runtimes"))
    path = f"{runtimes.RUNTIME_CONFIG_DIR}/{runtimes.PRIORITY_MIDDLEWARE_FILE}"
    (entry,) = [f for f in config["write_files"] if f["path"] == path]
    # Readable by the container's UID: 0644, cloud-init's default when the entry names none.
    assert entry["encoding"] == "gz+b64" and entry.get("permissions", "0644") == "0644"
    assert gzip.decompress(base64.b64decode(entry["content"])).decode() == \
        runtimes.PRIORITY_MIDDLEWARE_SOURCE.read_text()
    argv = _docker_argv(config)
    assert f"{runtimes.RUNTIME_CONFIG_DIR}:{runtimes.RUNTIME_CONFIG_DIR}:ro" in \
        [argv[i + 1] for i, word in enumerate(argv) if word == "--volume"]
    assert f"PYTHONPATH={runtimes.RUNTIME_CONFIG_DIR}" in \
        [argv[i + 1] for i, word in enumerate(argv) if word == "--env"]
    assert flag(argv, "--middleware") == runtimes.PRIORITY_MIDDLEWARE


def test_an_ec2_host_of_a_first_come_first_served_model_has_no_module():
    config = _cloud_config(plan_for("r1-qwen-7b", stack="dev"))
    assert not any(f["path"].endswith(".py") and f["path"].startswith(runtimes.RUNTIME_CONFIG_DIR)
                   for f in config["write_files"])
    argv = _docker_argv(config)
    assert "--middleware" not in argv and not any(w.startswith("PYTHONPATH=") for w in argv)


# --- the two halves together ----------------------------------------------------------------

def _mapped_value(source: str, stage: dict) -> str:
    """An integration request parameter's source as API Gateway resolves it: a quoted static
    value, or a stage variable of the stage the request arrived on."""
    if source.startswith("'") and source.endswith("'"):
        return source[1:-1]
    assert source.startswith("stageVariables."), source
    return stage["variables"][source.removeprefix("stageVariables.")]


def test_each_tier_is_scheduled_at_the_priority_its_stage_sends_whatever_the_client_writes(shipped):
    from components.gateway import api
    assert api.PRIORITY_HEADER == HEADER
    parameter = f"integration.request.header.{HEADER}"
    run = stack_runs.preview_run("staging")  # a stage per tier, a vLLM model scheduling by priority
    stages = [r.inputs for r in run.by_type("aws:apigateway/stage:Stage")]
    sources = {r.inputs["requestParameters"][parameter] for r in run.by_type("aws:apigateway/integration:Integration")}
    assert len(sources) == 1 and len(stages) >= 2
    (source,) = sources
    app = vllm_like_app(shipped)
    sent = {_mapped_value(source, stage) for stage in stages}
    assert len(sent) == len(stages)  # the tiers really differ
    for value in sent:
        seen = call(app, "POST", "/v1/chat/completions", body={**CHAT, "priority": -100}, priority=value)
        assert seen.json()["priority"] == int(value)
