"""Sizing: KV and weight formulas on known architectures, fit errors, runtime flags, throttles."""
from __future__ import annotations

import math
import re

import pytest

from components.serving.catalog import (
    GPUS,
    MODELS,
    RUNTIME_IMAGES,
    CatalogError,
    get_instance,
    get_model,
    get_reference_model,
)
from components.serving.sizing import (
    GIB,
    SizingError,
    check_throttle,
    gpu_memory_budget,
    kv_bytes_per_token,
    plan_runtime,
    weight_bytes,
)
from tools import bench_kv


def plan(model: str, instance: str, runtime: str = "vllm", max_context: int = 8192, **kwargs):
    return plan_runtime(get_model(model), get_instance(instance), runtime=runtime,
                        max_context=max_context, stack="dev", model_name=f"{model}-svc", **kwargs)


def misfit(model: str, instance: str, runtime: str = "vllm", max_context: int = 8192, **kwargs) -> str:
    with pytest.raises(SizingError) as caught:
        plan(model, instance, runtime, max_context, **kwargs)
    message = str(caught.value)
    assert "stack 'dev'" in message and f"{model}-svc" in message
    return message


# ------------------------------------------------------------------------ catalog facts


def test_mla_models_declare_the_latent_dimensions_from_their_configs():
    lite = get_model("deepseek-v2-lite")
    assert (lite.num_layers, lite.kv_lora_rank, lite.qk_rope_head_dim) == (27, 512, 64)
    for name in ("deepseek-v3", "deepseek-r1"):
        model = get_model(name)
        assert (model.num_layers, model.kv_lora_rank, model.qk_rope_head_dim) == (61, 512, 64)
        assert model.native_dtype == "fp8" and model.active_params == 37_000_000_000


def test_gqa_models_have_consistent_head_geometry():
    for model in MODELS.values():
        if model.uses_mla:
            continue
        assert model.hidden_size == model.num_attention_heads * model.head_dim, model.name
        assert model.num_attention_heads % model.num_kv_heads == 0, model.name
        assert model.max_position_embeddings == 131072, model.name


def test_usable_gpu_memory_never_exceeds_what_aws_reports():
    for gpu in GPUS.values():
        assert gpu.usable_gib < gpu.aws_memory_mib / 1024, gpu.name


def test_runtime_images_are_pinned_by_tag_and_digest_or_say_why_not():
    for runtime, image in RUNTIME_IMAGES.items():
        assert image.tag and image.tag != "latest", runtime
        if image.digest:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", image.digest), runtime
            assert image.reference == f"{image.repository}:{image.tag}@{image.digest}"
        else:
            assert "NOT confirmed" in image.digest_source, runtime
            assert "@" not in image.reference
    assert RUNTIME_IMAGES["vllm"].pinned_by_digest and RUNTIME_IMAGES["ollama"].pinned_by_digest


def test_unknown_names_list_the_catalog():
    with pytest.raises(CatalogError, match="unknown instance type 'g4dn.xlarge'.*g5.xlarge"):
        get_instance("g4dn.xlarge")
    with pytest.raises(CatalogError, match="deepseek-r1-distill-qwen-7b"):
        get_model("deepseek-r1-7b")


# ---------------------------------------------------------------------------- formulas


def test_mla_kv_per_token_matches_the_latent_and_is_not_split_by_tensor_parallelism():
    lite = get_model("deepseek-v2-lite")
    assert kv_bytes_per_token(lite) == 27 * (512 + 64) * 2 == 31_104
    for tp in (2, 4, 8):
        assert kv_bytes_per_token(lite, tensor_parallel=tp) == 31_104
    assert kv_bytes_per_token(get_model("deepseek-r1"), tensor_parallel=8) == 61 * 576 * 2
    # vLLM: "(0.95 GiB KV cache is needed" for one 32768-token sequence of V2-Lite.
    assert round(32768 * 31_104 / GIB, 2) == 0.95


