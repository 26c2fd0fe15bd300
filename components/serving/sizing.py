"""GPU-aware sizing: does a model fit, how much KV cache is left, and which runtime flags follow.

Pure functions, plain data in and out, no Pulumi: the fleet, EKS and gateway components
call them while building resources, and the tests and ``tools/bench_kv.py`` call them
directly. Every number a plan derives is one the runtime would also arrive at (or a
smaller one): a plan that promises more KV cache than vLLM allocates would pass review
and then fail at start-up or under load.

Memory model (per GPU; each runtime release measures its overhead its own way, see
``RuntimeProfile`` and ``PROFILES``; the pinned images are vLLM v0.11 and TGI 3.3):

    budget      = gpu_memory_utilization x CUDA-visible device memory
    weights     = weight_bytes(model, quantization) / tensor_parallel
    non_torch   = what the release counts outside PyTorch's allocator (v0.11: only what
                  profiling adds after the CUDA context; more with tensor parallelism)
    activation  = peak of one forward pass over the batched token budget (prefill)
    logits      = sequences x vocab x logits_bytes (v0.11's sampler sorts float32 logits:
                  about 24 bytes per element; v0.6 about 40; v0.7 and TGI about 4)
    peak        = max(activation, logits) when the sampler runs after the forward pass
                  (vLLM), their sum otherwise
    kv_pool     = (budget - weights - non_torch - peak) x (1 - safety)
    kv_tokens   = floor(kv_pool / kv_bytes_per_token / block) x block

vLLM prints the same terms at start-up ("model weights take ...; non_torch_memory takes
...; PyTorch activation peak memory takes ...; the rest of the memory reserved for KV
Cache is ...", https://github.com/vllm-project/vllm/pull/10511) and refuses to start
when one sequence of ``--max-model-len`` tokens does not fit ("To serve at least one
request with the model's max seq len ..."). In v0.11 CUDA graphs are captured after the KV
cache is allocated and live outside the budget, which is why ``1 - gpu_memory_utilization``
of the device must stay free (``CUDA_GRAPH_HEADROOM_GIB``). TGI 3 derives its batch budget
the same way at warm-up, keeping ``1 - CUDA_MEMORY_FRACTION x 0.9`` free.

The workload shape (components/serving/workload.py) then sizes the scheduler: sequences of
p95 prompt + max output tokens that the KV cache holds, and the typical request for
throughput and queues.

``tools/bench_kv.py`` compares the predictions with published start-up logs, each under the
profile of its release, and must show every prediction at most 5% above, and within 20%
below, what vLLM reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from components.serving.catalog import (
    InstanceSpec,
    ModelSpec,
    get_runtime_image,
    instances_by_size,
)
from components.serving.workload import WorkloadShape, family_default

GIB = 1024**3
RUNTIMES = ("vllm", "tgi", "ollama")

# vLLM and TGI allocate the KV cache in blocks of 16 tokens.
KV_BLOCK_TOKENS = 16
# Share of the computed KV pool that a plan does not count on: allocator fragmentation
# and the few hundred MiB by which profiling differs between releases and ranks.
KV_SAFETY_FRACTION = 0.03
# Device memory left outside --gpu-memory-utilization for CUDA graphs (captured after
# the KV cache is allocated) and NCCL growth. A 4x RTX 4090 TP=4 deployment measured
# 2.4 GiB of graphs with the old capture sizes (https://github.com/vllm-project/vllm/issues/7553);
# current piecewise capture of decode sizes uses less on single-GPU replicas.
CUDA_GRAPH_HEADROOM_GIB = 1.5
# non_torch memory grows with the device: 0.35 GiB on a 24 GiB RTX 3090, 1.79 GiB on an
# 80 GB H100, and doubles with tensor parallelism (NCCL and custom all-reduce buffers:
# 3.58 GiB at TP=2 on H100). Sources: vllm issue #10517 and PR #10511 start-up logs.
NON_TORCH_BASE_GIB = 0.3
NON_TORCH_PER_DEVICE_GIB = 0.018
# vLLM V1's defaults for the OpenAI server: larger GPUs (>= 70 GiB, H100 class) get
# 8192 batched tokens, smaller ones 2048; max_num_seqs defaults to 256.
LARGE_GPU_GIB = 70.0
DEFAULT_MAX_NUM_SEQS = 256
# Ollama serves all parallel slots from one llama.cpp context (batch 512 tokens); its
# documentation only discusses a handful of slots, and per-slot latency grows quickly.
OLLAMA_MAX_PARALLEL = 16
OLLAMA_BATCH_TOKENS = 512
# Throughput estimates use datasheet peaks scaled down: decode rarely reaches more than
# half the memory bandwidth, prefill a third of dense tensor throughput. Runtime factors
# reflect continuous batching quality (Ollama batches parallel slots less efficiently).
BANDWIDTH_EFFICIENCY = 0.5
COMPUTE_EFFICIENCY = 0.35
RUNTIME_THROUGHPUT_FACTOR = {"vllm": 1.0, "tgi": 0.9, "ollama": 0.5}


class SizingError(ValueError):
    """A deployment that would not start, would not fit, or would be over-promised.

    The message names the stack, the model and the numbers, and says what would fit.
    """


# ---------------------------------------------------------------------- quantization


@dataclass(frozen=True)
class Quantization:
    """How many bits one weight takes on the GPU, and which runtimes load it.

    ``keeps_embeddings_16bit``: AWQ, GPTQ, FP8 and INT8 checkpoints keep the input
    embedding and LM head in 16 bits, which matters for large-vocabulary models
    (Qwen's 152k x 3584 embedding is 1.1B parameters). GGUF files quantize them too.
    """

    name: str
    bits_per_weight: float
    keeps_embeddings_16bit: bool
    runtimes: frozenset[str]
    note: str


QUANTIZATIONS: dict[str, Quantization] = {q.name: q for q in (
    Quantization("bf16", 16.0, False, frozenset({"vllm", "tgi"}), "native 16-bit"),
    Quantization("fp16", 16.0, False, frozenset({"vllm", "tgi", "ollama"}),
                 "16-bit; for Ollama the GGUF F16 file"),
    # Block-scaled FP8 (DeepSeek-V3/R1 native, 128x128 blocks): one float32 scale per
    # 16384 weights adds 0.002 bits, below rounding.
    Quantization("fp8", 8.0, True, frozenset({"vllm", "tgi"}), "FP8 e4m3 weights"),
    Quantization("int8", 8.0, True, frozenset({"vllm", "tgi"}),
                 "INT8 weights (W8A8 / EETQ), per-channel scales"),
    # 4-bit weights with group size 128: a 16-bit scale and a 4-bit zero point per group
    # add (16 + 4) / 128 = 0.16 bits per weight.
    Quantization("awq", 4.16, True, frozenset({"vllm", "tgi"}), "AWQ int4, group 128"),
    Quantization("gptq", 4.16, True, frozenset({"vllm", "tgi"}), "GPTQ int4, group 128"),
    # llama.cpp reports the mixed Q4_K/Q6_K file of DeepSeek-R1-Distill-Llama-8B as
    # "4.58 GiB (4.89 BPW)" (https://github.com/gpustack/gpustack/issues/1060).
    Quantization("gguf_q4_k_m", 4.89, False, frozenset({"ollama"}),
                 "GGUF Q4_K_M, Ollama's default"),
    # Q8_0: 32 int8 weights share one fp16 scale: (32 x 8 + 16) / 32 = 8.5 bits.
    Quantization("gguf_q8_0", 8.5, False, frozenset({"ollama"}), "GGUF Q8_0"),
)}


def get_quantization(name: str) -> Quantization:
    try:
        return QUANTIZATIONS[name]
    except KeyError:
        raise SizingError(
            f"unknown quantization {name!r}; allowed: {', '.join(sorted(QUANTIZATIONS))}"
        ) from None


def default_quantization(model: ModelSpec, runtime: str) -> str:
    """What a runtime loads when the inventory names no quantization.

    vLLM and TGI load the checkpoint as published (BF16, or FP8 for DeepSeek-V3/R1);
    Ollama's library serves Q4_K_M unless a tag says otherwise.
    """
    if runtime == "ollama":
        return "gguf_q4_k_m"
    return model.native_dtype


# ------------------------------------------------------------------ memory formulas


def weight_bytes(model: ModelSpec, quantization: str) -> int:
    """Bytes of weights for the whole model (all ranks together).

    16-bit: 2 bytes/parameter. Quantized: ``bits_per_weight / 8`` per parameter, except
    the embeddings of formats that keep them in 16 bits.
    """
    quant = get_quantization(quantization)
    if quant.keeps_embeddings_16bit:
        embeddings = model.embedding_params
        body = model.total_params - embeddings
        return math.ceil(embeddings * 2 + body * quant.bits_per_weight / 8)
    return math.ceil(model.total_params * quant.bits_per_weight / 8)


def routed_expert_bytes(model: ModelSpec, quantization: str) -> int:
    """Bytes of the routed experts (all of them): the part of an MoE model that vLLM shards
    over the whole tensor x data parallel group, while attention and dense layers are
    sharded by tensor parallelism alone and replicated on every data-parallel rank
    (https://docs.vllm.ai/en/latest/serving/data_parallel_deployment.html: "the expert
    layers form an (EP or TP) group of size (DP x TP)")."""
    quant = get_quantization(quantization)
    return math.ceil(model.routed_expert_params * quant.bits_per_weight / 8)


def weight_bytes_per_gpu(model: ModelSpec, quantization: str, *, tensor_parallel: int,
                         pipeline_parallel: int = 1, data_parallel: int = 1) -> float:
    """Weight bytes on one GPU: pipeline stages split the layers, tensor parallelism splits
    each layer, and MoE experts are split over ``tensor_parallel x data_parallel`` ranks
    whether expert parallelism is on (whole experts per rank) or off (every expert
    tensor-parallel over the same group): the same bytes either way."""
    total = weight_bytes(model, quantization)
    experts = routed_expert_bytes(model, quantization)
    dense = total - experts
    return (dense / tensor_parallel + experts / (tensor_parallel * data_parallel)) / pipeline_parallel


def kv_heads_per_rank(model: ModelSpec, tensor_parallel: int) -> int:
    """KV heads one tensor-parallel rank stores.

    vLLM splits KV heads across ranks when there are at least as many heads as ranks,
    and replicates one head per rank otherwise (so 4 KV heads at TP=8 still cost a head
    per rank).
    """
    return max(1, model.num_kv_heads // tensor_parallel)


def kv_bytes_per_token(model: ModelSpec, *, kv_dtype_bytes: float = 2.0,
                       tensor_parallel: int = 1, compressed_mla: bool = True) -> int:
    """KV cache bytes one token occupies on one GPU.

    Standard / GQA attention: ``2 (K and V) x layers x kv_heads_per_rank x head_dim x
    bytes``, split across tensor-parallel ranks by KV heads.

    MLA (DeepSeek-V2/V3/R1) in vLLM: ``layers x (kv_lora_rank + qk_rope_head_dim) x
    bytes``, the compressed latent plus the shared RoPE key. It is NOT divided by tensor
    parallelism: every rank holds the full latent. DeepSeek-V2-Lite in bf16:
    27 x (512 + 64) x 2 = 31,104 bytes (vLLM asks for "0.95 GiB KV cache" for 32768
    tokens, https://github.com/vllm-project/vllm/issues/15871).

    ``compressed_mla=False`` models a runtime that expands MLA into per-head K (nope +
    rope dims) and V, as llama.cpp did before it supported MLA; those heads do split.
    """
    if model.uses_mla and compressed_mla:
        elements = model.num_layers * (model.kv_lora_rank + model.qk_rope_head_dim)
    elif model.uses_mla:
        heads = max(1, model.num_attention_heads // tensor_parallel)
        per_head = (model.qk_nope_head_dim + model.qk_rope_head_dim) + model.v_head_dim
        elements = model.num_layers * heads * per_head
    else:
        elements = 2 * model.num_layers * kv_heads_per_rank(model, tensor_parallel) * model.head_dim
    return math.ceil(elements * kv_dtype_bytes)


def activation_bytes_per_token(model: ModelSpec, tensor_parallel: int = 1) -> int:
    """Peak activation bytes per prefill token on one GPU (16-bit activations).

    Dominated by the MLP: gate/up output (2 x intermediate) and the activated half
    (1 x intermediate), split by tensor parallelism, plus about three hidden-size copies
    (residual, norm output, attention output) that every rank holds in full. For MoE the
    routed experts' widths add up per token; MLA expands the latent into per-head Q/K/V
    during prefill. Measured for Llama-3.1-8B: vLLM's activation peak grew by 0.92 GiB
    from 20k to 29k batched tokens (issue #10517), 110 KB/token; this formula gives
    2 x (3 x 14336 + 3 x 4096) = 110,592 bytes.
    """
    intermediate = model.intermediate_size
    if model.moe_intermediate_size and model.num_experts_per_tok:
        routed = model.moe_intermediate_size * (model.num_experts_per_tok + (model.n_shared_experts or 0))
        intermediate = max(intermediate, routed)
    elements = 3 * intermediate / tensor_parallel + 3 * model.hidden_size
    if model.uses_mla:
        per_head = model.qk_nope_head_dim + model.qk_rope_head_dim + model.v_head_dim
        elements += model.num_attention_heads * per_head / tensor_parallel
    return math.ceil(elements * 2)


@dataclass(frozen=True)
class RuntimeProfile:
    """How one runtime release measures its overhead at start-up (see ``PROFILES``).

    ``non_torch_*``: memory outside PyTorch's allocator that the release counts against its
    budget (per rank, GiB). ``logits_bytes``: bytes per (sequence x vocabulary) element at
    the sampler's peak. ``sampler_after_forward``: the sampler's peak follows the forward
    pass (the allocator's peak is the larger of the two) instead of adding to it.
    ``cuda_graphs_in_budget``: graphs are captured inside the budget; otherwise they need
    device memory outside ``gpu_memory_utilization`` (``CUDA_GRAPH_HEADROOM_GIB``).
    ``reserve_fraction``: the share of ``CUDA_MEMORY_FRACTION`` TGI keeps free
    (``1 - TGI_WIGGLE_ROOM``); the budget is ``fraction x (1 - reserve) x device``.
    """

    name: str
    runtime: str
    non_torch_base_gib: float
    non_torch_per_device_gib: float
    non_torch_tp_gib: float
    logits_bytes: float
    sampler_after_forward: bool
    cuda_graphs_in_budget: bool
    reserve_fraction: float
    source: str

    def non_torch_gib(self, gpu_total_gib: float, tensor_parallel: int) -> float:
        per_rank = self.non_torch_base_gib + self.non_torch_per_device_gib * gpu_total_gib
        return per_rank + (self.non_torch_tp_gib if tensor_parallel > 1 else 0.0)


PROFILES: dict[str, RuntimeProfile] = {p.name: p for p in (
    # V0 up to v0.6.5: the peak is total minus free memory after profiling, so the CUDA
    # context and cuBLAS workspaces count as non-torch: 0.35 GiB on a 24 GiB RTX 3090
    # (issue #10517), 1.79 GiB on an 80 GB H100 and 3.58 GiB at TP=2 (PR #10511), 0.44 to
    # 0.47 GiB on an 8 GB GTX 1080. The profile then samples one token for each of
    # max_num_seqs sequences with top-k/top-p set (vllm/model_executor/layers/sampler.py):
    # the fp16 logits, a float32 copy, the sorted values, two int64 index tensors and the
    # softmax/cumsum copies, about 40 bytes per element, after the forward pass has freed
    # its activations, so the peak is the larger of the two. v0.6.4.post1 logs show it
    # where the forward pass is small: peak torch memory minus weights is 0.48 GiB for
    # phi-1.5 (256 x 51,200 vocabulary), 1.17 GiB for Llama-3.2-1B (256 x 128,256) and
    # 0.33 GiB for a 32,000-vocabulary 1B model (= 38 to 43 bytes per element), and
    # PR #10511 prints a 1.26 GiB "activation" peak for Llama-3-8B at TP=2 over 8192
    # tokens, whose forward pass needs 0.52 GiB; where the forward pass is larger it alone
    # is the peak (2.07 GiB over 20k tokens on the RTX 3090 of issue #10517).
    RuntimeProfile("vllm-0.6", "vllm", 0.3, 0.018, 0.3 + 0.018 * 79.22, 40.0, True, False, 0.0,
                   "https://github.com/vllm-project/vllm/pull/10511"),
    # v0.7/0.8 (V0 with memory_profiling): the baseline is taken after the CUDA context, so
    # non_torch is what profiling adds: 0.25 GiB on 2x RTX 4090 TP=2 (issue #13061), 0.20 GiB
    # on RTX 3090s (PR #14447). With TP > 1 the capacity is the smallest rank's: in #13061
    # the driver printed 8.69 GiB for the KV cache, yet the engine held 81,536 tokens
    # (7.47 GiB), so another rank had about 1.2 GiB less; the plan counts that per rank.
    RuntimeProfile("vllm-0.7", "vllm", 0.25, 0.0, 1.25, 4.0, True, False, 0.0,
                   "https://github.com/vllm-project/vllm/issues/13061"),
    # v0.11 (V1, the pinned image). gpu_worker.determine_available_memory: available =
    # total x gpu_memory_utilization - (weights + torch peak increase + non-torch increase),
    # measured against the snapshot taken after the CUDA context exists
    # (vllm/v1/worker/gpu_worker.py, vllm/utils memory_profiling). profile_run runs the
    # forward pass over max_num_batched_tokens, then _dummy_sampler_run over
    # min(max_num_seqs, max_num_batched_tokens) sequences with top-k/top-p set, so the
    # sampler sorts the logits: bf16 logits (2 bytes), their float32 copy (4), sorted
    # values (4), int64 sort indices (8), softmax probabilities (4) = 22 bytes per element,
    # rounded up to 24. CUDA graphs are captured after the KV cache is allocated, outside
    # the budget (graph memory profiling became the default only later, in v0.21).
    # With TP > 1 the NCCL communicators and custom all-reduce buffers add to non-torch, and
    # capacity is the smallest rank's: the 1.25 GiB seen on v0.7 (above) is kept.
    RuntimeProfile("vllm-0.11", "vllm", 0.25, 0.0, 1.25, 24.0, True, False, 0.0,
                   "https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/v1/worker/gpu_worker.py"),
    # TGI 3.3 (flash-attention models): warmup() runs one prefill of
    # --max-batch-prefill-tokens, then gives the KV cache
    # free - (1 - CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM) x total, TGI_WIGGLE_ROOM = 0.90
    # (server/text_generation_server/models/flash_causal_lm.py warmup,
    # utils/import_utils.py get_cuda_free_memory, models/globals.py). The prefill computes
    # logits only for each request's last token; CUDA graphs are captured afterwards from
    # the reserve.
    RuntimeProfile("tgi-3.3", "tgi", 0.3, 0.0, 0.75, 4.0, True, True, 0.10,
                   "https://github.com/huggingface/text-generation-inference/blob/v3.3.5/"
                   "server/text_generation_server/models/flash_causal_lm.py"),
)}
# The profile of each runtime image the catalog pins.
PINNED_PROFILE = {"vllm": PROFILES["vllm-0.11"], "tgi": PROFILES["tgi-3.3"]}


def non_torch_gib(gpu_total_gib: float, tensor_parallel: int,
                  profile: RuntimeProfile | None = None) -> float:
    """Memory outside PyTorch's allocator the runtime counts against its budget."""
    return (profile or PINNED_PROFILE["vllm"]).non_torch_gib(gpu_total_gib, tensor_parallel)


def sampler_peak_bytes(model: ModelSpec, max_num_seqs: int, profile: RuntimeProfile) -> int:
    """The sampler's peak at start-up: ``sequences x vocabulary x logits_bytes``."""
    return math.ceil(max_num_seqs * model.vocab_size * profile.logits_bytes)


@dataclass(frozen=True)
class MemoryBudget:
    """Where one GPU's memory goes, in GiB, and the KV tokens a replica gets from it."""

    gpu_total_gib: float
    gpu_memory_utilization: float
    budget_gib: float
    weights_gib: float
    non_torch_gib: float
    activation_gib: float
    logits_gib: float
    kv_pool_gib: float
    kv_bytes_per_token: int
    kv_capacity_tokens: int
    # The allocator's peak during profiling: activation and logits, added or the larger.
    peak_gib: float = 0.0

    @property
    def overhead_gib(self) -> float:
        return self.non_torch_gib + self.peak_gib

    @property
    def weights_fit(self) -> bool:
        return self.kv_pool_gib > 0


def gpu_memory_budget(model: ModelSpec, *, gpu_total_gib: float, gpu_memory_utilization: float,
                      tensor_parallel: int, quantization: str, prefill_tokens: int,
                      max_num_seqs: int, kv_dtype_bytes: float = 2.0,
                      profile: RuntimeProfile | None = None, pipeline_parallel: int = 1,
                      data_parallel: int = 1) -> MemoryBudget:
    """KV capacity of one vLLM / TGI replica under ``profile`` (default: the pinned vLLM).

    ``prefill_tokens`` is the batched token budget the start-up profile runs (vLLM
    ``--max-num-batched-tokens``, TGI ``--max-batch-prefill-tokens``); ``max_num_seqs``
    the sequences the sampler profiles (TGI: the requests in its warm-up prefill).
    Capacity is what the most loaded rank can hold: ranks are symmetric here, and for
    MLA every tensor-parallel rank holds every token's latent, so the per-rank pool is
    the engine's pool in tokens. Pipeline stages hold only their own layers' KV, so a
    token costs each GPU ``ceil(layers / pipeline_parallel)`` layers. With data-parallel
    attention every DP rank is its own engine with its own KV cache: the capacity
    returned is one rank's, a replica holds ``data_parallel`` times as many tokens.
    """
    profile = profile or PINNED_PROFILE["vllm"]
    budget = gpu_memory_utilization * gpu_total_gib
    weights = weight_bytes_per_gpu(model, quantization, tensor_parallel=tensor_parallel,
                                   pipeline_parallel=pipeline_parallel,
                                   data_parallel=data_parallel) / GIB
    non_torch = profile.non_torch_gib(gpu_total_gib, tensor_parallel)
    activation = prefill_tokens * activation_bytes_per_token(model, tensor_parallel) / GIB
    sequences = max(1, min(max_num_seqs, prefill_tokens)) if prefill_tokens else max_num_seqs
    logits = sampler_peak_bytes(model, sequences, profile) / GIB
    peak = max(activation, logits) if profile.sampler_after_forward else activation + logits
    raw_pool = budget - weights - non_torch - peak
    pool = raw_pool * (1 - KV_SAFETY_FRACTION) if raw_pool > 0 else raw_pool
    per_token = kv_bytes_per_token(model, kv_dtype_bytes=kv_dtype_bytes,
                                   tensor_parallel=tensor_parallel)
    if pipeline_parallel > 1:
        stage_layers = math.ceil(model.num_layers / pipeline_parallel)
        per_token = math.ceil(per_token * stage_layers / model.num_layers)
    tokens = _round_down_to_blocks(pool * GIB / per_token) if pool > 0 else 0
    return MemoryBudget(gpu_total_gib, gpu_memory_utilization, budget, weights, non_torch,
                        activation, logits, pool, per_token, tokens, peak)


def ollama_memory_budget(model: ModelSpec, *, gpu_total_gib: float, gpu_count: int,
                         gpu_memory_utilization: float, quantization: str,
                         kv_dtype_bytes: float = 2.0) -> MemoryBudget:
    """KV capacity of one Ollama server spreading the model's layers over ``gpu_count`` GPUs.

    llama.cpp splits layers (not heads) across GPUs, so weights and KV divide by the
    GPU count and each GPU carries its own context and compute graph (a batch of 512
    tokens in float32 through the widest layer and the vocabulary projection).
    The KV cache is the uncompressed per-head form for MLA models: we could not confirm
    that Ollama 0.12 stores DeepSeek's compressed latent, and assuming it would
    over-promise by about 70x. In the returned budget ``non_torch_gib`` is the CUDA
    context and ``activation_gib`` the compute graph; all values are per GPU.
    """
    budget = gpu_memory_utilization * gpu_total_gib
    weights = weight_bytes(model, quantization) / gpu_count / GIB
    context = NON_TORCH_BASE_GIB + NON_TORCH_PER_DEVICE_GIB * gpu_total_gib
    intermediate = max(model.intermediate_size,
                       (model.moe_intermediate_size or 0) * (model.num_experts_per_tok or 0))
    graph = OLLAMA_BATCH_TOKENS * 4 * (model.vocab_size + 4 * model.hidden_size + 3 * intermediate) / GIB
    raw_pool = budget - weights - context - graph
    pool = raw_pool * (1 - KV_SAFETY_FRACTION) if raw_pool > 0 else raw_pool
    per_token_all_layers = kv_bytes_per_token(model, kv_dtype_bytes=kv_dtype_bytes,
                                              compressed_mla=False)
    per_token_per_gpu = math.ceil(per_token_all_layers / gpu_count)
    tokens = int(pool * GIB // per_token_per_gpu) if pool > 0 else 0
    return MemoryBudget(gpu_total_gib, gpu_memory_utilization, budget, weights, context,
                        graph, 0.0, pool, per_token_per_gpu, tokens)


def _round_down_to_blocks(tokens: float) -> int:
    return int(tokens // KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


# --------------------------------------------------------------------- throughput


def estimate_capacity_rps(model: ModelSpec, instance: InstanceSpec, *, runtime: str,
                          gpus: int, weight_bytes_per_gpu: float, kv_bytes_per_token_per_gpu: int,
                          concurrency: int, prompt_tokens: int, output_tokens: int) -> float:
    """Sustainable requests per second for one replica (an estimate, not a promise).

    Decode is memory-bound: each step reads the GPU's weights plus the KV of every
    running sequence, ``step = (weights + concurrency x context x kv_per_token) /
    (bandwidth x BANDWIDTH_EFFICIENCY)``, and never faster than the matmul FLOPs
    ``2 x active_params x concurrency``. Prefill is compute-bound,
    ``2 x active_params x prompt / (tensor FLOPS x COMPUTE_EFFICIENCY)``. A request then
    costs ``prefill + output x step / concurrency`` GPU-seconds; the replica sustains
    the inverse, scaled by the runtime's batching factor. MoE models count their active
    parameters for FLOPs but all weights for bandwidth (large batches touch most experts).
    """
    gpu = instance.gpu
    bandwidth = gpu.memory_bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY
    flops = gpu.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY * gpus
    active = model.active_params or model.total_params
    average_context = prompt_tokens + output_tokens / 2
    step_memory = (weight_bytes_per_gpu + concurrency * average_context * kv_bytes_per_token_per_gpu) / bandwidth
    step_compute = 2 * active * concurrency / flops
    step = max(step_memory, step_compute)
    prefill = 2 * active * prompt_tokens / flops
    gpu_seconds_per_request = prefill + output_tokens * step / concurrency
    return RUNTIME_THROUGHPUT_FACTOR[runtime] / gpu_seconds_per_request


# ---------------------------------------------------------------------- runtime plan


@dataclass(frozen=True)
class RuntimePlan:
    """Everything derived for one replica of one model on one instance type.

    ``args`` are the runtime's CLI flags (vLLM, TGI) and ``env`` its environment
    variables (Ollama); render them with ``cli_args()``. ``kv_capacity_tokens`` is what
    the replica's KV cache holds, ``max_concurrent_sequences`` how many sequences of
    ``max_model_len`` tokens fit at once (the guarantee), ``running_slots`` how many
    typical requests run together (the scheduler cap), and ``max_inflight_requests``
    how many a replica accepts (running plus a queue that drains within
    ``max_queue_wait_seconds``) before it rejects or lets waits grow. ``capacity_rps``
    is an estimate for the workload in ``assumptions``. For Ollama, which splits layers
    rather than tensors, ``tensor_parallel`` is the number of GPUs the layers spread over.
    """

    stack: str
    model_name: str
    model: str
    instance_type: str
    runtime: str
    image: str
    quantization: str
    tensor_parallel: int
    gpus_per_replica: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_batched_tokens: int
    memory: MemoryBudget
    kv_capacity_tokens: int
    max_concurrent_sequences: int
    running_slots: int
    max_inflight_requests: int
    capacity_rps: float
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workload: WorkloadShape | None = None
    assumptions: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # Nodes one replica spans (vLLM pipeline stages, one per node), data-parallel
    # attention ranks per replica, and whether MoE experts are placed by expert parallelism.
    pipeline_parallel: int = 1
    data_parallel: int = 1
    expert_parallel: bool = False

    @property
    def nodes_per_replica(self) -> int:
        return self.pipeline_parallel

    @property
    def gpus_per_node(self) -> int:
        return self.gpus_per_replica // self.pipeline_parallel

    @property
    def max_output_tokens(self) -> int:
        """The generation ceiling the runtime is given (the workload's max output)."""
        return self.workload.output_max if self.workload else self.max_model_len

    @property
    def output_tokens_per_second(self) -> float:
        """Generated tokens per second at ``capacity_rps`` with typical requests."""
        typical = self.workload.output_typical if self.workload else 0
        return self.capacity_rps * typical

    def cli_args(self) -> list[str]:
        """``args`` as a command line: ``--flag value``; boolean flags bare when true."""
        rendered: list[str] = []
        for flag, value in self.args.items():
            if value is True:
                rendered.append(flag)
            elif value is not False and value is not None:
                rendered.extend([flag, str(value)])
        return rendered


# Flags a stack may override, per runtime. Anything else belongs to the runtime
# components (logging, auth, ports), not to sizing, and is refused here so a typo in a
# sizing flag cannot slip through unchecked.
OVERRIDABLE = {
    "vllm": ("--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
             "--tensor-parallel-size", "--gpu-memory-utilization", "--kv-cache-dtype",
             "--enforce-eager"),
    "tgi": ("--max-input-tokens", "--max-total-tokens", "--max-batch-prefill-tokens",
            "--max-batch-total-tokens", "--max-concurrent-requests", "--num-shard",
            "--cuda-memory-fraction"),
    "ollama": ("OLLAMA_NUM_PARALLEL", "OLLAMA_CONTEXT_LENGTH", "OLLAMA_MAX_QUEUE",
               "OLLAMA_KV_CACHE_TYPE"),
}
_KV_DTYPE_BYTES = {"auto": 2.0, "bfloat16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
_OLLAMA_KV_BYTES = {"f16": 2.0, "q8_0": 8.5 / 8, "q4_0": 4.5 / 8}


@dataclass(frozen=True)
class _Request:
    """The inputs of one planning attempt; suggestions vary them to find what fits."""

    model: ModelSpec
    instance: InstanceSpec
    runtime: str
    quantization: str
    max_model_len: int
    tensor_parallel: int | None
    gpu_memory_utilization: float
    overrides: Mapping[str, Any]
    stack: str
    model_name: str
    workload: WorkloadShape
    max_queue_wait_seconds: float
    pipeline_parallel: int = 1
    data_parallel: int = 1
    expert_parallel: bool = False

    def where(self) -> str:
        return (f"stack {self.stack!r}, model {self.model_name!r} ({self.model.name}, "
                f"{self.quantization}) on {self.instance.name} with {self.runtime}")


class _Misfit(Exception):
    """A planning attempt that does not fit; ``kind`` says which remedy can help."""

    def __init__(self, kind: str, problem: str, request: _Request) -> None:
        super().__init__(problem)
        self.kind = kind  # "weights", "kv", "tp", "config"
        self.problem = problem
        self.request = request


def plan_runtime(model: ModelSpec, instance: InstanceSpec, *, runtime: str, max_context: int,
                 quantization: str | None = None, tensor_parallel: int | None = None,
                 gpu_memory_utilization: float = 0.9, overrides: Mapping[str, Any] | None = None,
                 stack: str, model_name: str, workload: WorkloadShape | None = None,
                 max_queue_wait_seconds: float = 30.0, pipeline_parallel: int = 1,
                 data_parallel: int = 1, expert_parallel: bool = False) -> RuntimePlan:
    """Size one replica of ``model`` on ``instance`` and derive the runtime's flags.

    ``max_context`` becomes ``--max-model-len`` (vLLM), ``--max-total-tokens`` (TGI) or
    ``OLLAMA_CONTEXT_LENGTH``. ``tensor_parallel`` defaults to the largest size the
    model's heads allow on the instance (one replica per instance uses all its GPUs).
    ``overrides`` maps runtime flags (see ``OVERRIDABLE``) to values that replace the
    derived ones; they are checked like derived values. ``workload`` is the request shape
    (components/serving/workload.py; default: the model family's, fitted to the context):
    each sequence is reserved KV for a p95 prompt plus the max output, throughput and
    queues use the typical request; ``max_queue_wait_seconds`` bounds how long an
    admitted request may wait.

    ``pipeline_parallel`` spreads one replica over that many nodes (vLLM pipeline stages,
    tensor parallel within each node); ``data_parallel`` and ``expert_parallel`` are
    vLLM's MoE options: data-parallel attention ranks (each holds its own KV cache, the
    experts are sharded across all ranks) and expert placement instead of tensor-sliced
    experts. All three are vLLM-only.

    Raises ``SizingError`` when the runtime would refuse to start, the weights do not
    fit, or an override asks for more than the runtime would allocate; the message
    proposes the smallest catalog instance type, tensor-parallel size or quantization
    that fits.
    """
    if runtime not in RUNTIMES:
        raise SizingError(f"stack {stack!r}, model {model_name!r}: unknown runtime {runtime!r}; "
                          f"allowed: {', '.join(RUNTIMES)}")
    quantization = quantization or default_quantization(model, runtime)
    try:
        quant = get_quantization(quantization)
    except SizingError as error:
        raise SizingError(f"stack {stack!r}, model {model_name!r}: {error}") from None
    if runtime not in quant.runtimes:
        allowed = sorted(q.name for q in QUANTIZATIONS.values() if runtime in q.runtimes)
        raise SizingError(f"stack {stack!r}, model {model_name!r}: {runtime} cannot load "
                          f"quantization {quantization!r}; {runtime} loads: {', '.join(allowed)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDABLE[runtime]))
    if unknown:
        raise SizingError(f"stack {stack!r}, model {model_name!r}: {runtime} overrides "
                          f"{', '.join(unknown)} are not sizing flags; overridable: "
                          f"{', '.join(OVERRIDABLE[runtime])}")
    where = f"stack {stack!r}, model {model_name!r}"
    if runtime != "vllm" and (pipeline_parallel > 1 or data_parallel > 1 or expert_parallel):
        raise SizingError(f"{where}: pipeline_parallel, data_parallel and expert_parallel are "
                          f"vLLM options; {runtime} serves one node with tensor parallelism only")
    if pipeline_parallel < 1 or data_parallel < 1:
        raise SizingError(f"{where}: pipeline_parallel {pipeline_parallel} and data_parallel "
                          f"{data_parallel} must be at least 1")
    if pipeline_parallel > 1 and data_parallel > 1:
        raise SizingError(f"{where}: data-parallel attention across pipeline stages is not "
                          f"supported here; use pipeline_parallel (nodes) or data_parallel, not both")
    if (expert_parallel or data_parallel > 1) and not model.is_moe:
        raise SizingError(f"{where}: expert_parallel and data_parallel (data-parallel attention) "
                          f"are for MoE models; {model.name} is dense, use tensor_parallel")
    request = _Request(model, instance, runtime, quantization, max_context, tensor_parallel,
                       gpu_memory_utilization, overrides, stack, model_name,
                       workload or family_default(model), max_queue_wait_seconds,
                       pipeline_parallel, data_parallel, expert_parallel)
    try:
        return _plan(request)
    except _Misfit as misfit:
        raise SizingError(_explain(misfit)) from None


def _plan(request: _Request) -> RuntimePlan:
    request = _apply_common_overrides(request)
    _check_context(request)
    # An explicit shape is checked against max_context by the inventory; a shorter context
    # (an override, or a trial of the suggestions) keeps the output and shortens the prompt.
    request = replace(request, workload=request.workload.fitted(request.max_model_len))
    if request.runtime == "ollama":
        return _plan_ollama(request)
    return _plan_paged(request)


def _apply_common_overrides(request: _Request) -> _Request:
    """Overrides that change the inputs every later step uses (context, TP, memory share)."""
    o = request.overrides
    names = {"vllm": ("--max-model-len", "--tensor-parallel-size", "--gpu-memory-utilization"),
             "tgi": ("--max-total-tokens", "--num-shard", "--cuda-memory-fraction"),
             "ollama": ("OLLAMA_CONTEXT_LENGTH", None, None)}[request.runtime]
    context_flag, tp_flag, util_flag = names
    changes: dict[str, Any] = {}
    if context_flag in o:
        changes["max_model_len"] = _as_int(request, context_flag, o[context_flag])
    if tp_flag and tp_flag in o:
        changes["tensor_parallel"] = _as_int(request, tp_flag, o[tp_flag])
    if util_flag and util_flag in o:
        util = _as_float(request, util_flag, o[util_flag])
        if request.runtime == "tgi":
            # TGI gives the KV cache CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM of the device.
            util *= 1 - PINNED_PROFILE["tgi"].reserve_fraction
        changes["gpu_memory_utilization"] = util
    return replace(request, **changes)


def _check_context(request: _Request) -> None:
    model = request.model
    if request.max_model_len < 1:
        raise _Misfit("config", f"max context {request.max_model_len} must be at least 1 token",
                      request)
    if request.max_model_len > model.max_position_embeddings:
        raise _Misfit(
            "config",
            f"max context {request.max_model_len} exceeds the model's "
            f"max_position_embeddings {model.max_position_embeddings}; {request.runtime} "
            f"refuses longer contexts. Set max_context <= {model.max_position_embeddings}",
            request)
    util = request.gpu_memory_utilization
    if not 0.1 <= util <= 0.99:
        raise _Misfit("config", f"gpu_memory_utilization {util} must be between 0.1 and 0.99",
                      request)


def _valid_tensor_parallel_sizes(model: ModelSpec, gpu_count: int) -> list[int]:
    """TP sizes vLLM/TGI accept: they divide the attention heads, and KV heads either
    divide evenly across ranks or ranks divide evenly over KV heads (replication)."""
    sizes = []
    for tp in range(1, gpu_count + 1):
        if model.num_attention_heads % tp:
            continue
        if not model.uses_mla:
            kv = model.num_kv_heads
            if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
                continue
        sizes.append(tp)
    return sizes


def _resolve_tensor_parallel(request: _Request) -> int:
    # Data-parallel ranks share the node's GPUs with tensor parallelism (TP x DP per node).
    per_rank = request.instance.gpu_count // request.data_parallel
    if per_rank < 1:
        raise _Misfit("tp", f"data_parallel {request.data_parallel} needs at least "
                      f"{request.data_parallel} GPUs but {request.instance.name} has "
                      f"{request.instance.gpu_count}", request)
    valid = _valid_tensor_parallel_sizes(request.model, per_rank)
    if request.tensor_parallel is None:
        return max(valid)
    tp = request.tensor_parallel
    if tp * request.data_parallel > request.instance.gpu_count:
        ranks = f" x data parallel {request.data_parallel}" if request.data_parallel > 1 else ""
        raise _Misfit("tp", f"tensor parallel size {tp}{ranks} needs {tp * request.data_parallel} "
                      f"GPUs but {request.instance.name} has {request.instance.gpu_count}", request)
    if tp not in valid:
        raise _Misfit(
            "tp",
            f"tensor parallel size {tp} does not divide the model's "
            f"{request.model.num_attention_heads} attention heads / "
            f"{request.model.num_kv_heads} KV heads; valid sizes on "
            f"{request.instance.name}: {', '.join(map(str, valid))}", request)
    return tp


def _plan_paged(request: _Request) -> RuntimePlan:
    """vLLM and TGI: paged KV cache sized by start-up profiling."""
    return _plan_vllm(request) if request.runtime == "vllm" else _plan_tgi(request)


def _check_graph_headroom(request: _Request, enforce_eager: bool) -> None:
    """CUDA graphs captured outside the budget need the device memory the budget leaves."""
    gpu, util = request.instance.gpu, request.gpu_memory_utilization
    if enforce_eager or (1 - util) * gpu.usable_gib >= CUDA_GRAPH_HEADROOM_GIB:
        return
    highest = 1 - CUDA_GRAPH_HEADROOM_GIB / gpu.usable_gib
    raise _Misfit(
        "config",
        f"gpu_memory_utilization {util:.2f} leaves {(1 - util) * gpu.usable_gib:.2f} GiB "
        f"of {gpu.usable_gib:.1f} GiB for CUDA graphs, below {CUDA_GRAPH_HEADROOM_GIB} GiB; "
        f"use gpu_memory_utilization <= {math.floor(highest * 100) / 100:.2f}"
        + (" (or --enforce-eager, slower)" if request.runtime == "vllm" else ""), request)


def _layout(request: _Request, tp: int) -> str:
    pp, dp = request.pipeline_parallel, request.data_parallel
    return f"TP={tp}" + (f", PP={pp}" if pp > 1 else "") + (f", DP={dp}" if dp > 1 else "")


def _check_fit(request: _Request, memory: MemoryBudget, tp: int, need_tokens: int) -> None:
    gpu, util = request.instance.gpu, request.gpu_memory_utilization
    if not memory.weights_fit:
        raise _Misfit(
            "weights",
            f"weights need {memory.weights_gib:.1f} GiB per GPU ({_layout(request, tp)}) and start-up "
            f"overhead {memory.overhead_gib:.1f} GiB, but "
            f"{util:.2f} x {gpu.usable_gib:.1f} GiB gives {memory.budget_gib:.1f} GiB", request)
    if memory.kv_capacity_tokens < need_tokens:
        raise _Misfit(
            "kv",
            f"one sequence of {need_tokens} tokens needs "
            f"{need_tokens * memory.kv_bytes_per_token / GIB:.2f} GiB of KV cache per GPU "
            f"but only {memory.kv_pool_gib:.2f} GiB ({memory.kv_capacity_tokens} tokens) remain "
            f"after {memory.weights_gib:.1f} GiB weights and {memory.overhead_gib:.1f} GiB "
            f"overhead; {request.runtime} refuses to start", request)


def _throughput(request: _Request, memory: MemoryBudget, tp: int, running: int) -> float:
    """Per engine: `running` sequences on the GPUs of one data-parallel rank (all stages)."""
    w = request.workload
    return estimate_capacity_rps(request.model, request.instance, runtime=request.runtime,
                                 gpus=tp * request.pipeline_parallel,
                                 weight_bytes_per_gpu=memory.weights_gib * GIB,
                                 kv_bytes_per_token_per_gpu=memory.kv_bytes_per_token,
                                 concurrency=running, prompt_tokens=w.prompt_typical,
                                 output_tokens=w.output_typical)


def _plan_vllm(request: _Request) -> RuntimePlan:
    """vLLM: the profile sizes the KV cache; the workload sizes the scheduler around it.

    ``--max-num-seqs`` is how many sequences of p95 prompt + max output the KV cache holds
    (vLLM admits up to max_num_seqs and preempts when blocks run out, so more would be a
    promise the cache cannot keep). The sampler's start-up peak grows with max_num_seqs,
    so the budget is computed again with the derived value, which only frees memory.
    """
    model, instance, o = request.model, request.instance, request.overrides
    tp = _resolve_tensor_parallel(request)
    gpu = instance.gpu
    util = request.gpu_memory_utilization
    max_model_len = request.max_model_len
    profile = PINNED_PROFILE["vllm"]
    default_batched = 8192 if gpu.usable_gib >= LARGE_GPU_GIB else 2048
    batched = _as_int(request, "--max-num-batched-tokens",
                      o.get("--max-num-batched-tokens", default_batched))
    kv_dtype_bytes = 2.0
    if "--kv-cache-dtype" in o:
        kv_dtype = str(o["--kv-cache-dtype"])
        if kv_dtype not in _KV_DTYPE_BYTES:
            raise _Misfit("config", f"--kv-cache-dtype {kv_dtype!r} is not one of "
                          f"{', '.join(_KV_DTYPE_BYTES)}", request)
        kv_dtype_bytes = _KV_DTYPE_BYTES[kv_dtype]
    enforce_eager = bool(o.get("--enforce-eager", False))

    def budget(seqs: int) -> MemoryBudget:
        return gpu_memory_budget(model, gpu_total_gib=gpu.usable_gib, gpu_memory_utilization=util,
                                 tensor_parallel=tp, quantization=request.quantization,
                                 prefill_tokens=batched, max_num_seqs=seqs,
                                 kv_dtype_bytes=kv_dtype_bytes, profile=profile,
                                 pipeline_parallel=request.pipeline_parallel,
                                 data_parallel=request.data_parallel)

    sequence_tokens = request.workload.sequence_tokens
    asked_seqs = (_as_int(request, "--max-num-seqs", o["--max-num-seqs"])
                  if "--max-num-seqs" in o else None)
    if asked_seqs is not None and asked_seqs < 1:
        raise _Misfit("config", f"--max-num-seqs {asked_seqs} must be at least 1", request)
    memory = budget(asked_seqs or DEFAULT_MAX_NUM_SEQS)
    _check_fit(request, memory, tp, max_model_len)
    max_num_seqs = asked_seqs or DEFAULT_MAX_NUM_SEQS
    if asked_seqs is None:
        # Fewer sequences shrink the sampler's peak and free KV: settle on the largest
        # count whose own budget still holds that many sequences.
        for _ in range(8):
            fit = max(1, min(DEFAULT_MAX_NUM_SEQS, memory.kv_capacity_tokens // sequence_tokens))
            if fit == max_num_seqs:
                break
            trial = budget(fit)
            if fit > 1 and trial.kv_capacity_tokens // sequence_tokens < fit:
                break
            max_num_seqs, memory = fit, trial
    _check_graph_headroom(request, enforce_eager)
    capacity = memory.kv_capacity_tokens
    if batched < max_num_seqs:
        raise _Misfit("config", f"--max-num-batched-tokens {batched} is below --max-num-seqs "
                      f"{max_num_seqs} (vLLM refuses to start)", request)
    # An explicit --max-num-seqs above what the cache holds is admitted by vLLM and then
    # preempted: only the sequences the cache holds at the max output count as capacity.
    running = max(1, min(max_num_seqs, capacity // sequence_tokens))
    # Everything above is one engine (one data-parallel rank: its own scheduler, where
    # --max-num-seqs applies, and its own KV cache); a replica runs `dp` of them.
    dp = request.data_parallel
    rps = dp * _throughput(request, memory, tp, running)
    notes = [f"KV pool {memory.kv_pool_gib:.2f} GiB per GPU ({capacity} tokens) after a "
             f"{KV_SAFETY_FRACTION:.0%} safety margin; {running} sequences of "
             f"{request.workload.prompt_p95} + {request.workload.output_max} tokens"]
    if dp > 1:
        notes.append(f"{dp} data-parallel ranks, each with its own KV cache of {capacity} "
                     f"tokens and up to {max_num_seqs} sequences")
    full_contexts = dp * (capacity // max_model_len)
    running, capacity = dp * running, dp * capacity
    inflight = running + math.floor(rps * request.max_queue_wait_seconds)
    if tp * dp < instance.gpu_count:
        notes.append(f"{instance.gpu_count - tp * dp} of {instance.gpu_count} GPUs idle at "
                     f"{_layout(request, tp)}")
    args: dict[str, Any] = {
        "--max-model-len": max_model_len,
        "--max-num-seqs": max_num_seqs,
        "--max-num-batched-tokens": batched,
        "--tensor-parallel-size": tp,
        "--gpu-memory-utilization": util,
    }
    if request.pipeline_parallel > 1:
        args["--pipeline-parallel-size"] = request.pipeline_parallel
    if dp > 1:
        args["--data-parallel-size"] = dp
    if request.expert_parallel:
        args["--enable-expert-parallel"] = True
    if kv_dtype_bytes != 2.0:
        args["--kv-cache-dtype"] = o["--kv-cache-dtype"]
    if enforce_eager:
        args["--enforce-eager"] = True
    if request.quantization == "fp8" and model.native_dtype != "fp8":
        args["--quantization"] = "fp8"  # online FP8 of a 16-bit checkpoint
    elif request.quantization in ("awq", "gptq", "int8"):
        notes.append(f"serve a pre-quantized {request.quantization} checkpoint; vLLM reads "
                     f"the method from its config (forcing --quantization disables Marlin)")
    return _paged_plan(request, tp, max_model_len, batched, memory, capacity,
                       full_contexts, running, inflight, rps, args, notes)


def _plan_tgi(request: _Request) -> RuntimePlan:
    """TGI v3: the batch token budget is what warm-up finds free, not a flag.

    For flash-attention models (every catalog model) TGI ignores ``--max-batch-total-tokens``
    ("deprecated for Flash Attention models", backends/v3/src/lib.rs) and takes the KV
    blocks that fit after one prefill of ``--max-batch-prefill-tokens``, keeping
    ``1 - CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM`` of the device free; the router refuses
    to start when ``--max-total-tokens`` exceeds that budget ("NotEnoughMemory"). So the
    plan renders no ``--max-batch-total-tokens``, predicts the inferred budget instead,
    and checks the flags TGI does honour against it. A request that does not set
    ``max_new_tokens`` gets ``max_total_tokens - input`` (TGI's default), so the batch
    reserves the whole ``--max-total-tokens`` per request: the running slots are
    budget // max_total_tokens, and ``--max-concurrent-requests`` (past it TGI answers
    429 "Model is overloaded") admits those plus a queue that drains within the wait.
    """
    model, instance, o = request.model, request.instance, request.overrides
    tp = _resolve_tensor_parallel(request)
    gpu = instance.gpu
    util = request.gpu_memory_utilization
    profile = PINNED_PROFILE["tgi"]
    # TGI's budget is CUDA_MEMORY_FRACTION x 0.9 of the device and the fraction is at most
    # 1: a gpu_memory_utilization above 0.9 cannot be had, so the plan uses what TGI takes.
    util = min(util, 1 - profile.reserve_fraction)
    request = replace(request, gpu_memory_utilization=util)
    max_total = request.max_model_len
    # The max output is the part of the context a prompt cannot take.
    max_input_tokens = _as_int(request, "--max-input-tokens",
                               o.get("--max-input-tokens",
                                     max(1, max_total - request.workload.output_max)))
    if max_input_tokens >= max_total:
        raise _Misfit("config", f"--max-input-tokens {max_input_tokens} must be below "
                      f"--max-total-tokens {max_total} (TGI refuses to start)", request)
    default_prefill = 8192 if gpu.usable_gib >= LARGE_GPU_GIB else 4096
    batched = _as_int(request, "--max-batch-prefill-tokens",
                      o.get("--max-batch-prefill-tokens", max(default_prefill, max_input_tokens)))
    if batched < max_input_tokens:
        raise _Misfit("config", f"--max-batch-prefill-tokens {batched} is below "
                      f"--max-input-tokens {max_input_tokens} (TGI refuses to start)", request)
    # Warm-up prefills requests of max_input_tokens until the prefill budget is used.
    warmup_requests = max(1, batched // max_input_tokens)
    memory = gpu_memory_budget(model, gpu_total_gib=gpu.usable_gib, gpu_memory_utilization=util,
                               tensor_parallel=tp, quantization=request.quantization,
                               prefill_tokens=batched, max_num_seqs=warmup_requests,
                               profile=profile)
    _check_fit(request, memory, tp, max_total)
    inferred = memory.kv_capacity_tokens
    if "--max-batch-total-tokens" in o:
        raise _Misfit("config", "--max-batch-total-tokens is ignored by TGI 3 for flash-attention "
                      f"models (it infers {inferred} tokens from free memory at warm-up); "
                      "remove the override", request)
    if batched > inferred:
        raise _Misfit("kv", f"--max-batch-prefill-tokens {batched} exceeds the {inferred} "
                      f"tokens TGI will infer for its batch (TGI refuses to start)", request)
    _check_graph_headroom(request, enforce_eager=False)
    running = max(1, inferred // max_total)
    rps = _throughput(request, memory, tp, running)
    derived_concurrent = running + math.floor(rps * request.max_queue_wait_seconds)
    concurrent = _as_int(request, "--max-concurrent-requests",
                         o.get("--max-concurrent-requests", derived_concurrent))
    if concurrent < 1:
        raise _Misfit("config", f"--max-concurrent-requests {concurrent} must be at least 1",
                      request)
    if concurrent > derived_concurrent:
        raise _Misfit("config", f"--max-concurrent-requests {concurrent} admits more than the "
                      f"{running} requests of {max_total} tokens TGI's inferred budget of "
                      f"{inferred} tokens runs plus a {request.max_queue_wait_seconds:g} s queue "
                      f"({derived_concurrent} in all)", request)
    # TGI reserves (1 - fraction x 0.9) of the device; this fraction reproduces the plan's
    # gpu_memory_utilization (the default fraction 1.0 keeps 10%).
    fraction = round(util / (1 - profile.reserve_fraction), 3)
    notes = [f"TGI infers about {inferred} batch tokens at warm-up (not a flag); "
             f"{running} requests of {max_total} tokens run at once"]
    if tp < instance.gpu_count:
        notes.append(f"{instance.gpu_count - tp} of {instance.gpu_count} GPUs idle at TP={tp}")
    args: dict[str, Any] = {
        "--max-input-tokens": max_input_tokens,
        "--max-total-tokens": max_total,
        "--max-batch-prefill-tokens": batched,
        "--max-concurrent-requests": concurrent,
        "--num-shard": tp,
        "--cuda-memory-fraction": fraction,
    }
    tgi_quantize = {"fp8": "fp8", "awq": "awq", "gptq": "gptq", "int8": "eetq"}
    if request.quantization in tgi_quantize and model.native_dtype != request.quantization:
        args["--quantize"] = tgi_quantize[request.quantization]
    return _paged_plan(request, tp, max_total, batched, memory, inferred,
                       inferred // max_total, running, concurrent, rps, args, notes)


def _paged_plan(request: _Request, tp: int, max_model_len: int, batched: int,
                memory: MemoryBudget, capacity: int, max_sequences: int, running: int,
                inflight: int, rps: float, args: dict[str, Any], notes: list[str]) -> RuntimePlan:
    return RuntimePlan(
        stack=request.stack, model_name=request.model_name, model=request.model.name,
        instance_type=request.instance.name, runtime=request.runtime,
        image=get_runtime_image(request.runtime).reference, quantization=request.quantization,
        tensor_parallel=tp,
        gpus_per_replica=tp * request.pipeline_parallel * request.data_parallel,
        gpu_memory_utilization=request.gpu_memory_utilization,
        max_model_len=max_model_len, max_num_batched_tokens=batched, memory=memory,
        kv_capacity_tokens=capacity, max_concurrent_sequences=max_sequences,
        running_slots=running, max_inflight_requests=inflight, capacity_rps=rps, args=args,
        workload=request.workload, assumptions=_assumptions(request), notes=tuple(notes),
        pipeline_parallel=request.pipeline_parallel, data_parallel=request.data_parallel,
        expert_parallel=request.expert_parallel)


def _plan_ollama(request: _Request) -> RuntimePlan:
    """Ollama: KV for every parallel slot is allocated up front (slots x context)."""
    model, instance, o = request.model, request.instance, request.overrides
    gpus = instance.gpu_count if request.tensor_parallel is None else request.tensor_parallel
    if not 1 <= gpus <= instance.gpu_count:
        raise _Misfit("tp", f"Ollama cannot spread over {gpus} GPUs; {instance.name} has "
                      f"{instance.gpu_count}", request)
    kv_type = str(o.get("OLLAMA_KV_CACHE_TYPE", "f16"))
    if kv_type not in _OLLAMA_KV_BYTES:
        raise _Misfit("config", f"OLLAMA_KV_CACHE_TYPE {kv_type!r} is not one of "
                      f"{', '.join(_OLLAMA_KV_BYTES)}", request)
    util = request.gpu_memory_utilization
    gpu = instance.gpu
    memory = ollama_memory_budget(model, gpu_total_gib=gpu.usable_gib, gpu_count=gpus,
                                  gpu_memory_utilization=util, quantization=request.quantization,
                                  kv_dtype_bytes=_OLLAMA_KV_BYTES[kv_type])
    if not memory.weights_fit:
        raise _Misfit(
            "weights",
            f"weights need {memory.weights_gib:.1f} GiB per GPU over {gpus} GPU(s) plus "
            f"{memory.overhead_gib:.1f} GiB context and graph, but {util:.2f} x "
            f"{gpu.usable_gib:.1f} GiB gives {memory.budget_gib:.1f} GiB", request)
    context = request.max_model_len
    capacity = memory.kv_capacity_tokens
    slots_that_fit = capacity // context
    if slots_that_fit < 1:
        raise _Misfit(
            "kv",
            f"one {context}-token context needs {context * memory.kv_bytes_per_token / GIB:.2f} "
            f"GiB of KV cache per GPU but only {memory.kv_pool_gib:.2f} GiB ({capacity} tokens) "
            f"remain; Ollama would move layers to CPU memory (an order of magnitude slower)",
            request)
    parallel = _as_int(request, "OLLAMA_NUM_PARALLEL",
                       o.get("OLLAMA_NUM_PARALLEL", min(OLLAMA_MAX_PARALLEL, slots_that_fit)))
    if parallel < 1:
        raise _Misfit("config", f"OLLAMA_NUM_PARALLEL {parallel} must be at least 1", request)
    if parallel * context > capacity:
        raise _Misfit(
            "kv",
            f"OLLAMA_NUM_PARALLEL {parallel} x OLLAMA_CONTEXT_LENGTH {context} = "
            f"{parallel * context} tokens of KV cache, but {capacity} fit; Ollama would move "
            f"layers to CPU memory. Use OLLAMA_NUM_PARALLEL <= {slots_that_fit}", request)
    rps = estimate_capacity_rps(model, instance, runtime="ollama", gpus=gpus,
                                weight_bytes_per_gpu=memory.weights_gib * GIB,
                                kv_bytes_per_token_per_gpu=memory.kv_bytes_per_token,
                                concurrency=parallel,
                                prompt_tokens=request.workload.prompt_typical,
                                output_tokens=request.workload.output_typical)
    queue = _as_int(request, "OLLAMA_MAX_QUEUE",
                    o.get("OLLAMA_MAX_QUEUE", max(1, math.floor(rps * request.max_queue_wait_seconds))))
    if queue < 1:
        raise _Misfit("config", f"OLLAMA_MAX_QUEUE {queue} must be at least 1", request)
    # Ollama takes all free VRAM; reserving the unused share keeps the utilization the
    # plan was computed with.
    reserve_bytes = int((1 - util) * gpu.usable_gib * GIB)
    env = {
        "OLLAMA_NUM_PARALLEL": str(parallel),
        "OLLAMA_CONTEXT_LENGTH": str(context),
        "OLLAMA_MAX_QUEUE": str(queue),
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_GPU_OVERHEAD": str(reserve_bytes),
    }
    if kv_type != "f16":
        env["OLLAMA_KV_CACHE_TYPE"] = kv_type
        env["OLLAMA_FLASH_ATTENTION"] = "1"  # quantized KV requires flash attention
    notes = [f"Ollama allocates {parallel} x {context} tokens of KV up front"]
    tag = model.ollama_tag(request.quantization)
    if tag:
        notes.append(f"pull {tag}")
    else:
        notes.append(f"no Ollama library tag recorded for {model.name} {request.quantization}; "
                     f"import the GGUF explicitly")
    return RuntimePlan(
        stack=request.stack, model_name=request.model_name, model=model.name,
        instance_type=instance.name, runtime="ollama",
        image=get_runtime_image("ollama").reference, quantization=request.quantization,
        tensor_parallel=gpus, gpus_per_replica=gpus, gpu_memory_utilization=util,
        max_model_len=context, max_num_batched_tokens=OLLAMA_BATCH_TOKENS, memory=memory,
        kv_capacity_tokens=capacity, max_concurrent_sequences=parallel, running_slots=parallel,
        max_inflight_requests=parallel + queue, capacity_rps=rps, env=env,
        workload=request.workload, assumptions=_assumptions(request), notes=tuple(notes))


def _assumptions(request: _Request) -> dict[str, Any]:
    w = request.workload
    return {"prompt_tokens": {"typical": w.prompt_typical, "p95": w.prompt_p95},
            "output_tokens": {"typical": w.output_typical, "max": w.output_max},
            "workload_source": w.source,
            "max_queue_wait_seconds": request.max_queue_wait_seconds}


def _as_int(request: _Request, flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Misfit("config", f"{flag} must be a whole number, got {value!r}", request)
    try:
        number = float(value)
    except ValueError:
        raise _Misfit("config", f"{flag} must be a whole number, got {value!r}", request) from None
    if number != int(number):
        raise _Misfit("config", f"{flag} must be a whole number, got {value!r}", request)
    return int(number)


def _as_float(request: _Request, flag: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _Misfit("config", f"{flag} must be a number, got {value!r}", request)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Misfit("config", f"{flag} must be a number, got {value!r}", request) from None


# ---------------------------------------------------------------- fixing suggestions


def _fits(request: _Request) -> RuntimePlan | None:
    try:
        return _plan(request)
    except _Misfit:
        return None


def _explain(misfit: _Misfit) -> str:
    """The error message: where, what, and the smallest change that would fit."""
    request = misfit.request
    fixes = _suggestions(misfit) if misfit.kind in ("weights", "kv", "tp") else []
    message = f"{request.where()}: {misfit.problem}."
    if fixes:
        message += " What fits: " + "; or ".join(fixes) + "."
    elif misfit.kind in ("weights", "kv"):
        message += (" Nothing in the catalog fits this model with this runtime and context; "
                    "lower max_context or choose another model (a quantized or distilled one: "
                    "docs/ALTERNATIVES.md).")
    return message


def _suggestions(misfit: _Misfit) -> list[str]:
    # Trial plans choose their own tensor-parallel size, so a TP override must not pin it.
    request = replace(misfit.request, overrides={
        k: v for k, v in misfit.request.overrides.items()
        if k not in ("--tensor-parallel-size", "--num-shard")})
    fixes: list[str] = []
    # A different tensor-parallel size on the same instance (smallest that fits).
    if request.runtime != "ollama" and request.tensor_parallel is not None:
        for tp in _valid_tensor_parallel_sizes(request.model, request.instance.gpu_count):
            if tp != request.tensor_parallel and _fits(replace(request, tensor_parallel=tp)):
                fixes.append(f"tensor_parallel {tp} on {request.instance.name}")
                break
    # vLLM only: the same instance type, two or more nodes per replica (EKS LeaderWorkerSet).
    if request.runtime == "vllm" and request.pipeline_parallel == 1 and request.data_parallel == 1:
        for nodes in (2, 3, 4):
            candidate = _fits(replace(request, pipeline_parallel=nodes, tensor_parallel=None))
            if candidate:
                fixes.append(f"pipeline_parallel {nodes} ({nodes} x {request.instance.name} per "
                             f"replica, TP={candidate.tensor_parallel}; platform eks only)")
                break
    # The smallest catalog instance type that takes the same model, runtime and context.
    for instance in instances_by_size():
        if instance.name == request.instance.name:
            continue
        candidate = _fits(replace(request, instance=instance, tensor_parallel=None))
        if candidate:
            fixes.append(f"instance type {instance.name} (TP={candidate.tensor_parallel}, "
                         f"{candidate.kv_capacity_tokens} KV tokens)")
            break
    # A lighter quantization on this instance, least lossy first.
    options = sorted((q for q in QUANTIZATIONS.values()
                      if request.runtime in q.runtimes and q.name != request.quantization),
                     key=lambda q: -q.bits_per_weight)
    for quant in options:
        if quant.bits_per_weight >= get_quantization(request.quantization).bits_per_weight:
            continue
        candidate = _fits(replace(request, quantization=quant.name))
        if candidate:
            fixes.append(f"quantization {quant.name} on {request.instance.name} "
                         f"(TP={candidate.tensor_parallel})")
            break
    # A shorter context on this instance, when the weights fit but the KV cache is short.
    if misfit.kind == "kv":
        longest = _longest_context(request)
        if longest:
            fixes.append(f"max_context <= {longest} on {request.instance.name}")
    return fixes


def _longest_context(request: _Request) -> int | None:
    """Binary search for the longest context that still plans on this instance."""
    low, high = 1, request.max_model_len - 1
    best = None
    plain = replace(request, overrides={k: v for k, v in request.overrides.items()
                                        if k not in ("--max-model-len", "--max-total-tokens",
                                                     "OLLAMA_CONTEXT_LENGTH",
                                                     "--max-input-tokens",
                                                     "--max-batch-prefill-tokens")})
    while low <= high:
        middle = (low + high) // 2
        if _fits(replace(plain, max_model_len=middle)):
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


# ------------------------------------------------------------------ gateway throttles


@dataclass(frozen=True)
class ThrottleBudget:
    """What the replicas behind a gateway can absorb: sustained rate and instant burst."""

    capacity_rps: float
    max_inflight_requests: int


def _describe_backend(plan: RuntimePlan, replicas: int) -> str:
    """The numbers behind a backend's capacity, as a throttle refusal states them."""
    w = plan.workload
    shape = (f"{w.prompt_typical} prompt + {w.output_typical} output tokens typical, "
             f"KV reserved for {w.prompt_p95} + {w.output_max}" if w else "")
    return (f"{plan.model_name} (max_replicas {replicas} x {plan.instance_type}, {plan.runtime}: "
            f"{plan.running_slots} sequences at once, about {plan.output_tokens_per_second:.0f} "
            f"output tokens/s = {plan.capacity_rps:.3f} req/s and {plan.max_inflight_requests} "
            f"in flight per replica; {shape})")


def check_throttle(plans: RuntimePlan | Sequence[RuntimePlan], *,
                   replicas: int | Sequence[int], rate: float, burst: int) -> ThrottleBudget:
    """Refuse gateway throttles the backends cannot honour.

    ``plans`` are the models behind one gateway (or one plan), ``replicas`` their
    ``max_replicas`` (one number per plan). The gateway's steady ``rate`` (requests/s)
    must not exceed the sum of ``capacity_rps x replicas``, and its ``burst`` (token
    bucket size) must not exceed the requests the replicas accept at once
    (``max_inflight_requests x replicas``): past that, the runtimes answer 429/503 or
    queue beyond the gateway's timeouts, which is exactly what the throttle exists to
    prevent. Returns the budget when the throttle fits.
    """
    plan_list = [plans] if isinstance(plans, RuntimePlan) else list(plans)
    replica_list = [replicas] * len(plan_list) if isinstance(replicas, int) else list(replicas)
    if not plan_list or len(replica_list) != len(plan_list):
        raise SizingError("check_throttle needs one max_replicas value per plan "
                          f"(got {len(plan_list)} plans and {len(replica_list)} replica counts)")
    if rate <= 0 or burst < 1:
        raise SizingError(f"gateway rate {rate} must be positive and burst {burst} at least 1")
    for plan, count in zip(plan_list, replica_list):
        if count < 1:
            raise SizingError(f"stack {plan.stack!r}, model {plan.model_name!r}: "
                              f"max_replicas {count} must be at least 1")
    capacity = sum(p.capacity_rps * n for p, n in zip(plan_list, replica_list))
    inflight = sum(p.max_inflight_requests * n for p, n in zip(plan_list, replica_list))
    budget = ThrottleBudget(capacity, inflight)
    backends = ", ".join(_describe_backend(p, n) for p, n in zip(plan_list, replica_list))
    where = f"stack {plan_list[0].stack!r}"
    if rate > capacity:
        fix = f"lower the gateway rate to <= {math.floor(capacity * 100) / 100:.2f} req/s"
        if capacity < 0.01:
            fix = "add replicas or GPU capacity, or shorten the workload's outputs"
        if len(plan_list) == 1:
            needed = math.ceil(rate / plan_list[0].capacity_rps)
            fix += f" or raise max_replicas to >= {needed}"
        raise SizingError(f"{where}: the tier's rate {rate:g} req/s exceeds the {capacity:.2f} "
                          f"req/s the workload shape allows at max_replicas: {backends}; {fix}")
    if burst > inflight:
        fix = f"lower the gateway burst to <= {inflight}"
        if len(plan_list) == 1:
            needed = math.ceil(burst / plan_list[0].max_inflight_requests)
            fix += f" or raise max_replicas to >= {needed}"
        raise SizingError(f"{where}: gateway burst {burst} exceeds the {inflight} requests "
                          f"{backends} accept at once; {fix}")
    return budget


