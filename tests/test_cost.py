"""`make cost`: monthly figures from a plan and the dated price snapshot, checked against
sums worked out by hand from the snapshot's list prices (730 hours a month)."""
from __future__ import annotations

import json

import pytest

from tools import cost

HOURS = 730
G6E_XL = 1.861      # us-east-1 g6e.xlarge, $/h (tools/prices.json)
G6E_2XL = 2.24208   # g6e.2xlarge


def _plan(*resources: tuple[str, str, dict], component: str = "", region: str = "us-east-1") -> dict:
    return {"stack": "test", "resources": [
        {"type": "pulumi:providers:aws", "name": "aws", "component": "", "inputs": {"region": region}},
        *({"type": t, "name": n, "component": component, "inputs": i} for t, n, i in resources)]}


def _line(estimate: cost.Estimate, prefix: str) -> cost.Line:
    (line,) = [l for l in estimate.lines if l.item.startswith(prefix)]
    return line


def test_an_on_demand_fleet_costs_its_instances_at_min_and_max():
    plan = _plan(("aws:ec2/launchTemplate:LaunchTemplate", "m-lt", {"instanceType": "g6e.xlarge"}),
                 ("aws:autoscaling/group:Group", "m-asg", {"minSize": 1, "maxSize": 3}),
                 component="deepseek:gpu_fleet:GpuFleet m")
    line = _line(cost.estimate(plan), "GPU fleet m")
    assert line.at_min == pytest.approx((1358.53, 1358.53), abs=0.01)   # 1.861 * 730
    assert line.at_max == pytest.approx((4075.59, 4075.59), abs=0.01)   # 3 * 1.861 * 730


def test_spot_above_an_on_demand_base_is_a_range():
    policy = {"instancesDistribution": {"onDemandBaseCapacity": 1, "onDemandPercentageAboveBaseCapacity": 0},
              "launchTemplate": {"overrides": [{"instanceType": "g6e.xlarge"}, {"instanceType": "g6e.2xlarge"}]}}
    plan = _plan(("aws:autoscaling/group:Group", "m-asg", {"minSize": 1, "maxSize": 2, "mixedInstancesPolicy": policy}),
                 component="deepseek:gpu_fleet:GpuFleet m")
    line = _line(cost.estimate(plan), "GPU fleet m")
    assert line.at_min == pytest.approx((1358.53, 1358.53), abs=0.01)  # the base is on-demand
    # One on-demand + one spot: spot from 10 % (90 % off) up to the on-demand price.
    assert line.at_max == pytest.approx((1358.53 + 135.853, 2717.06), abs=0.01)


@pytest.mark.parametrize("count, base, percent, split", [
    (0, 1, 0, (0, 0)), (1, 1, 0, (1, 0)), (5, 1, 0, (1, 4)), (5, 1, 25, (2, 3)), (4, 0, 50, (2, 2)),
    (3, 0, 100, (3, 0)), (2, 4, 0, (2, 0)),
])
def test_on_demand_and_spot_split_like_auto_scaling(count, base, percent, split):
    assert cost.split_on_demand(count, base, percent) == split


def test_a_fleet_that_scales_to_zero_costs_nothing_at_its_minimum():
    plan = _plan(("aws:ec2/launchTemplate:LaunchTemplate", "m-lt", {"instanceType": "g6e.xlarge"}),
                 ("aws:autoscaling/group:Group", "m-asg", {"minSize": 0, "maxSize": 1}),
                 component="deepseek:gpu_fleet:GpuFleet m")
    line = _line(cost.estimate(plan), "GPU fleet m")
    assert line.at_min == (0.0, 0.0)
    assert line.at_max == pytest.approx((1358.53, 1358.53), abs=0.01)


