"""Karpenter on EKS: schema-valid NodePools and EC2NodeClasses, spot before on-demand, bounded
pools, disruption that spares serving nodes, and interruption events wired to its queue.

Staging is the committed Karpenter stack (spot, then on-demand). Objects are validated
against the CRD schemas of the pinned release (tools/crd_schemas.py, Node + the npm package
generated from that release); a first preview and an `up`-like run are both checked.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from components.config import InventoryError, parse_inventory
from components.eks import cluster as eks_cluster, karpenter
from components.eks.model_service import DO_NOT_DISRUPT
from components.serving.catalog import get_instance
from tests import stack_runs
from tools import crd_schemas, fake_cloud, k8s_objects, mock_engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run() -> mock_engine.ProgramRun:
    return stack_runs.preview_run("staging")


@pytest.fixture(scope="module")
def up_run() -> mock_engine.ProgramRun:
    """Staging as after `pulumi up`: ids and ARNs known (queue policy, subnet ids)."""
    return stack_runs.run_with_inventory("staging", lambda inventory: None, preview=False)


def _state(registration: mock_engine.Registration) -> dict:
    """What the (fake) provider returned for a resource in the `up`-like run."""
    return fake_cloud.created_state(registration.type, registration.name, registration.inputs, "us-west-2")[1]


def _pool() -> dict:
    (pool,) = stack_runs.inventory_of("staging")["eks"]["gpu_pools"]
    return pool


def _objects(run, kind: str) -> dict[str, dict]:
    return {o.manifest["metadata"]["name"]: o.manifest for o in k8s_objects.objects(run.registrations)
            if o.kind == kind}


def _release(run) -> dict:
    (release,) = [r.inputs for r in run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter"]
    return release


# --- schema -----------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["preview", "up"])
def test_node_pools_and_node_classes_are_valid_against_the_pinned_crd_schemas(run, up_run, which):
    chosen = run if which == "preview" else up_run
    results = [r for r in k8s_objects.validate_all(chosen.registrations, "1.33")
               if (r.obj.api_version, r.obj.kind) in crd_schemas.SCHEMA_KINDS]
    assert {r.obj.kind for r in results} == {"NodePool", "EC2NodeClass"}
    assert [f"{r.obj.describe()}: {r.message}" for r in results if r.status != "valid"] == []


def test_the_schema_check_refuses_what_karpenter_would_refuse(run):
    pools = _objects(run, "NodePool")
    broken = copy.deepcopy(next(iter(pools.values())))
    broken["spec"]["weight"] = 101
    broken["spec"]["disruption"]["consolidateAfter"] = "ten minutes"
    broken["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    broken["spec"]["template"]["spec"]["requirements"][0]["operator"] = "Equals"
    broken["spec"]["surprise"] = True
    (errors,) = crd_schemas.validate([broken])
    text = "\n".join(errors)
    for path in ("/spec/weight", "/spec/disruption/consolidateAfter", "/spec/disruption/consolidationPolicy",
                 "/spec/template/spec/requirements/0/operator", "/spec/surprise"):
        assert path in text, text
    node_class = copy.deepcopy(next(iter(_objects(run, "EC2NodeClass").values())))
    node_class["spec"]["metadataOptions"]["httpTokens"] = "sometimes"
    (errors,) = crd_schemas.validate([node_class])
    assert any(e.startswith("/spec/metadataOptions/httpTokens") for e in errors)


def test_the_schema_package_is_the_one_generated_from_the_pinned_release():
    lock = json.loads((ROOT / "tools/crd_schemas/package-lock.json").read_text())
    installed = lock["packages"]["node_modules/@kubernetes-models/karpenter"]["version"]
    package, (version, release) = next(iter(crd_schemas.SCHEMA_PACKAGES.items()))
    assert package == "@kubernetes-models/karpenter" and installed == version
    assert karpenter.KARPENTER_CHART[1] == release


# --- node pools -------------------------------------------------------------------------

def test_spot_is_preferred_and_on_demand_takes_over(run):
    pool = _pool()
    pools = _objects(run, "NodePool")
    spot, on_demand = pools[f"{pool['name']}-spot"]["spec"], pools[f"{pool['name']}-on-demand"]["spec"]
    assert spot["weight"] > on_demand["weight"]

    def requirement(spec: dict, key: str) -> list[str]:
        (found,) = [r for r in spec["template"]["spec"]["requirements"] if r["key"] == key]
        assert found["operator"] == "In"
        return found["values"]

    assert requirement(spot, "karpenter.sh/capacity-type") == ["spot"]
    assert requirement(on_demand, "karpenter.sh/capacity-type") == ["on-demand"]
    assert requirement(on_demand, "node.kubernetes.io/instance-type") == [pool["instance_type"]]
    spot_types = requirement(spot, "node.kubernetes.io/instance-type")
    assert spot_types[0] == pool["instance_type"] and len(spot_types) > 1
    declared = get_instance(pool["instance_type"])
    for name in spot_types:
        other = get_instance(name)
        # Same GPUs and at least the host the pod was sized for: the pod fits unchanged.
        assert (other.gpu.name, other.gpu_count) == (declared.gpu.name, declared.gpu_count)
        assert other.memory_gib >= declared.memory_gib and other.vcpus >= declared.vcpus


def test_every_pool_is_tainted_labelled_and_bounded_in_gpus(run):
    pool = _pool()
    gpus = get_instance(pool["instance_type"]).gpu_count * pool["max_size"]
    for spec in (s["spec"] for s in _objects(run, "NodePool").values()):
        template = spec["template"]
        assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
        assert template["metadata"]["labels"][eks_cluster.POOL_LABEL] == pool["name"]
        assert template["metadata"]["labels"][eks_cluster.DEVICE_PLUGIN_LABEL] == "true"
        assert spec["limits"] == {"nvidia.com/gpu": str(gpus)}
        assert template["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                    "name": pool["name"]}


def test_disruption_never_consolidates_a_serving_node(run):
    for spec in (s["spec"] for s in _objects(run, "NodePool").values()):
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert spec["disruption"]["consolidateAfter"] == karpenter.CONSOLIDATE_AFTER
        assert spec["disruption"]["budgets"] == [{"nodes": "1"}]
        # Expiry is forceful in Karpenter v1: it would drain a serving node on a timer.
        assert spec["template"]["spec"]["expireAfter"] == "Never"
    deployments = stack_runs.inputs(run, "kubernetes:apps/v1:Deployment")
    assert deployments
    for deployment in deployments:
        assert deployment["spec"]["template"]["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"


def test_model_pods_on_managed_node_groups_carry_no_karpenter_annotation():
    run = stack_runs.preview_run("prod")
    for deployment in stack_runs.inputs(run, "kubernetes:apps/v1:Deployment"):
        assert DO_NOT_DISRUPT not in deployment["spec"]["template"]["metadata"]["annotations"]
    assert not run.by_type("kubernetes:karpenter.sh/v1:NodePool")


def test_node_classes_boot_the_pinned_al2023_ami_with_imdsv2_and_encrypted_nvme_backed_storage(up_run):
    pool = _pool()
    spec = _objects(up_run, "EC2NodeClass")[pool["name"]]["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": karpenter.AL2023_ALIAS}]
    assert karpenter.AL2023_ALIAS.startswith("al2023@v")  # pinned, never @latest
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["instanceStorePolicy"] == "RAID0"
    assert spec["associatePublicIPAddress"] is False
    (root,) = spec["blockDeviceMappings"]
    assert root["ebs"]["encrypted"] is True and root["ebs"]["kmsKeyID"].startswith("arn:aws:kms:")
    assert root["ebs"]["volumeSize"] == f"{pool.get('root_volume_gib', 300)}Gi"
    assert all(term["id"].startswith("subnet-") for term in spec["subnetSelectorTerms"])
    assert len(spec["subnetSelectorTerms"]) == stack_runs.inventory_of("staging")["network"]["az_count"]
    (profile,) = [p for p in up_run.by_type("aws:iam/instanceProfile:InstanceProfile")
                  if p.name.startswith("karpenter")]  # the SSM tunnel host has its own
    assert spec["instanceProfile"] == _state(profile)["name"]


# --- controller and interruptions ---------------------------------------------------------

def test_the_controller_chart_is_pinned_and_configured_without_imds(run):
    release = _release(run)
    assert (release["chart"], release["version"]) == karpenter.KARPENTER_CHART
    assert release["chart"].startswith("oci://public.ecr.aws/karpenter/")
    values = release["values"]
    assert values["nodeSelector"] == {eks_cluster.POOL_LABEL: eks_cluster.SYSTEM_POOL}
    assert {"name": "AWS_REGION", "value": "us-west-2"} in values["controller"]["env"]
    assert values["serviceAccount"]["name"] == karpenter.SERVICE_ACCOUNT
    associations = stack_runs.inputs(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert {"namespace": karpenter.NAMESPACE, "serviceAccount": karpenter.SERVICE_ACCOUNT} in [
        {k: a[k] for k in ("namespace", "serviceAccount")} for a in associations]


def test_interruption_events_reach_the_queue_the_controller_reads(up_run):
    (queue,) = up_run.by_type("aws:sqs/queue:Queue")
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["messageRetentionSeconds"] == 300
    queue_arn = _state(queue)["arn"]
    rules = {r.name: r for r in up_run.by_type("aws:cloudwatch/eventRule:EventRule")
             if r.name.startswith("karpenter-")}
    patterns = {json.loads(r.inputs["eventPattern"])["detail-type"][0] for r in rules.values()}
    assert patterns == {"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
                        "EC2 Instance State-change Notification", "AWS Health Event"}
    targets = [t.inputs for t in up_run.by_type("aws:cloudwatch/eventTarget:EventTarget")
               if t.name.startswith("karpenter-")]
    assert {t["rule"] for t in targets} == {_state(r)["name"] for r in rules.values()}
    assert {t["arn"] for t in targets} == {queue_arn}
    (policy,) = [p.inputs for p in up_run.by_type("aws:sqs/queuePolicy:QueuePolicy")]
    (statement,) = json.loads(policy["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Resource"] == queue_arn
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(_state(r)["arn"] for r in rules.values())
    assert _release(up_run)["values"]["settings"]["interruptionQueue"] == _state(queue)["name"]


def test_the_controller_may_only_touch_this_clusters_nodes():
    policy = karpenter.controller_policy(
        partition="aws", region="us-west-2", account_id="123456789012", cluster_name="deepseek-staging",
        queue_arn="arn:aws:sqs:us-west-2:123456789012:q", node_role_arn="arn:aws:iam::123456789012:role/node",
        instance_profile_arn="arn:aws:iam::123456789012:instance-profile/p",
        data_key_arn="arn:aws:kms:us-west-2:123456789012:key/k")
    by_action: dict[str, list[dict]] = {}
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            by_action.setdefault(action, []).append(statement)
    for statement in by_action["ec2:TerminateInstances"]:
        assert statement["Condition"]["StringEquals"] == {
            "aws:ResourceTag/kubernetes.io/cluster/deepseek-staging": "owned"}
    (pass_role,) = by_action["iam:PassRole"]
    assert pass_role["Resource"] == "arn:aws:iam::123456789012:role/node"
    assert not any(a.startswith("iam:") and a not in ("iam:PassRole", "iam:GetInstanceProfile") for a in by_action)
    (queue,) = by_action["sqs:ReceiveMessage"]
    assert queue["Resource"] == "arn:aws:sqs:us-west-2:123456789012:q"


# --- inventory ----------------------------------------------------------------------------

def _inventory(change) -> dict:
    raw = copy.deepcopy(stack_runs.inventory_of("staging"))
    change(raw)
    return raw


def test_a_managed_node_group_cannot_take_two_capacity_types():
    raw = _inventory(lambda inv: inv["eks"].update(autoscaler="cluster-autoscaler"))
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="staging")
    assert "eks.gpu_pools[0].capacity_types" in str(error.value)
    assert "karpenter" in str(error.value)


def test_karpenter_pools_refuse_an_idle_node_floor():
    raw = _inventory(lambda inv: inv["eks"]["gpu_pools"][0].update(min_size=1))
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="staging")
    assert "eks.gpu_pools[0].min_size" in str(error.value)


def test_new_stacks_get_karpenter_by_default():
    raw = _inventory(lambda inv: inv["eks"].pop("autoscaler"))
    assert parse_inventory(raw, stack="staging").eks.autoscaler == "karpenter"