def test_gqa_kv_per_token_splits_by_kv_heads_and_replicates_when_ranks_outnumber_them():
    llama = get_model("deepseek-r1-distill-llama-8b")
    assert kv_bytes_per_token(llama) == 2 * 32 * 8 * 128 * 2 == 131_072
    assert kv_bytes_per_token(llama, tensor_parallel=2) == 65_536
    assert kv_bytes_per_token(llama, kv_dtype_bytes=1) == 65_536
    qwen3 = get_reference_model("qwen3-235b-a22b")  # 4 KV heads
    assert kv_bytes_per_token(qwen3, tensor_parallel=4) == kv_bytes_per_token(qwen3, tensor_parallel=8)


def test_mla_without_latent_support_costs_per_head_keys_and_values():
    lite = get_model("deepseek-v2-lite")
    expanded = kv_bytes_per_token(lite, compressed_mla=False)
    assert expanded == 27 * 16 * (192 + 128) * 2
    assert expanded > 8 * kv_bytes_per_token(lite)


def test_weight_bytes_by_quantization():
    qwen7 = get_model("deepseek-r1-distill-qwen-7b")
    assert weight_bytes(qwen7, "bf16") == 2 * qwen7.total_params
    embeddings = 2 * 152064 * 3584
    assert weight_bytes(qwen7, "awq") == math.ceil(
        embeddings * 2 + (qwen7.total_params - embeddings) * 4.16 / 8)
    assert weight_bytes(qwen7, "gguf_q4_k_m") == math.ceil(qwen7.total_params * 4.89 / 8)
    r1 = get_model("deepseek-r1")
    assert 620 < weight_bytes(r1, "fp8") / GIB < 640


def test_kv_capacity_fills_the_pool_without_exceeding_it():
    budget = gpu_memory_budget(get_model("deepseek-r1-distill-llama-8b"), gpu_total_gib=44.3,
                               gpu_memory_utilization=0.9, tensor_parallel=1,
                               quantization="bf16", prefill_tokens=2048, max_num_seqs=256)
    assert budget.kv_capacity_tokens % 16 == 0
    assert budget.kv_capacity_tokens * budget.kv_bytes_per_token <= budget.kv_pool_gib * GIB
    assert (budget.kv_capacity_tokens + 16) * budget.kv_bytes_per_token > budget.kv_pool_gib * GIB


def test_longer_prefill_budgets_leave_less_kv_cache():
    def tokens(prefill: int) -> int:
        return gpu_memory_budget(get_model("deepseek-r1-distill-qwen-7b"), gpu_total_gib=22.0,
                                 gpu_memory_utilization=0.9, tensor_parallel=1,
                                 quantization="bf16", prefill_tokens=prefill,
                                 max_num_seqs=256).kv_capacity_tokens
    assert tokens(16384) < tokens(2048)


def test_kv_predictions_stay_within_target_of_published_vllm_startups():
    results = [bench_kv.evaluate(p) for p in bench_kv.POINTS]
    assert len(results) >= bench_kv.COVERAGE_POINTS
    missed = [r.point.label for r in results if not r.within_target]
    assert not missed, bench_kv.render(results)


# ------------------------------------------------------------------------ runtime plans


def test_vllm_plan_derives_its_flags_from_gpu_memory():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", max_context=8192)
    assert set(p.args) == {"--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
                           "--tensor-parallel-size", "--gpu-memory-utilization"}
    assert p.args["--max-model-len"] == 8192
    assert p.args["--tensor-parallel-size"] == 1
    assert p.args["--max-num-batched-tokens"] == 2048  # vLLM's default below 70 GiB
    assert p.args["--gpu-memory-utilization"] == 0.9
    assert p.max_concurrent_sequences == p.kv_capacity_tokens // 8192 >= 1
    assert p.max_concurrent_sequences <= p.args["--max-num-seqs"] <= 256
    assert p.cli_args()[:2] == ["--max-model-len", "8192"]
    assert p.image.startswith("vllm/vllm-openai:v0.11.0@sha256:")
    assert plan("deepseek-r1-distill-llama-8b", "p5.48xlarge").args["--max-num-batched-tokens"] == 8192


