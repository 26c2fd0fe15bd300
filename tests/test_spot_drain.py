"""Spot hosts drain on the two-minute interruption notice: the real watcher script from the
rendered user data, run against a fake IMDSv2 on 127.0.0.1, with `aws`, `ss` and `systemctl`
replaced by recorders on PATH (nothing reaches AWS or the host's services)."""
from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from components.ec2 import host as hp
from tests.test_host_provisioning import cloud_config, plan_for

INSTANCE_ID = "i-0123456789abcdef0"
GROUP = "r1-qwen-7b-asg-1234567"
TOKEN = "imds-session-token"


class FakeImds:
    """IMDSv2: PUT a token, then GET with it; the notice appears after `quiet_polls` polls."""

    def __init__(self, quiet_polls: int, seconds_left: float):
        self.quiet_polls, self.seconds_left = quiet_polls, seconds_left
        self.polls = 0
        self.untokened = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._send(200, TOKEN)
                self._send(400, "")

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    fake.untokened += 1
                    return self._send(401, "")
                if self.path == "/latest/meta-data/instance-id":
                    return self._send(200, INSTANCE_ID)
                if self.path == "/latest/meta-data/spot/instance-action":
                    fake.polls += 1
                    if fake.polls <= fake.quiet_polls:
                        return self._send(404, "")
                    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=fake.seconds_left)
                    return self._send(200, json.dumps({"action": "terminate",
                                                       "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}))
                self._send(404, "")

            def _send(self, status: int, body: str):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _recorders(bin_dir: Path, calls: Path, busy_polls: int) -> None:
    """`aws`, `ss` and `systemctl` that log their arguments; `ss` reports an open stream for
    the first `busy_polls` calls (a negative number: always)."""
    bin_dir.mkdir()
    common = f"import json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n"
    scripts = {
        "aws": common + ("if 'describe-auto-scaling-instances' in sys.argv:\n"
                         f"    print(json.dumps({{'AutoScalingInstances': [{{'AutoScalingGroupName': {GROUP!r}}}]}}))\n"),
        "systemctl": common,
        "ss": common + (f"n = sum(1 for line in open({str(calls)!r}) if json.loads(line)[0].endswith('ss'))\n"
                        f"if {busy_polls} < 0 or n <= {busy_polls}:\n"
                        "    print('ESTAB 0 0 10.0.0.5:8000 10.0.1.9:41234')\n"),
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)


def _spot_plan(change=None) -> hp.HostPlan:
    return dataclasses.replace(plan_for("r1-qwen-7b", change=change), spot=True)


def _watcher_source() -> str:
    config = cloud_config(_spot_plan())
    (entry,) = [f for f in config["write_files"] if f["path"] == "/usr/local/lib/deepseek/spot_watcher.py"]
    assert entry["encoding"] == "gz+b64"
    return hp.file_content(entry)


def _run(tmp_path: Path, imds: FakeImds, *, busy_polls: int, margin: float, timeout: float = 60):
    calls = tmp_path / "calls.log"
    calls.touch()
    _recorders(tmp_path / "bin", calls, busy_polls)
    script = tmp_path / "spot_watcher.py"
    script.write_text(_watcher_source())
    env = {"PATH": f"{tmp_path / 'bin'}:{os.path.dirname(sys.executable)}:/usr/bin:/bin",
           "IMDS_ENDPOINT": imds.endpoint, "STATE_DIR": str(tmp_path), "WATCH_INTERVAL": "0.05",
           "STOP_MARGIN_SECONDS": str(margin), "AWS_REGION": "us-east-1", "RUNTIME_PORT": "8000"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout)
    return done, [json.loads(line) for line in calls.read_text().splitlines()]


def _tool(call: list[str]) -> str:
    return os.path.basename(call[0])


def test_a_spot_notice_stops_admission_enters_standby_lets_streams_finish_then_stops_the_runtime(tmp_path):
    imds = FakeImds(quiet_polls=3, seconds_left=120)
    try:
        done, calls = _run(tmp_path, imds, busy_polls=2, margin=15)
    finally:
        imds.close()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "draining").exists()  # the health gate answers 503 from here on
    assert imds.untokened == 0  # every metadata read used an IMDSv2 session token
    tools = [_tool(c) for c in calls]
    assert tools[:2] == ["aws", "aws"]
    assert calls[0][1:] == ["--region", "us-east-1", "autoscaling", "describe-auto-scaling-instances",
                            "--instance-ids", INSTANCE_ID, "--output", "json"]
    assert calls[1][1:] == ["--region", "us-east-1", "autoscaling", "enter-standby", "--instance-ids", INSTANCE_ID,
                            "--auto-scaling-group-name", GROUP, "--no-should-decrement-desired-capacity"]
    # It waited while a stream was open (two busy polls, then an idle one) and only then stopped.
    assert tools[2:] == ["ss", "ss", "ss", "systemctl"]
    assert calls[-1][1:] == ["stop", "--no-block", "deepseek-runtime.service"]


def test_streams_still_open_at_the_reclaim_deadline_do_not_keep_the_runtime_alive(tmp_path):
    # Two seconds left and a one-second margin: the stop comes although a stream stays open.
    imds = FakeImds(quiet_polls=0, seconds_left=2)
    try:
        done, calls = _run(tmp_path, imds, busy_polls=-1, margin=1)
    finally:
        imds.close()
    assert done.returncode == 0, done.stderr
    assert [_tool(c) for c in calls][-1] == "systemctl"
    assert calls[-1][1:] == ["stop", "--no-block", "deepseek-runtime.service"]


def test_without_a_notice_the_watcher_only_watches(tmp_path):
    imds = FakeImds(quiet_polls=10**6, seconds_left=120)
    calls = tmp_path / "calls.log"
    calls.touch()
    _recorders(tmp_path / "bin", calls, busy_polls=0)
    script = tmp_path / "spot_watcher.py"
    script.write_text(_watcher_source())
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "IMDS_ENDPOINT": imds.endpoint, "STATE_DIR": str(tmp_path),
           "WATCH_INTERVAL": "0.05", "AWS_REGION": "us-east-1", "RUNTIME_PORT": "8000"}
    watcher = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 30
        while imds.polls < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert imds.polls >= 5
        assert watcher.poll() is None  # still watching
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        imds.close()
    assert calls.read_text() == ""
    assert not (tmp_path / "draining").exists()


@pytest.mark.parametrize("spot", [False, True])
def test_only_spot_hosts_run_the_watcher_and_user_data_stays_within_16_kb(spot):
    plan = _spot_plan() if spot else plan_for("r1-qwen-7b")
    config = cloud_config(plan)
    paths = {f["path"] for f in config["write_files"]}
    assert ("/usr/local/lib/deepseek/spot_watcher.py" in paths) == spot
    assert ("/etc/systemd/system/deepseek-spot-watcher.service" in paths) == spot
    enabled = [c for c in config["runcmd"] if c[:3] == ["systemctl", "enable", "--now"]]
    assert any("deepseek-spot-watcher.service" in c for c in enabled) == spot
    assert len(hp.user_data_payload(hp.render_user_data(plan), plan.model_name)) <= hp.USER_DATA_LIMIT


# --- the fleet ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dev_run():
    from tests import stack_runs
    return stack_runs.preview_run("dev")


def test_the_dev_vllm_fleet_keeps_an_on_demand_base_and_fills_the_rest_with_spot(dev_run):
    from components.serving.catalog import get_instance
    from tests import stack_runs
    model = next(m for m in stack_runs.inventory_of("dev")["models"] if m["name"] == "r1-qwen-7b")
    (group,) = [r.inputs for r in dev_run.by_type("aws:autoscaling/group:Group") if r.name == "r1-qwen-7b-asg"]
    assert "launchTemplate" not in group  # the mixed instances policy names the template
    assert group["capacityRebalance"] is True
    policy = group["mixedInstancesPolicy"]
    distribution = policy["instancesDistribution"]
    assert distribution["onDemandBaseCapacity"] == model["spot"]["on_demand_base"]
    assert distribution["onDemandPercentageAboveBaseCapacity"] == model["spot"]["on_demand_percentage_above_base"]
    assert distribution["spotAllocationStrategy"] == "price-capacity-optimized"
    assert distribution["onDemandAllocationStrategy"] == "prioritized"
    types = [o["instanceType"] for o in policy["launchTemplate"]["overrides"]]
    assert types[0] == model["instance_type"] and len(types) > 1
    declared = get_instance(model["instance_type"])
    for name in types:
        other = get_instance(name)
        assert (other.gpu.name, other.gpu_count) == (declared.gpu.name, declared.gpu_count)
    # Models without spot keep a plain launch template.
    (plain,) = [r.inputs for r in dev_run.by_type("aws:autoscaling/group:Group") if r.name == "r1-qwen-1-5b-gguf-asg"]
    assert "mixedInstancesPolicy" not in plain and "launchTemplate" in plain


@pytest.fixture(scope="module")
def dev_up():
    from tests import stack_runs
    return stack_runs.run_with_inventory("dev", lambda inventory: None, preview=False)


def test_only_spot_hosts_may_put_themselves_in_standby_and_only_in_their_own_group(dev_up):
    from tools import fake_cloud
    policies = {r.name: json.loads(r.inputs["policy"]) for r in dev_up.by_type("aws:iam/rolePolicy:RolePolicy")
                if r.name.endswith("-drain")}
    assert set(policies) == {"r1-qwen-7b-drain"}
    statements = {s["Sid"]: s for s in policies["r1-qwen-7b-drain"]["Statement"]}
    (asg,) = [r for r in dev_up.by_type("aws:autoscaling/group:Group") if r.name == "r1-qwen-7b-asg"]
    assert statements["StandbyOnSpotNotice"]["Resource"] == fake_cloud.created_state(
        asg.type, asg.name, asg.inputs, "us-east-1")[1]["arn"]
    assert statements["StandbyOnSpotNotice"]["Action"] == "autoscaling:EnterStandby"
    assert statements["StandbyOnSpotNotice"]["Condition"]["StringEquals"] == {
        "aws:ResourceTag/stack": "dev", "aws:ResourceTag/model": "r1-qwen-7b"}
    tags = {t["key"]: t["value"] for t in asg.inputs["tags"]}
    assert tags["stack"] == "dev" and tags["model"] == "r1-qwen-7b"


def test_a_spot_type_that_would_change_the_replica_is_refused_with_the_key_path(tmp_path):
    from tests.conftest import ROOT
    from tests.test_inventory_errors import _write_stack

    def change(inventory: dict) -> None:
        inventory["models"][0]["spot"] = {"instance_types": ["g6.xlarge"]}  # L4, not L40S
    path = _write_stack(tmp_path, "dev", change)
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "dev", "--stack-file", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "models[0].spot.instance_types" in result.stderr and "g6.xlarge" in result.stderr
    assert "g6e.2xlarge" in result.stderr  # what is allowed instead
