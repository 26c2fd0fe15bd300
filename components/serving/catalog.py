"""Facts the sizing and the fleet are built on: model architectures, GPU instance types, runtime images.

Everything here is a fact with a source, not a tunable: the tunables live in the stack
inventory and the derivations in `components.serving.sizing`. Where a value could not be
confirmed against public material the entry says so (``verified=False`` or a comment),
so a reviewer knows what to double-check before trusting it.

Sources, once for all entries:
- Model architectures: each repository's ``config.json`` on Hugging Face (the URL is in
  ``ModelSpec.source``). Values were cross-checked against public copies of those configs
  and of their base models' configs found with the project's code search (see the
  report of issue 7); the R1 distills use the architectures of the base models that
  DeepSeek lists in https://github.com/deepseek-ai/DeepSeek-R1/blob/main/README.md
  ("DeepSeek-R1-Distill Models": Qwen2.5-Math-1.5B, Qwen2.5-Math-7B, Llama-3.1-8B,
  Qwen2.5-14B, Qwen2.5-32B, Llama-3.3-70B-Instruct) with DeepSeek's context change to
  131072 tokens.
- Instance types: AWS ``DescribeInstanceTypes`` (``GpuInfo``, ``VCpuInfo``,
  ``MemoryInfo``), as also shipped in moto 5.2.5's ``ec2/resources/instance_types.json``;
  ``tools.preflight`` re-checks GPU name, count and memory against the live account.
- Usable GPU memory: what CUDA reports as the device total (``torch.cuda.mem_get_info``),
  which is the number vLLM multiplies by ``--gpu-memory-utilization``. It is below both
  the marketing size (24 GB) and AWS's ``SizeInMiB`` (22888 MiB for A10G). Observed
  values: A10 "total capacity of 22.18 GiB"
  (https://github.com/OpenBMB/MiniCPM-V/issues/640), H100 80GB "total_gpu_memory
  79.22GiB" (https://github.com/vllm-project/vllm/pull/10511). We round down so a plan
  never counts memory the device does not have.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class CatalogError(KeyError):
    """A name that is not in the catalog; the message lists the names that are."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """One model's architecture as its ``config.json`` states it.

    ``num_kv_heads`` and ``head_dim`` describe standard (GQA) attention. Models with
    Multi-head Latent Attention (DeepSeek-V2/V3/R1) set ``kv_lora_rank`` and
    ``qk_rope_head_dim``: their KV cache holds one compressed latent of
    ``kv_lora_rank + qk_rope_head_dim`` elements per token per layer, shared by all heads,
    so tensor parallelism does not split it (every rank keeps the whole latent).
    """

    name: str
    hf_repo: str
    architecture: str  # the config's model_type: qwen2, llama, deepseek_v2, deepseek_v3
    num_layers: int
    hidden_size: int
    intermediate_size: int  # dense MLP width (first dense layers for MoE models)
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    total_params: int
    native_dtype: str  # "bf16" or "fp8" (DeepSeek-V3/R1 ship block-scaled FP8 weights)
    tie_word_embeddings: bool = False
    active_params: int | None = None  # MoE only: parameters used per token
    kv_lora_rank: int | None = None  # MLA only
    qk_rope_head_dim: int | None = None  # MLA only
    qk_nope_head_dim: int | None = None  # MLA only
    v_head_dim: int | None = None  # MLA only
    moe_intermediate_size: int | None = None
    num_experts_per_tok: int | None = None
    n_shared_experts: int | None = None
    # MoE only: routed experts per MoE layer, and how many leading layers are dense
    # (config.json n_routed_experts, first_k_dense_replace). Expert weights are what
    # expert / data parallelism shard differently from the rest.
    n_routed_experts: int | None = None
    first_k_dense_replace: int = 0
    # Ollama library tags by GGUF quantization; the explicit distill tags are used because
    # the short tags (e.g. deepseek-r1:8b) were re-pointed to newer R1-0528 distills with a
    # different architecture, which would silently invalidate the sizing.
    ollama_tags: tuple[tuple[str, str], ...] = ()
    # "reasoning" (R1 and its distills write a thinking trace before the answer) or "chat";
    # picks the default workload shape (FAMILY_WORKLOADS).
    family: str = "chat"
    source: str = ""
    note: str = ""

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return self.active_params is not None

    @property
    def embedding_params(self) -> int:
        """Input embedding plus LM head: quantizers (AWQ, GPTQ, FP8) keep these in 16 bits."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def routed_expert_params(self) -> int:
        """Parameters of the routed experts (gate, up and down projections per expert)."""
        if not self.n_routed_experts or not self.moe_intermediate_size:
            return 0
        moe_layers = self.num_layers - self.first_k_dense_replace
        return moe_layers * self.n_routed_experts * 3 * self.hidden_size * self.moe_intermediate_size

    def ollama_tag(self, quantization: str) -> str | None:
        return dict(self.ollama_tags).get(quantization)


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


