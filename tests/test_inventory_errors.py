"""Bad inventory input: a message naming the stack file, key path, bad value and what is allowed.

Each case changes one thing in a committed stack's inventory, the way an operator's typo
would, and checks the message an operator would read.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config import InventoryError, parse_inventory
from tests.conftest import ROOT
from tests.stack_runs import inventory_of, run_with_inventory
from tools import stack_files

KEY = "deepseek-serving:inventory"


def _set(path, value):
    def change(inventory):
        target = inventory
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return change


def _delete(path):
    def change(inventory):
        target = inventory
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return change


def _error_for(stack: str, change, secret_keys=None) -> str:
    inventory = inventory_of(stack)
    change(inventory)
    if secret_keys is None:
        secret_keys = set(stack_files.load(stack).secret_keys)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(inventory, stack=stack, secret_keys=secret_keys)
    return str(caught.value)


CASES = [
    # (id, stack, change, fragments the message must contain)
    ("wrong runtime name", "dev", _set(("models", 0, "runtime"), "vlm"),
     ["stacks/Pulumi.dev.yaml", f"{KEY}.models[0].runtime", "'vlm'", "'vllm'", "'tgi'", "'ollama'"]),
    ("replicas min above max", "dev", _set(("models", 0, "min_replicas"), 3),
     [f"{KEY}.models[0]", "min_replicas 3 is greater than max_replicas 2"]),
    ("invalid VPC CIDR", "dev", _set(("network", "cidr"), "10.20.0.0/33"),
     [f"{KEY}.network.cidr", "'10.20.0.0/33'"]),
    ("VPC CIDR too small for per-AZ subnets", "dev", _set(("network", "cidr"), "10.20.0.0/24"),
     [f"{KEY}.network.cidr", "'10.20.0.0/24'", "/16 to /20"]),
    ("VPC CIDR overlaps a reserved network", "dev", _set(("network", "reserved_cidrs"), ["10.20.128.0/17"]),
     [f"{KEY}.network", "10.20.0.0/16 overlaps reserved_cidrs[0] 10.20.128.0/17"]),
    ("public VPC CIDR", "dev", _set(("network", "cidr"), "52.0.0.0/16"),
     [f"{KEY}.network.cidr", "private (RFC 1918)"]),
    ("EKS service CIDR overlaps the VPC", "prod", _set(("eks", "service_cidr"), "10.40.0.0/16"),
     [f"{KEY}.eks.service_cidr", "'10.40.0.0/16'", "overlaps the VPC CIDR 10.40.0.0/16"]),
    ("unknown key", "dev", _set(("models", 0, "max_contxt"), 4096),
     [f"{KEY}.models[0].max_contxt", "unknown key", "max_context"]),
    ("missing model revision", "dev", _delete(("models", 0, "revision")),
     [f"{KEY}.models[0].revision", "required but missing"]),
    ("branch instead of a pinned revision", "dev", _set(("models", 0, "revision"), "main"),
     [f"{KEY}.models[0].revision", "'main'", "40-character commit hash"]),
    ("AZ count beyond the region's", "staging", _set(("network", "az_count"), 5),
     [f"{KEY}.network.az_count", "5", "us-west-2 has 4 Availability Zones", "2..4"]),
    ("plaintext secret", "dev", _set(("gateway", "clients", 1, "api_key"), "sk-live-abc123"),
     [f"{KEY}.gateway.clients[1].api_key", "plaintext secret", "pulumi config set --secret"]),
    ("secret reference to a non-secret key", "dev",
     _set(("gateway", "clients", 1, "api_key"), {"config": "notAKey"}),
     [f"{KEY}.gateway.clients[1].api_key.config", "'notAKey' is not a secret of this stack"]),
    ("client names an undeclared tier", "dev", _set(("gateway", "clients", 0, "tier"), "gold"),
     [f"{KEY}.gateway", "client smoke names tier gold", "declared tiers: standard"]),
    ("unknown region", "dev", _set(("region",), "us-east-9"),
     [f"{KEY}.region", "'us-east-9'", "us-east-1"]),
    ("model on a node pool on the ec2 platform", "dev", _set(("models", 0, "node_pool"), "gpu"),
     [f"{KEY}.models[0].node_pool", "'gpu'", "remove node_pool"]),
    ("model names a node pool that does not exist", "prod", _set(("models", 0, "node_pool"), "gpu-h100"),
     [f"{KEY}.models[0].node_pool", "'gpu-h100'", "gpu-l40s, gpu-l40s-x4"]),
    ("EKS API open to the world", "staging", _set(("eks", "public_access_cidrs"), ["0.0.0.0/0"]),
     [f"{KEY}.eks.public_access_cidrs", "whole internet"]),
    ("GGUF quantization on vLLM", "dev", _set(("models", 0, "quantization"), "q4_k_m"),
     [f"{KEY}.models[0]", "q4_k_m is a GGUF format that only runtime ollama serves"]),
    ("runtime override that is not a runtime setting", "dev",
     _set(("models", 0, "runtime_overrides"), {"max_batch_total_tokens": 1000}),
     [f"{KEY}.models[0]", "max_batch_total_tokens is not a vllm setting", "max_num_seqs"]),
    ("log retention CloudWatch does not offer", "dev", _set(("observability", "log_retention_days"), 45),
     [f"{KEY}.observability.log_retention_days", "45", "30, 60, 90"]),
    ("buffered integration timeout above 29 s", "dev",
     lambda inv: (inv["gateway"].update(streaming=False, integration_timeout_ms=60000)),
     [f"{KEY}.gateway", "60000 exceeds 29000 (buffered responses)"]),
    ("single NAT in prod", "prod", _set(("network", "nat_gateways"), "single"),
     [f"{KEY}.network.nat_gateways", "'single'", "use per_az"]),
    ("environment does not match the stack", "staging", _set(("environment",), "prod"),
     [f"{KEY}.environment", "'prod' does not match stack 'staging'"]),
    ("duplicate model names", "dev", lambda inv: inv["models"].append(copy.deepcopy(inv["models"][0])),
     [f"{KEY}.models[2].name", "models has the name r1-qwen-7b twice"]),
    ("runtime image override not pinned by digest", "dev",
     _set(("models", 0, "image"), "vllm/vllm-openai:latest"),
     [f"{KEY}.models[0].image", "'vllm/vllm-openai:latest'", "tag and digest"]),
    ("malformed weights checksum", "dev", _set(("models", 0, "weights", "manifest_sha256"), "abc"),
     [f"{KEY}.models[0].weights.manifest_sha256", "'abc'", "64-hex-digit sha256"]),
    ("workload prompt typical above p95", "dev",
     _set(("models", 0, "workload"), {"prompt_tokens": {"typical": 5000, "p95": 4000},
                                      "output_tokens": {"typical": 500, "max": 2000}}),
     [f"{KEY}.models[0].workload", "prompt_tokens.typical 5000 is greater than prompt_tokens.p95 4000"]),
    ("workload output typical above max", "dev",
     _set(("models", 0, "workload"), {"prompt_tokens": {"typical": 500, "p95": 4000},
                                      "output_tokens": {"typical": 3000, "max": 2000}}),
     [f"{KEY}.models[0].workload", "output_tokens.typical 3000 is greater than output_tokens.max 2000"]),
    ("workload longer than the context", "dev",
     _set(("models", 0, "workload"), {"prompt_tokens": {"typical": 500, "p95": 4096},
                                      "output_tokens": {"typical": 3000, "max": 32768}}),
     [f"{KEY}.models[0].workload", "36864", "exceeds max_context 16384",
      "raise max_context to >= 36864"]),
    ("workload with an unknown key", "dev",
     _set(("models", 0, "workload"), {"prompt_tokens": {"typical": 500, "p95": 4096},
                                      "output_tokens": {"typical": 300, "maximum": 2000}}),
     [f"{KEY}.models[0].workload.output_tokens.maximum", "allowed keys here: typical, max"]),
    ("max_new_tokens moved into the workload", "dev", _set(("models", 0, "max_new_tokens"), 1024),
     [f"{KEY}.models[0]", "max_new_tokens moved into the workload shape", "max: 1024"]),
]


@pytest.mark.parametrize("case_id, stack, change, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_inventory_value_is_named_with_file_path_value_and_fix(case_id, stack, change, fragments):
    message = _error_for(stack, change)
    assert message.startswith(f"stacks/Pulumi.{stack}.yaml: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_plaintext_secret_is_never_echoed():
    message = _error_for("dev", _set(("gateway", "clients", 1, "api_key"), "sk-live-abc123"))
    assert "sk-live-abc123" not in message


def test_missing_inventory_says_where_it_belongs():
    with pytest.raises(InventoryError, match=r"config key deepseek-serving:inventory is missing"):
        parse_inventory(None, stack="dev")


def test_all_committed_stacks_are_valid():
    for stack in ("dev", "staging", "prod"):
        stack_file = stack_files.load(stack)
        parse_inventory(stack_file.config[KEY], stack=stack, secret_keys=set(stack_file.secret_keys))


def test_stacks_cover_both_platforms_all_runtimes_and_prod_spans_three_azs():
    inventories = {s: stack_files.load(s).config[KEY] for s in ("dev", "staging", "prod")}
    assert {inv["platform"] for inv in inventories.values()} == {"ec2", "eks"}
    assert {m["runtime"] for inv in inventories.values() for m in inv["models"]} == {"vllm", "tgi", "ollama"}
    assert inventories["prod"]["network"]["az_count"] == 3


@pytest.fixture
def kept_monitors(monkeypatch):
    """The recording monitors of the runs a test makes, kept even when the program fails."""
    from tools import mock_engine

    monitors = []

    class KeptMonitor(mock_engine.RecordingMonitor):
        def __init__(self, mocks):
            super().__init__(mocks)
            monitors.append(self)

    monkeypatch.setattr(mock_engine, "RecordingMonitor", KeptMonitor)
    return monitors


def test_program_registers_nothing_for_a_bad_inventory(kept_monitors):
    import pulumi

    with pytest.raises(pulumi.RunError, match=r"models\[0\]\.runtime"):
        run_with_inventory("dev", _set(("models", 0, "runtime"), "vlm"))
    assert [m.registrations for m in kept_monitors] == [[]]


def _write_stack(tmp_path: Path, stack: str, change) -> Path:
    document = yaml.safe_load(stack_files.stack_path(stack).read_text())
    change(document["config"][KEY])
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_preview_exits_2_with_the_message_and_no_traceback(tmp_path):
    path = _write_stack(tmp_path, "dev", _set(("models", 0, "min_replicas"), 5))
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "min_replicas 5 is greater than max_replicas 2" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_preview_exits_2_for_unreadable_yaml(tmp_path):
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config: [unclosed\n")
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_its_gpu_cannot_hold_stops_the_preview_before_anything_registers(tmp_path):
    def bigger_model(inventory):
        inventory["models"][0]["hf_repo"] = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"

    with pytest.raises(pulumi_run_error()) as caught:
        run_with_inventory("dev", bigger_model)
    message = str(caught.value)
    assert "r1-qwen-7b" in message and "g6e.xlarge" in message

    path = _write_stack(tmp_path, "dev", bigger_model)
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "g6e.xlarge" in result.stderr


def test_nothing_registers_when_sizing_refuses_the_inventory(kept_monitors):
    with pytest.raises(pulumi_run_error()):
        run_with_inventory("dev", lambda inv: inv["models"][0].update(
            hf_repo="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"))
    assert [m.registrations for m in kept_monitors] == [[]]


def pulumi_run_error():
    import pulumi

    return pulumi.RunError


def test_a_secret_reference_is_honoured_when_the_cli_passes_no_secret_key_names():
    # Older CLIs hand the program its config without the names of the secret keys; the
    # stack file's `secure:` entry still proves the value is stored encrypted.
    from tests.program_harness import record_main

    stack_file = stack_files.load("dev")
    run = record_main(stack="dev", config=stack_file.config, secret_keys=[], region=stack_file.region)
    assert run.by_type("aws:apigateway/apiKey:ApiKey")


def test_a_reference_to_a_plain_config_value_is_refused_by_the_program():
    import pulumi

    from tests.program_harness import record_main

    stack_file = stack_files.load("dev")
    config = copy.deepcopy(stack_file.config)
    config[KEY]["gateway"]["clients"][1]["api_key"] = {"config": "plainValue"}
    config["deepseek-serving:plainValue"] = "sk-not-actually-secret"
    with pytest.raises(pulumi.RunError, match=r"'plainValue' is not a secret of this stack"):
        record_main(stack="dev", config=config, secret_keys=stack_file.secret_keys, region=stack_file.region)


def test_a_tier_the_workload_cannot_serve_stops_the_preview_naming_the_numbers(tmp_path):
    # dev serves r1-qwen-7b (2 replicas) and the 1.5B on Ollama: about 0.4 req/s of
    # reasoning requests. A tier of 2 req/s is refused with the numbers behind the verdict.
    path = _write_stack(tmp_path, "dev", _set(("gateway", "tiers", 0, "rate_per_second"), 2))
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    message = result.stderr
    assert message.count(str(path)) == 1 and "stacks/Pulumi.dev.yaml" not in message
    for fragment in (f"{KEY}.gateway.tiers[0]", "rate 2 req/s", "max_replicas 2 x g6e.xlarge",
                     "sequences at once", "output tokens/s", "req/s", "KV reserved for 4096 + 12288",
                     "lower the gateway rate to <="):
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert "Nothing was registered" in message


def test_nothing_registers_for_a_tier_the_workload_cannot_serve(kept_monitors):
    with pytest.raises(pulumi_run_error(), match=r"tiers\[0\]"):
        run_with_inventory("dev", _set(("gateway", "tiers", 0, "rate_per_second"), 2))
    assert [m.registrations for m in kept_monitors] == [[]]
