"""Preflight against a real AWS API emulator (moto in server mode on 127.0.0.1).

moto 5.2.5 answers DescribeAvailabilityZones, DescribeInstanceTypes (with GpuInfo) and
DescribeInstanceTypeOfferings from AWS's own published data, so those checks run against
realistic answers. Its Service Quotas backend only knows the "vpc" service and answers
NoSuchResourceException for EC2 quota codes; the tests that need EC2 quota values teach
the in-process server those two quotas (in the shape AWS returns) and still go through
boto3 and HTTP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
import yaml
from moto.servicequotas.models import ServiceQuotasBackend

from components.aws_regions import REGION_AZ_COUNT
from components.serving.catalog import INSTANCES
from tests.moto_server import moto_server, reset
from tools import preflight
from tools.preflight import InstanceNeed, load_needs_from_stack_file, run_preflight

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(endpoint, monkeypatch):
    """A clean emulator and dummy credentials for one test."""
    reset(endpoint)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return endpoint


@pytest.fixture
def ec2_quotas(monkeypatch):
    """Give the emulator EC2 vCPU quotas: {quota_code: value}."""
    values: dict[str, float] = {}
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self, service_code, quota_code):
        if service_code == "ec2" and quota_code in values:
            return {"ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                    "QuotaArn": f"arn:aws:servicequotas:{self.region_name}:123456789012:ec2/{quota_code}",
                    "QuotaCode": quota_code, "QuotaName": preflight.QUOTA_NAMES[quota_code],
                    "Value": values[quota_code], "Unit": "None", "Adjustable": True,
                    "GlobalQuota": False}
        return original(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    return values


def check(aws, needs, azs=None, az_count=None):
    return run_preflight(REGION, azs, needs, az_count=az_count, endpoint_url=aws)


def findings(report, check_name, severity=None):
    return [f for f in report.findings if f.check == check_name
            and (severity is None or f.severity == severity)]


def test_every_catalog_instance_type_matches_what_aws_reports(aws):
    needs = [InstanceNeed(name, 1, "catalog") for name in INSTANCES]
    report = check(aws, needs, az_count=6)
    gpu_ok = {f.subject for f in findings(report, "gpu", "ok")}
    assert gpu_ok == set(INSTANCES), report.render()
    assert not findings(report, "gpu", "blocker")


def test_catalog_vcpus_and_host_memory_match_aws(aws):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=aws)
    described = {t["InstanceType"]: t for t in
                 ec2.describe_instance_types(InstanceTypes=list(INSTANCES))["InstanceTypes"]}
    for name, spec in INSTANCES.items():
        assert described[name]["VCpuInfo"]["DefaultVCpus"] == spec.vcpus, name
        assert described[name]["MemoryInfo"]["SizeInMiB"] == spec.memory_gib * 1024, name


def test_a_gpu_that_differs_from_the_catalog_blocks(aws, monkeypatch):
    spec = INSTANCES["g5.xlarge"]
    monkeypatch.setitem(preflight.INSTANCES, "g5.xlarge",
                        replace(spec, gpu=replace(spec.gpu, aws_memory_mib=24576)))
    report = check(aws, [InstanceNeed("g5.xlarge", 1, "r1-7b")], az_count=2)
    [blocker] = findings(report, "gpu", "blocker")
    assert "AWS reports 1 x A10G 22888 MiB; the catalog assumes 1 x A10G 24576 MiB" in blocker.detail
    assert report.exit_code == 1


def test_a_type_no_chosen_zone_offers_blocks_and_a_partial_offer_warns(aws):
    need = [InstanceNeed("p4de.24xlarge", 1, "r1-70b")]  # us-east-1b and 1c only
    report = check(aws, need, azs=["us-east-1a"])
    [blocker] = findings(report, "offering", "blocker")
    assert blocker.subject == "p4de.24xlarge" and "not offered in any chosen zone (us-east-1a)" in blocker.detail
    report = check(aws, need, azs=["us-east-1a", "us-east-1b"])
    [warning] = findings(report, "offering", "warning")
    assert "offered in us-east-1b but not us-east-1a" in warning.detail
    assert report.exit_code == 0


def test_zones_default_to_the_first_available_ones(aws):
    report = check(aws, [InstanceNeed("g5.xlarge", 1, "r1-7b")], az_count=2)
    assert report.zones == ("us-east-1a", "us-east-1b")
    report = check(aws, [InstanceNeed("g5.xlarge", 1, "r1-7b")], az_count=9)
    [blocker] = findings(report, "zones", "blocker")
    assert "network.az_count 9 but us-east-1 has 6 available zones" in blocker.detail


def test_unknown_zones_block(aws):
    report = check(aws, [InstanceNeed("g5.xlarge", 1, "r1-7b")], azs=["us-east-1z"])
    [blocker] = findings(report, "zones", "blocker")
    assert "us-east-1z are not available in us-east-1" in blocker.detail


def test_types_outside_the_catalog_or_aws_block(aws):
    report = check(aws, [InstanceNeed("g4dn.xlarge", 1, "r1-7b"), InstanceNeed("g9.huge", 1, "x")],
                   az_count=2)
    catalog = {f.subject: f.detail for f in findings(report, "catalog", "blocker")}
    assert set(catalog) == {"g4dn.xlarge", "g9.huge"}
    assert "no runtime can be sized" in catalog["g4dn.xlarge"] and "g5.xlarge" in catalog["g4dn.xlarge"]
    assert any(f.subject == "g9.huge" and "does not offer g9.huge at all" in f.detail
               for f in findings(report, "offering", "blocker"))


def test_unreadable_quotas_warn_with_what_is_needed(aws):
    # moto's real answer for EC2 quota codes: NoSuchResourceException.
    report = check(aws, [InstanceNeed("g5.xlarge", 4, "r1-7b")], az_count=2)
    [warning] = findings(report, "quota", "warning")
    assert warning.subject.startswith("L-DB2E81BA")
    assert "NoSuchResourceException" in warning.detail and "16 vCPUs are needed" in warning.detail


def test_a_quota_below_max_replicas_blocks_with_the_request_command(aws, ec2_quotas):
    ec2_quotas.update({"L-DB2E81BA": 8, "L-417A185B": 192})
    report = check(aws, [InstanceNeed("g5.xlarge", 4, "r1-7b"),
                         InstanceNeed("p5.48xlarge", 1, "r1")], az_count=2)
    [blocker] = findings(report, "quota", "blocker")
    assert blocker.subject == "L-DB2E81BA Running On-Demand G and VT instances"
    assert "16 vCPUs needed at max replicas (4 x g5.xlarge (r1-7b))" in blocker.detail
    assert "--quota-code L-DB2E81BA --desired-value 16" in blocker.detail
    [ok] = findings(report, "quota", "ok")
    assert ok.subject.startswith("L-417A185B") and "192 of 192 vCPUs" in ok.detail


def test_running_instances_in_the_same_quota_class_are_reported(aws, ec2_quotas):
    ec2_quotas["L-DB2E81BA"] = 24
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=aws)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, InstanceType="g5.2xlarge", MinCount=2, MaxCount=2)
    report = check(aws, [InstanceNeed("g5.xlarge", 4, "r1-7b")], az_count=2)
    [warning] = findings(report, "quota", "warning")
    assert "16 vCPUs of this class already run" in warning.detail
    assert "will stop at 8 vCPUs" in warning.detail


def prod_stack_with_shared_pool() -> dict:
    """The committed prod stack, with a second model sharing the 4-GPU pool."""
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    models = document["config"]["deepseek-serving:inventory"]["models"]
    extra = json.loads(json.dumps(models[0]))
    extra["name"] = "r1-qwen-32b-canary"
    models.append(extra)
    return document


def write_stack(tmp_path, stack) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(json.dumps(stack))  # JSON is YAML
    return path


def test_stack_file_needs_count_node_pools_once(tmp_path):
    stack = load_needs_from_stack_file(write_stack(tmp_path, prod_stack_with_shared_pool()))
    assert stack.region == "us-east-1" and stack.az_count == 3 and stack.azs is None
    assert sorted(stack.needs, key=lambda n: n.instance_type) == [
        InstanceNeed("g6e.12xlarge", 5, "node pool gpu-l40s-x4: r1-qwen-32b, r1-qwen-32b-canary"),
        InstanceNeed("g6e.xlarge", 7, "node pool gpu-l40s: r1-qwen-7b"),
    ]


def test_ec2_stack_needs_max_replicas_plus_the_rollout_surge_per_model():
    # An instance refresh at full scale launches one instance beyond max_replicas.
    stack = load_needs_from_stack_file(ROOT / "stacks" / "Pulumi.dev.yaml")
    assert stack.needs == [InstanceNeed("g6e.xlarge", 3, "r1-qwen-7b"),
                           InstanceNeed("g6.xlarge", 2, "r1-qwen-1-5b-gguf")]


def test_stack_file_with_an_undefined_node_pool_is_refused_with_the_inventory_message(tmp_path):
    broken = prod_stack_with_shared_pool()
    broken["config"]["deepseek-serving:inventory"]["models"][1]["node_pool"] = "h100"
    with pytest.raises(ValueError, match=r"models\[1\]\.node_pool: 'h100' is not allowed: must name one of"):
        load_needs_from_stack_file(write_stack(tmp_path, broken))


def test_cli_prints_the_table_and_fails_on_a_blocker(aws, ec2_quotas, tmp_path, capsys):
    path = write_stack(tmp_path, prod_stack_with_shared_pool())
    ec2_quotas["L-DB2E81BA"] = 1000
    assert preflight.main(["--stack", "prod", "--stack-file", str(path), "--endpoint-url", aws]) == 0
    out = capsys.readouterr().out
    assert "SEVERITY  CHECK" in out and "0 blocker(s)" in out
    ec2_quotas["L-DB2E81BA"] = 12
    assert preflight.main(["--stack", "prod", "--stack-file", str(path), "--endpoint-url", aws]) == 1
    out = capsys.readouterr().out
    # 5 x g6e.12xlarge (48 vCPUs) + 7 x g6e.xlarge (4 vCPUs), all in the G and VT class.
    assert "BLOCKER   quota" in out and "268 vCPUs needed" in out


def test_cli_reports_an_unreadable_stack_file(tmp_path, capsys):
    assert preflight.main(["--stack", "nope", "--stack-file", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read stack 'nope'" in capsys.readouterr().err


def test_module_runs_as_a_command(aws, tmp_path):
    path = write_stack(tmp_path, prod_stack_with_shared_pool())
    result = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--stack", "prod", "--stack-file", str(path),
         "--endpoint-url", aws],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "g6e.12xlarge" in result.stdout and "quota" in result.stdout


def test_the_offerings_snapshot_is_written_from_describe_instance_type_offerings(aws, tmp_path):
    import json

    from components.serving import availability
    from tools import offerings
    out = tmp_path / "offerings.json"
    assert offerings.main(["--endpoint-url", aws, "--source", "the emulator", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["source"] == "the emulator" and set(written["regions"]) == set(REGION_AZ_COUNT)
    # The committed snapshot has the same shape, so the preview reads either.
    committed = availability.snapshot()
    assert set(committed) == set(written) and committed["instance_types"] == written["instance_types"]
    for region, types in written["regions"].items():
        assert all(zone.startswith(region) for zones in types.values() for zone in zones)


def test_chosen_zones_reach_preflight_under_the_inventorys_own_key(tmp_path):
    import yaml

    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["deepseek-serving:inventory"]["network"]["availability_zones"] = ["us-east-1b", "us-east-1c"]
    document["config"]["deepseek-serving:inventory"]["network"].pop("az_count", None)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    needs = preflight.load_needs_from_stack_file(path, "dev")
    assert needs.azs == ["us-east-1b", "us-east-1c"] and needs.az_count == 2


# ---- account settings a non-managing stack relies on --------------------------------------

def _preferences(group: str) -> str:
    from components.session_manager import session_preferences

    document = session_preferences("3bd7daad-2155-74f9-c75e-f0e056c01e43")
    document["inputs"]["cloudWatchLogGroupName"] = group
    return json.dumps(document)


def _account_findings(aws, manages: bool):
    report = run_preflight(REGION, None, [], az_count=2, endpoint_url=aws, manages_account_settings=manages)
    return report, findings(report, "account")


def test_a_stack_that_does_not_manage_is_blocked_until_the_managing_stack_set_the_role(aws):
    report, found = _account_findings(aws, manages=False)
    role = next(f for f in found if f.subject == "API Gateway CloudWatch role")
    assert role.severity == "blocker" and "account_settings.manage: true" in role.detail
    preferences = next(f for f in found if f.subject == "SSM-SessionManagerRunShell")
    assert preferences.severity == "warning" and "neither logged nor KMS-encrypted" in preferences.detail
    assert report.exit_code == 1


def test_what_the_managing_stack_set_lets_the_others_through(aws):
    from components.session_manager import SESSION_LOG_GROUP

    apigateway = boto3.client("apigateway", region_name=REGION, endpoint_url=aws)
    role_arn = "arn:aws:iam::123456789012:role/gateway-cloudwatch-role-1a2b3c4"
    apigateway.update_account(patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}])
    boto3.client("ssm", region_name=REGION, endpoint_url=aws).create_document(
        Name="SSM-SessionManagerRunShell", Content=_preferences(SESSION_LOG_GROUP), DocumentType="Session",
        DocumentFormat="JSON")
    report, found = _account_findings(aws, manages=False)
    assert {(f.subject, f.severity) for f in found} == {
        ("API Gateway CloudWatch role", "ok"), ("SSM-SessionManagerRunShell", "ok")}
    assert report.exit_code == 0


def test_preferences_another_team_owns_are_a_warning_naming_both_groups(aws):
    boto3.client("ssm", region_name=REGION, endpoint_url=aws).create_document(
        Name="SSM-SessionManagerRunShell", Content=_preferences("/platform/sessions"), DocumentType="Session",
        DocumentFormat="JSON")
    _, found = _account_findings(aws, manages=False)
    preferences = next(f for f in found if f.subject == "SSM-SessionManagerRunShell")
    assert preferences.severity == "warning"
    assert "/platform/sessions" in preferences.detail and "/deepseek-serving/session-manager" in preferences.detail


def test_the_managing_stack_checks_nothing_it_creates_itself(aws):
    _, found = _account_findings(aws, manages=True)
    assert found == []


def test_the_stack_file_says_whether_the_stack_manages():
    assert load_needs_from_stack_file(ROOT / "stacks" / "Pulumi.dev.yaml").manages_account_settings is False
    assert load_needs_from_stack_file(ROOT / "stacks" / "Pulumi.prod.yaml").manages_account_settings is True
