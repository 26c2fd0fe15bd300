"""Where a model's weights land on a node, how much room they need there, and whether it fits.

At 671B parameters the weights (about 630 GiB in FP8) no longer fit the default root volume
of a GPU node, and a pod whose ephemeral-storage request exceeds what its node can offer is
never scheduled: it sits Pending while the preview looked green. So the fit is checked at
admission, against the storage the weights really land on:
- EC2: the model cache is an EBS volume sized from the weights (gp3 tops out at 16 TiB),
  or the instance's NVMe store, assembled as RAID0 and mounted at boot (components/ec2/host.py).
- EKS: the pod's emptyDirs (weights, Ollama's store, /tmp) are pod ephemeral storage, which
  kubelet takes from the node's root volume, or from the instance store when the pool sets
  `local_storage: instance_store` (AL2023 nodeadm `localStorage.strategy: RAID0` puts
  kubelet and containerd there: https://awslabs.github.io/amazon-eks-ami/nodeadm/doc/api/).
  The runtime image (unpacked by containerd) shares the same filesystem, and kubelet's
  default hard eviction threshold (`nodefs.available<10%`) keeps a tenth of it free
  (https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/).
Refusals name the key to change and the value that would fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from components.config import Inventory, Model, NodePool
from components.serving.catalog import InstanceSpec, get_instance

# gp3's largest volume (https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html).
EBS_MAX_GIB = 16384
# A runtime image as containerd keeps it: compressed layers plus the unpacked snapshot
# (vLLM and TGI images are 10-25 GB unpacked).
RUNTIME_IMAGE_GIB = 40
# The OS, kubelet logs and container logs on an AL2023 root volume.
NODE_SYSTEM_GIB = 20
# kubelet's default hard eviction threshold: nodefs.available < 10%.
EVICTION_RESERVE = 0.10
# Scratch for compile caches and the like under /tmp in the pod.
TMP_GIB = 10


class StorageError(ValueError):
    """Weights and caches that do not fit where they land; the message proposes the fix."""


@dataclass(frozen=True)
class PodScratch:
    """A model pod's emptyDirs in GiB: the staged weights, Ollama's second copy, /tmp."""

    weights_gib: int
    store_gib: Optional[int]
    tmp_gib: int

    @property
    def total_gib(self) -> int:
        return self.weights_gib + (self.store_gib or 0) + self.tmp_gib


def pod_scratch(weights_gib: float, runtime: str) -> PodScratch:
    """Weights plus 10% for the download's partial files and a little slack."""
    weights = int(math.ceil(weights_gib * 1.1)) + 2
    return PodScratch(weights_gib=weights, store_gib=weights if runtime == "ollama" else None,
                      tmp_gib=TMP_GIB)


def cache_volume_gib(weights_gib: float, runtime: str) -> int:
    """EC2 model cache: the weights plus staging headroom (Ollama also copies the GGUF
    into its store)."""
    copies = 2.2 if runtime == "ollama" else 1.25
    return int(math.ceil((weights_gib * copies + 20) / 10.0)) * 10


def node_ephemeral_gib(pool: NodePool, instance: InstanceSpec) -> int:
    """What pods on one node of `pool` can use for ephemeral storage, images excluded."""
    if pool.local_storage == "instance_store":
        disk = instance.instance_store_gib
        return int(disk * (1 - EVICTION_RESERVE)) - RUNTIME_IMAGE_GIB
    return int(pool.root_volume_gib * (1 - EVICTION_RESERVE)) - NODE_SYSTEM_GIB - RUNTIME_IMAGE_GIB


def root_volume_for(scratch_gib: int) -> int:
    """The smallest root volume (GiB, rounded up to 50) on which `scratch_gib` fits."""
    needed = (scratch_gib + NODE_SYSTEM_GIB + RUNTIME_IMAGE_GIB) / (1 - EVICTION_RESERVE)
    return int(math.ceil(needed / 50.0)) * 50


def check_storage(inventory: Inventory, model: Model, weights_gib: float) -> None:
    """Refuse a model whose weights and caches do not fit the storage they land on."""
    if inventory.platform == "eks":
        _check_eks(inventory, model, weights_gib)
    else:
        _check_ec2(inventory, model, weights_gib)


def _check_eks(inventory: Inventory, model: Model, weights_gib: float) -> None:
    assert inventory.eks is not None  # guaranteed by the inventory's cross-checks
    index, pool = next((i, p) for i, p in enumerate(inventory.eks.gpu_pools) if p.name == model.node_pool)
    instance = get_instance(pool.instance_type)
    scratch = pod_scratch(weights_gib, model.runtime).total_gib
    where = f"models {model.name}: on pool {pool.name} ({pool.instance_type})"
    if pool.local_storage == "instance_store" and instance.instance_store_gib == 0:
        raise StorageError(
            f"eks.gpu_pools[{index}].local_storage: {where} has no instance store in the "
            f"catalog; use local_storage ebs (root_volume_gib >= {root_volume_for(scratch)})")
    available = node_ephemeral_gib(pool, instance)
    if scratch <= available:
        return
    if pool.local_storage == "ebs":
        fixes = []
        if instance.instance_store_gib and scratch <= int(
                instance.instance_store_gib * (1 - EVICTION_RESERVE)) - RUNTIME_IMAGE_GIB:
            fixes.append(f"local_storage: instance_store ({instance.instance_store_disks} NVMe "
                         f"disks, {instance.instance_store_gib} GiB as RAID0)")
        needed = root_volume_for(scratch)
        if needed <= EBS_MAX_GIB:
            fixes.append(f"root_volume_gib: {needed}")
        raise StorageError(
            f"eks.gpu_pools[{index}]: {where} the pod needs {scratch} GiB of ephemeral storage "
            f"(weights {weights_gib:.0f} GiB staged plus caches) but a node offers {available} "
            f"GiB of its {pool.root_volume_gib} GiB root volume after the OS, the runtime image "
            f"and kubelet's 10% eviction reserve; the pod would never be scheduled. Set "
            + " or ".join(fixes))
    raise StorageError(
        f"eks.gpu_pools[{index}]: {where} the pod needs {scratch} GiB of ephemeral storage but "
        f"the instance store offers {available} GiB; use a larger instance type or a smaller "
        f"quantization")


def _check_ec2(inventory: Inventory, model: Model, weights_gib: float) -> None:
    index = inventory.models.index(model)
    instance = get_instance(model.instance_type or "")
    cache = cache_volume_gib(weights_gib, model.runtime)
    where = f"models[{index}] ({model.name} on {instance.name})"
    if model.local_storage == "instance_store":
        if instance.instance_store_gib == 0:
            raise StorageError(
                f"models[{index}].local_storage: {where} has no instance store in the catalog; "
                f"use local_storage ebs (a {cache} GiB gp3 cache volume)")
        available = int(instance.instance_store_gib * (1 - EVICTION_RESERVE))
        if cache > available:
            raise StorageError(
                f"models[{index}].local_storage: {where} needs {cache} GiB for weights and "
                f"staging but the instance store holds {available} GiB; use a larger instance type")
        return
    if cache > EBS_MAX_GIB:
        fix = (f"local_storage: instance_store ({instance.instance_store_gib} GiB NVMe)"
               if instance.instance_store_gib * (1 - EVICTION_RESERVE) >= cache else
               "a smaller quantization")
        raise StorageError(
            f"models[{index}]: {where} needs a {cache} GiB model cache, above gp3's "
            f"{EBS_MAX_GIB} GiB; use {fix}")
