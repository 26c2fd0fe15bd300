"""Send the workload: closed-loop streaming clients on asyncio and httpx, bounded and polite.

`concurrency` clients each send one streamed chat completion at a time until the request
budget is spent or the duration is up; then whatever is still in flight is cancelled, so
a run never outlasts `duration_s` (plus the moment it takes to cancel). Each HTTP
attempt is measured (send, first token, last token, usage) and kept.

Politeness follows tools/client_policy.py, the policy clients are given (docs/CLIENTS.md):
a 429/502/503/504 or a timeout is retried with the same body, waiting the server's
`Retry-After` when it sends one (a floor, never shortened) and exponential backoff with
full jitter otherwise; at most `RetryPolicy.max_attempts` attempts per request, and a
Retry-After longer than `max_retry_after_s` (a quota, not a throttle) ends the request.
Other statuses are never retried. Every attempt, retried or not, spends the budget and
appears in the report under its status.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import httpx

from tools.client_policy import RetryPolicy, parse_retry_after
from tools.loadtest.stats import Attempt
from tools.loadtest.workload import WorkloadShape, chat_body, draw

Clock = Callable[[], float]


@dataclass(frozen=True)
class Target:
    # The OpenAI base URL: <it>/chat/completions is the route.
    base_url: str
    model: str
    # Sent on every request (x-api-key, Authorization); never printed.
    headers: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Limits:
    requests: int = 100
    duration_s: float = 300.0
    concurrency: int = 8
    # A stream silent this long (before or between tokens) is a timeout.
    read_timeout_s: float = 120.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("requests", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.duration_s <= 0 or self.read_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("duration and timeouts must be positive")


@dataclass
class RunResult:
    attempts: list[Attempt]
    wall_s: float
    # "requests" (budget spent), "duration" (time up) or "quota" (a Retry-After beyond the policy).
    stopped_by: str
    # Clients interrupted when time ran out (their request in flight, if any, is not measured).
    interrupted_clients: int


class _Budget:
    def __init__(self, total: int):
        self.left = total

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _attempt(client: httpx.AsyncClient, target: Target, body: dict, clock: Clock) -> tuple[Attempt, Optional[str]]:
    """One streamed request; returns the measurement and the Retry-After header, if any."""
    started = clock()
    first = last = None
    chunks = prompt_tokens = completion_tokens = 0
    url = target.base_url.rstrip("/") + "/chat/completions"
    try:
        async with client.stream("POST", url, json=body, headers=target.headers) as response:
            if response.status_code != 200:
                raw = await response.aread()
                return (Attempt(response.status_code, started, clock(), error=_error_code(raw)),
                        response.headers.get("retry-after"))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # SSE comments (keep-alives) and blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    return Attempt(200, started, clock(), first, last, error="bad-event"), None
                if "error" in event:
                    # A runtime that fails mid-stream still answered 200.
                    return Attempt(200, started, clock(), first, last, error="stream-error"), None
                usage = event.get("usage") or {}
                prompt_tokens = usage.get("prompt_tokens", prompt_tokens) or prompt_tokens
                completion_tokens = usage.get("completion_tokens", completion_tokens) or completion_tokens
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content"):
                        now = clock()
                        first = now if first is None else first
                        last = now
                        chunks += 1
    except httpx.TimeoutException:
        return Attempt(0, started, clock(), first, last, error="timeout"), None
    except httpx.TransportError as error:
        return Attempt(0, started, clock(), first, last, error=type(error).__name__), None
    if first is None:
        return Attempt(200, started, clock(), error="no-tokens"), None
    # The server's count when it sends usage; one token per content chunk otherwise.
    output = completion_tokens or chunks
    return Attempt(200, started, clock(), first, last, prompt_tokens=prompt_tokens, output_tokens=output), None


def _error_code(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return ""
    if isinstance(error, dict) and isinstance(error.get("code"), (str, int)):
        return str(error["code"])
    return ""


def _retryable(attempt: Attempt, policy: RetryPolicy) -> bool:
    if attempt.status == 0:
        return attempt.error == "timeout" or attempt.error.endswith("Error")
    return attempt.status in policy.retryable_statuses and attempt.error != "QUOTA_EXCEEDED"


async def run(target: Target, shape: WorkloadShape, limits: Limits, *, seed: int = 0,
              policy: RetryPolicy = RetryPolicy(), clock: Clock = time.monotonic,
              transport: Optional[httpx.AsyncBaseTransport] = None) -> RunResult:
    rng = random.Random(seed)
    budget = _Budget(limits.requests)
    attempts: list[Attempt] = []
    stop = {"by": "requests"}
    timeout = httpx.Timeout(connect=limits.connect_timeout_s, read=limits.read_timeout_s,
                            write=30.0, pool=limits.connect_timeout_s)
    http_limits = httpx.Limits(max_connections=limits.concurrency, max_keepalive_connections=limits.concurrency)

    async def client_loop(client: httpx.AsyncClient, worker: int) -> None:
        local = random.Random(f"{seed}-{worker}")
        while True:
            if not budget.take():
                return
            body = chat_body(target.model, draw(shape, rng), local)
            for number in range(1, policy.max_attempts + 1):
                attempt, retry_after = await _attempt(client, target, body, clock)
                attempts.append(attempt)
                if attempt.ok or not _retryable(attempt, policy) or number == policy.max_attempts:
                    break
                wait = parse_retry_after(retry_after)
                if wait is not None and wait > policy.max_retry_after_s:
                    stop["by"] = "quota"
                    raise _Quota()
                backoff = local.uniform(0, min(policy.max_delay_s, policy.base_delay_s * 2 ** (number - 1)))
                await asyncio.sleep(max(wait or 0.0, backoff))
                if not budget.take():
                    return

    started = clock()
    async with httpx.AsyncClient(timeout=timeout, limits=http_limits, transport=transport,
                                 follow_redirects=False) as client:
        tasks = [asyncio.create_task(client_loop(client, n)) for n in range(limits.concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=limits.duration_s,
                                           return_when=asyncio.FIRST_EXCEPTION)
        if pending and stop["by"] != "quota":
            stop["by"] = "duration"
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, _Quota):
                raise error
    return RunResult(attempts=attempts, wall_s=clock() - started, stopped_by=stop["by"],
                     interrupted_clients=len(pending))


class _Quota(Exception):
    """A Retry-After beyond the policy: the limit will not clear during this run."""
