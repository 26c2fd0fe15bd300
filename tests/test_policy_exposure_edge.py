"""edge-authenticated through the analyzer protocol: a CDN or accelerator in front of an internal
or IAM-only origin is public through it; signed URLs, a reviewed viewer-request function or an
authenticating origin make it pass."""
from __future__ import annotations

import json

import pulumi_aws as aws
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack, unknown_of
from tools.analyzer import config_path

__all__ = ["pack"]

POLICY = "edge-authenticated"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
ENDPOINT_GROUP = "aws:globalaccelerator/endpointGroup:EndpointGroup"
CUSTOM_GROUP = "aws:globalaccelerator/customRoutingEndpointGroup:CustomRoutingEndpointGroup"
_CERT = "arn:aws:acm:us-east-1:1:certificate/x"
_RESTRICTIONS = {"geo_restriction": {"restriction_type": "none"}}
_VIEWER_CERT = {"cloudfront_default_certificate": True}


def _behavior(origin_id="lb", **extra):
    return {"target_origin_id": origin_id, "viewer_protocol_policy": "https-only",
            "allowed_methods": ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
            "cached_methods": ["GET", "HEAD"], "cache_policy_id": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", **extra}


def _internal_alb():
    return aws.lb.LoadBalancer("internal", internal=True, load_balancer_type="application",
                               subnets=["subnet-1", "subnet-2"])


def cdn_vpc_origin_internal_alb_dict():
    lb = _internal_alb()
    vpc_origin = aws.cloudfront.VpcOrigin("origin", vpc_origin_endpoint_config={
        "name": "internal", "arn": lb.arn, "http_port": 80, "https_port": 443,
        "origin_protocol_policy": "https-only", "origin_ssl_protocols": {"items": ["TLSv1.2"], "quantity": 1}})
    aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": lb.dns_name, "origin_id": "lb",
                                          "vpc_origin_config": {"vpc_origin_id": vpc_origin.id}}],
                                default_cache_behavior=_behavior())


def cdn_s3_oac_typed():
    bucket = aws.s3.Bucket("weights")
    oac = aws.cloudfront.OriginAccessControl("oac", origin_access_control_origin_type="s3",
                                             signing_behavior="always", signing_protocol="sigv4")
    aws.cloudfront.Distribution("cdn", aws.cloudfront.DistributionArgs(
        enabled=True, restrictions=aws.cloudfront.DistributionRestrictionsArgs(
            geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")),
        viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
        origins=[aws.cloudfront.DistributionOriginArgs(domain_name=bucket.bucket_regional_domain_name,
                                                       origin_id="s3", origin_access_control_id=oac.id)],
        default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
            target_origin_id="s3", viewer_protocol_policy="redirect-to-https", allowed_methods=["GET", "HEAD"],
            cached_methods=["GET", "HEAD"], cache_policy_id="658327ea-f89d-4fab-a63d-7e88639e58f6")))


def cdn_one_open_ordered_behavior():
    group = aws.cloudfront.KeyGroup("signers", items=["K2JCJMDEHXQW5F"])
    aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "models.internal.example", "origin_id": "lb",
                                          "custom_origin_config": {"http_port": 80, "https_port": 443,
                                                                   "origin_protocol_policy": "https-only",
                                                                   "origin_ssl_protocols": ["TLSv1.2"]}}],
                                default_cache_behavior=_behavior(trusted_key_groups=[group.id]),
                                ordered_cache_behaviors=[_behavior(path_pattern="/v1/*")])


def cdn_injects_api_key_into_gateway():
    aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "abc123.execute-api.us-east-1.amazonaws.com",
                                          "origin_id": "api", "origin_path": "/prod",
                                          "custom_headers": [{"name": "x-api-key", "value": "k"}],
                                          "custom_origin_config": {"http_port": 80, "https_port": 443,
                                                                   "origin_protocol_policy": "https-only",
                                                                   "origin_ssl_protocols": ["TLSv1.2"]}}],
                                default_cache_behavior=_behavior("api"))


def cdn_unreviewed_viewer_function():
    fn = aws.cloudfront.Function("auth", runtime="cloudfront-js-2.0", code="function handler(e){return e.request}")
    aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "origin.example.com", "origin_id": "lb"}],
                                default_cache_behavior=_behavior(function_associations=[
                                    {"event_type": "viewer-request", "function_arn": fn.arn}]))


def cdn_key_groups_unknown():
    aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "origin.example.com", "origin_id": "lb"}],
                                default_cache_behavior=_behavior(trusted_key_groups=unknown_of([])))


def ga_internal_nlb():
    nlb = aws.lb.LoadBalancer("nlb", internal=True, load_balancer_type="network", subnets=["subnet-1"])
    accelerator = aws.globalaccelerator.Accelerator("edge", ip_address_type="IPV4", enabled=True)
    listener = aws.globalaccelerator.Listener("tcp", accelerator_arn=accelerator.arn, protocol="TCP",
                                              port_ranges=[{"from_port": 443, "to_port": 443}])
    aws.globalaccelerator.EndpointGroup("group", listener_arn=listener.arn,
                                        endpoint_configurations=[{"endpoint_id": nlb.arn, "weight": 100}])