def _distill_tags(size: str, base: str) -> tuple[tuple[str, str], ...]:
    # Tag pattern confirmed in public Ollama usage for 1.5b/7b/8b (e.g.
    # "deepseek-r1:8b-llama-distill-q4_K_M", "deepseek-r1:1.5b-qwen-distill-fp16").
    prefix = f"deepseek-r1:{size}-{base}-distill"
    return (
        ("gguf_q4_k_m", f"{prefix}-q4_K_M"),
        ("gguf_q8_0", f"{prefix}-q8_0"),
        ("fp16", f"{prefix}-fp16"),
    )


def _qwen2_distill(size: str, repo_size: str, *, layers: int, hidden: int, inter: int,
                   heads: int, kv_heads: int, vocab: int, params: int) -> ModelSpec:
    repo = f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{repo_size}"
    return ModelSpec(
        name=f"deepseek-r1-distill-qwen-{size}", hf_repo=repo, architecture="qwen2",
        num_layers=layers, hidden_size=hidden, intermediate_size=inter,
        num_attention_heads=heads, num_kv_heads=kv_heads, head_dim=hidden // heads,
        vocab_size=vocab, max_position_embeddings=131072, total_params=params,
        native_dtype="bf16", ollama_tags=_distill_tags(size, "qwen"), family="reasoning",
        source=_hf(repo),
    )


def _llama_distill(size: str, repo_size: str, *, layers: int, hidden: int, inter: int,
                   heads: int, params: int) -> ModelSpec:
    repo = f"deepseek-ai/DeepSeek-R1-Distill-Llama-{repo_size}"
    return ModelSpec(
        name=f"deepseek-r1-distill-llama-{size}", hf_repo=repo, architecture="llama",
        num_layers=layers, hidden_size=hidden, intermediate_size=inter,
        num_attention_heads=heads, num_kv_heads=8, head_dim=128, vocab_size=128256,
        max_position_embeddings=131072, total_params=params, native_dtype="bf16",
        ollama_tags=_distill_tags(size, "llama"), family="reasoning", source=_hf(repo),
    )


def _deepseek_mla(name: str, repo: str, *, architecture: str, layers: int, hidden: int,
                  inter: int, heads: int, vocab: int, params: int, active: int,
                  dtype: str, moe_inter: int, top_k: int, shared: int,
                  ollama_tags: tuple[tuple[str, str], ...], note: str, routed: int = 0,
                  first_dense: int = 0,
                  family: str = "chat") -> ModelSpec:
    return ModelSpec(
        name=name, hf_repo=repo, architecture=architecture, num_layers=layers,
        hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
        # config.json states num_key_value_heads == num_attention_heads; with MLA the
        # cache does not use them (see kv_lora_rank), runtimes without MLA support do.
        num_kv_heads=heads, head_dim=128 + 64, vocab_size=vocab,
        max_position_embeddings=163840, total_params=params, active_params=active,
        native_dtype=dtype, kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128,
        v_head_dim=128, moe_intermediate_size=moe_inter, num_experts_per_tok=top_k,
        n_shared_experts=shared, n_routed_experts=routed or None,
        first_k_dense_replace=first_dense, ollama_tags=ollama_tags, family=family, source=_hf(repo),
        note=note,
    )


