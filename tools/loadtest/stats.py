"""The load test's statistics as pure functions: percentiles, time per output token, throughput.

Definitions (the ones vLLM's benchmark and metrics use, so a load test and the runtime's
own histograms can be compared):
- TTFT: from sending the request to the first generated token arriving.
- TPOT (time per output token): (last token - first token) / (output tokens - 1), for
  requests with at least two output tokens; the first token is TTFT's.
- Throughput: completed requests, output tokens and prompt tokens per second of wall time
  (the first request sent to the last one finished).
- Percentiles: linear interpolation between closest ranks (numpy's default "linear"),
  so p50 of [1, 2, 3, 4] is 2.5.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt as measured by the client (times in seconds on one monotonic clock)."""

    # 200 for a completed generation; any HTTP status otherwise; 0 for a transport error or timeout.
    status: int
    started: float
    finished: float
    first_token: Optional[float] = None
    last_token: Optional[float] = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    # "timeout", "connect", "stream" ... for status 0; the error code of a JSON error body.
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ttft(attempt: Attempt) -> Optional[float]:
    if attempt.first_token is None:
        return None
    return attempt.first_token - attempt.started


def tpot(attempt: Attempt) -> Optional[float]:
    """Seconds per output token after the first; None below two tokens (nothing to divide)."""
    if attempt.first_token is None or attempt.last_token is None or attempt.output_tokens < 2:
        return None
    return (attempt.last_token - attempt.first_token) / (attempt.output_tokens - 1)


def distribution(values: Iterable[Optional[float]]) -> Optional[dict]:
    """{count, mean, min, max, p50, p95, p99} of the known values, None when there are none."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    summary = {"count": len(known), "mean": sum(known) / len(known), "min": min(known), "max": max(known)}
    summary.update({f"p{q}": percentile(known, q) for q in PERCENTILES})
    return summary


def wall_seconds(attempts: Sequence[Attempt]) -> float:
    if not attempts:
        return 0.0
    return max(a.finished for a in attempts) - min(a.started for a in attempts)


def throughput(attempts: Sequence[Attempt], wall: Optional[float] = None) -> dict:
    """Completed requests and tokens per second over the run's wall time."""
    wall = wall_seconds(attempts) if wall is None else wall
    done = [a for a in attempts if a.ok]
    if wall <= 0:
        return {"requests_per_s": 0.0, "output_tokens_per_s": 0.0, "prompt_tokens_per_s": 0.0}
    return {
        "requests_per_s": len(done) / wall,
        "output_tokens_per_s": sum(a.output_tokens for a in done) / wall,
        "prompt_tokens_per_s": sum(a.prompt_tokens for a in done) / wall,
    }


def status_counts(attempts: Sequence[Attempt]) -> dict[str, int]:
    """Attempts by outcome: "200", "429", "503", ... and "error:<kind>" for transport failures."""
    counts: Counter = Counter()
    for attempt in attempts:
        if attempt.status == 0:
            counts[f"error:{attempt.error or 'unknown'}"] += 1
        elif attempt.status == 200 and attempt.error:
            counts[f"200:{attempt.error}"] += 1
        else:
            counts[str(attempt.status)] += 1
    return dict(sorted(counts.items()))


def summarize(attempts: Sequence[Attempt], wall: Optional[float] = None) -> dict:
    """The report's numbers: latency distributions of completed requests, throughput, outcomes."""
    done = [a for a in attempts if a.ok]
    failed = len(attempts) - len(done)
    return {
        "attempts": len(attempts),
        "completed": len(done),
        "error_rate": failed / len(attempts) if attempts else 0.0,
        "wall_s": wall_seconds(attempts) if wall is None else wall,
        "ttft_s": distribution(ttft(a) for a in done),
        "tpot_s": distribution(tpot(a) for a in done),
        "latency_s": distribution(a.finished - a.started for a in done),
        "output_tokens": distribution(a.output_tokens for a in done),
        "prompt_tokens": distribution(a.prompt_tokens for a in done),
        "throughput": throughput(attempts, wall),
        "status": status_counts(attempts),
    }