def ga_literal_instance_typed():
    accelerator = aws.globalaccelerator.Accelerator("edge", ip_address_type="IPV4")
    listener = aws.globalaccelerator.Listener("tcp", accelerator_arn=accelerator.arn, protocol="TCP",
                                              port_ranges=[aws.globalaccelerator.ListenerPortRangeArgs(
                                                  from_port=8000, to_port=8000)])
    aws.globalaccelerator.EndpointGroup("group", aws.globalaccelerator.EndpointGroupArgs(
        listener_arn=listener.arn, endpoint_configurations=[
            aws.globalaccelerator.EndpointGroupEndpointConfigurationArgs(endpoint_id="i-0123456789abcdef0")]))


def ga_custom_routing():
    accelerator = aws.globalaccelerator.CustomRoutingAccelerator("edge")
    listener = aws.globalaccelerator.CustomRoutingListener("l", accelerator_arn=accelerator.arn,
                                                           port_ranges=[{"from_port": 10000, "to_port": 20000}])
    aws.globalaccelerator.CustomRoutingEndpointGroup(
        "group", listener_arn=listener.arn,
        destination_configurations=[{"from_port": 8000, "to_port": 8000, "protocols": ["TCP"]}],
        endpoint_configurations=[{"endpoint_id": "subnet-1"}])


CASES = [
    ("cdn-vpc-origin-internal-alb-dict", cdn_vpc_origin_internal_alb_dict, DISTRIBUTION, "cdn"),
    ("cdn-s3-oac-typed", cdn_s3_oac_typed, DISTRIBUTION, "cdn"),
    ("cdn-one-open-ordered-behavior", cdn_one_open_ordered_behavior, DISTRIBUTION, "cdn"),
    ("cdn-injects-api-key-into-gateway", cdn_injects_api_key_into_gateway, DISTRIBUTION, "cdn"),
    ("cdn-unreviewed-viewer-function", cdn_unreviewed_viewer_function, DISTRIBUTION, "cdn"),
    ("cdn-key-groups-unknown", cdn_key_groups_unknown, DISTRIBUTION, "cdn"),
    ("ga-internal-nlb", ga_internal_nlb, ENDPOINT_GROUP, "group"),
    ("ga-literal-instance-typed", ga_literal_instance_typed, ENDPOINT_GROUP, "group"),
    ("ga-custom-routing", ga_custom_routing, CUSTOM_GROUP, "group"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_an_edge_in_front_of_an_unauthenticated_origin_is_a_mandatory_violation(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), POLICY, type_token, name)


def compliant_edges():
    group = aws.cloudfront.KeyGroup("signers", items=["K2JCJMDEHXQW5F"])
    aws.cloudfront.Distribution("signed", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "weights.s3.amazonaws.com", "origin_id": "s3"}],
                                default_cache_behavior=_behavior("s3", trusted_key_groups=[group.id]),
                                ordered_cache_behaviors=[_behavior("s3", path_pattern="/v2/*",
                                                                   trusted_key_groups=[group.id])])
    api = aws.apigateway.RestApi("api")
    aws.cloudfront.Distribution("api-cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": api.id.apply(
                                    lambda i: f"{i}.execute-api.us-east-1.amazonaws.com"), "origin_id": "api"}],
                                default_cache_behavior=_behavior("api"))
    aws.cloudfront.Distribution("off", enabled=False, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                origins=[{"domain_name": "origin.example.com", "origin_id": "lb"}],
                                default_cache_behavior=_behavior())
    # An accelerator in front of an ALB whose listener authenticates.
    tg = aws.lb.TargetGroup("models", port=8000, protocol="HTTP", vpc_id="vpc-1", target_type="ip")
    alb = aws.lb.LoadBalancer("web", subnets=["subnet-1", "subnet-2"])
    aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", certificate_arn=_CERT,
                    default_actions=[{"type": "authenticate-cognito", "order": 1, "authenticate_cognito": {
                        "user_pool_arn": "arn:pool", "user_pool_client_id": "c", "user_pool_domain": "d"}},
                        {"type": "forward", "order": 2, "target_group_arn": tg.arn}])
    accelerator = aws.globalaccelerator.Accelerator("edge")
    listener = aws.globalaccelerator.Listener("tcp", accelerator_arn=accelerator.arn, protocol="TCP",
                                              port_ranges=[{"from_port": 443, "to_port": 443}])
    aws.globalaccelerator.EndpointGroup("group", listener_arn=listener.arn,
                                        endpoint_configurations=[{"endpoint_id": alb.arn}])


def test_signed_urls_authenticating_origins_and_disabled_distributions_pass(pack):
    verdict = judge(pack, compliant_edges, "prod")
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "entry-point-classified")


def test_a_reviewed_viewer_request_function_counts_when_its_arn_is_literal(pack):
    arn = "arn:aws:cloudfront::123456789012:function/jwt-auth"

    def program():
        aws.cloudfront.Distribution("cdn", enabled=True, restrictions=_RESTRICTIONS, viewer_certificate=_VIEWER_CERT,
                                    origins=[{"domain_name": "origin.example.com", "origin_id": "lb"}],
                                    default_cache_behavior=_behavior(function_associations=[
                                        {"event_type": "viewer-request", "function_arn": arn}]))

    expect_violation(judge(pack, program, "prod"), POLICY, DISTRIBUTION, "cdn")
    config = json.loads(config_path("prod").read_text())
    config[POLICY] = {"enforcementLevel": "mandatory", "reviewedViewerRequestFunctions": [arn]}
    expect_clean(judge(pack, program, "prod", config=config), POLICY)