_V2_LITE_NOTE = (
    "config.json allows 163840 positions; DeepSeek documents a 32K context for V2-Lite "
    "(https://github.com/deepseek-ai/DeepSeek-V2 README), so plan max_context <= 32768."
)
_V3_NOTE = (
    "671B main model + 14B MTP module (HF lists 685B); 37B active per token. Weights are "
    "FP8 (e4m3, 128x128 block scales); the KV cache stays 16-bit unless --kv-cache-dtype fp8."
)

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    # Qwen2.5-Math-1.5B base; R1 distill unties the embeddings (1.78B parameters).
    _qwen2_distill("1.5b", "1.5B", layers=28, hidden=1536, inter=8960, heads=12, kv_heads=2,
                   vocab=151936, params=1_777_088_000),
    _qwen2_distill("7b", "7B", layers=28, hidden=3584, inter=18944, heads=28, kv_heads=4,
                   vocab=152064, params=7_615_616_512),
    _qwen2_distill("14b", "14B", layers=48, hidden=5120, inter=13824, heads=40, kv_heads=8,
                   vocab=152064, params=14_770_033_664),
    # Parameter count from the Hub's safetensors metadata: {"BF16": 32763876352}.
    _qwen2_distill("32b", "32B", layers=64, hidden=5120, inter=27648, heads=40, kv_heads=8,
                   vocab=152064, params=32_763_876_352),
    _llama_distill("8b", "8B", layers=32, hidden=4096, inter=14336, heads=32,
                   params=8_030_261_248),
    _llama_distill("70b", "70B", layers=80, hidden=8192, inter=28672, heads=64,
                   params=70_553_706_496),
    _deepseek_mla(
        "deepseek-v2-lite", "deepseek-ai/DeepSeek-V2-Lite", architecture="deepseek_v2",
        layers=27, hidden=2048, inter=10944, heads=16, vocab=102400,
        params=15_706_484_224, active=2_400_000_000, dtype="bf16", moe_inter=1408,
        top_k=6, shared=2, routed=64, first_dense=1, ollama_tags=(),
        note=_V2_LITE_NOTE),
    _deepseek_mla(
        "deepseek-v2-lite-chat", "deepseek-ai/DeepSeek-V2-Lite-Chat",
        architecture="deepseek_v2", layers=27, hidden=2048, inter=10944, heads=16,
        vocab=102400, params=15_706_484_224, active=2_400_000_000, dtype="bf16",
        moe_inter=1408, top_k=6, shared=2, routed=64, first_dense=1,
        # Not confirmed by search; the library's "deepseek-v2:16b" is the Lite chat model.
        ollama_tags=(("gguf_q4_k_m", "deepseek-v2:16b-lite-chat-q4_K_M"),
                     ("gguf_q8_0", "deepseek-v2:16b-lite-chat-q8_0"),
                     ("fp16", "deepseek-v2:16b-lite-chat-fp16")),
        note=_V2_LITE_NOTE),
    _deepseek_mla(
        "deepseek-v3", "deepseek-ai/DeepSeek-V3", architecture="deepseek_v3", layers=61,
        hidden=7168, inter=18432, heads=128, vocab=129280, params=671_000_000_000,
        active=37_000_000_000, dtype="fp8", moe_inter=2048, top_k=8, shared=1,
        routed=256, first_dense=3,
        ollama_tags=(("gguf_q4_k_m", "deepseek-v3:671b-q4_K_M"),), note=_V3_NOTE),
    _deepseek_mla(
        "deepseek-r1", "deepseek-ai/DeepSeek-R1", architecture="deepseek_v3", layers=61,
        hidden=7168, inter=18432, heads=128, vocab=129280, params=671_000_000_000,
        active=37_000_000_000, dtype="fp8", moe_inter=2048, top_k=8, shared=1,
        routed=256, first_dense=3,
        ollama_tags=(("gguf_q4_k_m", "deepseek-r1:671b-q4_K_M"),), note=_V3_NOTE,
        family="reasoning"),
)}



@dataclass(frozen=True)
class FamilyWorkload:
    """The request shape a model family is sized for when the inventory names none."""

    prompt_typical: int
    prompt_p95: int
    output_typical: int
    output_max: int
    source: str


