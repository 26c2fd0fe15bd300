"""The stack inventory: one structured config object per stack, parsed once into pydantic models.

Each `stacks/Pulumi.<stack>.yaml` holds `deepseek-serving:inventory`, an inventory in the
Ansible sense: it declares what must exist and components converge to it. This module is
the only place config is read, and the only place defaults live.

Bad input never reaches a component: `parse_inventory` raises `InventoryError` whose
message names the stack file, the key path, the bad value and what is allowed. Secret
values never appear in the inventory itself: a field that holds a secret takes a
reference, either to a `secure:` config key of the same stack or to a Secrets Manager ARN.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Container, Literal, Optional, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from components.aws_regions import REGION_AZ_COUNT

PROJECT = "deepseek-serving"
INVENTORY_KEY = "inventory"
ENVIRONMENTS = ("dev", "staging", "prod")
RUNTIMES = ("vllm", "tgi", "ollama")
GGUF_QUANTIZATIONS = ("q4_k_m", "q8_0")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
# Runtime flags an inventory may set explicitly; sizing checks them like derived ones.
RUNTIME_OVERRIDE_KEYS = {
    "vllm": ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "tensor_parallel_size"),
    "tgi": ("max_input_tokens", "max_total_tokens", "max_batch_prefill_tokens",
            "max_batch_total_tokens", "max_concurrent_requests"),
    "ollama": ("num_parallel", "max_queue", "context_length"),
}

_DNS_LABEL = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
_HOSTNAME = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
_PARTITION = r"arn:aws(-cn|-us-gov)?"
_REGION = r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d"
_ACCOUNT = r"\d{12}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The resource part of each service's ARN, from the AWS Service Authorization Reference
# ("Resource types defined by <service>"): https://docs.aws.amazon.com/service-authorization/latest/reference/
_ARN_RESOURCES = {
    "acm": rf"certificate/{_UUID}",
    "acm-pca": rf"certificate-authority/{_UUID}",
    "secretsmanager": r"secret:[A-Za-z0-9_/+=.@-]+-[A-Za-z0-9]{6}",
    "cognito-idp": rf"userpool/{_REGION}_[0-9A-Za-z]+",
    "lambda": r"function:[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]+))?",
    "sns": r"[A-Za-z0-9_-]{1,256}(\.fifo)?",
    "iam": r"role/([A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]{1,64}",
}
# Human-readable forms of the same, for messages.
ARN_FORMATS = {
    "acm": "arn:aws:acm:<region>:<12-digit account>:certificate/<uuid>",
    "acm-pca": "arn:aws:acm-pca:<region>:<12-digit account>:certificate-authority/<uuid>",
    "secretsmanager": "arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>-<6 characters>",
    "cognito-idp": "arn:aws:cognito-idp:<region>:<12-digit account>:userpool/<region>_<id>",
    "lambda": "arn:aws:lambda:<region>:<12-digit account>:function:<name>[:<alias or version>]",
    "sns": "arn:aws:sns:<region>:<12-digit account>:<topic name>",
    "iam": "arn:aws:iam::<12-digit account>:role/<name>",
}


class InventoryError(Exception):
    """An inventory that must not be deployed; the message says where and how to fix it."""


class _Strict(BaseModel):
    # Unknown keys are typos or settings we do not implement: refuse both.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def _arn(service: str) -> str:
    region = "" if service == "iam" else _REGION  # IAM is global: its ARNs have no region
    return rf"^{_PARTITION}:{service}:{region}:{_ACCOUNT}:{_ARN_RESOURCES[service]}$"


def arn_region(arn: str) -> str:
    """The region field of an ARN ("" for global services)."""
    return arn.split(":")[3]


Name = Annotated[str, Field(pattern=_DNS_LABEL)]


class SecretRef(_Strict):
    """Where a secret lives: a `secure:` key of this stack's config, or Secrets Manager."""

    config: Optional[str] = Field(default=None, pattern=r"^[a-zA-Z][a-zA-Z0-9_]*$")
    secrets_manager_arn: Optional[str] = Field(default=None, pattern=_arn("secretsmanager"))

    @model_validator(mode="before")
    @classmethod
    def _refuse_plaintext(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "plaintext_secret",
                "a plaintext secret is not allowed here; store it with `pulumi config set "
                "--secret <key> <value>` and write {config: <key>}, or write "
                "{secrets_manager_arn: <arn>}",
            )
        if "secure" in value:
            raise PydanticCustomError(
                "nested_secure", "a `secure:` value cannot sit inside the inventory; set it as "
                "its own key with `pulumi config set --secret <key> <value>` and write "
                "{config: <key>} here",
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
        if (self.config is None) == (self.secrets_manager_arn is None):
            raise PydanticCustomError(
                "secret_ref", "give exactly one of `config` or `secrets_manager_arn`"
            )
        return self


class Network(_Strict):
    cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.0.0.0/16")
    az_count: int = Field(default=2, ge=2, le=6)
    # One NAT per AZ survives the loss of a zone; one shared NAT is a dev saving.
    nat_gateways: Literal["single", "per_az"] = "per_az"
    flow_log_retention_days: int = 365
    # Networks elsewhere in the organisation (peered VPCs, on-prem) the VPC must not overlap.
    reserved_cidrs: list[ipaddress.IPv4Network] = []
    # Zones by name (empty: the account's first az_count zones). Names map to physical zones
    # per account; `make preflight` checks your account offers the GPUs in these.
    availability_zones: list[Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")]] = []

    @model_validator(mode="before")
    @classmethod
    def _count_from_zones(cls, value: Any) -> Any:
        # Naming the zones says how many: az_count need not repeat it.
        if isinstance(value, dict) and isinstance(value.get("availability_zones"), list) \
                and "az_count" not in value:
            return {**value, "az_count": len(value["availability_zones"])}
        return value

    @model_validator(mode="after")
    def _zones_match_count(self) -> "Network":
        if self.availability_zones:
            _unique(list(self.availability_zones), ("network", "availability_zones"), key=None)
            if len(self.availability_zones) != self.az_count:
                raise _at(("az_count",), self.az_count,
                          f"network.availability_zones names {len(self.availability_zones)} zones; "
                          "az_count must match (or leave az_count out)")
        return self

    @field_validator("cidr")
    @classmethod
    def _cidr_size(cls, cidr: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not 16 <= cidr.prefixlen <= 20:
            raise PydanticCustomError(
                "cidr_size", "the VPC CIDR must be a /16 to /20 (AWS allows /16../28; "
                "smaller leaves no room for per-AZ subnets)"
            )
        if not cidr.is_private:
            raise PydanticCustomError("cidr_private", "the VPC CIDR must be a private (RFC 1918) range")
        return cidr

    @field_validator("flow_log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        return _check_retention(days)

    @model_validator(mode="after")
    def _no_overlap(self) -> "Network":
        for index, other in enumerate(self.reserved_cidrs):
            if self.cidr.overlaps(other):
                raise PydanticCustomError(
                    "cidr_overlap",
                    "the VPC CIDR {cidr} overlaps reserved_cidrs[{index}] {other}; choose a "
                    "range that overlaps none of them",
                    {"cidr": str(self.cidr), "index": index, "other": str(other)},
                )
        return self


def _check_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise PydanticCustomError(
            "retention", "CloudWatch Logs retention must be one of {allowed}",
            {"allowed": ", ".join(map(str, LOG_RETENTION_DAYS))},
        )
    return days


class Weights(_Strict):
    """Where the weights come from and how they are verified before the runtime starts.

    `manifest_sha256` pins a SHA256SUMS manifest (one line per file); every weight file is
    checked against it, so a tampered or truncated download never starts serving.
    """

    source: Literal["s3", "hub"] = "s3"
    s3_uri: Optional[str] = Field(default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?/$")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Platform ec2, source hub: lets this model's hosts reach the internet on 443 through the
    # NAT to download from the hub. Off, EC2 hosts reach AWS through VPC endpoints only.
    internet_egress: bool = False

    @model_validator(mode="after")
    def _s3_needs_uri(self) -> "Weights":
        if self.source == "s3" and self.s3_uri is None:
            raise PydanticCustomError(
                "s3_uri", "weights.source s3 needs s3_uri (s3://bucket/prefix/, ending in /)"
            )
        if self.internet_egress and self.source != "hub":
            raise PydanticCustomError(
                "internet_egress", "weights.internet_egress opens the internet for hub downloads only; "
                "with source {source} the hosts need none: remove it", {"source": self.source})
        return self

    @property
    def s3_bucket(self) -> Optional[str]:
        return self.s3_uri[5:].split("/", 1)[0] if self.s3_uri else None

    @property
    def s3_prefix(self) -> Optional[str]:
        return self.s3_uri[5:].split("/", 1)[1] if self.s3_uri else None


class PromptTokens(_Strict):
    # Tokens in the prompt of an ordinary request (throughput and queue estimates).
    typical: int = Field(ge=1, le=163840)
    # The long prompts that must still get their full output (KV reserved per sequence).
    p95: int = Field(ge=1, le=163840)


class OutputTokens(_Strict):
    # Tokens an ordinary request generates (throughput and queue estimates).
    typical: int = Field(ge=1, le=163840)
    # Server-side cap on generated tokens (the runtime's max-new-tokens ceiling); sequences
    # are counted at p95 prompt + this many tokens, so concurrency never over-promises.
    max: int = Field(ge=16, le=163840)


class Workload(_Strict):
    """The request shape a model is sized for: concurrency, queues, KV per sequence and the gateway throttles follow from it."""

    prompt_tokens: PromptTokens
    output_tokens: OutputTokens

    @model_validator(mode="after")
    def _ordered(self) -> "Workload":
        if self.prompt_tokens.typical > self.prompt_tokens.p95:
            raise PydanticCustomError(
                "workload_prompt", "prompt_tokens.typical {typical} is greater than "
                "prompt_tokens.p95 {p95}; typical must be <= p95",
                {"typical": self.prompt_tokens.typical, "p95": self.prompt_tokens.p95})
        if self.output_tokens.typical > self.output_tokens.max:
            raise PydanticCustomError(
                "workload_output", "output_tokens.typical {typical} is greater than "
                "output_tokens.max {max}; typical must be <= max",
                {"typical": self.output_tokens.typical, "max": self.output_tokens.max})
        return self


CapacityType = Literal["spot", "on-demand"]
_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# ASG scheduled actions and KEDA's cron scaler both take cron day-of-week fields.
SCHEDULE_DAYS = {"MON-FRI": "1-5", "MON-SAT": "1-6", "DAILY": "*"}


class Spot(_Strict):
    """EC2 Spot above an on-demand floor: an Auto Scaling mixed instances policy."""

    # Replicas that are always on-demand, whatever the spot market does.
    on_demand_base: int = Field(default=1, ge=0, le=100)
    # Share (percent) of the replicas above the base that are on-demand; 0 = all spot.
    on_demand_percentage_above_base: int = Field(default=0, ge=0, le=100)
    # Instance types spot may use besides the model's own; empty = every catalog type with the
    # same GPUs and at least the same host memory and vCPUs (identical runtime sizing).
    instance_types: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]] = []


class Schedule(_Strict):
    """Business hours: at least `min_replicas` from `start` to `end` on `days`, in `timezone`."""

    # An IANA time zone name, for example Europe/Berlin.
    timezone: str = "UTC"
    days: Literal["MON-FRI", "MON-SAT", "DAILY"] = "MON-FRI"
    start: str = Field(pattern=_CLOCK)
    end: str = Field(pattern=_CLOCK)
    # 0 (dev and staging only): the model scales to zero after `idle_minutes` without a request
    # and wakes on the next one, which is answered 503 + Retry-After while it starts.
    min_replicas: int = Field(default=1, ge=0, le=100)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "timezone", "not a known IANA time zone; use a name such as UTC or Europe/Berlin") from None
        return zone

    @model_validator(mode="after")
    def _order(self) -> "Schedule":
        if self.start >= self.end:
            raise PydanticCustomError(
                "schedule", "start {start} must be before end {end} (same day)",
                {"start": self.start, "end": self.end})
        return self

    def cron(self, clock: str) -> str:
        """`minute hour * * days` for a clock time, as both ASG and KEDA read cron."""
        hour, minute = clock.split(":")
        return f"{int(minute)} {int(hour)} * * {SCHEDULE_DAYS[self.days]}"


# Instance families AWS sells as Capacity Blocks for ML
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-capacity-blocks.html).
CAPACITY_BLOCK_FAMILIES = ("p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "trn1", "trn2")


class CapacityReservation(_Strict):
    """Launch into reserved capacity: an On-Demand Capacity Reservation or a Capacity Block.

    p5-class GPUs are often only obtainable this way. `capacity-block` sets the launch
    template's market type to `capacity-block` (and EKS node groups to CAPACITY_BLOCK);
    both target the reservation by id.
    """

    market_type: Literal["on-demand", "capacity-block"] = "on-demand"
    reservation_id: str = Field(pattern=r"^cr-[0-9a-f]{8}([0-9a-f]{9})?$")

    def launch_template_args(self) -> dict:
        """pulumi-aws LaunchTemplate arguments that launch into this reservation only
        (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-launch.html)."""
        args: dict = {"capacity_reservation_specification": {
            "capacity_reservation_target": {"capacity_reservation_id": self.reservation_id}}}
        if self.market_type == "capacity-block":
            args["instance_market_options"] = {"market_type": "capacity-block"}
        return args


class Model(_Strict):
    # Also the URL path (/<name>/v1) and the Kubernetes namespace, hence a DNS label.
    name: Name
    # The Hugging Face repository; sizing knows the catalog's DeepSeek architectures.
    hf_repo: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
    # A branch name moves; only a commit pins what was reviewed.
    revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    runtime: Literal["vllm", "tgi", "ollama"]
    # Platform ec2: the GPU instance each replica gets.
    instance_type: Optional[str] = Field(default=None, pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    # Platform eks: the eks.gpu_pools entry the pods are scheduled on.
    node_pool: Optional[Name] = None
    # 0 (dev and staging only): the model scales to zero after `idle_minutes` without a request
    # and wakes on the next one, which is answered 503 + Retry-After while it starts.
    min_replicas: int = Field(default=1, ge=0, le=100)
    # Also caps the gateway: no tier may ask for more than max_replicas can serve.
    max_replicas: int = Field(default=2, ge=1, le=100)
    # Longest prompt plus completion in tokens; checked against the GPU's KV cache capacity.
    max_context: int = Field(ge=512, le=163840)
    # q4_k_m and q8_0 are GGUF formats, for ollama only.
    quantization: Literal["none", "awq", "gptq", "fp8", "q4_k_m", "q8_0"] = "none"
    # Unset: the largest size the attention heads and the instance's GPUs allow.
    tensor_parallel: Optional[int] = Field(default=None, ge=1, le=8)
    # Share of GPU memory the runtime may take (vLLM's default); the rest is headroom.
    gpu_memory_utilization: float = Field(default=0.9, ge=0.5, le=0.95)
    # The traffic each replica is sized for; unset: the model family's default from the
    # catalog (reasoning models write long traces), capped to fit max_context.
    workload: Optional[Workload] = None
    # vLLM only. priority: requests of a tier with a lower `priority` are scheduled first (and
    # may preempt running ones); see docs/GATEWAY.md "Priority scheduling".
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"
    # Replace every replica after this many days (leaks, fragmentation): the ASG's maximum
    # instance lifetime on ec2, a scheduled rolling restart on eks. None: no bound.
    max_lifetime_days: Optional[int] = Field(default=None, ge=1, le=365)
    weights: Weights
    # Another build of the runtime than the catalog's (for example a TGI image rebuilt to run
    # as non-root, which both platforms require: images/tgi-nonroot); same entrypoint, pinned
    # by tag and digest.
    image: Optional[str] = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9._-]+)*:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")
    # For gated hub repositories only; read at start, never written into user data or specs.
    hf_token: Optional[SecretRef] = None
    # Explicit runtime limits (see RUNTIME_OVERRIDE_KEYS); sizing checks them like derived ones.
    runtime_overrides: dict[str, Union[int, float]] = {}
    # With min_replicas 0: minutes without a request before the last replica is removed.
    idle_minutes: int = Field(default=30, ge=5, le=1440)
    # Platform ec2: spot capacity above an on-demand base (on eks, a pool's capacity_types).
    spot: Optional[Spot] = None
    # Business hours with a higher floor than min_replicas (scheduled scaling).
    schedule: Optional[Schedule] = None
    # vLLM only. Nodes per replica: one pipeline stage per node, tensor parallel inside it
    # (EKS LeaderWorkerSet; EC2 serves one node per replica).
    pipeline_parallel: int = Field(default=1, ge=1, le=4)
    # vLLM only, MoE models: data-parallel attention ranks per replica (each with its own KV
    # cache; GPUs per node = tensor_parallel x data_parallel) and expert parallelism.
    data_parallel: int = Field(default=1, ge=1, le=8)
    expert_parallel: bool = False
    # Platform ec2: where the model cache lives, an EBS volume sized for it or the
    # instance's NVMe store assembled as RAID0 at boot (lost on stop; weights re-download).
    local_storage: Literal["ebs", "instance_store"] = "ebs"
    # Platform ec2: launch into a capacity reservation or Capacity Block.
    capacity_reservation: Optional[CapacityReservation] = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, value: Any) -> Any:
        if isinstance(value, dict) and "max_new_tokens" in value:
            raise PydanticCustomError(
                "moved_key", "max_new_tokens moved into the workload shape: write workload: "
                "{prompt_tokens: {typical: T, p95: P}, output_tokens: {typical: O, max: "
                "{value}}} (or drop it to use the model family's default)",
                {"value": value["max_new_tokens"]})
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Model":
        if self.min_replicas > self.max_replicas:
            raise PydanticCustomError(
                "replicas", "min_replicas {min} is greater than max_replicas {max}; "
                "min_replicas must be <= max_replicas",
                {"min": self.min_replicas, "max": self.max_replicas},
            )
        if self.schedule is not None and not (
                self.min_replicas < self.schedule.min_replicas <= self.max_replicas):
            raise PydanticCustomError(
                "schedule_replicas", "schedule.min_replicas {value} must be above min_replicas "
                "{min} and at most max_replicas {max}",
                {"value": self.schedule.min_replicas, "min": self.min_replicas, "max": self.max_replicas})
        if self.spot is not None and self.spot.on_demand_base > self.max_replicas:
            raise PydanticCustomError(
                "spot_base", "spot.on_demand_base {base} is above max_replicas {max}; allowed: 0..{max}",
                {"base": self.spot.on_demand_base, "max": self.max_replicas})
        if self.runtime == "ollama":
            if self.quantization not in GGUF_QUANTIZATIONS:
                raise PydanticCustomError(
                    "ollama_quant", "runtime ollama serves GGUF weights: quantization must be "
                    "one of {allowed}", {"allowed": ", ".join(GGUF_QUANTIZATIONS)},
                )
            if self.weights.source != "s3":
                raise PydanticCustomError(
                    "ollama_weights", "runtime ollama loads a verified GGUF file: "
                    "weights.source must be s3")
        elif self.quantization in GGUF_QUANTIZATIONS:
            raise PydanticCustomError(
                "gguf_quant", "quantization {q} is a GGUF format that only runtime ollama "
                "serves; use none, awq, gptq or fp8 with {runtime}",
                {"q": self.quantization, "runtime": self.runtime},
            )
        if self.workload is not None:
            longest = self.workload.prompt_tokens.p95 + self.workload.output_tokens.max
            if longest > self.max_context:
                raise _at(("workload",), longest,
                          f"prompt_tokens.p95 {self.workload.prompt_tokens.p95} + "
                          f"output_tokens.max {self.workload.output_tokens.max} = {longest} "
                          f"tokens exceeds max_context {self.max_context}: a p95 prompt could "
                          f"not get its full output; lower them or raise max_context to >= "
                          f"{longest}")
        if self.runtime == "tgi" and self.image and root_only_tgi_image(self.image):
            raise _at(("image",), self.image,
                      "this is the upstream TGI image, which from 3.1 on cannot start as a non-root "
                      "user (its Python lives under /root, mode 0700: "
                      "huggingface/text-generation-inference#3082), and every runtime container "
                      "runs as UID 10001 on both platforms; build images/tgi-nonroot (make "
                      "tgi-image), push it under a repository of its own and name it here, for "
                      "example <registry>/tgi-nonroot:3.3.5@sha256:<64 hex>")
        if self.scheduling_policy != "fcfs" and self.runtime != "vllm":
            raise PydanticCustomError(
                "scheduling_policy", "scheduling_policy {policy} is a vLLM scheduler; {runtime} "
                "serves first come, first served: use fcfs, or run the interactive traffic on a "
                "separate model entry (docs/GATEWAY.md, Priority scheduling)",
                {"policy": self.scheduling_policy, "runtime": self.runtime})
        if self.runtime != "vllm" and (self.pipeline_parallel > 1 or self.data_parallel > 1
                                       or self.expert_parallel):
            raise PydanticCustomError(
                "parallel_runtime", "pipeline_parallel, data_parallel and expert_parallel are vLLM "
                "options; runtime {runtime} serves one node with tensor parallelism only",
                {"runtime": self.runtime})
        if self.pipeline_parallel > 1 and self.data_parallel > 1:
            raise PydanticCustomError(
                "parallel_mix", "use pipeline_parallel (nodes per replica) or data_parallel "
                "(data-parallel attention within a node), not both")
        allowed = RUNTIME_OVERRIDE_KEYS[self.runtime]
        for key, value in self.runtime_overrides.items():
            if key not in allowed:
                raise PydanticCustomError(
                    "override_key", "runtime_overrides.{key} is not a {runtime} setting; "
                    "allowed: {allowed}",
                    {"key": key, "runtime": self.runtime, "allowed": ", ".join(allowed)},
                )
            if value <= 0:
                raise PydanticCustomError(
                    "override_value", "runtime_overrides.{key} must be positive, got {value}",
                    {"key": key, "value": value})
        return self


