"""deepseek-serving: read the stack's inventory once, build the components, export outputs."""
import pulumi
import pulumi_aws as aws

from components.api_gateway import (ApiGateway, ApiGatewayArgs, Backend, ThrottleError,
                                    derive_max_request_bytes, gateway_throttles)
from components.catalog import CatalogError
from components.config import InventoryError, load_inventory
from components.k8s_monitoring import ClusterMonitoring, ClusterMonitoringArgs, rule_names
from components.keys import StackKeys, StackKeysArgs
from components.network import Network, NetworkArgs
from components.observability import (ModelTargets, Observability, ObservabilityArgs,
                                      ObservabilityError, check_alarm_thresholds)
from components.platforms import build_platform
from components.runtimes import LaunchError, render_for_inventory
from components.sizing import SizingError

# Inventory problems found while building (a model that does not fit its GPU, a throttle
# above capacity): shown like a bad inventory value, without a traceback.
INVENTORY_PROBLEMS = (InventoryError, SizingError, ThrottleError, ObservabilityError, LaunchError,
                      CatalogError)

stack = pulumi.get_stack()
try:
    inventory = load_inventory()
    # Every check that can refuse the inventory runs before the first resource registers,
    # so `pulumi up` never starts on a stack it would have to abandon halfway.
    for model in inventory.models:
        render_for_inventory(inventory, model)
    gateway_throttle_plan = gateway_throttles(inventory, stack)
    check_alarm_thresholds(inventory, stack)
except INVENTORY_PROBLEMS as error:
    # RunError prints the message without a traceback.
    raise pulumi.RunError(str(error)) from None

aws_provider = aws.Provider(
    "aws",
    region=inventory.region,
    default_tags={"tags": {
        **inventory.tags,
        "project": "deepseek-serving",
        "environment": inventory.environment,
        "stack": stack,
        "managed-by": "pulumi",
    }},
)
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})
identity = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider))

keys = StackKeys("keys", StackKeysArgs(region=inventory.region, account_id=identity.account_id),
                 opts=aws_opts)
network = Network(
    "net",
    NetworkArgs(settings=inventory.network, region=inventory.region, logs_key_arn=keys.logs_key_arn,
                private_subnet_tags={"kubernetes.io/role/internal-elb": "1"}
                if inventory.platform == "eks" else {}),
    opts=aws_opts,
)

# Per model an internal NLB and what serves behind it (EC2 fleet or EKS ModelService).
platform = build_platform(inventory, stack=stack, network=network, keys=keys,
                          account_id=identity.account_id, opts=aws_opts)
load_balancers, runtimes = platform.load_balancers, platform.runtimes
fleets, cluster, addons = platform.fleets, platform.cluster, platform.addons

# The public face: one REST API, a VPC link per model's NLB, usage plans per tier, WAF.
gateway = ApiGateway(
    "gateway",
    ApiGatewayArgs(
        settings=inventory.gateway,
        backends=[Backend(model_name=model.name, nlb_arn=load_balancers[model.name].arn,
                          host=load_balancers[model.name].internal_domain,
                          port=load_balancers[model.name].listener_port,
                          skip_tls_verification=load_balancers[model.name].tls_skip_verification,
                          backend_api_key=runtimes[model.name].backend_api_key,
                          backend_api_key_version=runtimes[model.name].backend_api_key_version)
                  for model in inventory.models],
        max_request_bytes=derive_max_request_bytes(inventory.gateway, inventory.models),
        throttles=gateway_throttle_plan,
        logs_key_arn=keys.logs_key_arn,
        log_retention_days=inventory.observability.log_retention_days,
        region=inventory.region,
        account_id=identity.account_id,
    ),
    opts=aws_opts)

# The request path watched end to end: alert topic, alarms, dashboard; on EKS the cluster's
# Prometheus alerts reach the same topic through Alertmanager.
observability = Observability(
    "observability",
    ObservabilityArgs(
        inventory=inventory, stack=stack, account_id=identity.account_id,
        rest_api_name=gateway.rest_api.name, rest_api_id=gateway.rest_api_id,
        stage_name=gateway.stage_name, access_log_group_name=gateway.access_log_group.name,
        web_acl_metric_name=gateway.waf.metric_name, waf_rule_names=gateway.waf.rule_names,
        models={name: ModelTargets(load_balancer_arn_suffix=lb.arn_suffix,
                                   target_group_arn_suffix=lb.target_group_arn_suffix,
                                   asg_name=fleets[name].asg_name if name in fleets else None)
                for name, lb in load_balancers.items()},
        prometheus_rules=rule_names(platform.alert_rules) if cluster is not None else ()),
    opts=aws_opts)
if cluster is not None:
    ClusterMonitoring(
        "eks-monitoring",
        ClusterMonitoringArgs(cluster=cluster, addons=addons,
                              topic_arns=[observability.topic_arn, *inventory.observability.alarms.sns_topic_arns],
                              topic_key_arn=observability.alerts_key_arn, region=inventory.region, stack=stack),
        opts=aws_opts)

pulumi.export("region", inventory.region)
pulumi.export("observability", {"alert_topic_arn": observability.topic_arn,
                                "dashboard": observability.dashboard_name,
                                "alarms": observability.alarm_names})
# Gateway outputs: tools/smoke.py and docs/CLIENTS.md rely on these names.
pulumi.export("api_endpoint", gateway.api_endpoint)
pulumi.export("model_endpoints", gateway.model_endpoints)
pulumi.export("served_models", gateway.served_models)
pulumi.export("rest_api_id", gateway.rest_api_id)
pulumi.export("stage_name", gateway.stage_name)
pulumi.export("tier_limits", gateway.tier_limits)
pulumi.export("max_request_bytes", gateway.max_request_bytes)
pulumi.export("api_key_ids", gateway.api_key_ids)
# Key values only ever as one secret output (`pulumi stack output --show-secrets`).
pulumi.export("api_key_values", gateway.api_key_values)
if gateway.smoke_api_key_id is not None:
    pulumi.export("smoke_api_key_id", gateway.smoke_api_key_id)
    pulumi.export("smoke_tier_limits", gateway.smoke_tier_limits)
pulumi.export("platform", inventory.platform)
pulumi.export("vpc_id", network.vpc_id)
pulumi.export("private_subnet_ids", network.private_subnet_ids)
if fleets:
    # Names and metric dimensions only; the backend keys stay secret Outputs in the program.
    pulumi.export("gpu_fleets", {
        name: {"asg_name": fleet.asg_name,
               "load_balancer_arn_suffix": load_balancers[name].arn_suffix,
               "target_group_arn_suffix": load_balancers[name].target_group_arn_suffix,
               "runtime_log_group": fleet.log_group_name,
               "internal_domain": load_balancers[name].internal_domain}
        for name, fleet in fleets.items()})
if cluster is not None:
    # Names, namespaces and metric dimensions for the gateway and observability; never keys.
    pulumi.export("eks", {
        "cluster_name": cluster.cluster_name,
        "monitoring_namespace": addons.monitoring_namespace,
        "prometheus_url": addons.prometheus_url,
        "models": {
            name: {"namespace": service.namespace,
                   "deployment": service.deployment_name,
                   "service": service.service_name,
                   "runtime": service.runtime,
                   "load_balancer_arn_suffix": service.load_balancer_arn_suffix,
                   "target_group_arn_suffix": service.target_group_arn_suffix,
                   "internal_domain": service.internal_domain,
                   "scaling_query": service.scaling_query}
            for name, service in platform.model_services.items()},
    })