# Prompts: 1,024 typical / 4,096 p95 tokens is this project's assumption for chat and
# retrieval traffic (a long system prompt plus history), not a published figure: set
# models[].workload when the traffic is known.
FAMILY_WORKLOADS: dict[str, FamilyWorkload] = {
    # DeepSeek evaluates R1 and every distill with "the maximum generation length set to
    # 32,768 tokens" (https://huggingface.co/deepseek-ai/DeepSeek-R1, Evaluation Results),
    # and R1 "used an average of 12K tokens per question" on AIME
    # (https://huggingface.co/deepseek-ai/DeepSeek-R1-0528). Everyday questions think far
    # less than competition mathematics: 4,096 typical output tokens, a third of that.
    "reasoning": FamilyWorkload(1024, 4096, 4096, 32768,
                                "https://huggingface.co/deepseek-ai/DeepSeek-R1"),
    # DeepSeek's API serves its chat model (V3) with "max output 8K" (default 4K)
    # (https://api-docs.deepseek.com/quick_start/pricing); answers without a reasoning
    # trace are usually a few hundred tokens: 512 typical.
    "chat": FamilyWorkload(1024, 4096, 512, 8192,
                           "https://api-docs.deepseek.com/quick_start/pricing"),
}


# Models that are not served here but have published vLLM start-up figures; the KV
# benchmark (tools/bench_kv.py) checks the sizing formulas against them.
REFERENCE_MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec(
        name="llama-3.1-8b", hf_repo="meta-llama/Llama-3.1-8B-Instruct", architecture="llama",
        num_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
        num_kv_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
        total_params=8_030_261_248, native_dtype="bf16",
        source=_hf("meta-llama/Llama-3.1-8B-Instruct")),
    ModelSpec(
        name="llama-3-8b", hf_repo="meta-llama/Meta-Llama-3-8B", architecture="llama",
        num_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
        num_kv_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=8192,
        total_params=8_030_261_248, native_dtype="bf16",
        source=_hf("meta-llama/Meta-Llama-3-8B")),
    ModelSpec(
        name="qwen2.5-7b-instruct", hf_repo="Qwen/Qwen2.5-7B-Instruct", architecture="qwen2",
        num_layers=28, hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
        num_kv_heads=4, head_dim=128, vocab_size=152064, max_position_embeddings=32768,
        total_params=7_615_616_512, native_dtype="bf16",
        source=_hf("Qwen/Qwen2.5-7B-Instruct")),
    # Qwen1.5 uses full multi-head attention (32 KV heads): 512 KiB of KV per token.
    ModelSpec(
        name="qwen1.5-7b-chat", hf_repo="Qwen/Qwen1.5-7B-Chat", architecture="qwen2",
        num_layers=32, hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
        num_kv_heads=32, head_dim=128, vocab_size=151936, max_position_embeddings=32768,
        total_params=7_721_324_544, native_dtype="bf16",
        source=_hf("Qwen/Qwen1.5-7B-Chat")),
    ModelSpec(
        name="qwen3-1.7b", hf_repo="Qwen/Qwen3-1.7B", architecture="qwen3",
        num_layers=28, hidden_size=2048, intermediate_size=6144, num_attention_heads=16,
        num_kv_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
        total_params=2_031_739_904, native_dtype="bf16", tie_word_embeddings=True,
        source=_hf("Qwen/Qwen3-1.7B")),
    ModelSpec(
        name="qwen3-235b-a22b", hf_repo="Qwen/Qwen3-235B-A22B", architecture="qwen3_moe",
        num_layers=94, hidden_size=4096, intermediate_size=12288, num_attention_heads=64,
        num_kv_heads=4, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
        total_params=235_000_000_000, active_params=22_000_000_000, native_dtype="bf16",
        moe_intermediate_size=1536, num_experts_per_tok=8,
        source=_hf("Qwen/Qwen3-235B-A22B")),
    # Small models behind the 8 GB- and H200-class start-up logs of tools/bench_kv.py.
    # Llama-3.2-1B: GQA with 8 KV heads of 64 dims, 32 KiB of KV per token; tied embeddings.
    ModelSpec(
        name="llama-3.2-1b", hf_repo="meta-llama/Llama-3.2-1B", architecture="llama",
        num_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
        num_kv_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
        total_params=1_235_814_400, native_dtype="bf16", tie_word_embeddings=True,
        source=_hf("meta-llama/Llama-3.2-1B")),
    # phi-1.5: full multi-head attention (32 heads of 64 dims), 192 KiB of KV per token.
    ModelSpec(
        name="phi-1.5", hf_repo="microsoft/phi-1_5", architecture="phi",
        num_layers=24, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
        num_kv_heads=32, head_dim=64, vocab_size=51200, max_position_embeddings=2048,
        total_params=1_418_270_720, native_dtype="fp16",
        source=_hf("microsoft/phi-1_5")),
    # rho-1b (a TinyLlama-1.1B-architecture model, fine-tuned on GSM8K): 4 KV heads of 64
    # dims, 22 KiB of KV per token. vLLM's own figures confirm the shape: 365,549 blocks
    # of 16 tokens x 22,528 bytes = the 122.71 GiB it logged for the KV cache.
    ModelSpec(
        name="rho-1b-sft-gsm8k", hf_repo="realtreetune/rho-1b-sft-GSM8K", architecture="llama",
        num_layers=22, hidden_size=2048, intermediate_size=5632, num_attention_heads=32,
        num_kv_heads=4, head_dim=64, vocab_size=32000, max_position_embeddings=2048,
        total_params=1_100_048_384, native_dtype="bf16",
        source=_hf("realtreetune/rho-1b-sft-GSM8K")),
)}


