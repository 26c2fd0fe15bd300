"""The metrics each runtime really exports, for the pinned versions: one list per runtime.

Recording rules, alert rules, Grafana dashboards and the EC2 scrape configuration name
series; tests/test_token_metrics.py checks every name they use against these lists, so a
renamed metric in a runtime upgrade fails a test instead of silently emptying a panel.
Update the lists (and their sources) whenever catalog.py moves a runtime version.

Sources, read at the pinned versions:
- vLLM v0.11.0 (catalog: vllm/vllm-openai:v0.11.0): vllm/v1/metrics/loggers.py,
  `PrometheusStatLogger`, and vllm/v1/spec_decode/metrics.py. Python prometheus_client
  exposes a Counter `x` as `x_total` and a Histogram as `x_bucket`/`x_sum`/`x_count`.
  In 0.11 `vllm:gpu_cache_usage_perc` (and the gpu_prefix_cache counters) exist only with
  `--show-hidden-metrics-for-version=0.10`; `vllm:time_per_output_token_seconds` is
  deprecated in favour of `vllm:inter_token_latency_seconds` (both still exported).
  vLLM v1 preempts by recomputation only: `vllm:num_preemptions` counts the
  recomputations too.
- TGI v3.3.5 (catalog: text-generation-inference:3.3.5): router/src/server.rs,
  router/src/infer/mod.rs, backends/v3/src/{backend,queue,lib}.rs. The Rust `metrics`
  crate through metrics-exporter-prometheus 0.15.3 renders counters under their own name
  (no `_total`; TGI's own assets/tgi_grafana.json queries `tgi_request_count`) and
  histograms as `_bucket`/`_sum`/`_count`. TGI has no time-to-first-token histogram:
  queue time (`tgi_request_queue_duration`) plus prefill (`tgi_batch_inference_duration`
  with method="prefill") is its share of it. It never preempts: a request waits in the
  queue until its KV blocks fit.
- Ollama 0.12.6: no Prometheus endpoint at all (no /metrics route in server/routes.go).
  Its request path is measured outside it: the gateway (API Gateway metrics, the
  access-log time to first byte), the load balancer, DCGM for the GPU, and `make loadtest`.
- DCGM exporter (chart dcgm-exporter 4.8.3): etc/default-counters.csv.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class RuntimeMetric:
    name: str
    kind: Kind
    meaning: str


VLLM = (
    RuntimeMetric("vllm:num_requests_running", "gauge", "requests in the running batch"),
    RuntimeMetric("vllm:num_requests_waiting", "gauge", "requests waiting to be scheduled"),
    RuntimeMetric("vllm:kv_cache_usage_perc", "gauge", "KV cache in use, 0..1"),
    RuntimeMetric("vllm:prefix_cache_queries", "counter", "tokens looked up in the prefix cache"),
    RuntimeMetric("vllm:prefix_cache_hits", "counter", "tokens found in the prefix cache"),
    RuntimeMetric("vllm:num_preemptions", "counter", "requests preempted (recomputed later)"),
    RuntimeMetric("vllm:prompt_tokens", "counter", "prompt (prefill) tokens processed"),
    RuntimeMetric("vllm:generation_tokens", "counter", "tokens generated"),
    RuntimeMetric("vllm:request_success", "counter", "finished requests by finished_reason"),
    RuntimeMetric("vllm:request_prompt_tokens", "histogram", "prompt tokens per request"),
    RuntimeMetric("vllm:request_generation_tokens", "histogram", "generated tokens per request"),
    RuntimeMetric("vllm:iteration_tokens_total", "histogram", "tokens per engine step"),
    RuntimeMetric("vllm:request_max_num_generation_tokens", "histogram", "requested max generation tokens"),
    RuntimeMetric("vllm:request_params_n", "histogram", "the n parameter"),
    RuntimeMetric("vllm:request_params_max_tokens", "histogram", "the max_tokens parameter"),
    RuntimeMetric("vllm:time_to_first_token_seconds", "histogram", "time to first token"),
    RuntimeMetric("vllm:time_per_output_token_seconds", "histogram", "time per output token (deprecated)"),
    RuntimeMetric("vllm:inter_token_latency_seconds", "histogram", "time between output tokens"),
    RuntimeMetric("vllm:request_time_per_output_token_seconds", "histogram", "mean time per output token per request"),
    RuntimeMetric("vllm:e2e_request_latency_seconds", "histogram", "end-to-end request latency"),
    RuntimeMetric("vllm:request_queue_time_seconds", "histogram", "time waiting before first scheduled"),
    RuntimeMetric("vllm:request_inference_time_seconds", "histogram", "time running (prefill + decode)"),
    RuntimeMetric("vllm:request_prefill_time_seconds", "histogram", "prefill time"),
    RuntimeMetric("vllm:request_decode_time_seconds", "histogram", "decode time"),
    RuntimeMetric("vllm:cache_config_info", "gauge", "KV cache configuration (labels)"),
)

TGI = (
    RuntimeMetric("tgi_request_count", "counter", "requests received"),
    RuntimeMetric("tgi_request_success", "counter", "requests answered"),
    RuntimeMetric("tgi_request_failure", "counter", "failures by err (validation, overloaded, generation, ...)"),
    RuntimeMetric("tgi_request_duration", "histogram", "end-to-end request duration"),
    RuntimeMetric("tgi_request_validation_duration", "histogram", "validation and tokenisation"),
    RuntimeMetric("tgi_request_queue_duration", "histogram", "time in the queue"),
    RuntimeMetric("tgi_request_inference_duration", "histogram", "time in inference"),
    RuntimeMetric("tgi_request_mean_time_per_token_duration", "histogram", "mean time per output token per request"),
    RuntimeMetric("tgi_request_input_length", "histogram", "prompt tokens per request"),
    RuntimeMetric("tgi_request_generated_tokens", "histogram", "generated tokens per request"),
    RuntimeMetric("tgi_request_max_new_tokens", "histogram", "requested max_new_tokens"),
    RuntimeMetric("tgi_request_skipped_tokens", "histogram", "speculated tokens accepted"),
    RuntimeMetric("tgi_queue_size", "gauge", "requests waiting"),
    RuntimeMetric("tgi_batch_current_size", "gauge", "requests in the running batch"),
    RuntimeMetric("tgi_batch_current_max_tokens", "gauge", "KV tokens the running batch may hold"),
    RuntimeMetric("tgi_batch_max_total_tokens", "gauge", "KV token budget (--max-batch-total-tokens, inferred)"),
    RuntimeMetric("tgi_batch_next_size", "histogram", "size of the next batch"),
    RuntimeMetric("tgi_batch_concat", "counter", "batch concatenations by reason"),
    RuntimeMetric("tgi_batch_concat_duration", "histogram", "batch concatenation time"),
    RuntimeMetric("tgi_batch_forward_duration", "histogram", "model forward time by method (prefill, decode)"),
    RuntimeMetric("tgi_batch_decode_duration", "histogram", "token decode time by method"),
    RuntimeMetric("tgi_batch_filter_duration", "histogram", "batch filter time by method"),
    RuntimeMetric("tgi_batch_inference_duration", "histogram", "batch inference time by method"),
    RuntimeMetric("tgi_batch_inference_count", "counter", "batch inferences by method"),
    RuntimeMetric("tgi_batch_inference_success", "counter", "successful batch inferences by method"),
    RuntimeMetric("tgi_batch_inference_failure", "counter", "failed batch inferences by method"),
)

DCGM = (
    RuntimeMetric("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilisation, %"),
    RuntimeMetric("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "memory bandwidth utilisation, %"),
    RuntimeMetric("DCGM_FI_DEV_FB_USED", "gauge", "framebuffer used, MiB"),
    RuntimeMetric("DCGM_FI_DEV_FB_FREE", "gauge", "framebuffer free, MiB"),
    RuntimeMetric("DCGM_FI_DEV_POWER_USAGE", "gauge", "power draw, W"),
    RuntimeMetric("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature, C"),
    RuntimeMetric("DCGM_FI_DEV_XID_ERRORS", "gauge", "last XID error"),
)

RUNTIME_METRICS: dict[str, tuple[RuntimeMetric, ...]] = {"vllm": VLLM, "tgi": TGI, "ollama": ()}
# How each exporter renders a counter's sample name.
_COUNTER_SUFFIX = {"vllm": "_total", "tgi": "", "dcgm": ""}
# Series every Prometheus scrape adds per target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def _samples(metrics: tuple[RuntimeMetric, ...], counter_suffix: str) -> frozenset[str]:
    names: set[str] = set()
    for metric in metrics:
        if metric.kind == "counter":
            names.add(metric.name + counter_suffix)
        elif metric.kind == "histogram":
            names |= {metric.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(metric.name)
    return frozenset(names)


def exported_series(runtime: str) -> frozenset[str]:
    """Sample names a scrape of this runtime's /metrics returns (empty for Ollama)."""
    return _samples(RUNTIME_METRICS[runtime], _COUNTER_SUFFIX.get(runtime, ""))


def gpu_series() -> frozenset[str]:
    return _samples(DCGM, _COUNTER_SUFFIX["dcgm"])


def metric_kind(runtime: str, name: str) -> Kind:
    for metric in RUNTIME_METRICS[runtime]:
        if metric.name == name:
            return metric.kind
    raise KeyError(f"{runtime} exports no metric {name}")
