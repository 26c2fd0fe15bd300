"""The README's promises: its first two commands, and a reference generated from the code."""
from __future__ import annotations

import re

from tests.conftest import ROOT
from tools import inventory_reference


def test_inventory_reference_in_readme_is_generated_from_the_models():
    assert inventory_reference.updated((ROOT / "README.md").read_text()) == (ROOT / "README.md").read_text(), \
        "run: python -m tools.inventory_reference"


def test_readme_first_two_commands_are_the_offline_preview_and_the_tests():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands[:2] == ["make preview", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^STACK \?= dev$", makefile, re.M)
    assert "$(PY) -m tools.preview --stack $(STACK)" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "rm -rf .venv" in ci


def test_every_make_target_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    mentioned = set(re.findall(r"`make ([a-z-]+)", readme))
    assert {"preview", "plan", "diff", "manifests", "bench", "smoke"} <= mentioned
    for target in mentioned:
        assert target in targets, f"README mentions make {target}, which the Makefile lacks"


def test_model_table_in_readme_is_generated_from_catalog_and_sizing():
    from tools import model_table

    readme = (ROOT / "README.md").read_text()
    assert model_table.updated(readme) == readme, "run: python -m tools.model_table"
    # The flagships' layouts are there, with the multi-node one on EKS only.
    assert "| deepseek-r1 | vllm | fp8 | 2 x p5.48xlarge |" in readme
    assert "| deepseek-v3 | vllm | fp8 | p5e.48xlarge | TP 8 |" in readme


def test_the_bench_figures_in_the_readme_describe_the_current_stacks():
    # The table is written by `make bench README=1`; a stack whose resource count moved since
    # means the quoted timings are of another program.
    from tools import bench, preview, stack_files
    readme = (ROOT / "README.md").read_text()
    section = bench.README_MARKERS.search(readme).group(2)
    quoted = {cells[0]: int(cells[2]) for cells in
              ([c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
               if line.startswith("| ") and not line.startswith("| scenario"))}
    for stack in stack_files.committed_stacks():
        assert stack in quoted, f"README bench table lacks {stack}: run make bench README=1"
        resources = preview.preview(stack, with_policies=False)["summary"]["resources"]
        assert quoted[stack] == resources, f"{stack}: README quotes {quoted[stack]}, plan has {resources}: run make bench README=1"
