"""The load test's outputs: a JSON report (schema `deepseek-serving/loadtest@1`) and a PNG chart.

The chart is rendered headless (matplotlib's Agg backend, no display needed) with four
panels: TTFT and TPOT as cumulative distributions with p50/p95/p99 marked, latency of
every completed request over the run (to see queueing build up), and attempts by status.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from tools.loadtest.stats import PERCENTILES, Attempt, percentile, tpot, ttft

SCHEMA = "deepseek-serving/loadtest@1"


def report(summary: dict, *, settings: dict, stopped_by: str, interrupted_clients: int,
           calibration: Optional[dict] = None) -> dict:
    document = {"schema": SCHEMA, "settings": settings, "stopped_by": stopped_by,
                "interrupted_clients": interrupted_clients, "summary": summary}
    if calibration is not None:
        document["calibration"] = calibration
    return document


def write_json(document: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _cdf(axis, values: Sequence[float], title: str, unit_scale: float, unit: str) -> None:
    axis.set_title(title)
    if not values:
        axis.text(0.5, 0.5, "no completed requests", ha="center", va="center", transform=axis.transAxes)
        return
    ordered = sorted(v * unit_scale for v in values)
    n = len(ordered)
    axis.step(ordered, [(i + 1) / n for i in range(n)], where="post")
    for q in PERCENTILES:
        value = percentile(ordered, q)
        axis.axvline(value, linestyle="--", linewidth=0.8, color="grey")
        axis.text(value, 0.02 + 0.1 * PERCENTILES.index(q), f" p{q} {value:.0f} {unit}", fontsize=7)
    axis.set_xlabel(unit)
    axis.set_ylabel("share of requests")
    axis.grid(True, alpha=0.3)


def write_chart(attempts: Sequence[Attempt], summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    done = [a for a in attempts if a.ok]
    origin = min((a.started for a in attempts), default=0.0)
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    _cdf(axes[0][0], [v for v in (ttft(a) for a in done) if v is not None], "Time to first token", 1000, "ms")
    _cdf(axes[0][1], [v for v in (tpot(a) for a in done) if v is not None], "Time per output token", 1000, "ms")

    timeline = axes[1][0]
    timeline.set_title("Completed requests over the run")
    timeline.scatter([a.started - origin for a in done], [a.finished - a.started for a in done], s=8,
                     label="end-to-end latency")
    timeline.scatter([a.started - origin for a in done], [ttft(a) for a in done], s=8, label="TTFT")
    timeline.set_xlabel("seconds since start (send time)")
    timeline.set_ylabel("s")
    timeline.legend(loc="upper left", fontsize=8)
    timeline.grid(True, alpha=0.3)

    statuses = axes[1][1]
    counts = summary["status"]
    statuses.set_title("Attempts by status")
    statuses.bar(list(counts), list(counts.values()),
                 color=["tab:green" if k == "200" else "tab:red" for k in counts])
    statuses.tick_params(axis="x", labelrotation=30)
    rates = summary["throughput"]
    statuses.text(0.98, 0.95, f"{rates['requests_per_s']:.2f} req/s\n{rates['output_tokens_per_s']:.0f} "
                  f"output tok/s\nerror rate {summary['error_rate']:.1%}", ha="right", va="top",
                  transform=statuses.transAxes, fontsize=8)

    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def render_text(summary: dict) -> str:
    """The console summary: one line per measure, milliseconds for latencies."""
    lines = [f"attempts {summary['attempts']}, completed {summary['completed']}, "
             f"error rate {summary['error_rate']:.1%}, wall {summary['wall_s']:.1f} s"]
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("latency_s", "latency")):
        dist = summary[key]
        if dist is None:
            lines.append(f"  {label:<8} no data")
            continue
        lines.append(f"  {label:<8} " + "  ".join(f"p{q} {dist[f'p{q}'] * 1000:8.1f} ms" for q in PERCENTILES))
    rates = summary["throughput"]
    lines.append(f"  throughput {rates['requests_per_s']:.3f} req/s, {rates['output_tokens_per_s']:.1f} output "
                 f"tok/s, {rates['prompt_tokens_per_s']:.1f} prompt tok/s")
    lines.append("  status   " + ", ".join(f"{k}: {v}" for k, v in summary["status"].items()))
    return "\n".join(lines)