# ------------------------------------------------------------------- GPUs and instances


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model. Throughput figures are NVIDIA datasheet peaks (dense, no sparsity);
    sizing applies efficiency factors to them, they are not achievable rates."""

    name: str  # as AWS GpuInfo names it
    aws_memory_mib: int  # GpuInfo.Gpus[].MemoryInfo.SizeInMiB, what preflight compares
    usable_gib: float  # CUDA-reported device total, what --gpu-memory-utilization scales
    memory_bandwidth_gbps: float
    bf16_tflops: float
    native_fp8: bool  # Ada/Hopper tensor cores; Ampere runs FP8 checkpoints weight-only
    source: str


GPUS: dict[str, GpuSpec] = {g.name: g for g in (
    GpuSpec("A10G", 22888, 22.0, 600, 125, False,
            "https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (A10G is AWS's A10)"),
    GpuSpec("L4", 22888, 22.0, 300, 121, True,
            "https://www.nvidia.com/en-us/data-center/l4/ (nvidia-smi total 23034 MiB)"),
    GpuSpec("L40S", 45776, 44.3, 864, 362, True,
            "https://www.nvidia.com/en-us/data-center/l40s/"),
    GpuSpec("A100-40GB", 40960, 39.3, 1555, 312, False,
            "https://www.nvidia.com/en-us/data-center/a100/ (torch reports 39.39 GiB)"),
    GpuSpec("A100-80GB", 81920, 79.1, 2039, 312, False,
            "https://www.nvidia.com/en-us/data-center/a100/ (torch reports 79.15 GiB)"),
    GpuSpec("H100", 81920, 79.1, 3350, 989, True,
            "https://www.nvidia.com/en-us/data-center/h100/ (vLLM logs 79.22 GiB)"),
    GpuSpec("H200", 144384, 139.7, 4800, 989, True,
            "https://www.nvidia.com/en-us/data-center/h200/ (nvidia-smi total 143771 MiB)"),
)}

# Service Quotas codes for the vCPU quotas GPU instances draw on, per region. Confirmed
# in public preflight scripts and the console URLs
# https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-DB2E81BA and
# .../L-417A185B (names: "Running On-Demand G and VT instances",
# "Running On-Demand P instances").
QUOTA_G_AND_VT = "L-DB2E81BA"
QUOTA_P = "L-417A185B"
QUOTA_NAMES = {
    QUOTA_G_AND_VT: "Running On-Demand G and VT instances",
    QUOTA_P: "Running On-Demand P instances",
}


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    gpu: GpuSpec
    gpu_count: int
    vcpus: int
    memory_gib: int
    quota_code: str
    # Local NVMe instance store in GiB (DescribeInstanceTypes InstanceStorageInfo
    # TotalSizeInGB x 10^9 / 2^30); 0 where the catalog records none.
    instance_store_gib: int = 0
    instance_store_disks: int = 0
    # EFA interfaces the type supports (NetworkInfo.EfaInfo.MaximumEfaInterfaces); 0: no EFA.
    efa_interfaces: int = 0

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def aws_gpu_name(self) -> str:
        """The GPU name AWS's GpuInfo reports (both A100 variants are just "A100")."""
        return self.gpu.name.split("-", 1)[0]

    @property
    def total_gpu_gib(self) -> float:
        return self.gpu.usable_gib * self.gpu_count


