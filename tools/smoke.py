"""Post-deploy smoke test: does the live endpoint keep the gateway's promises?

    python -m tools.smoke --stack dev                      # reads `pulumi stack output`
    python -m tools.smoke --stack dev --outputs out.json   # reads a saved output file
    python -m tools.smoke --outputs out.json --aws-endpoint-url http://127.0.0.1:5000

It reads the stack outputs, fetches the smoke client's API key with boto3 (API Gateway
key id preferred, Secrets Manager secret otherwise), and checks the endpoint the way a
client meets it: refused without a key or with a wrong one (JSON errors in the OpenAI
shape), every served model listed, a chat completion with usage, a stream of SSE
chunks (time to first token reported), a short completion from every served model
through its own base URL (Ollama's OpenAI-compatible /v1 included), the worst-case
request (the longest prompt the model accepts with its maximum output, streamed: it must
finish or be refused with 400/413 and a JSON error, never time out or be cut off), an
oversized body refused with 413, and a burst over the tier's limit answered with 429 and
Retry-After.

Requests follow tools/client_policy.py (the policy docs/CLIENTS.md gives clients),
except the oversized and burst checks: they expect a refusal, and a retry would hide
or muddy the answer being checked.

Stack outputs read (names are the contract with __main__.py):
    api_endpoint              base URL including the stage; the OpenAI surface is <it>/v1
    served_models             list of served model names
    region                    region of the API key (or secret)
    smoke_tier_limits         {"rate": r/s, "burst": n} of the smoke key's usage plan
    max_request_bytes         body size limit the gateway enforces
    smoke_api_key_id          API Gateway key id (preferred), or
    smoke_api_key_secret_arn  Secrets Manager secret holding the key (text or {"api_key": ...})
    model_endpoints           optional {model: OpenAI base URL} for per-model routing
    model_limits              {model: {max_context, max_input_tokens, max_output_tokens}}

Exit status: 0 every check passed; 1 a check failed; 2 the test could not run (outputs
missing or malformed, no API key).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import requests

from tools.cli_names import option
from tools.client_policy import (
    BUFFERED_TIMEOUTS,
    DEFAULT_RETRY_POLICY,
    STREAMING_TIMEOUTS,
    RetryPolicy,
    StreamTimeout,
    Timeouts,
    is_event_stream,
    is_timeout,
    open_event_stream,
    parse_retry_after,
    send,
)
from tools.smoke_key import MASK, Redactor, fetch_api_key
from tools.smoke_target import (
    CannotRun,
    SmokeTarget,
    read_stack_outputs,
    target_from_outputs,
)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CANNOT_RUN = 2

API_KEY_HEADER = "x-api-key"
USER_AGENT = "deepseek-serving-smoke/1"
# Plain http is accepted only where no key can leak on the way: tests on this machine.
ERROR_FIELDS = ("message", "type", "code", "request_id")


SMOKE_PROMPT = "Reply with the single word: ok"
CHAT_MAX_TOKENS = 8
STREAM_MAX_TOKENS = 16
OVERSIZE_MARGIN_BYTES = 1024
# The smoke stream is short: a minute is generous, 15 minutes (the client default) is not.
SMOKE_STREAM_TIMEOUTS = dataclasses.replace(STREAMING_TIMEOUTS, total_s=60.0)
# Throttling answers come from the gateway without touching a model: they are quick.
BURST_TIMEOUTS = Timeouts(connect_s=5.0, first_byte_s=10.0, total_s=10.0)
BURST_WINDOW_S = 10.0
MAX_BURST_WORKERS = 64
# Pacing keyed requests at the tier rate, but never slower than this per request.
MAX_PACING_INTERVAL_S = 2.0
SNIPPET_CHARS = 160
# The worst case: the prompt is " ok" repeated (about one token each in DeepSeek's
# tokenizers), leaving this many tokens for the chat template and tokenizer differences.
WORST_CASE_MARGIN_TOKENS = 256
WORST_CASE_INSTRUCTION = "Count upward from one, one number per line, and never stop:"
# A long prefill may take a while before the first token; the gateway ends every stream at
# 15 minutes, so a total just past that catches a stream nobody ends.
WORST_CASE_TIMEOUTS = Timeouts(connect_s=5.0, first_byte_s=120.0, total_s=930.0)
WORST_CASE_REFUSALS = (400, 413)


@dataclass(frozen=True)
class CheckResult:
    name: str
    expected: str
    got: str
    ok: bool
    detail: str


# --------------------------------------------------------------------------- checks


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 3] + "..."


def _decode_json(response: requests.Response) -> Any:
    try:
        return json.loads(response.content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(
            f"body is not JSON (Content-Type {response.headers.get('Content-Type') or 'missing'}): "
            f"{_snippet(response.text)!r}"
        ) from None


def inspect_error_body(response: requests.Response) -> tuple[bool, str]:
    """Whether the body is an OpenAI-shaped error, and a short description of it."""
    try:
        body = _decode_json(response)
    except ValueError as error:
        return False, str(error)
    error_object = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error_object, dict):
        return False, f"JSON without an 'error' object: {_snippet(response.text)!r}"
    missing = [name for name in ERROR_FIELDS if not isinstance(error_object.get(name), str) or not error_object[name]]
    if missing:
        return False, f"error object lacks {', '.join(missing)}: {_snippet(response.text)!r}"
    return True, (
        f"{error_object['code']}: {error_object['message']} (request {error_object['request_id']})"
    )


def refusal_body(response: requests.Response) -> tuple[bool, str]:
    """A refusal the runtime wrote itself passes the gateway unchanged (HTTP_PROXY): vLLM's
    {"object": "error", "message": ...}, TGI's {"error": ..., "error_type": ...}. Either, or
    the gateway's OpenAI shape, is a documented refusal; anything else is not."""
    shaped, description = inspect_error_body(response)
    if shaped:
        return True, description
    try:
        body = _decode_json(response)
    except ValueError as error:
        return False, str(error)
    if isinstance(body, dict):
        for field_name in ("message", "error"):
            if isinstance(body.get(field_name), str) and body[field_name]:
                return True, _snippet(body[field_name])
    return False, description


