"""deepseek-serving: the request path, built from the stack's inventory.

client -> API Gateway (keys, usage plans, WAF) -> VPC link -> internal TLS NLB per model
-> vLLM / TGI / Ollama on private GPU capacity (EC2 fleets or EKS node pools).
"""
import pulumi
import pulumi_aws as aws

from components.admission import InventoryRefused, admit, require_engine
from components.gateway.api import ApiGateway, ApiGatewayArgs, derive_max_request_bytes
from components.keys import StackKeys, StackKeysArgs
from components.network import Network, NetworkArgs
from components.observability import Observability, ObservabilityArgs
from components.platforms import build_platform, check_platform, endpoint_settings
from components.session_manager import account_session_preferences

require_engine()
stack = pulumi.get_stack()
try:
    admitted = admit(stack, platform_check=check_platform)
except InventoryRefused as error:
    raise pulumi.RunError(str(error)) from None  # printed without a traceback
inventory = admitted.inventory

aws_provider = aws.Provider("aws", region=inventory.region, default_tags={"tags": {
    **inventory.tags, "project": "deepseek-serving", "environment": inventory.environment,
    "stack": stack, "managed-by": "pulumi"}})
aws_opts = pulumi.ResourceOptions(providers={"aws": aws_provider})
identity = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider))

keys = StackKeys("keys", StackKeysArgs(region=inventory.region, account_id=identity.account_id),
                 opts=aws_opts)
network = Network("net", NetworkArgs(
    settings=inventory.network, region=inventory.region, logs_key_arn=keys.logs_key_arn,
    account_id=identity.account_id, **endpoint_settings(inventory),
    private_subnet_tags={"kubernetes.io/role/internal-elb": "1"} if inventory.platform == "eks" else {}),
    opts=aws_opts)

# Session Manager preferences (sessions logged, encrypted): once per account and region.
account_session_preferences(inventory, account_id=identity.account_id, opts=aws_opts)

# Per model an internal NLB and what serves behind it (EC2 fleet or EKS ModelService).
platform = build_platform(inventory, stack=stack, network=network, keys=keys,
                          account_id=identity.account_id, opts=aws_opts, phase=admitted.phase)
outputs = {"region": inventory.region, "platform": inventory.platform, "vpc_id": network.vpc_id,
           "private_subnet_ids": network.private_subnet_ids, **platform.stack_outputs()}

# Phase "cluster" (first apply of a private EKS stack) stops before anything that needs
# to reach inside the cluster; every later apply builds the whole path.
if admitted.phase == "all":
    # The public face: one REST API, a VPC link per model's NLB, usage plans per tier, WAF.
    gateway = ApiGateway("gateway", ApiGatewayArgs(
        settings=inventory.gateway, backends=platform.gateway_backends(inventory),
        max_request_bytes=derive_max_request_bytes(inventory.gateway, inventory.models),
        throttles=admitted.gateway_throttles, logs_key_arn=keys.logs_key_arn,
        log_retention_days=inventory.observability.log_retention_days,
        region=inventory.region, account_id=identity.account_id,
        cold_start_possible=any(model.min_replicas == 0 for model in inventory.models),
        manage_account_settings=inventory.account_settings.manage), opts=aws_opts)
    # Models that scale to zero wake on the gateway's request count for their routes.
    platform.wake_on_requests(inventory, rest_api_name=gateway.rest_api.name,
                              stage_names=gateway.stage_names, opts=aws_opts)

    # The request path watched end to end: alert topic, alarms, dashboard; on EKS the
    # cluster's Prometheus alerts reach the same topic through Alertmanager.
    observability = Observability("observability", ObservabilityArgs(
        inventory=inventory, stack=stack, account_id=identity.account_id,
        rest_api_name=gateway.rest_api.name, rest_api_id=gateway.rest_api_id,
        stage_name=gateway.metric_stage, access_log_group_name=gateway.access_log_group.name,
        web_acl_metric_name=gateway.waf.metric_name, waf_rule_names=gateway.waf.rule_names,
        models=platform.observed_models(inventory), prometheus_rules=platform.prometheus_rules),
        opts=aws_opts)
    platform.watch_cluster(inventory, stack=stack, topic_arn=observability.topic_arn,
                           topic_key_arn=observability.alerts_key_arn, opts=aws_opts,
                           rest_api_name=gateway.rest_api.name, stage_name=gateway.metric_stage,
                           rest_api_id=gateway.rest_api_id)
    outputs.update({**observability.stack_outputs(), **gateway.stack_outputs()})

for output_name, value in outputs.items():
    pulumi.export(output_name, value)
