"""Scale to zero on EC2: a model's fleet sleeps when idle and wakes on its next request.

For a model with `min_replicas: 0` the Auto Scaling group may hold no instance. Its queue
metric (published by each host's gate) vanishes with the last host, so target tracking can
neither see the first request nor scale from zero. The gateway sees every request, though:
API Gateway publishes `Count` per method with detailed metrics on (dimensions ApiName,
Stage, Resource, Method; "Amazon API Gateway dimensions and metrics"), and this stack turns
detailed metrics on for every route.

- wake: requests to the model's routes in the last minute (metric math over its routes,
  missing data as 0) while the group's desired capacity is 0 -> a step policy sets the
  capacity to 1 (ExactCapacity only while it is 0, so it never scales a running fleet in).
- sleep: no request for `idle_minutes` -> a step policy sets the capacity to 0. Auto
  Scaling clamps it to the group's minimum, so a business-hours schedule (ASG scheduled
  actions in the fleet) keeps its floor whatever this alarm says.

The first request finds no healthy target: API Gateway answers it 503 with Retry-After
in the OpenAI error shape (components/gateway/responses.py) and the client retries as
docs/CLIENTS.md says; that request is also what the wake alarm counts (Count includes
4XX/5XX answers). CloudWatch publishes the minute's Count about a minute late, so the
wake adds one to two minutes to the host's own cold start (boot, image pull, weights,
model load: `health_check_grace_seconds`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

GATEWAY_NAMESPACE = "AWS/ApiGateway"


@dataclass
class ScaleToZeroArgs:
    model_name: str
    asg_name: pulumi.Input[str]
    # Per route of the model: {"ApiName", "Stage", "Resource", "Method"} dimensions.
    request_dimensions: Sequence[dict[str, pulumi.Input[str]]]
    idle_minutes: int


def requests_expression(route_count: int) -> str:
    """Requests to the model per minute: the sum of its routes, a route without data as 0."""
    return " + ".join(f"FILL(r{i}, 0)" for i in range(route_count))


def _request_queries(dimensions: Sequence[dict], period: int) -> list[dict]:
    return [{"id": f"r{i}", "return_data": False, "metric": {
        "namespace": GATEWAY_NAMESPACE, "metric_name": "Count", "dimensions": dict(dims),
        "stat": "Sum", "period": period}} for i, dims in enumerate(dimensions)]


class ScaleToZero(pulumi.ComponentResource):
    """The wake and sleep alarms of one model's fleet, each driving an ExactCapacity policy."""

    def __init__(self, name: str, args: ScaleToZeroArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:ec2_wake:ScaleToZero", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        routes = len(args.request_dimensions)

        wake = aws.autoscaling.Policy(
            f"{name}-wake", autoscaling_group_name=args.asg_name, policy_type="StepScaling",
            adjustment_type="ExactCapacity",
            step_adjustments=[{"scaling_adjustment": 1, "metric_interval_lower_bound": "0"}],
            opts=child)
        aws.cloudwatch.MetricAlarm(
            f"{name}-wake",
            alarm_description=f"{args.model_name}: a request arrived while no instance serves; start one",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1,
            evaluation_periods=1, datapoints_to_alarm=1, treat_missing_data="notBreaching",
            metric_queries=[
                *_request_queries(args.request_dimensions, 60),
                {"id": "desired", "return_data": False, "metric": {
                    "namespace": "AWS/AutoScaling", "metric_name": "GroupDesiredCapacity",
                    "dimensions": {"AutoScalingGroupName": args.asg_name}, "stat": "Maximum", "period": 60}},
                {"id": "wake", "return_data": True, "label": "requests while asleep",
                 "expression": f"IF(({requests_expression(routes)}) > 0 AND FILL(desired, 0) == 0, 1, 0)"},
            ],
            alarm_actions=[wake.arn], opts=child)

        sleep = aws.autoscaling.Policy(
            f"{name}-sleep", autoscaling_group_name=args.asg_name, policy_type="StepScaling",
            adjustment_type="ExactCapacity",
            step_adjustments=[{"scaling_adjustment": 0, "metric_interval_upper_bound": "0"}],
            opts=child)
        aws.cloudwatch.MetricAlarm(
            f"{name}-sleep",
            alarm_description=f"{args.model_name}: no request for {args.idle_minutes} minutes; scale to zero",
            comparison_operator="LessThanOrEqualToThreshold", threshold=0,
            evaluation_periods=args.idle_minutes, datapoints_to_alarm=args.idle_minutes,
            # No datapoint at all is no request.
            treat_missing_data="breaching",
            metric_queries=[
                *_request_queries(args.request_dimensions, 60),
                {"id": "requests", "return_data": True, "label": "requests per minute",
                 "expression": requests_expression(routes)},
            ],
            alarm_actions=[sleep.arn], opts=child)
        self.register_outputs({})