# The upstream TGI repository, or a mirror of it (ECR pull-through caches keep the name).
_UPSTREAM_TGI = re.compile(r"(^|/)text-generation-inference:(?P<tag>[^@]+)@")


def root_only_tgi_image(image: str) -> bool:
    """An upstream TGI image that cannot run as a non-root UID: release 3.1 and later, and any
    tag that names no release (latest, sha-...), since nothing shows it runs non-root."""
    match = _UPSTREAM_TGI.search(image)
    if not match:
        return False
    version = re.match(r"v?(\d+)\.(\d+)", match["tag"])
    return version is None or (int(version[1]), int(version[2])) >= (3, 1)


class NodePool(_Strict):
    name: Name
    instance_type: str = Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    min_size: int = Field(default=1, ge=0, le=100)
    # Must hold its models at max_replicas plus one surge pod each for rolling updates at full scale.
    max_size: int = Field(default=2, ge=1, le=100)
    # AL2023 needs the NVIDIA device plugin; Bottlerocket NVIDIA ships it.
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    # Runtime images are 10-25 GB and weights are staged on the node: leave room for both.
    root_volume_gib: int = Field(default=300, ge=100, le=16384)
    # In order of preference. Karpenter: one NodePool per type, the first weighted highest, so
    # spot is tried first and on-demand takes over when spot has no capacity. Cluster
    # autoscaler: a managed node group takes exactly one.
    capacity_types: list[CapacityType] = Field(default=["on-demand"], min_length=1, max_length=2)
    # Where kubelet and containerd keep pod ephemeral storage (emptyDirs, images): the root
    # volume, or the instance's NVMe store as RAID0 (AL2023 nodeadm localStorage), which is
    # what 671B weights need (p5: 8 x 3.84 TB).
    local_storage: Literal["ebs", "instance_store"] = "ebs"
    # Elastic Fabric Adapter for multi-node replicas: EFA interfaces in the launch template,
    # a security group open to itself, a cluster placement group (one AZ), the device plugin.
    efa: bool = False
    capacity_reservation: Optional[CapacityReservation] = None

    @model_validator(mode="after")
    def _sizes(self) -> "NodePool":
        if self.min_size > self.max_size:
            raise PydanticCustomError(
                "pool_size", "min_size {min} is greater than max_size {max}",
                {"min": self.min_size, "max": self.max_size})
        if len(set(self.capacity_types)) != len(self.capacity_types):
            raise PydanticCustomError("capacity_types", "capacity_types lists a type twice")
        if self.local_storage == "instance_store" and self.ami_type.startswith("BOTTLEROCKET"):
            raise PydanticCustomError(
                "pool_storage", "local_storage instance_store is set up by AL2023's nodeadm "
                "(localStorage RAID0); use ami_type AL2023_x86_64_NVIDIA or local_storage ebs")
        _check_reservation(self.capacity_reservation, self.instance_type)
        return self


