"""Check an AWS account and region can run a stack's GPU fleet before `pulumi up`.

    .venv/bin/python -m tools.preflight --stack dev [--stack-file PATH] [--endpoint-url URL]

A `pulumi up` that asks for a GPU type the chosen zones do not offer, or more vCPUs than
the account's G/P quota, creates the VPC, the load balancer and the auto scaling group
and then never gets an instance: the group retries silently. These checks catch that
first, with boto3 and read-only calls:

- zones: the availability zones the network will use exist and are available;
- offering: ``ec2:DescribeInstanceTypeOfferings`` (location type availability-zone)
  offers each instance type in those zones;
- gpu: ``ec2:DescribeInstanceTypes`` reports the GPU model, count and memory the sizing
  catalog assumes (a mismatch means every derived runtime flag is wrong);
- quota: ``service-quotas:GetServiceQuota`` for the vCPU quotas GPU instances draw on
  (L-DB2E81BA "Running On-Demand G and VT instances", L-417A185B "Running On-Demand P
  instances") covers every instance at max replicas; instances already running in the
  same quota class are reported, since they draw on it too.
- account: a stack that does not manage its account and region's settings
  (``account_settings.manage: false``) relies on the managing stack's:
  ``apigateway:GetAccount`` must show API Gateway's CloudWatch role (without it the stage's
  access logging fails), ``ssm:GetDocument`` the Session Manager preferences its hosts log under.

Blockers make the command exit 1; warnings are printed and do not. Credentials come
from the usual AWS chain (environment, profile, SSO); ``--endpoint-url`` points every
client at an emulator instead.

The core, ``run_preflight``, takes plain data; ``load_needs_from_stack_file`` is the
only part that knows the stack file layout.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

if __package__ in (None, ""):
    # Run as a script (`python tools/preflight.py`): make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import botocore.exceptions
import yaml

from components.serving.rollout import asg_max_size
from components.serving.catalog import INSTANCES, QUOTA_G_AND_VT, QUOTA_NAMES, QUOTA_P

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCKER, WARNING, OK = "blocker", "warning", "ok"
_SEVERITY_ORDER = {BLOCKER: 0, WARNING: 1, OK: 2}


@dataclass(frozen=True)
class InstanceNeed:
    """Instances of one type a stack may run at most, and what for.

    ``model_name`` says who needs them in the report: a model on EC2, or an EKS node
    pool and the models scheduled on it.
    """

    instance_type: str
    max_replicas: int
    model_name: str


@dataclass(frozen=True)
class Finding:
    severity: str  # blocker, warning or ok
    check: str  # zones, catalog, offering, gpu, quota, account
    subject: str
    detail: str


@dataclass(frozen=True)
class PreflightReport:
    region: str
    zones: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == BLOCKER]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def exit_code(self) -> int:
        return 1 if self.blockers else 0

    def render(self) -> str:
        rows = sorted(self.findings, key=lambda f: (_SEVERITY_ORDER[f.severity], f.check, f.subject))
        widths = [max([len(h)] + [len(getattr(f, a)) for f in rows])
                  for h, a in (("SEVERITY", "severity"), ("CHECK", "check"), ("SUBJECT", "subject"))]
        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]
        out = [f"preflight for region {self.region}, zones {', '.join(self.zones) or '(none)'}",
               line(("SEVERITY", "CHECK", "SUBJECT", "DETAIL"))]
        out += [line((f.severity.upper() if f.severity != OK else "ok", f.check, f.subject,
                      f.detail)) for f in rows]
        out.append(f"{len(self.blockers)} blocker(s), {len(self.warnings)} warning(s)")
        return "\n".join(out)


def run_preflight(region: str, azs: Sequence[str] | None, needs: Iterable[InstanceNeed], *,
                  az_count: int | None = None, session: boto3.session.Session | None = None,
                  endpoint_url: str | None = None, manages_account_settings: bool = True) -> PreflightReport:
    """Check ``needs`` against ``region``. ``azs`` names the zones the network uses; when
    it is ``None`` the first ``az_count`` available zones by name are assumed, which is
    what the network component takes from ``aws.get_availability_zones``."""
    session = session or boto3.session.Session()
    ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
    quotas = session.client("service-quotas", region_name=region, endpoint_url=endpoint_url)
    needs = [n for n in needs if n.max_replicas > 0]
    findings: list[Finding] = []

    zones = _resolve_zones(ec2, region, azs, az_count, findings)
    types = sorted({n.instance_type for n in needs})
    described = {t: _describe_type(ec2, region, t, findings) for t in types}
    for instance_type in types:
        _check_catalog_and_gpu(instance_type, described[instance_type], findings)
    if zones:
        _check_offerings(ec2, region, zones, [t for t in types if described[t]], findings)
    _check_quotas(ec2, quotas, region, needs, described, findings)
    if not manages_account_settings:
        _check_account_settings(session.client("apigateway", region_name=region, endpoint_url=endpoint_url),
                                session.client("ssm", region_name=region, endpoint_url=endpoint_url),
                                region, findings)
    return PreflightReport(region, tuple(zones), tuple(findings))


def _check_account_settings(apigateway: Any, ssm: Any, region: str, findings: list[Finding]) -> None:
    """What a stack with account_settings.manage: false takes from the stack that manages them."""
    from components.session_manager import PREFERENCES_DOCUMENT, SESSION_LOG_GROUP

    deploy_first = ("deploy the stack that manages this account and region's settings first "
                    "(account_settings.manage: true), or set manage: true in this stack if none does")
    role = apigateway.get_account().get("cloudwatchRoleArn")
    if role:
        findings.append(Finding(OK, "account", "API Gateway CloudWatch role", f"set: {role}"))
    else:
        findings.append(Finding(BLOCKER, "account", "API Gateway CloudWatch role",
                                f"not set in {region}, so the stage's access logging would fail; {deploy_first}"))
    try:
        content = ssm.get_document(Name=PREFERENCES_DOCUMENT, DocumentFormat="JSON")["Content"]
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidDocument":
            raise
        findings.append(Finding(WARNING, "account", PREFERENCES_DOCUMENT,
                                f"no Session Manager preferences in {region}: sessions on this stack's hosts "
                                f"would be neither logged nor KMS-encrypted; {deploy_first}"))
        return
    try:
        group = json.loads(content).get("inputs", {}).get("cloudWatchLogGroupName")
    except (ValueError, AttributeError):
        group = None
    if group == SESSION_LOG_GROUP:
        findings.append(Finding(OK, "account", PREFERENCES_DOCUMENT, f"sessions logged to {group}"))
    else:
        findings.append(Finding(WARNING, "account", PREFERENCES_DOCUMENT,
                                f"sessions are logged to {group or 'no log group'}, not {SESSION_LOG_GROUP}: "
                                "this stack's hosts may write only to the latter (someone else manages "
                                "Session Manager here; agree on the group and key, docs/OPERATIONS.md)"))


def _resolve_zones(ec2: Any, region: str, azs: Sequence[str] | None, az_count: int | None,
                   findings: list[Finding]) -> list[str]:
    response = ec2.describe_availability_zones(
        Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}])
    available = sorted(z["ZoneName"] for z in response["AvailabilityZones"]
                       if z.get("State") == "available")
    if azs is None:
        count = az_count or len(available)
        if count > len(available):
            findings.append(Finding(BLOCKER, "zones", region,
                                    f"network.az_count {count} but {region} has "
                                    f"{len(available)} available zones: {', '.join(available)}"))
        zones = available[:count]
        findings.append(Finding(OK, "zones", region, f"using {', '.join(zones)} "
                                f"(first {len(zones)} available zones)"))
        return zones
    missing = [z for z in azs if z not in available]
    if missing:
        findings.append(Finding(BLOCKER, "zones", region,
                                f"zones {', '.join(missing)} are not available in {region}; "
                                f"available: {', '.join(available)}"))
    return [z for z in azs if z in available]


def _describe_type(ec2: Any, region: str, instance_type: str,
                   findings: list[Finding]) -> dict[str, Any] | None:
    try:
        found = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] != "InvalidInstanceType":
            raise
        found = []
    if not found:
        findings.append(Finding(BLOCKER, "offering", instance_type,
                                f"{region} does not offer {instance_type} at all"))
        return None
    return found[0]


def _check_catalog_and_gpu(instance_type: str, described: dict[str, Any] | None,
                           findings: list[Finding]) -> None:
    spec = INSTANCES.get(instance_type)
    if spec is None:
        findings.append(Finding(BLOCKER, "catalog", instance_type,
                                "not in components/serving/catalog.py, so no runtime can be sized for "
                                f"it; catalog types: {', '.join(sorted(INSTANCES))}"))
        return
    if described is None:
        return
    gpus = described.get("GpuInfo", {}).get("Gpus", [])
    actual = [(g.get("Name"), g.get("Count"), g.get("MemoryInfo", {}).get("SizeInMiB")) for g in gpus]
    expected = (spec.aws_gpu_name, spec.gpu_count, spec.gpu.aws_memory_mib)
    if actual != [expected]:
        shown = ", ".join(f"{c} x {n} {m} MiB" for n, c, m in actual) or "no GPUs"
        findings.append(Finding(BLOCKER, "gpu", instance_type,
                                f"AWS reports {shown}; the catalog assumes {expected[1]} x "
                                f"{expected[0]} {expected[2]} MiB. Fix components/serving/catalog.py "
                                "before sizing runs on it"))
    else:
        findings.append(Finding(OK, "gpu", instance_type,
                                f"{spec.gpu_count} x {spec.aws_gpu_name} {spec.gpu.aws_memory_mib} "
                                "MiB as the catalog assumes"))


def _check_offerings(ec2: Any, region: str, zones: list[str], types: list[str],
                     findings: list[Finding]) -> None:
    if not types:
        return
    offered: dict[str, set[str]] = defaultdict(set)
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    for page in paginator.paginate(LocationType="availability-zone", Filters=[
            {"Name": "instance-type", "Values": types}, {"Name": "location", "Values": zones}]):
        for offering in page["InstanceTypeOfferings"]:
            offered[offering["InstanceType"]].add(offering["Location"])
    for instance_type in types:
        have = sorted(offered[instance_type])
        lacking = [z for z in zones if z not in offered[instance_type]]
        if not have:
            findings.append(Finding(BLOCKER, "offering", instance_type,
                                    f"not offered in any chosen zone ({', '.join(zones)}); pick "
                                    "zones that offer it (network.availability_zones) or another region/type"))
        elif lacking:
            findings.append(Finding(WARNING, "offering", instance_type,
                                    f"offered in {', '.join(have)} but not {', '.join(lacking)}: "
                                    "replicas only launch in the zones that offer it, with less "
                                    "zone redundancy"))
        else:
            findings.append(Finding(OK, "offering", instance_type,
                                    f"offered in {', '.join(have)}"))


def _quota_code_for(instance_type: str) -> str | None:
    family = instance_type.split(".", 1)[0]
    if family.startswith("p"):
        return QUOTA_P
    if family.startswith(("g", "vt")):
        return QUOTA_G_AND_VT
    return None


def _vcpus(instance_type: str, described: dict[str, dict[str, Any] | None]) -> int | None:
    info = described.get(instance_type)
    if info:
        return info["VCpuInfo"]["DefaultVCpus"]
    spec = INSTANCES.get(instance_type)
    return spec.vcpus if spec else None


def _check_quotas(ec2: Any, quotas: Any, region: str, needs: list[InstanceNeed],
                  described: dict[str, dict[str, Any] | None], findings: list[Finding]) -> None:
    needed: dict[str, int] = defaultdict(int)
    users: dict[str, list[str]] = defaultdict(list)
    for need in needs:
        code = _quota_code_for(need.instance_type)
        vcpus = _vcpus(need.instance_type, described)
        if code is None or vcpus is None:
            continue
        needed[code] += need.max_replicas * vcpus
        users[code].append(f"{need.max_replicas} x {need.instance_type} ({need.model_name})")
    if not needed:
        return
    running = _running_vcpus_by_quota(ec2, described)
    for code, vcpus_needed in sorted(needed.items()):
        subject = f"{code} {QUOTA_NAMES[code]}"
        try:
            value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        except botocore.exceptions.ClientError as error:
            findings.append(Finding(WARNING, "quota", subject,
                                    f"could not read the quota ({error.response['Error']['Code']}); "
                                    f"{vcpus_needed} vCPUs are needed for {'; '.join(users[code])}. "
                                    f"Check it in the Service Quotas console for {region}"))
            continue
        limit = int(value)
        if vcpus_needed > limit:
            findings.append(Finding(
                BLOCKER, "quota", subject,
                f"{vcpus_needed} vCPUs needed at max replicas ({'; '.join(users[code])}) but the "
                f"quota in {region} is {limit}; request it with `aws service-quotas "
                f"request-service-quota-increase --region {region} --service-code ec2 "
                f"--quota-code {code} --desired-value {vcpus_needed}`"))
            continue
        in_use = running.get(code, 0)
        if vcpus_needed > limit - in_use:
            findings.append(Finding(
                WARNING, "quota", subject,
                f"quota {limit} covers the {vcpus_needed} vCPUs needed, but {in_use} vCPUs of "
                f"this class already run in {region}; unless those are this stack's own "
                f"instances, scaling to max replicas will stop at {limit - in_use} vCPUs"))
        else:
            findings.append(Finding(OK, "quota", subject,
                                    f"{vcpus_needed} of {limit} vCPUs needed ({in_use} in use)"))


def _running_vcpus_by_quota(ec2: Any, described: dict[str, dict[str, Any] | None]) -> dict[str, int]:
    """vCPUs of pending and running instances per GPU quota class (they count against it)."""
    totals: dict[str, int] = defaultdict(int)
    paginator = ec2.get_paginator("describe_instances")
    for page in paginator.paginate(Filters=[{"Name": "instance-state-name",
                                             "Values": ["pending", "running"]}]):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                code = _quota_code_for(instance["InstanceType"])
                if code is None:
                    continue
                cpu = instance.get("CpuOptions")
                if cpu:
                    vcpus = cpu["CoreCount"] * cpu["ThreadsPerCore"]
                else:
                    if instance["InstanceType"] not in described:
                        described[instance["InstanceType"]] = (ec2.describe_instance_types(
                            InstanceTypes=[instance["InstanceType"]])["InstanceTypes"] or [None])[0]
                    vcpus = _vcpus(instance["InstanceType"], described) or 0
                totals[code] += vcpus
    return totals


# ------------------------------------------------------------------ stack file adapter
# The only code that knows the stack file layout; StackNeeds is all run_preflight needs.

INVENTORY_KEY = "deepseek-serving:inventory"


@dataclass(frozen=True)
class StackNeeds:
    region: str
    azs: list[str] | None
    az_count: int | None
    needs: list[InstanceNeed]
    manages_account_settings: bool = True


def load_needs_from_stack_file(path: str | Path, stack: str | None = None) -> StackNeeds:
    """Region, zones and GPU instance needs of a stack, from its validated inventory.

    EC2 models need ``max_replicas`` instances of their ``instance_type``; EKS models run
    on a node pool, which needs its ``max_size`` nodes whatever number of models share it.
    Raises ValueError with the inventory's own message when the stack file is invalid.
    """
    from components.config import PROJECT, InventoryError, parse_inventory
    from tools.stack_files import StackFileError, load

    path = Path(path)
    stack = stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        stack_file = load(stack, path)
        inventory = parse_inventory(stack_file.config.get(f"{PROJECT}:inventory"), stack=stack,
                                    secret_keys=set(stack_file.secret_keys),
                                    stack_file=stack_file.display_path)
    except (StackFileError, InventoryError) as error:
        raise ValueError(str(error)) from None
    needs: list[InstanceNeed] = []
    pool_models: dict[str, list[str]] = defaultdict(list)
    for model in inventory.models:
        if model.node_pool:
            pool_models[model.node_pool].append(model.name)
        else:
            # The fleet's group may run one instance more during a rollout at full scale.
            needs.append(InstanceNeed(model.instance_type, asg_max_size(model.max_replicas), model.name))
    pools = {p.name: p for p in (inventory.eks.gpu_pools if inventory.eks else [])}
    for pool_name, models in pool_models.items():
        pool = pools[pool_name]
        needs.append(InstanceNeed(pool.instance_type, pool.max_size,
                                  f"node pool {pool_name}: {', '.join(models)}"))
    return StackNeeds(inventory.region, list(inventory.network.availability_zones) or None,
                      inventory.network.az_count, needs, inventory.account_settings.manage)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="stack name, e.g. dev")
    parser.add_argument("--stack-file", help="inventory file (default stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--endpoint-url", help="send every AWS call here (an emulator)")
    args = parser.parse_args(argv)
    path = Path(args.stack_file) if args.stack_file else REPO_ROOT / "stacks" / f"Pulumi.{args.stack}.yaml"
    try:
        stack = load_needs_from_stack_file(path, args.stack)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        print(f"preflight: cannot read stack {args.stack!r}: {error}", file=sys.stderr)
        return 2
    try:
        session = boto3.session.Session()
        try:
            # Creating a client makes no request; it checks the endpoint URL and the profile.
            session.client("ec2", region_name=stack.region, endpoint_url=args.endpoint_url)
        except ValueError as error:
            # botocore raises a bare ValueError for a malformed endpoint URL.
            if args.endpoint_url:
                print(f"preflight: --endpoint-url {args.endpoint_url!r} is not a valid URL ({error}); "
                      "give e.g. http://127.0.0.1:5000, or leave it out to use AWS", file=sys.stderr)
            else:
                print(f"preflight: cannot set up AWS clients for stack {args.stack!r}: {error}",
                      file=sys.stderr)
            return 2
        report = run_preflight(stack.region, stack.azs, stack.needs, az_count=stack.az_count,
                               session=session, endpoint_url=args.endpoint_url,
                               manages_account_settings=stack.manages_account_settings)
    except botocore.exceptions.ProfileNotFound as error:
        print(f"preflight: {error}; set AWS_PROFILE to a profile in your AWS config "
              "(aws configure list-profiles) or unset it", file=sys.stderr)
        return 2
    except botocore.exceptions.NoCredentialsError:
        print(f"preflight: no AWS credentials to check stack {args.stack!r}; log in (aws sso login, "
              "or set AWS_PROFILE) with a role that may describe EC2 and read service quotas",
              file=sys.stderr)
        return 2
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        print(f"preflight: AWS call failed for stack {args.stack!r}: {error}", file=sys.stderr)
        return 2
    print(f"stack {args.stack} ({path})")
    print(report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
