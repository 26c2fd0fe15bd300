"""Family 1 on Kubernetes, through the analyzer protocol: every rule sees the exposure however
it is spelled (dict args, typed Args classes, custom resources with nested specs, yaml/v2
ConfigGroup objects, Patch resources, Helm values), and each has a compliant twin that must
pass. Programs run as a first preview, so values computed from other resources are unknown.
"""
from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pytest

from tests.policy_helpers import (DEPLOYMENT, INGRESS, SERVICE, expect_clean, expect_violation, judge, pack,
                                  unknown_of)

__all__ = ["pack"]

SERVICE_PATCH = "kubernetes:core/v1:ServicePatch"
INGRESS_PATCH = "kubernetes:networking.k8s.io/v1:IngressPatch"
DEPLOYMENT_PATCH = "kubernetes:apps/v1:DeploymentPatch"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
RELEASE = "kubernetes:helm.sh/v3:Release"
CHART = "kubernetes:helm.sh/v4:Chart"
RAY_SERVICE = "kubernetes:ray.io/v1:RayService"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
KSVC = "kubernetes:serving.knative.dev/v1:Service"
SCALED_JOB = "kubernetes:keda.sh/v1alpha1:ScaledJob"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
LB_CONFIG = "kubernetes:gateway.k8s.aws/v1beta1:LoadBalancerConfiguration"

INTERNAL = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
_IMAGE = "vllm/vllm-openai:v0.11.0"


def _container(**extra):
    return {"name": "vllm", "image": _IMAGE, **extra}


# ---- Services, in every spelling ------------------------------------------------------

def test_a_load_balancer_service_needs_an_explicit_internal_scheme_dicts_and_typed_args(pack):
    def program():
        k8s.core.v1.Service("dict", spec={"type": "LoadBalancer", "ports": [{"port": 80}]})
        k8s.core.v1.Service("typed", metadata=k8s.meta.v1.ObjectMetaArgs(annotations={
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}),
            spec=k8s.core.v1.ServiceSpecArgs(type="LoadBalancer", ports=[k8s.core.v1.ServicePortArgs(port=80)]))
        k8s.core.v1.Service("nlb-class", spec=k8s.core.v1.ServiceSpecArgs(
            type="LoadBalancer", load_balancer_class="service.k8s.aws/nlb", ports=[k8s.core.v1.ServicePortArgs(port=80)]))
        k8s.core.v1.Service("world-ranges", spec={"type": "LoadBalancer", "ports": [{"port": 80}],
                                                  "load_balancer_source_ranges": ["0.0.0.0/0"]})
    verdict = judge(pack, program)
    for name in ("dict", "typed", "nlb-class", "world-ranges"):
        expect_violation(verdict, "k8s-service-internal", SERVICE, name, contains=["aws-load-balancer-scheme"])


def test_internal_load_balancer_services_pass_in_both_spellings(pack):
    def program():
        k8s.core.v1.Service("dict", metadata={"annotations": INTERNAL},
                            spec={"type": "LoadBalancer", "ports": [{"port": 80}]})
        k8s.core.v1.Service("typed", metadata=k8s.meta.v1.ObjectMetaArgs(annotations=INTERNAL),
                            spec=k8s.core.v1.ServiceSpecArgs(type="LoadBalancer",
                                                             ports=[k8s.core.v1.ServicePortArgs(port=80)]))
        k8s.core.v1.Service("private-ranges", spec={"type": "LoadBalancer", "ports": [{"port": 80}],
                                                    "load_balancer_source_ranges": ["10.0.0.0/8"]})
        k8s.core.v1.Service("cluster-ip", spec=k8s.core.v1.ServiceSpecArgs(ports=[k8s.core.v1.ServicePortArgs(port=80)]))
    expect_clean(judge(pack, program), "k8s-service-internal")


def test_service_specs_inside_custom_resources_are_judged_like_services(pack):
    def program():
        # KubeRay: the head group's serviceType makes the operator create that Service.
        k8s.apiextensions.CustomResource("ray", api_version="ray.io/v1", kind="RayService", spec={
            "serveConfigV2": "applications: []",
            "rayClusterConfig": {"headGroupSpec": {"serviceType": "LoadBalancer", "rayStartParams": {},
                                                   "template": {"spec": {"containers": [_container()]}}}}})
        # An operator's Service template nested under any key, with its own metadata.
        k8s.apiextensions.CustomResource("widget", api_version="example.com/v1", kind="ModelEndpoint", spec={
            "exposure": {"serviceTemplate": {"metadata": {"labels": {"a": "b"}},
                                             "spec": {"type": "NodePort", "ports": [{"port": 8000}]}}}})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-service-internal", RAY_SERVICE, "ray", contains=["serviceType"])
    expect_violation(verdict, "k8s-service-internal", "kubernetes:example.com/v1:ModelEndpoint", "widget",
                     contains=["NodePort"])


