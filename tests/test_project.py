"""The project's fixed shape: what `pulumi up` and a fresh machine rely on."""
from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def test_pulumi_yaml_runs_python_from_the_project_venv_with_stacks_in_stacks_dir():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "deepseek-serving"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert project["stackConfigDir"] == "stacks"
    stacks = {p.name for p in (ROOT / "stacks").glob("Pulumi.*.yaml")}
    assert {"Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"} <= stacks
    # Any further stack is an example of one of the environments: its policy config exists.
    for name in stacks:
        inventory = yaml.safe_load((ROOT / "stacks" / name).read_text())["config"]["deepseek-serving:inventory"]
        assert (ROOT / "policies" / "config" / f"{inventory['environment']}.json").is_file(), name


def test_every_requirement_is_pinned_to_one_version():
    for name in ("requirements.txt", "requirements-dev.txt", "policies/requirements.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or line.startswith("-r "):
                continue
            assert re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[0-9][0-9A-Za-z.]*", line), f"{name}: {line!r} is not pinned"


def test_program_dependencies_are_the_ones_the_design_names():
    pinned = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line}
    assert {"pulumi", "pulumi-aws", "pulumi-kubernetes", "pydantic", "boto3", "requests"} <= pinned
    versions = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    assert versions["pulumi-aws"].startswith("7.") and versions["pulumi-kubernetes"].startswith("4.")
