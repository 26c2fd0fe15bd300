"""`make cost STACK=<s>`: what a stack's plan costs per month, from a dated price snapshot.

Input: a plan (`deepseek-serving/plan@1`, tools/plan.py), built by an offline preview or
read from a file. Prices: tools/prices.json, a dated snapshot of AWS's public price pages
(its `sources` name the page per service). Nothing here calls AWS.

What is counted, per month (730 hours):
- GPU and system instances at the minimum and at the maximum replica or node count:
  EC2 Auto Scaling groups (instance type from the fleet's launch template; a mixed
  instances policy splits each count into on-demand and spot), EKS managed node groups,
  and Karpenter NodePools (maximum: the pool's nvidia.com/gpu limit in nodes; minimum: the
  nodes the pool's Deployments need at their starting replica count).
- Spot is a range: at most `spot.max_discount` off (AWS's "up to 90%"), at most the
  on-demand price (what the on-demand fallback pays when spot has no capacity).
- NAT gateways, interface VPC endpoints (per AZ), network load balancers, EKS clusters:
  hourly charges only; data processed and load balancer capacity units are usage.
- API Gateway and WAF requests at the tiers' quotas: every API key using its whole quota,
  the most the gateway will admit (REST request tiers applied), plus WAF's web ACL and
  per-rule monthly charges.
A type or region the snapshot lacks is listed as unpriced, never guessed.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from components.serving.catalog import CatalogError, get_instance

# components.eks.cluster.POOL_LABEL (the node label model pods select), spelled out so the
# diff tool does not import the providers just to read plans; a test keeps them equal.
POOL_LABEL = "deepseek-serving/pool"

PRICES = Path(__file__).resolve().parent / "prices.json"
# Months per quota period (730-hour month).
QUOTA_PERIODS_PER_MONTH = {"DAY": 730 / 24, "WEEK": 730 / 168, "MONTH": 1.0}

Range = tuple[float, float]


@dataclass
class Line:
    item: str
    detail: str
    at_min: Range
    at_max: Range


@dataclass
class Estimate:
    stack: str
    region: str
    snapshot_date: str
    lines: list[Line] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    @property
    def total_min(self) -> Range:
        return (sum(l.at_min[0] for l in self.lines), sum(l.at_min[1] for l in self.lines))

    @property
    def total_max(self) -> Range:
        return (sum(l.at_max[0] for l in self.lines), sum(l.at_max[1] for l in self.lines))


class CostError(ValueError):
    """A plan or price snapshot the estimate cannot read."""


def load_prices(path: Path = PRICES) -> dict:
    return json.loads(path.read_text())


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Pricer:
    def __init__(self, prices: dict, region: str, estimate: Estimate):
        regions = prices.get("regions", {})
        if region not in regions:
            raise CostError(f"the price snapshot of {prices.get('snapshot_date')} has no prices for "
                            f"{region}; priced regions: {', '.join(sorted(regions))}")
        self.table = regions[region]
        self.hours = float(prices["hours_per_month"])
        self.spot_floor = 1.0 - float(prices["spot"]["max_discount"])
        self.estimate = estimate

    def hourly(self, key: str) -> float:
        return float(self.table[key])

    def instance(self, instance_type: Any) -> Optional[float]:
        price = self.table.get("ec2_hourly", {}).get(instance_type) if isinstance(instance_type, str) else None
        if price is None:
            note = f"instance type {instance_type}"
            if note not in self.estimate.unpriced:
                self.estimate.unpriced.append(note)
        return price

    def fleet(self, hourly: float, on_demand: int, spot: int) -> Range:
        monthly = hourly * self.hours
        return (monthly * (on_demand + spot * self.spot_floor), monthly * (on_demand + spot))

    def requests(self, count: float) -> float:
        """REST API request charges with AWS's volume tiers."""
        cost, left = 0.0, count
        for size, per_million in self.table["api_gateway_rest_per_million"]:
            step = left if size is None else min(left, size)
            cost += step / 1e6 * per_million
            left -= step
            if left <= 0:
                break
        return cost


def _resources(plan: dict, type_token: str) -> list[dict]:
    return [r for r in plan.get("resources", []) if r.get("type") == type_token]


