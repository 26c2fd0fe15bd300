"""The post-deploy smoke test and the client retry/timeout policy it follows.

The smoke tool runs for real: its HTTP checks against local servers that behave as the
deployed gateway does (or break one promise each), its API key lookups against a moto
server on 127.0.0.1. Nothing here reaches beyond this machine.
"""
from __future__ import annotations

import email.utils
import json
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from tests.moto_server import moto_server
from tests.smoke_servers import DEFAULT_MODELS, FakeGateway, GatewayBehaviour, Scripted, ScriptedServer
from tools import smoke
from tools.client_policy import (
    RetryPolicy,
    StreamTimeout,
    Timeouts,
    is_timeout,
    open_event_stream,
    parse_retry_after,
    send,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
CHECKS = (
    "no_key",
    "wrong_key",
    "list_models",
    "chat_completion",
    "stream_completion",
    "every_model",
    "worst_case",
    "oversized_body",
    "burst_throttle",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch, tmp_path):
    """Fake credentials, no profile files, no instance metadata, no proxies for loopback."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def aws_endpoint():
    with moto_server() as url:
        yield url


def _aws_client(service: str, endpoint: str):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_key_value() -> str:
    return f"smk{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api_key(aws_endpoint):
    """An enabled API Gateway key in moto: (key id, key value)."""
    value = new_key_value()
    created = _aws_client("apigateway", aws_endpoint).create_api_key(
        name=f"smoke-{uuid.uuid4().hex[:8]}", value=value, enabled=True
    )
    return created["id"], value


def stack_outputs(gateway: FakeGateway, **overrides) -> dict:
    behaviour = gateway.server.behaviour
    outputs = {
        "api_endpoint": gateway.api_endpoint,
        "served_models": list(behaviour.served_models),
        "region": REGION,
        "smoke_tier_limits": {"rate": behaviour.rate, "burst": behaviour.burst},
        "max_request_bytes": behaviour.max_request_bytes,
        "model_limits": {model: {"max_context": behaviour.max_context,
                                 "max_input_tokens": behaviour.max_input_tokens,
                                 "max_output_tokens": behaviour.max_output_tokens}
                         for model in behaviour.served_models},
    }
    outputs.update(overrides)
    return {name: value for name, value in outputs.items() if value is not None}


def write_outputs(tmp_path: Path, outputs: dict) -> Path:
    path = tmp_path / f"outputs-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(outputs))
    return path


def run_smoke(capsys, *argv: str) -> tuple[int, str, str]:
    code = smoke.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> dict[str, list[str]]:
    """check name -> [name, expected, got, ok, detail] from the printed table."""
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=4)
        if cells and cells[0] in CHECKS:
            rows[cells[0]] = cells
    return rows


def failed_checks(out: str) -> set[str]:
    return {name for name, cells in table_rows(out).items() if cells[3] != "yes"}


# --------------------------------------------------------------------------- the smoke test


def test_a_gateway_that_keeps_every_promise_passes_every_check(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
        seen = gateway.requests

    assert code == 0, out + err
    rows = table_rows(out)
    assert set(rows) == set(CHECKS)
    assert all(cells[3] == "yes" for cells in rows.values()), out
    assert "smoke: all 9 checks passed" in out
    assert re.search(r"time to first token \d+\.\d\d s, total \d+\.\d\d s", rows["stream_completion"][4])
    assert rows["burst_throttle"][4].startswith("Retry-After 1;")
    assert rows["oversized_body"][4].startswith(f"sent {16 * 1024 + 1024} bytes (limit {16 * 1024})")
    # The key was fetched from AWS and used, and never printed.
    assert any(request.api_key == key_value for request in seen)
    assert key_value not in out and key_value not in err
    # Every call stayed under the stage the stack exported.
    assert all(request.path.startswith("/prod/v1/") for request in seen)


def test_a_stack_with_an_authorizer_passes_with_a_token_from_the_environment_never_printed(
        tmp_path, capsys, aws_endpoint, api_key, monkeypatch):
    key_id, key_value = api_key
    token = "Bearer eyJ-smoke-access-token-" + uuid.uuid4().hex
    with FakeGateway(GatewayBehaviour(api_key=key_value, required_authorization=token)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        without = run_smoke(capsys, "--stack", "prod", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
        monkeypatch.setenv("SMOKE_ACCESS_TOKEN", token)
        code, out, err = run_smoke(capsys, "--stack", "prod", "--outputs", str(outputs),
                                   "--aws-endpoint-url", aws_endpoint, "--authorization-env", "SMOKE_ACCESS_TOKEN")

    assert without[0] == 1 and "list_models" in failed_checks(without[1])
    assert code == 0, out + err
    assert token.split()[-1] not in out + err


def test_an_unset_authorization_variable_stops_the_run(tmp_path, capsys, aws_endpoint, api_key, monkeypatch):
    key_id, key_value = api_key
    monkeypatch.delenv("SMOKE_ACCESS_TOKEN", raising=False)
    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, _, err = run_smoke(capsys, "--stack", "prod", "--outputs", str(outputs),
                                 "--aws-endpoint-url", aws_endpoint, "--authorization-env", "SMOKE_ACCESS_TOKEN")
    assert code == 2 and "SMOKE_ACCESS_TOKEN" in err


def test_the_burst_stays_within_its_request_budget_when_nothing_throttles(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    behaviour = GatewayBehaviour(api_key=key_value, never_throttles=True, burst=3)
    with FakeGateway(behaviour) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, out, _ = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
        keyed_model_listings = [
            r for r in gateway.requests if r.path == "/prod/v1/models" and r.api_key == key_value
        ]

    assert code == 1
    assert failed_checks(out) == {"burst_throttle"}
    # list_models made one of these; the burst may make at most burst * 2 + 10.
    assert len(keyed_model_listings) - 1 == 3 * 2 + 10
    assert "no 429 in 16 requests" in out


BROKEN_PROMISES = [
    pytest.param({"accepts_missing_key": True}, {"no_key"}, id="accepts-missing-key"),
    pytest.param({"accepts_wrong_key": True}, {"wrong_key"}, id="accepts-wrong-key"),
    pytest.param({"html_auth_errors": True}, {"no_key", "wrong_key"}, id="html-error-pages"),
    pytest.param({"drops_model": True}, {"list_models"}, id="model-missing-from-listing"),
    pytest.param({"omits_usage": True}, {"chat_completion"}, id="completion-without-usage"),
    # The worst case is streamed too: an answer that is not SSE breaks both.
    pytest.param({"stream_not_sse": True}, {"stream_completion", "worst_case"}, id="stream-not-sse"),
    pytest.param({"stream_without_chunks": True}, {"stream_completion"}, id="stream-without-chunks"),
    pytest.param({"accepts_oversized": True}, {"oversized_body"}, id="accepts-oversized-body"),
    pytest.param({"failing_model": DEFAULT_MODELS[1]}, {"every_model"}, id="a-model-that-cannot-generate"),
    pytest.param({"cuts_long_streams": True}, {"worst_case"}, id="worst-case-cut-off"),
    pytest.param({"never_throttles": True}, {"burst_throttle"}, id="never-throttles"),
    pytest.param({"retry_after": None}, {"burst_throttle"}, id="429-without-retry-after"),
]


@pytest.mark.parametrize("broken, expected_failures", BROKEN_PROMISES)
def test_each_broken_promise_fails_the_check_that_covers_it(
    tmp_path, capsys, aws_endpoint, api_key, broken, expected_failures
):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value, **broken)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)

    assert code == 1, out + err
    # Exactly the broken promise is blamed, not its neighbours.
    assert failed_checks(out) == expected_failures, out
    summary = [line for line in out.splitlines() if line.startswith("smoke: FAILED")]
    assert summary and all(name in summary[0] for name in expected_failures)
    assert key_value not in out and key_value not in err


def test_a_key_echoed_back_by_the_gateway_is_masked_in_the_report(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value, echoes_key_in_errors=True)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)

    assert code == 0, out + err
    # The 413 and 429 details quote the gateway's message, which carried the key.
    assert f"x-api-key {smoke.MASK}" in table_rows(out)["oversized_body"][4]
    assert key_value not in out and key_value not in err


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(lambda key: key, id="plain-text"),
        pytest.param(lambda key: key + "\n", id="plain-text-with-newline"),
        pytest.param(lambda key: json.dumps({"api_key": key, "tier": "smoke"}), id="json-object"),
    ],
)
def test_the_key_can_come_from_a_secrets_manager_secret(tmp_path, capsys, aws_endpoint, stored):
    key_value = new_key_value()
    secret_arn = _aws_client("secretsmanager", aws_endpoint).create_secret(
        Name=f"smoke-key-{uuid.uuid4().hex[:8]}", SecretString=stored(key_value)
    )["ARN"]
    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_secret_arn=secret_arn))
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)

    assert code == 0, out + err
    assert f"from Secrets Manager secret {secret_arn}" in out
    assert key_value not in out and key_value not in err


def test_the_api_gateway_key_id_is_preferred_over_the_secret(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    stale_arn = _aws_client("secretsmanager", aws_endpoint).create_secret(
        Name=f"smoke-stale-{uuid.uuid4().hex[:8]}", SecretString=new_key_value()
    )["ARN"]
    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs = write_outputs(
            tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id, smoke_api_key_secret_arn=stale_arn)
        )
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)

    assert code == 0, out + err
    assert f"from API Gateway key {key_id}" in out


def test_models_routed_under_their_own_paths_are_checked_at_their_own_base_urls(
    tmp_path, capsys, aws_endpoint, api_key
):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value, per_model_paths=True)) as gateway:
        models = gateway.server.behaviour.served_models
        base_urls = {model: f"{gateway.api_endpoint}/{model}/v1" for model in models}
        routed = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id, model_endpoints=base_urls))
        code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(routed), "--aws-endpoint-url", aws_endpoint)
        listings = {r.path for r in gateway.requests if r.path.endswith("/v1/models") and r.api_key == key_value}

        shared = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        shared_code, shared_out, _ = run_smoke(
            capsys, "--stack", "dev", "--outputs", str(shared), "--aws-endpoint-url", aws_endpoint
        )

    assert code == 0, out + err
    assert {f"/prod/{model}/v1/models" for model in models} <= listings
    # Without the per-model base URLs the same deployment has no /v1 surface to check.
    assert shared_code == 1
    assert "list_models" in failed_checks(shared_out)


def test_outputs_are_read_from_pulumi_without_secrets(tmp_path, capsys, monkeypatch, aws_endpoint, api_key):
    key_id, key_value = api_key
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "pulumi-args"
    outputs_file = tmp_path / "pulumi-outputs.json"
    fake_pulumi = bin_dir / "pulumi"
    fake_pulumi.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\ncat "{outputs_file}"\n')
    fake_pulumi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs_file.write_text(json.dumps(stack_outputs(gateway, smoke_api_key_id=key_id)))
        code, out, err = run_smoke(capsys, "--stack", "staging", "--aws-endpoint-url", aws_endpoint)

    assert code == 0, out + err
    assert args_file.read_text().split() == [
        "stack", "output", "--json", "--show-secrets=false", "--stack", "staging"
    ]
    assert "smoke test of stack staging\n" in out


def test_a_failing_pulumi_command_is_reported_with_its_error(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_pulumi = bin_dir / "pulumi"
    fake_pulumi.write_text("#!/bin/sh\necho \"error: no stack named 'nope' found\" >&2\nexit 255\n")
    fake_pulumi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    code, out, err = run_smoke(capsys, "--stack", "nope")

    assert code == 2
    assert "exit status 255: error: no stack named 'nope' found" in err
    assert out == ""


def test_a_missing_pulumi_cli_points_to_the_outputs_file_option(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run_smoke(capsys, "--stack", "dev")
    assert code == 2
    assert "pulumi CLI is not on PATH" in err and "--outputs FILE" in err


VALID_OUTPUTS = {
    "api_endpoint": "http://127.0.0.1:9/prod",
    "served_models": ["deepseek-r1-distill-qwen-7b"],
    "region": REGION,
    "smoke_tier_limits": {"rate": 5, "burst": 3},
    "max_request_bytes": 65536,
    "smoke_api_key_id": "abc123",
    "model_limits": {"deepseek-r1-distill-qwen-7b": {"max_context": 4096, "max_input_tokens": 4096,
                                                     "max_output_tokens": 512}},
}

BAD_OUTPUTS = [
    pytest.param({"served_models": None}, "has no output 'served_models'", id="missing-served-models"),
    pytest.param(
        {"smoke_api_key_id": None},
        "neither 'smoke_api_key_id' (an API Gateway key id) nor 'smoke_api_key_secret_arn'",
        id="no-key-output",
    ),
    pytest.param({"served_models": "[secret]"}, "output 'served_models' in outputs file", id="secret-placeholder"),
    pytest.param({"api_endpoint": "http://api.example.com/v1"}, "must be https", id="plain-http-endpoint"),
    pytest.param({"api_endpoint": "api.example.com"}, "expected the base URL", id="endpoint-not-a-url"),
    pytest.param({"smoke_tier_limits": {"rate": 5}}, "output 'smoke_tier_limits'", id="tier-without-burst"),
    pytest.param({"max_request_bytes": "1MB"}, "output 'max_request_bytes'", id="size-not-a-number"),
    pytest.param({"model_limits": {"deepseek-r1-distill-qwen-7b": {"max_context": 4096}}},
                 "output 'model_limits.deepseek-r1-distill-qwen-7b'", id="limits-incomplete"),
    pytest.param({"model_limits": {"unknown-model": {"max_context": 1, "max_input_tokens": 1, "max_output_tokens": 1}}},
                 "expected a served model", id="limits-for-an-unserved-model"),
    pytest.param({"served_models": []}, "non-empty list of served model names", id="no-models"),
    pytest.param(
        {"model_endpoints": {"other-model": "http://127.0.0.1:9/prod/other-model/v1"}},
        "expected one base URL for each served model: deepseek-r1-distill-qwen-7b",
        id="base-urls-for-other-models",
    ),
]


@pytest.mark.parametrize("change, message", BAD_OUTPUTS)
def test_bad_outputs_stop_the_run_with_a_message_naming_the_output(tmp_path, capsys, change, message):
    outputs = {**VALID_OUTPUTS, **change}
    outputs = {name: value for name, value in outputs.items() if value is not None}
    path = write_outputs(tmp_path, outputs)

    code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(path))

    assert code == 2
    assert message in err
    assert err.startswith("smoke: ") and "Traceback" not in err
    assert out == ""


def test_a_model_that_is_not_served_is_refused_before_any_request(tmp_path, capsys):
    path = write_outputs(tmp_path, VALID_OUTPUTS)
    code, _, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(path), "--model", "gpt-4")
    assert code == 2
    assert "--model gpt-4 is not served" in err


def test_an_outputs_file_that_is_not_json_is_reported(tmp_path, capsys):
    path = tmp_path / "outputs.json"
    path.write_text("Current stack outputs (2):\n  api_endpoint ...")
    code, _, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(path))
    assert code == 2
    assert f"outputs file {path} is not JSON" in err


def test_an_unknown_or_disabled_key_is_reported_without_a_traceback(tmp_path, capsys, aws_endpoint):
    unknown = write_outputs(tmp_path, {**VALID_OUTPUTS, "smoke_api_key_id": "nosuchkey1"})
    code, _, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(unknown), "--aws-endpoint-url", aws_endpoint)
    assert code == 2
    assert "could not read API Gateway key nosuchkey1 in us-east-1" in err
    assert "Traceback" not in err

    disabled_id = _aws_client("apigateway", aws_endpoint).create_api_key(
        name="smoke-disabled", value=new_key_value(), enabled=False
    )["id"]
    disabled = write_outputs(tmp_path, {**VALID_OUTPUTS, "smoke_api_key_id": disabled_id})
    code, _, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(disabled), "--aws-endpoint-url", aws_endpoint)
    assert code == 2
    assert f"API Gateway key {disabled_id} in us-east-1 is disabled" in err


def test_the_command_line_reports_bad_input_with_exit_status_2_and_no_traceback(tmp_path):
    missing = tmp_path / "missing.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--stack", "dev", "--outputs", str(missing)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"smoke: outputs file {missing} does not exist; write it with "
        f"`pulumi stack output --json --stack <name> > {missing}`, "
        "or leave out --outputs to read the stack directly"
    )
    assert completed.stdout == ""

    no_arguments = subprocess.run(
        [sys.executable, "-m", "tools.smoke"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert no_arguments.returncode == 2
    assert "give --stack NAME" in no_arguments.stderr and "Traceback" not in no_arguments.stderr


def test_an_unreachable_endpoint_fails_every_check_with_a_reason(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    outputs = write_outputs(
        tmp_path, {**VALID_OUTPUTS, "api_endpoint": f"http://127.0.0.1:{closed_port}/prod", "smoke_api_key_id": key_id}
    )
    code, out, err = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)

    assert code == 1
    assert failed_checks(out) == set(CHECKS)
    assert all("connection failed" in cells[4] for cells in table_rows(out).values()), out
    assert "Traceback" not in out + err


# --------------------------------------------------------------------------- client policy


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = time.time()
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    for unusable in (None, "", "soon", "-1", "nan"):
        assert parse_retry_after(unusable) is None


def test_backoff_is_full_jitter_under_a_cap_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.5, max_delay_s=4.0, max_retry_after_s=30.0)
    rng = random.Random(7)
    for retry_number, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        delays = [policy.delay_before_retry(retry_number, None, rng) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        # Spread over the whole range, not bunched at the ceiling as plain exponential backoff is.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9
    assert all(2.0 <= policy.delay_before_retry(1, 2.0, rng) <= 2.5 for _ in range(50))
    # A limit that clears only after we would have given up is surfaced, not slept on.
    assert policy.delay_before_retry(1, 31.0, rng) is None
    assert policy.delay_before_retry(10, None, rng) is None


def _send(server: ScriptedServer, policy: RetryPolicy, sleeps: list, timeouts=Timeouts(2.0, 2.0, 2.0)):
    with requests.Session() as session:
        return send(
            session, "POST", server.url, json={}, policy=policy, timeouts=timeouts,
            sleep=sleeps.append, rng=random.Random(1),
        )


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_transient_statuses_are_retried_until_attempts_run_out(status):
    sleeps: list[float] = []
    script = [Scripted(status=status, headers={"Retry-After": "0"})] * 2 + [Scripted(status=200, body=b"{}")]
    with ScriptedServer(script) as server:
        sent = _send(server, RetryPolicy(max_attempts=3), sleeps)
    assert (sent.response.status_code, sent.attempts, len(sleeps)) == (200, 3, 2)

    sleeps.clear()
    with ScriptedServer([Scripted(status=status)]) as server:
        sent = _send(server, RetryPolicy(max_attempts=3), sleeps)
        received = server.requests_received
    assert (sent.response.status_code, sent.attempts, received) == (status, 3, 3)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 500])
def test_other_failures_are_not_retried(status):
    sleeps: list[float] = []
    with ScriptedServer([Scripted(status=status), Scripted(status=200)]) as server:
        sent = _send(server, RetryPolicy(max_attempts=3), sleeps)
        received = server.requests_received
    assert (sent.response.status_code, sent.attempts, received, sleeps) == (status, 1, 1, [])


def test_a_throttled_request_waits_at_least_retry_after():
    sleeps: list[float] = []
    with ScriptedServer([Scripted(status=429, headers={"Retry-After": "3"}), Scripted(status=200)]) as server:
        sent = _send(server, RetryPolicy(max_attempts=3, max_delay_s=1.0), sleeps)
    assert sent.response.status_code == 200
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 3.5


def test_an_exhausted_quota_is_not_retried():
    quota = json.dumps({"error": {"message": "Limit Exceeded", "type": "gateway_error",
                                  "code": "QUOTA_EXCEEDED", "request_id": "r1"}}).encode()
    sleeps: list[float] = []
    with ScriptedServer([Scripted(status=429, headers={"Retry-After": "1"}, body=quota), Scripted(status=200)]) as server:
        sent = _send(server, RetryPolicy(max_attempts=3), sleeps)
    assert (sent.response.status_code, sent.attempts, sleeps) == (429, 1, [])


def test_a_read_timeout_is_retried_and_the_last_one_raised():
    sleeps: list[float] = []
    quick = Timeouts(connect_s=2.0, first_byte_s=0.3, total_s=0.3)
    with ScriptedServer([Scripted(delay_s=3.0), Scripted(status=200)]) as server:
        sent = _send(server, RetryPolicy(max_attempts=2), sleeps, timeouts=quick)
    assert (sent.response.status_code, sent.attempts, len(sleeps)) == (200, 2, 1)

    with ScriptedServer([Scripted(delay_s=3.0)]) as server:
        with pytest.raises(requests.Timeout):
            _send(server, RetryPolicy(max_attempts=2), sleeps, timeouts=quick)
        # The client gives up before the server thread may have counted the retry; wait for it.
        deadline = time.monotonic() + 5
        while server.requests_received < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.requests_received == 2


def _open(server: ScriptedServer, policy: RetryPolicy, timeouts: Timeouts):
    session = requests.Session()
    return open_event_stream(
        session, server.url, json={"stream": True}, policy=policy, timeouts=timeouts,
        sleep=lambda _: None, rng=random.Random(1),
    )


STREAM_TIMEOUTS = Timeouts(connect_s=2.0, first_byte_s=0.5, total_s=10.0)


def test_events_are_parsed_as_they_arrive_whatever_the_chunking():
    events = [
        (0.0, b": keep-alive\n\n"),
        (0.0, b"data: {\"a\""),
        (0.0, b": 1}\n\n"),
        (0.0, b"event: message\r\ndata: line one\r\ndata: line two\r\n\r\n"),
        (0.0, b"data: [DONE]\n\n"),
        (0.0, b"data: never terminated"),
    ]
    with ScriptedServer([Scripted(events=events)]) as server:
        stream = _open(server, RetryPolicy(max_attempts=1), STREAM_TIMEOUTS)
        received = list(stream.events())
        stream.close()
    assert received == ['{"a": 1}', "line one\nline two", "[DONE]"]


def test_a_stream_is_retried_while_its_first_event_is_late():
    late = Scripted(events=[(3.0, b"data: late\n\n")])
    prompt = Scripted(events=[(0.0, b"data: first\n\n"), (0.0, b"data: [DONE]\n\n")])
    with ScriptedServer([late, prompt]) as server:
        stream = _open(server, RetryPolicy(max_attempts=2), STREAM_TIMEOUTS)
        assert list(stream.events()) == ["first", "[DONE]"]
        stream.close()
    assert stream.attempts == 2


def test_keep_alives_alone_do_not_count_as_a_first_event():
    pings_only = Scripted(events=[(0.05, b": ping\n\n")] * 40)
    with ScriptedServer([pings_only]) as server:
        with pytest.raises(StreamTimeout) as raised:
            _open(server, RetryPolicy(max_attempts=2), STREAM_TIMEOUTS)
        assert server.requests_received == 2
    assert raised.value.phase == "first-event"


def test_a_stream_is_never_retried_after_its_first_event():
    stalls = Scripted(events=[(0.0, b"data: first\n\n"), (3.0, b"data: second\n\n")])
    with ScriptedServer([stalls]) as server:
        stream = _open(server, RetryPolicy(max_attempts=3), STREAM_TIMEOUTS)
        events = stream.events()
        assert next(events) == "first"
        with pytest.raises(Exception) as raised:
            next(events)
        stream.close()
        assert server.requests_received == 1
    assert is_timeout(raised.value)


def test_a_stream_past_its_total_deadline_is_abandoned():
    slow_but_steady = Scripted(events=[(0.05, b"data: token\n\n")] * 100)
    with ScriptedServer([slow_but_steady]) as server:
        stream = _open(server, RetryPolicy(max_attempts=1), Timeouts(2.0, 2.0, 2.5))
        with pytest.raises(StreamTimeout) as raised:
            for _ in stream.events():
                pass
        stream.close()
    assert raised.value.phase == "total"


def test_a_stream_refused_with_a_transient_status_is_retried_before_it_starts():
    with ScriptedServer([Scripted(status=503), Scripted(events=[(0.0, b"data: ok\n\n")])]) as server:
        stream = _open(server, RetryPolicy(max_attempts=2), STREAM_TIMEOUTS)
        assert stream.first_event == "ok"
        stream.close()
    assert stream.attempts == 2


# --------------------------------------------------------------------------- every model, worst case


def test_every_model_answers_through_its_own_base_url_ollama_included(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    models = ("r1-qwen-7b", "r1-qwen-1-5b-gguf")  # the dev stack: vLLM and Ollama's /v1
    with FakeGateway(GatewayBehaviour(api_key=key_value, served_models=models, per_model_paths=True)) as gateway:
        endpoints = {m: f"{gateway.api_endpoint}/{m}/v1" for m in models}
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id, model_endpoints=endpoints))
        code, out, _ = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
        chats = [r.path for r in gateway.requests if r.method == "POST"]
    assert code == 0, out
    assert any(path.endswith("/r1-qwen-1-5b-gguf/v1/chat/completions") for path in chats)
    assert "answered: r1-qwen-7b, r1-qwen-1-5b-gguf" in out


def test_the_worst_case_asks_for_the_longest_prompt_and_the_full_output(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    behaviour = GatewayBehaviour(api_key=key_value, max_context=4096, max_input_tokens=4096, max_output_tokens=512)
    with FakeGateway(behaviour) as gateway:
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id))
        code, out, _ = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
        sizes = sorted(r.body_bytes for r in gateway.requests if r.method == "POST")
    assert code == 0, out
    row = table_rows(out)["worst_case"]
    assert row[3] == "yes" and "[DONE]" in row[2]
    # 4096 - 512 output - 256 margin = 3328 prompt tokens of " ok": the largest body sent
    # (the oversized probe aside) is the worst case.
    assert "prompt of about 3328 tokens, max_tokens 512" in row[4]
    assert 3328 * 3 < sizes[-2] < behaviour.max_request_bytes


def test_a_worst_case_refused_with_the_runtimes_400_passes(tmp_path, capsys, aws_endpoint, api_key):
    """The stack claims a longer context than the runtime takes: the runtime's own 400
    (vLLM's error shape, passed through) is a documented refusal, not a failure."""
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value, max_context=2048)) as gateway:
        claims = {m: {"max_context": 8192, "max_input_tokens": 8192, "max_output_tokens": 1024}
                  for m in DEFAULT_MODELS}
        outputs = write_outputs(tmp_path, stack_outputs(gateway, smoke_api_key_id=key_id, model_limits=claims))
        code, out, _ = run_smoke(capsys, "--stack", "dev", "--outputs", str(outputs), "--aws-endpoint-url", aws_endpoint)
    assert code == 0, out
    row = table_rows(out)["worst_case"]
    assert row[2] == "400, JSON error" and "maximum context length is 2048" in row[4]


