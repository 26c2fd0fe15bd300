"""The request shape a model is sized for: the inventory's, or its family's default.

Every capacity number follows from it (components/serving/sizing.py): the KV cache one
sequence may grow to (p95 prompt + max output, never more than the context), hence how
many sequences a replica runs at once, the queue that drains within the wait budget, the
replica's request rate, and the gateway throttles that rate caps. The max output also
becomes the runtime's generation ceiling, so the sizing and the server agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass

from components.serving.catalog import FAMILY_WORKLOADS, ModelSpec


@dataclass(frozen=True)
class WorkloadShape:
    """Prompt and output token counts: typical for throughput, p95/max for memory."""

    prompt_typical: int
    prompt_p95: int
    output_typical: int
    output_max: int
    # "inventory" (models[].workload) or "<family> default" (the catalog's, capped).
    source: str = "inventory"

    @property
    def sequence_tokens(self) -> int:
        """The KV cache one sequence may need: a p95 prompt that writes its full output."""
        return self.prompt_p95 + self.output_max

    @property
    def typical_tokens(self) -> int:
        return self.prompt_typical + self.output_typical

    def fitted(self, max_context: int) -> "WorkloadShape":
        """The shape within a context of ``max_context`` tokens.

        The output ceiling keeps its value where it fits; otherwise the prompt p95 keeps at
        most half the context and the output gets the rest (a reasoning model's 32K outputs
        do not fit a 16K context, and its answer must not lose to a long prompt).
        """
        if self.sequence_tokens <= max_context:
            return self
        output_max = min(self.output_max, max_context - min(self.prompt_p95, max_context // 2))
        prompt_p95 = min(self.prompt_p95, max_context - output_max)
        return WorkloadShape(
            prompt_typical=min(self.prompt_typical, prompt_p95), prompt_p95=prompt_p95,
            output_typical=min(self.output_typical, output_max), output_max=output_max,
            source=self.source)


def family_default(spec: ModelSpec | None) -> WorkloadShape:
    """The catalog's shape for the model's family (``chat`` for an uncatalogued model)."""
    family = spec.family if spec is not None else "chat"
    shape = FAMILY_WORKLOADS[family]
    return WorkloadShape(shape.prompt_typical, shape.prompt_p95, shape.output_typical,
                         shape.output_max, source=f"{family} default")


def resolve_workload(model, spec: ModelSpec | None) -> WorkloadShape:
    """The shape for an inventory model: its ``workload``, else the family default fitted to
    its ``max_context`` (explicit shapes are validated against it by the inventory)."""
    if model.workload is not None:
        w = model.workload
        return WorkloadShape(w.prompt_tokens.typical, w.prompt_tokens.p95,
                             w.output_tokens.typical, w.output_tokens.max)
    return family_default(spec).fitted(model.max_context)
