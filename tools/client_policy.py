"""The one retry and timeout policy for clients of the DeepSeek endpoint.

docs/CLIENTS.md tells API consumers the same rules in prose; the smoke test uses this
module so that what we check after a deploy is what we ask clients to do.

Why these rules (the guide's "Retries" and "Timeouts" sections, and the gateway facts
in docs/GATEWAY.md and AWS's response streaming and throttling documentation):
- Only 429, 502, 503 and 504 and timeouts are transient. 429 is the usage plan saying
  "later"; 502/503/504 are the gateway or the model server saying it could not take
  the request (no healthy target, overloaded queue, integration timeout). A 400 needs
  a fixed request, 401/403 a fixed key, 413 a smaller prompt, and a 500 after the model
  started working is not known to be safe to repeat: retrying those only adds load.
- Backoff is exponential with full jitter and a cap, and the number of attempts is
  bounded, so that clients throttled together do not come back together (the retry
  storm the guide warns about).
- Retry-After is a floor, not a suggestion: the gateway's THROTTLED response carries
  one. A Retry-After longer than we are willing to wait, or a QUOTA_EXCEEDED error,
  means the limit will not clear soon: stop and surface it instead of sleeping.
- A stream is retried only until its first event arrives. After that the model has
  done work and the caller has seen output: repeating would duplicate both.

Timeouts: the API gateway cuts buffered integrations at 29 s, so a buffered client waits
a little longer than that and sees the gateway's JSON 504 rather than its own timeout.
Streams get a short wait for the first event (a healthy server starts streaming quickly;
a long wait means overload) and a total deadline no longer than the gateway's 15 minute
stream limit, past which waiting is pointless.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import requests
from urllib3.exceptions import ReadTimeoutError

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None.

    None means "no usable header", which callers must not confuse with "retry now".
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        # A date in the past means "you may retry now", which is still a usable answer.
        return max(0.0, seconds)
    if seconds != seconds or seconds < 0:  # NaN or negative: not a valid header
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    # Attempts in total, the first one included: the guide's "no more than 2 retries".
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    # A Retry-After beyond this is a limit that will not clear while a user waits.
    max_retry_after_s: float = 30.0
    retryable_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(n-1))] for the n-th retry."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (retry_number - 1)))
        return rng.uniform(0.0, ceiling)

    def delay_before_retry(
        self, retry_number: int, retry_after: Optional[float], rng: random.Random
    ) -> Optional[float]:
        """Seconds to sleep before the n-th retry, or None when the caller should give up.

        With a Retry-After the jittered backoff is added on top of it: the gateway sends
        the same literal to every throttled caller, and sleeping exactly that long would
        bring them all back in the same instant.
        """
        if retry_number >= self.max_attempts:
            return None
        if retry_after is None:
            return self.backoff_s(retry_number, rng)
        if retry_after > self.max_retry_after_s:
            return None
        return retry_after + self.backoff_s(retry_number, rng)


@dataclass(frozen=True)
class Timeouts:
    """Connect, first-byte and total limits for one request.

    `requests` applies its read timeout to every socket read, not only the first, so
    `first_byte_s` is also the longest silence tolerated in the middle of a body.
    `requests` has no total deadline of its own: `iter_sse_data` checks `total_s`
    between reads (each read being bounded by `first_byte_s`).
    """

    connect_s: float
    first_byte_s: float
    total_s: float

    def for_requests(self) -> tuple[float, float]:
        return (self.connect_s, self.first_byte_s)


# Buffered calls: the gateway answers 504 at 29 s; wait a little longer to receive it.
BUFFERED_TIMEOUTS = Timeouts(connect_s=5.0, first_byte_s=35.0, total_s=35.0)
# Streams: first event within 30 s or the service is overloaded; the gateway ends every
# stream at 15 minutes, so a longer total deadline could never fire.
STREAMING_TIMEOUTS = Timeouts(connect_s=5.0, first_byte_s=30.0, total_s=900.0)
DEFAULT_RETRY_POLICY = RetryPolicy()


class StreamTimeout(Exception):
    """A stream missed its first-event or total deadline."""

    def __init__(self, phase: str, limit_s: float):
        super().__init__(f"stream exceeded its {phase} timeout of {limit_s:g} s")
        self.phase = phase
        self.limit_s = limit_s


def is_timeout(error: BaseException) -> bool:
    """True for connect and read timeouts however `requests`/urllib3 happen to wrap them.

    A read timeout while `requests` reads a body surfaces as ConnectionError wrapping
    urllib3's ReadTimeoutError, and reading `response.raw` directly raises the urllib3
    error itself; both are the same event as a ReadTimeout before the headers.
    """
    if isinstance(error, (requests.Timeout, ReadTimeoutError)):
        return True
    if isinstance(error, requests.ConnectionError):
        return any(isinstance(arg, ReadTimeoutError) for arg in error.args)
    return False


def is_quota_exhausted(response: requests.Response) -> bool:
    """A 429 from QUOTA_EXCEEDED lasts until the usage plan's period resets: never retry it."""
    if response.status_code != 429:
        return False
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    return any("quota" in str(error.get(name, "")).lower() for name in ("code", "type"))


