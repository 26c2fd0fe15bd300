"""The EKS stacks preview offline with a private cluster, its node pools and its add-ons.

Each stack's real __main__.py runs once per test process under the mock engine (first
preview: computed outputs unknown); the tests read what was registered, in wire form.
"""
from __future__ import annotations

import json

import pytest

from components.eks import addons as k8s_addons, cluster as eks_cluster
from tests import stack_runs
from tools import mock_engine

EKS_STACKS = ("staging", "prod")


def _cluster(run: mock_engine.ProgramRun) -> dict:
    (cluster,) = stack_runs.inputs(run, "aws:eks/cluster:Cluster")
    return cluster


def _eks(stack: str) -> dict:
    return stack_runs.inventory_of(stack)["eks"]


def _autoscaler(stack: str) -> str:
    return _eks(stack).get("autoscaler", "karpenter")


def _node_pools(run: mock_engine.ProgramRun) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in run.by_type("kubernetes:karpenter.sh/v1:NodePool")}


def _node_groups(run: mock_engine.ProgramRun) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.by_type("aws:eks/nodeGroup:NodeGroup")}


def _launch_templates(run: mock_engine.ProgramRun) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.by_type("aws:ec2/launchTemplate:LaunchTemplate")}


def _releases(run: mock_engine.ProgramRun) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in run.by_type("kubernetes:helm.sh/v3:Release")}


