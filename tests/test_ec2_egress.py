"""EC2 hosts without internet egress (issue 13): images through the stack's ECR pull-through
cache, every AWS API the hosts call behind a VPC endpoint, endpoint policies scoped to the
account and the weights, and hub weights only with an explicit opt-in.

Program checks run the real program under the mock engine (`@pulumi.runtime.test` through
check_program); the image pull script runs for real against fake `docker` and `aws` commands.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pulumi
import pytest
import yaml

from components.config import InventoryError, parse_inventory
from components.admission import check_image_sources
from components.ec2 import host as hp
from components.serving import images
from components.serving.catalog import RUNTIME_IMAGES
from tests.program_harness import check_program
from tests.test_host_provisioning import plan_for
from tests.stack_runs import inventory_of
from tools import fake_cloud, mock_engine, stack_files

EC2_STACKS = ("dev", "ec2-runtimes")
EKS_STACKS = ("staging", "prod")
ACCOUNT = fake_cloud.ACCOUNT_ID
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
PARAMETER = "aws:ssm/parameter:Parameter"
# The team's non-root TGI build, published on GitHub.
GHCR_TGI = "ghcr.io/acme/tgi-nonroot:3.3.5@sha256:" + "ab" * 32


def _of(registrations, type_token):
    return [r for r in registrations if r.type == type_token]


def _named(registrations, type_token, name):
    (found,) = [r for r in registrations if r.type == type_token and r.name == name]
    return found.inputs


def _user_data(registrations, model: str) -> dict:
    return yaml.safe_load(hp.user_data_text(_named(registrations, LT, f"{model}-lt")["userData"]))


def _file(config: dict, path: str) -> str:
    (entry,) = [f for f in config["write_files"] if f["path"] == path]
    return hp.file_content(entry)


def _env(config: dict) -> dict[str, str]:
    return {k: shlex.split(v)[0] for k, v in (line.split("=", 1) for line in _file(config, hp.ENV_FILE).splitlines())}


def _value(parameter: dict) -> dict:
    """An SSM parameter's JSON value (the SDK marks parameter values secret on the wire)."""
    value = parameter["value"]
    if isinstance(value, dict) and value.get(mock_engine.SECRET_SIG_KEY) == mock_engine.SECRET_SIG:
        value = value["value"]
    return json.loads(value)


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


# ---- security groups ---------------------------------------------------------------------------

@pytest.mark.parametrize("stack", EC2_STACKS)
def test_no_security_group_of_the_stack_egresses_to_the_internet(stack):
    def check(program, registrations):
        rules = [r.inputs for r in _of(registrations, EGRESS)]
        assert rules, "the hosts need some egress"
        for rule in rules:
            assert rule.get("cidrIpv4") != "0.0.0.0/0" and rule.get("cidrIpv6") != "::/0", rule
        for group in _of(registrations, SG):
            for inline in group.inputs.get("egress", []):
                assert "0.0.0.0/0" not in inline.get("cidrBlocks", []), group.name
                assert "::/0" not in inline.get("ipv6CidrBlocks", []), group.name

    check_program(stack, check)


@pytest.mark.parametrize("stack", EC2_STACKS)
def test_host_https_goes_only_to_the_endpoints_group_and_the_s3_prefix_list(stack):
    def check(program, registrations):
        network = program["network"]
        fleets = program["platform"].fleets

        def compare(values):
            endpoint_group, prefix_list, *host_groups = values
            assert prefix_list.startswith("pl-")
            for group_id in host_groups:
                rules = [r.inputs for r in _of(registrations, EGRESS) if r.inputs["securityGroupId"] == group_id]
                targets = sorted((r.get("referencedSecurityGroupId") or r.get("prefixListId"), r["fromPort"],
                                  r["toPort"], r["ipProtocol"]) for r in rules)
                assert targets == sorted([(endpoint_group, 443, 443, "tcp"), (prefix_list, 443, 443, "tcp")])

        return pulumi.Output.all(network.endpoint_security_group_id, network.s3_prefix_list_id,
                                 *[fleet.security_group_id for fleet in fleets.values()]).apply(compare)

    check_program(stack, check)


# ---- images ------------------------------------------------------------------------------------

