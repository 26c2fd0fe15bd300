"""`make loadtest`: statistics against known inputs, and the generator against a local fake server."""
from __future__ import annotations

import asyncio
import math
import json
import random
from types import SimpleNamespace

import pytest

from tests.fake_openai import FakeBehaviour, FakeOpenAI
from tools.loadtest import __main__ as cli
from tools.loadtest.calibrate import HEADROOM, calibrate
from tools.loadtest.runner import Limits, Target, run
from tools.loadtest.stats import Attempt, distribution, percentile, status_counts, summarize, throughput, tpot, ttft
from tools.loadtest.workload import WorkloadError, WorkloadShape, chat_body, draw

# ------------------------------------------------------------------- statistics


def test_percentiles_interpolate_linearly_between_closest_ranks():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 100) == 3


def test_percentile_refuses_no_values_and_out_of_range_quantiles():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_time_per_output_token_excludes_the_first_token():
    attempt = Attempt(200, started=10.0, finished=13.0, first_token=10.5, last_token=12.5, output_tokens=11)
    assert ttft(attempt) == pytest.approx(0.5)
    assert tpot(attempt) == pytest.approx(0.2)
    assert tpot(Attempt(200, 0.0, 1.0, first_token=0.5, last_token=0.5, output_tokens=1)) is None
    assert ttft(Attempt(429, 0.0, 0.1)) is None


def test_throughput_counts_completed_requests_and_their_tokens_over_wall_time():
    attempts = [
        Attempt(200, 0.0, 2.0, 0.5, 2.0, prompt_tokens=100, output_tokens=40),
        Attempt(200, 1.0, 4.0, 1.5, 4.0, prompt_tokens=300, output_tokens=60),
        Attempt(429, 0.5, 0.6, error="THROTTLED"),
    ]
    rates = throughput(attempts)
    assert rates == {"requests_per_s": 0.5, "output_tokens_per_s": 25.0, "prompt_tokens_per_s": 100.0}
    assert throughput([]) == {"requests_per_s": 0.0, "output_tokens_per_s": 0.0, "prompt_tokens_per_s": 0.0}


def test_errors_are_counted_by_status_and_transport_failures_by_kind():
    attempts = [Attempt(200, 0, 1, 0.1, 0.9, output_tokens=3), Attempt(429, 0, 1), Attempt(429, 0, 1),
                Attempt(503, 0, 1), Attempt(0, 0, 1, error="timeout"), Attempt(200, 0, 1, error="stream-error")]
    assert status_counts(attempts) == {"200": 1, "200:stream-error": 1, "429": 2, "503": 1, "error:timeout": 1}


def test_summary_of_known_attempts():
    attempts = [Attempt(200, float(i), float(i) + 2.0, float(i) + 0.1 * (i + 1), float(i) + 2.0,
                        prompt_tokens=10, output_tokens=21) for i in range(4)]
    attempts.append(Attempt(503, 0.0, 0.2))
    summary = summarize(attempts)
    assert summary["attempts"] == 5 and summary["completed"] == 4
    assert summary["error_rate"] == pytest.approx(0.2)
    assert summary["ttft_s"]["p50"] == pytest.approx(0.25)
    assert summary["ttft_s"]["max"] == pytest.approx(0.4)
    # (2.0 - 0.1 (i+1)) / 20 for i = 0..3 -> 0.095, 0.09, 0.085, 0.08
    assert summary["tpot_s"]["p50"] == pytest.approx(0.0875)
    assert summary["wall_s"] == pytest.approx(5.0)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(0.8)
    assert distribution([None, None]) is None


# --------------------------------------------------------------------- workload


