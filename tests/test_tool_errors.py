"""Bad input to the offline tools: a clear message, exit code 2, no traceback, nothing changed.

Everything here stays on local files (tmp_path) and 127.0.0.1: the AWS cases fail while
the client is set up (bad endpoint URL, unknown profile), before any request is made.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import diff, diff_markdown, manifests, plan_diff, preflight, preview, smoke
from tools.plan import SCHEMA
from tools.stack_files import StackFileError, load

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               AWS_EC2_METADATA_DISABLED="true", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in _env().items():
        if name.startswith("AWS_") or name.lower() == "no_proxy":
            monkeypatch.setenv(name, value)


def run_tool(module: str, *argv: str, **env: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", f"tools.{module}", *argv], cwd=ROOT, env=_env(**env),
                            capture_output=True, text=True, timeout=TIMEOUT)
    return result.returncode, result.stdout, result.stderr


def call(capsys, tool, *argv: str) -> tuple[int, str, str]:
    try:
        code = tool.main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def _plan(resources=(), **extra) -> dict:
    return {"schema": SCHEMA, "stack": "dev", "resources": list(resources), **extra}


def _write(path: Path, value) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


# ------------------------------------------------------------------------ tools.diff

GOOD_RESOURCE = {"urn": "urn:pulumi:dev::p::aws:s3/bucket:Bucket::b", "type": "aws:s3/bucket:Bucket",
                 "name": "b"}


@pytest.mark.parametrize("content, fragments", [
    pytest.param([1, 2], ["must be a JSON object", "a list"], id="list"),
    pytest.param({}, ["no `resources` list"], id="no-resources"),
    pytest.param({"resources": {"a": 1}}, ["`resources` must be a list"], id="resources-not-list"),
    pytest.param({"resources": [7]}, ["`resources[0]` must be an object"], id="resource-not-object"),
    pytest.param({"resources": [{"type": "t", "name": "n"}]}, ["`resources[0].urn` is missing"],
                 id="no-urn"),
    pytest.param({"resources": [{**GOOD_RESOURCE, "name": 3}]}, ["`resources[0].name`", "string"],
                 id="name-not-string"),
    pytest.param({"resources": [GOOD_RESOURCE], "diagnostics": {}}, ["`diagnostics` must be a list"],
                 id="diagnostics-not-list"),
    pytest.param("{not json", ["not valid JSON"], id="not-json"),
])
def test_diff_refuses_a_malformed_plan_naming_file_and_field(tmp_path, capsys, content, fragments):
    good = _write(tmp_path / "good.json", _plan([GOOD_RESOURCE]))
    bad = _write(tmp_path / "bad.json", content)
    out_file = tmp_path / "report.md"
    code, out, err = call(capsys, diff, "--plans", str(good), str(bad), "--out", str(out_file))
    assert_refused(code, err, "bad.json", *fragments)
    assert not out_file.exists()


def test_diff_validate_plan_raises_its_own_error():
    with pytest.raises(plan_diff.DiffError, match=r"old\.json: `resources\[0\]\.urn` is missing"):
        plan_diff.validate_plan({"resources": [{"type": "t", "name": "n"}]}, "old.json")


def test_diff_malformed_plan_from_the_command_line_has_no_traceback(tmp_path):
    bad = _write(tmp_path / "bad.json", [1, 2])
    code, out, err = run_tool("diff", "--plans", str(bad), str(bad))
    assert_refused(code, err, "bad.json", "must be a JSON object")
    assert out == ""


@pytest.mark.parametrize("argv", [["--stack", "dev"], ["--stacks", "dev", "prod"]])
def test_diff_match_without_plans_is_a_usage_error(capsys, argv):
    code, _, err = call(capsys, diff, *argv, "--match", "name")
    assert_refused(code, err, "--match goes with --plans")


def test_diff_out_a_directory_is_refused(tmp_path, capsys):
    plan = _write(tmp_path / "plan.json", _plan([GOOD_RESOURCE]))
    target = tmp_path / "reports"
    target.mkdir()
    code, out, err = call(capsys, diff, "--plans", str(plan), str(plan), "--out", str(target))
    assert_refused(code, err, f"error: {target}: is a directory")
    assert list(target.iterdir()) == []


def test_diff_out_under_a_file_is_refused(tmp_path, capsys):
    plan = _write(tmp_path / "plan.json", _plan([GOOD_RESOURCE]))
    code, _, err = call(capsys, diff, "--plans", str(plan), str(plan), "--out", str(plan / "report.md"))
    assert_refused(code, err, f"error: {plan / 'report.md'}:")


def test_diff_still_writes_a_report_for_valid_plans(tmp_path, capsys):
    plan = _write(tmp_path / "plan.json", _plan([GOOD_RESOURCE]))
    out_file = tmp_path / "new" / "report.md"
    code, _, err = call(capsys, diff, "--plans", str(plan), str(plan), "--out", str(out_file))
    assert code == 0, err
    assert out_file.is_file()


def _report_with_fences(lines: int = 400) -> str:
    body = []
    for i in range(lines):
        if i % 20 == 0:
            body.append("```diff")
        body.append(f"+ line {i} " + "x" * (i % 37))
        if i % 20 == 19:
            body.append("```")
    return "# Report\n\n" + "\n".join(body) + "\n"


@pytest.mark.parametrize("max_chars", [1, 10, 150, 151, 152, 153, 160, 200, 333, 500, 1000, 4096, 9999])
def test_truncate_never_exceeds_max_chars_and_closes_fences(max_chars):
    markdown = _report_with_fences()
    result = diff_markdown.truncate(markdown, max_chars)
    assert len(result) <= max_chars
    if max_chars >= 200:
        assert "Truncated" in result
        assert result.count("```") % 2 == 0


def test_truncate_at_every_cut_point_stays_within_the_limit():
    markdown = _report_with_fences(120)
    for max_chars in range(140, len(markdown) + 5):
        result = diff_markdown.truncate(markdown, max_chars)
        assert len(result) <= max_chars, max_chars
        assert result.count("```") % 2 == 0, max_chars


# ------------------------------------------------------------------------ stack files

def test_non_string_config_key_is_a_stack_file_error(tmp_path):
    path = _write(tmp_path / "Pulumi.k.yaml", "config:\n  1: x\n")
    with pytest.raises(StackFileError, match="config key 1 is not a string"):
        load("k", path)


def test_non_utf8_stack_file_is_a_stack_file_error(tmp_path):
    path = tmp_path / "Pulumi.u.yaml"
    path.write_bytes(b"config:\n  a: \"\xff\xfe\"\n")
    with pytest.raises(StackFileError, match="not UTF-8"):
        load("u", path)


def test_unreadable_stack_file_is_a_stack_file_error(tmp_path, monkeypatch):
    path = _write(tmp_path / "Pulumi.r.yaml", "config: {}\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(StackFileError, match="cannot read the stack file: Permission denied"):
        load("r", path)


@pytest.mark.parametrize("content, fragment", [
    pytest.param(b"config:\n  1: x\n", "config key 1 is not a string", id="int-key"),
    pytest.param(b"config:\n  a: \"\xff\"\n", "not UTF-8", id="not-utf8"),
])
def test_preview_reports_bad_stack_files_with_exit_2(tmp_path, content, fragment):
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_bytes(content)
    plan_out = tmp_path / "plan.json"
    code, _, err = run_tool("preview", "--stack", "bad", "--stack-file", str(path), "--plan-out", str(plan_out))
    assert_refused(code, err, fragment, "Nothing was registered")
    assert not plan_out.exists()


def test_preflight_reports_a_non_string_config_key(tmp_path, capsys):
    path = _write(tmp_path / "Pulumi.k.yaml", "config:\n  1: x\n")
    code, _, err = call(capsys, preflight, "--stack", "k", "--stack-file", str(path))
    assert_refused(code, err, "config key 1 is not a string")


# ------------------------------------------------------------------------ output paths

def test_preview_plan_out_a_directory_is_refused_before_running(tmp_path, capsys):
    code, out, err = call(capsys, preview, "--stack", "dev", "--plan-out", str(tmp_path))
    assert_refused(code, err, f"error: {tmp_path}: is a directory")
    assert out == ""  # refused before the program ran: no tree printed
    assert list(tmp_path.iterdir()) == []


def test_preview_plan_out_under_a_file_is_refused(tmp_path, capsys):
    blocker = _write(tmp_path / "file", "x")
    code, out, err = call(capsys, preview, "--stack", "dev", "--plan-out", str(blocker / "sub" / "plan.json"))
    assert_refused(code, err, f"error: {blocker / 'sub' / 'plan.json'}:", "is not a directory")
    assert out == ""
    assert blocker.read_text() == "x"


def test_preview_plan_out_a_directory_from_the_command_line(tmp_path):
    code, out, err = run_tool("preview", "--stack", "dev", "--plan-out", str(tmp_path))
    assert_refused(code, err, "is a directory")
    assert "Resources:" not in out


def test_manifests_out_an_existing_file_is_refused(tmp_path, capsys):
    existing = _write(tmp_path / "manifests", "keep me")
    code, out, err = call(capsys, manifests, "--stack", "dev", "--out", str(existing))
    assert_refused(code, err, f"error: {existing}: exists and is not a directory")
    assert existing.read_text() == "keep me"


def test_manifests_out_under_a_file_from_the_command_line(tmp_path):
    existing = _write(tmp_path / "file", "keep me")
    code, _, err = run_tool("manifests", "--stack", "dev", "--out", str(existing / "k8s"))
    assert_refused(code, err, f"error: {existing / 'k8s'}:")
    assert existing.read_text() == "keep me"


# ------------------------------------------------------------------------ AWS clients

def test_preflight_invalid_endpoint_url(capsys):
    code, _, err = call(capsys, preflight, "--stack", "dev", "--endpoint-url", "notaurl")
    assert_refused(code, err, "--endpoint-url 'notaurl' is not a valid URL")


def test_preflight_unknown_profile_from_the_command_line():
    code, _, err = run_tool("preflight", "--stack", "dev", "--endpoint-url", "http://127.0.0.1:9",
                            AWS_PROFILE="nosuch")
    assert_refused(code, err, "nosuch", "AWS_PROFILE")


def test_preflight_invalid_endpoint_url_from_the_command_line():
    code, _, err = run_tool("preflight", "--stack", "dev", "--endpoint-url", "notaurl")
    assert_refused(code, err, "--endpoint-url")


def _smoke_outputs(tmp_path: Path) -> Path:
    return _write(tmp_path / "outputs.json", {
        "api_endpoint": "https://127.0.0.1:9/prod", "served_models": ["m"], "region": "us-east-1",
        "smoke_api_key_id": "abc123", "smoke_tier_limits": {"rate": 1, "burst": 1},
        "max_request_bytes": 1000})


def test_smoke_invalid_aws_endpoint_url(tmp_path, capsys):
    code, _, err = call(capsys, smoke, "--outputs", str(_smoke_outputs(tmp_path)),
                        "--aws-endpoint-url", "notaurl")
    assert_refused(code, err, "--aws-endpoint-url 'notaurl' is not a valid URL")


def test_smoke_invalid_aws_endpoint_url_from_the_command_line(tmp_path):
    code, _, err = run_tool("smoke", "--outputs", str(_smoke_outputs(tmp_path)), "--aws-endpoint-url", "notaurl")
    assert_refused(code, err, "--aws-endpoint-url")


def test_smoke_unknown_profile(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    code, _, err = call(capsys, smoke, "--outputs", str(_smoke_outputs(tmp_path)),
                        "--aws-endpoint-url", "http://127.0.0.1:9")
    assert_refused(code, err, "nosuch", "AWS_PROFILE")
