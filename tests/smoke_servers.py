"""Local HTTP servers standing in for the deployed endpoint, for the smoke and client-policy tests.

FakeGateway answers as the API Gateway stage in front of the model servers is meant
to: a stage path prefix, `x-api-key` required, a token-bucket usage plan (rate, burst)
answering 429 with Retry-After, a body size limit answering 413, gateway errors as JSON
in the OpenAI shape, and an OpenAI-compatible backend behind it that streams SSE with
chunked transfer encoding. Each misbehaviour flag breaks exactly one of those promises,
so a test can show the smoke test notices that one.

ScriptedServer replays a fixed list of answers (status, headers, delays, stream events)
for tests of the retry and timeout policy.

Both bind 127.0.0.1 on an ephemeral port and never reach anything else.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

DEFAULT_MODELS = ("deepseek-r1-distill-qwen-7b", "deepseek-coder-6.7b-instruct")
STAGE = "/prod"


@dataclass
class GatewayBehaviour:
    api_key: str
    served_models: tuple[str, ...] = DEFAULT_MODELS
    max_request_bytes: int = 16 * 1024
    # Slow enough refill that even a loaded machine empties the bucket within a burst.
    rate: float = 5.0
    burst: int = 3
    # Header value on 429 answers; None drops the header.
    retry_after: Optional[str] = "1"
    first_token_delay_s: float = 0.03
    # Each model under its own path, <stage>/<model>/v1/..., as with one VPC link per model.
    per_model_paths: bool = False
    token_interval_s: float = 0.005
    # One broken promise each.
    accepts_missing_key: bool = False
    accepts_wrong_key: bool = False
    html_auth_errors: bool = False
    drops_model: bool = False
    omits_usage: bool = False
    stream_not_sse: bool = False
    stream_without_chunks: bool = False
    accepts_oversized: bool = False
    never_throttles: bool = False
    # Puts the caller's key into error messages: the smoke output must still mask it.
    echoes_key_in_errors: bool = False
    # A Cognito/Lambda authorizer in front of the key: this Authorization value is required.
    required_authorization: Optional[str] = None
    # The model's limits (stack output model_limits): a prompt (counted in words) plus
    # max_tokens beyond max_context is refused with 400 in vLLM's error shape.
    max_context: int = 4096
    max_input_tokens: int = 4096
    max_output_tokens: int = 512
    # This model answers 502 to completions (a replica that lists but cannot generate).
    failing_model: Optional[str] = None
    # Long generations (max_tokens above 100) stop mid-stream without [DONE], as when the
    # gateway's integration timeout ends a stream the model has not finished.
    cuts_long_streams: bool = False
    # Long generations never send a byte: the client's own deadline must end the wait.
    hangs_long_requests_s: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    api_key: Optional[str]
    body_bytes: int


class TokenBucket:
    """API Gateway's throttle model: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int):
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout under test) breaks the pipe: expected, not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str, extra: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _start_chunked(self, status: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _GatewayHandler(_Handler):
    server: "_GatewayServer"

    def do_GET(self):  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _gateway_error(self, status: int, code: str, message: str, extra: Optional[dict] = None) -> None:
        behaviour = self.server.behaviour
        if behaviour.echoes_key_in_errors:
            message = f"{message} (x-api-key {self.headers.get('x-api-key')})"
        if behaviour.html_auth_errors and status in (401, 403):
            html = f"<html><body><h1>{status}</h1><p>{message}</p></body></html>".encode()
            return self._send(status, html, "text/html", extra)
        body = {"error": {"message": message, "type": "gateway_error", "code": code, "request_id": str(uuid.uuid4())}}
        self._send(status, json.dumps(body).encode(), "application/json", extra)

    def _handle(self, method: str) -> None:
        behaviour = self.server.behaviour
        body = self._read_body()
        api_key = self.headers.get("x-api-key")
        self.server.record(RecordedRequest(method, self.path, api_key, len(body)))

        if not self.path.startswith(STAGE + "/"):
            return self._gateway_error(403, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
        path = self.path[len(STAGE) :]
        # WAF's size rule runs before the gateway looks at the key.
        if len(body) > behaviour.max_request_bytes and not behaviour.accepts_oversized:
            return self._gateway_error(413, "REQUEST_TOO_LARGE", "Request body is too large")
        if api_key is None and not behaviour.accepts_missing_key:
            return self._gateway_error(403, "MISSING_API_KEY", "Forbidden: API key required in x-api-key")
        if api_key is not None and api_key != behaviour.api_key and not behaviour.accepts_wrong_key:
            return self._gateway_error(403, "INVALID_API_KEY", "Forbidden: invalid API key")
        if (behaviour.required_authorization is not None and api_key == behaviour.api_key
                and self.headers.get("Authorization") != behaviour.required_authorization):
            return self._gateway_error(401, "UNAUTHORIZED", "Unauthorized")
        if api_key == behaviour.api_key and not behaviour.never_throttles and not self.server.bucket.take():
            extra = {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else {}
            return self._gateway_error(429, "THROTTLED", "Too many requests, slow down", extra)

        models_here = behaviour.served_models
        if behaviour.per_model_paths:
            model, _, rest = path[1:].partition("/")
            if model not in behaviour.served_models:
                return self._gateway_error(404, "MISSING_AUTHENTICATION_TOKEN", "No such route")
            models_here, path = (model,), "/" + rest
        if method == "GET" and path == "/v1/models":
            return self._models(models_here)
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat(body, models_here)
        self._send(404, json.dumps({"error": {"message": "not found", "type": "not_found", "code": "404",
                                              "request_id": str(uuid.uuid4())}}).encode(), "application/json")

    def _models(self, models_here: tuple[str, ...]) -> None:
        models = list(models_here)
        if self.server.behaviour.drops_model:
            models = models[:-1]
        listing = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "vllm"} for m in models]}
        self._send(200, json.dumps(listing).encode(), "application/json")

    def _chat(self, raw: bytes, models_here: tuple[str, ...]) -> None:
        behaviour = self.server.behaviour
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(400, b'{"error": {"message": "bad json"}}', "application/json")
        model = request.get("model")
        if model not in models_here:
            return self._send(404, b'{"error": {"message": "model not found"}}', "application/json")
        if model == behaviour.failing_model:
            return self._send(502, b'{"message": "Internal server error"}', "application/json")
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        max_tokens = int(request.get("max_tokens") or 16)
        if prompt + max_tokens > behaviour.max_context:
            refusal = {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
                       "message": f"This model's maximum context length is {behaviour.max_context} tokens. "
                                  f"However, you requested {prompt + max_tokens} tokens."}
            return self._send(400, json.dumps(refusal).encode(), "application/json")
        long_generation = max_tokens > 100
        if long_generation and behaviour.hangs_long_requests_s:
            time.sleep(behaviour.hangs_long_requests_s)
        completion = {
            "id": "chatcmpl-smoke",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
        }
        if behaviour.omits_usage:
            del completion["usage"]
        if not request.get("stream"):
            return self._send(200, json.dumps(completion).encode(), "application/json")
        if behaviour.stream_not_sse:
            return self._send(200, json.dumps(completion).encode(), "application/json")

        self._start_chunked(200, "text/event-stream; charset=utf-8")
        # A keep-alive comment first, as servers send while a request waits in the queue.
        self._write_chunk(b": ping\n\n")
        time.sleep(behaviour.first_token_delay_s)
        if long_generation:
            # Many tokens, quickly: the worst case's shape, not its duration.
            deltas = [{"role": "assistant", "content": ""}] + [{"content": f"{n}\n"} for n in range(1, 40)] + [{}]
            if behaviour.cuts_long_streams:
                for delta in deltas[:10]:
                    chunk = {"id": "chatcmpl-smoke", "object": "chat.completion.chunk", "model": model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                return self._end_chunked()
        else:
            deltas = [{"role": "assistant", "content": ""}, {"content": "o"}, {"content": "k"}, {}]
        if not behaviour.stream_without_chunks:
            for index, delta in enumerate(deltas):
                chunk = {
                    "id": "chatcmpl-smoke",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta,
                                 "finish_reason": "stop" if index == len(deltas) - 1 else None}],
                }
                self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                time.sleep(behaviour.token_interval_s)
        self._write_chunk(b"data: [DONE]\n\n")
        self._end_chunked()


