"""Client key rotation against a real AWS API emulator (moto server on 127.0.0.1): two keys
in the client's usage plan during the overlap, then only the new one."""
from __future__ import annotations

import datetime
import json
import stat

import boto3
import pytest

from tests.moto_server import moto_server, reset
from tools import rotate_key

REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def gateway(endpoint, monkeypatch):
    """A usage plan per tier with one client key each, as the stack creates them."""
    reset(endpoint)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("apigateway", region_name=REGION, endpoint_url=endpoint)
    api = client.create_rest_api(name="deepseek")
    plans = {tier: client.create_usage_plan(name=f"plan-{tier}")["id"] for tier in ("standard", "batch")}
    keys = {}
    for name, tier in (("acme", "standard"), ("other", "batch")):
        key = client.create_api_key(name=f"gw-key-{name}", enabled=True, tags={"client": name})
        client.create_usage_plan_key(usagePlanId=plans[tier], keyId=key["id"], keyType="API_KEY")
        keys[name] = key["id"]
    return {"client": client, "endpoint": endpoint, "plans": plans, "keys": keys, "api": api["id"]}


def plan_keys(client, plan_id: str) -> set[str]:
    return {k["id"] for k in client.get_usage_plan_keys(usagePlanId=plan_id)["items"]}


def test_start_puts_a_second_key_in_the_same_plan_and_writes_its_value_owner_only(gateway, tmp_path):
    client, old = gateway["client"], gateway["keys"]["acme"]
    out = tmp_path / "acme.key"
    started = rotate_key.start(client, old, out, today=datetime.date(2026, 12, 1))
    standard = gateway["plans"]["standard"]
    assert plan_keys(client, standard) == {old, started.new_key_id}
    assert started.usage_plan_ids == (standard,)
    # The other tier's plan is untouched.
    assert plan_keys(client, gateway["plans"]["batch"]) == {gateway["keys"]["other"]}
    new = client.get_api_key(apiKey=started.new_key_id, includeValue=True)
    assert new["enabled"] and new["name"] == "gw-key-acme-rotated-2026-12-01"
    assert out.read_text().strip() == new["value"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # Both keys work during the overlap.
    assert client.get_api_key(apiKey=old)["enabled"]


def test_finish_leaves_only_the_new_key_and_disables_the_old(gateway, tmp_path):
    client, old = gateway["client"], gateway["keys"]["acme"]
    started = rotate_key.start(client, old, tmp_path / "acme.key")
    rotate_key.finish(client, old, started.new_key_id)
    assert plan_keys(client, gateway["plans"]["standard"]) == {started.new_key_id}
    assert client.get_api_key(apiKey=old)["enabled"] is False
    assert client.get_api_key(apiKey=started.new_key_id)["enabled"] is True


def test_finish_before_start_is_refused_and_changes_nothing(gateway):
    client, old = gateway["client"], gateway["keys"]["acme"]
    stranger = client.create_api_key(name="stranger", enabled=True)["id"]
    with pytest.raises(rotate_key.RotationError, match="run `start` first"):
        rotate_key.finish(client, old, stranger)
    assert plan_keys(client, gateway["plans"]["standard"]) == {old}
    assert client.get_api_key(apiKey=old)["enabled"]


def test_an_existing_output_file_is_never_overwritten(gateway, tmp_path):
    out = tmp_path / "acme.key"
    out.write_text("someone else's file\n")
    with pytest.raises(rotate_key.RotationError, match="exists"):
        rotate_key.start(gateway["client"], gateway["keys"]["acme"], out)
    assert out.read_text() == "someone else's file\n"
    assert plan_keys(gateway["client"], gateway["plans"]["standard"]) == {gateway["keys"]["acme"]}


def test_the_command_line_reads_the_key_id_from_stack_outputs_and_never_prints_the_value(
        gateway, tmp_path, capsys):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"api_key_ids": gateway["keys"]}))
    out = tmp_path / "acme.key"
    code = rotate_key.main(["start", "--outputs", str(outputs), "--client", "acme", "--out", str(out),
                            "--endpoint-url", gateway["endpoint"], "--region", REGION])
    printed = capsys.readouterr()
    assert code == 0
    value = out.read_text().strip()
    assert value and value not in printed.out + printed.err
    new_id = printed.out.split("new key ")[1].split()[0]
    code = rotate_key.main(["finish", "--key-id", gateway["keys"]["acme"], "--new-key-id", new_id,
                            "--endpoint-url", gateway["endpoint"], "--region", REGION])
    assert code == 0
    assert plan_keys(gateway["client"], gateway["plans"]["standard"]) == {new_id}


def test_bad_input_exits_2_with_a_message(gateway, tmp_path, capsys):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"api_key_ids": gateway["keys"]}))
    code = rotate_key.main(["start", "--outputs", str(outputs), "--client", "nobody", "--out",
                            str(tmp_path / "x"), "--endpoint-url", gateway["endpoint"], "--region", REGION])
    assert code == 2
    assert "no client 'nobody'" in capsys.readouterr().err
    code = rotate_key.main(["start", "--key-id", "doesnotexist", "--out", str(tmp_path / "y"),
                            "--endpoint-url", gateway["endpoint"], "--region", REGION])
    assert code == 2