def test_custom_resources_with_internal_or_cluster_ip_services_pass(pack):
    def program():
        k8s.apiextensions.CustomResource("ray", api_version="ray.io/v1", kind="RayService", spec={
            "rayClusterConfig": {"headGroupSpec": {
                "serviceType": "LoadBalancer", "headService": {"metadata": {"annotations": INTERNAL}},
                "template": {"spec": {"containers": [_container()]}}}}})
        k8s.apiextensions.CustomResource("widget", api_version="example.com/v1", kind="ModelEndpoint", spec={
            "exposure": {"serviceTemplate": {"metadata": {"annotations": INTERNAL},
                                             "spec": {"type": "LoadBalancer", "ports": [{"port": 8000}]}}}})
    expect_clean(judge(pack, program), "k8s-service-internal")


def test_a_custom_resource_whose_spec_is_unknown_fails_closed_but_a_builtin_kind_without_pods_does_not(pack):
    def program():
        k8s.apiextensions.CustomResource("computed", api_version="example.com/v1", kind="ModelEndpoint",
                                         spec=unknown_of({"replicas": 1}))
        k8s.networking.v1.NetworkPolicy("np", spec=unknown_of({"pod_selector": {}}))
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-no-host-network", "kubernetes:example.com/v1:ModelEndpoint", "computed",
                     contains=["unknown during preview"])
    assert not verdict.on("k8s-no-host-network", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "np")
    assert not verdict.on("k8s-service-internal", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "np")


# ---- pods, in every spelling ----------------------------------------------------------

def test_host_networking_is_found_in_typed_workloads_and_custom_resources(pack):
    def program():
        k8s.apps.v1.Deployment("typed", spec=k8s.apps.v1.DeploymentSpecArgs(
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "m"}),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app": "m"}),
                spec=k8s.core.v1.PodSpecArgs(host_network=True, containers=[
                    k8s.core.v1.ContainerArgs(name="vllm", image=_IMAGE)]))))
        k8s.core.v1.ReplicationController("rc", spec={"template": {"spec": {"containers": [
            _container(ports=[{"container_port": 8000, "host_port": 8000}])]}}})
        k8s.apiextensions.CustomResource("isvc", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                         metadata={"labels": {"networking.kserve.io/visibility": "cluster-local",
                                                             "networking.knative.dev/visibility": "cluster-local"}},
                                         spec={"predictor": {"hostNetwork": True, "containers": [_container()]}})
        k8s.apiextensions.CustomResource("job", api_version="keda.sh/v1alpha1", kind="ScaledJob", spec={
            "jobTargetRef": {"template": {"spec": {"containers": [
                _container(ports=[{"containerPort": 8000, "hostPort": 8000}])]}}},
            "triggers": [{"type": "prometheus", "metadata": {"threshold": "5"}}]})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-no-host-network", DEPLOYMENT, "typed", contains=["hostNetwork"])
    expect_violation(verdict, "k8s-no-host-network", "kubernetes:core/v1:ReplicationController", "rc",
                     contains=["hostPort"])
    expect_violation(verdict, "k8s-no-host-network", ISVC, "isvc", contains=["spec.predictor.hostNetwork"])
    expect_violation(verdict, "k8s-no-host-network", SCALED_JOB, "job", contains=["jobTargetRef"])


def test_the_same_workloads_without_host_access_pass(pack):
    def program():
        k8s.apps.v1.Deployment("typed", spec=k8s.apps.v1.DeploymentSpecArgs(
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "m"}),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app": "m"}),
                spec=k8s.core.v1.PodSpecArgs(containers=[k8s.core.v1.ContainerArgs(name="vllm", image=_IMAGE)]))))
        k8s.apiextensions.CustomResource("isvc", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                         metadata={"labels": {"networking.kserve.io/visibility": "cluster-local",
                                                             "networking.knative.dev/visibility": "cluster-local"}},
                                         spec={"predictor": {"containers": [_container()]}})
    verdict = judge(pack, program)
    expect_clean(verdict, "k8s-no-host-network")
    expect_clean(verdict, "k8s-ingress-internal")


# ---- patches: only the fields they name -----------------------------------------------