def test_realistic_lengths_follow_the_lognormal_medians_and_fit_the_context():
    shape = WorkloadShape(prompt_median=1024, output_median=256, sigma=0.8, max_context=4096, max_output=1024)
    rng = random.Random(7)
    draws = [draw(shape, rng) for _ in range(4000)]
    assert all(d.prompt_tokens + d.output_tokens <= 4096 and 1 <= d.output_tokens <= 1024 for d in draws)
    assert percentile([d.output_tokens for d in draws], 50) == pytest.approx(256, rel=0.08)
    prompts = [d.prompt_tokens for d in draws]
    assert percentile(prompts, 50) == pytest.approx(1024, rel=0.08)
    # Right-skewed: the tail is far above the median.
    assert percentile(prompts, 95) > 2.5 * percentile(prompts, 50)


def test_worst_case_fills_the_context_every_time():
    shape = WorkloadShape(profile="worst-case", max_context=8192, max_output=2048)
    assert {(d.prompt_tokens, d.output_tokens) for d in (draw(shape, random.Random(i)) for i in range(5))} == {(6144, 2048)}


def test_requests_stream_with_usage_and_differ_from_each_other():
    rng = random.Random(1)
    first, second = (chat_body("m", draw(WorkloadShape(), rng), rng) for _ in range(2))
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["messages"][0]["content"] != second["messages"][0]["content"]


def test_bad_workloads_are_refused():
    with pytest.raises(WorkloadError):
        WorkloadShape(profile="spiky")
    with pytest.raises(WorkloadError):
        WorkloadShape(sigma=-1)


# ------------------------------------------------------- against the fake server


def _run(server: FakeOpenAI, **limits) -> tuple:
    shape = WorkloadShape(prompt_median=40, output_median=12, sigma=0.5, max_context=256, max_output=32)
    result = asyncio.run(run(Target(server.base_url, "fake", {"x-api-key": "k"}), shape,
                             Limits(**{"duration_s": 60.0, **limits}), seed=3))
    return result, summarize(result.attempts, result.wall_s)


def test_streams_are_measured_from_the_server_s_usage_and_first_token():
    with FakeOpenAI(FakeBehaviour(first_token_delay_s=0.05, token_interval_s=0.002)) as server:
        result, summary = _run(server, requests=12, concurrency=3)
        generated = server.server.generations
    assert result.stopped_by == "requests" and summary["completed"] == 12
    assert summary["status"] == {"200": 12}
    assert sorted(a.output_tokens for a in result.attempts) == sorted(g[1] for g in generated)
    assert sorted(a.prompt_tokens for a in result.attempts) == sorted(g[0] for g in generated)
    # The slow first token shows in TTFT, not in the time per output token.
    assert summary["ttft_s"]["min"] >= 0.05
    assert summary["tpot_s"]["p50"] < summary["ttft_s"]["p50"]


def test_a_429_is_retried_no_sooner_than_its_retry_after():
    with FakeOpenAI(FakeBehaviour(throttle_first=1, retry_after="1")) as server:
        result, summary = _run(server, requests=3, concurrency=1)
        arrivals = [t for t, _ in server.server.arrivals]
    assert summary["status"] == {"200": 2, "429": 1}
    assert arrivals[1] - arrivals[0] >= 1.0
    # The key went on every request.
    assert {key for _, key in server.server.arrivals} == {"k"}


def test_a_retry_after_beyond_the_policy_stops_the_run():
    with FakeOpenAI(FakeBehaviour(throttle_first=100, retry_after="3600")) as server:
        result, summary = _run(server, requests=50, concurrency=2)
    assert result.stopped_by == "quota"
    assert summary["completed"] == 0 and summary["status"]["429"] <= 2


def test_the_request_budget_includes_retries_and_non_retryable_errors_are_not_retried():
    with FakeOpenAI(FakeBehaviour(fail_every=2)) as server:
        result, summary = _run(server, requests=9, concurrency=1)
        arrivals = len(server.server.arrivals)
    assert summary["attempts"] == arrivals == 9
    assert summary["status"]["503"] == 4


