"""The example GitHub Actions workflow users copy (.github/workflows/preview.yml)."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def workflow() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def _run_text(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in _steps(job))


def test_pull_requests_get_the_offline_preview_and_the_diff_of_every_stack(workflow):
    assert "pull_request" in workflow["on"] and workflow["on"]["push"]["branches"] == ["main"]
    job = workflow["jobs"]["offline-preview"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    checkout = next(s for s in _steps(job) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in _steps(job) if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    run = _run_text(job)
    assert 'make preview STACK="${{ matrix.stack }}"' in run
    assert "-m tools.diff --stack \"$STACK\" --base \"origin/$BASE_REF\"" in run
    comment = next(s for s in _steps(job) if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["with"]["path"] == "plan-diff-${{ matrix.stack }}.md"


def test_main_runs_the_real_preview_with_the_policy_pack_on_oidc_credentials(workflow):
    job = workflow["jobs"]["cloud-preview"]
    assert "github.event_name == 'push'" in job["if"]
    assert [entry["stack"] for entry in job["strategy"]["matrix"]["include"]] == ["dev", "staging", "prod"]
    aws = next(s for s in _steps(job) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert "role-to-assume" in aws["with"] and "aws-access-key-id" not in aws["with"]
    assert any(s.get("uses", "").startswith("pulumi/actions@") for s in _steps(job))
    run = _run_text(job)
    assert 'pulumi preview --stack "$STACK"' in run
    assert '--policy-pack policies --policy-pack-config "policies/config/$STACK.json"' in run


def test_permissions_are_minimal_and_only_the_cloud_job_gets_an_oidc_token(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["offline-preview"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert workflow["jobs"]["cloud-preview"]["permissions"] == {"contents": "read", "id-token": "write"}


def test_actions_are_pinned_by_commit_sha_except_the_one_marked_to_pin(workflow):
    uses = [step["uses"] for job in workflow["jobs"].values() for step in _steps(job) if "uses" in step]
    unpinned = [u for u in uses if not SHA_PIN.match(u)]
    assert unpinned == ["pulumi/actions@v6"]
    assert "TODO: pin by full commit SHA" in WORKFLOW.read_text()
