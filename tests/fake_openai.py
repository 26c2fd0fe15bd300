"""A local OpenAI-compatible streaming server for the load test's tests (127.0.0.1, ephemeral port).

It streams `max_tokens` one-token chunks (SSE, chunked) after a configurable first-token
delay, with usage in a final chunk when `stream_options.include_usage` asks for it, as
vLLM does. The first `throttle_first` requests are answered 429 with a Retry-After, as the
gateway's usage plan does; `fail_every` answers every n-th request 503 without one.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Optional

from tests.smoke_servers import _Handler, _QuietServer, _Running


@dataclass
class FakeBehaviour:
    first_token_delay_s: float = 0.0
    token_interval_s: float = 0.0
    throttle_first: int = 0
    retry_after: Optional[str] = "1"
    # Every n-th request (1-based) is answered 503; 0: never.
    fail_every: int = 0
    # Pretends a prompt word is one token, as the load test's prompts intend.
    count_prompt_words: bool = True


class _OpenAIHandler(_Handler):
    server: "_OpenAIServer"

    def do_POST(self):  # noqa: N802 - http.server naming
        raw = self._read_body()
        behaviour = self.server.behaviour
        number = self.server.arrive(self.headers.get("x-api-key"))
        if not self.path.endswith("/v1/chat/completions"):
            return self._send(404, b'{"error": {"message": "not found", "code": "404"}}', "application/json")
        if number <= behaviour.throttle_first:
            extra = {"Retry-After": behaviour.retry_after} if behaviour.retry_after is not None else {}
            return self._send(429, b'{"error": {"message": "Too many requests", "code": "THROTTLED"}}',
                              "application/json", extra)
        if behaviour.fail_every and number % behaviour.fail_every == 0:
            return self._send(503, b'{"error": {"message": "overloaded", "code": "503"}}', "application/json")
        request = json.loads(raw)
        prompt = request["messages"][-1]["content"]
        prompt_tokens = len(prompt.split()) if behaviour.count_prompt_words else 1
        tokens = int(request.get("max_tokens") or 16)
        self.server.record(prompt_tokens, tokens)
        self._start_chunked(200, "text/event-stream; charset=utf-8")
        self._write_chunk(b": queued\n\n")
        time.sleep(behaviour.first_token_delay_s)
        for index in range(tokens):
            if index:
                time.sleep(behaviour.token_interval_s)
            chunk = {"object": "chat.completion.chunk", "model": request["model"],
                     "choices": [{"index": 0, "delta": {"content": f"t{index} "}, "finish_reason": None}]}
            self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        if (request.get("stream_options") or {}).get("include_usage"):
            usage = {"object": "chat.completion.chunk", "choices": [],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                               "total_tokens": prompt_tokens + tokens}}
            self._write_chunk(f"data: {json.dumps(usage)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self._end_chunked()


class _OpenAIServer(_QuietServer):
    def __init__(self, behaviour: FakeBehaviour):
        super().__init__(("127.0.0.1", 0), _OpenAIHandler)
        self.behaviour = behaviour
        self._lock = threading.Lock()
        self.arrivals: list[tuple[float, Optional[str]]] = []
        self.generations: list[tuple[int, int]] = []

    def arrive(self, api_key: Optional[str]) -> int:
        with self._lock:
            self.arrivals.append((time.monotonic(), api_key))
            return len(self.arrivals)

    def record(self, prompt_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self.generations.append((prompt_tokens, output_tokens))


class FakeOpenAI(_Running):
    def __init__(self, behaviour: FakeBehaviour):
        self.server = _OpenAIServer(behaviour)
        super().__init__(self.server)

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"
