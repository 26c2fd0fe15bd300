"""The GPU fleet per model on the ec2 stack: launch template, auto scaling group, IAM, API key."""
from __future__ import annotations

import functools
import json

import pulumi
import pytest
import yaml

from components.ec2 import fleet as gpu_fleet, host as host_provisioning
from components.serving import runtimes
from components.config import parse_inventory
from tests import program_harness
from tests.stack_runs import inventory_of, preview_run, run_with_inventory
from tools import fake_cloud, mock_engine, stack_files

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
POLICY = "aws:autoscaling/policy:Policy"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
MODELS = ("r1-qwen-7b", "r1-qwen-1-5b-gguf")


@pytest.fixture(scope="module")
def dev() -> mock_engine.ProgramRun:
    return preview_run("dev")


@functools.lru_cache(maxsize=None)
def applied() -> mock_engine.ProgramRun:
    """An `up`-like run: computed ARNs exist, so every policy document is rendered."""
    return run_with_inventory("dev", lambda raw: None, preview=False)


def dev_launch(model_name: str) -> runtimes.RuntimeLaunch:
    inv = parse_inventory(inventory_of("dev"), stack="dev",
                          secret_keys=set(stack_files.load("dev").secret_keys))
    model = next(m for m in inv.models if m.name == model_name)
    return runtimes.render_for_inventory(inv, model)


def policy_documents(run: mock_engine.ProgramRun, model: str) -> list[dict]:
    role = run.one(ROLE, f"{model}-role")
    return [json.loads(p.inputs["policy"]) for p in run.by_type(ROLE_POLICY)
            if role.urn in p.property_dependencies.get("role", [])]


def statements(run: mock_engine.ProgramRun, model: str) -> list[dict]:
    return [s for doc in policy_documents(run, model) for s in doc["Statement"]]


# --- launch template ---------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_instances_require_imdsv2_with_a_single_hop(dev, model):
    options = dev.one(LT, f"{model}-lt").inputs["metadataOptions"]
    assert options["httpTokens"] == "required"
    assert options["httpPutResponseHopLimit"] == 1
    assert options["httpEndpoint"] == "enabled"