def retry_delay_for_response(
    response: requests.Response, attempt: int, policy: RetryPolicy, rng: random.Random
) -> Optional[float]:
    """Seconds to wait before retrying this response, or None to hand it to the caller."""
    if response.status_code not in policy.retryable_statuses:
        return None
    if is_quota_exhausted(response):
        return None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return policy.delay_before_retry(attempt, retry_after, rng)


@dataclass
class Sent:
    """The response a caller acts on, and how many attempts it took."""

    response: requests.Response
    attempts: int


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    timeouts: Timeouts = BUFFERED_TIMEOUTS,
    sleep: Sleep = time.sleep,
    rng: Optional[random.Random] = None,
    **request_kwargs: Any,
) -> Sent:
    """Send one request under the policy.

    Returns the last response, which may still carry a retryable status once attempts
    are exhausted: the caller decides what a final 429 or 503 means. Raises the last
    exception when the final attempt timed out, and any non-timeout exception at once
    (a refused connection or a TLS error will not fix itself in a second).
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = session.request(
                method, url, timeout=timeouts.for_requests(), **request_kwargs
            )
        except Exception as error:
            if not is_timeout(error) or attempt >= policy.max_attempts:
                raise
            sleep(policy.backoff_s(attempt, rng))
            continue
        delay = retry_delay_for_response(response, attempt, policy, rng)
        if delay is None:
            return Sent(response, attempt)
        response.close()
        sleep(delay)


def is_event_stream(response: requests.Response) -> bool:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media_type == "text/event-stream"


def iter_sse_data(
    response: requests.Response,
    *,
    timeouts: Timeouts,
    started_at: float,
    clock: Clock = time.monotonic,
) -> Iterator[str]:
    """Yield the `data` of each server-sent event as it arrives.

    Reads with `read1`, which returns whatever bytes are available: `iter_lines` would
    block until its chunk size is filled on a stream that is not chunk-encoded, and a
    time-to-first-token measured that way would be a lie. Comment lines (": ping"
    keep-alives) count as liveness but not as the first event, because a server that
    only sends keep-alives has not started answering.
    """
    pending = b""
    data_lines: list[str] = []
    seen_event = False
    while True:
        elapsed = clock() - started_at
        if not seen_event and elapsed > timeouts.first_byte_s:
            raise StreamTimeout("first-event", timeouts.first_byte_s)
        if elapsed > timeouts.total_s:
            raise StreamTimeout("total", timeouts.total_s)
        # requests hands urllib3 decode_content=False; decode here as iter_content would.
        chunk = response.raw.read1(65536, decode_content=True)
        if not chunk:
            # An event without its terminating blank line is incomplete and, per the
            # SSE specification, discarded.
            return
        pending += chunk
        while True:
            newline = pending.find(b"\n")
            if newline < 0:
                break
            line, pending = pending[:newline].rstrip(b"\r"), pending[newline + 1 :]
            if not line:
                if data_lines:
                    seen_event = True
                    yield "\n".join(data_lines)
                    data_lines = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data_lines.append((value[1:] if value.startswith(b" ") else value).decode("utf-8"))
            # Other fields (event:, id:, retry:) and comments carry nothing we use.


@dataclass
class EventStream:
    """An opened stream whose first event (if any) has already been read."""

    response: requests.Response
    attempts: int
    started_at: float
    first_event: Optional[str]
    first_event_at: Optional[float]
    _rest: Iterator[str]

    def events(self) -> Iterator[str]:
        if self.first_event is not None:
            yield self.first_event
            yield from self._rest

    def close(self) -> None:
        self.response.close()


def open_event_stream(
    session: requests.Session,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    timeouts: Timeouts = STREAMING_TIMEOUTS,
    sleep: Sleep = time.sleep,
    rng: Optional[random.Random] = None,
    clock: Clock = time.monotonic,
    **request_kwargs: Any,
) -> EventStream:
    """POST a streaming request, retrying under the policy until the first event arrives.

    A response that is not a 200 event stream is returned unread (first_event None) for
    the caller to judge. Once the first event is in, nothing is retried.
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        attempt += 1
        started_at = clock()
        try:
            response = session.post(
                url, stream=True, timeout=timeouts.for_requests(), **request_kwargs
            )
        except Exception as error:
            if not is_timeout(error) or attempt >= policy.max_attempts:
                raise
            sleep(policy.backoff_s(attempt, rng))
            continue
        if response.status_code != 200 or not is_event_stream(response):
            delay = retry_delay_for_response(response, attempt, policy, rng)
            if delay is None:
                return EventStream(response, attempt, started_at, None, None, iter(()))
            response.close()
            sleep(delay)
            continue
        events = iter_sse_data(response, timeouts=timeouts, started_at=started_at, clock=clock)
        try:
            first_event = next(events, None)
        except Exception as error:
            response.close()
            retryable = is_timeout(error) or (
                isinstance(error, StreamTimeout) and error.phase == "first-event"
            )
            if not retryable or attempt >= policy.max_attempts:
                raise
            sleep(policy.backoff_s(attempt, rng))
            continue
        first_event_at = clock() if first_event is not None else None
        return EventStream(response, attempt, started_at, first_event, first_event_at, events)

