"""Inventories with N models, derived from the prod stack, for benchmarks and load tests.

    python -m tools.synthetic_inventory --models 50 --out build/bench/Pulumi.bench-50.yaml

Model entries of the template stack are cloned round robin under new names
(`m007-r1-qwen-7b`), keeping their node pool, runtime, sizing and weights, so every clone
is as valid as the original. Everything the inventory validates is checked before the
file is written: the pydantic inventory (names, pools, replicas) and the gateway's
throttle check (a tier may not ask more of the models than they serve; with fewer
models than the template, tier rate and burst are halved until they fit). The result is
valid for the program and the policy pack; it is not meant to be deployed: 100 models
exceed AWS default quotas (VPC links, REST API resources, NLBs), which the offline
preview does not model.

The stack name is `bench-<N>` (not an environment name), the environment stays the
template's, so the policy pack judges it with that environment's config.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from components.config import INVENTORY_KEY, PROJECT, parse_inventory
from tools import stack_files

TEMPLATE_STACK = "prod"


def stack_name(models: int) -> str:
    return f"bench-{models}"


def inventory_with_models(count: int, template: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A raw inventory with `count` models cloned from `template` (default: prod's)."""
    if count < 1:
        raise ValueError("an inventory needs at least one model")
    if template is None:
        template = stack_files.load(TEMPLATE_STACK).config[f"{PROJECT}:{INVENTORY_KEY}"]
    inventory = copy.deepcopy(template)
    originals = inventory["models"]
    models = []
    for index in range(count):
        model = copy.deepcopy(originals[index % len(originals)])
        model["name"] = f"m{index:03d}-{model['name']}"[:63].rstrip("-")
        models.append(model)
    inventory["models"] = models
    _fit_pools(inventory, count)
    _fit_tiers(inventory, count)
    return inventory


def _fit_pools(inventory: dict[str, Any], count: int) -> None:
    """One GPU pool per cloned model (a copy of the template's pool it ran on), sized for that
    model's rollout at full scale: the pools stay within the inventory's and the pack's
    limits however many models are cloned, and resources grow linearly with models."""
    from components.serving import catalog
    from components.serving.rollout import nodes_for_rollout, pool_demands

    if inventory.get("platform") != "eks":
        return
    templates = {pool["name"]: pool for pool in inventory["eks"]["gpu_pools"]}
    pools = []
    for index, model in enumerate(inventory["models"]):
        pool = copy.deepcopy(templates[model["node_pool"]])
        pool["name"] = model["node_pool"] = f"p{index:03d}"
        pools.append(pool)
    inventory["eks"]["gpu_pools"] = pools
    parsed = parse_inventory(inventory, stack=stack_name(count), secret_keys=_secret_keys(inventory))
    for raw, pool in zip(pools, parsed.eks.gpu_pools):
        gpus_per_node = catalog.get_instance(pool.instance_type).gpu_count
        raw["max_size"] = max(raw.get("max_size", 1), nodes_for_rollout(pool_demands(parsed, pool), gpus_per_node))


def _fit_tiers(inventory: dict[str, Any], count: int) -> None:
    """Halve tier rate and burst until the gateway's throttle check accepts them."""
    from components.gateway.api import ThrottleError, gateway_throttles

    stack = stack_name(count)
    for _ in range(32):
        parsed = parse_inventory(inventory, stack=stack, secret_keys=_secret_keys(inventory))
        try:
            gateway_throttles(parsed, stack)
            return
        except ThrottleError:
            for tier in inventory["gateway"]["tiers"]:
                tier["rate_per_second"] = max(0.01, round(tier["rate_per_second"] / 2, 2))
                tier["burst"] = max(1, tier["burst"] // 2)
    raise ValueError(f"no tier throttle fits {count} models")


def _secret_keys(inventory: dict[str, Any]) -> set[str]:
    # Client keys held in config are secrets of the generated stack file too.
    return {f"{PROJECT}:{client['api_key']['config']}"
            for client in inventory["gateway"]["clients"]
            if isinstance(client.get("api_key"), dict) and "config" in client["api_key"]}


def stack_document(count: int, template_stack: str = TEMPLATE_STACK) -> dict[str, Any]:
    """A whole stack file (config with aws:region, the inventory, secure placeholders)."""
    source = yaml.safe_load(stack_files.stack_path(template_stack).read_text())
    template = source["config"][f"{PROJECT}:{INVENTORY_KEY}"]
    document = copy.deepcopy(source)
    document["config"][f"{PROJECT}:{INVENTORY_KEY}"] = inventory_with_models(count, template)
    return document


def write_stack_file(count: int, directory: Path, template_stack: str = TEMPLATE_STACK) -> Path:
    """Write `Pulumi.bench-<count>.yaml` into `directory` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Pulumi.{stack_name(count)}.yaml"
    header = (f"# Generated by `python -m tools.synthetic_inventory --models {count}` from "
              f"stacks/Pulumi.{template_stack}.yaml, for benchmarks; not for deployment.\n")
    path.write_text(header + yaml.safe_dump(stack_document(count, template_stack), sort_keys=False))
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.synthetic_inventory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, required=True, help="how many models")
    parser.add_argument("--out", type=Path, required=True, help="directory for Pulumi.bench-<N>.yaml")
    parser.add_argument("--template", default=TEMPLATE_STACK, help="stack to derive from (default prod)")
    args = parser.parse_args(argv)
    path = write_stack_file(args.models, args.out, args.template)
    print(f"{path}: stack {stack_name(args.models)} with {args.models} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
