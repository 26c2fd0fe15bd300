"""Family 2, infrastructure: TLS, IMDSv2, encryption at rest, gateway metering, capacity,
log retention and rollout safety, judged per resource."""
from __future__ import annotations

import re
from typing import Any, Iterator

from pulumi_policy import Severity

from ._framework import FAMILY_HYGIENE, Finding, Resource, resource_policy, cannot_check, violation
from ._wire import as_bool, as_dict, as_list, as_number, is_unknown
from .public_endpoints import CLASSIC_LB_TYPES, LISTENER_TYPES
from .workloads import kubernetes_servings



# ---- TLS everywhere ---------------------------------------------------------------------

# ELB security policies whose minimum protocol is TLS 1.2 or 1.3, e.g.
# ELBSecurityPolicy-TLS13-1-2-2021-06, ELBSecurityPolicy-TLS-1-2-Ext-2018-06,
# ELBSecurityPolicy-FS-1-2-Res-2020-10, ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04.
_MODERN_ELB_POLICY = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)(-|$)")


def tls_policy_is_modern(policy: Any) -> bool:
    return isinstance(policy, str) and bool(_MODERN_ELB_POLICY.match(policy))


def _redirects_to_https(actions: Any) -> bool | str:
    if is_unknown(actions):
        return actions
    actions = as_list(actions)
    if not actions:
        return False
    for action in actions:
        action = as_dict(action)
        if str(action.get("type", "")).lower() != "redirect":
            return False
        protocol = as_dict(action.get("redirect")).get("protocol")
        if is_unknown(protocol):
            return protocol
        if str(protocol or "").upper() != "HTTPS":
            return False
    return True


def _check_tls(res: Resource, config: dict) -> Iterator[Finding]:
    policy_fix = "set ssl_policy to ELBSecurityPolicy-TLS13-1-2-2021-06 (or another TLS 1.2+ policy)"
    if res.type in LISTENER_TYPES:
        protocol = res.get("protocol")
        if is_unknown(protocol):
            yield cannot_check("protocol")
            return
        protocol = str(protocol or "HTTP").upper()  # AWS's default without a certificate
        if protocol in ("HTTPS", "TLS"):
            policy = res.get("sslPolicy")
            if is_unknown(policy):
                yield cannot_check("sslPolicy")
            elif not tls_policy_is_modern(policy):
                yield violation("sslPolicy", policy,
                                "it allows TLS below 1.2 (or leaves the choice to a default that has "
                                "changed over time)", policy_fix)
        elif protocol == "HTTP":
            redirects = _redirects_to_https(res.get("defaultActions"))
            if is_unknown(redirects):
                yield cannot_check("defaultActions")
            elif not redirects:
                yield violation("protocol", protocol,
                                "API keys and prompts would cross the network in clear text",
                                "use HTTPS with a certificate; keep HTTP only as a redirect to HTTPS")
        elif protocol in ("TCP", "TCP_UDP"):
            yield violation("protocol", protocol,
                            "a TCP listener passes API keys and prompts unencrypted",
                            "use a TLS listener with a certificate and a TLS 1.2+ ssl_policy")
    elif res.type in CLASSIC_LB_TYPES:
        listeners = res.get("listeners")
        if is_unknown(listeners):
            yield cannot_check("listeners")
            return
        for index, listener in enumerate(as_list(listeners)):
            protocol = as_dict(listener).get("lbProtocol")
            if is_unknown(protocol):
                yield cannot_check(f"listeners[{index}].lbProtocol")
            elif str(protocol).lower() in ("http", "tcp"):
                yield violation(f"listeners[{index}].lbProtocol", protocol,
                                "the listener passes API keys and prompts unencrypted",
                                "use https/ssl with a certificate (better: an ALB or NLB)")
    elif res.type == "aws:apigateway/domainName:DomainName":
        yield from _domain_policy(res.get("securityPolicy"), "securityPolicy")
    elif res.type == "aws:apigatewayv2/domainName:DomainName":
        yield from _domain_policy(res.get("domainNameConfiguration", "securityPolicy"),
                                  "domainNameConfiguration.securityPolicy")


def _domain_policy(policy: Any, path: str) -> Iterator[Finding]:
    if is_unknown(policy):
        yield cannot_check(path)
    elif not isinstance(policy, str) or not re.search(r"TLS_?1_?[23]|TLS1[23]", policy.upper()):
        yield violation(path, policy, "the custom domain then accepts TLS 1.0 clients",
                        "set security_policy=\"TLS_1_2\"")


