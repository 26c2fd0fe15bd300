"""GPU node groups the cluster autoscaler recognises as GPU nodes, and can scale from zero
(issue 13): the node label the AWS provider reads, and the Auto Scaling group tags it builds
a node from when a group has no node to look at.

Sources: kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws aws_cloud_provider.go
(`GPULabel = "k8s.amazonaws.com/accelerator"`), README.md ("Special note on GPU instances";
the `k8s.io/cluster-autoscaler/node-template/{label,taint,resources}/...` tags "only required
if scaling up from 0 nodes"), aws_manager.go buildNodeFromTemplate (a template node's
capacity: CPU, memory and GPUs from the instance type, any other resource only from tags).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

import pytest

from components.eks import cluster as eks_cluster
from components.serving.catalog import INSTANCES, get_instance
from tests.program_harness import check_program
from tests.stack_runs import run_with_inventory
from tools import stack_files

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ASG_TAG = "aws:autoscaling/tag:Tag"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template/"
CA_STACKS = [s for s in stack_files.committed_stacks()
             if (stack_files.load(s).config["deepseek-serving:inventory"].get("eks") or {}).get("autoscaler")
             == "cluster-autoscaler"]
KARPENTER_STACKS = [s for s in stack_files.committed_stacks()
                    if stack_files.load(s).config["deepseek-serving:inventory"].get("platform") == "eks"
                    and s not in CA_STACKS]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
_UNITS = {"": 1, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 10 ** 3, "M": 10 ** 6,
          "G": 10 ** 9, "T": 10 ** 12}


def quantity(value: Any) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * _UNITS[unit]


def _gpu_groups(registrations: list) -> list:
    return [r for r in registrations if r.type == NODE_GROUP
            and r.inputs["labels"].get(eks_cluster.POOL_LABEL) != eks_cluster.SYSTEM_POOL]


def template_nodes(registrations: list) -> dict[str, dict]:
    """Per GPU node group, the node the autoscaler builds from its Auto Scaling group's tags
    alone (what it has when the group has no node)."""
    nodes = {}
    for group in _gpu_groups(registrations):
        # The tags on this group's Auto Scaling group: their group name comes from this node group.
        tags = {t.inputs["tag"]["key"]: t.inputs["tag"] for t in registrations
                if t.type == ASG_TAG and group.urn in t.property_dependencies.get("autoscalingGroupName", [])}
        instance = get_instance(group.inputs["instanceTypes"][0])
        node = {"labels": {}, "taints": [], "capacity": {"nvidia.com/gpu": instance.gpu_count,
                                                          "cpu": instance.vcpus,
                                                          "memory": instance.memory_gib * 2 ** 30},
                "tags": tags}
        for key, tag in tags.items():
            assert tag["propagateAtLaunch"] is False, key
            kind, _, name = key.removeprefix(TEMPLATE).partition("/")
            if kind == "label":
                node["labels"][name] = tag["value"]
            elif kind == "taint":
                value, _, effect = tag["value"].rpartition(":")
                node["taints"].append({"key": name, "value": value, "effect": effect})
            elif kind == "resources":
                node["capacity"][name] = quantity(tag["value"])
        nodes[group.inputs["labels"][eks_cluster.POOL_LABEL]] = node
    return nodes


def _pod_templates(spec: Any) -> Iterator[dict]:
    if isinstance(spec, dict):
        if "containers" in spec.get("spec", {}) and "metadata" in spec:
            yield spec
        for value in spec.values():
            yield from _pod_templates(value)


def _fits(pod: dict, node: dict) -> list[str]:
    """Why `pod` could not run on `node` in the autoscaler's simulation (empty: it fits)."""
    why = [f"nodeSelector {key}={value}" for key, value in (pod.get("nodeSelector") or {}).items()
           if node["labels"].get(key) != value]
    for taint in node["taints"]:
        if not any(t.get("key") == taint["key"] and t.get("effect") in (None, taint["effect"])
                   and (t.get("operator") == "Exists" or t.get("value") == taint["value"])
                   for t in pod.get("tolerations") or []):
            why.append(f"taint {taint}")
    requests: dict[str, float] = {}
    for container in pod["containers"]:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            requests[name] = requests.get(name, 0) + quantity(value)
    for name, value in requests.items():
        if name not in ("cpu", "memory") and value > node["capacity"].get(name, 0):
            why.append(f"{name}: requests {value:g}, template offers {node['capacity'].get(name, 0):g}")
    return why


# ---- the pieces ---------------------------------------------------------------------------

@pytest.mark.parametrize("instance_type,expected", [
    ("g5.xlarge", "nvidia-a10g"), ("g6.xlarge", "nvidia-l4"), ("g6e.xlarge", "nvidia-l40s"),
    ("p4d.24xlarge", "nvidia-tesla-a100"), ("p5.48xlarge", "nvidia-h100"), ("p5e.48xlarge", "nvidia-h200")])
