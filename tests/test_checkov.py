"""Checkov, run for real over what the stacks render (tools/checkov_scan.py).

What a security team relies on: their scanner finds nothing on our Kubernetes manifests
and image recipes, and every place where we deliberately disagree with it carries the
reason, in the form the scanner reads, next to the choice.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from components.eks.model_service import CPU_LIMIT_REASON, SCANNER_DECISIONS
from tools import checkov_scan


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> tuple[Path, list[str], checkov_scan.ScanResult]:
    root = tmp_path_factory.mktemp("checkov")
    stacks = checkov_scan.eks_stacks()
    return root, stacks, checkov_scan.scan(stacks, root)


def _manifest(path: Path) -> tuple[str, dict]:
    header, _, body = path.read_text().partition("\n---\n")
    return header, yaml.safe_load(body)


def test_every_eks_stack_is_scanned_and_checkov_finds_nothing(scanned):
    root, stacks, result = scanned
    assert {"prod", "staging"} <= set(stacks)
    assert all((root / "manifests" / stack).is_dir() for stack in stacks)
    assert result.failed == [], "\n".join(f.line() for f in result.failed)
    assert result.unexplained == []


def test_each_disagreement_is_a_recorded_decision_with_its_reason(scanned):
    root, _, result = scanned
    reasons = {(f.check_id, f.reason) for f in result.skipped}
    # Exactly the decisions the project records, nothing silenced without one.
    assert reasons <= {("CKV_K8S_11", CPU_LIMIT_REASON),
                       ("CKV_DOCKER_2", "the orchestrator probes the server (Kubernetes probes or the EC2 health gate)")}
    deployments = sorted(root.glob("manifests/*/*/deployment-*.yaml"))
    assert deployments
    for path in deployments:
        _, manifest = _manifest(path)
        assert manifest["metadata"]["annotations"].items() >= SCANNER_DECISIONS.items()
        # The decision still holds: the server has a CPU request and no CPU limit.
        (server,) = [c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
        assert "cpu" in server["resources"]["requests"] and "cpu" not in server["resources"]["limits"]
    skipped_deployments = {f.file_path for f in result.skipped if f.check_id == "CKV_K8S_11"}
    assert skipped_deployments == {"/" + str(p.relative_to(root)) for p in deployments}


def _edited_copy(scanned, tmp_path: Path, stack: str, edit) -> tuple[Path, Path]:
    """A copy of the scanned tree with one of `stack`'s Deployments changed by `edit`."""
    copy = tmp_path / "scan"
    shutil.copytree(scanned[0], copy)
    deployment = min(copy.glob(f"manifests/{stack}/*/deployment-*.yaml"))
    header, manifest = _manifest(deployment)
    edit(manifest)
    deployment.write_text(header + "\n---\n" + yaml.safe_dump(manifest))
    return copy, deployment


def test_without_the_recorded_reason_checkov_reports_the_choice(scanned, tmp_path):
    copy, deployment = _edited_copy(scanned, tmp_path, "prod",
                                    lambda m: m["metadata"]["annotations"].pop("checkov.io/skip1"))
    dockerfile = copy / "images" / "tgi-nonroot" / "Dockerfile"
    # A skip written without its reason is reported as unexplained.
    dockerfile.write_text(dockerfile.read_text().replace(
        "#checkov:skip=CKV_DOCKER_2:the orchestrator probes", "#checkov:skip=CKV_DOCKER_2\n# the orchestrator probes"))

    result = checkov_scan.scan_directory(copy)

    assert [(f.check_id, f.file_path) for f in result.failed] == [
        ("CKV_K8S_11", "/" + str(deployment.relative_to(copy)))]
    assert [f.check_id for f in result.unexplained] == ["CKV_DOCKER_2"]
    assert not result.clean


def test_a_privileged_container_is_caught(scanned, tmp_path):
    copy, _ = _edited_copy(scanned, tmp_path, "staging", lambda m: m["spec"]["template"]["spec"]["containers"][0]
                           ["securityContext"].update(privileged=True))

    result = checkov_scan.scan_directory(copy)

    assert "CKV_K8S_16" in {f.check_id for f in result.failed}  # "Container should not be privileged"


def test_without_checkov_the_tool_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(checkov_scan, "CHECKOV", Path("/nonexistent/checkov"))
    monkeypatch.setattr(checkov_scan, "export_manifests", lambda stack, out: [])

    assert checkov_scan.main(["--stack", "prod"]) == 2
    assert "make checkov" in capsys.readouterr().err
