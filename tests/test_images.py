"""The non-root TGI image recipe (images/tgi-nonroot/) and its make target."""
from __future__ import annotations

import os
import subprocess

from components.serving.catalog import get_runtime_image
from tests.conftest import ROOT

DOCKERFILE = ROOT / "images" / "tgi-nonroot" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    return [tuple(line.split(None, 1)) for line in lines if line.strip() and not line.startswith("#")]


def test_the_base_is_the_catalog_tgi_release_pinned_by_a_digest_argument():
    instructions = _instructions()
    args = dict(v.split("=", 1) if "=" in v else (v, None) for k, v in instructions if k == "ARG")
    assert args["TGI_VERSION"] == get_runtime_image("tgi").tag
    assert "TGI_DIGEST" in args and args["TGI_DIGEST"] is None  # no default: never unpinned
    (base,) = [v for k, v in instructions if k == "FROM"]
    assert base == f"{get_runtime_image('tgi').repository}:${{TGI_VERSION}}@${{TGI_DIGEST}}"


def test_the_image_runs_as_a_uid_of_10000_or_more_and_keeps_the_entrypoint():
    instructions = _instructions()
    user = [v for k, v in instructions if k == "USER"][-1]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid >= 10000 and gid >= 10000
    assert not [k for k, _ in instructions if k in ("ENTRYPOINT", "CMD")]
    run = " ".join(v for k, v in instructions if k == "RUN")
    assert "chmod -R a+rX /root" in run and f"--uid {uid}" in run


def _make(tmp_path, **variables) -> subprocess.CompletedProcess:
    fake = tmp_path / "docker"
    fake.write_text('#!/bin/sh\necho "$@" > "$RECORD"\n')
    fake.chmod(0o755)
    return subprocess.run(["make", "-s", "tgi-image", *(f"{k}={v}" for k, v in variables.items())],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
                               "RECORD": str(tmp_path / "args")})


def test_make_refuses_to_build_without_a_digest(tmp_path):
    for variables in ({}, {"TGI_DIGEST": "latest"}, {"TGI_DIGEST": "sha256:abc"}):
        result = _make(tmp_path, **variables)
        assert result.returncode == 2
        assert "TGI_DIGEST=sha256:<64 hex>" in result.stderr
        assert not (tmp_path / "args").exists()


def test_make_builds_the_recipe_with_the_pinned_base(tmp_path):
    digest = "sha256:" + "ab" * 32
    result = _make(tmp_path, TGI_DIGEST=digest, TGI_IMAGE="registry.example/tgi-nonroot:3.3.5")
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[0] == "build" and args[-1] == "images/tgi-nonroot"
    assert f"TGI_DIGEST={digest}" in args and f"TGI_VERSION={get_runtime_image('tgi').tag}" in args
    assert args[args.index("-t") + 1] == "registry.example/tgi-nonroot:3.3.5"