@pytest.fixture(scope="module", params=EKS_STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def run(stack: str) -> mock_engine.ProgramRun:
    return stack_runs.preview_run(stack)


_CA_RUNS: dict = {}


def _cluster_autoscaler_run() -> mock_engine.ProgramRun:
    if "run" not in _CA_RUNS:
        _CA_RUNS["run"] = stack_runs.preview_run("prod")
    return _CA_RUNS["run"]


@pytest.fixture(scope="module")
def bottlerocket_run() -> mock_engine.ProgramRun:
    """Staging with its GPU pool on Bottlerocket, whose NVIDIA variant ships the device plugin."""
    def change(inventory: dict) -> None:
        inventory["eks"]["autoscaler"] = "cluster-autoscaler"
        inventory["eks"]["gpu_pools"][0].update(ami_type="BOTTLEROCKET_x86_64_NVIDIA", min_size=1,
                                                capacity_types=["on-demand"])
    return stack_runs.run_with_inventory("staging", change)


# --- control plane -------------------------------------------------------------------

def test_the_endpoint_is_private_and_public_only_for_the_listed_cidrs(run, stack):
    vpc = _cluster(run)["vpcConfig"]
    listed = _eks(stack).get("public_access_cidrs", [])
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is bool(listed)
    if listed:
        assert vpc["publicAccessCidrs"] == listed
        assert "0.0.0.0/0" not in vpc["publicAccessCidrs"]
    else:
        assert "publicAccessCidrs" not in vpc


def test_secrets_are_envelope_encrypted_with_the_stack_data_key(run):
    cluster_registration = run.by_type("aws:eks/cluster:Cluster")[0]
    encryption = cluster_registration.inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    data_key = run.one("aws:kms/key:Key", "keys-data").urn
    assert data_key in cluster_registration.property_dependencies["encryptionConfig"]


def test_control_plane_logs_cover_api_audit_and_authenticator(run):
    assert {"api", "audit", "authenticator"} <= set(_cluster(run)["enabledClusterLogTypes"])


def test_control_plane_logs_go_to_an_encrypted_group_with_retention_created_first(run, stack):
    cluster = run.by_type("aws:eks/cluster:Cluster")[0]
    (log_group,) = [r for r in run.by_type("aws:cloudwatch/logGroup:LogGroup")
                    if r.inputs.get("name", "").startswith("/aws/eks/")]
    assert log_group.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
    assert log_group.inputs["retentionInDays"] == stack_runs.inventory_of(stack)["observability"]["log_retention_days"]
    assert "kmsKeyId" in log_group.inputs
    assert log_group.urn in cluster.dependencies


def test_access_entries_replace_the_aws_auth_config_map(run, stack):
    assert _cluster(run)["accessConfig"]["authenticationMode"] == "API"
    assert not [r for r in run.registrations if r.type == "kubernetes:core/v1:ConfigMap"
                and r.inputs.get("metadata", {}).get("name") == "aws-auth"]
    admins = _eks(stack).get("admin_role_arns", [])
    entries = stack_runs.inputs(run, "aws:eks/accessEntry:AccessEntry")
    associations = stack_runs.inputs(run, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted(e["principalArn"] for e in entries) == sorted(admins)
    assert sorted(a["principalArn"] for a in associations) == sorted(admins)
    for association in associations:
        assert association["policyArn"] == eks_cluster.CLUSTER_ADMIN_POLICY
        assert association["accessScope"] == {"type": "cluster"}


def test_the_service_cidr_comes_from_the_inventory(run, stack):
    network = _cluster(run)["kubernetesNetworkConfig"]
    assert network["serviceIpv4Cidr"] == _eks(stack).get("service_cidr", "172.20.0.0/16")


def test_the_cluster_runs_the_inventory_version_with_managed_addons(run, stack):
    assert _cluster(run)["version"] == _eks(stack)["kubernetes_version"]
    assert _cluster(run)["bootstrapSelfManagedAddons"] is False
    addons = {a["addonName"]: a for a in stack_runs.inputs(run, "aws:eks/addon:Addon")}
    # The EBS CSI driver gives Prometheus its encrypted volume (components/eks/addons.py).
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    # NetworkPolicies are only enforced when the VPC CNI runs its policy agent.
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}


# --- node pools ----------------------------------------------------------------------

def test_the_system_pool_is_cpu_only_and_untainted(run, stack):
    system = _node_groups(run)["eks-system"]
    settings = _eks(stack)["system_pool"]
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["instanceTypes"] == [settings["instance_type"]]
    assert system["scalingConfig"]["minSize"] == settings["min_size"]
    assert system["scalingConfig"]["maxSize"] == settings["max_size"]
    assert not system.get("taints")
    assert system["labels"][eks_cluster.POOL_LABEL] == eks_cluster.SYSTEM_POOL


def test_every_gpu_pool_is_tainted_labelled_and_sized_from_the_inventory(run, stack):
    groups = _node_groups(run)
    pools = _eks(stack)["gpu_pools"]
    if _autoscaler(stack) == "karpenter":
        # Karpenter's NodePools are the GPU pools (tests/test_karpenter.py); only the system
        # pool is a managed node group.
        assert set(groups) == {"eks-system"}
        assert {spec["template"]["metadata"]["labels"][eks_cluster.POOL_LABEL]
                for spec in _node_pools(run).values()} == {pool["name"] for pool in pools}
        return
    assert not _node_pools(run)
    for pool in pools:
        group = groups[f"eks-pool-{pool['name']}"]
        assert group["amiType"] == pool.get("ami_type", "AL2023_x86_64_NVIDIA")
        assert group["instanceTypes"] == [pool["instance_type"]]
        assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        assert group["labels"][eks_cluster.POOL_LABEL] == pool["name"]
        assert group["scalingConfig"]["minSize"] == pool["min_size"]
        assert group["scalingConfig"]["maxSize"] == pool["max_size"]
        assert group["capacityType"] == pool.get("capacity_types", ["on-demand"])[0].upper().replace("-", "_")
    assert len(groups) == len(pools) + 1


def test_node_groups_leave_the_size_to_the_cluster_autoscaler(run):
    for registration in run.by_type("aws:eks/nodeGroup:NodeGroup"):
        assert "scalingConfig.desiredSize" in registration.ignore_changes


def test_launch_templates_require_imdsv2_with_hop_limit_one(run):
    templates = _launch_templates(run)
    assert templates
    for template in templates.values():
        metadata = template["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        assert metadata["httpEndpoint"] == "enabled"
        assert "networkInterfaces" not in template  # no public address can be requested


def test_gpu_root_volumes_are_encrypted_gp3_sized_for_runtime_images(run, stack):
    templates = _launch_templates(run)
    if _autoscaler(stack) == "karpenter":
        assert set(templates) == {"eks-system-lt"}  # GPU volumes: the EC2NodeClass
        return
    for pool in _eks(stack)["gpu_pools"]:
        (device,) = templates[f"eks-pool-{pool['name']}-lt"]["blockDeviceMappings"]
        ebs = device["ebs"]
        assert device["deviceName"] == "/dev/xvda"
        assert ebs["volumeType"] == "gp3"
        assert ebs["encrypted"] == "true"
        assert "kmsKeyId" in ebs
        assert ebs["volumeSize"] == pool.get("root_volume_gib", 300) >= 100


def test_bottlerocket_pools_get_a_large_encrypted_data_volume_and_no_device_plugin(bottlerocket_run):
    templates = _launch_templates(bottlerocket_run)
    devices = {d["deviceName"]: d["ebs"] for d in templates["eks-pool-gpu-l40s-lt"]["blockDeviceMappings"]}
    # Bottlerocket keeps container images on the data volume, not on the OS volume.
    assert devices["/dev/xvdb"]["volumeSize"] == 300
    assert all(ebs["encrypted"] == "true" for ebs in devices.values())
    assert "nvidia-device-plugin" not in _releases(bottlerocket_run)
    group = _node_groups(bottlerocket_run)["eks-pool-gpu-l40s"]
    assert eks_cluster.DEVICE_PLUGIN_LABEL not in group["labels"]


def test_al2023_gpu_pools_get_the_nvidia_device_plugin_on_their_nodes_only(run, stack):
    release = _releases(run)["nvidia-device-plugin"]
    terms = release["values"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": eks_cluster.DEVICE_PLUGIN_LABEL, "operator": "In", "values": ["true"]}]}]
    assert eks_cluster.GPU_TOLERATION in release["values"]["tolerations"]
    karpenter_labels = {spec["template"]["metadata"]["labels"][eks_cluster.POOL_LABEL]:
                        spec["template"]["metadata"]["labels"] for spec in _node_pools(run).values()}
    for pool in _eks(stack)["gpu_pools"]:
        labels = (karpenter_labels[pool["name"]] if _autoscaler(stack) == "karpenter"
                  else _node_groups(run)[f"eks-pool-{pool['name']}"]["labels"])
        assert labels[eks_cluster.DEVICE_PLUGIN_LABEL] == "true"


# --- Kubernetes provider and add-ons -------------------------------------------------

def test_every_kubernetes_resource_uses_the_cluster_provider(run):
    (provider,) = run.by_type("pulumi:providers:kubernetes")
    assert provider.name == "eks-k8s"
    kubernetes = [r for r in run.registrations if r.type.startswith("kubernetes:")]
    assert kubernetes
    for registration in kubernetes:
        assert registration.provider.startswith(provider.urn + "::"), registration.name


def test_the_kubeconfig_authenticates_with_aws_eks_get_token():
    config = json.loads(eks_cluster._kubeconfig("deepseek-prod", "https://x.eks.amazonaws.com", "Q0E=", "us-east-1"))
    (user,) = config["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "deepseek-prod"]
    assert "token" not in user["user"] and "client-key-data" not in user["user"]


def test_workload_roles_trust_only_pod_identity(run, stack):
    associations = stack_runs.inputs(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    bound = {(a["namespace"], a["serviceAccount"]) for a in associations}
    assert ("kube-system", k8s_addons.LBC_SERVICE_ACCOUNT) in bound
    node_autoscaler = ("cluster-autoscaler" if _autoscaler(stack) == "cluster-autoscaler" else "karpenter")
    assert ("kube-system", node_autoscaler) in bound
    assert ("kube-system", k8s_addons.EBS_CSI_SERVICE_ACCOUNT) in bound
    workload_roles = [r for r in run.by_type("aws:iam/role:Role")
                      if r.name.startswith(("eks-addons-", "karpenter-"))]
    sleeps = any(m.get("min_replicas", 1) == 0 for m in stack_runs.inventory_of(stack)["models"])
    # load balancer controller, node autoscaler, EBS CSI driver; KEDA where a model sleeps
    assert len(workload_roles) == 3 + sleeps
    for role in workload_roles:
        (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_the_load_balancer_controller_only_registers_targets_in_this_stacks_groups(run, stack):
    release = _releases(run)["aws-load-balancer-controller"]
    values = release["values"]
    assert values["enableServiceMutatorWebhook"] is False
    assert values["region"] == stack_runs.inventory_of(stack)["region"]
    assert "vpcId" in values  # from values, not IMDS (hop limit 1)
    policy = k8s_addons._load_balancer_controller_policy({"project": "deepseek-serving", "stack": stack}, "aws")
    register = next(s for s in policy["Statement"] if "elasticloadbalancing:RegisterTargets" in s["Action"])
    assert register["Condition"]["StringEquals"] == {"aws:ResourceTag/project": "deepseek-serving",
                                                     "aws:ResourceTag/stack": stack}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not {"elasticloadbalancing:CreateLoadBalancer", "ec2:AuthorizeSecurityGroupIngress"} & actions


def test_the_metrics_pipeline_and_autoscalers_are_installed_with_pinned_charts(run, stack):
    releases = _releases(run)
    # Exactly one node autoscaler: the cluster autoscaler, or Karpenter (tests/test_karpenter.py).
    assert ("cluster-autoscaler" in releases) == (_autoscaler(stack) == "cluster-autoscaler")
    assert ("karpenter" in releases) == (_autoscaler(stack) == "karpenter")
    if _autoscaler(stack) == "karpenter":
        releases = {**releases, "cluster-autoscaler": _releases(_cluster_autoscaler_run())["cluster-autoscaler"]}
    for key in ("aws-load-balancer-controller", "keda", "prometheus", "dcgm-exporter", "cluster-autoscaler"):
        repo, chart, version = k8s_addons.CHARTS[key]
        assert releases[key]["chart"] == chart
        assert releases[key]["version"] == version
        assert releases[key]["repositoryOpts"]["repo"] == repo
    jobs = {job["job_name"]: job for job in
            releases["prometheus"]["values"]["serverFiles"]["prometheus.yml"]["scrape_configs"]}
    assert set(jobs) == {"model-servers", "dcgm-exporter"}
    assert jobs["dcgm-exporter"]["honor_labels"] is True
    assert releases["cluster-autoscaler"]["values"]["extraArgs"]["skip-nodes-with-local-storage"] is False


def test_monitoring_namespaces_enforce_at_least_baseline(run):
    namespaces = {n["metadata"]["name"]: n["metadata"]["labels"]
                  for n in stack_runs.inputs(run, "kubernetes:core/v1:Namespace")}
    for name in (k8s_addons.MONITORING_NAMESPACE, k8s_addons.KEDA_NAMESPACE):
        assert namespaces[name]["pod-security.kubernetes.io/enforce"] == "baseline"
        assert namespaces[name]["pod-security.kubernetes.io/warn"] == "restricted"