def plan_region(plan: dict) -> str:
    for provider in _resources(plan, "pulumi:providers:aws"):
        region = provider.get("inputs", {}).get("region")
        if isinstance(region, str) and region:
            return region
    raise CostError("the plan has no AWS provider with a region")


def split_on_demand(count: int, base: int, percent_on_demand: int) -> tuple[int, int]:
    """(on-demand, spot) instances of a mixed instances group at `count`; Auto Scaling rounds
    the on-demand share above the base up."""
    on_demand = min(count, base)
    above = count - on_demand
    extra = math.ceil(above * percent_on_demand / 100)
    return on_demand + extra, above - extra


def _asg_lines(plan: dict, pricer: _Pricer) -> Iterable[Line]:
    templates = {r["component"]: r["inputs"] for r in _resources(plan, "aws:ec2/launchTemplate:LaunchTemplate")}
    for group in _resources(plan, "aws:autoscaling/group:Group"):
        inputs = group["inputs"]
        low, high = int(_number(inputs.get("minSize")) or 0), int(_number(inputs.get("maxSize")) or 0)
        mixed = inputs.get("mixedInstancesPolicy") or {}
        overrides = (mixed.get("launchTemplate") or {}).get("overrides") or []
        instance_type = (overrides[0].get("instanceType") if overrides
                         else templates.get(group["component"], {}).get("instanceType"))
        price = pricer.instance(instance_type)
        if price is None:
            continue
        distribution = mixed.get("instancesDistribution")
        if distribution:
            base = int(_number(distribution.get("onDemandBaseCapacity")) or 0)
            percent = int(_number(distribution.get("onDemandPercentageAboveBaseCapacity")) or 0)
        else:
            base, percent = 0, 100
        name = group["component"].split(" ", 1)[-1] or group["name"]
        kind = f", spot above {base} on-demand" if distribution else ""
        yield Line(f"GPU fleet {name}", f"{instance_type} x {low}..{high}{kind}",
                   pricer.fleet(price, *split_on_demand(low, base, percent)),
                   pricer.fleet(price, *split_on_demand(high, base, percent)))


def _node_group_lines(plan: dict, pricer: _Pricer) -> Iterable[Line]:
    for group in _resources(plan, "aws:eks/nodeGroup:NodeGroup"):
        inputs = group["inputs"]
        scaling = inputs.get("scalingConfig") or {}
        low, high = int(_number(scaling.get("minSize")) or 0), int(_number(scaling.get("maxSize")) or 0)
        types = inputs.get("instanceTypes") or []
        price = pricer.instance(types[0] if types else None)
        if price is None:
            continue
        spot = str(inputs.get("capacityType", "ON_DEMAND")).upper() == "SPOT"
        yield Line(f"node group {group['name']}", f"{types[0]} x {low}..{high}{', spot' if spot else ''}",
                   pricer.fleet(price, 0, low) if spot else pricer.fleet(price, low, 0),
                   pricer.fleet(price, 0, high) if spot else pricer.fleet(price, high, 0))


def _pool_gpus_at_start(plan: dict) -> dict[str, int]:
    """GPUs the Deployments pinned to each pool ask for at their starting replica count."""
    wanted: dict[str, int] = {}
    for deployment in _resources(plan, "kubernetes:apps/v1:Deployment"):
        spec = deployment["inputs"].get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        pool = (pod.get("nodeSelector") or {}).get(POOL_LABEL)
        if not pool:
            continue
        gpus = sum(int(_number(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu"))
                       or float(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0) or 0))
                   for c in pod.get("containers") or [])
        wanted[pool] = wanted.get(pool, 0) + gpus * int(_number(spec.get("replicas")) or 0)
    return wanted


