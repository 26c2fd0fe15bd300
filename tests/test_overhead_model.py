"""The overhead model on known architectures, per runtime release, and the KV benchmark tool.

Pure functions; the benchmark runs as `make kv-bench` does.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from components.serving.catalog import get_model, get_reference_model
from components.serving.sizing import (
    GIB,
    PINNED_PROFILE,
    PROFILES,
    activation_bytes_per_token,
    gpu_memory_budget,
    sampler_peak_bytes,
)
from tests.conftest import ROOT
from tools import bench_kv


def test_the_pinned_vllm_release_has_its_own_profile():
    profile = PINNED_PROFILE["vllm"]
    assert profile.name == "vllm-0.11" and profile.source.endswith("gpu_worker.py")
    assert not profile.cuda_graphs_in_budget and profile.sampler_after_forward


def test_v0_11_sampler_peak_is_several_float32_copies_of_the_logits():
    # Qwen2.5's 152,064-token vocabulary at 256 sequences: 24 bytes per element (bf16
    # logits, a float32 copy, sorted values, int64 indices, probabilities) is 0.87 GiB,
    # six times the single float32 copy v0.7's printed activation peak accounts for.
    qwen = get_model("deepseek-r1-distill-qwen-7b")
    peak = sampler_peak_bytes(qwen, 256, PROFILES["vllm-0.11"])
    assert peak == 256 * 152064 * 24
    assert peak / GIB == pytest.approx(0.87, abs=0.01)
    assert peak == 6 * sampler_peak_bytes(qwen, 256, PROFILES["vllm-0.7"])


def test_activation_per_token_matches_the_measured_llama_slope():
    # vLLM's activation peak grew 0.92 GiB from 20k to 29k batched tokens (issue #10517).
    per_token = activation_bytes_per_token(get_reference_model("llama-3.1-8b"))
    assert per_token == 110_592
    assert 9000 * per_token / GIB == pytest.approx(0.92, abs=0.03)


def test_non_torch_memory_depends_on_the_release_and_tensor_parallelism():
    v06, v011 = PROFILES["vllm-0.6"], PROFILES["vllm-0.11"]
    # V0 counted the CUDA context: 1.72 GiB predicted on an H100 for a printed 1.79 GiB.
    assert v06.non_torch_gib(79.22, 1) == pytest.approx(1.79, abs=0.1)
    # V1 measures from a snapshot taken after the context: a quarter GiB on one GPU.
    assert v011.non_torch_gib(79.22, 1) == pytest.approx(0.25)
    assert v011.non_torch_gib(22.0, 4) > v011.non_torch_gib(22.0, 1)


def test_the_sampler_peak_follows_the_forward_pass_in_v1():
    model = get_model("deepseek-r1-distill-qwen-7b")
    kwargs = dict(gpu_total_gib=22.0, gpu_memory_utilization=0.9, tensor_parallel=1,
                  quantization="bf16", prefill_tokens=2048, max_num_seqs=256)
    v1 = gpu_memory_budget(model, profile=PROFILES["vllm-0.11"], **kwargs)
    assert v1.peak_gib == pytest.approx(max(v1.activation_gib, v1.logits_gib))


@pytest.mark.parametrize("model, gpu_gib, util, batched, printed_peak_gib", [
    # v0.6.4 "Memory profiling results": peak_torch_memory minus the weights it loaded.
    ("phi-1.5", 7.92, 0.90, 2048, 3.12 - 2.6419),  # GTX 1080, sampler-bound
    ("llama-3.2-1b", 7.92, 0.95, 512, 3.49 - 2.3185),  # GTX 1080, 128k vocabulary
    ("rho-1b-sft-gsm8k", 139.80, 0.90, 2048, 2.38 - 2.0512),  # H200, 32k vocabulary
    ("llama-3.1-8b", 23.58, 0.90, 20000, 17.06 - 14.9888),  # RTX 3090, forward-bound
])
def test_v0_6_peak_is_the_larger_of_forward_pass_and_sampler(model, gpu_gib, util, batched,
                                                             printed_peak_gib):
    budget = gpu_memory_budget(get_reference_model(model), gpu_total_gib=gpu_gib,
                               gpu_memory_utilization=util, tensor_parallel=1,
                               quantization="bf16", prefill_tokens=batched, max_num_seqs=256,
                               profile=PROFILES["vllm-0.6"])
    assert budget.peak_gib == pytest.approx(max(budget.activation_gib, budget.logits_gib))
    assert budget.peak_gib == pytest.approx(printed_peak_gib, rel=0.12)


def test_small_gpus_lose_a_larger_share_to_the_sampler():
    # On a 16 GB-class card the logits peak of 256 sequences is a real fraction of the KV
    # pool; cutting max_num_seqs gives it back.
    model = get_model("deepseek-r1-distill-qwen-1.5b")
    wide = gpu_memory_budget(model, gpu_total_gib=14.5, gpu_memory_utilization=0.9, tensor_parallel=1,
                             quantization="bf16", prefill_tokens=2048, max_num_seqs=256)
    narrow = gpu_memory_budget(model, gpu_total_gib=14.5, gpu_memory_utilization=0.9, tensor_parallel=1,
                               quantization="bf16", prefill_tokens=2048, max_num_seqs=16)
    assert wide.logits_gib > 0.08 * wide.kv_pool_gib
    assert narrow.kv_capacity_tokens > wide.kv_capacity_tokens


def test_tgi_budget_is_the_memory_fraction_times_its_wiggle_room():
    tgi = PROFILES["tgi-3.3"]
    assert tgi.reserve_fraction == pytest.approx(0.10)  # TGI_WIGGLE_ROOM 0.90
    assert tgi.cuda_graphs_in_budget and "flash_causal_lm.py" in tgi.source


def test_every_benchmark_point_is_cited_and_names_its_release():
    assert len(bench_kv.POINTS) == len({p.label for p in bench_kv.POINTS})
    for point in bench_kv.POINTS:
        # An issue or pull request, or a file pinned to the commit that holds the log.
        assert re.match(r"^https://github\.com/[\w.-]+/[\w.-]+/"
                        r"((issues|pull)/\d+|blob/[0-9a-f]{40}/[\w./-]+)$", point.source), point
        assert point.vllm_version and point.profile in PROFILES, point
        assert point.kind in ("capacity", "formula")


def test_make_kv_bench_prints_the_table_with_an_error_per_point_and_passes():
    result = subprocess.run([sys.executable, "-m", "tools.bench_kv"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if "https://github.com/" in line]
    assert len(rows) == len(bench_kv.POINTS)
    for row in rows:
        assert re.search(r"(refusal|[+-]\d+\.\d%)\s+ok\s+https://", row), row
    assert f"{len(rows)}/{len(rows)} points on target" in result.stdout


def test_the_reference_set_covers_small_and_80gb_class_gpus():
    cov = bench_kv.coverage(bench_kv.POINTS)
    assert cov.points >= 14
    assert cov.small >= 3 and cov.large >= 3
    assert cov.missing_gpus == () and cov.met


def test_the_benchmark_fails_when_coverage_falls_short(monkeypatch, capsys):
    # Every point on target, but without the H200 point the goal is not met.
    without_h200 = tuple(p for p in bench_kv.POINTS if "H200" not in p.gpu)
    monkeypatch.setattr(bench_kv, "POINTS", without_h200)
    assert bench_kv.main() == 1
    out = capsys.readouterr().out
    assert "(none on H200)" in out and "COVERAGE below the goal" in out
    assert f"{len(without_h200)}/{len(without_h200)} points on target" in out


def test_the_benchmark_fails_when_a_point_misses(monkeypatch, capsys):
    point = bench_kv.POINTS[2]
    inflated = type(point)(**{**point.__dict__, "reported_tokens": point.reported_tokens // 2})
    monkeypatch.setattr(bench_kv, "POINTS", (inflated,))
    assert bench_kv.main() == 1
    assert "MISS" in capsys.readouterr().out