def test_plans_never_promise_more_sequences_than_the_kv_cache_holds():
    for runtime in ("vllm", "tgi", "ollama"):
        p = plan("deepseek-r1-distill-llama-8b", "g6e.xlarge", runtime, max_context=16384)
        assert p.max_concurrent_sequences * p.max_model_len <= p.kv_capacity_tokens, runtime
        assert p.kv_capacity_tokens * p.memory.kv_bytes_per_token <= p.memory.kv_pool_gib * GIB


def test_default_tensor_parallel_is_the_largest_size_the_heads_allow():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.48xlarge")  # 28 heads, 4 KV heads, 8 GPUs
    assert p.tensor_parallel == 4
    assert any("4 of 8 GPUs idle" in note for note in p.notes)


def test_mla_plan_keeps_the_whole_latent_on_every_rank():
    p = plan("deepseek-r1", "p5e.48xlarge", max_context=32768)
    assert p.tensor_parallel == 8
    assert p.memory.kv_bytes_per_token == 61 * 576 * 2
    assert p.kv_capacity_tokens >= 32768


def test_tgi_plan_respects_the_launcher_constraints():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi", max_context=8192)
    a = p.args
    assert a["--max-total-tokens"] == 8192
    assert a["--max-input-tokens"] == 8192 - p.workload.output_max
    assert a["--max-batch-prefill-tokens"] >= a["--max-input-tokens"]
    # The budget TGI infers is predicted, never passed: TGI 3 ignores the flag.
    assert "--max-batch-total-tokens" not in a
    assert a["--max-total-tokens"] <= p.kv_capacity_tokens
    assert a["--max-batch-prefill-tokens"] <= p.kv_capacity_tokens
    # Every running request reserves the whole --max-total-tokens (TGI's default
    # max_new_tokens), so the batch runs budget // max_total requests.
    assert p.running_slots == p.kv_capacity_tokens // 8192
    assert a["--max-concurrent-requests"] == p.max_inflight_requests >= p.running_slots
    # CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM (0.9) = the planned 0.9 of the device.
    assert a["--num-shard"] == 1 and a["--cuda-memory-fraction"] == 1.0
    assert p.gpu_memory_utilization == 0.9
    assert p.image == "ghcr.io/huggingface/text-generation-inference:3.3.5"


def test_ollama_plan_sets_parallel_slots_context_and_queue_from_memory():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "ollama", max_context=8192)
    env = p.env
    assert p.args == {} and p.quantization == "gguf_q4_k_m"
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    parallel = int(env["OLLAMA_NUM_PARALLEL"])
    assert 1 <= parallel and parallel * 8192 <= p.kv_capacity_tokens
    assert int(env["OLLAMA_MAX_QUEUE"]) >= 1
    assert p.max_inflight_requests == parallel + int(env["OLLAMA_MAX_QUEUE"])
    assert int(env["OLLAMA_GPU_OVERHEAD"]) == int(0.1 * 22.0 * GIB)
    assert "pull deepseek-r1:7b-qwen-distill-q4_K_M" in p.notes


# -------------------------------------------------------------------------- fit errors


def _suggested_instance(message: str) -> str:
    match = re.search(r"instance type (\S+) \(TP=", message)
    assert match, message
    return match.group(1)


def test_weights_that_do_not_fit_propose_an_instance_and_a_quantization_that_do():
    message = misfit("deepseek-r1-distill-llama-70b", "g5.xlarge")
    assert "weights need 131.4 GiB per GPU (TP=1)" in message
    suggested = _suggested_instance(message)
    assert plan("deepseek-r1-distill-llama-70b", suggested).kv_capacity_tokens >= 8192
    assert "quantization" not in message  # no 16-bit-or-less format fits 70B on one A10G


