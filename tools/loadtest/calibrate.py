"""`--calibrate`: the measured capacity against the sizing estimate, and throttles to match.

The gateway's throttles are checked at preview against an analytic estimate
(components/gateway/api.py `model_plan` -> components/serving/sizing.py `plan_runtime`,
`capacity_rps` per replica; `gateway_throttles` caps each tier at capacity x max_replicas).
A load test measures what the replicas really sustain. This module compares the two per
replica and proposes tier values for the inventory: the measured rate (x `HEADROOM`, so
queues drain between bursts) x max_replicas for the measured model, plus the estimate for
the stack's other models, and the burst the estimate allows (a load test at fixed
concurrency measures throughput, not how many requests the runtimes admit at once).

A measurement only counts as a capacity when the replicas were saturated and the gateway
did not do the limiting; the notes say when that was not the case.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from components.config import Inventory, Model

# Keep the throttle a fifth below the measured saturation point.
HEADROOM = 0.8
# Fewer completed requests than this give no meaningful rate.
MIN_COMPLETED = 20
# A run where more than this share of attempts was throttled measured the gateway, not the model.
MAX_THROTTLED_SHARE = 0.05


def _floor2(value: float) -> float:
    return math.floor(value * 100) / 100


def calibrate(inventory: Inventory, stack: str, model: Model, summary: dict, *, replicas: int,
              concurrency: int, profile: str, prompt_median: int, output_median: int,
              plans: Optional[dict[str, Any]] = None) -> dict:
    """Compare and propose; `plans` ({model name: RuntimePlan}) defaults to the sizing estimate."""
    from components.gateway.api import MAX_BURST, model_plan

    if replicas < 1:
        raise ValueError(f"--replicas {replicas} must be at least 1")
    plans = {**{m.name: None for m in inventory.models}, **(plans or {})}
    plans = {name: plan if plan is not None else model_plan(inventory, next(m for m in inventory.models
                                                                             if m.name == name), stack)
             for name, plan in plans.items()}
    plan = plans[model.name]
    measured = summary["throughput"]["requests_per_s"] / replicas
    estimated = plan.capacity_rps
    notes: list[str] = []
    statuses = summary["status"]
    attempts = max(1, summary["attempts"])
    throttled = sum(n for status, n in statuses.items() if status == "429") / attempts
    if summary["completed"] < MIN_COMPLETED:
        notes.append(f"only {summary['completed']} requests completed (< {MIN_COMPLETED}): raise REQUESTS "
                     "or DURATION before trusting the rate")
    if throttled > MAX_THROTTLED_SHARE:
        notes.append(f"{throttled:.0%} of attempts were answered 429: the gateway (usage plan, WAF) or the "
                     "runtime's own limit did the limiting, so the measured rate is a lower bound; run with a "
                     "client whose tier allows more, or against the internal load balancer")
    slots = plan.running_slots * replicas
    if concurrency < slots:
        notes.append(f"CONCURRENCY {concurrency} is below the {slots} sequences {replicas} replica(s) run at "
                     f"once: the replicas were not saturated; raise CONCURRENCY to >= {slots}")
    typical = typical_request(plan.assumptions)
    if profile != "realistic" or (prompt_median, output_median) != typical:
        notes.append(f"the workload ({profile}, median prompt {prompt_median}, output {output_median} tokens) "
                     f"differs from the estimate's typical request ({typical[0]} prompt, {typical[1]} output "
                     "tokens): the two rates describe different work")

    capacity = {m.name: (measured if m.name == model.name else plans[m.name].capacity_rps) * m.max_replicas
                for m in inventory.models}
    total_rate = _floor2(HEADROOM * sum(capacity.values()))
    total_burst = min(MAX_BURST, sum(plans[m.name].max_inflight_requests * m.max_replicas for m in inventory.models))
    tiers = []
    for tier in inventory.gateway.tiers:
        rate = min(tier.rate_per_second, total_rate) if total_rate > 0 else tier.rate_per_second
        tiers.append({"name": tier.name, "rate_per_second": rate, "burst": min(tier.burst, total_burst),
                      "current_rate_per_second": tier.rate_per_second, "current_burst": tier.burst,
                      "change": "lower" if rate < tier.rate_per_second else "keep"})
    if total_rate <= 0:
        notes.append("no request completed: nothing to propose")
    return {
        "model": model.name,
        "replicas_measured": replicas,
        "capacity_rps_per_replica": {"measured": measured, "estimated": estimated,
                                     "measured_over_estimated": measured / estimated if estimated else None},
        "max_replicas": model.max_replicas,
        "headroom": HEADROOM,
        "proposed_stack_rate_per_second": total_rate,
        "proposed_tiers": tiers,
        "notes": notes,
    }


def typical_request(assumptions: dict) -> tuple[Any, Any]:
    """(prompt, output) tokens of the request the estimate assumed: sizing records them as
    {"typical": n, ...} per side (components/serving/sizing.py `_assumptions`)."""
    def typical(value: Any) -> Any:
        return value.get("typical") if isinstance(value, dict) else value
    return typical(assumptions.get("prompt_tokens")), typical(assumptions.get("output_tokens"))


def render_calibration(result: dict, stack_file: str) -> str:
    rates = result["capacity_rps_per_replica"]
    ratio = rates["measured_over_estimated"]
    lines = [f"calibration of {result['model']} ({result['replicas_measured']} replica(s) measured):",
             f"  capacity per replica: measured {rates['measured']:.3f} req/s, estimated {rates['estimated']:.3f} "
             f"req/s" + (f" (measured = {ratio:.2f} x estimate)" if ratio is not None else ""),
             f"  proposed for {stack_file} (gateway.tiers; {result['headroom']:.0%} of the measured rate x "
             f"max_replicas {result['max_replicas']}):"]
    for tier in result["proposed_tiers"]:
        lines.append(f"    - name: {tier['name']}\n      rate_per_second: {tier['rate_per_second']:g}   "
                     f"# now {tier['current_rate_per_second']:g} ({tier['change']})\n"
                     f"      burst: {tier['burst']}   # now {tier['current_burst']}")
    for note in result["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