def _node_pool_lines(plan: dict, pricer: _Pricer) -> Iterable[Line]:
    pools: dict[str, list[dict]] = {}
    for node_pool in _resources(plan, "kubernetes:karpenter.sh/v1:NodePool"):
        spec = node_pool["inputs"].get("spec") or {}
        label = ((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).get(POOL_LABEL)
        pools.setdefault(label or node_pool["name"], []).append(spec)
    wanted = _pool_gpus_at_start(plan)
    for pool, specs in sorted(pools.items()):
        capacity, declared, limit = set(), None, 0
        for spec in specs:
            requirements = {r.get("key"): r.get("values") or [] for r in
                            ((spec.get("template") or {}).get("spec") or {}).get("requirements") or []}
            kinds = requirements.get("karpenter.sh/capacity-type") or ["on-demand"]
            capacity.update(kinds)
            types = requirements.get("node.kubernetes.io/instance-type") or []
            if "on-demand" in kinds and types:
                declared = types[0]
            declared = declared or (types[0] if types else None)
            limit = max(limit, int(float(str((spec.get("limits") or {}).get("nvidia.com/gpu", 0)))))
        price = pricer.instance(declared)
        if price is None:
            continue
        try:
            per_node = get_instance(declared).gpu_count
        except CatalogError:
            pricer.estimate.unpriced.append(f"GPUs per node of {declared}")
            continue
        low, high = math.ceil(wanted.get(pool, 0) / per_node), limit // per_node
        spot = "spot" in capacity

        def cost(nodes: int) -> Range:
            if not spot:
                return pricer.fleet(price, nodes, 0)
            return (pricer.fleet(price, 0, nodes)[0], pricer.fleet(price, nodes, 0)[1])

        yield Line(f"Karpenter pool {pool}", f"{declared} x {low}..{high}, {' then '.join(sorted(capacity, reverse=True))}",
                   cost(low), cost(high))


def _fixed_lines(plan: dict, pricer: _Pricer) -> Iterable[Line]:
    month = pricer.hours

    def flat(item: str, detail: str, monthly: float) -> Line:
        return Line(item, detail, (monthly, monthly), (monthly, monthly))

    clusters = len(_resources(plan, "aws:eks/cluster:Cluster"))
    if clusters:
        yield flat("EKS control plane", f"{clusters} cluster(s)", clusters * pricer.hourly("eks_cluster_hourly") * month)
    nats = len(_resources(plan, "aws:ec2/natGateway:NatGateway"))
    if nats:
        yield flat("NAT gateways", f"{nats} (hourly; data processed is usage)",
                   nats * pricer.hourly("nat_gateway_hourly") * month)
    zones = sum(len(e["inputs"].get("subnetIds") or []) for e in _resources(plan, "aws:ec2/vpcEndpoint:VpcEndpoint")
                if e["inputs"].get("vpcEndpointType") == "Interface")
    if zones:
        yield flat("interface VPC endpoints", f"{zones} endpoint-AZs",
                   zones * pricer.hourly("interface_endpoint_hourly_per_az") * month)
    nlbs = sum(1 for lb in _resources(plan, "aws:lb/loadBalancer:LoadBalancer")
               if lb["inputs"].get("loadBalancerType") == "network")
    if nlbs:
        yield flat("network load balancers", f"{nlbs} (hourly; capacity units are usage)",
                   nlbs * pricer.hourly("nlb_hourly") * month)


def quota_requests(plan: dict) -> float:
    """Requests per month if every API key used its tier's whole quota."""
    tiers: dict[str, float] = {}
    for usage_plan in _resources(plan, "aws:apigateway/usagePlan:UsagePlan"):
        quota = usage_plan["inputs"].get("quotaSettings") or {}
        found = re.search(r"tier (\S+):", str(usage_plan["inputs"].get("description", "")))
        limit, period = _number(quota.get("limit")), quota.get("period")
        if found and limit is not None and period in QUOTA_PERIODS_PER_MONTH:
            tiers[found.group(1)] = limit * QUOTA_PERIODS_PER_MONTH[period]
    total = 0.0
    for key in _resources(plan, "aws:apigateway/apiKey:ApiKey"):
        found = re.search(r"tier (\S+)$", str(key["inputs"].get("description", "")))
        if found:
            total += tiers.get(found.group(1), 0.0)
    return total


def _request_lines(plan: dict, pricer: _Pricer) -> Iterable[Line]:
    requests = quota_requests(plan)
    if _resources(plan, "aws:apigateway/restApi:RestApi"):
        cost = pricer.requests(requests)
        yield Line("API Gateway requests", f"{requests / 1e6:,.2f} M/month at the tiers' quotas",
                   (0.0, cost), (0.0, cost))
    for acl in _resources(plan, "aws:wafv2/webAcl:WebAcl"):
        rules = len(acl["inputs"].get("rules") or [])
        fixed = pricer.hourly("waf_web_acl_monthly") + rules * pricer.hourly("waf_rule_monthly")
        usage = requests / 1e6 * pricer.hourly("waf_per_million_requests")
        yield Line("WAF", f"web ACL, {rules} rules, requests at quota", (fixed, fixed + usage),
                   (fixed, fixed + usage))


def estimate(plan: dict, prices: Optional[dict] = None) -> Estimate:
    prices = prices or load_prices()
    region = plan_region(plan)
    result = Estimate(stack=plan.get("stack", ""), region=region, snapshot_date=prices["snapshot_date"])
    pricer = _Pricer(prices, region, result)
    for lines in (_asg_lines, _node_group_lines, _node_pool_lines, _fixed_lines, _request_lines):
        result.lines.extend(lines(plan, pricer))
    return result


def money(value: Range) -> str:
    low, high = (f"${v:,.0f}" for v in value)
    return low if low == high else f"{low}–{high}"


def render(result: Estimate) -> str:
    out = [f"## Monthly cost estimate: {result.stack} ({result.region})", "",
           f"Prices: snapshot of {result.snapshot_date} (tools/prices.json). Ranges: spot between "
           "its largest discount and the on-demand price; requests between none and every key "
           "at its quota.", "",
           "| item | what | at minimum | at maximum |", "|---|---|---:|---:|"]
    for line in result.lines:
        out.append(f"| {line.item} | {line.detail} | {money(line.at_min)} | {money(line.at_max)} |")
    out.append(f"| **total** | | **{money(result.total_min)}** | **{money(result.total_max)}** |")
    if result.unpriced:
        out += ["", "Not priced (missing from the snapshot): " + ", ".join(result.unpriced)]
    return "\n".join(out) + "\n"


def plan_change(old_plan: dict, new_plan: dict, prices: Optional[dict] = None) -> str:
    """The cost line of a plan diff; a plan without resources (a stack that does not exist on
    one side) costs nothing."""
    try:
        estimates = [estimate(plan, prices) if plan.get("resources") else None
                     for plan in (old_plan, new_plan)]
    except CostError as error:
        return f"**Monthly cost**: not estimated ({error})"
    known = next((e for e in estimates if e is not None), None)
    if known is None:
        return ""
    base, head = (e or Estimate(known.stack, known.region, known.snapshot_date) for e in estimates)
    line = change_line(base, head)
    unpriced = sorted(set(base.unpriced) | set(head.unpriced))
    return line + (f"; not priced: {', '.join(unpriced)}" if unpriced else "")


def change_line(base: Estimate, head: Estimate) -> str:
    """One line for a plan diff: the monthly total at minimum and maximum, before -> after."""
    def delta(before: Range, after: Range) -> str:
        low, high = after[0] - before[0], after[1] - before[1]
        sign = lambda v: f"+${v:,.0f}" if v >= 0 else f"-${-v:,.0f}"  # noqa: E731
        return sign(low) if abs(high - low) < 0.005 else f"{sign(low)}..{sign(high)}"
    return (f"**Monthly cost** (price snapshot {head.snapshot_date}): at minimum "
            f"{money(base.total_min)} -> {money(head.total_min)} ({delta(base.total_min, head.total_min)}); "
            f"at maximum {money(base.total_max)} -> {money(head.total_max)} "
            f"({delta(base.total_max, head.total_max)})")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--plan", help="a plan JSON file (default: plan the stack now, offline)")
    args = parser.parse_args(argv)
    from tools.preview import PreviewError, preview
    try:
        if args.plan:
            plan = json.loads(Path(args.plan).read_text())
        else:
            # Prices need the resources only; the policy pack is `make preview`'s job.
            plan = preview(args.stack, with_policies=False)
        print(render(estimate(plan)), end="")
    except PreviewError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (CostError, OSError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