def test_dev_pulls_docker_hub_images_through_one_rule_signed_in_with_the_inventory_s_secret():
    credential = inventory_of("dev")["image_cache"]["credentials"]["docker-hub"]

    def check(program, registrations):
        rules = [r.inputs for r in _of(registrations, RULE)]
        assert rules == [{"ecrRepositoryPrefix": "dev/docker-hub", "upstreamRegistryUrl": "registry-1.docker.io",
                          "credentialArn": credential}]

    check_program("dev", check)


def test_every_upstream_the_images_come_from_gets_its_own_rule():
    # TGI rebuilt on ghcr.io (signed in), vLLM from Docker Hub (signed in), Ollama rebuilt on quay.io (anonymous).
    quay_ollama = "quay.io/acme/ollama:0.12.6@sha256:" + "cd" * 32
    ghcr_secret = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/ghcr-Ab12Cd"

    def change(inventory):
        inventory["models"][1]["image"] = GHCR_TGI
        inventory["models"][2]["image"] = quay_ollama
        inventory["image_cache"]["credentials"]["github-container-registry"] = ghcr_secret

    def check(program, registrations):
        rules = {r.inputs["upstreamRegistryUrl"]: r.inputs for r in _of(registrations, RULE)}
        assert set(rules) == {"registry-1.docker.io", "ghcr.io", "quay.io"}
        assert rules["ghcr.io"]["ecrRepositoryPrefix"] == "ec2-runtimes/ghcr"
        assert rules["ghcr.io"]["credentialArn"] == ghcr_secret
        assert "credentialArn" not in rules["quay.io"]
        env = _env(_user_data(registrations, "r1-qwen-1-5b-gguf"))
        assert env["IMAGE"] == (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/ec2-runtimes/quay/acme/ollama:0.12.6@"
                                f"sha256:{'cd' * 32}")

    check_program("ec2-runtimes", check, change=change)


@pytest.mark.parametrize("model,runtime", [("r1-qwen-7b", "vllm"), ("r1-qwen-1-5b-gguf", "ollama")])
def test_hosts_pull_and_run_the_catalog_image_from_the_cache_with_its_digest(model, runtime):
    catalog = RUNTIME_IMAGES[runtime]
    expected = (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/dev/docker-hub/{catalog.repository}:"
                f"{catalog.tag}@{catalog.digest}")

    def check(program, registrations):
        config = _user_data(registrations, model)
        assert _env(config)["IMAGE"] == expected
        runtime_unit = _file(config, "/etc/systemd/system/deepseek-runtime.service")
        (exec_start,) = [line[len("ExecStart="):] for line in runtime_unit.splitlines()
                         if line.startswith("ExecStart=")]
        assert expected in shlex.split(exec_start)
        assert "ExecStartPre=/usr/local/sbin/deepseek-pull-image" in runtime_unit.splitlines()
        assert "docker.io" not in json.dumps(config) and "registry-1" not in json.dumps(config)

    check_program("dev", check)


def test_an_image_already_in_the_region_s_ecr_is_pulled_as_it_is_without_a_rule():
    (tgi,) = [m for m in inventory_of("ec2-runtimes")["models"] if m["runtime"] == "tgi"]

    def check(program, registrations):
        assert _env(_user_data(registrations, tgi["name"]))["IMAGE"] == tgi["image"]
        assert [r.inputs["upstreamRegistryUrl"] for r in _of(registrations, RULE)] == ["registry-1.docker.io"]

    check_program("ec2-runtimes", check)