def test_a_worst_case_that_never_answers_fails_instead_of_waiting_forever(aws_endpoint, api_key):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value, hangs_long_requests_s=3.0)) as gateway:
        target = smoke.target_from_outputs(stack_outputs(gateway, smoke_api_key_id=key_id), "test outputs")
        run = smoke.SmokeRun(target, key_value, DEFAULT_MODELS[0])
        run.worst_case_timeouts = smoke.Timeouts(connect_s=2.0, first_byte_s=0.5, total_s=1.0)
        got, ok, detail = run.check_worst_case()
        run.session.close()
    assert (got, ok) == ("timed out", False)
    assert "neither finished nor was refused" in detail


def test_stack_outputs_without_model_limits_fail_the_worst_case_with_a_reason(tmp_path, capsys, aws_endpoint, api_key):
    key_id, key_value = api_key
    with FakeGateway(GatewayBehaviour(api_key=key_value)) as gateway:
        outputs = stack_outputs(gateway, smoke_api_key_id=key_id)
        del outputs["model_limits"]
        code, out, _ = run_smoke(capsys, "--stack", "dev", "--outputs", str(write_outputs(tmp_path, outputs)),
                                 "--aws-endpoint-url", aws_endpoint)
    assert code == 1 and failed_checks(out) == {"worst_case"}
    assert "no model_limits" in out
