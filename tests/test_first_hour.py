"""The first hour of a new user: each defect seen while trying the project, fixed and held.

Every case runs the real offline preview (the program under the mock engine) on a stack
file changed the way a user's edit would, and reads what the user would read.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

KEY = "deepseek-serving:inventory"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f6c2a4e-1d3b-4c5e-9f7a-2b8d6e4c1a3f"


def preview(tmp_path: Path, stack: str, change, *extra: str) -> subprocess.CompletedProcess:
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    change(document["config"])
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document))
    return subprocess.run([sys.executable, "-m", "tools.preview", "--stack", stack, "--stack-file", str(path),
                           "--quiet", "--no-policies", *extra], cwd=ROOT, capture_output=True, text=True)


def inventory(change):
    return lambda config: change(config[KEY])


def refused(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Nothing was registered" in result.stderr
    return result.stderr


def test_secret_reference_messages_show_the_syntax_to_write(tmp_path):
    def plaintext(inv):
        inv["gateway"]["clients"][0]["api_key"] = "sk-live-123"
    message = refused(preview(tmp_path, "dev", inventory(plaintext)))
    assert "{config: <key>}" in message and "{{" not in message
    assert "sk-live-123" not in message


def test_a_number_where_text_is_expected_says_to_quote_it(tmp_path):
    message = refused(preview(tmp_path, "prod", inventory(lambda inv: inv["eks"].__setitem__("kubernetes_version", 1.33))))
    assert f"{KEY}.eks.kubernetes_version" in message
    assert "read as a number" in message and '"1.33"' in message


def test_the_stack_file_is_named_once(tmp_path):
    def too_fast(inv):
        inv["gateway"]["tiers"][0]["rate_per_second"] = 500
    message = refused(preview(tmp_path, "dev", inventory(too_fast)))
    path = str(tmp_path / "Pulumi.dev.yaml")
    assert message.count(path) == 1 and "stacks/Pulumi.dev.yaml" not in message


@pytest.mark.parametrize("arn,fragment", [
    ("arn:aws:acm:us-east-1:123456789012:certificate/", "certificate/<uuid>"),
    ("arn:aws:acm:us-east-1:12345:certificate/0f6c2a4e-1d3b-4c5e-9f7a-2b8d6e4c1a3f", "<12-digit account>"),
    ("arn:aws:acm:eu-west-1:123456789012:certificate/0f6c2a4e-1d3b-4c5e-9f7a-2b8d6e4c1a3f", "is in eu-west-1"),
])
def test_certificate_arns_are_checked_by_format_and_region(tmp_path, arn, fragment):
    def change(inv):
        inv["load_balancer"]["certificate"]["certificate_arn"] = arn
    message = refused(preview(tmp_path, "dev", inventory(change)))
    assert f"{KEY}.load_balancer.certificate.certificate_arn" in message and fragment in message


def test_the_inventory_region_must_match_the_stacks_aws_region(tmp_path):
    message = refused(preview(tmp_path, "dev", lambda config: config.__setitem__("aws:region", "eu-west-1")))
    assert f"{KEY}.region" in message and "'eu-west-1'" in message and "'us-east-1'" in message


@pytest.mark.parametrize("path,value,hint", [
    (("observability", "alarms", "emails"), ["oncall"], "oncall@example.com"),
    (("gateway", "domain"), {"name": "LLM", "certificate_arn": CERT}, "llm.api.example.com"),
    (("gateway", "domain"), {"name": "llm.example.com", "certificate_arn": CERT, "hosted_zone_id": "abc"},
     "Z0123456789ABCDEFGHIJ"),
])
def test_format_errors_say_the_format_instead_of_pointing_at_the_readme(tmp_path, path, value, hint):
    def change(inv):
        target = inv
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    message = refused(preview(tmp_path, "dev", inventory(change)))
    assert hint in message and "README" not in message


def test_an_unknown_instance_type_is_named_with_its_key_path(tmp_path):
    message = refused(preview(tmp_path, "dev", inventory(lambda inv: inv["models"][0].__setitem__("instance_type", "g9.huge"))))
    assert f"{KEY}.models[0].instance_type: 'g9.huge'" in message and "g6e.xlarge" in message


def test_a_repository_missing_from_the_catalog_lists_what_the_catalog_has(tmp_path):
    message = refused(preview(tmp_path, "dev", inventory(lambda inv: inv["models"][0].__setitem__("hf_repo", "deepseek-ai/Nope"))))
    assert f"{KEY}.models[0].hf_repo" in message and "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B" in message


def test_a_gpu_the_region_does_not_offer_is_refused_offline(tmp_path):
    # In the offerings snapshot, p5e.48xlarge is not sold in us-west-1.
    def change(config):
        config["aws:region"] = "us-west-1"
        inv = config[KEY]
        inv["region"] = "us-west-1"
        inv["models"][0]["instance_type"] = "p5e.48xlarge"
        inv["load_balancer"]["certificate"]["certificate_arn"] = CERT.replace("us-east-1", "us-west-1")
        inv["image_cache"]["credentials"] = {upstream: arn.replace("us-east-1", "us-west-1")
                                             for upstream, arn in inv["image_cache"]["credentials"].items()}
    message = refused(preview(tmp_path, "dev", change))
    assert f"{KEY}.models[0].instance_type" in message and "not offered in us-west-1" in message


def test_zones_can_be_chosen_and_are_checked_against_the_snapshot(tmp_path):
    def chosen(zones):
        def change(inv):
            inv["network"]["availability_zones"] = zones
            inv["network"].pop("az_count", None)
        return inventory(change)
    ok = preview(tmp_path, "dev", chosen(["us-east-1a", "us-east-1b"]))
    assert ok.returncode == 0, ok.stderr
    # g6e is not offered in us-east-1f in the snapshot.
    message = refused(preview(tmp_path, "dev", chosen(["us-east-1a", "us-east-1f"])))
    assert "us-east-1f" in message and "make preflight" in message
    message = refused(preview(tmp_path, "dev", chosen(["eu-west-1a", "eu-west-1b"])))
    assert f"{KEY}.network.availability_zones[0]" in message


def test_make_alone_lists_every_target():
    listing = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True).stdout
    targets = subprocess.run(["make", "-qp"], cwd=ROOT, capture_output=True, text=True).stdout
    makefile = (ROOT / "Makefile").read_text()
    import re
    declared = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for target in declared:
        assert f"make {target} " in listing, f"make help does not list {target}"
    assert targets  # make parsed the Makefile


def test_running_the_program_by_hand_says_how_to_run_it():
    result = subprocess.run([sys.executable, "__main__.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Pulumi.stack.yaml" not in result.stderr
    assert "make preview STACK=" in result.stderr and "make up STACK=" in result.stderr


def test_the_readme_quotes_the_first_run_download_as_the_tool_measured_it():
    import datetime
    import re

    from tools import first_run
    readme = (ROOT / "README.md").read_text()
    for markers, requirements in first_run.MEASURED:
        assert (ROOT / requirements).is_file()
        quoted = markers.search(readme).group(2)
        assert re.fullmatch(r"about \d+ MB of wheels, measured \d{4}-\d\d-\d\d", quoted)
    assert first_run.phrase(151_234_567, datetime.date(2026, 12, 1)) == "about 150 MB of wheels, measured 2026-12-01"
    assert "no network access" not in readme.lower().replace("any network\naccess", "")


def test_sizing_messages_name_the_stack_not_its_environment(tmp_path):
    def too_fast(inv):
        inv["gateway"]["tiers"][0]["rate_per_second"] = 500
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack", "team-a", "--stack-file",
                             str(_write(tmp_path, "dev", too_fast)), "--quiet", "--no-policies"],
                            cwd=ROOT, capture_output=True, text=True)
    message = refused(result)
    assert "'team-a'" in message and "stack 'dev'" not in message


def _write(tmp_path: Path, stack: str, change) -> Path:
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    change(document["config"][KEY])
    path = tmp_path / "Pulumi.team-a.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_base_revision_whose_own_preview_fails_is_reported_in_one_line(monkeypatch):
    from tools import diff
    monkeypatch.setenv("MAKELEVEL", "1")  # as `make diff` runs it
    job = diff._PlanJob("base `abc` (abc)", "dev", ROOT, ROOT / "none.json")

    class Finished:
        returncode = 1
    job.process = Finished()
    stderr = ('Traceback (most recent call last):\n  File "/x/tools/preview.py", line 3, in <module>\n'
              "    import thing\nModuleNotFoundError: No module named 'thing'\n")
    message = diff.preview_failure(job, stderr)
    assert "Traceback" not in message and "File " not in message
    assert "No module named 'thing'" in message and "NO_POLICIES=1" in message and "BASE=<rev>" in message


def test_what_an_ec2_host_cannot_be_provisioned_with_is_refused_before_anything_registers(tmp_path):
    def hub_with_config_token(config):
        model = config[KEY]["models"][0]
        model["weights"] = {**model["weights"], "source": "hub", "internet_egress": True}
        model["weights"].pop("s3_uri")
        model["hf_token"] = {"config": "hfToken"}
        config["deepseek-serving:hfToken"] = {"secure": "v1:AAAAAAAAAAAAAAAA"}
    message = refused(preview(tmp_path, "dev", hub_with_config_token))
    assert message.count("Pulumi.dev.yaml") == 1
    assert "inventory.models[0] (r1-qwen-7b)" in message and "secrets_manager_arn" in message


def test_host_user_data_is_rendered_at_admission_with_any_twelve_digit_account():
    from components.config import parse_inventory
    from components.ec2 import fleet
    from tools import stack_files

    stack_file = stack_files.load("dev")
    inventory = parse_inventory(stack_file.config[KEY], stack="dev", secret_keys=stack_file.secret_keys)
    fleet.check_hosts(inventory, "dev")  # the committed stack provisions
    launch = fleet.runtimes.render_for_inventory(inventory, inventory.models[0], bind_host="0.0.0.0")
    sizes = {len(fleet.host_provisioning.render_user_data(fleet.host_plan(
        inventory, inventory.models[0], launch,
        fleet.fleet_image(inventory, inventory.models[0], launch, account=account, stack="dev").reference,
        stack="dev")))
        for account in (fleet.ADMISSION_ACCOUNT, "123456789012", "999999999999")}
    assert len(sizes) == 1