TLS_EVERYWHERE = resource_policy(
    name="tls-everywhere",
    family=FAMILY_HYGIENE,
    description="Load balancer listeners use HTTPS/TLS with a TLS 1.2+ policy (HTTP only as a "
                "redirect); API custom domains use TLS_1_2.",
    resource_types=LISTENER_TYPES + CLASSIC_LB_TYPES + ("aws:apigateway/domainName:DomainName",
                                                        "aws:apigatewayv2/domainName:DomainName"),
    check=_check_tls,
    remediation="Terminate TLS 1.2+ everywhere keys and prompts travel.",
)


# ---- IMDSv2 -----------------------------------------------------------------------------

def _check_imds(res: Resource, config: dict) -> Iterator[Finding]:
    options = res.get("metadataOptions")
    if is_unknown(options):
        yield cannot_check("metadataOptions")
        return
    options = as_dict(options)
    endpoint = options.get("httpEndpoint")
    if isinstance(endpoint, str) and endpoint.lower() == "disabled":
        return  # no metadata service at all
    tokens = options.get("httpTokens")
    if is_unknown(tokens):
        yield cannot_check("metadataOptions.httpTokens")
    elif str(tokens or "").lower() != "required":
        yield violation("metadataOptions.httpTokens", tokens,
                        "IMDSv1 answers a single GET, so any SSRF (a model tool fetching a URL) "
                        "can read the instance role's credentials",
                        "set metadata_options.http_tokens=\"required\"")
    hops = as_number(options.get("httpPutResponseHopLimit"))
    if is_unknown(hops):
        yield cannot_check("metadataOptions.httpPutResponseHopLimit")
    elif hops != 1.0:
        yield violation("metadataOptions.httpPutResponseHopLimit", options.get("httpPutResponseHopLimit"),
                        "above one hop (AL2023 AMIs default to 2) containers on the host can fetch "
                        "the node role's credentials",
                        "set metadata_options.http_put_response_hop_limit=1")


IMDSV2_REQUIRED = resource_policy(
    name="imdsv2-required",
    family=FAMILY_HYGIENE,
    description="Instances and launch templates require IMDSv2 tokens with a hop limit of 1.",
    resource_types=("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate"),
    check=_check_imds,
    remediation="metadata_options: http_tokens=required, http_put_response_hop_limit=1.",
)


# ---- encryption at rest -----------------------------------------------------------------

def _encrypted(value: Any, path: str, what: str, fix: str) -> Iterator[Finding]:
    # Launch templates type `encrypted` as a string: as_bool reads "true" and True alike.
    encrypted = as_bool(value)
    if is_unknown(encrypted):
        yield cannot_check(path)
    elif encrypted is not True:
        yield violation(path, value, f"{what} (model weights, caches, keys) would be stored unencrypted "
                        "unless the account default happens to be on", fix)


