"""Kubernetes manifests exported for review or GitOps (tools/manifests.py)."""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.stack_runs import hub_token_run, preview_run
from tools import k8s_objects, manifests
from tools.stack_files import SECRET_PLACEHOLDER


def _document(path: Path) -> tuple[list[str], dict]:
    text = path.read_text()
    header, _, body = text.partition("\n---\n")
    return header.splitlines(), yaml.safe_load(body)


@pytest.fixture(scope="module")
def prod_export(tmp_path_factory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("manifests") / "prod"
    # An earlier export's file for an object that no longer exists, and a file of the user's.
    (out / "old-model").mkdir(parents=True)
    (out / "old-model" / "deployment-old-model.yaml").write_text(manifests.HEADER_MARK + " from ...\n---\n{}\n")
    (out / "README.md").write_text("kept\n")
    (out / "kustomize").mkdir()
    (out / "kustomize" / "extra.yaml").write_text("# mine\n")
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = manifests.main(["--stack", "prod", "--out", str(out)])
    return out, code, printed.getvalue()


def test_every_prod_object_is_written_once_named_by_namespace_kind_and_name(prod_export):
    out, code, printed = prod_export
    assert code == 0, printed
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.yaml") if p.parent.name != "kustomize")
    expected = sorted(manifests.file_name(obj) for obj in k8s_objects.objects(preview_run("prod").registrations))
    assert files == expected
    assert "_cluster/namespace-monitoring.yaml" in files
    assert "r1-qwen-7b/deployment-r1-qwen-7b.yaml" in files
    for relative in files:
        folder, name = relative.split("/")
        _, manifest = _document(out / relative)
        assert folder == manifest["metadata"].get("namespace", "_cluster")
        assert name == f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def test_every_written_manifest_parses_and_validates_against_the_cluster_version(prod_export):
    out, _, _ = prod_export
    checked = 0
    for path in sorted(out.glob("*/*.yaml")):
        if path.parent.name == "kustomize":
            continue
        header, manifest = _document(path)
        assert list(manifest)[:3] == ["apiVersion", "kind", "metadata"]
        if (manifest["apiVersion"], manifest["kind"]) in k8s_objects.CUSTOM_RESOURCE_KINDS:
            assert any("Schema: not checked" in line for line in header), path
            continue
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)
        assert any("Schema: valid against Kubernetes 1.33.0" in line for line in header), path
        checked += 1
    assert checked >= 10


def test_unknown_values_are_marked_in_the_file_and_listed_in_its_header(prod_export):
    out, _, _ = prod_export
    header, manifest = _document(out / "r1-qwen-7b" / "targetgroupbinding-r1-qwen-7b.yaml")
    assert manifest["spec"]["targetGroupARN"] == k8s_objects.UNKNOWN_PLACEHOLDER
    start = next(i for i, line in enumerate(header) if "Unknown until deploy" in line)
    assert header[start + 1] == "#   spec.targetGroupARN"


def test_secret_values_are_never_exported(prod_export, tmp_path):
    out, _, _ = prod_export
    for path in out.rglob("*.yaml"):
        assert SECRET_PLACEHOLDER not in path.read_text()
    # The stacks' one kind of Secret: a gated hub model's token.
    built = manifests.build(hub_token_run().registrations, kubernetes_version="1.33", stack="staging",
                            stack_file="stacks/Pulumi.staging.yaml")
    manifests.write(built, tmp_path)
    (secret,) = list(tmp_path.glob("*/secret-*.yaml"))
    header, manifest = _document(secret)
    assert set(manifest["stringData"].values()) == {k8s_objects.SECRET_PLACEHOLDER}
    assert any("Secret values are not exported" in line for line in header)
    for path in tmp_path.rglob("*.yaml"):
        assert SECRET_PLACEHOLDER not in path.read_text()


def test_a_new_export_replaces_its_own_stale_files_and_keeps_the_users(prod_export):
    out, _, _ = prod_export
    assert not (out / "old-model").exists()
    assert (out / "README.md").read_text() == "kept\n"
    assert (out / "kustomize" / "extra.yaml").read_text() == "# mine\n"


def test_the_same_run_renders_the_same_bytes():
    run = preview_run("prod")
    first = manifests.build(run.registrations, kubernetes_version="1.33", stack="prod",
                            stack_file="stacks/Pulumi.prod.yaml")
    second = manifests.build(run.registrations, kubernetes_version="1.33", stack="prod",
                             stack_file="stacks/Pulumi.prod.yaml")
    assert [(m.relative_path, m.text) for m in first] == [(m.relative_path, m.text) for m in second]
    deployment = next(m for m in first if m.relative_path == "r1-qwen-7b/deployment-r1-qwen-7b.yaml")
    # Multi-line strings (the readiness probe script) are written as readable blocks.
    assert "- |\n" in deployment.text


def test_the_ec2_stack_has_no_kubernetes_objects_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dev"
    assert manifests.main(["--stack", "dev", "--out", str(out)]) == 0
    assert "has no Kubernetes objects" in capsys.readouterr().out
    assert not out.exists()
