"""Room for a rolling update at full scale: a surge replica needs GPUs beyond max_replicas.

Every rollout here replaces a replica by starting the new one first (EKS Deployments with
maxSurge 1 / maxUnavailable 0, EC2 instance refreshes at 100-200 % healthy), so serving
capacity never drops. At max_replicas that new replica needs capacity the autoscaler's
ceiling does not include: without it the new pod stays Pending (or the refresh waits), and
`pulumi up`, which waits for the rollout, hangs until it times out, in the middle of, for
example, a backend key rotation whose old key the gateway no longer sends.

Decision: keep the zero-downtime strategy and make room for it.
- EC2: the fleet's Auto Scaling group gets max_replicas + ROLLOUT_SURGE instances as its
  max size (``asg_max_size``); the extra instance is launched only for replacements or
  sustained load beyond the planned capacity, and the gateway throttles are still computed
  for max_replicas, so it is never promised to clients.
- EKS: the node pools are the operator's inventory, so the preview refuses a pool whose
  max_size cannot hold every model on it at max_replicas plus one surge replica each (key
  rotations touch every model at once), naming the numbers and the max_size that fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from components.config import Inventory, stack_file_for

# Replicas a rolling update starts before it stops an old one (Deployment maxSurge).
ROLLOUT_SURGE = 1


class RolloutHeadroomError(ValueError):
    """A pool too small for a rolling update at full scale; the message proposes the fix."""


@dataclass(frozen=True)
class PoolDemand:
    model: str
    max_replicas: int
    gpus_per_replica: int

    @property
    def gpus_at_rollout(self) -> int:
        return (self.max_replicas + ROLLOUT_SURGE) * self.gpus_per_replica


def asg_max_size(max_replicas: int) -> int:
    """An EC2 fleet's Auto Scaling group max size: room for one replacement at full scale."""
    return max_replicas + ROLLOUT_SURGE


def nodes_for_rollout(demands: list[PoolDemand], gpus_per_node: int) -> int:
    """Nodes a pool needs so every model can surge at max_replicas at the same time.

    Replicas do not span nodes: a model whose replica takes g GPUs fits gpus_per_node // g
    replicas on a node (tensor-parallel sizes divide the node's GPUs, so GPUs pack fully
    when every model's size divides the node; otherwise each model is packed on its own).
    """
    if all(gpus_per_node % d.gpus_per_replica == 0 for d in demands):
        return math.ceil(sum(d.gpus_at_rollout for d in demands) / gpus_per_node)
    # A replica larger than a node (pipeline stages on several nodes) takes whole nodes.
    return sum((d.max_replicas + ROLLOUT_SURGE) * math.ceil(d.gpus_per_replica / gpus_per_node)
               if d.gpus_per_replica > gpus_per_node else
               math.ceil((d.max_replicas + ROLLOUT_SURGE) / max(1, gpus_per_node // d.gpus_per_replica))
               for d in demands)


def pool_demands(inventory: Inventory, pool) -> list[PoolDemand]:
    """What the models scheduled on an EKS GPU pool ask of it at full scale."""
    from components.serving import catalog
    from components.serving.runtimes import render_for_inventory

    instance = catalog.get_instance(pool.instance_type)
    demands = []
    for model in (m for m in inventory.models if m.node_pool == pool.name):
        launch = render_for_inventory(inventory, model)
        # Tensor x data-parallel GPUs per node, times the nodes a replica spans.
        gpus = (launch.capacity.gpus_per_node * launch.capacity.pipeline_parallel
                if launch.capacity else instance.gpu_count)
        demands.append(PoolDemand(model.name, model.max_replicas, gpus))
    return demands


def check_rollout_headroom(inventory: Inventory, stack: str) -> None:
    """Refuse an EKS GPU pool whose max_size leaves no room for the rollout surge."""
    if inventory.platform != "eks" or inventory.eks is None:
        return
    from components.serving import catalog

    for index, pool in enumerate(inventory.eks.gpu_pools):
        demands = pool_demands(inventory, pool)
        if not demands:
            continue
        instance = catalog.get_instance(pool.instance_type)
        needed = nodes_for_rollout(demands, instance.gpu_count)
        if pool.max_size >= needed:
            continue
        replicas = ", ".join(f"{d.model} max_replicas {d.max_replicas} x {d.gpus_per_replica} GPU(s)"
                             for d in demands)
        raise RolloutHeadroomError(
            f"{stack_file_for(stack)}: invalid inventory\n"
            f"  deepseek-serving:inventory.eks.gpu_pools[{index}].max_size: {pool.max_size} is not "
            f"allowed: pool {pool.name} ({pool.instance_type}, {instance.gpu_count} GPU(s) per node) "
            f"must hold {replicas} plus {ROLLOUT_SURGE} surge replica per model for a rolling "
            f"update at full scale (maxSurge {ROLLOUT_SURGE}, maxUnavailable 0): {needed} nodes. "
            f"With {pool.max_size} the new pods of a key rotation or image update stay Pending and "
            f"`pulumi up` waits for a rollout that cannot finish. Set max_size >= {needed}, or lower "
            f"the models' max_replicas")