def test_patches_that_set_exposure_without_what_secures_it_fail_closed(pack):
    def program():
        k8s.core.v1.ServicePatch("to-lb", metadata={"name": "vllm"},
                                 spec=k8s.core.v1.ServiceSpecPatchArgs(type="LoadBalancer"))
        k8s.core.v1.ServicePatch("go-public", metadata=k8s.meta.v1.ObjectMetaPatchArgs(name="vllm", annotations={
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}))
        k8s.networking.v1.IngressPatch("open", metadata={"name": "web", "annotations": {
            "alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/auth-type": "oidc"}})
        k8s.networking.v1.IngressPatch("allow-anon", metadata={"name": "web", "annotations": {
            "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "allow"}})
        k8s.apps.v1.DeploymentPatch("hostnet", metadata={"name": "vllm"}, spec=k8s.apps.v1.DeploymentSpecPatchArgs(
            template=k8s.core.v1.PodTemplateSpecPatchArgs(spec=k8s.core.v1.PodSpecPatchArgs(host_network=True))))
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-service-internal", SERVICE_PATCH, "to-lb", contains=["same patch"])
    expect_violation(verdict, "k8s-service-internal", SERVICE_PATCH, "go-public", contains=["internet-facing"])
    expect_violation(verdict, "k8s-ingress-internal", INGRESS_PATCH, "open",
                     contains=["auth-on-unauthenticated-request"])
    expect_violation(verdict, "k8s-ingress-internal", INGRESS_PATCH, "allow-anon", contains=["allow"])
    expect_violation(verdict, "k8s-no-host-network", DEPLOYMENT_PATCH, "hostnet", contains=["hostNetwork"])


def test_patches_that_leave_exposure_alone_or_secure_it_in_the_same_patch_pass(pack):
    def program():
        k8s.core.v1.ServicePatch("internal-lb", metadata={"name": "vllm", "annotations": INTERNAL},
                                 spec={"type": "LoadBalancer"})
        k8s.core.v1.ServicePatch("labels", metadata={"name": "vllm", "labels": {"team": "ml"}})
        k8s.apps.v1.DeploymentPatch("scale", metadata={"name": "vllm"}, spec={"replicas": 3})
        k8s.networking.v1.IngressPatch("oidc", metadata={"name": "web", "annotations": {
            "alb.ingress.kubernetes.io/scheme": "internet-facing", "alb.ingress.kubernetes.io/auth-type": "oidc",
            "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "authenticate"}})
        k8s.networking.v1.IngressPatch("tls", metadata={"name": "web", "annotations": {
            "alb.ingress.kubernetes.io/ssl-redirect": "443"}})
    verdict = judge(pack, program)
    for policy in ("k8s-service-internal", "k8s-no-host-network", "k8s-ingress-internal"):
        expect_clean(verdict, policy)


# ---- Ingress authentication semantics ------------------------------------------------

_BACKEND = {"default_backend": {"service": {"name": "m", "port": {"number": 80}}}}


def _ingress(name, annotations, cls=None, api=k8s.networking.v1):
    spec = dict(_BACKEND, **({"ingress_class_name": cls} if cls else {}))
    return api.Ingress(name, metadata={"annotations": annotations}, spec=spec)


def test_auth_modes_that_let_anonymous_requests_through_are_not_authentication(pack):
    def program():
        _ingress("alb-allow", {"alb.ingress.kubernetes.io/scheme": "internet-facing",
                               "alb.ingress.kubernetes.io/auth-type": "cognito",
                               "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "allow"}, "alb")
        _ingress("alb-none", {"alb.ingress.kubernetes.io/scheme": "internet-facing",
                              "alb.ingress.kubernetes.io/auth-type": "none"}, "alb")
        _ingress("nginx-basic-no-secret", {"nginx.ingress.kubernetes.io/auth-type": "basic"}, "nginx")
        _ingress("nginx-satisfy-any-world", {"nginx.ingress.kubernetes.io/auth-url": "https://auth.example/check",
                                             "nginx.ingress.kubernetes.io/satisfy": "any",
                                             "nginx.ingress.kubernetes.io/whitelist-source-range": "0.0.0.0/0"},
                 "nginx")
        _ingress("traefik", {}, "traefik")
        _ingress("no-class", {})
        _ingress("nginx-optional-client-cert", {"nginx.ingress.kubernetes.io/auth-tls-verify-client": "optional",
                                                "nginx.ingress.kubernetes.io/auth-tls-secret": "edge/ca"}, "nginx")
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-ingress-internal", INGRESS, "nginx-optional-client-cert")
    for name, fragment in (("alb-allow", "anonymously"), ("alb-none", "auth-type"),
                           ("nginx-basic-no-secret", "auth-secret"), ("nginx-satisfy-any-world", "satisfy"),
                           ("traefik", "traefik"), ("no-class", "default class")):
        expect_violation(verdict, "k8s-ingress-internal", INGRESS, name, contains=[fragment])


def test_ingresses_that_authenticate_every_request_or_stay_private_pass(pack):
    def program():
        _ingress("alb-internal", {"alb.ingress.kubernetes.io/scheme": "internal"}, "alb")
        _ingress("alb-oidc", {"alb.ingress.kubernetes.io/scheme": "internet-facing",
                              "alb.ingress.kubernetes.io/auth-type": "oidc",
                              "alb.ingress.kubernetes.io/auth-on-unauthenticated-request": "deny"})
        _ingress("nginx-basic", {"nginx.ingress.kubernetes.io/auth-type": "basic",
                                 "nginx.ingress.kubernetes.io/auth-secret": "basic-auth"}, "nginx")
        _ingress("nginx-external-auth", {"nginx.ingress.kubernetes.io/auth-url": "https://auth.example/check"},
                 "nginx")
        _ingress("nginx-private-allowlist", {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"},
                 "nginx")
        _ingress("traefik", {}, "traefik")
        _ingress("nginx-mtls", {"nginx.ingress.kubernetes.io/auth-tls-verify-client": "on",
                                "nginx.ingress.kubernetes.io/auth-tls-secret": "edge/ca"}, "nginx")
        _ingress("nginx-inc-jwt", {"nginx.org/jwt-key": "jwk-secret"}, "nginx")
    verdict = judge(pack, program, config={"k8s-ingress-internal": {"internalIngressClasses": ["traefik"]}})
    expect_clean(verdict, "k8s-ingress-internal")


def test_knative_and_kserve_services_are_public_unless_cluster_local(pack):
    def program():
        k8s.apiextensions.CustomResource("ksvc", api_version="serving.knative.dev/v1", kind="Service", spec={
            "template": {"spec": {"containers": [_container()]}}})
        k8s.apiextensions.CustomResource("isvc", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                         spec={"predictor": {"model": {"modelFormat": {"name": "huggingface"}}}})
        k8s.apiextensions.CustomResource("private", api_version="serving.knative.dev/v1", kind="Service",
                                         metadata={"labels": {"networking.knative.dev/visibility": "cluster-local"}},
                                         spec={"template": {"spec": {"containers": [_container()]}}})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-ingress-internal", KSVC, "ksvc", contains=["cluster-local"])
    expect_violation(verdict, "k8s-ingress-internal", ISVC, "isvc", contains=["cluster-local"])
    assert not verdict.on("k8s-ingress-internal", KSVC, "private")


# ---- Gateway API ----------------------------------------------------------------------

def _gateway(name, cls, **spec):
    return k8s.apiextensions.CustomResource(name, api_version="gateway.networking.k8s.io/v1", kind="Gateway",
                                            metadata={"name": name, "namespace": "edge"},
                                            spec={"gatewayClassName": cls, "listeners": [
                                                {"name": "http", "port": 80, "protocol": "HTTP"}], **spec})


def test_gateways_are_internal_and_routes_attach_only_to_gateways_judged_here(pack):
    def program():
        _gateway("public", "eg")
        k8s.apiextensions.CustomResource("route", api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                                         metadata={"name": "chat", "namespace": "models"},
                                         spec={"parentRefs": [{"name": "shared-edge", "namespace": "infra"}],
                                               "rules": [{"backendRefs": [{"name": "vllm", "port": 8000}]}]})
        k8s.apiextensions.CustomResource("lbc", api_version="gateway.k8s.aws/v1beta1",
                                         kind="LoadBalancerConfiguration", spec={"scheme": "internet-facing"})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-entry-points", GATEWAY, "public", contains=["gatewayClassName"])
    expect_violation(verdict, "k8s-entry-points", HTTP_ROUTE, "route", contains=["infra/shared-edge"])
    expect_violation(verdict, "k8s-ingress-internal", LB_CONFIG, "lbc", contains=["internet-facing"])


def test_internal_gateways_and_their_routes_pass(pack):
    def program():
        _gateway("annotated", "eg", infrastructure={"annotations": INTERNAL})
        _gateway("lattice", "amazon-vpc-lattice")
        k8s.apiextensions.CustomResource("alb-class", api_version="gateway.networking.k8s.io/v1",
                                         kind="GatewayClass", metadata={"name": "aws-alb"},
                                         spec={"controllerName": "gateway.k8s.aws/alb"})
        _gateway("lbc", "aws-alb")
        k8s.apiextensions.CustomResource("route", api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                                         metadata={"name": "chat", "namespace": "edge"},
                                         spec={"parentRefs": [{"name": "annotated"}],
                                               "rules": [{"backendRefs": [{"name": "vllm", "port": 8000}]}]})
        k8s.apiextensions.CustomResource("lbc-config", api_version="gateway.k8s.aws/v1beta1",
                                         kind="LoadBalancerConfiguration", spec={"scheme": "internal"})
    verdict = judge(pack, program)
    expect_clean(verdict, "k8s-entry-points")
    expect_clean(verdict, "k8s-ingress-internal")


# ---- manifests: ConfigGroup objects and List kinds ------------------------------------

_LIST_YAML = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: vllm}
  spec: {type: NodePort, ports: [{port: 80}]}
- apiVersion: serving.kserve.io/v1beta1
  kind: InferenceService
  metadata: {name: r1, annotations: {serving.kserve.io/deploymentMode: RawDeployment},
             labels: {networking.kserve.io/visibility: cluster-local}}
  spec: {predictor: {hostNetwork: true, containers: [{name: k, image: vllm/vllm-openai:v0.11.0}]}}
"""


def test_objects_inside_config_groups_and_list_kinds_are_judged(pack):
    def program():
        k8s.yaml.v2.ConfigGroup("list", yaml=_LIST_YAML)
        k8s.yaml.v2.ConfigGroup("objs", objs=[{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                               "metadata": {"name": "i"},
                                               "spec": {"ingressClassName": "nginx", **{"defaultBackend": {
                                                   "service": {"name": "m", "port": {"number": 80}}}}}}])
        k8s.yaml.v2.ConfigFile("file", file="manifests/serving.yaml")
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-entry-points", CONFIG_GROUP, "list", contains=["items[0]", "NodePort"])
    expect_violation(verdict, "k8s-entry-points", CONFIG_GROUP, "list", contains=["items[1]", "hostNetwork"])
    expect_violation(verdict, "k8s-entry-points", CONFIG_GROUP, "objs", contains=["auth-url"])
    expect_violation(verdict, "k8s-entry-points", "kubernetes:yaml/v2:ConfigFile", "file",
                     contains=["not read"])


def test_config_groups_of_internal_objects_pass(pack):
    def program():
        k8s.yaml.v2.ConfigGroup("list", yaml=_LIST_YAML.replace("type: NodePort", "type: ClusterIP")
                                .replace("hostNetwork: true, ", ""))
    expect_clean(judge(pack, program), "k8s-entry-points")


# ---- Helm -----------------------------------------------------------------------------

def test_helm_values_that_expose_are_findings_in_releases_and_charts(pack):
    def program():
        k8s.helm.v3.Release("ingress", k8s.helm.v3.ReleaseArgs(
            chart="ingress-nginx", version="4.11.3",
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo="https://kubernetes.github.io/ingress-nginx"),
            values={"controller": {"service": {"type": "LoadBalancer"}}}))
        k8s.helm.v4.Chart("web", chart="oci://registry-1.docker.io/bitnamicharts/nginx", version="18.2.4",
                          value_yaml_files=[pulumi.StringAsset("service:\n  type: NodePort\n")])
        k8s.helm.v3.Release("hostnet", chart="node-agent", repository_opts={"repo": "https://charts.example"},
                            values={"daemonset": {"hostNetwork": True}})
        k8s.helm.v3.Release("app", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"ingress": {"enabled": True, "className": "alb", "annotations": {
                                "alb.ingress.kubernetes.io/scheme": "internet-facing"}}})
    verdict = judge(pack, program)
    expect_violation(verdict, "helm-chart-values", RELEASE, "ingress", contains=["controller.service"])
    expect_violation(verdict, "helm-chart-values", CHART, "web", contains=["NodePort"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "hostnet", contains=["hostNetwork"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "app", contains=["values.ingress"])


def test_helm_fails_closed_on_what_it_cannot_judge_and_chart_defaults_that_expose(pack):
    def program():
        k8s.helm.v3.Release("computed", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"service": unknown_of({"type": "ClusterIP"})})
        k8s.helm.v3.Release("defaults", chart="ingress-nginx",
                            repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"})
        k8s.helm.v3.Release("kafka", chart="kafka", repository_opts={"repo": "oci://registry-1.docker.io/bitnamicharts"},
                            values={"externalAccess": {"enabled": True}})
        k8s.helm.v4.Chart("file", chart="webapp", value_yaml_files=[pulumi.FileAsset("values-prod.yaml")])
        # helm.v3.Chart renders inside the program: under a preview that registered none of
        # its objects, nothing it deploys is visible.
        k8s.helm.v3.Chart("legacy", k8s.helm.v3.ChartOpts(
            chart="nginx", fetch_opts=k8s.helm.v3.FetchOpts(repo="https://charts.bitnami.com/bitnami")))
        k8s.kustomize.v2.Directory("overlay", directory="./overlays/prod")
    verdict = judge(pack, program)
    expect_violation(verdict, "helm-chart-values", "kubernetes:helm.sh/v3:Chart", "legacy",
                     contains=["none of its objects were registered"])
    expect_violation(verdict, "k8s-entry-points", "kubernetes:kustomize/v2:Directory", "overlay",
                     contains=["kustomization"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "computed", contains=["unknown during preview"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "defaults", contains=["chart default LoadBalancer"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "kafka", contains=["chart-specific"])
    expect_violation(verdict, "helm-chart-values", CHART, "file", contains=["valueYamlFiles[0]"])


def test_internal_values_and_reviewed_charts_pass(pack):
    reviewed = {"helm-chart-values": {"reviewedCharts": [
        {"chart": "webapp", "repo": "https://charts.example", "reason": "reviewed: ClusterIP only"}]}}

    def program():
        k8s.helm.v3.Release("ingress", chart="ingress-nginx",
                            repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"},
                            values={"controller": {"service": {"annotations": INTERNAL}}})
        k8s.helm.v4.Chart("web", chart="oci://registry-1.docker.io/bitnamicharts/nginx",
                          values={"service": {"type": "ClusterIP"}})
        # ingress-nginx with only its internal Service (controller.service.internal).
        k8s.helm.v3.Release("ingress-internal-only", chart="ingress-nginx",
                            repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"},
                            values={"controller": {"service": {"external": {"enabled": False}, "internal": {
                                "enabled": True, "annotations": INTERNAL}}}})
        k8s.helm.v3.Release("computed", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"service": unknown_of({"type": "ClusterIP"})})
    expect_clean(judge(pack, program, config=reviewed), "helm-chart-values")


def test_a_reviewed_chart_still_cannot_spell_out_a_public_load_balancer(pack):
    reviewed = {"helm-chart-values": {"reviewedCharts": [
        {"chart": "webapp", "reason": "reviewed"}]}}

    def program():
        k8s.helm.v3.Release("app", chart="webapp", values={"service": {"type": "LoadBalancer"}})
    expect_violation(judge(pack, program, config=reviewed), "helm-chart-values", RELEASE, "app",
                     contains=["aws-load-balancer-scheme"])


def test_list_resources_are_judged_item_by_item(pack):
    def program():
        k8s.core.v1.ServiceList("services", items=[
            k8s.core.v1.ServiceArgs(metadata=k8s.meta.v1.ObjectMetaArgs(name="ok", annotations=INTERNAL),
                                    spec=k8s.core.v1.ServiceSpecArgs(type="LoadBalancer")),
            {"metadata": {"name": "open"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}])
        k8s.apps.v1.DeploymentList("deployments", items=[{"metadata": {"name": "d"}, "spec": {
            "selector": {"match_labels": {"app": "d"}}, "template": {"spec": {
                "host_network": True, "containers": [_container()]}}}}])
    verdict = judge(pack, program)
    found = expect_violation(verdict, "k8s-service-internal", "kubernetes:core/v1:ServiceList", "services",
                             contains=["items[1].spec.type"])
    assert "items[0]" not in found.message
    expect_violation(verdict, "k8s-no-host-network", "kubernetes:apps/v1:DeploymentList", "deployments",
                     contains=["items[0].spec.template.spec.hostNetwork"])


def test_chart_values_are_walked_past_a_hostnetwork_key_and_into_chart_specific_service_paths(pack):
    def program():
        k8s.helm.v3.Release("nginx", chart="ingress-nginx", repository_opts={
            "repo": "https://kubernetes.github.io/ingress-nginx"},
            values={"controller": {"hostNetwork": False, "service": {"type": "LoadBalancer"}}})
        k8s.helm.v3.Release("kong", chart="kong", repository_opts={"repo": "https://charts.konghq.com"},
                            values={"proxy": {"type": "LoadBalancer"}})
        k8s.helm.v3.Release("app", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"networkPolicy": {"enabled": True, "ingress": {"fromNamespaces": ["edge"]}}})
    verdict = judge(pack, program)
    expect_violation(verdict, "helm-chart-values", RELEASE, "nginx", contains=["values.controller.service"])
    expect_violation(verdict, "helm-chart-values", RELEASE, "kong", contains=["values.proxy.annotations"])
    assert not verdict.on("helm-chart-values", RELEASE, "app"), verdict.describe("helm-chart-values")


def test_the_walk_is_bounded_and_fails_closed_past_its_budget():
    from policies.rules._framework import Resource
    from policies.rules.exposure_kubernetes import K8S_SERVICE_INTERNAL

    nested: dict = {"type": "ClusterIP"}
    for _ in range(300):
        nested = {"next": nested}
    findings = list(K8S_SERVICE_INTERNAL.check(
        Resource("kubernetes:example.com/v1:Deep", "deep", "urn:deep", {"spec": nested}), {}))
    assert findings and "walk budget" in findings[0].why
    wide = {"spec": {f"k{i}": {"v": i} for i in range(60_000)}}
    findings = list(K8S_SERVICE_INTERNAL.check(Resource("kubernetes:example.com/v1:Wide", "w", "urn:w", wide), {}))
    assert findings and "walk budget" in findings[0].why


def test_typed_and_older_ingress_apis_are_judged_alike(pack):
    def program():
        k8s.networking.v1.Ingress("typed", metadata=k8s.meta.v1.ObjectMetaArgs(annotations={
            "alb.ingress.kubernetes.io/scheme": "internet-facing"}),
            spec=k8s.networking.v1.IngressSpecArgs(ingress_class_name="alb", default_backend=k8s.networking.v1.IngressBackendArgs(
                service=k8s.networking.v1.IngressServiceBackendArgs(
                    name="m", port=k8s.networking.v1.ServiceBackendPortArgs(number=80)))))
        k8s.extensions.v1beta1.Ingress("legacy", metadata={"annotations": {
            "kubernetes.io/ingress.class": "nginx"}}, spec={"backend": {"service_name": "m", "service_port": 80}})
        k8s.extensions.v1beta1.Ingress("legacy-auth", metadata={"annotations": {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/auth-url": "https://auth.example/check"}},
            spec={"backend": {"service_name": "m", "service_port": 80}})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-ingress-internal", INGRESS, "typed", contains=["auth-type"])
    legacy = "kubernetes:extensions/v1beta1:Ingress"
    expect_violation(verdict, "k8s-ingress-internal", legacy, "legacy", contains=["auth-url"])
    assert not verdict.on("k8s-ingress-internal", legacy, "legacy-auth")


def test_whole_service_objects_inside_chart_values_are_judged(pack):
    def program():
        k8s.helm.v3.Release("extra", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"extraObjects": [{"apiVersion": "v1", "kind": "Service",
                                                      "metadata": {"name": "debug"},
                                                      "spec": {"type": "LoadBalancer"}}]})
        k8s.helm.v3.Release("extra-internal", chart="webapp", repository_opts={"repo": "https://charts.example"},
                            values={"extraObjects": [{"apiVersion": "v1", "kind": "Service",
                                                      "metadata": {"name": "debug", "annotations": INTERNAL},
                                                      "spec": {"type": "LoadBalancer"}}]})
    verdict = judge(pack, program)
    expect_violation(verdict, "helm-chart-values", RELEASE, "extra", contains=["extraObjects[0]"])
    assert not verdict.on("helm-chart-values", RELEASE, "extra-internal"), verdict.describe("helm-chart-values")


def test_service_templates_are_recognised_by_their_key_and_schemas_are_not_workloads(pack):
    def program():
        k8s.apiextensions.CustomResource("ray", api_version="ray.io/v1", kind="RayCluster", spec={
            "headGroupSpec": {"rayStartParams": {}, "headService": {"metadata": {"name": "head"},
                                                                    "spec": {"type": "LoadBalancer"}},
                              "template": {"spec": {"containers": [_container()]}}}})
        # A CRD's schema may show defaults that look like pods and Services: it deploys none.
        k8s.apiextensions.v1.CustomResourceDefinition("crd", metadata={"name": "endpoints.example.com"}, spec={
            "group": "example.com", "scope": "Namespaced",
            "names": {"kind": "ModelEndpoint", "plural": "modelendpoints"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"open_apiv3_schema": {
                "type": "object", "properties": {"spec": {"type": "object", "default": {
                    "hostNetwork": True, "service": {"type": "LoadBalancer", "ports": [{"port": 80}]}}}}}}}]})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-service-internal", "kubernetes:ray.io/v1:RayCluster", "ray",
                     contains=["headService"])
    crd = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
    assert not verdict.on("k8s-service-internal", crd, "crd") and not verdict.on("k8s-no-host-network", crd, "crd")


def test_a_reviewed_chart_waives_unknown_values_even_where_a_service_type_sits(pack):
    reviewed = {"helm-chart-values": {"reviewedCharts": [{"chart": "webapp", "reason": "reviewed"}]}}

    def program():
        k8s.helm.v3.Release("app", chart="webapp", values={"service": {"type": unknown_of("ClusterIP")}})
    expect_clean(judge(pack, program, config=reviewed), "helm-chart-values")
    expect_violation(judge(pack, program), "helm-chart-values", RELEASE, "app", contains=["values.service.type"])


def test_a_gateway_is_as_public_as_the_load_balancer_configuration_its_class_or_itself_names(pack):
    def program():
        k8s.apiextensions.CustomResource("public-config", api_version="gateway.k8s.aws/v1beta1",
                                         kind="LoadBalancerConfiguration",
                                         metadata={"name": "public", "namespace": "infra"},
                                         spec={"scheme": "internet-facing"})
        k8s.apiextensions.CustomResource("class", api_version="gateway.networking.k8s.io/v1", kind="GatewayClass",
                                         metadata={"name": "aws-alb-public"},
                                         spec={"controllerName": "gateway.k8s.aws/alb", "parametersRef": {
                                             "group": "gateway.k8s.aws", "kind": "LoadBalancerConfiguration",
                                             "name": "public", "namespace": "infra"}})
        _gateway("via-class", "aws-alb-public")
        _gateway("undeclared-config", "aws-alb", infrastructure={"parametersRef": {
            "group": "gateway.k8s.aws", "kind": "LoadBalancerConfiguration", "name": "elsewhere"}})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-entry-points", GATEWAY, "via-class", contains=["GatewayClass's"])
    expect_violation(verdict, "k8s-entry-points", GATEWAY, "undeclared-config", contains=["not declared"])


def test_an_ingress_is_judged_by_the_ingress_class_it_names_and_that_class_s_parameters(pack):
    def program():
        k8s.apiextensions.CustomResource("public-params", api_version="elbv2.k8s.aws/v1beta1",
                                         kind="IngressClassParams", metadata={"name": "public"},
                                         spec={"scheme": "internet-facing"})
        k8s.networking.v1.IngressClass("public-class", metadata={"name": "edge"}, spec={
            "controller": "ingress.k8s.aws/alb",
            "parameters": {"api_group": "elbv2.k8s.aws", "kind": "IngressClassParams", "name": "public"}})
        k8s.networking.v1.IngressClass("private-class", metadata={"name": "lan", "annotations": {
            "ingressclass.kubernetes.io/is-default-class": "true"}}, spec={"controller": "ingress.k8s.aws/alb"})
        # The class's parameters override the Ingress's own scheme annotation.
        _ingress("says-internal", {"alb.ingress.kubernetes.io/scheme": "internal"}, "edge")
        # A class named like nothing the pack knows, resolved through its declared controller.
        _ingress("on-lan", {}, "lan")
        _ingress("default-class", {})
    verdict = judge(pack, program)
    expect_violation(verdict, "k8s-ingress-internal", INGRESS, "says-internal", contains=["auth-type"])
    assert not verdict.on("k8s-ingress-internal", INGRESS, "on-lan"), verdict.describe("k8s-ingress-internal")
    assert not verdict.on("k8s-ingress-internal", INGRESS, "default-class"), verdict.describe("k8s-ingress-internal")


def test_ingress_nginx_internal_service_is_internal_only_through_its_annotations(pack):
    def program():
        k8s.helm.v3.Release("nginx", chart="ingress-nginx",
                            repository_opts={"repo": "https://kubernetes.github.io/ingress-nginx"},
                            values={"controller": {"service": {"external": {"enabled": False},
                                                               "internal": {"enabled": True}}}})
    expect_violation(judge(pack, program), "helm-chart-values", RELEASE, "nginx",
                     contains=["values.controller.service.internal"])


def test_a_compliant_serving_stack_passes_in_prod_including_the_closed_world_rule(pack):
    def program():
        k8s.apiextensions.CustomResource("runtime", api_version="serving.kserve.io/v1alpha1",
                                         kind="ServingRuntime", metadata={"name": "vllm"},
                                         spec={"supportedModelFormats": [{"name": "huggingface"}],
                                               "containers": [_container()]})
        k8s.apiextensions.CustomResource("isvc", api_version="serving.kserve.io/v1beta1", kind="InferenceService",
                                         metadata={"labels": {"networking.kserve.io/visibility": "cluster-local",
                                                             "networking.knative.dev/visibility": "cluster-local"}},
                                         spec={"predictor": {"model": {"runtime": "vllm",
                                                                       "modelFormat": {"name": "huggingface"}}}})
        k8s.apiextensions.CustomResource("class", api_version="gateway.networking.k8s.io/v1", kind="GatewayClass",
                                         metadata={"name": "aws-alb"}, spec={"controllerName": "gateway.k8s.aws/alb"})
        _gateway("edge", "aws-alb")
        k8s.apiextensions.CustomResource("route", api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                                         metadata={"name": "chat", "namespace": "edge"},
                                         spec={"parentRefs": [{"name": "edge"}]})
        k8s.helm.v3.Release("web", chart="nginx", repository_opts={"repo": "https://charts.bitnami.com/bitnami"},
                            values={"service": {"type": "ClusterIP"}})
    verdict = judge(pack, program, "prod")
    family_1 = {"k8s-service-internal", "k8s-ingress-internal", "k8s-no-host-network", "k8s-entry-points",
                "helm-chart-values", "entry-point-classified"}
    flagged = [d for d in verdict.diagnostics if d.policy_name in family_1]
    assert not flagged, verdict.describe()


@pytest.mark.parametrize("props", [
    {"chart": ["not", "a", "name"], "values": {"service": {"type": "ClusterIP"}}},
    {"chart": "webapp", "values": {"service": ["odd"], "ingress": {"enabled": "yes", "annotations": "x"}}},
    {"chart": "webapp", "valueYamlFiles": [{"text": ": : not yaml"}], "values": None},
])
def test_odd_helm_shapes_are_judged_without_the_rule_crashing(props):
    from policies.rules._framework import Stack, StackResource
    from policies.rules.exposure_helm import HELM_CHART_VALUES

    # A rule that raised would be reported as an unreadable-properties violation by the
    # framework: the check itself must get through these shapes.
    findings = list(HELM_CHART_VALUES.check(Stack([StackResource(RELEASE, "r", "urn:r", props)]), {}))
    assert all(urn == "urn:r" for urn, _ in findings)