# (size, vCPUs, GPUs) is shared by g5 and g6; g6e doubles host memory per size.
_G_SIZES = (("xlarge", 4, 1), ("2xlarge", 8, 1), ("4xlarge", 16, 1), ("8xlarge", 32, 1),
            ("12xlarge", 48, 4), ("16xlarge", 64, 1), ("24xlarge", 96, 4),
            ("48xlarge", 192, 8))


def _g_family(family: str, gpu: str, gib_per_vcpu: int) -> list[InstanceSpec]:
    return [InstanceSpec(f"{family}.{size}", GPUS[gpu], gpus, vcpus, vcpus * gib_per_vcpu,
                         QUOTA_G_AND_VT)
            for size, vcpus, gpus in _G_SIZES]


# 8 x 3840 GB, in GiB, rounded down.
_P5_STORE_GIB = 8 * 3840 * 10**9 // 2**30

INSTANCES: dict[str, InstanceSpec] = {i.name: i for i in (
    *_g_family("g5", "A10G", 4),
    *_g_family("g6", "L4", 4),
    *_g_family("g6e", "L40S", 8),
    InstanceSpec("p4d.24xlarge", GPUS["A100-40GB"], 8, 96, 1152, QUOTA_P),
    InstanceSpec("p4de.24xlarge", GPUS["A100-80GB"], 8, 96, 1152, QUOTA_P),
    # p5/p5e/p5en: 8 x 3.84 TB NVMe and 32 EFA interfaces (3200 Gbps), per
    # https://aws.amazon.com/ec2/instance-types/p5/ ("Instance Storage: 8 x 3.84 TB NVMe SSD").
    InstanceSpec("p5.48xlarge", GPUS["H100"], 8, 192, 2048, QUOTA_P,
                 instance_store_gib=_P5_STORE_GIB, instance_store_disks=8, efa_interfaces=32),
    InstanceSpec("p5e.48xlarge", GPUS["H200"], 8, 192, 2048, QUOTA_P,
                 instance_store_gib=_P5_STORE_GIB, instance_store_disks=8, efa_interfaces=32),
    InstanceSpec("p5en.48xlarge", GPUS["H200"], 8, 192, 2048, QUOTA_P,
                 instance_store_gib=_P5_STORE_GIB, instance_store_disks=8, efa_interfaces=16),
)}


# -------------------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class RuntimeImage:
    """A container image pinned by tag and, where it could be confirmed, by digest.

    A digest that could not be confirmed is left ``None`` rather than guessed: a wrong
    digest fails every pull, and an invented one hides that nobody checked.
    """

    repository: str
    tag: str
    digest: str | None
    digest_source: str
    # Whether the image starts as the non-root UID every runtime container runs as
    # (components/serving/sandbox.py); why not, when it does not.
    non_root_problem: str | None = None

    @property
    def reference(self) -> str:
        if self.digest:
            return f"{self.repository}:{self.tag}@{self.digest}"
        return f"{self.repository}:{self.tag}"

    @property
    def pinned_by_digest(self) -> bool:
        return self.digest is not None