@pytest.mark.parametrize("model", MODELS)
def test_instances_get_no_public_address_no_key_pair_and_detailed_monitoring(dev, model):
    inputs = dev.one(LT, f"{model}-lt").inputs
    (interface,) = inputs["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "false"
    assert "keyName" not in inputs
    assert inputs["monitoring"] == {"enabled": True}


@pytest.mark.parametrize("model", MODELS)
def test_root_and_model_cache_volumes_are_encrypted_gp3_with_the_data_key(dev, model):
    template = dev.one(LT, f"{model}-lt")
    volumes = {v["deviceName"]: v["ebs"] for v in template.inputs["blockDeviceMappings"]}
    assert set(volumes) == {"/dev/xvda", host_provisioning.CACHE_DEVICE}
    for ebs in volumes.values():
        assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"
        assert ebs["deleteOnTermination"] == "true"
    data_key = dev.one("aws:kms/key:Key", "keys-data").urn
    assert data_key in template.property_dependencies["blockDeviceMappings"]
    assert volumes["/dev/xvda"]["volumeSize"] == gpu_fleet.ROOT_VOLUME_GIB


def test_the_model_cache_is_sized_from_the_model():
    big, small = dev_launch("r1-qwen-7b"), dev_launch("r1-qwen-1-5b-gguf")
    assert gpu_fleet.cache_volume_gib(big) >= big.weights_gib * 1.25
    assert gpu_fleet.cache_volume_gib(small) >= small.weights_gib * 2  # Ollama copies the GGUF
    assert gpu_fleet.cache_volume_gib(big) > gpu_fleet.cache_volume_gib(small)


def test_the_volume_size_registered_is_the_computed_one(dev):
    for model in MODELS:
        volumes = {v["deviceName"]: v["ebs"] for v in dev.one(LT, f"{model}-lt").inputs["blockDeviceMappings"]}
        assert volumes[host_provisioning.CACHE_DEVICE]["volumeSize"] == gpu_fleet.cache_volume_gib(dev_launch(model))


def test_the_ami_comes_from_the_nvidia_driver_gpu_ami_parameter(dev):
    expected = fake_cloud.invoke("aws:ssm/getParameter:getParameter",
                                 {"name": gpu_fleet.GPU_AMI_PARAMETER}, "us-east-1")["insecureValue"]
    assert gpu_fleet.GPU_AMI_PARAMETER.startswith(fake_cloud.GPU_AMI_PARAMETER_PREFIX)
    assert "nvidia-driver-gpu" in gpu_fleet.GPU_AMI_PARAMETER
    for model in MODELS:
        assert dev.one(LT, f"{model}-lt").inputs["imageId"] == expected


@pytest.mark.parametrize("model", MODELS)
def test_user_data_is_the_rendered_cloud_config_and_known_at_preview(dev, model):
    encoded = dev.one(LT, f"{model}-lt").inputs["userData"]
    assert isinstance(encoded, str) and encoded != mock_engine.UNKNOWN
    text = host_provisioning.user_data_text(encoded)
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    units = {f["path"] for f in config["write_files"]}
    assert "/etc/systemd/system/deepseek-runtime.service" in units


def test_no_runtime_is_given_a_backend_key_to_hold_or_to_fetch():
    # The gateway holds no static backend credential (docs/BACKEND_AUTH.md), so there is
    # no key secret to create and nothing for the host to fetch at start.
    run = applied()
    assert run.by_type(SECRET_VERSION) == [] and run.by_type(SECRET) == []
    for template in run.by_type(LT):
        text = host_provisioning.user_data_text(template.inputs["userData"])
        assert "backend-api-key" not in text and "VLLM_API_KEY=" not in text


# --- auto scaling --------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_the_group_uses_elb_health_with_a_grace_period_covering_the_model_load(dev, model):
    group = dev.one(ASG, f"{model}-asg").inputs
    launch = dev_launch(model)
    assert group["healthCheckType"] == "ELB"
    assert group["healthCheckGracePeriod"] >= launch.startup_budget_seconds + host_provisioning.IMAGE_PULL_SECONDS
    assert group["healthCheckGracePeriod"] == gpu_fleet.health_check_grace_seconds(launch)
    assert len(group["targetGroupArns"]) == 1
    assert "desiredCapacity" not in group


def test_replicas_follow_the_inventory_with_room_for_a_rollout_at_full_scale(dev):
    # An instance refresh launches before it terminates: at max_replicas it needs one
    # instance more, or a key rotation at full scale would wait for room forever.
    raw = {m["name"]: m for m in inventory_of("dev")["models"]}
    for model in MODELS:
        group = dev.one(ASG, f"{model}-asg").inputs
        assert (group["minSize"], group["maxSize"]) == (raw[model]["min_replicas"], raw[model]["max_replicas"] + 1)
        refresh = group["instanceRefresh"]["preferences"]
        assert refresh["minHealthyPercentage"] == 100 and refresh["maxHealthyPercentage"] == 200


@pytest.mark.parametrize("model", MODELS)
def test_rolling_updates_never_drop_below_full_capacity(dev, model):
    group = dev.one(ASG, f"{model}-asg").inputs
    refresh = group["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    assert refresh["preferences"]["minHealthyPercentage"] == 100
    assert refresh["preferences"]["maxHealthyPercentage"] > 100
    assert group["instanceMaintenancePolicy"]["minHealthyPercentage"] == 100


def test_the_group_spreads_over_every_private_subnet(dev):
    private = [r.urn for r in dev.by_type("aws:ec2/subnet:Subnet") if "-private-" in r.name]
    for model in MODELS:
        group = dev.one(ASG, f"{model}-asg")
        assert len(group.inputs["vpcZoneIdentifiers"]) == len(private)
        assert set(group.property_dependencies["vpcZoneIdentifiers"]) == set(private)


@pytest.mark.parametrize("model", MODELS)
def test_scaling_tracks_requests_waiting_not_cpu(dev, model):
    (policy,) = [p for p in dev.by_type(POLICY) if p.name == f"{model}-queue-depth"]
    tracking = policy.inputs["targetTrackingConfiguration"]
    assert "predefinedMetricSpecification" not in tracking
    metric = tracking["customizedMetricSpecification"]
    assert metric["metricName"] == "RequestsWaiting" and metric["namespace"] == gpu_fleet.METRICS_NAMESPACE
    assert {d["name"]: d["value"] for d in metric["metricDimensions"]} == {"Stack": "dev", "Model": model}
    assert 0 < tracking["targetValue"] < inventory_of("dev").get("observability", {}).get(
        "alarms", {}).get("thresholds", {}).get("queue_depth", 20)


# --- IAM -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_the_role_has_only_ssm_core_and_the_cloudwatch_agent_as_managed_policies(dev, model):
    role = dev.one(ROLE, f"{model}-role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    attached = {a.inputs["policyArn"] for a in dev.by_type(ATTACHMENT)
                if role.urn in a.property_dependencies.get("role", [])}
    assert attached == {gpu_fleet.SSM_CORE_POLICY, gpu_fleet.CLOUDWATCH_AGENT_POLICY}


@pytest.mark.parametrize("model", MODELS)
def test_weights_are_readable_under_the_model_prefix_only(model):
    uri = {m["name"]: m for m in inventory_of("dev")["models"]}[model]["weights"]["s3_uri"]
    bucket, prefix = uri[5:].split("/", 1)
    by_sid = {s["Sid"]: s for s in statements(applied(), model)}
    assert by_sid["ReadModelWeights"]["Action"] == "s3:GetObject"
    assert by_sid["ReadModelWeights"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}*"
    assert by_sid["ListModelWeights"]["Action"] == "s3:ListBucket"
    assert by_sid["ListModelWeights"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert by_sid["ListModelWeights"]["Condition"] == {"StringLike": {"s3:prefix": [prefix, prefix + "*"]}}


@pytest.mark.parametrize("model", MODELS)
def test_hosts_read_no_secret_at_all(model):
    statements_ = statements(applied(), model)
    assert {"ReadModelWeights", "ListModelWeights"} <= {s["Sid"] for s in statements_}
    assert not any(str(s["Action"]).startswith("secretsmanager:") for s in statements_)
    # The one key a host may use decrypts Session Manager session data, found by its alias
    # (components/session_manager.py), never a secret's key.
    for statement in statements_:
        if str(statement["Action"]).startswith("kms:"):
            assert statement["Action"] == "kms:Decrypt"
            assert statement["Condition"] == {"ForAnyValue:StringEquals": {
                "kms:ResourceAliases": "alias/deepseek-serving/session-manager"}}


@pytest.mark.parametrize("model", MODELS)
def test_no_statement_grants_wildcard_actions_or_resources(model):
    for statement in statements(applied(), model):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all("*" not in action for action in actions)
        if "*" in resources:
            # Only read-only calls that have no resource-level permissions (the spot drain's
            # DescribeAutoScalingInstances) may name every resource.
            assert all(action.split(":")[1].startswith(("Describe", "List", "Get")) for action in actions)


def test_the_weights_and_secret_policy_is_readable_at_preview(dev):
    for model in MODELS:
        serving = dev.one(ROLE_POLICY, f"{model}-serving").inputs["policy"]
        sids = {s["Sid"] for s in json.loads(serving)["Statement"]}
        assert {"ReadModelWeights", "ListModelWeights"} <= sids
    # Without a hub token there is no secret, so no KMS statement waits for a key ARN; a
    # spot fleet's drain statement waits for its group's ARN.
    unknown = [p.name for p in dev.by_type(ROLE_POLICY) if p.inputs["policy"] == mock_engine.UNKNOWN
               and p.name.startswith(MODELS)]
    assert sorted(unknown) == ["r1-qwen-7b-drain"]


@pulumi.runtime.test
def test_fleets_expose_typed_outputs_for_the_gateway_and_observability():
    program_harness.fresh_event_loop()
    program = program_harness.start("dev")
    fleets = program["platform"].fleets
    assert set(fleets) == set(MODELS)
    vllm = fleets["r1-qwen-7b"]
    assert vllm.log_group_name == "/deepseek/dev/r1-qwen-7b/runtime"

    def check(values):
        asg_name, role_arn = values
        assert asg_name.startswith("r1-qwen-7b-asg")
        assert role_arn.startswith("arn:aws:iam:")

    return pulumi.Output.all(vllm.asg_name, vllm.instance_role_arn).apply(check)


def test_a_tgi_model_on_ec2_gets_a_fleet_of_its_own():
    rebuilt = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi:3.3.5@sha256:" + "cd" * 32

    def to_tgi(raw):
        raw["models"][0].update(runtime="tgi", image=rebuilt)

    run = run_with_inventory("dev", to_tgi)
    template = run.one(LT, "r1-qwen-7b-lt")
    text = host_provisioning.user_data_text(template.inputs["userData"])
    assert rebuilt in text and "--max-total-tokens" in text
    assert run.by_type(SECRET) == []
    group = run.one("aws:lb/targetGroup:TargetGroup", "r1-qwen-7b-lb-targets").inputs
    assert group["port"] == runtimes.PORTS["tgi"]


def test_a_tgi_model_without_a_digest_pinned_image_is_refused_before_anything_registers():
    with pytest.raises(pulumi.RunError, match=r"no confirmed digest for the tgi image.*models\[\]\.image"):
        run_with_inventory("dev", lambda raw: raw["models"][0].update(runtime="tgi"))


def test_a_model_its_instance_cannot_hold_fails_the_preview_with_what_would_fit():
    def too_big(raw):
        raw["models"][0].update(hf_repo="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", instance_type="g6.xlarge")

    with pytest.raises(pulumi.RunError, match=r"model 'r1-qwen-7b'.*g6\.xlarge.*What fits"):
        run_with_inventory("dev", too_big)
