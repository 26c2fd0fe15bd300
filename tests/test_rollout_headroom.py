"""Room for a rolling update at full scale: refused at preview for EKS pools, built in on EC2."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from components.config import parse_inventory
from components.serving.rollout import (
    PoolDemand,
    RolloutHeadroomError,
    asg_max_size,
    check_rollout_headroom,
    nodes_for_rollout,
)
from tests.conftest import ROOT
from tests.stack_runs import inventory_of, run_with_inventory
from tools import stack_files

KEY = "deepseek-serving:inventory"


def test_nodes_for_rollout_count_one_surge_replica_per_model():
    # 4 replicas of TP=4 on 4-GPU nodes: 4 nodes serve, the surge pod needs a fifth.
    assert nodes_for_rollout([PoolDemand("a", 4, 4)], gpus_per_node=4) == 5
    # Two 1-GPU models sharing 4-GPU nodes pack by GPUs: (3 + 1) + (2 + 1) = 7 GPUs, 2 nodes.
    assert nodes_for_rollout([PoolDemand("a", 3, 1), PoolDemand("b", 2, 1)], gpus_per_node=4) == 2
    # A size that does not divide the node packs per model: 3 GPUs on 4-GPU nodes, one each.
    assert nodes_for_rollout([PoolDemand("a", 2, 3)], gpus_per_node=4) == 3
    assert asg_max_size(2) == 3


def _inventory(stack, change=None):
    raw = inventory_of(stack)
    if change:
        change(raw)
    return parse_inventory(raw, stack=stack, secret_keys=set(stack_files.load(stack).secret_keys))


def test_committed_eks_pools_leave_room_for_the_surge():
    for stack in ("staging", "prod"):
        check_rollout_headroom(_inventory(stack), stack)


def test_a_pool_without_room_for_the_surge_is_refused_naming_the_numbers():
    def full(raw):
        raw["eks"]["gpu_pools"][0]["max_size"] = raw["models"][0]["max_replicas"]

    with pytest.raises(RolloutHeadroomError) as caught:
        check_rollout_headroom(_inventory("prod", full), "prod")
    message = str(caught.value)
    for fragment in ("stacks/Pulumi.prod.yaml", f"{KEY}.eks.gpu_pools[0].max_size: 4",
                     "gpu-l40s-x4", "r1-qwen-32b max_replicas 4 x 4 GPU(s)", "maxSurge 1",
                     "Set max_size >= 5"):
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_the_preview_exits_2_and_registers_nothing_for_a_pool_without_surge_room(tmp_path):
    document = yaml.safe_load(stack_files.stack_path("staging").read_text())
    document["config"][KEY]["eks"]["gpu_pools"][0]["max_size"] = 3
    path = tmp_path / "Pulumi.staging.yaml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "tools.preview", "--stack", "staging", "--stack-file", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert f"{KEY}.eks.gpu_pools[0].max_size: 3 is not allowed" in result.stderr
    assert "Set max_size >= 7" in result.stderr and "Nothing was registered" in result.stderr


def test_the_program_refuses_before_registering_anything(monkeypatch):
    import pulumi
    from tools import mock_engine

    monitors = []

    class KeptMonitor(mock_engine.RecordingMonitor):
        def __init__(self, mocks):
            super().__init__(mocks)
            monitors.append(self)

    monkeypatch.setattr(mock_engine, "RecordingMonitor", KeptMonitor)
    with pytest.raises(pulumi.RunError, match=r"gpu_pools\[0\]\.max_size"):
        run_with_inventory("staging", lambda raw: raw["eks"]["gpu_pools"][0].update(max_size=3))
    assert [m.registrations for m in monitors] == [[]]