def test_full_deepseek_r1_needs_h200s_or_a_4_bit_quantization_on_h100s():
    message = misfit("deepseek-r1", "p5.48xlarge", max_context=32768)
    assert "instance type p5e.48xlarge" in message
    assert "quantization awq on p5.48xlarge" in message
    plan("deepseek-r1", "p5.48xlarge", max_context=32768, quantization="awq")


def test_context_beyond_the_kv_cache_is_refused_with_the_longest_that_fits():
    message = misfit("deepseek-r1-distill-llama-8b", "g5.xlarge", max_context=131072)
    assert "one sequence of 131072 tokens" in message and "vllm refuses to start" in message
    longest = int(re.search(r"max_context <= (\d+) on g5.xlarge", message).group(1))
    assert plan("deepseek-r1-distill-llama-8b", "g5.xlarge", max_context=longest)
    with pytest.raises(SizingError):
        plan("deepseek-r1-distill-llama-8b", "g5.xlarge", max_context=longest + 1)


def test_context_beyond_the_model_positions_is_refused():
    message = misfit("deepseek-r1-distill-qwen-1.5b", "g6e.xlarge", max_context=200_000)
    assert "exceeds the model's max_position_embeddings 131072" in message


def test_tensor_parallel_sizes_must_divide_the_heads_and_fit_the_instance():
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.12xlarge", tensor_parallel=3)
    assert "valid sizes on g5.12xlarge: 1, 2, 4" in message
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", tensor_parallel=2)
    assert "needs 2 GPUs but g5.xlarge has 1" in message


def test_explicit_tensor_parallel_that_is_too_small_suggests_one_that_fits():
    message = misfit("deepseek-r1-distill-qwen-32b", "g6e.12xlarge", tensor_parallel=1)
    assert "tensor_parallel 2 on g6e.12xlarge" in message


def test_runtimes_refuse_quantizations_they_cannot_load():
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "ollama", quantization="awq")
    assert "ollama cannot load quantization 'awq'" in message and "gguf_q4_k_m" in message
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", quantization="int3")
    assert "unknown quantization 'int3'; allowed: awq, bf16" in message
    with pytest.raises(SizingError, match="unknown runtime 'sglang'; allowed: vllm, tgi, ollama"):
        plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "sglang")


def test_memory_utilization_must_leave_room_for_cuda_graphs():
    message = misfit("deepseek-r1-distill-qwen-1.5b", "g5.xlarge", gpu_memory_utilization=0.96)
    assert "use gpu_memory_utilization <= 0.93" in message
    plan("deepseek-r1-distill-qwen-1.5b", "g5.xlarge", gpu_memory_utilization=0.93)


# ---------------------------------------------------------------------------- overrides


def test_overrides_replace_derived_flags():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", overrides={"--max-num-seqs": 8})
    assert p.args["--max-num-seqs"] == 8 and p.running_slots <= 8


def test_fp8_kv_cache_override_doubles_the_tokens():
    base = plan("deepseek-r1-distill-llama-8b", "g6e.xlarge")
    fp8 = plan("deepseek-r1-distill-llama-8b", "g6e.xlarge", overrides={"--kv-cache-dtype": "fp8"})
    assert fp8.args["--kv-cache-dtype"] == "fp8"
    assert abs(fp8.kv_capacity_tokens - 2 * base.kv_capacity_tokens) <= 16


def test_overridden_context_beyond_the_kv_cache_is_refused():
    message = misfit("deepseek-r1-distill-llama-8b", "g5.xlarge",
                     overrides={"--max-model-len": 65536})
    assert "one sequence of 65536 tokens" in message


def test_more_sequences_than_the_cache_holds_is_allowed_but_not_promised():
    # vLLM preempts instead of refusing, so the override stands; the guarantee does not grow.
    base = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", max_context=32768)
    wide = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", max_context=32768,
                overrides={"--max-num-seqs": 256})
    assert wide.args["--max-num-seqs"] * 32768 > wide.kv_capacity_tokens
    assert wide.max_concurrent_sequences == base.max_concurrent_sequences