@pytest.mark.parametrize("stack", EC2_STACKS)
def test_hosts_may_pull_their_own_repository_and_fill_it_through_the_cache_only(stack):
    def check(program, registrations):
        for name, fleet in program["platform"].fleets.items():
            policy = json.loads(_named(registrations, ROLE_POLICY, f"{name}-serving")["policy"])
            by_sid = {s["Sid"]: s for s in policy["Statement"]}
            repository = f"arn:aws:ecr:us-east-1:{fleet.image.account}:repository/{fleet.image.repository}"
            assert by_sid["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken"
            assert by_sid["PullRuntimeImage"]["Resource"] == repository
            assert set(by_sid["PullRuntimeImage"]["Action"]) == {
                "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
            if fleet.image.upstream is None:
                assert "FillPullThroughCache" not in by_sid
            else:
                assert fleet.image.repository.startswith(f"{stack}/{fleet.image.upstream.short}/")
                assert by_sid["FillPullThroughCache"]["Resource"] == repository
                assert set(by_sid["FillPullThroughCache"]["Action"]) == {
                    "ecr:BatchImportUpstreamImage", "ecr:CreateRepository"}
            assert fleet.image.reference in hp.user_data_text(_named(registrations, LT, f"{name}-lt")["userData"])

    check_program(stack, check)


def test_image_references_are_normalised_as_docker_reads_them():
    digest = "sha256:" + "0" * 64
    cases = {
        f"vllm/vllm-openai:v1@{digest}": ("docker.io", "vllm/vllm-openai"),
        f"ubuntu:24.04@{digest}": ("docker.io", "library/ubuntu"),
        f"docker.io/ollama/ollama:1@{digest}": ("docker.io", "ollama/ollama"),
        f"index.docker.io/library/redis:7@{digest}": ("docker.io", "library/redis"),
        f"ghcr.io/huggingface/text-generation-inference:3@{digest}": ("ghcr.io", "huggingface/text-generation-inference"),
        f"localhost:5000/x/y:1@{digest}": ("localhost:5000", "x/y"),
    }
    for reference, (registry, repository) in cases.items():
        parsed = images.parse_reference(reference)
        assert (parsed.registry, parsed.repository, parsed.digest) == (registry, repository, digest)
    with pytest.raises(images.ImageSourceError, match="not pinned"):
        images.parse_reference("vllm/vllm-openai:v1")


@pytest.mark.parametrize("image,fragment", [
    ("nvcr.io/nvidia/tritonserver:24.08-py3@sha256:" + "1" * 64, "does not mirror"),
    ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/tgi:3@sha256:" + "1" * 64, "replicate the repository to us-east-1"),
])
def test_an_image_the_hosts_cannot_reach_without_internet_is_refused_before_anything_registers(image, fragment):
    raw = inventory_of("dev")
    raw["models"][0]["image"] = image
    inventory = parse_inventory(raw, stack="dev", secret_keys=set(stack_files.load("dev").secret_keys))
    with pytest.raises(InventoryError) as caught:
        check_image_sources(inventory, "dev")
    message = str(caught.value)
    assert "stacks/Pulumi.dev.yaml" in message and "models[0].image" in message and fragment in message


def test_a_docker_hub_image_without_the_cache_s_credential_is_refused_naming_the_key():
    raw = inventory_of("dev")
    del raw["image_cache"]
    inventory = parse_inventory(raw, stack="dev", secret_keys=set(stack_files.load("dev").secret_keys))
    with pytest.raises(InventoryError) as caught:
        check_image_sources(inventory, "dev")
    message = str(caught.value)
    assert message.count("image_cache.credentials.docker-hub: is required but missing") == 1
    assert "ecr-pullthroughcache/docker-hub" in message and "registry-1.docker.io" in message


@pytest.mark.parametrize("value,fragment", [
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:dockerhub-AbCdEf", "ecr-pullthroughcache/<name>"),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf", "its own region only"),
])
def test_a_credential_outside_the_cache_s_naming_or_region_is_refused(value, fragment):
    raw = inventory_of("dev")
    raw["image_cache"]["credentials"]["docker-hub"] = value
    with pytest.raises(InventoryError) as caught:
        parse_inventory(raw, stack="dev", secret_keys=set(stack_files.load("dev").secret_keys))
    assert "image_cache.credentials.docker-hub" in str(caught.value) and fragment in str(caught.value)


# ---- the pull script, run for real -------------------------------------------------------------

def _run_pull(tmp_path: Path, image: str, *, cached_by_digest: bool, present: bool = False):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    # docker: `image inspect` answers whether the image is present; a pull by digest fails
    # until a pull by tag has filled the (fake) cache, unless it was cached already.
    (bin_dir / "docker").write_text(
        "#!/bin/bash\necho \"docker $*\" >> \"$LOG\"\n"
        "case $1 in\n"
        "  image) [[ -f $STATE/present ]]; exit;;\n"
        "  login) cat > \"$STATE/token-seen\"; [[ -d $DOCKER_CONFIG ]]; exit;;\n"
        "  pull) if [[ $2 == *@* ]]; then [[ -f $STATE/filled ]] || exit 1; touch \"$STATE/present\";\n"
        "        else touch \"$STATE/filled\"; fi;;\n"
        "esac\n")
    (bin_dir / "aws").write_text("#!/bin/bash\necho \"aws $*\" >> \"$LOG\"\necho token-123\n")
    for tool in ("docker", "aws"):
        (bin_dir / tool).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    if cached_by_digest:
        (state / "filled").touch()
    if present:
        (state / "present").touch()
    (tmp_path / "model.env").write_text(f"AWS_REGION=us-east-1\nIMAGE={shlex.quote(image)}\n")
    script = tmp_path / "pull-image"
    script.write_text(hp.PULL_IMAGE)
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env={
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log), "STATE": str(state),
        "DEEPSEEK_ENV": str(tmp_path / "model.env"), "STATE_DIR": str(tmp_path / "run")})
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls, state


