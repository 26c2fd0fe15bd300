"""The workload shape: family defaults, fitting to the context, and what sizing derives from it.

Pure functions on the catalog's real architectures; no mock engine.
"""
from __future__ import annotations

import pytest

from components.serving.catalog import FAMILY_WORKLOADS, get_instance, get_model
from components.serving.sizing import plan_runtime
from components.serving.workload import WorkloadShape, family_default


def plan(model, instance, runtime="vllm", max_context=16384, workload=None, **kwargs):
    return plan_runtime(get_model(model), get_instance(instance), runtime=runtime,
                        max_context=max_context, stack="dev", model_name="svc",
                        workload=workload, **kwargs)


def test_reasoning_models_default_to_deepseeks_32k_generation_length():
    for name in ("deepseek-r1", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-llama-70b"):
        shape = family_default(get_model(name))
        assert shape.output_max == 32768 and shape.output_typical >= 2048, name
    chat = family_default(get_model("deepseek-v3"))
    assert chat.output_max == 8192 and chat.output_typical < family_default(get_model("deepseek-r1")).output_typical
    assert all(w.source.startswith("https://") for w in FAMILY_WORKLOADS.values())


@pytest.mark.parametrize("context", [512, 2048, 8192, 16384, 32768, 36864, 131072])
def test_a_fitted_shape_always_fits_its_context_and_keeps_its_order(context):
    shape = family_default(get_model("deepseek-r1")).fitted(context)
    assert shape.sequence_tokens <= context
    assert shape.prompt_typical <= shape.prompt_p95 and shape.output_typical <= shape.output_max
    # The output keeps at least half of a context too short for the whole default.
    assert shape.output_max >= min(32768, context // 2)


def test_a_shape_that_fits_is_kept_as_given():
    shape = WorkloadShape(1000, 2000, 500, 4000)
    assert shape.fitted(8192) is shape
    # Too long: the prompt keeps its p95 up to half the context, the output the rest.
    assert shape.fitted(5000) == WorkloadShape(1000, 2000, 500, 3000)


def test_sequences_are_counted_at_the_p95_prompt_plus_the_max_output():
    # The example: the 32B distill on 4 x L40S at a 32K context. Counted at 1,024 +
    # 512 tokens it would promise hundreds of sequences; at the max output only what the
    # cache holds for p95 prompt + max output.
    short = WorkloadShape(1024, 1024, 512, 512)
    long = WorkloadShape(1024, 4096, 4096, 28672)
    a = plan("deepseek-r1-distill-qwen-32b", "g6e.12xlarge", max_context=32768, workload=short)
    b = plan("deepseek-r1-distill-qwen-32b", "g6e.12xlarge", max_context=32768, workload=long)
    assert b.args["--max-num-seqs"] == b.kv_capacity_tokens // 32768
    assert a.args["--max-num-seqs"] == min(256, a.kv_capacity_tokens // 1536)
    assert b.args["--max-num-seqs"] < a.args["--max-num-seqs"] / 10
    # The sequences it admits fit the KV cache at the max output length.
    assert b.args["--max-num-seqs"] * long.sequence_tokens <= b.kv_capacity_tokens
    # Longer typical outputs take longer: fewer requests per second.
    assert b.capacity_rps < a.capacity_rps / 5
    assert b.max_output_tokens == 28672


def test_a_shorter_shape_frees_the_sampler_peak_and_never_over_promises():
    for model, instance in (("deepseek-r1-distill-qwen-7b", "g6e.xlarge"),
                            ("deepseek-r1-distill-llama-8b", "g5.xlarge"),
                            ("deepseek-r1-distill-qwen-1.5b", "g6.xlarge")):
        p = plan(model, instance, max_context=8192)
        seqs = p.args["--max-num-seqs"]
        assert seqs * p.workload.sequence_tokens <= p.kv_capacity_tokens, model
        # The sampler's peak is computed with the sequences rendered, not vLLM's 256.
        assert p.memory.logits_gib == pytest.approx(
            min(seqs, p.max_num_batched_tokens) * get_model(model).vocab_size * 24 / 2**30)


def test_queues_and_throughput_follow_the_typical_request():
    fast = plan("deepseek-r1-distill-qwen-7b", "g6e.xlarge", workload=WorkloadShape(1024, 4096, 256, 12288))
    slow = plan("deepseek-r1-distill-qwen-7b", "g6e.xlarge", workload=WorkloadShape(1024, 4096, 4096, 12288))
    assert fast.args["--max-num-seqs"] == slow.args["--max-num-seqs"]
    assert fast.capacity_rps > 5 * slow.capacity_rps
    assert fast.max_inflight_requests > slow.max_inflight_requests
    assert slow.output_tokens_per_second == pytest.approx(slow.capacity_rps * 4096)


def test_ollama_and_tgi_take_their_concurrency_from_the_shape():
    tgi = plan("deepseek-r1-distill-llama-8b", "g6e.2xlarge", "tgi",
               workload=WorkloadShape(1024, 4096, 1024, 8192))
    assert tgi.args["--max-input-tokens"] == 16384 - 8192
    short = plan("deepseek-r1-distill-llama-8b", "g6e.2xlarge", "tgi",
                 workload=WorkloadShape(1024, 4096, 256, 8192))
    assert short.args["--max-concurrent-requests"] > tgi.args["--max-concurrent-requests"]
    ollama = plan("deepseek-r1-distill-qwen-7b", "g6e.xlarge", "ollama", max_context=8192,
                  quantization="gguf_q4_k_m", workload=WorkloadShape(512, 2048, 256, 4096))
    slow = plan("deepseek-r1-distill-qwen-7b", "g6e.xlarge", "ollama", max_context=8192,
                quantization="gguf_q4_k_m", workload=WorkloadShape(512, 2048, 4096, 4096))
    assert int(ollama.env["OLLAMA_MAX_QUEUE"]) > int(slow.env["OLLAMA_MAX_QUEUE"])