def test_gpu_types_are_named_as_the_aws_provider_names_them(instance_type, expected):
    assert eks_cluster.accelerator_label(INSTANCES[instance_type]) == expected


def test_every_catalog_gpu_gets_a_valid_label_value():
    for instance in INSTANCES.values():
        value = eks_cluster.accelerator_label(instance)
        assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, (instance.name, value)


def test_node_template_tags_spell_labels_taints_and_resources_as_the_autoscaler_reads_them():
    tags = eks_cluster.node_template_tags(
        {"deepseek-serving/pool": "gpu", "k8s.amazonaws.com/accelerator": "nvidia-l4"},
        [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
        {"nvidia.com/gpu": "1", "ephemeral-storage": "200Gi"})
    assert tags == {
        "k8s.io/cluster-autoscaler/node-template/label/deepseek-serving/pool": "gpu",
        "k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator": "nvidia-l4",
        "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu": "true:NoSchedule",
        "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu": "1",
        "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage": "200Gi",
    }


# ---- the committed stacks -------------------------------------------------------------------

def _check_gpu_groups(registrations: list) -> None:
    groups = _gpu_groups(registrations)
    assert groups
    nodes = template_nodes(registrations)
    for group in groups:
        labels = group.inputs["labels"]
        instance = get_instance(group.inputs["instanceTypes"][0])
        assert labels[eks_cluster.GPU_ACCELERATOR_LABEL] == eks_cluster.accelerator_label(instance)
        node = nodes[labels[eks_cluster.POOL_LABEL]]
        # The template says what the group's nodes will carry: every label, every taint.
        assert node["labels"] == labels, group.name
        assert node["taints"] == [{"key": t["key"], "value": t["value"], "effect": _EFFECTS[t["effect"]]}
                                  for t in group.inputs["taints"]], group.name
        assert node["capacity"]["nvidia.com/gpu"] == instance.gpu_count
        assert node["capacity"]["ephemeral-storage"] > 0


@pytest.mark.parametrize("stack", CA_STACKS)
def test_gpu_node_groups_carry_the_accelerator_label_and_their_template_tags(stack):
    check_program(stack, lambda program, registrations: _check_gpu_groups(registrations))


@lru_cache(maxsize=None)
def _from_zero(stack: str):
    def every_pool_from_zero(inventory: dict) -> None:
        for pool in inventory["eks"]["gpu_pools"]:
            pool["min_size"] = 0
    return run_with_inventory(stack, every_pool_from_zero, preview=False)


@pytest.mark.parametrize("stack", CA_STACKS)
def test_from_zero_every_model_pod_fits_the_template_of_its_own_pool_only(stack):
    registrations = _from_zero(stack).registrations
    nodes = template_nodes(registrations)
    assert {n["labels"][eks_cluster.POOL_LABEL] for n in nodes.values()} == set(nodes)
    workloads = [r for r in registrations if r.type in ("kubernetes:apps/v1:Deployment",
                                                        "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")]
    assert workloads
    for workload in workloads:
        for template in _pod_templates(workload.inputs["spec"]):
            pod = template["spec"]
            pool = pod["nodeSelector"][eks_cluster.POOL_LABEL]
            assert _fits(pod, nodes[pool]) == [], f"{workload.name} on {pool}: {_fits(pod, nodes[pool])}"
            for other, node in nodes.items():
                if other != pool:
                    assert _fits(pod, node), f"{workload.name} would also scale up {other}"


def test_without_the_tags_a_pool_at_zero_could_not_be_scaled_up():
    # The simulation above is only as good as its failures: drop the resource tags and the
    # model pods' ephemeral-storage request finds no room on the template.
    registrations = [r for r in _from_zero("prod").registrations
                     if not (r.type == ASG_TAG and "/resources/ephemeral-storage" in r.inputs["tag"]["key"])]
    nodes = template_nodes(registrations)
    (workload, *_) = [r for r in registrations if r.type == "kubernetes:apps/v1:Deployment"]
    pod = next(_pod_templates(workload.inputs["spec"]))["spec"]
    assert any("ephemeral-storage" in why for why in _fits(pod, nodes[pod["nodeSelector"][eks_cluster.POOL_LABEL]]))


@pytest.mark.parametrize("stack", KARPENTER_STACKS)
def test_karpenter_stacks_need_neither_the_label_nor_the_tags(stack):
    # Karpenter reads each instance type's GPUs from EC2 itself and the cluster autoscaler does
    # not run beside it: no managed GPU node groups, no template tags.
    def check(program, registrations):
        assert _gpu_groups(registrations) == []
        assert [r for r in registrations if r.type == ASG_TAG] == []
    check_program(stack, check)