def _check_encryption(res: Resource, config: dict) -> Iterator[Finding]:
    fix = "set encrypted=True (with a KMS key for control over access)"
    if res.type == "aws:ebs/volume:Volume":
        if res.get("snapshotId") is None:
            yield from _encrypted(res.get("encrypted"), "encrypted", "the volume", fix)
    elif res.type == "aws:efs/fileSystem:FileSystem":
        yield from _encrypted(res.get("encrypted"), "encrypted", "the file system", fix)
    elif res.type == "aws:ec2/launchTemplate:LaunchTemplate":
        mappings = res.get("blockDeviceMappings")
        if is_unknown(mappings):
            yield cannot_check("blockDeviceMappings")
            return
        for index, mapping in enumerate(as_list(mappings)):
            ebs = as_dict(mapping).get("ebs")
            if ebs is None:
                continue  # instance store or NoDevice
            if is_unknown(ebs):
                yield cannot_check(f"blockDeviceMappings[{index}].ebs")
            elif as_dict(ebs).get("snapshotId") is None:
                yield from _encrypted(as_dict(ebs).get("encrypted"),
                                      f"blockDeviceMappings[{index}].ebs.encrypted", "the volume",
                                      "set ebs.encrypted=\"true\"")
    elif res.type == "aws:ec2/instance:Instance":
        root = res.get("rootBlockDevice")
        if is_unknown(root):
            yield cannot_check("rootBlockDevice")
        else:
            yield from _encrypted(as_dict(root).get("encrypted"), "rootBlockDevice.encrypted",
                                  "the root volume", "set root_block_device.encrypted=True")
        devices = res.get("ebsBlockDevices")
        for index, device in enumerate(as_list(devices) if not is_unknown(devices) else []):
            if as_dict(device).get("snapshotId") is None:
                yield from _encrypted(as_dict(device).get("encrypted"),
                                      f"ebsBlockDevices[{index}].encrypted", "the volume", fix)
    elif res.type == "aws:eks/cluster:Cluster":
        config_value = res.get("encryptionConfig")
        if is_unknown(config_value):
            yield cannot_check("encryptionConfig")
            return
        encryption = as_dict(config_value)
        resources = encryption.get("resources")
        key = as_dict(encryption.get("provider")).get("keyArn")
        if is_unknown(resources):
            yield cannot_check("encryptionConfig.resources")
        elif "secrets" not in as_list(resources) or key is None:
            yield violation("encryptionConfig", config_value or None,
                            "Kubernetes Secrets (API keys, tokens) are then only encrypted with the "
                            "EKS default key, not envelope-encrypted with your KMS key",
                            "set encryption_config={resources: [\"secrets\"], provider: {key_arn: kms_key.arn}}",
                            rendered="not set" if not config_value else "without secrets and a KMS key")
    elif res.type == "aws:cloudwatch/logGroup:LogGroup":
        if res.get("kmsKeyId") is None:  # an unknown key ARN is still a key
            yield violation("kmsKeyId", None,
                            "logs (request ids, key ids, errors) are then encrypted only with an "
                            "AWS-owned key you cannot audit or revoke",
                            "set kms_key_id to a customer-managed KMS key whose policy allows CloudWatch Logs")


ENCRYPTION_AT_REST = resource_policy(
    name="encryption-at-rest",
    family=FAMILY_HYGIENE,
    description="EBS volumes, launch template and instance block devices, EFS, EKS secrets "
                "(KMS envelope encryption) and log groups (KMS) are encrypted at rest.",
    resource_types=("aws:ebs/volume:Volume", "aws:efs/fileSystem:FileSystem",
                    "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance",
                    "aws:eks/cluster:Cluster", "aws:cloudwatch/logGroup:LogGroup"),
    check=_check_encryption,
    remediation="Encrypt every store of weights, caches, keys and logs with KMS.",
)


# ---- gateway metering -------------------------------------------------------------------

def _positive(value: Any) -> bool | str:
    number = as_number(value)
    if is_unknown(number):
        return number
    return isinstance(number, float) and number > 0