class _GatewayServer(_QuietServer):
    def __init__(self, behaviour: GatewayBehaviour):
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.behaviour = behaviour
        self.bucket = TokenBucket(behaviour.rate, behaviour.burst)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Running:
    """Start on enter, stop on exit, serve from a daemon thread."""

    def __init__(self, server: _QuietServer):
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


class FakeGateway(_Running):
    def __init__(self, behaviour: GatewayBehaviour):
        self.server = _GatewayServer(behaviour)
        super().__init__(self.server)

    @property
    def api_endpoint(self) -> str:
        """The base URL including the stage, as the stack exports it."""
        return self.origin + STAGE

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.server._lock:
            return list(self.server.requests)


@dataclass
class Scripted:
    """One answer: wait `delay_s`, send the status and headers, then body or stream events.

    `events` are (delay before, raw bytes) pairs written as chunks of a chunk-encoded body.
    """

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    events: Optional[list[tuple[float, bytes]]] = None


class _ScriptedHandler(_Handler):
    server: "_ScriptedServer"

    def do_GET(self):  # noqa: N802
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        self._read_body()
        answer = self.server.next_answer()
        time.sleep(answer.delay_s)
        if answer.events is None:
            headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
            content_type = answer.headers.get("Content-Type", "application/json")
            return self._send(answer.status, answer.body, content_type, headers)
        self._start_chunked(answer.status, answer.headers.get("Content-Type", "text/event-stream"))
        for delay, data in answer.events:
            time.sleep(delay)
            self._write_chunk(data)
        self._end_chunked()


class _ScriptedServer(_QuietServer):
    def __init__(self, script: list[Scripted]):
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self._script = list(script)
        self._lock = threading.Lock()
        self.answered = 0

    def next_answer(self) -> Scripted:
        with self._lock:
            answer = self._script[min(self.answered, len(self._script) - 1)]
            self.answered += 1
            return answer


class ScriptedServer(_Running):
    """Replays `script` in order; the last answer repeats once the script runs out."""

    def __init__(self, script: list[Scripted]):
        self.server = _ScriptedServer(script)
        super().__init__(self.server)

    @property
    def url(self) -> str:
        return self.origin + "/v1/chat/completions"

    @property
    def requests_received(self) -> int:
        with self.server._lock:
            return self.server.answered