def test_the_duration_bound_stops_a_run_that_would_go_on():
    with FakeOpenAI(FakeBehaviour(token_interval_s=0.05)) as server:
        result, summary = _run(server, requests=1000, concurrency=2, duration_s=0.6)
    assert result.stopped_by == "duration"
    assert result.interrupted_clients == 2
    assert summary["attempts"] < 1000


def test_cli_writes_the_json_report_and_a_png_chart(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOADTEST_KEY", "secret-key-value")
    with FakeOpenAI(FakeBehaviour(first_token_delay_s=0.02, throttle_first=1, retry_after="0")) as server:
        code = cli.main(["--base-url", server.base_url, "--model", "fake", "--api-key-env", "LOADTEST_KEY",
                         "--requests", "8", "--concurrency", "2", "--prompt-median", "30", "--output-median", "8",
                         "--max-context", "200", "--max-output", "16", "--out", str(tmp_path)])
        keys = {key for _, key in server.server.arrivals}
    assert code == 0
    assert keys == {"secret-key-value"}
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["schema"] == "deepseek-serving/loadtest@1"
    assert document["summary"]["status"] == {"200": 7, "429": 1}
    assert set(document["summary"]["ttft_s"]) >= {"p50", "p95", "p99"}
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "TTFT" in printed and "secret-key-value" not in printed + json.dumps(document)


@pytest.mark.parametrize("argv, message", [
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--requests", "0"], "--requests 0"),
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--duration", "-1"], "--duration"),
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--calibrate"], "--calibrate needs --stack"),
    (["--base-url", "http://127.0.0.1:9/v1"], "needs --model"),
    (["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "LOADTEST_UNSET_VAR"], "empty or unset"),
    (["--stack", "nosuchstack"], "no such stack file"),
    (["--stack", "dev", "--base-url", "http://127.0.0.1:9/v1", "--model", "nope"], "not in the inventory"),
])
def test_bad_options_exit_2_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


# -------------------------------------------------------------------- calibrate


def _plan(rps: float, slots: int = 8, inflight: int = 32):
    return SimpleNamespace(capacity_rps=rps, running_slots=slots, max_inflight_requests=inflight,
                           assumptions={"prompt_tokens": 1024, "output_tokens": 512})


def _inventory(rate: float, burst: int, max_replicas: int = 2):
    model = SimpleNamespace(name="m", max_replicas=max_replicas)
    tier = SimpleNamespace(name="standard", rate_per_second=rate, burst=burst)
    return SimpleNamespace(models=[model], gateway=SimpleNamespace(tiers=[tier])), model


def _summary(rps: float, completed: int = 100, status=None) -> dict:
    return {"throughput": {"requests_per_s": rps}, "completed": completed, "attempts": completed,
            "status": status or {"200": completed}}


def test_calibration_lowers_a_tier_the_measured_capacity_cannot_serve():
    inventory, model = _inventory(rate=10.0, burst=50)
    result = calibrate(inventory, "dev", model, _summary(3.0), replicas=1, concurrency=16, profile="realistic",
                       prompt_median=1024, output_median=512, plans={"m": _plan(4.0)})
    assert result["capacity_rps_per_replica"] == {"measured": 3.0, "estimated": 4.0, "measured_over_estimated": 0.75}
    # 3 req/s per replica x 2 replicas x headroom
    assert result["proposed_stack_rate_per_second"] == pytest.approx(3.0 * 2 * HEADROOM)
    tier = result["proposed_tiers"][0]
    assert tier["rate_per_second"] == pytest.approx(4.8) and tier["change"] == "lower"
    assert tier["burst"] == 50
    assert result["notes"] == []


def test_calibration_keeps_a_tier_within_capacity_and_says_when_the_run_proves_little():
    inventory, model = _inventory(rate=1.0, burst=100)
    result = calibrate(inventory, "dev", model, _summary(6.0, completed=10, status={"200": 10, "429": 5}),
                       replicas=2, concurrency=4, profile="worst-case", prompt_median=1024, output_median=512,
                       plans={"m": _plan(2.0, slots=8, inflight=32)})
    assert result["capacity_rps_per_replica"]["measured"] == 3.0
    tier = result["proposed_tiers"][0]
    assert tier["rate_per_second"] == 1.0 and tier["change"] == "keep"
    # Burst never above what the replicas admit at once (32 x 2).
    assert tier["burst"] == 64
    notes = " ".join(result["notes"])
    assert "only 10 requests" in notes and "429" in notes and "CONCURRENCY 4" in notes and "worst-case" in notes


def test_calibration_uses_the_stack_s_own_sizing_estimate():
    from components.config import PROJECT, parse_inventory
    from components.gateway.api import model_plan
    from tools import stack_files

    stack_file = stack_files.load("dev")
    inventory = parse_inventory(stack_file.config[f"{PROJECT}:inventory"], stack="dev",
                                secret_keys=stack_file.secret_keys)
    model = inventory.models[0]
    result = calibrate(inventory, "dev", model, _summary(0.01), replicas=1, concurrency=1024,
                       profile="realistic", prompt_median=1024, output_median=512)
    assert result["capacity_rps_per_replica"]["estimated"] == model_plan(inventory, model, "dev").capacity_rps
    assert {t["name"] for t in result["proposed_tiers"]} == {t.name for t in inventory.gateway.tiers}


# ------------------------------------------------- the model's own workload shape


def test_a_stack_s_load_follows_the_workload_the_sizing_estimate_used():
    from components.config import PROJECT, parse_inventory
    from components.gateway.api import model_plan
    from tools import stack_files

    stack_file = stack_files.load("prod")
    inventory = parse_inventory(stack_file.config[f"{PROJECT}:inventory"], stack="prod",
                                secret_keys=stack_file.secret_keys)
    model = inventory.models[0]
    plan = model_plan(inventory, model, "prod")
    args = cli.build_parser().parse_args(["--stack", "prod"])
    shape = cli._shape(args, model, plan)
    workload = plan.workload
    assert (shape.prompt_median, shape.output_median) == (workload.prompt_typical, workload.output_typical)
    assert shape.max_output == workload.output_max and shape.max_context == model.max_context
    rng = random.Random(11)
    draws = [draw(shape, rng) for _ in range(4000)]
    prompts = [d.prompt_tokens for d in draws]
    # The drawn prompts put their p95 where the workload says (within sampling noise).
    assert percentile(prompts, 95) == pytest.approx(workload.prompt_p95, rel=0.12)
    assert max(d.output_tokens for d in draws) <= workload.output_max
    # Options still override the shape part by part.
    custom = cli._shape(cli.build_parser().parse_args(["--stack", "prod", "--prompt-median", "64"]), model, plan)
    assert custom.prompt_median == 64 and custom.output_median == workload.output_typical
    # The calibration sees the same typical request as the estimate: no "different work" note.
    result = calibrate(inventory, "prod", model, _summary(1.0, completed=200), replicas=1, concurrency=10_000,
                       profile="realistic", prompt_median=shape.prompt_median, output_median=shape.output_median,
                       plans={model.name: plan})
    assert not any("differs from the estimate" in note for note in result["notes"])


def test_spread_puts_the_quantile_where_asked():
    from tools.loadtest.workload import Z95, from_sizing, spread_for

    assert spread_for(100, 100, Z95) == 0.1  # no spread given: a small floor, never zero
    sigma = spread_for(1000, 4000, Z95)
    assert 1000 * math.exp(Z95 * sigma) == pytest.approx(4000)
    shape = from_sizing(SimpleNamespace(prompt_typical=1000, prompt_p95=4000, output_typical=300, output_max=2000),
                        max_context=16384)
    assert shape.sigma == pytest.approx(sigma) and shape.output_sigma > 0 and shape.max_output == 2000