def describe_exception(error: BaseException) -> str:
    if isinstance(error, StreamTimeout):
        return str(error)
    if is_timeout(error):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, requests.ConnectionError):
        reason = getattr(error.args[0], "reason", None) if error.args else None
        return _snippet(f"connection failed: {reason or error}")
    return _snippet(f"{type(error).__name__}: {error}")


def _attempts_note(attempts: int) -> str:
    return f" after {attempts} attempts" if attempts > 1 else ""


def _status_summary(statuses: Counter) -> str:
    return ", ".join(f"{status}x{count}" for status, count in sorted(statuses.items())) or "none"


class Pacer:
    """Keeps keyed requests at the tier's steady rate.

    The functional checks should measure the service, not trip over the smoke key's
    own usage plan; only the burst check is meant to exceed it.
    """

    def __init__(self, rate_per_s: float, sleep: Callable[[float], None], clock: Callable[[], float]):
        self._interval = min(1.0 / rate_per_s, MAX_PACING_INTERVAL_S)
        self._sleep = sleep
        self._clock = clock
        self._next_at: Optional[float] = None

    def wait(self) -> None:
        now = self._clock()
        if self._next_at is not None and now < self._next_at:
            self._sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval


def oversized_chat_body(model: str, size_bytes: int) -> bytes:
    """A valid chat request of exactly size_bytes, so only its size can be objected to.

    max_tokens is 1: if the gateway wrongly accepts it, the model does as little as it can.
    """
    payload = {"model": model, "messages": [{"role": "user", "content": ""}], "max_tokens": 1}
    empty = json.dumps(payload).encode("utf-8")
    payload["messages"][0]["content"] = "x" * max(0, size_bytes - len(empty))
    return json.dumps(payload).encode("utf-8")


