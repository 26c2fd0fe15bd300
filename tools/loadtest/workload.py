"""What the load test sends: prompt and output lengths drawn from a workload shape.

Real chat traffic has right-skewed lengths (many short prompts, a long tail of pasted
documents), which a lognormal describes well. With a stack, the shape is the model's own
workload, the one the sizing estimate used (components/serving/workload.py: typical and p95
prompt, typical and max output): the medians are the typical lengths, the prompt's spread
puts its p95 where the workload says, and the output's puts the max at its p99 (then caps
it there), so a measured capacity is comparable with the estimated one. Lengths are capped
so that prompt + output fits the model's context. The `worst-case` profile
sends the longest prompt and output the context allows, every time: the guide's
"test with worst-case prompts", where KV cache and prefill are hardest pressed.

Prompts are made of common one-token English words, so `words ~= tokens` for the
tokenizers of the served models; the server's own `usage.prompt_tokens` is what the
report counts when the server sends it.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

PROFILES = ("realistic", "worst-case")
# Common words that are one token each in the Llama, Qwen and DeepSeek tokenizers.
_WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
          "which but have an they you were her she there been one all we their has would when "
          "if so no out up into them can time some could more two then first other new after "
          "any these also most made over did many before must through back years where much "
          "your way well down should because each just those people how too little state good "
          "very make world still own see men work long get here between both life being under "
          "never day same another know while last might us great old year off come since "
          "against go came right used take three").split()


class WorkloadError(ValueError):
    """A workload that cannot be generated; the message names the option."""


@dataclass(frozen=True)
class WorkloadShape:
    profile: str = "realistic"
    prompt_median: int = 1024
    output_median: int = 512
    # Lognormal sigma (spread of log-lengths) of prompts: 1.0 puts p95 at about 5x the median.
    sigma: float = 0.8
    # Of outputs; None: the same as prompts'.
    output_sigma: Optional[float] = None
    # Longest prompt + output the model accepts.
    max_context: int = 8192
    # Server-side ceiling on generated tokens (the inventory's max_new_tokens).
    max_output: int = 4096

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise WorkloadError(f"--profile {self.profile!r}: allowed {', '.join(PROFILES)}")
        if self.prompt_median < 1 or self.output_median < 1:
            raise WorkloadError("prompt and output medians must be at least 1 token")
        if self.sigma < 0 or (self.output_sigma is not None and self.output_sigma < 0):
            raise WorkloadError(f"--sigma {self.sigma} must be >= 0")
        if self.max_context < 2:
            raise WorkloadError(f"--max-context {self.max_context} must be at least 2 tokens")


@dataclass(frozen=True)
class RequestShape:
    prompt_tokens: int
    output_tokens: int


# z-scores of the 95th and 99th percentiles of a standard normal.
Z95, Z99 = 1.6449, 2.3263


def spread_for(median: int, quantile_value: int, z: float, floor: float = 0.1) -> float:
    """The lognormal sigma that puts `quantile_value` at the quantile with z-score `z`."""
    if median <= 0 or quantile_value <= median:
        return floor
    return max(floor, math.log(quantile_value / median) / z)


def from_sizing(workload, *, max_context: int) -> "WorkloadShape":
    """The load test's shape for a sizing workload (typical/p95 prompt, typical/max output)."""
    return WorkloadShape(prompt_median=workload.prompt_typical, output_median=workload.output_typical,
                         sigma=spread_for(workload.prompt_typical, workload.prompt_p95, Z95),
                         output_sigma=spread_for(workload.output_typical, workload.output_max, Z99),
                         max_context=max_context, max_output=workload.output_max)


def lognormal_length(rng: random.Random, median: int, sigma: float, low: int, high: int) -> int:
    """One length from a lognormal with this median, clamped to [low, high]."""
    value = median * math.exp(sigma * rng.gauss(0.0, 1.0))
    return max(low, min(high, int(round(value))))


def draw(shape: WorkloadShape, rng: random.Random) -> RequestShape:
    output_cap = max(1, min(shape.max_output, shape.max_context - 1))
    if shape.profile == "worst-case":
        output = output_cap
        return RequestShape(prompt_tokens=max(1, shape.max_context - output), output_tokens=output)
    output_sigma = shape.sigma if shape.output_sigma is None else shape.output_sigma
    output = lognormal_length(rng, shape.output_median, output_sigma, 1, output_cap)
    prompt = lognormal_length(rng, shape.prompt_median, shape.sigma, 1, max(1, shape.max_context - output))
    return RequestShape(prompt_tokens=prompt, output_tokens=output)


def prompt_text(tokens: int, rng: random.Random) -> str:
    """About `tokens` tokens of filler text, different per request (no prefix-cache shortcut)."""
    words = [rng.choice(_WORDS) for _ in range(max(1, tokens - 8))]
    return "Continue this text: " + " ".join(words)


def chat_body(model: str, request: RequestShape, rng: random.Random) -> dict:
    """An OpenAI chat completion request that streams and reports usage in its last chunk."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt_text(request.prompt_tokens, rng)}],
        "max_tokens": request.output_tokens,
        # Generate exactly max_tokens, so output lengths follow the drawn distribution.
        "ignore_eos": True,
        "temperature": 0.7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