RUNTIME_IMAGES: dict[str, RuntimeImage] = {
    # v0.11.0: the first release with the V1 engine only (V0 removed); this digest appears
    # in several unrelated public deployments pinning this tag (for example a test named
    # test_inference_runtime_defaults_use_verified_releases). A second digest,
    # sha256:d8d39b59e909d2378ac4feeb191f7e7b6f1342477dc66b7c47cec89e9985ad8a, circulates
    # with --platform=linux/amd64: most likely the amd64 manifest inside this index.
    "vllm": RuntimeImage(
        "vllm/vllm-openai", "v0.11.0",
        "sha256:014a95f21c9edf6abe0aea6b07353f96baa4ec291c427bb1176dc7c93a85845c",
        "public pinned references to vllm/vllm-openai:v0.11.0 (code search); confirm with "
        "`docker buildx imagetools inspect vllm/vllm-openai:v0.11.0` before release"),
    # TGI 3.3.5 is the version the upstream docs use in their examples. No public pin of
    # this tag's digest could be found, so it is left unpinned on purpose.
    "tgi": RuntimeImage(
        "ghcr.io/huggingface/text-generation-inference", "3.3.5", None,
        "digest NOT confirmed: resolve with `docker buildx imagetools inspect "
        "ghcr.io/huggingface/text-generation-inference:3.3.5` and record it here",
        non_root_problem="its Python lives under /root (mode 0700), so it cannot start as a non-root "
                         "user (huggingface/text-generation-inference#3082)"),
    # Two digests circulate for 0.12.6 (352e045b... and a61a8fd3...), presumably the
    # multi-arch index and one platform manifest; the first appears in more independent
    # references.
    "ollama": RuntimeImage(
        "ollama/ollama", "0.12.6",
        "sha256:352e045b937ac29d3d9550c22fb85525f60a89e064df34c26579bee5a93b3a16",
        "public pinned references to ollama/ollama:0.12.6 (code search); confirm with "
        "`docker buildx imagetools inspect ollama/ollama:0.12.6` before release"),
}


# -------------------------------------------------------------------------- lookups


def _lookup(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        allowed = ", ".join(sorted(table))
        raise CatalogError(f"unknown {what} {name!r}; the catalog has: {allowed}") from None


def get_model(name: str) -> ModelSpec:
    """A served model by catalog name (reference-only models are not servable)."""
    return _lookup(MODELS, name, "model")


def get_reference_model(name: str) -> ModelSpec:
    return _lookup(REFERENCE_MODELS, name, "reference model")


def get_instance(name: str) -> InstanceSpec:
    return _lookup(INSTANCES, name, "instance type")


def get_runtime_image(runtime: str) -> RuntimeImage:
    return _lookup(RUNTIME_IMAGES, runtime, "runtime")


def instances_by_size() -> list[InstanceSpec]:
    """Catalog instance types, smallest first: total GPU memory, then GPUs, then vCPUs.

    This is the order fit errors search in when they propose "the smallest instance type
    that fits"; vCPUs stand in for price within equal GPU memory.
    """
    return sorted(INSTANCES.values(),
                  key=lambda i: (i.total_gpu_gib, i.gpu_count, i.vcpus, i.name))


def interchangeable_instances(name: str) -> list[InstanceSpec]:
    """Catalog types a replica sized for `name` runs on unchanged: the same GPU count of the
    same usable memory per GPU (so the same runtime flags), and at least the host memory and
    vCPUs the pod or container was sized with. Cheapest-looking first (fewest vCPUs); `name`
    itself leads. Spot draws on several such pools, so one pool running dry does not stop it.
    """
    base = get_instance(name)
    same = [i for i in INSTANCES.values()
            if i.gpu_count == base.gpu_count and i.gpu.usable_gib == base.gpu.usable_gib
            and i.memory_gib >= base.memory_gib and i.vcpus >= base.vcpus
            and i.gpu.native_fp8 >= base.gpu.native_fp8]
    return sorted(same, key=lambda i: (i.name != name, i.vcpus, i.memory_gib, i.name))


def spot_instance_types(declared: str, requested: Sequence[str] = (), limit: int = 4) -> list[str]:
    """The types a spot group may launch for a replica sized for `declared`: `declared` first
    (on-demand launches it), then `requested`, or the interchangeable types when none are."""
    fitting = [i.name for i in interchangeable_instances(declared)]
    if not requested:
        return fitting[:limit]
    for name in requested:
        if name not in fitting:
            raise CatalogError(
                f"spot.instance_types lists {name}, which does not run a replica sized for "
                f"{declared} unchanged; allowed: {', '.join(fitting)}")
    return [declared] + [t for t in requested if t != declared]
