"""Family 1, per resource: managed application and container platforms with public endpoints.

Each of these hands out an internet URL or address unless told otherwise, and none of them
authenticates callers of the application itself:
- App Runner services are publicly accessible unless ingress is_publicly_accessible is false
  (https://docs.aws.amazon.com/apprunner/latest/dg/network-pl.html).
- Amplify Hosting serves every branch publicly unless basic auth is on
  (https://docs.aws.amazon.com/amplify/latest/userguide/access-control.html).
- Elastic Beanstalk puts a load-balanced environment behind a public load balancer unless
  aws:ec2:vpc ELBScheme is internal, and a single-instance environment on an Elastic IP
  (https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/command-options-general.html).
- Lightsail instances always have a public IPv4 address, and its load balancers,
  distributions and container services are always public
  (https://docs.aws.amazon.com/lightsail/latest/userguide/understanding-public-ip-and-private-ip-addresses-in-amazon-lightsail.html).
"""
from __future__ import annotations

from typing import Any, Iterator

from ._framework import FAMILY_EXPOSURE, Finding, Resource, resource_policy, unknown, violation
from ._wire import admits_internet, as_bool, as_dict, as_list, is_unknown

APP_RUNNER = "aws:apprunner/service:Service"
AMPLIFY_APP = "aws:amplify/app:App"
AMPLIFY_BRANCH = "aws:amplify/branch:Branch"
BEANSTALK = "aws:elasticbeanstalk/environment:Environment"
LIGHTSAIL_ALWAYS_PUBLIC = {
    "aws:lightsail/instance:Instance": "a Lightsail instance always has a public IPv4 address",
    "aws:lightsail/lb:Lb": "a Lightsail load balancer is always internet-facing and cannot authenticate",
    "aws:lightsail/staticIpAttachment:StaticIpAttachment": "it attaches a public static IP to an instance",
}
LIGHTSAIL_CONTAINERS = "aws:lightsail/containerService:ContainerService"
LIGHTSAIL_DISTRIBUTION = "aws:lightsail/distribution:Distribution"
LIGHTSAIL_PORTS = "aws:lightsail/instancePublicPorts:InstancePublicPorts"
LIGHTSAIL_DATABASE = "aws:lightsail/database:Database"

_FIX = ("run the application privately (EC2 or EKS behind the internal load balancer and the authenticated "
        "API gateway), or turn the platform's public access off")


def _check_app_runner(res: Resource) -> Iterator[Finding]:
    public = as_bool(res.get("networkConfiguration", "ingressConfiguration", "isPubliclyAccessible"))
    if is_unknown(public):
        yield unknown("networkConfiguration.ingressConfiguration.isPubliclyAccessible", _FIX)
    elif public is not False:
        yield violation("networkConfiguration.ingressConfiguration.isPubliclyAccessible", public,
                        "App Runner then serves the service on a public URL with no authentication",
                        "set network_configuration.ingress_configuration.is_publicly_accessible=False and "
                        "reach it through a VPC ingress connection")


def _check_amplify(res: Resource) -> Iterator[Finding]:
    enabled = as_bool(res.get("enableBasicAuth"))
    if is_unknown(enabled):
        yield unknown("enableBasicAuth", _FIX)
    elif res.type == AMPLIFY_APP and enabled is not True:
        yield violation("enableBasicAuth", enabled,
                        "Amplify Hosting serves every branch of the app on a public URL to anyone",
                        "set enable_basic_auth=True with basic_auth_credentials (from a secret)")
    elif res.type == AMPLIFY_BRANCH and enabled is False:
        yield violation("enableBasicAuth", False,
                        "the branch turns basic auth off, so it is served on a public URL to anyone",
                        "set enable_basic_auth=True on the branch (or leave it to the app's setting)")


def _settings(res: Resource) -> Any:
    settings = res.get("settings")
    if is_unknown(settings):
        return settings
    found = {}
    for setting in as_list(settings):
        if is_unknown(setting):
            return setting
        setting = as_dict(setting)
        found[(str(setting.get("namespace", "")).lower(), str(setting.get("name", "")).lower())] = setting.get("value")
    return found