class SmokeRun:
    def __init__(
        self,
        target: SmokeTarget,
        api_key: str,
        model: str,
        *,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        authorization: Optional[str] = None,
    ):
        self.target = target
        self.model = model
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self._keyed = {API_KEY_HEADER: api_key}
        # Stacks with a Cognito or Lambda authorizer want a token as well as the key; the
        # refusal checks still send none, so they prove the key alone is not enough.
        if authorization:
            self._keyed["Authorization"] = authorization
        # Random per run, and never equal to the real key.
        self._wrong_key = f"smoke-wrong-key-{secrets.token_hex(12)}"
        self.pacer = Pacer(target.tier_rate, sleep, clock)
        self.worst_case_timeouts = WORST_CASE_TIMEOUTS

    def url(self, route: str, model: Optional[str] = None) -> str:
        """An OpenAI route ("/models", "/chat/completions") of a model (default: the one under test)."""
        return f"{self.target.model_base_urls[model or self.model]}{route}"

    def checks(self) -> list[tuple[str, str, Callable[[], tuple[str, bool, str]]]]:
        burst_budget = self.target.tier_burst * 2 + 10
        return [
            ("no_key", "401/403, JSON error", self.check_no_key),
            ("wrong_key", "403, JSON error", self.check_wrong_key),
            ("list_models", f"200 listing all {len(self.target.served_models)} model(s)", self.check_list_models),
            ("chat_completion", "200 with usage", self.check_chat_completion),
            ("stream_completion", "200 SSE chunks, [DONE]", self.check_stream_completion),
            ("every_model", f"200 from all {len(self.target.served_models)} model(s)", self.check_every_model),
            ("worst_case", "finishes, or 400/413 JSON error", self.check_worst_case),
            ("oversized_body", "413, JSON error", self.check_oversized_body),
            ("burst_throttle", f"429 + Retry-After in <= {burst_budget} requests", self.check_burst_throttle),
        ]

    def run(self) -> list[CheckResult]:
        results = []
        try:
            for name, expected, check in self.checks():
                try:
                    got, ok, detail = check()
                except Exception as error:  # one broken check must not hide the others
                    got, ok, detail = "error", False, describe_exception(error)
                results.append(CheckResult(name, expected, got, ok, detail))
        finally:
            self.session.close()
        return results

    # 1 and 2 ---------------------------------------------------------------

    def _expect_refusal(self, response: requests.Response, accepted: Sequence[int]) -> tuple[str, bool, str]:
        status = response.status_code
        wanted = "/".join(str(code) for code in accepted)
        if status < 400:
            return f"{status} (accepted)", False, f"expected {wanted}, but the request was accepted"
        json_error, description = inspect_error_body(response)
        got = f"{status}, {'JSON error' if json_error else 'not a JSON error'}"
        if status not in accepted:
            return got, False, f"expected {wanted}, got {status}: {description}"
        return got, json_error, description

    def check_no_key(self) -> tuple[str, bool, str]:
        sent = send(self.session, "GET", self.url("/models"), policy=self.policy, sleep=self.sleep)
        return self._expect_refusal(sent.response, (401, 403))

    def check_wrong_key(self) -> tuple[str, bool, str]:
        sent = send(
            self.session,
            "GET",
            self.url("/models"),
            headers={API_KEY_HEADER: self._wrong_key},
            policy=self.policy,
            sleep=self.sleep,
        )
        return self._expect_refusal(sent.response, (403,))

    # 3 ----------------------------------------------------------------------

    def check_list_models(self) -> tuple[str, bool, str]:
        """Every served model is listed by the base URL that routes to it.

        With one shared surface that is one request listing all of them; with a base URL
        per model, each lists its own.
        """
        expected_at: dict[str, list[str]] = {}
        for model in self.target.served_models:
            expected_at.setdefault(self.target.model_base_urls[model], []).append(model)
        listed_everywhere: list[str] = []
        missing: list[str] = []
        for base_url, expected in expected_at.items():
            self.pacer.wait()
            sent = send(
                self.session, "GET", f"{base_url}/models", headers=self._keyed, policy=self.policy, sleep=self.sleep
            )
            response = sent.response
            where = "" if len(expected_at) == 1 else f" at {base_url}"
            if response.status_code != 200:
                return str(response.status_code), False, f"{inspect_error_body(response)[1]}{where}"
            try:
                body = _decode_json(response)
            except ValueError as error:
                return "200, not JSON", False, f"{error}{where}"
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                return "200, no model list", False, f"no 'data' list{where}: {_snippet(response.text)!r}"
            listed = [e.get("id") for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]
            listed_everywhere.extend(listed)
            missing.extend(f"{model}{where}" for model in expected if model not in listed)
        got = f"200, {len(set(listed_everywhere))} model(s)"
        if missing:
            return got, False, f"missing {', '.join(missing)}; listed {', '.join(listed_everywhere) or 'none'}"
        return got, True, f"listed {', '.join(listed_everywhere)}"

    # 4 ----------------------------------------------------------------------

    def check_chat_completion(self) -> tuple[str, bool, str]:
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": SMOKE_PROMPT}],
            "max_tokens": CHAT_MAX_TOKENS,
            "temperature": 0,
        }
        self.pacer.wait()
        started = self.clock()
        sent = send(
            self.session,
            "POST",
            self.url("/chat/completions"),
            json=payload,
            headers=self._keyed,
            policy=self.policy,
            sleep=self.sleep,
        )
        elapsed = self.clock() - started
        response = sent.response
        if response.status_code != 200:
            return str(response.status_code), False, inspect_error_body(response)[1]
        try:
            body = _decode_json(response)
        except ValueError as error:
            return "200, not JSON", False, str(error)
        body = body if isinstance(body, dict) else {}
        problems = []
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append("no choices")
        usage = body.get("usage")
        usage_ok = isinstance(usage, dict) and all(
            isinstance(usage.get(name), int) and not isinstance(usage.get(name), bool) and usage[name] >= 0
            for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        )
        if not usage_ok:
            problems.append(f"usage missing or incomplete: {json.dumps(usage) if usage is not None else 'absent'}")
        got = "200 with usage" if usage_ok else "200 without usage"
        if problems:
            return got, False, "; ".join(problems)
        return got, True, (
            f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens "
            f"in {elapsed:.2f} s{_attempts_note(sent.attempts)}"
        )

    # 5 ----------------------------------------------------------------------

    def check_stream_completion(self) -> tuple[str, bool, str]:
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": SMOKE_PROMPT}],
            "max_tokens": STREAM_MAX_TOKENS,
            "temperature": 0,
            "stream": True,
        }
        self.pacer.wait()
        stream = open_event_stream(
            self.session,
            self.url("/chat/completions"),
            json=payload,
            headers=self._keyed,
            policy=self.policy,
            timeouts=SMOKE_STREAM_TIMEOUTS,
            sleep=self.sleep,
            clock=self.clock,
        )
        try:
            response = stream.response
            if response.status_code != 200:
                return str(response.status_code), False, inspect_error_body(response)[1]
            if not is_event_stream(response):
                content_type = response.headers.get("Content-Type") or "missing"
                return (
                    "200, not SSE",
                    False,
                    f"Content-Type {content_type}, expected text/event-stream: {_snippet(response.text)!r}",
                )
            chunks = 0
            done = False
            first_token_at: Optional[float] = None
            for data in stream.events():
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    return f"200 SSE, {chunks} chunks", False, f"chunk is not JSON: {_snippet(data)!r}"
                if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
                    return f"200 SSE, {chunks} chunks", False, f"chunk without choices: {_snippet(data)!r}"
                chunks += 1
                if first_token_at is None and _carries_token(chunk):
                    first_token_at = self.clock()
            finished_at = self.clock()
        finally:
            stream.close()
        got = f"200 SSE, {chunks} chunks{', [DONE]' if done else ''}"
        if chunks == 0:
            return got, False, "the stream carried no completion chunks"
        if not done:
            return got, False, "the stream ended without data: [DONE] (cut off?)"
        # Time to first token is what users feel; fall back to the first event when the
        # few tokens asked for carried no text (a reasoning model may spend them thinking).
        first_at = first_token_at if first_token_at is not None else stream.first_event_at
        return got, True, (
            f"time to first token {first_at - stream.started_at:.2f} s, "
            f"total {finished_at - stream.started_at:.2f} s{_attempts_note(stream.attempts)}"
        )

    # every model and the worst case ------------------------------------------

    def check_every_model(self) -> tuple[str, bool, str]:
        """A short completion from each served model, through the base URL that routes to it."""
        answered, problems = [], []
        for model in self.target.served_models:
            payload = {"model": model, "messages": [{"role": "user", "content": SMOKE_PROMPT}],
                       "max_tokens": CHAT_MAX_TOKENS, "temperature": 0}
            self.pacer.wait()
            try:
                sent = send(self.session, "POST", self.url("/chat/completions", model), json=payload,
                            headers=self._keyed, policy=self.policy, sleep=self.sleep)
            except Exception as error:
                problems.append(f"{model}: {describe_exception(error)}")
                continue
            response = sent.response
            if response.status_code != 200:
                problems.append(f"{model}: {response.status_code} {inspect_error_body(response)[1]}")
                continue
            try:
                body = _decode_json(response)
            except ValueError as error:
                problems.append(f"{model}: {error}")
                continue
            if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
                problems.append(f"{model}: 200 without choices: {_snippet(response.text)!r}")
                continue
            answered.append(model)
        got = f"200 from {len(answered)} of {len(self.target.served_models)}"
        if problems:
            return got, False, "; ".join(problems)
        return got, True, f"answered: {', '.join(answered)}"

    def worst_case_payload(self, limits: dict[str, int]) -> dict:
        """The longest prompt the model accepts with room for its full output, within the body limit."""
        output = limits["max_output_tokens"]
        prompt_tokens = min(limits["max_input_tokens"], limits["max_context"] - output) - WORST_CASE_MARGIN_TOKENS
        payload = {"model": self.model, "messages": [{"role": "user", "content": WORST_CASE_INSTRUCTION}],
                   "max_tokens": output, "temperature": 0, "stream": True}
        envelope = len(json.dumps(payload).encode())
        # The body stays under the gateway's limit: this request tests the model, not the 413.
        words = max(1, min(prompt_tokens, (self.target.max_request_bytes - envelope - OVERSIZE_MARGIN_BYTES) // 3))
        payload["messages"][0]["content"] = WORST_CASE_INSTRUCTION + " ok" * words
        return payload

    def check_worst_case(self) -> tuple[str, bool, str]:
        """The guide's "test with some worst-case prompt": it finishes, or is refused with a
        documented status; a timeout or a stream cut off without [DONE] fails."""
        limits = self.target.model_limits.get(self.model)
        if not limits:
            return "no limits", False, (f"the stack outputs have no model_limits for {self.model}: "
                                        "the worst case cannot be built (deploy this version)")
        payload = self.worst_case_payload(limits)
        self.pacer.wait()
        asked = (f"prompt of about {payload['messages'][0]['content'].count(' ok')} tokens, "
                 f"max_tokens {payload['max_tokens']}")
        stream = None
        try:
            # Sent once: a retry would hide what the first attempt did.
            stream = open_event_stream(
                self.session, self.url("/chat/completions"), json=payload, headers=self._keyed,
                policy=dataclasses.replace(self.policy, max_attempts=1), timeouts=self.worst_case_timeouts,
                sleep=self.sleep, clock=self.clock)
            response = stream.response
            if response.status_code in WORST_CASE_REFUSALS:
                json_error, description = refusal_body(response)
                got = f"{response.status_code}, {'JSON error' if json_error else 'not a JSON error'}"
                return got, json_error, f"refused ({asked}): {description}"
            if response.status_code != 200:
                return str(response.status_code), False, f"{asked}: {inspect_error_body(response)[1]}"
            if not is_event_stream(response):
                content_type = response.headers.get("Content-Type") or "missing"
                return "200, not SSE", False, f"{asked}: Content-Type {content_type}, expected text/event-stream"
            chunks, done = 0, False
            for data in stream.events():
                if data == "[DONE]":
                    done = True
                    break
                chunks += 1
            elapsed = self.clock() - stream.started_at
        except Exception as error:
            if isinstance(error, StreamTimeout) or is_timeout(error):
                return "timed out", False, (f"{asked}: {describe_exception(error)}; "
                                            "the request neither finished nor was refused")
            raise
        finally:
            if stream is not None:
                stream.close()
        if not done:
            return f"200 SSE, cut after {chunks} chunks", False, (
                f"{asked}: the stream ended after {elapsed:.0f} s without [DONE]; the gateway's integration "
                "timeout cannot cover this output: lower workload.output_tokens.max or raise "
                "gateway.integration_timeout_ms")
        return f"200 SSE, {chunks} chunks, [DONE]", True, f"{asked}: finished in {elapsed:.1f} s"

    # 6 ----------------------------------------------------------------------

    def check_oversized_body(self) -> tuple[str, bool, str]:
        size = self.target.max_request_bytes + OVERSIZE_MARGIN_BYTES
        body = oversized_chat_body(self.model, size)
        self.pacer.wait()
        # Sent once: the answer to this request is what is being checked.
        response = self.session.post(
            self.url("/chat/completions"),
            data=body,
            headers={**self._keyed, "Content-Type": "application/json"},
            timeout=BUFFERED_TIMEOUTS.for_requests(),
        )
        got, ok, description = self._expect_refusal(response, (413,))
        return got, ok, f"sent {len(body)} bytes (limit {self.target.max_request_bytes}); {description}"

    # 7 ----------------------------------------------------------------------

    def check_burst_throttle(self) -> tuple[str, bool, str]:
        """Exceed the tier's burst with concurrent requests until the first 429.

        Concurrent, because sequential requests are spaced by a round trip each and may
        never outrun the token bucket's refill. Bounded in count and time, and stopped at
        the first 429, because every request counts against the smoke key's quota.
        """
        budget = self.target.tier_burst * 2 + 10
        workers = max(2, min(self.target.tier_burst * 2, MAX_BURST_WORKERS))
        url = self.url("/models")
        started = self.clock()
        deadline = started + BURST_WINDOW_S
        lock = threading.Lock()
        stop = threading.Event()
        statuses: Counter = Counter()
        failures: list[str] = []
        issued = 0
        first_throttle: Optional[tuple[int, requests.Response]] = None

        def fire() -> None:
            nonlocal issued, first_throttle
            with requests.Session() as session:
                session.headers["User-Agent"] = USER_AGENT
                while not stop.is_set():
                    with lock:
                        if issued >= budget or self.clock() >= deadline:
                            return
                        issued += 1
                        number = issued
                    try:
                        response = session.get(url, headers=self._keyed, timeout=BURST_TIMEOUTS.for_requests())
                    except Exception as error:
                        with lock:
                            failures.append(describe_exception(error))
                        continue
                    with lock:
                        statuses[response.status_code] += 1
                        if response.status_code == 429 and first_throttle is None:
                            first_throttle = (number, response)
                    if response.status_code == 429:
                        stop.set()

        threads = [threading.Thread(target=fire, name=f"smoke-burst-{i}", daemon=True) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BURST_WINDOW_S + BURST_TIMEOUTS.connect_s + BURST_TIMEOUTS.first_byte_s)
        # A straggler still waiting on the network must not change what is judged below.
        stop.set()
        with lock:
            judged_statuses = Counter(statuses)
            judged_failures = list(failures)
            judged_throttle = first_throttle
            judged_issued = issued
        elapsed = self.clock() - started

        summary = f"statuses {_status_summary(judged_statuses)} in {elapsed:.1f} s"
        if judged_failures:
            summary += f"; {len(judged_failures)} failed: {judged_failures[0]}"
        if judged_throttle is None and not judged_statuses:
            return "no answers", False, summary
        if judged_throttle is None:
            return (
                f"no 429 in {judged_issued} requests",
                False,
                f"{summary}; tier burst is {self.target.tier_burst}: the usage plan throttle is not enforced",
            )
        number, response = judged_throttle
        retry_after_header = response.headers.get("Retry-After")
        retry_after = parse_retry_after(retry_after_header)
        json_error, description = inspect_error_body(response)
        problems = []
        if retry_after is None:
            problems.append(
                "no Retry-After header" if retry_after_header is None else f"unusable Retry-After {retry_after_header!r}"
            )
        if not json_error:
            problems.append(description)
        got = f"429 on request {number}" + ("" if retry_after is not None else ", no Retry-After")
        if problems:
            return got, False, f"{'; '.join(problems)}; {summary}"
        return got, True, f"Retry-After {retry_after_header}; {description}; {summary}"


def _carries_token(chunk: dict) -> bool:
    for choice in chunk.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if delta.get("content") or delta.get("reasoning_content") or choice.get("text"):
            return True
    return False


# --------------------------------------------------------------------------- report

COLUMNS = ("check", "expected", "got", "ok", "detail")


def render_table(results: Sequence[CheckResult]) -> str:
    rows = [(r.name, r.expected, r.got, "yes" if r.ok else "NO", r.detail) for r in results]
    widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(len(COLUMNS) - 1)]

    def line(cells: Sequence[str]) -> str:
        fixed = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths))
        return f"{fixed}  {cells[-1]}".rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths] + ["-" * len(COLUMNS[-1])]), *map(line, rows)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke",
        description="Check a deployed stack's endpoint the way a client meets it.",
        epilog="Exit status: 0 all checks passed, 1 a check failed, 2 the test could not run.",
    )
    parser.add_argument("--stack", help="stack to read outputs from (pulumi stack output --stack NAME)")
    parser.add_argument("--outputs", metavar="FILE", help="read outputs from this JSON file instead of pulumi")
    parser.add_argument("--region", help="AWS region for the API key lookup (default: the stack's 'region' output)")
    parser.add_argument(
        "--aws-endpoint-url", metavar="URL", help="AWS API endpoint override (an emulator, or a VPC endpoint)"
    )
    parser.add_argument("--model", help="served model to run the completions on (default: the first one)")
    parser.add_argument(
        "--authorization-env", metavar="VAR",
        help="for stacks with an authorizer: send the value of environment variable VAR "
             "(e.g. 'Bearer <Cognito access token with the stack's scope>') as the Authorization header; never printed",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.stack and not args.outputs:
        parser.error(f"give {option('--stack', 'NAME')} (and optionally {option('--outputs', 'FILE')})")

    redact = Redactor()
    try:
        outputs, source = read_stack_outputs(args.stack, args.outputs)
        target = target_from_outputs(outputs, source)
        model = args.model or target.served_models[0]
        if model not in target.served_models:
            raise CannotRun(
                f"--model {model} is not served by {source}; choose one of {', '.join(target.served_models)}"
            )
        api_key = fetch_api_key(target, region=args.region or target.region, aws_endpoint_url=args.aws_endpoint_url)
    except CannotRun as error:
        print(f"smoke: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    redact.add(api_key.value)
    authorization = None
    if args.authorization_env:
        authorization = os.environ.get(args.authorization_env)
        if not authorization:
            print(f"smoke: {option('--authorization-env', args.authorization_env)}: that environment variable "
                  "is empty or unset", file=sys.stderr)
            return EXIT_CANNOT_RUN
        redact.add(authorization)
        redact.add(authorization.split()[-1])

    def say(text: str = "") -> None:
        print(redact(text), flush=True)

    title = f"stack {args.stack}" if args.stack else source
    say(f"smoke test of {title}" + (f" (outputs from {args.outputs})" if args.stack and args.outputs else ""))
    say(f"  endpoint  {target.api_endpoint}")
    if set(target.model_base_urls.values()) != {f"{target.api_endpoint}/v1"}:
        for served, base_url in target.model_base_urls.items():
            say(f"  base URL  {served}: {base_url}")
    say(f"  models    {', '.join(target.served_models)} (completions on {model})")
    say(f"  tier      rate {target.tier_rate:g}/s, burst {target.tier_burst}")
    say(f"  api key   from {api_key.source} (value {MASK})")
    say()
    results = SmokeRun(target, api_key.value, model, authorization=authorization).run()
    say(render_table(results))
    say()
    failed = [result.name for result in results if not result.ok]
    if failed:
        say(f"smoke: FAILED {len(failed)} of {len(results)} checks: {', '.join(failed)}")
        return EXIT_CHECK_FAILED
    say(f"smoke: all {len(results)} checks passed")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