def _check_reservation(reservation: Optional[CapacityReservation], instance_type: str) -> None:
    if reservation is None or reservation.market_type != "capacity-block":
        return
    family = instance_type.split(".", 1)[0]
    if family not in CAPACITY_BLOCK_FAMILIES:
        raise PydanticCustomError(
            "capacity_block", "Capacity Blocks for ML are sold for {families}, not {type}; use "
            "market_type on-demand with an On-Demand Capacity Reservation",
            {"families": ", ".join(CAPACITY_BLOCK_FAMILIES), "type": instance_type})


class SystemPool(_Strict):
    instance_type: str = Field(default="m7i.large", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    min_size: int = Field(default=2, ge=1, le=20)
    max_size: int = Field(default=4, ge=1, le=20)


class Eks(_Strict):
    kubernetes_version: Literal["1.31", "1.32", "1.33", "1.34"] = "1.33"
    # Who adds and removes GPU nodes. karpenter: nodes sized to pending pods, spot with
    # on-demand fallback, interruption handling. cluster-autoscaler: one managed node group
    # per pool (what stacks created before Karpenter run; switching replaces the GPU nodes).
    autoscaler: Literal["karpenter", "cluster-autoscaler"] = "karpenter"
    # Empty means a private-only endpoint, reached as api_access says.
    public_access_cidrs: list[ipaddress.IPv4Network] = []
    # How `pulumi up` reaches a private endpoint: ssm_tunnel, a port forward through a small
    # SSM-managed host the stack creates (works from a laptop or a hosted CI runner; `make up`
    # opens it); in_vpc, you run Pulumi inside the VPC or over a VPN.
    api_access: Literal["ssm_tunnel", "in_vpc"] = "ssm_tunnel"
    # The local port the tunnel listens on; the Kubernetes provider connects there.
    api_tunnel_port: int = Field(default=8443, ge=1024, le=65535)
    service_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("172.20.0.0/16")
    admin_role_arns: list[Annotated[str, Field(pattern=_arn("iam"))]] = []
    system_pool: SystemPool = SystemPool()
    gpu_pools: list[NodePool] = Field(min_length=1)

    @field_validator("public_access_cidrs")
    @classmethod
    def _not_world(cls, cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        for cidr in cidrs:
            if cidr.prefixlen < 8:
                raise PydanticCustomError(
                    "world_cidr", "{cidr} opens the cluster API to (nearly) the whole internet; "
                    "list your CI egress or VPN addresses (a /8 or narrower), or none for a "
                    "private-only endpoint", {"cidr": str(cidr)})
        return cidrs

    @model_validator(mode="after")
    def _pools_fit_autoscaler(self) -> "Eks":
        for index, pool in enumerate(self.gpu_pools):
            if self.autoscaler == "cluster-autoscaler" and len(pool.capacity_types) > 1:
                raise _at(("gpu_pools", index, "capacity_types"), "<list>",
                          "a managed node group (autoscaler cluster-autoscaler) takes one capacity "
                          "type; list one, or use autoscaler karpenter for a spot-then-on-demand pool")
            if self.autoscaler == "karpenter":
                for key, used in (("efa", pool.efa), ("local_storage", pool.local_storage == "instance_store"),
                                  ("capacity_reservation", pool.capacity_reservation is not None)):
                    if used:
                        raise _at(("gpu_pools", index, key), "<set>",
                                  f"{key} is built into the pool's managed node group launch template "
                                  f"(EFA interfaces and placement group, nodeadm RAID0, reservation "
                                  f"target); set eks.autoscaler: cluster-autoscaler for this stack")
            if pool.capacity_reservation is not None and pool.capacity_types != ["on-demand"]:
                raise _at(("gpu_pools", index, "capacity_types"), "<list>",
                          "a pool launched into a capacity reservation or Capacity Block takes "
                          "capacity_types [on-demand] (reserved capacity is never spot)")
            if self.autoscaler == "karpenter" and "min_size" in pool.model_fields_set and pool.min_size > 0:
                raise _at(("gpu_pools", index, "min_size"), pool.min_size,
                          "Karpenter keeps no idle GPU nodes: nodes follow the pods, whose floor is "
                          "each model's min_replicas; remove min_size (max_size caps the pool), or "
                          "keep managed node groups with eks.autoscaler: cluster-autoscaler")
        return self


class Certificate(_Strict):
    """The internal load balancer's TLS certificate: imported into ACM, or from a private CA."""

    mode: Literal["import", "private_ca"]
    certificate_arn: Optional[str] = Field(default=None, pattern=_arn("acm"))
    private_ca_arn: Optional[str] = Field(default=None, pattern=_arn("acm-pca"))
    # The name the gateway's private integration calls; the certificate must cover it.
    internal_domain: str = Field(pattern=_HOSTNAME)

    @model_validator(mode="after")
    def _mode_fields(self) -> "Certificate":
        if self.mode == "import" and not self.certificate_arn:
            raise PydanticCustomError(
                "cert", "mode import needs certificate_arn (an ACM certificate in the stack's region)")
        if self.mode == "private_ca" and not self.private_ca_arn:
            raise PydanticCustomError("cert", "mode private_ca needs private_ca_arn")
        return self


class LoadBalancer(_Strict):
    certificate: Certificate
    # Time a deregistering target keeps serving: long enough for a stream to finish.
    deregistration_delay_seconds: int = Field(default=300, ge=0, le=3600)
    cross_zone: bool = True
    unhealthy_draining_seconds: int = Field(default=300, ge=0, le=360000)


def _narrower_than_world(cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    for cidr in cidrs:
        if cidr.prefixlen == 0:
            raise PydanticCustomError(
                "world_cidr", "{cidr} allows every address; leave allowed_source_cidrs "
                "empty for no allow-list, or list your clients' egress networks",
                {"cidr": str(cidr)})
    return cidrs


class Quota(_Strict):
    limit: int = Field(gt=0)
    period: Literal["DAY", "WEEK", "MONTH"] = "DAY"


class UsageTier(_Strict):
    name: Name
    # Per API key; refused at preview when above what the models serve at max_replicas.
    rate_per_second: float = Field(gt=0, le=10000)
    burst: int = Field(gt=0, le=5000)
    quota: Quota
    # The priority this tier's requests get on models with scheduling_policy priority (lower
    # is served first, vLLM's rule). The gateway sends it (with stage_per_tier, each tier's
    # stage its own) and the server ignores a client's own, see docs/GATEWAY.md.
    priority: int = Field(default=0, ge=-100, le=100)
    # Source networks this tier's clients may call from, in addition to the stack-wide
    # gateway.allowed_source_cidrs; needs gateway.stage_per_tier (the tier's own stage).
    allowed_source_cidrs: list[ipaddress.IPv4Network] = []

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _narrower_than_world(cls, cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        return _narrower_than_world(cidrs)


class Client(_Strict):
    name: Name
    tier: Name
    # Absent: the gateway generates the key and it is only ever a secret output.
    api_key: Optional[SecretRef] = None


class Domain(_Strict):
    name: str = Field(pattern=_HOSTNAME)
    certificate_arn: str = Field(pattern=_arn("acm"))
    hosted_zone_id: Optional[str] = Field(default=None, pattern=r"^Z[A-Z0-9]{4,32}$")


# A Cognito custom scope, `<resource server identifier>/<scope name>`: both parts in OAuth's
# scope-token characters (RFC 6749 3.3), the name without "/" (Cognito ResourceServerScopeType).
_COGNITO_SCOPE = r"^[\x21\x23-\x5B\x5D-\x7E]+/[\x21\x23-\x2E\x30-\x5B\x5D-\x7E]+$"


class Authorizer(_Strict):
    type: Literal["cognito", "lambda"]
    user_pool_arns: list[Annotated[str, Field(pattern=_arn("cognito-idp"))]] = []
    function_arn: Optional[str] = Field(default=None, pattern=_arn("lambda"))
    # Cognito: the custom scopes every method requires. With scopes set API Gateway accepts only
    # an access token that carries one of them; without, it accepts the user pool's ID tokens
    # (AWS "Integrate a REST API with an Amazon Cognito user pool"), so type cognito needs them.
    scopes: list[Annotated[str, Field(pattern=_COGNITO_SCOPE)]] = []

    @model_validator(mode="after")
    def _fields(self) -> "Authorizer":
        if self.type == "cognito" and not self.user_pool_arns:
            raise PydanticCustomError("authorizer", "type cognito needs user_pool_arns")
        if self.type == "cognito" and not self.scopes:
            raise PydanticCustomError(
                "authorizer_scopes",
                "type cognito needs scopes: the custom scopes (<resource server>/<scope>, e.g. "
                "deepseek-api/invoke) an access token must carry; without them API Gateway accepts "
                "ID tokens, which any app client of the pool can obtain for any signed-in user")
        if self.type == "lambda" and not self.function_arn:
            raise PydanticCustomError("authorizer", "type lambda needs function_arn")
        if self.type == "lambda" and self.scopes:
            raise PydanticCustomError(
                "authorizer_scopes", "scopes apply to cognito authorizers only; a lambda authorizer "
                "checks its token itself: remove scopes")
        if len(set(self.scopes)) != len(self.scopes):
            raise PydanticCustomError("authorizer_scopes", "scopes lists a scope twice")
        return self


class Waf(_Strict):
    # Requests per client IP per window; WAF's minimum is 10.
    rate_limit_per_ip: int = Field(default=2000, ge=10, le=2_000_000_000)
    window_seconds: Literal[60, 120, 300, 600] = 300
    # AWS common rule set rules that only count instead of block. Prompts legitimately carry
    # code, markup and URLs these body rules flag; empty (every rule blocks) is the secure
    # default. SizeRestrictions_BODY (8 KB) always counts: the gateway's own size rule rules.
    count_only_rules: list[Literal["CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY",
                                   "EC2MetaDataSSRF_BODY", "SizeRestrictions_QUERYSTRING"]] = []


class Gateway(_Strict):
    # The one stage every tier shares; with stage_per_tier each tier's stage is named after it.
    stage_name: Name = "v1"
    # Custom domain; when set, the execute-api endpoint is turned off.
    domain: Optional[Domain] = None
    # SSE token streaming; buffered responses are cut at the integration timeout.
    streaming: bool = True
    # Up to 900000 when streaming (API Gateway's 15-minute stream limit), 29000 buffered.
    integration_timeout_ms: int = Field(default=600_000, ge=50)
    # None: derived from the largest context the models accept.
    max_request_bytes: Optional[int] = Field(default=None, ge=1024, le=10 * 1024 * 1024)
    # One usage plan per tier.
    tiers: list[UsageTier] = Field(min_length=1)
    # One API key per client; a client named "smoke" is the one `make smoke` uses.
    clients: list[Client] = Field(min_length=1)
    waf: Waf = Waf()
    # Checked in addition to the API key, never instead of it.
    authorizer: Optional[Authorizer] = None
    # Source networks allowed to call the API at all (a resource policy on aws:SourceIp);
    # empty: any address with a valid key. Per tier: tiers[].allowed_source_cidrs.
    allowed_source_cidrs: list[ipaddress.IPv4Network] = []
    xray_tracing: bool = False
    # One API stage per tier, named after it: a tier's usage plan admits its keys on its own
    # stage only, so the stage a request arrives on proves the caller's tier, and the gateway
    # enforces per-tier priority and source networks. Off: one stage (stage_name) for all.
    stage_per_tier: bool = False

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _narrower_than_world(cls, cidrs: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
        return _narrower_than_world(cidrs)

    @model_validator(mode="after")
    def _timeouts_and_refs(self) -> "Gateway":
        # Streaming integrations may run 15 minutes; buffered ones stop at 29 s by default.
        ceiling = 900_000 if self.streaming else 29_000
        if self.integration_timeout_ms > ceiling:
            raise PydanticCustomError(
                "timeout", "integration_timeout_ms {value} exceeds {ceiling} ({mode} responses); "
                "allowed: 50..{ceiling}",
                {"value": self.integration_timeout_ms, "ceiling": ceiling,
                 "mode": "streamed" if self.streaming else "buffered"})
        _unique([t.name for t in self.tiers], ("tiers",))
        _unique([c.name for c in self.clients], ("clients",))
        if self.stage_per_tier and "stage_name" in self.model_fields_set:
            raise _at(("stage_name",), self.stage_name,
                      "with stage_per_tier each tier's stage is named after the tier; remove stage_name")
        for index, tier in enumerate(self.tiers):
            outside = [str(c) for c in tier.allowed_source_cidrs if self.allowed_source_cidrs
                       and not any(c.subnet_of(wide) for wide in self.allowed_source_cidrs)]
            if outside:
                raise _at(("tiers", index, "allowed_source_cidrs"), ", ".join(outside),
                          "lies outside gateway.allowed_source_cidrs, whose stack-wide deny applies to every "
                          "stage, so these callers could never get through: list only networks inside "
                          f"{', '.join(str(c) for c in self.allowed_source_cidrs)}, or widen the stack-wide list")
        if not self.stage_per_tier:
            for index, tier in enumerate(self.tiers):
                if tier.allowed_source_cidrs:
                    raise _at(("tiers", index, "allowed_source_cidrs"),
                              ", ".join(str(c) for c in tier.allowed_source_cidrs),
                              "a per-tier allow-list needs the tier's own stage, which only a "
                              "resource policy per stage can confine: set gateway.stage_per_tier: "
                              "true, or move the networks to gateway.allowed_source_cidrs (stack-wide)")
        tiers = {t.name for t in self.tiers}
        for client in self.clients:
            if client.tier not in tiers:
                raise PydanticCustomError(
                    "client_tier", "client {client} names tier {tier}, which is not declared; "
                    "declared tiers: {tiers}",
                    {"client": client.name, "tier": client.tier, "tiers": ", ".join(sorted(tiers))})
        return self


class Thresholds(_Strict):
    five_xx_percent: float = Field(default=1.0, gt=0, le=100)
    throttled_percent: float = Field(default=5.0, gt=0, le=100)
    latency_p99_ms: int = Field(default=120_000, gt=0)
    integration_latency_p95_ms: int = Field(default=60_000, gt=0)
    gpu_utilization_percent: float = Field(default=95.0, gt=0, le=100)
    gpu_memory_percent: float = Field(default=95.0, gt=0, le=100)
    queue_depth: int = Field(default=20, gt=0)
    kv_cache_percent: float = Field(default=90.0, gt=0, le=100)
    # vLLM preemptions (each one recomputes a request's KV later) per minute per model: a
    # sustained rate means the KV cache is too small for the admitted concurrency.
    preemptions_per_minute: float = Field(default=1.0, gt=0)
    # Streamed responses: Latency and IntegrationLatency measure the whole generation; the
    # time to the first byte from the model is what a client experiences as responsiveness.
    time_to_first_byte_p95_ms: int = Field(default=15_000, gt=0)
    # Requests per 5-minute period below which error and throttle rates are not judged:
    # one failure among three requests is not a 33 % outage.
    min_requests: int = Field(default=20, ge=1)


class Alarms(_Strict):
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")]] = []
    # At most 4: a CloudWatch alarm takes 5 actions per state, one is the stack's own topic.
    sns_topic_arns: list[Annotated[str, Field(pattern=_arn("sns"))]] = Field(default=[], max_length=4)
    thresholds: Thresholds = Thresholds()


class Tracing(_Strict):
    # An OTLP/gRPC collector the model servers can reach, e.g. an ADOT or OpenTelemetry
    # collector that forwards to AWS X-Ray: http://otel-collector.observability.svc:4317.
    otlp_endpoint: str

    @field_validator("otlp_endpoint")
    @classmethod
    def _collector_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}", value):
            raise PydanticCustomError(
                "otlp_endpoint", "expected the collector's OTLP/gRPC URL, scheme host and port and nothing "
                "else, e.g. http://otel-collector.observability.svc:4317")
        return value


class Observability(_Strict):
    log_retention_days: int = 90
    # OpenTelemetry traces from vLLM and TGI (Ollama has none); unset: off. The gateway's own
    # traces are gateway.xray_tracing.
    tracing: Optional[Tracing] = None
    # EKS: days of history the cluster's Prometheus keeps on its encrypted volume (dashboards,
    # recording rules); the volume is sized for it.
    metrics_retention_days: int = Field(default=15, ge=2, le=90)
    alarms: Alarms = Alarms()

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        return _check_retention(days)


class AccountSettings(_Strict):
    """Settings AWS keeps once per account and region, not per stack: API Gateway's CloudWatch
    Logs role (`aws.apigateway.Account`) and the Session Manager preferences document
    (`SSM-SessionManagerRunShell`). Exactly one stack per account and region manages them
    (tests/test_account_settings.py checks the committed stacks); the others set manage: false,
    rely on what that stack set, and deploy after it (docs/OPERATIONS.md, account-wide settings).
    """

    # True by default: a lone stack in its account and region owns them, as before this switch.
    manage: bool = True


# The upstream registries ECR's pull-through cache reaches only with credentials
# (components/serving/images.py CREDENTIAL_UPSTREAMS).
CacheUpstream = Literal["docker-hub", "github-container-registry", "gitlab-container-registry"]


class ImageCache(_Strict):
    """Platform ec2: the stack's ECR pull-through cache, through which hosts without internet egress pull public runtime images (docs/OPERATIONS.md, Runtime images on EC2)."""

    # Per upstream, the Secrets Manager secret ({"username", "accessToken"}) the cache signs in
    # with: its name starts with ecr-pullthroughcache/ and it lives in the stack's account and
    # region (AWS, "Creating a pull through cache rule in Amazon ECR"). Only the ARN is here.
    credentials: dict[CacheUpstream, Annotated[str, Field(
        pattern=rf"^{_PARTITION}:secretsmanager:{_REGION}:{_ACCOUNT}:secret:ecr-pullthroughcache/"
                r"[A-Za-z0-9/_+=.@-]+$")]] = {}


class Inventory(_Strict):
    _stack: str = PrivateAttr(default="")
    environment: Literal["dev", "staging", "prod"]
    region: str
    platform: Literal["ec2", "eks"]
    network: Network = Network()
    eks: Optional[Eks] = None
    models: list[Model] = Field(min_length=1)
    load_balancer: LoadBalancer
    gateway: Gateway
    observability: Observability = Observability()
    account_settings: AccountSettings = AccountSettings()
    image_cache: ImageCache = ImageCache()
    tags: dict[Annotated[str, Field(pattern=r"^[\w .:/=+@-]{1,128}$")],
               Annotated[str, Field(max_length=256)]] = {}

    @field_validator("region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        if region not in REGION_AZ_COUNT:
            raise PydanticCustomError(
                "region", "unknown or unsupported region; allowed: {allowed}",
                {"allowed": ", ".join(sorted(REGION_AZ_COUNT))})
        return region

    @model_validator(mode="after")
    def _cross_checks(self) -> "Inventory":
        zones = REGION_AZ_COUNT[self.region]
        for index, zone in enumerate(self.network.availability_zones):
            if not zone.startswith(self.region):
                raise _at(("network", "availability_zones", index), zone,
                          f"is not a zone of the inventory's region {self.region} "
                          f"(zones there are named {self.region}a, {self.region}b, ...)")
        self._check_regions()
        if self.network.az_count > zones:
            raise _at(("network", "az_count"), self.network.az_count,
                      f"region {self.region} has {zones} Availability Zones; allowed: 2..{zones}")
        _unique([m.name for m in self.models], ("models",))
        if self.platform == "eks":
            if self.eks is None:
                raise _at(("eks",), None, "platform eks needs an `eks` section (gpu_pools at least)")
            _unique([p.name for p in self.eks.gpu_pools], ("eks", "gpu_pools"))
            pools = {p.name for p in self.eks.gpu_pools}
            if self.eks.service_cidr.overlaps(self.network.cidr):
                raise _at(("eks", "service_cidr"), str(self.eks.service_cidr),
                          f"overlaps the VPC CIDR {self.network.cidr}; pick a range outside it")
            for index, model in enumerate(self.models):
                if model.instance_type is not None:
                    raise _at(("models", index, "instance_type"), model.instance_type,
                              "on platform eks a model runs on a node_pool; remove instance_type")
                if model.node_pool not in pools:
                    raise _at(("models", index, "node_pool"), model.node_pool,
                              f"must name one of eks.gpu_pools: {', '.join(sorted(pools))}")
                for key in ("local_storage", "capacity_reservation"):
                    if key in model.model_fields_set:
                        raise _at(("models", index, key), getattr(model, key) if key == "local_storage" else "<mapping>",
                                  f"on platform eks {key} belongs to the node pool: set "
                                  f"eks.gpu_pools[].{key} for {model.node_pool}")
                pool = next(p for p in self.eks.gpu_pools if p.name == model.node_pool)
                if model.pipeline_parallel > 1:
                    if not pool.efa:
                        raise _at(("models", index, "pipeline_parallel"), model.pipeline_parallel,
                                  f"a replica across {model.pipeline_parallel} nodes needs EFA between "
                                  f"them: set efa: true on eks.gpu_pools {pool.name}")
                    if pool.max_size < model.pipeline_parallel * model.max_replicas:
                        raise _at(("models", index, "max_replicas"), model.max_replicas,
                                  f"{model.max_replicas} replicas x {model.pipeline_parallel} nodes need "
                                  f"{model.pipeline_parallel * model.max_replicas} nodes but pool "
                                  f"{pool.name} has max_size {pool.max_size}; raise max_size to >= "
                                  f"{model.pipeline_parallel * model.max_replicas}")
        else:
            if self.eks is not None:
                raise _at(("eks",), "<section>", "only platform eks takes an `eks` section")
            for index, model in enumerate(self.models):
                if model.node_pool is not None:
                    raise _at(("models", index, "node_pool"), model.node_pool,
                              "on platform ec2 a model runs on an instance_type; remove node_pool")
                if model.pipeline_parallel > 1:
                    raise _at(("models", index, "pipeline_parallel"), model.pipeline_parallel,
                              "platform ec2 serves a replica on one instance; a model across "
                              f"{model.pipeline_parallel} nodes needs platform eks (LeaderWorkerSet "
                              "with EFA): move it to an EKS stack, or use pipeline_parallel 1 on an "
                              "instance type whose GPUs hold it (for example p5e.48xlarge)")
                if model.instance_type is None:
                    raise _at(("models", index, "instance_type"), None,
                              "platform ec2 needs an instance_type per model (for example g6e.xlarge)")
                if model.weights.source == "hub" and not model.weights.internet_egress:
                    raise _at(("models", index, "weights", "source"), "hub",
                              "EC2 hosts reach AWS through VPC endpoints only and have no route to "
                              "the hub; stage the weights into S3 and use source s3 (docs/OPERATIONS.md, "
                              "Staging weights into S3), or set weights.internet_egress: true to let "
                              "this model's hosts reach the internet on 443 through the NAT")
                try:
                    _check_reservation(model.capacity_reservation, model.instance_type)
                except PydanticCustomError as error:
                    raise _at(("models", index, "capacity_reservation", "market_type"),
                              "capacity-block", str(error)) from None
        for index, model in enumerate(self.models):
            if model.spot is not None and self.platform != "ec2":
                raise _at(("models", index, "spot"), "<section>",
                          "spot on platform eks is a property of the pool: set "
                          "eks.gpu_pools[].capacity_types: [spot, on-demand]")
        self._check_tier_priorities()
        if self.environment == "prod" and self.network.nat_gateways != "per_az":
            raise _at(("network", "nat_gateways"), self.network.nat_gateways,
                      "prod must survive an AZ outage: use per_az")
        return self

    def _check_tier_priorities(self) -> None:
        """On one shared stage the gateway cannot tell tiers apart, so it can send only one
        priority: tiers that differ need a stage each once a model schedules by priority."""
        if self.gateway.stage_per_tier or not any(m.scheduling_policy == "priority" for m in self.models):
            return
        first = self.gateway.tiers[0]
        for index, tier in enumerate(self.gateway.tiers):
            if tier.priority != first.priority:
                model = next(m.name for m in self.models if m.scheduling_policy == "priority")
                raise _at(("gateway", "tiers", index, "priority"), tier.priority,
                          f"differs from tier {first.name}'s {first.priority} while model {model} schedules "
                          "by priority, and on one shared stage the gateway cannot tell tiers apart: set "
                          "gateway.stage_per_tier: true (a stage per tier), or give every tier the same priority")

    def _check_regions(self) -> None:
        """Regional resources the stack uses must live in the stack's region."""
        regional = [(("load_balancer", "certificate", "certificate_arn"), self.load_balancer.certificate.certificate_arn,
                     "the NLB's certificate must be in ACM in the stack's region")]
        if self.gateway.domain is not None:
            regional.append((("gateway", "domain", "certificate_arn"), self.gateway.domain.certificate_arn,
                             "a regional API's custom domain takes an ACM certificate from its own region"))
        for upstream, arn in self.image_cache.credentials.items():
            regional.append((("image_cache", "credentials", upstream), arn,
                             "a pull-through cache reads credentials from its own region only"))
        for index, arn in enumerate(self.observability.alarms.sns_topic_arns):
            regional.append((("observability", "alarms", "sns_topic_arns", index), arn,
                             "CloudWatch alarms notify topics in their own region only"))
        for path, arn, why in regional:
            if arn and arn_region(arn) != self.region:
                raise _at(path, arn, f"is in {arn_region(arn)}, not the inventory's region "
                                     f"{self.region}: {why}")

    @property
    def stack_name(self) -> str:
        """The stack this inventory was read for (its environment when built directly)."""
        return self._stack or self.environment

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference with its key path, for checks against the stack's secrets."""
        refs: list[tuple[str, SecretRef]] = []
        for index, model in enumerate(self.models):
            if model.hf_token:
                refs.append((f"models[{index}].hf_token", model.hf_token))
        for index, client in enumerate(self.gateway.clients):
            if client.api_key:
                refs.append((f"gateway.clients[{index}].api_key", client.api_key))
        return refs

    def gpu_instance_type(self, model: Model) -> str:
        """The instance type a model's replicas run on, on either platform."""
        if model.instance_type:
            return model.instance_type
        assert self.eks is not None  # guaranteed by _cross_checks
        return next(p.instance_type for p in self.eks.gpu_pools if p.name == model.node_pool)


class _LocatedError(ValueError):
    """A cross-field error that knows the key path it belongs to."""

    def __init__(self, path: tuple, value: Any, message: str):
        super().__init__(message)
        self.path = path
        self.value = value
        self.message = message


def _at(path: tuple, value: Any, message: str) -> _LocatedError:
    return _LocatedError(path, value, message)


def _unique(names: list[str], path: tuple, key: Optional[str] = "name") -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise _at(path + ((index, key) if key else (index,)), name,
                      f"{_path_text(path)} has the name {name} twice; names must be unique")
        seen.add(name)


def stack_file_for(stack: str) -> str:
    return f"stacks/Pulumi.{stack}.yaml"


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


_SECRET_FIELDS = {"api_key", "hf_token"}


def _shown(path: tuple, value: Any) -> str:
    # A misplaced secret is still a secret: never echo it back.
    if any(part in _SECRET_FIELDS for part in path if isinstance(part, str)):
        return "<redacted>"
    if isinstance(value, dict):
        return "<mapping>"
    if isinstance(value, list):
        return "<list>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def _allowed_keys(model: type[BaseModel], path: tuple) -> str:
    """The keys allowed at `path` (the parent of an unknown key)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return ""
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return ", ".join(current.model_fields)
    return ""


def _model_in(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in args:
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(error: dict) -> tuple[tuple, str]:
    path = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(Inventory, path[:-1])
        return path, f"unknown key {path[-1]!r}; allowed keys here: {allowed}"
    if kind == "missing":
        return path, "is required but missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        value = error.get("input")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "'" in expected:
            # YAML reads 1.33 as a number (and 1.30 as 1.3): the allowed values are strings.
            return path, (f"{value!r} was read as a number, not as text; put it in quotes "
                          f"(for example \"{value}\"); allowed: {expected}")
        return path, f"{_shown(path, value)} is not allowed; allowed: {expected}"
    if kind == "string_pattern_mismatch":
        return path, f"{_shown(path, error.get('input'))} is not valid here; {_pattern_hint(path)}"
    value = error.get("input")
    if isinstance(value, (dict, list)):
        # A check across several keys of this section: the message names them.
        return path, error["msg"]
    return path, f"{_shown(path, value)} is not allowed: {error['msg']}"


def _pattern_hint(path: tuple) -> str:
    leaf = next((p for p in reversed(path) if isinstance(p, str)), "")
    hints = {
        "revision": "pin a 40-character commit hash (a branch like main moves under you)",
        "hf_repo": "use <org>/<name>, for example deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "name": "use a DNS label: lowercase letters, digits and -, starting with a letter, at most 40",
        "manifest_sha256": "give the 64-hex-digit sha256 of the weights' SHA256SUMS manifest",
        "s3_uri": "use s3://bucket/prefix/ (ending in /)",
        "instance_type": "use an EC2 instance type such as g6e.xlarge",
        "image": "pin it by tag and digest: registry/repository:tag@sha256:<64 hex>",
        "emails": "give an address such as oncall@example.com",
        "hosted_zone_id": "give a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ (Z and "
                          "4 to 32 capital letters or digits)",
        "availability_zones": "give zone names of the inventory's region, such as us-east-1a",
        "scopes": "give a Cognito custom scope, <resource server identifier>/<scope name>, such as "
                  "deepseek-api/invoke (no spaces, quotes or backslashes; no / in the scope name)",
    }
    if path[:2] == ("image_cache", "credentials"):
        return ("give the ARN of a Secrets Manager secret named ecr-pullthroughcache/<name>, such as "
                "arn:aws:secretsmanager:<region>:<12-digit account>:secret:ecr-pullthroughcache/docker-hub-AbCdEf")
    if path[:2] == ("gateway", "domain") and leaf == "name":
        return "give a DNS name such as llm.api.example.com (lowercase, at least one dot)"
    service = _ARN_FIELDS.get(leaf)
    if service:
        return f"an ARN here looks like {ARN_FORMATS[service]}"
    return hints.get(leaf, "see the inventory reference in README.md")


# Which service's ARN each key takes (lists name the key of the list).
_ARN_FIELDS = {"certificate_arn": "acm", "private_ca_arn": "acm-pca", "secrets_manager_arn": "secretsmanager",
               "user_pool_arns": "cognito-idp", "function_arn": "lambda", "sns_topic_arns": "sns",
               "admin_role_arns": "iam"}


def parse_inventory(raw: Any, *, stack: str, secret_keys: Optional[Container[str]] = None,
                    stack_file: Optional[str] = None, aws_region: Optional[str] = None) -> Inventory:
    """Validate a raw inventory object; raise InventoryError naming file, key path, value and fix.

    `secret_keys` are the fully qualified config keys the stack holds as secrets: a
    `{config: key}` reference must point at one of them.
    """
    where = stack_file or stack_file_for(stack)
    key = f"{PROJECT}:{INVENTORY_KEY}"
    if raw is None:
        raise InventoryError(f"{where}: config key {key} is missing; the stack file must hold "
                             f"the inventory under config.{key} (see README: Inventory reference)")
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: {key} must be a mapping, got {type(raw).__name__}")
    try:
        inventory = Inventory.model_validate(raw)
    except pydantic.ValidationError as error:
        lines = []
        for item in error.errors():
            located = item.get("ctx", {}).get("error")
            if isinstance(located, _LocatedError):
                path = tuple(item["loc"]) + located.path
                lines.append(f"  {key}.{_path_text(path)}: {_shown(path, located.value)} "
                             f"is not allowed: {located.message}")
                continue
            path, message = _describe(item)
            lines.append(f"  {key}.{_path_text(path)}: {message}")
        raise InventoryError(f"{where}: invalid inventory\n" + "\n".join(lines)) from None
    inventory._stack = stack
    if aws_region and aws_region != inventory.region:
        raise InventoryError(
            f"{where}: invalid inventory\n  {key}.region: {inventory.region!r} differs from the stack's "
            f"aws:region {aws_region!r}; the provider would deploy to {inventory.region} while the CLI and "
            "tools assume the other: make them the same")
    if inventory.environment != stack and stack in ENVIRONMENTS:
        raise InventoryError(
            f"{where}: invalid inventory\n  {key}.environment: {inventory.environment!r} does not "
            f"match stack {stack!r}; policies and defaults are chosen by environment")
    # After the environment is known to be the stack's own: a mismatch is the first thing to fix.
    for index, model in enumerate(inventory.models):
        if model.min_replicas == 0 and inventory.environment == "prod":
            raise InventoryError(
                f"{where}: invalid inventory\n  {key}.models[{index}].min_replicas: 0 is not allowed: "
                f"prod keeps every model warm (a cold start takes minutes); allowed: 1..{model.max_replicas} "
                "(scale to zero is for dev and staging)")
    for path, ref in inventory.secret_refs():
        if ref.config is not None:
            qualified = f"{PROJECT}:{ref.config}"
            if secret_keys is None or qualified not in secret_keys:
                raise InventoryError(
                    f"{where}: invalid inventory\n  {key}.{path}.config: {ref.config!r} is not a "
                    f"secret of this stack; run `pulumi config set --secret {ref.config} <value> "
                    f"--stack {stack}` so the value is stored encrypted as {qualified}")
    return inventory


def _secure_keys_in_stack_file(stack: str) -> set[str]:
    """The `secure:` keys of the stack file, for CLIs that do not pass secret key names."""
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parent.parent / stack_file_for(stack)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return set()
    config = document.get("config") if isinstance(document, dict) else None
    return {key if ":" in key else f"{PROJECT}:{key}"
            for key, value in (config or {}).items()
            if isinstance(key, str) and isinstance(value, dict) and set(value) == {"secure"}}


def load_inventory() -> Inventory:
    """Read and validate the running stack's inventory (inside the Pulumi program)."""
    import pulumi
    from pulumi.runtime.config import get_config_secret_keys_env, is_config_secret

    stack = pulumi.get_stack()

    class _StackSecrets:
        """A key is secret if the engine says so, or the stack file stores it `secure:`."""

        def __contains__(self, key: object) -> bool:
            if not isinstance(key, str):
                return False
            if is_config_secret(key) or key in (get_config_secret_keys_env() or []):
                return True
            return key in _secure_keys_in_stack_file(stack)

    raw = pulumi.Config(PROJECT).get_object(INVENTORY_KEY)
    return parse_inventory(raw, stack=stack, secret_keys=_StackSecrets(),
                           aws_region=pulumi.Config("aws").get("region"))