def test_karpenter_pools_cost_the_nodes_their_pods_need_up_to_the_gpu_limit():
    def node_pool(kind: str) -> dict:
        return {"spec": {"limits": {"nvidia.com/gpu": "6"}, "template": {
            "metadata": {"labels": {"deepseek-serving/pool": "gpu"}},
            "spec": {"requirements": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [kind]},
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6e.2xlarge"]}]}}}}
    deployment = {"spec": {"replicas": 2, "template": {"spec": {
        "nodeSelector": {"deepseek-serving/pool": "gpu"},
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    plan = _plan(("kubernetes:karpenter.sh/v1:NodePool", "gpu-spot", node_pool("spot")),
                 ("kubernetes:karpenter.sh/v1:NodePool", "gpu-on-demand", node_pool("on-demand")),
                 ("kubernetes:apps/v1:Deployment", "m", deployment))
    line = _line(cost.estimate(plan), "Karpenter pool gpu")
    monthly = G6E_2XL * HOURS  # 1636.72
    assert line.at_min == pytest.approx((2 * monthly * 0.1, 2 * monthly), abs=0.01)
    assert line.at_max == pytest.approx((6 * monthly * 0.1, 6 * monthly), abs=0.01)


def test_fixed_charges_follow_the_snapshot():
    plan = _plan(("aws:ec2/natGateway:NatGateway", "nat-a", {}), ("aws:ec2/natGateway:NatGateway", "nat-b", {}),
                 ("aws:ec2/vpcEndpoint:VpcEndpoint", "ssm", {"vpcEndpointType": "Interface", "subnetIds": ["a", "b"]}),
                 ("aws:ec2/vpcEndpoint:VpcEndpoint", "sts", {"vpcEndpointType": "Interface", "subnetIds": ["a", "b"]}),
                 ("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"}),
                 ("aws:lb/loadBalancer:LoadBalancer", "lb", {"loadBalancerType": "network"}),
                 ("aws:eks/cluster:Cluster", "eks", {}))
    estimate = cost.estimate(plan)
    assert _line(estimate, "NAT").at_min[0] == pytest.approx(65.70)            # 2 * 0.045 * 730
    assert _line(estimate, "interface").at_min[0] == pytest.approx(29.20)      # 4 AZ-endpoints * 0.01 * 730
    assert _line(estimate, "network load").at_min[0] == pytest.approx(16.425)  # 0.0225 * 730
    assert _line(estimate, "EKS").at_min[0] == pytest.approx(73.0)             # 0.10 * 730


def test_requests_at_the_tiers_quotas_and_waf():
    plan = _plan(("aws:apigateway/restApi:RestApi", "api", {}),
                 ("aws:apigateway/usagePlan:UsagePlan", "plan-standard", {
                     "description": "tier standard: 2 req/s, burst 4, 5000 per day",
                     "quotaSettings": {"limit": 5000, "period": "DAY"}}),
                 ("aws:apigateway/apiKey:ApiKey", "key-a", {"description": "client a, tier standard"}),
                 ("aws:apigateway/apiKey:ApiKey", "key-b", {"description": "client b, tier standard"}),
                 ("aws:wafv2/webAcl:WebAcl", "acl", {"rules": [{}, {}, {}]}))
    requests = 2 * 5000 * HOURS / 24  # 304,166.67 a month
    assert cost.quota_requests(plan) == pytest.approx(requests)
    estimate = cost.estimate(plan)
    assert _line(estimate, "API Gateway").at_max == pytest.approx((0.0, requests / 1e6 * 3.50))
    # Web ACL $5 + 3 rules at $1, plus $0.60 per million requests.
    assert _line(estimate, "WAF").at_max == pytest.approx((8.0, 8.0 + requests / 1e6 * 0.60))


def test_request_pricing_steps_down_past_the_first_tier():
    prices = cost.load_prices()
    estimate = cost.Estimate(stack="t", region="us-east-1", snapshot_date="x")
    pricer = cost._Pricer(prices, "us-east-1", estimate)
    assert pricer.requests(400e6) == pytest.approx(333 * 3.50 + 67 * 2.80)


def test_what_the_snapshot_lacks_is_listed_not_guessed():
    plan = _plan(("aws:ec2/launchTemplate:LaunchTemplate", "m-lt", {"instanceType": "p5.48xlarge"}),
                 ("aws:autoscaling/group:Group", "m-asg", {"minSize": 1, "maxSize": 1}),
                 component="deepseek:gpu_fleet:GpuFleet m")
    estimate = cost.estimate(plan)
    assert estimate.unpriced == ["instance type p5.48xlarge"]
    assert not [l for l in estimate.lines if l.item.startswith("GPU fleet")]
    assert "Not priced" in cost.render(estimate)
    with pytest.raises(cost.CostError, match="no prices for ap-south-1"):
        cost.estimate(_plan(region="ap-south-1"))


def test_the_snapshot_is_dated_and_names_its_sources():
    prices = cost.load_prices()
    assert prices["snapshot_date"]
    for service in ("ec2", "nat_gateway", "interface_endpoint", "nlb", "api_gateway", "waf", "spot"):
        assert prices["sources"][service].startswith("https://aws.amazon.com/")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_make_cost_prices_every_committed_stack(stack, capsys):
    assert cost.main(["--stack", stack]) == 0
    text = capsys.readouterr().out
    assert "| **total** |" in text
    assert "Not priced" not in text
    assert ("GPU fleet" in text) == (stack == "dev")


def test_a_plan_file_works_as_input_and_bad_input_exits_2(tmp_path, capsys):
    plan = _plan(("aws:ec2/natGateway:NatGateway", "nat", {}))
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert cost.main(["--stack", "test", "--plan", str(path)]) == 0
    assert "$33" in capsys.readouterr().out  # 0.045 * 730 = 32.85
    assert cost.main(["--stack", "test", "--plan", str(tmp_path / "missing.json")]) == 2


def test_the_change_line_shows_before_after_and_delta():
    base = cost.Estimate("s", "us-east-1", "d", [cost.Line("a", "", (100.0, 100.0), (200.0, 300.0))])
    head = cost.Estimate("s", "us-east-1", "d", [cost.Line("a", "", (150.0, 150.0), (200.0, 200.0))])
    line = cost.change_line(base, head)
    assert "$100 -> $150 (+$50)" in line
    assert "$200–$300 -> $200 (+$0..-$100)" in line


def test_the_pool_label_is_the_one_model_pods_select():
    from components.eks.cluster import POOL_LABEL
    assert cost.POOL_LABEL == POOL_LABEL


def test_plan_diffs_carry_the_cost_change():
    from tools.diff_markdown import render_markdown
    from tools.plan_diff import diff_plans
    base = _plan(("aws:ec2/natGateway:NatGateway", "nat-a", {}))
    head = _plan(("aws:ec2/natGateway:NatGateway", "nat-a", {}), ("aws:ec2/natGateway:NatGateway", "nat-b", {}))
    for plan in (base, head):
        plan.update(schema="deepseek-serving/plan@1", diagnostics=[], summary={})
        for resource in plan["resources"]:
            resource.setdefault("urn", f"urn:pulumi:test::deepseek-serving::{resource['type']}::{resource['name']}")
            resource.setdefault("parent", "")
    report = diff_plans(base, head)
    # One NAT gateway is 0.045 * 730 = $32.85 a month.
    assert report.cost.startswith("**Monthly cost**")
    assert "$33 -> $66 (+$33)" in report.cost
    assert report.cost in render_markdown(report)