def test_vllm_refuses_fewer_batched_tokens_than_sequences():
    message = misfit("deepseek-r1-distill-qwen-7b", "g6e.xlarge",
                     overrides={"--max-num-seqs": 4096, "--max-num-batched-tokens": 2048})
    assert "--max-num-batched-tokens 2048 is below --max-num-seqs 4096" in message


def test_tgi_flags_are_checked_against_the_budget_it_will_infer():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi")
    # TGI 3 ignores --max-batch-total-tokens for flash-attention models: refused, with
    # the budget it would infer instead.
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi",
                     overrides={"--max-batch-total-tokens": 4096})
    assert "is ignored by TGI 3" in message and f"infers {p.kv_capacity_tokens} tokens" in message
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi",
                     overrides={"--max-input-tokens": 8192})
    assert "must be below --max-total-tokens 8192" in message
    # More concurrent requests than the inferred budget runs plus the queue: refused.
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi",
                     overrides={"--max-concurrent-requests": p.max_inflight_requests + 1})
    assert f"admits more than the {p.running_slots} requests" in message
    # A total beyond the inferred budget: TGI's router refuses to start (NotEnoughMemory).
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "tgi", max_context=131072,
                     overrides={"--max-input-tokens": 2048})
    assert "one sequence of 131072 tokens" in message


def test_ollama_parallel_override_beyond_the_cache_is_refused():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "ollama", max_context=32768)
    fits = p.kv_capacity_tokens // 32768
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", "ollama", max_context=32768,
                     overrides={"OLLAMA_NUM_PARALLEL": fits + 1})
    assert f"Use OLLAMA_NUM_PARALLEL <= {fits}" in message


def test_unknown_or_malformed_overrides_are_refused():
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", overrides={"--max-num-seq": 8})
    assert "--max-num-seq are not sizing flags" in message and "--max-num-seqs" in message
    message = misfit("deepseek-r1-distill-qwen-7b", "g5.xlarge", overrides={"--max-num-seqs": "many"})
    assert "--max-num-seqs must be a whole number" in message


# ---------------------------------------------------------------------------- throttles


def test_throttles_within_capacity_return_the_budget():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge")
    budget = check_throttle(p, replicas=3, rate=p.capacity_rps * 2, burst=p.max_inflight_requests)
    assert budget.capacity_rps == pytest.approx(3 * p.capacity_rps)
    assert budget.max_inflight_requests == 3 * p.max_inflight_requests


def test_rate_beyond_capacity_names_the_replicas_that_would_carry_it():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge")
    rate = p.capacity_rps * 4.5
    with pytest.raises(SizingError) as caught:
        check_throttle(p, replicas=2, rate=rate, burst=1)
    message = str(caught.value)
    assert "stack 'dev'" in message and "deepseek-r1-distill-qwen-7b-svc" in message
    assert "raise max_replicas to >= 5" in message
    check_throttle(p, replicas=5, rate=rate, burst=1)


def test_burst_beyond_what_replicas_accept_is_refused():
    p = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge", "ollama")
    with pytest.raises(SizingError, match=r"burst 1000 exceeds the \d+ requests"):
        check_throttle(p, replicas=1, rate=0.01, burst=1000)


def test_throttles_sum_over_every_model_behind_the_gateway():
    small = plan("deepseek-r1-distill-qwen-1.5b", "g6.xlarge")
    large = plan("deepseek-r1-distill-qwen-7b", "g5.xlarge")
    total = small.capacity_rps * 2 + large.capacity_rps
    assert check_throttle([small, large], replicas=[2, 1], rate=total * 0.99, burst=10)
    with pytest.raises(SizingError, match="lower the gateway rate"):
        check_throttle([small, large], replicas=[2, 1], rate=total * 1.01, burst=10)