ECR_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/dev/docker-hub/vllm/vllm-openai:v0.11.0@sha256:" + "e" * 64


def test_the_pull_signs_in_to_ecr_and_pulls_by_digest(tmp_path):
    result, calls, state = _run_pull(tmp_path, ECR_IMAGE, cached_by_digest=True)
    assert result.returncode == 0, result.stderr
    registry = ECR_IMAGE.split("/", 1)[0]
    assert "aws ecr get-login-password --region us-east-1" in calls
    assert f"docker login -u AWS --password-stdin {registry}" in calls
    assert (state / "token-seen").read_text().strip() == "token-123"
    assert [c for c in calls if c.startswith("docker pull")] == [f"docker pull {ECR_IMAGE}"]
    # The login token does not outlive the pull.
    assert not (tmp_path / "run" / "docker").exists()


def test_a_cold_cache_is_filled_by_tag_and_the_digest_is_still_what_runs(tmp_path):
    result, calls, _ = _run_pull(tmp_path, ECR_IMAGE, cached_by_digest=False)
    assert result.returncode == 0, result.stderr
    assert [c for c in calls if c.startswith("docker pull")] == [
        f"docker pull {ECR_IMAGE}", f"docker pull {ECR_IMAGE.split('@')[0]}", f"docker pull {ECR_IMAGE}"]


def test_a_present_image_is_not_pulled_again(tmp_path):
    result, calls, _ = _run_pull(tmp_path, ECR_IMAGE, cached_by_digest=True, present=True)
    assert result.returncode == 0 and not [c for c in calls if "pull" in c or "login" in c]


@pytest.mark.parametrize("source", ["hub", "s3"])
def test_a_hub_download_pulls_the_runtime_image_from_ecr_first(source):
    plan = plan_for("r1-qwen-7b", change=(lambda raw: _to_hub(raw, opt_in=True)) if source == "hub" else None)
    assert plan.weights_source == source
    weights_unit = hp.systemd_units(plan)["deepseek-weights.service"].splitlines()
    pulls = "ExecStartPre=/usr/local/sbin/deepseek-pull-image" in weights_unit
    assert pulls == (source == "hub")
    if pulls:
        assert weights_unit.index("ExecStartPre=/usr/local/sbin/deepseek-pull-image") < weights_unit.index(
            "ExecStart=/usr/local/sbin/deepseek-fetch-weights")


# ---- endpoints and their policies --------------------------------------------------------------

def _endpoints(registrations) -> dict[str, dict]:
    found = [r.inputs["serviceName"].split(".", 3)[3] for r in _of(registrations, ENDPOINT)]
    # Two endpoints of one service with private DNS would collide at deploy time.
    assert len(found) == len(set(found)), sorted(found)
    return {r.inputs["serviceName"].split(".", 3)[3]: r.inputs for r in _of(registrations, ENDPOINT)}


@pytest.mark.parametrize("stack", EC2_STACKS + EKS_STACKS)
def test_interface_endpoints_admit_only_this_account_s_principals(stack):
    def check(program, registrations):
        interface = {name: e for name, e in _endpoints(registrations).items() if e["vpcEndpointType"] == "Interface"}
        assert {"ecr.api", "ecr.dkr", "sts", "ssm", "logs", "secretsmanager"} <= set(interface)
        for name, endpoint in interface.items():
            (statement,) = json.loads(endpoint["policy"])["Statement"]
            assert statement["Effect"] == "Allow", name
            assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}, name

    check_program(stack, check)