def _check_metering(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == "aws:apigateway/usagePlan:UsagePlan":
        for block, fields, fix in (
            ("throttleSettings", ("rateLimit", "burstLimit"),
             "set throttle_settings={rate_limit: <req/s>, burst_limit: <burst>}"),
            ("quotaSettings", ("limit",), "set quota_settings={limit: <requests>, period: DAY|WEEK|MONTH}"),
        ):
            settings = res.get(block)
            if is_unknown(settings):
                yield cannot_check(block)
                continue
            for name in fields:
                ok = _positive(as_dict(settings).get(name))
                if is_unknown(ok):
                    yield cannot_check(f"{block}.{name}")
                elif not ok:
                    yield violation(f"{block}.{name}", as_dict(settings).get(name),
                                    "without it one API key can exhaust the GPUs (a plan's rate, burst "
                                    "and quota are what meter each client)", fix)
    elif res.type == "aws:apigateway/methodSettings:MethodSettings":
        settings = res.get("settings")
        for name in ("throttlingRateLimit", "throttlingBurstLimit"):
            value = as_dict(settings).get(name) if not is_unknown(settings) else settings
            number = as_number(value)
            if is_unknown(number):
                yield cannot_check(f"settings.{name}")
            elif isinstance(number, float) and number < 0:
                yield violation(f"settings.{name}", value, "-1 disables throttling for these methods",
                                "set a positive limit sized to the backend's capacity")
    elif res.type == "aws:apigatewayv2/stage:Stage":
        settings = res.get("defaultRouteSettings")
        for name in ("throttlingRateLimit", "throttlingBurstLimit"):
            value = as_dict(settings).get(name) if not is_unknown(settings) else settings
            ok = _positive(value)
            if is_unknown(ok):
                yield cannot_check(f"defaultRouteSettings.{name}")
            elif not ok:
                yield violation(f"defaultRouteSettings.{name}", value,
                                "HTTP APIs have no usage plans: route throttling is the only meter",
                                "set default_route_settings throttling_rate_limit and throttling_burst_limit")


GATEWAY_METERING = resource_policy(
    name="gateway-metering",
    family=FAMILY_HYGIENE,
    description="Usage plans set throttle (rate, burst) and quota; method settings never disable "
                "throttling; HTTP API stages throttle their default route.",
    resource_types=("aws:apigateway/usagePlan:UsagePlan", "aws:apigateway/methodSettings:MethodSettings",
                    "aws:apigatewayv2/stage:Stage"),
    check=_check_metering,
    remediation="Give every usage plan a throttle and a quota; never set throttling limits to -1.",
)


# ---- approved capacity ------------------------------------------------------------------

DEFAULT_INSTANCE_FAMILIES = [
    # GPU families that serve DeepSeek models.
    "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en",
    # CPU families for system nodes and tooling.
    "m6i", "m6a", "m7i", "m7a", "m7g", "c6i", "c7i", "c7g",
]

_REPLICA_PATHS = {
    "kubernetes:apps/v1:Deployment": ("spec", "replicas"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "replicas"),
    "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet": ("spec", "replicas"),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": ("spec", "maxReplicas"),
    "kubernetes:autoscaling/v1:HorizontalPodAutoscaler": ("spec", "maxReplicas"),
    "kubernetes:keda.sh/v1alpha1:ScaledObject": ("spec", "maxReplicaCount"),
    "aws:autoscaling/group:Group": ("maxSize",),
    "aws:eks/nodeGroup:NodeGroup": ("scalingConfig", "maxSize"),
}


def _instance_types(res: Resource) -> Iterator[tuple[str, Any]]:
    if res.type in ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate"):
        if res.get("instanceType") is not None:
            yield "instanceType", res.get("instanceType")
    elif res.type == "aws:eks/nodeGroup:NodeGroup":
        types = res.get("instanceTypes")
        if is_unknown(types):
            yield "instanceTypes", types
        for index, value in enumerate(as_list(types) if not is_unknown(types) else []):
            yield f"instanceTypes[{index}]", value
    elif res.type == "aws:autoscaling/group:Group":
        overrides = res.get("mixedInstancesPolicy", "launchTemplate", "overrides")
        if is_unknown(overrides):
            yield "mixedInstancesPolicy.launchTemplate.overrides", overrides
        for index, override in enumerate(as_list(overrides) if not is_unknown(overrides) else []):
            if as_dict(override).get("instanceType") is not None:
                yield (f"mixedInstancesPolicy.launchTemplate.overrides[{index}].instanceType",
                       as_dict(override).get("instanceType"))


KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
_INSTANCE_TYPE_KEYS = ("node.kubernetes.io/instance-type", "karpenter.k8s.aws/instance-family")


def _node_pool_requirements(res: Resource) -> Any:
    return res.get("spec", "template", "spec", "requirements")


def _node_pool_instance_types(res: Resource) -> Iterator[tuple[str, Any]]:
    """Instance types or families a Karpenter NodePool may launch (`In` requirements)."""
    requirements = _node_pool_requirements(res)
    if is_unknown(requirements):
        yield "spec.template.spec.requirements", requirements
        return
    bounded = False
    for index, requirement in enumerate(as_list(requirements)):
        requirement = as_dict(requirement)
        if requirement.get("key") not in _INSTANCE_TYPE_KEYS:
            continue
        if requirement.get("operator") != "In":
            continue
        bounded = True
        values = requirement.get("values")
        if is_unknown(values):
            yield f"spec.template.spec.requirements[{index}].values", values
            continue
        for position, value in enumerate(as_list(values)):
            yield f"spec.template.spec.requirements[{index}].values[{position}]", value
    if not bounded:
        # No instance-type or family requirement: Karpenter may launch any type it finds.
        yield "spec.template.spec.requirements", "<any instance type>"


def _capacity_types(res: Resource) -> Any:
    """Capacity types a resource may launch, or an unknown sentinel."""
    if res.type == KARPENTER_NODE_POOL:
        requirements = _node_pool_requirements(res)
        if is_unknown(requirements):
            return requirements
        for requirement in map(as_dict, as_list(requirements)):
            if requirement.get("key") == "karpenter.sh/capacity-type" and requirement.get("operator") == "In":
                return requirement.get("values")
        return ["on-demand"]  # Karpenter's default when a NodePool names none
    if res.type == "aws:eks/nodeGroup:NodeGroup":
        kind = res.get("capacityType")
        return kind if is_unknown(kind) else [str(kind or "ON_DEMAND").lower().replace("_", "-")]
    if res.type == "aws:autoscaling/group:Group":
        distribution = res.get("mixedInstancesPolicy", "instancesDistribution")
        if is_unknown(distribution):
            return distribution
        if not distribution:
            return ["on-demand"]
        share = as_number(as_dict(distribution).get("onDemandPercentageAboveBaseCapacity", 100))
        if is_unknown(share):
            return share
        return ["on-demand"] if share is not None and share >= 100 else ["on-demand", "spot"]
    return []


def _check_node_pool_limits(res: Resource, config: dict) -> Iterator[Finding]:
    limits = res.get("spec", "limits")
    if is_unknown(limits):
        yield cannot_check("spec.limits")
        return
    gpus = as_dict(limits).get("nvidia.com/gpu")
    if gpus is None:
        yield violation("spec.limits", limits,
                        "a NodePool without an nvidia.com/gpu limit is unbounded capacity: Karpenter "
                        "launches GPU nodes for as many pods as wait",
                        "set spec.limits[\"nvidia.com/gpu\"] to the pool's node maximum times GPUs per node")
        return
    number = as_number(gpus)
    if is_unknown(number):
        yield cannot_check("spec.limits.nvidia.com/gpu")
        return
    ceiling = config.get("maxPoolGpus")
    if isinstance(number, float) and ceiling is not None and number > ceiling:
        yield violation("spec.limits.nvidia.com/gpu", gpus,
                        f"it exceeds the {ceiling} GPUs one pool may take in this environment",
                        f"lower it to at most {ceiling}, or raise maxPoolGpus in this policy's config")


def _check_capacity(res: Resource, config: dict) -> Iterator[Finding]:
    families = [str(f).lower() for f in config.get("allowedInstanceFamilies") or []]
    if res.type == KARPENTER_NODE_POOL:
        yield from _check_node_pool_limits(res, config)
    if not config.get("allowSpot", True):
        kinds = _capacity_types(res)
        if is_unknown(kinds):
            yield cannot_check("capacity type")
        elif "spot" in [str(k).lower() for k in as_list(kinds)]:
            yield violation("capacity type", "spot",
                            "spot capacity can be reclaimed with two minutes' notice, which this "
                            "environment does not accept",
                            "use on-demand capacity, or set allowSpot in this policy's config")
    instance_types = _node_pool_instance_types(res) if res.type == KARPENTER_NODE_POOL else _instance_types(res)
    for path, instance_type in instance_types:
        if is_unknown(instance_type):
            yield cannot_check(path)
        elif str(instance_type).split(".", 1)[0].lower() not in families:
            yield violation(path, instance_type,
                            "the family is not on the approved list (GPU memory, cost and quota "
                            "were sized for those)",
                            f"use one of {', '.join(families)} or add the family to this policy's "
                            "allowedInstanceFamilies")
    keys = _REPLICA_PATHS.get(res.type)
    if keys is None:
        return
    limit = config.get("maxReplicas")
    value = res.get(*keys)
    number = as_number(value)
    if is_unknown(number):
        yield cannot_check(".".join(keys))
    elif isinstance(number, float) and limit is not None and number > limit:
        yield violation(".".join(keys), value,
                        f"it exceeds the {limit} replicas this environment allows, so a scaling "
                        "mistake could take every GPU in the account quota",
                        f"lower it to at most {limit}, or raise maxReplicas in this policy's config")


APPROVED_CAPACITY = resource_policy(
    name="approved-capacity",
    family=FAMILY_HYGIENE,
    description="Instances, templates, node groups, auto scaling groups and Karpenter NodePools use "
                "approved instance families; replica and group maxima stay within the environment's "
                "maxReplicas; every NodePool has a GPU limit; spot only where allowed.",
    resource_types=("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate",
                    "aws:eks/nodeGroup:NodeGroup", "aws:autoscaling/group:Group", KARPENTER_NODE_POOL)
    + tuple(t for t in _REPLICA_PATHS if t.startswith("kubernetes:")),
    check=_check_capacity,
    config_schema={
        "allowedInstanceFamilies": {
            "type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$"},
            "minItems": 1, "default": DEFAULT_INSTANCE_FAMILIES,
            "description": "EC2 instance families (the part before the dot) that may be launched.",
        },
        "maxReplicas": {
            "type": "integer", "minimum": 1, "default": 8,
            "description": "Upper bound for replicas, HPA maxReplicas, ASG and node group maxSize.",
        },
        "maxPoolGpus": {
            "type": "integer", "minimum": 1, "default": 64,
            "description": "Upper bound for a Karpenter NodePool's nvidia.com/gpu limit.",
        },
        "allowSpot": {
            "type": "boolean", "default": True,
            "description": "Whether spot capacity (ASG mixed instances, SPOT node groups, NodePools) is allowed.",
        },
    },
    remediation="Use approved instance families and keep scaling bounds within maxReplicas.",
    severity=Severity.MEDIUM,
)


