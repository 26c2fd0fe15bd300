"""Admission of a stack's inventory: every check that can refuse it, before anything registers.

A model that does not fit its GPU, a throttle above what the models serve, an alarm
threshold the runtimes exceed by design: each is refused here, so `pulumi up` never starts
on a stack it would have to abandon halfway. Refusals read like a bad inventory value.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

from components.config import INVENTORY_KEY, PROJECT, Inventory, InventoryError, load_inventory, stack_file_for
from components.gateway.api import ThrottleError, gateway_throttles, routes_for, stage_specs
from components.observability import ObservabilityError, check_alarm_thresholds
from components.serving import catalog
from components.serving.availability import offering_problem
from components.serving.catalog import CatalogError, spot_instance_types
from components.serving.images import UPSTREAMS_BY_NAME, ImageSourceError, host_image
from components.serving.rollout import RolloutHeadroomError, check_rollout_headroom
from components.serving.runtimes import LaunchError, render_for_inventory
from components.serving.sizing import SizingError
from components.serving.storage import StorageError, check_storage

INVENTORY_PROBLEMS = (InventoryError, SizingError, ThrottleError, ObservabilityError, LaunchError,
                      CatalogError, RolloutHeadroomError, StorageError)


def require_engine() -> None:
    """Run by hand (`python __main__.py`), the program has no engine and no stack: say how
    to run it instead of failing on a stack file named after no stack."""
    from pulumi.runtime.settings import SETTINGS

    if SETTINGS.monitor is None:
        print("This is a Pulumi program; it runs under the Pulumi engine, not on its own.\n"
              "  offline:  make preview STACK=dev        (no CLI or cloud credentials needed)\n"
              "  live:     make preview-live STACK=dev   (pulumi preview with the policy pack)\n"
              "            make up STACK=dev             (pulumi up with the policy pack)", file=sys.stderr)
        raise SystemExit(2)


class InventoryRefused(Exception):
    """The inventory cannot be served; the message says where and what to change."""


# Stack config `deepseek-serving:phase`. The first apply of a private EKS stack runs phase
# "cluster" (network, keys, cluster, node groups, the SSM tunnel host: nothing that needs
# to reach inside the cluster); every apply after it, and every EC2 stack, runs "all".
PHASES = ("cluster", "all")


def read_phase(stack: str, inventory: Inventory) -> str:
    import pulumi

    phase = pulumi.Config(PROJECT).get("phase") or "all"
    where = f"{stack_file_for(stack)}: config {PROJECT}:phase"
    if phase not in PHASES:
        raise InventoryError(f"{where}: {phase!r} is not a phase; allowed: {', '.join(PHASES)} "
                             "(make up PHASE=cluster for the first apply of a private EKS stack)")
    if phase == "cluster" and inventory.platform != "eks":
        raise InventoryError(f"{where}: phase cluster exists for EKS stacks, whose private API the first "
                             "apply cannot reach yet; an EC2 stack deploys in one apply (drop PHASE)")
    return phase


@dataclass(frozen=True)
class AdmittedInventory:
    inventory: Inventory
    phase: str
    # Per model and gateway method, the throttle its capacity at max_replicas allows.
    gateway_throttles: Any


def admit(stack: str, platform_check: Optional[Callable[[Inventory, str], None]] = None) -> AdmittedInventory:
    """The inventory, refused (InventoryRefused) if anything would fail once resources register.

    `platform_check` is the composition layer's (components/platforms.py check_platform): the
    platforms sit above this module, so their own refusals are passed in, not imported."""
    try:
        inventory = load_inventory()
        phase = read_phase(stack, inventory)
        check_catalog(inventory, stack)
        for index, model in enumerate(inventory.models):
            launch = render_for_inventory(inventory, model)
            # Weights plus caches must fit where they land, or the pod/host never starts.
            check_storage(inventory, model, launch.weights_gib)
            if model.spot is not None:
                # Alternatives that would change the replica's sizing are refused here, before
                # anything registers.
                try:
                    spot_instance_types(inventory.gpu_instance_type(model), model.spot.instance_types)
                except CatalogError as error:
                    raise InventoryError(
                        f"{stack_file_for(stack)}: invalid inventory\n  {PROJECT}:{INVENTORY_KEY}."
                        f"models[{index}].spot.instance_types: {error}") from None
        check_image_sources(inventory, stack)
        throttles = gateway_throttles(inventory, stack)
        check_wake_alarms(inventory, stack)
        check_rollout_headroom(inventory, stack)
        check_alarm_thresholds(inventory, stack)
        if platform_check is not None:
            platform_check(inventory, stack)
    except INVENTORY_PROBLEMS as error:
        raise InventoryRefused(str(error)) from None
    return AdmittedInventory(inventory=inventory, phase=phase, gateway_throttles=throttles)


def gpu_instance_paths(inventory: Inventory) -> list[tuple[str, str]]:
    """(key path, instance type) of every GPU instance type the inventory names."""
    if inventory.platform == "ec2":
        return [(f"models[{i}].instance_type", m.instance_type) for i, m in enumerate(inventory.models)]
    return [(f"eks.gpu_pools[{i}].instance_type", p.instance_type) for i, p in enumerate(inventory.eks.gpu_pools)]


def check_catalog(inventory: Inventory, stack: str) -> None:
    """Every model and GPU the inventory names is catalogued, and offered where it would run.

    The serving layer sizes only what the catalog describes; the snapshot of offerings
    refuses a GPU the region (or the chosen zones) did not sell, before anything registers.
    """
    key = f"{PROJECT}:inventory"
    problems = []
    served = sorted(spec.hf_repo for spec in catalog.MODELS.values())
    for index, model in enumerate(inventory.models):
        if model.hf_repo not in served:
            problems.append(f"  {key}.models[{index}].hf_repo: {model.hf_repo!r} is not in the catalog, so "
                            f"it cannot be sized; the catalog has: {', '.join(served)}")
    for path, instance_type in gpu_instance_paths(inventory):
        if instance_type not in catalog.INSTANCES:
            problems.append(f"  {key}.{path}: {instance_type!r} is not a catalogued GPU instance type; "
                            f"the catalog has: {', '.join(sorted(catalog.INSTANCES))}")
            continue
        problem = offering_problem(inventory.region, instance_type, az_count=inventory.network.az_count,
                                   zones=tuple(inventory.network.availability_zones))
        if problem:
            problems.append(f"  {key}.{path}: {problem}")
    if problems:
        raise InventoryError(f"{stack_file_for(stack)}: invalid inventory\n" + "\n".join(problems))


# "Alarms based on metric math expressions can reference a maximum of 10 metrics. This is a
# hard limit" (CloudWatch "Limits that apply to alarms based on metric math expressions").
MATH_ALARM_METRICS = 10


def check_wake_alarms(inventory: Inventory, stack: str) -> None:
    """An EC2 model that scales to zero wakes on one alarm over its routes' request counts on
    every stage, plus the group's desired capacity (components/ec2/wake.py): with a stage
    per tier that is routes x tiers + 1 metrics, which CloudWatch caps at 10 per alarm."""
    if inventory.platform != "ec2":
        return
    stages = len(stage_specs(inventory.gateway))
    for index, model in enumerate(inventory.models):
        metrics = len(routes_for([model.name])) * stages + 1
        if model.min_replicas == 0 and metrics > MATH_ALARM_METRICS:
            most = (MATH_ALARM_METRICS - 1) // len(routes_for([model.name]))
            raise InventoryError(
                f"{stack_file_for(stack)}: invalid inventory\n  {PROJECT}:{INVENTORY_KEY}.models[{index}]."
                f"min_replicas: 0 is not allowed: {model.name} would wake on an alarm over "
                f"{len(routes_for([model.name]))} routes on each of {stages} tier stages plus its group, "
                f"{metrics} metrics, and CloudWatch allows {MATH_ALARM_METRICS} per alarm: set min_replicas "
                f"to 1 or more, or use at most {most} tiers with gateway.stage_per_tier")


def check_image_sources(inventory: Inventory, stack: str) -> None:
    """EC2 hosts pull every image from ECR in the stack's region (they have no internet
    egress): an image elsewhere must come through a pull-through cache rule, and an upstream
    that requires sign-in needs its credential's ARN in image_cache.credentials."""
    if inventory.platform != "ec2":
        return
    key = f"{PROJECT}:{INVENTORY_KEY}"
    problems = []
    signed_in: dict[str, list[str]] = {}
    for index, model in enumerate(inventory.models):
        image = render_for_inventory(inventory, model).image
        path = f"models[{index}].image" if model.image else f"models[{index}].runtime"
        try:
            # The account only shapes the reference; any well-formed one checks the source.
            pulled = host_image(image, account="000000000000", region=inventory.region, stack=stack)
        except ImageSourceError as error:
            problems.append(f"  {key}.{path}: {error}")
            continue
        upstream = pulled.upstream
        if upstream and upstream.credential_required and upstream.name not in inventory.image_cache.credentials:
            signed_in.setdefault(upstream.name, []).append(f"{model.name} ({image})")
    for name, users in signed_in.items():
        upstream = UPSTREAMS_BY_NAME[name]
        problems.append(
            f"  {key}.image_cache.credentials.{name}: is required but missing: {', '.join(users)} come "
            f"from {upstream.url}, which ECR's pull-through cache signs in to; store a username and access "
            f"token in Secrets Manager as ecr-pullthroughcache/{name} in {inventory.region} and give the "
            f"secret's ARN here (docs/OPERATIONS.md, Runtime images on EC2)")
    if problems:
        raise InventoryError(f"{stack_file_for(stack)}: invalid inventory\n" + "\n".join(problems))

