"""The gateway's priority header becomes the request body's `priority`, inside the vLLM server.

This file is shipped as it is into vLLM containers whose model uses `scheduling_policy:
priority` (components/serving/runtimes.py puts it beside the logging config, on PYTHONPATH)
and loaded with vLLM's own flag, `--middleware deepseek_priority_middleware.PriorityHeaderMiddleware`:
vLLM imports the path and, for a class, calls `app.add_middleware(cls)` after its own
middleware, so this one runs first (vllm/entrypoints/openai/api_server.py `build_app`; the
flag's help: "If a class is provided, vLLM will add it to the server using
app.add_middleware()"). It therefore imports nothing but the standard library and nothing
from this project.

Why: vLLM's priority scheduler reads `priority` from the request body only (the OpenAI
request models' vLLM extension, vllm/entrypoints/openai/protocol.py: "lower means earlier
handling; default: 0"), and a client can write any body. The API gateway sets
X-DeepSeek-Priority per usage tier and overrides whatever a client sends in that header,
so the header is the authority and the body field is overwritten from it:
- header present, an integer in [PRIORITY_MIN, PRIORITY_MAX]: the body's `priority` is set
  to it, replacing any value the client sent;
- header absent (or empty): the body's `priority` is removed, so vLLM applies its default 0.
  Only callers that bypass the gateway send no header (the host's warm-up, probes, an
  operator's smoke test inside the VPC); a client of the API always gets its tier's value;
- header present but not such an integer: 400 in vLLM's error shape, because the gateway
  half is then misconfigured and no priority can be trusted.
Only POST requests to the routes whose request models carry `priority` are read; every
other request, and every body that is not a JSON object, passes through untouched (vLLM
answers malformed JSON with its own 400). Responses are never touched, so token streams
flow as before. Bodies are buffered up to API Gateway's 10 MB payload limit (vLLM reads
the whole body too before it validates it); a larger one is refused with 413. Bodies are
never logged: they hold prompts.
"""
from __future__ import annotations

import json
import logging

PRIORITY_HEADER = "X-DeepSeek-Priority"
# The inventory's bounds for gateway.tiers[].priority (components/config.py UsageTier);
# vLLM itself takes any integer.
PRIORITY_MIN = -100
PRIORITY_MAX = 100
# API Gateway's hard payload limit: nothing larger arrives through the gateway.
MAX_BODY_BYTES = 10 * 1024 * 1024
# vLLM 0.11.0's POST routes whose JSON request models have a `priority` field
# (vllm/entrypoints/openai/api_server.py routes, protocol.py models): chat, completions,
# responses, embeddings, pooling, classification, score, rerank, and SageMaker's
# /invocations, which dispatches to those by body shape.
PRIORITY_ROUTES = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/pooling",
    "/classify", "/score", "/v1/score", "/rerank", "/v1/rerank", "/v2/rerank", "/invocations",
})

_HEADER_KEY = PRIORITY_HEADER.lower().encode("latin-1")
_logger = logging.getLogger("deepseek.priority")


class _Refused(Exception):
    def __init__(self, status: int, phrase: str, message: str):
        super().__init__(message)
        self.status, self.phrase, self.message = status, phrase, message


class PriorityHeaderMiddleware:
    """Pure ASGI middleware (Starlette's `add_middleware` calls it with the app only)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope.get("method") != "POST"
                or scope.get("path", "").rstrip("/") not in PRIORITY_ROUTES):
            await self.app(scope, receive, send)
            return
        try:
            priority = header_priority(scope["headers"])
            body = await _read_body(scope["headers"], receive)
        except _Refused as refused:
            _logger.warning("refused %s %s: %s", scope["method"], scope["path"], refused.message)
            await _send_error(send, refused)
            return
        except _Disconnected:
            return
        rewritten = rewrite_body(body, priority)
        if rewritten is not None:
            body = rewritten
            scope = {**scope, "headers": _with_content_length(scope["headers"], len(body))}
        await self.app(scope, _replay(body, receive), send)


def header_priority(headers) -> int | None:
    """The priority the gateway set, None when it set none; _Refused when it is not valid."""
    values = [value for key, value in headers if key.lower() == _HEADER_KEY]
    values = [value.strip() for value in values if value.strip()]
    if not values:
        return None
    if len(values) > 1:
        raise _Refused(400, "Bad Request", f"{PRIORITY_HEADER} is set more than once")
    text = values[0].decode("latin-1")
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 4):
        raise _Refused(400, "Bad Request", f"{PRIORITY_HEADER} must be an integer")
    value = int(text)
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise _Refused(400, "Bad Request",
                       f"{PRIORITY_HEADER} must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    return value


def rewrite_body(body: bytes, priority: int | None) -> bytes | None:
    """The body with `priority` set from the header (or removed); None to forward it unchanged.

    Parsed and written with the json module, the parser vLLM's framework uses for request
    bodies, so the rewritten body means to vLLM what the original did apart from `priority`
    (a key repeated in the original collapses to its last value, as vLLM would read it).
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    if priority is None:
        if "priority" not in document:
            return None
        del document["priority"]
    else:
        document["priority"] = priority
    # ASCII escapes keep any string (lone surrogates included) exactly as it was parsed.
    return json.dumps(document, separators=(",", ":")).encode("ascii")


class _Disconnected(Exception):
    pass


async def _read_body(headers, receive) -> bytes:
    declared = _declared_length(headers)
    if declared is not None and declared > MAX_BODY_BYTES:
        raise _too_large()
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large() -> _Refused:
    return _Refused(413, "Request Entity Too Large",
                    f"the request body is larger than {MAX_BODY_BYTES} bytes")


def _declared_length(headers) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _with_content_length(headers, length: int) -> list:
    """The headers with one Content-Length for the new body (and no chunked framing left)."""
    kept = [(key, value) for key, value in headers
            if key.lower() not in (b"content-length", b"transfer-encoding")]
    return [*kept, (b"content-length", str(length).encode("ascii"))]


def _replay(body: bytes, receive):
    """The buffered body as one message, then the server's own messages (disconnects: vLLM
    watches them to abort a generation whose client went away)."""
    delivered = False

    async def replayed():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send_error(send, refused: _Refused) -> None:
    # vLLM's own ErrorResponse shape (protocol.py ErrorInfo: message, type, param, code).
    payload = json.dumps({"error": {"message": refused.message, "type": refused.phrase,
                                    "param": None, "code": refused.status}}).encode("ascii")
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode("ascii"))]})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