# ---- log retention ----------------------------------------------------------------------

def _check_retention(res: Resource, config: dict) -> Iterator[Finding]:
    minimum = int(config.get("minLogRetentionDays") or 0)
    days = as_number(res.get("retentionInDays"))
    if is_unknown(days):
        yield cannot_check("retentionInDays")
    elif isinstance(days, float) and 0 < days < minimum:
        yield violation("retentionInDays", res.get("retentionInDays"),
                        f"access and audit logs must be kept at least {minimum} days in this "
                        "environment to investigate key abuse",
                        f"set retention_in_days to {minimum} or more")


LOG_RETENTION = resource_policy(
    name="log-retention",
    family=FAMILY_HYGIENE,
    description="Log groups keep logs at least minLogRetentionDays (unset means never expire).",
    resource_types=("aws:cloudwatch/logGroup:LogGroup",),
    check=_check_retention,
    config_schema={"minLogRetentionDays": {
        "type": "integer", "minimum": 1, "default": 30,
        "description": "Minimum CloudWatch Logs retention in days.",
    }},
    remediation="Set retention_in_days to at least the environment minimum.",
    severity=Severity.LOW,
)


# ---- rollouts ---------------------------------------------------------------------------

def _check_rollout(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == "aws:autoscaling/group:Group":
        attached = [k for k in ("targetGroupArns", "loadBalancers", "trafficSources")
                    if res.get(k) not in (None, [])]
        if not attached:
            return  # attachments made by separate resources are judged by serving-availability
        check = res.get("healthCheckType")
        if is_unknown(check):
            yield cannot_check("healthCheckType")
        elif str(check or "EC2").upper() != "ELB":
            yield violation("healthCheckType", check,
                            "with EC2 health checks the group keeps instances whose model server is "
                            "dead, and the load balancer keeps sending them nothing",
                            "set health_check_type=\"ELB\" with a health_check_grace_period covering model load")
        return
    if res.type != "kubernetes:apps/v1:Deployment" or not kubernetes_servings(res.type, res.props):
        return
    strategy = res.get("spec", "strategy")
    if is_unknown(strategy):
        yield cannot_check("spec.strategy")
        return
    strategy = as_dict(strategy)
    kind = strategy.get("type", "RollingUpdate")
    fix = "use strategy RollingUpdate with rollingUpdate.maxUnavailable: 0 and maxSurge: 1"
    if is_unknown(kind):
        yield cannot_check("spec.strategy.type")
    elif kind == "Recreate":
        yield violation("spec.strategy.type", kind,
                        "Recreate stops every replica before new ones load the model: minutes of outage", fix)
    else:
        unavailable = as_dict(strategy.get("rollingUpdate")).get("maxUnavailable")
        if is_unknown(unavailable):
            yield cannot_check("spec.strategy.rollingUpdate.maxUnavailable")
        elif str(unavailable if unavailable is not None else "25%").strip() not in ("0", "0%", "0.0"):
            yield violation("spec.strategy.rollingUpdate.maxUnavailable", unavailable,
                            "a rollout then takes serving replicas away before replacements have "
                            "loaded the model (the default is 25%)", fix)


ROLLOUT_AVAILABILITY = resource_policy(
    name="rollout-availability",
    family=FAMILY_HYGIENE,
    description="Model Deployments roll out with zero unavailable replicas; auto scaling groups "
                "behind a load balancer use ELB health checks.",
    resource_types=("kubernetes:apps/v1:Deployment", "aws:autoscaling/group:Group"),
    check=_check_rollout,
    remediation="maxUnavailable: 0 for model Deployments; health_check_type ELB for attached ASGs.",
)


POLICIES = [
    TLS_EVERYWHERE,
    IMDSV2_REQUIRED,
    ENCRYPTION_AT_REST,
    GATEWAY_METERING,
    APPROVED_CAPACITY,
    LOG_RETENTION,
    ROLLOUT_AVAILABILITY,
]