@pytest.mark.parametrize("stack", EC2_STACKS)
def test_the_s3_endpoint_reads_exactly_the_weights_and_aws_s_own_buckets(stack):
    buckets = {m["weights"]["s3_uri"][5:].split("/", 1)[0] for m in inventory_of(stack)["models"]
               if m["weights"].get("s3_uri")}

    def check(program, registrations):
        policy = json.loads(_endpoints(registrations)["s3"]["policy"])
        allowed_actions = set()
        resources = set()
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            allowed_actions |= set(_listed(statement["Action"]))
            resources |= set(_listed(statement["Resource"]))
            if any(bucket in str(statement["Resource"]) for bucket in buckets):
                assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}
        assert allowed_actions == {"s3:GetObject", "s3:ListBucket"}
        expected = {f"arn:aws:s3:::{b}" for b in buckets} | {f"arn:aws:s3:::{b}/*" for b in buckets} | {
            "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*", "arn:aws:s3:::al2023-repos-us-east-1-de612dc2/*",
            "arn:aws:s3:::amazon-ssm-us-east-1/*"}
        assert resources == expected

    check_program(stack, check)


# The AWS CLI's command name for each service -> the VPC endpoint service it needs. A call to a
# service missing here fails the test below, so a new call cannot ship without its endpoint.
CLI_ENDPOINTS = {"s3": "s3", "ssm": "ssm", "secretsmanager": "secretsmanager", "cloudwatch": "monitoring",
                 "autoscaling": "autoscaling", "ecr": "ecr.api", "sts": "sts", "logs": "logs", "ec2": "ec2"}
# AWS CLI commands that call no service (`aws configure set` tunes the S3 transfer settings).
CLI_LOCAL = {"configure"}
_SHELL_CALL = re.compile(r"(?:^|[\s;|&({])aws\s+(?:--[\w-]+\s+\S+\s+)*([a-z][a-z0-9-]+)", re.M)
_PY_LIST_CALL = re.compile(r"\[\s*\"aws\",\s*(?:\"--[\w-]+\",\s*[^,]+,\s*)*\"([a-z][a-z0-9-]+)\"")
_PY_HELPER_CALL = re.compile(r"\baws\(\s*\"([a-z][a-z0-9-]+)\"")