def _check_beanstalk(res: Resource) -> Iterator[Finding]:
    settings = _settings(res)
    if is_unknown(settings):
        yield unknown("settings", _FIX)
        return
    tier = res.get("tier")
    public_ip = as_bool(settings.get(("aws:ec2:vpc", "associatepublicipaddress")))
    if is_unknown(public_ip):
        yield unknown("settings[aws:ec2:vpc AssociatePublicIpAddress]", _FIX)
    elif public_ip is True:
        yield violation("settings[aws:ec2:vpc AssociatePublicIpAddress]", "true",
                        "every instance of the environment gets a public IPv4 address", _FIX)
    if is_unknown(tier):
        yield unknown("tier", _FIX)
        return
    if str(tier or "WebServer").lower() == "worker":
        return  # no load balancer: it reads from a queue
    env_type = settings.get(("aws:elasticbeanstalk:environment", "environmenttype"))
    scheme = settings.get(("aws:ec2:vpc", "elbscheme"))
    if is_unknown(env_type) or is_unknown(scheme):
        yield unknown("settings[EnvironmentType/ELBScheme]", _FIX)
    elif str(env_type or "").lower() == "singleinstance":
        yield violation("settings[aws:elasticbeanstalk:environment EnvironmentType]", env_type,
                        "a single-instance web environment serves from an instance with an Elastic IP, "
                        "public and unauthenticated", _FIX)
    elif str(scheme or "public").lower() != "internal":
        yield violation("settings[aws:ec2:vpc ELBScheme]", scheme,
                        "a load-balanced web environment gets an internet-facing load balancer unless "
                        "ELBScheme is internal (settings in a configuration template are not visible here)",
                        "set the aws:ec2:vpc ELBScheme setting to internal")


def _check_lightsail(res: Resource) -> Iterator[Finding]:
    if res.type in LIGHTSAIL_ALWAYS_PUBLIC:
        yield violation("type", res.type, LIGHTSAIL_ALWAYS_PUBLIC[res.type], _FIX)
    elif res.type in (LIGHTSAIL_CONTAINERS, LIGHTSAIL_DISTRIBUTION):
        key = "isDisabled" if res.type == LIGHTSAIL_CONTAINERS else "isEnabled"
        value = as_bool(res.get(key))
        if is_unknown(value):
            yield unknown(key, _FIX)
        elif (key == "isDisabled" and value is not True) or (key == "isEnabled" and value is not False):
            yield violation(key, value, "Lightsail serves it on a public endpoint with no authentication", _FIX)
    elif res.type == LIGHTSAIL_PORTS:
        ports = res.get("portInfos")
        if is_unknown(ports):
            yield unknown("portInfos", _FIX)
            return
        for index, port in enumerate(as_list(ports)):
            port = as_dict(port)
            cidrs = [*as_list(port.get("cidrs")), *as_list(port.get("ipv6Cidrs"))]
            if any(is_unknown(c) for c in cidrs) or is_unknown(port.get("cidrs")):
                yield unknown(f"portInfos[{index}].cidrs", _FIX)
            elif not cidrs or any(admits_internet(c) for c in cidrs):
                yield violation(f"portInfos[{index}].cidrs", port.get("cidrs"),
                                "the port is open to internet addresses on the instance's public IP (no "
                                "CIDRs means 0.0.0.0/0)", _FIX)
    elif res.type == LIGHTSAIL_DATABASE:
        public = as_bool(res.get("publiclyAccessible"))
        if is_unknown(public):
            yield unknown("publiclyAccessible", _FIX)
        elif public is True:
            yield violation("publiclyAccessible", True, "the database accepts connections from the internet", _FIX)


def _check(res: Resource, config: dict) -> Iterator[Finding]:
    if res.type == APP_RUNNER:
        yield from _check_app_runner(res)
    elif res.type in (AMPLIFY_APP, AMPLIFY_BRANCH):
        yield from _check_amplify(res)
    elif res.type == BEANSTALK:
        yield from _check_beanstalk(res)
    else:
        yield from _check_lightsail(res)


MANAGED_PLATFORM_NOT_PUBLIC = resource_policy(
    name="managed-platform-not-public",
    family=FAMILY_EXPOSURE,
    description="App Runner services are not publicly accessible, Amplify apps require basic auth, Elastic "
                "Beanstalk web environments use an internal load balancer and no public IPs, and no "
                "Lightsail instance, load balancer, distribution, container service, open port or public "
                "database is created.",
    resource_types=(APP_RUNNER, AMPLIFY_APP, AMPLIFY_BRANCH, BEANSTALK, *LIGHTSAIL_ALWAYS_PUBLIC,
                    LIGHTSAIL_CONTAINERS, LIGHTSAIL_DISTRIBUTION, LIGHTSAIL_PORTS, LIGHTSAIL_DATABASE),
    check=_check,
    remediation="Serve models only through the private load balancer and the authenticated gateway; turn "
                "platform public access off.",
)

POLICIES = [MANAGED_PLATFORM_NOT_PUBLIC]
