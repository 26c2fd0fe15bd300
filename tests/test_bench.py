"""The benchmark's inventories and its table (tools/bench.py, tools/synthetic_inventory.py).

Nothing here asserts a duration: timings belong to `make bench` on a known machine.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from components.gateway.api import gateway_throttles
from components.config import parse_inventory
from tools import bench, stack_files, synthetic_inventory


@pytest.mark.parametrize("count", [1, 3, 100])
def test_generated_inventories_have_n_distinct_valid_models(count):
    raw = synthetic_inventory.inventory_with_models(count)
    inventory = parse_inventory(raw, stack=synthetic_inventory.stack_name(count))
    names = [m.name for m in inventory.models]
    assert len(names) == count == len(set(names))
    # Every clone keeps a pool of the cluster, and the tiers still fit the models.
    pools = {p.name for p in inventory.eks.gpu_pools}
    assert {m.node_pool for m in inventory.models} <= pools
    gateway_throttles(inventory, synthetic_inventory.stack_name(count))


def test_a_generated_stack_file_loads_like_a_committed_one(tmp_path):
    path = synthetic_inventory.write_stack_file(10, tmp_path)
    assert path.name == "Pulumi.bench-10.yaml"
    loaded = stack_files.load("bench-10", path)
    assert loaded.region == "us-east-1"
    assert len(loaded.config["deepseek-serving:inventory"]["models"]) == 10
    assert loaded.config["deepseek-serving:inventory"]["environment"] == "prod"


def test_bench_prints_its_table_and_the_machine_for_a_one_model_inventory():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        bench.main(["--stacks", "--models", "1"])
    text = printed.getvalue()
    assert text.startswith("Machine: ")
    assert "cores" in text.splitlines()[0] and "Python 3." in text.splitlines()[0]
    assert "| scenario" in text and "| peak MiB |" in text and "policy ms/resource |" in text
    row = next(line for line in text.splitlines() if line.startswith("| generated 1 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and int(cells[2]) > 100  # models, resources
    assert float(cells[3]) > 0 and float(cells[4]) > 50  # wall s, peak MiB (a Python process)
    assert "policy analysis: at most" in text


def _result(label: str, stack: str, models: int, resources: int, wall: float, analysis: float = 0.5):
    return bench.Result(bench.Scenario(label, stack, None, models), resources=resources, wall_s=wall,
                        peak_mib=200, exit_code=0, program_s=wall - 1, pack_start_s=0.3,
                        analysis_s=analysis, diagnostics=0)


def test_the_verdicts_follow_the_targets():
    info = {"cores": "2", "cpu": "test cpu", "python": "CPython 3.11", "os": "Linux", "load": "0"}
    linear = [_result("prod", "prod", 2, 240, 5.0),
              _result("generated 1", "bench-1", 1, 170, 4.0), _result("generated 10", "bench-10", 10, 560, 6.0),
              _result("generated 100", "bench-100", 100, 4400, 25.2)]
    text, ok = bench.render(linear, info)
    assert ok and "PASS  prod preview" in text and "PASS  linear growth" in text
    slow = [_result("prod", "prod", 2, 240, 12.0, analysis=6.0)] + linear[1:3] + [
        _result("generated 100", "bench-100", 100, 4400, 80.0)]
    text, ok = bench.render(slow, info)
    assert not ok
    assert "MISS  prod preview with policies: 12.00 s" in text
    assert "MISS  policy analysis: at most 25.00 ms/resource (prod" in text
    assert "MISS  linear growth" in text


def test_least_squares_fit_recovers_a_line():
    intercept, slope, r2 = bench.fit([(100, 3.0), (200, 5.0), (400, 9.0)])
    assert (round(intercept, 6), round(slope, 6), round(r2, 6)) == (1.0, 0.02, 1.0)


def test_the_readme_section_is_the_tools_own_output(tmp_path):
    text = ("Machine: 2 cores, AMD EPYC, CPython 3.11.7, Linux 6; load average at start 0.1 0.1 0.1\n\n"
            "| scenario | resources |\n|---|---|\n| dev | 188 |\n\n"
            "PASS  prod preview with policies: 4.71 s (target < 10 s)\n")
    section = bench.readme_section(text, {}, "2026-12-01")
    assert section.startswith("Offline preview with the policy pack") and "2026-12-01" in section
    assert "| dev | 188 |" in section and "```\nPASS  prod preview" in section
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- bench:start (generated) -->\nold\n<!-- bench:end -->\nafter\n")
    bench.write_readme(readme, section)
    assert readme.read_text() == f"before\n<!-- bench:start (generated) -->\n{section}<!-- bench:end -->\nafter\n"