def services_called(user_data: dict, agent_config: dict) -> set[str]:
    """Every AWS service a host calls, read from what it runs: its scripts' AWS CLI calls, the
    image it pulls, the CloudWatch agent's configuration and Session Manager."""
    text = "\n".join(hp.file_content(f) for f in user_data["write_files"])
    text += "\n" + "\n".join(" ".join(command) for command in user_data["runcmd"])
    called = set()
    for pattern in (_SHELL_CALL, _PY_LIST_CALL, _PY_HELPER_CALL):
        called |= set(pattern.findall(text))
    called -= CLI_LOCAL
    unknown = called - set(CLI_ENDPOINTS)
    assert not unknown, f"hosts call {unknown}: add their endpoints and list them here"
    needed = {CLI_ENDPOINTS[service] for service in called}
    env = {k: v for k, v in (line.split("=", 1) for line in _file(user_data, hp.ENV_FILE).splitlines())}
    if re.match(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/", env["IMAGE"]):
        needed |= {"ecr.api", "ecr.dkr", "s3"}  # login, manifests, layers (in S3)
    if "-c ssm:" in text:
        needed.add("ssm")  # the agent's configuration
    if "logs" in agent_config:
        needed.add("logs")
    if "metrics" in agent_config:
        needed.add("monitoring")
    if "${aws:" in json.dumps(agent_config.get("metrics", {}).get("append_dimensions", {})):
        needed.add("ec2")  # the agent resolves ${aws:AutoScalingGroupName} with DescribeTags
    return needed


# IAM's service prefix -> the endpoint a call under it takes from the host.
IAM_ENDPOINTS = {**CLI_ENDPOINTS, "cloudwatch": "monitoring", "kms": "kms", "ssmmessages": "ssmmessages",
                 "ec2messages": "ec2messages"}


def services_allowed(policies: list[dict]) -> set[str]:
    """Endpoints for every service the instance role's own policies let the host call. A
    statement conditioned on kms:ViaService is used by that service, not from the host."""
    needed = set()
    for policy in policies:
        for statement in _listed(policy["Statement"]):
            if "kms:ViaService" in json.dumps(statement.get("Condition", {})):
                continue
            for action in _listed(statement["Action"]):
                prefix = action.split(":", 1)[0]
                assert prefix in IAM_ENDPOINTS, f"the hosts may call {prefix}: add its endpoint and list it here"
                needed.add(IAM_ENDPOINTS[prefix])
    return needed


@pytest.mark.parametrize("stack", EC2_STACKS)
def test_every_aws_service_the_hosts_call_has_an_endpoint(stack):
    def check(program, registrations):
        endpoints = set(_endpoints(registrations))
        for name in program["platform"].fleets:
            user_data = _user_data(registrations, name)
            parameter = [p.inputs for p in _of(registrations, PARAMETER)
                         if p.inputs["name"] == f"AmazonCloudWatch-deepseek-{stack}-{name}"]
            needed = services_called(user_data, _value(parameter[0]))
            attachments = {a.inputs["policyArn"] for a in _of(registrations, ATTACHMENT) if a.name.startswith(name)}
            if "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" in attachments:
                needed |= {"ssm", "ssmmessages", "ec2messages"}  # Session Manager
            own = [json.loads(p.inputs["policy"]) for p in _of(registrations, ROLE_POLICY) if p.name.startswith(f"{name}-")]
            assert own, name
            needed |= services_allowed(own)
            assert {"ssm", "ecr.api", "ecr.dkr", "s3", "monitoring"} <= needed  # the scan sees the calls
            assert needed <= endpoints, f"{name} calls {sorted(needed - endpoints)} with no endpoint"

    check_program(stack, check)


def test_the_scan_finds_the_spot_watcher_s_auto_scaling_calls():
    # dev's 7B has spot capacity: its watcher calls Auto Scaling through the aws() helper.
    def check(program, registrations):
        user_data = _user_data(registrations, "r1-qwen-7b")
        parameter = _named(registrations, PARAMETER, "r1-qwen-7b-agent-config")
        assert "autoscaling" in services_called(user_data, _value(parameter))

    check_program("dev", check)


# ---- hub weights on EC2 ------------------------------------------------------------------------

def _to_hub(raw, opt_in: bool):
    weights = raw["models"][0]["weights"]
    weights.pop("s3_uri")
    weights["source"] = "hub"
    if opt_in:
        weights["internet_egress"] = True


def test_hub_weights_on_ec2_are_refused_without_the_internet_opt_in():
    raw = inventory_of("dev")
    _to_hub(raw, opt_in=False)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(raw, stack="dev", secret_keys=set(stack_files.load("dev").secret_keys))
    message = str(caught.value)
    for fragment in ("stacks/Pulumi.dev.yaml", "models[0].weights.source", "'hub'", "VPC endpoints only",
                     "source s3", "weights.internet_egress: true"):
        assert fragment in message, message


def test_the_internet_opt_in_is_refused_where_it_would_open_nothing_needed():
    raw = inventory_of("dev")
    raw["models"][0]["weights"]["internet_egress"] = True
    with pytest.raises(InventoryError, match=r"models\[0\]\.weights.*hub downloads only"):
        parse_inventory(raw, stack="dev", secret_keys=set(stack_files.load("dev").secret_keys))


def test_with_the_opt_in_only_that_model_s_hosts_reach_the_internet_on_443():
    def check(program, registrations):
        open_rules = [r for r in _of(registrations, EGRESS) if r.inputs.get("cidrIpv4") == "0.0.0.0/0"]
        assert [(r.name, r.inputs["fromPort"], r.inputs["toPort"]) for r in open_rules] == [
            ("r1-qwen-7b-hub-over-internet", 443, 443)]

        def on_its_hosts(group):
            assert [r.inputs["securityGroupId"] for r in open_rules] == [group]

        return program["platform"].fleets["r1-qwen-7b"].security_group_id.apply(on_its_hosts)

    check_program("dev", check, change=lambda raw: _to_hub(raw, opt_in=True))
