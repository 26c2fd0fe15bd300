"""Every Kubernetes object the program creates validates against the schema of the
inventory's Kubernetes version (kubernetes-validate, strict: unknown fields fail).

Runs the real program for both EKS stacks and for the test-only Ollama variant of staging.
Custom resources have no shipped schema and are skipped by name only
(`tools.k8s_objects.CUSTOM_RESOURCE_KINDS`: TargetGroupBinding, ScaledObject,
TriggerAuthentication); any other kind without a schema fails.
"""
from __future__ import annotations

import copy

import pytest
from kubernetes_validate import utils as kv_utils

from components.config import Eks
from tests import stack_runs
from tests.test_model_service import ollama_run
from tools import k8s_objects

RUNS = {
    "staging": lambda: stack_runs.preview_run("staging"),
    "prod": lambda: stack_runs.preview_run("prod"),
    "staging-ollama": ollama_run,
    "staging-hub-token": stack_runs.hub_token_run,
}
# Kinds a model service must produce and that the schema really checks.
CORE_KINDS = {"Namespace", "ServiceAccount", "Service", "Deployment", "PodDisruptionBudget",
              "NetworkPolicy"}


def _version(run_id: str) -> str:
    return stack_runs.inventory_of(run_id.split("-")[0])["eks"]["kubernetes_version"]


@pytest.fixture(params=sorted(RUNS))
def run_id(request) -> str:
    return request.param


def test_every_kubernetes_object_validates_against_the_inventory_version(run_id):
    run = RUNS[run_id]()
    results = k8s_objects.validate_all(run.registrations, _version(run_id))
    assert k8s_objects.failures(results) == []
    validated = {r.obj.kind for r in results if r.status == "valid"}
    assert CORE_KINDS <= validated
    skipped = {(r.obj.api_version, r.obj.kind) for r in results if r.status == "skipped"}
    expected = {("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"), ("keda.sh/v1alpha1", "ScaledObject")}
    if any(m.get("min_replicas", 1) == 0 for m in stack_runs.inventory_of(run_id.split("-")[0])["models"]):
        expected.add(("keda.sh/v1alpha1", "TriggerAuthentication"))  # a model wakes on gateway metrics
    assert skipped == expected


@pytest.mark.parametrize("version", Eks.model_fields["kubernetes_version"].annotation.__args__)
def test_objects_also_validate_on_every_version_the_inventory_allows(version):
    # An inventory may move to any allowed version without a schema surprise.
    run = stack_runs.preview_run("prod")
    assert k8s_objects.failures(k8s_objects.validate_all(run.registrations, version)) == []


def test_every_allowed_version_has_a_shipped_schema():
    shipped = {v.rsplit(".", 1)[0] for v in kv_utils.all_versions()}
    for version in Eks.model_fields["kubernetes_version"].annotation.__args__:
        assert version in shipped
        assert k8s_objects.schema_version(version) == f"{version}.0"


def test_a_version_newer_than_every_schema_is_refused():
    with pytest.raises(k8s_objects.SchemaVersionError, match="upgrade"):
        k8s_objects.schema_version("1.99")


def test_a_misspelled_field_fails_validation():
    run = stack_runs.preview_run("prod")
    (deployment,) = [o for o in k8s_objects.objects(run.registrations)
                     if o.kind == "Deployment" and o.name == "r1-qwen-7b"]
    broken = copy.deepcopy(deployment)
    broken.manifest["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    result = k8s_objects.validate(broken, "1.33")
    assert result.status == "invalid"
    assert "securityContxt" in result.message


def test_an_unlisted_kind_without_a_schema_is_an_error_not_a_skip():
    obj = k8s_objects.K8sObject(urn="urn", resource_name="x", type_token="kubernetes:example.com/v1:Widget",
                                manifest={"apiVersion": "example.com/v1", "kind": "Widget",
                                          "metadata": {"name": "x"}})
    assert k8s_objects.validate(obj, "1.33").status == "invalid"


def test_manifests_never_carry_secret_values(run_id):
    run = RUNS[run_id]()
    secrets = [o for o in k8s_objects.objects(run.registrations) if o.kind == "Secret"]
    # No runtime holds a key (docs/BACKEND_AUTH.md): the only Secret is a gated hub
    # model's download token.
    expected = 1 if run_id.endswith("hub-token") else 0
    assert len(secrets) == expected
    for obj in secrets:
        assert obj.secret_paths == ["stringData"]
        assert set(obj.manifest["stringData"].values()) == {k8s_objects.SECRET_PLACEHOLDER}
        raw = run.one("kubernetes:core/v1:Secret", obj.resource_name).inputs["stringData"]["value"]
        for value in raw.values():
            assert value not in repr(obj.manifest)


def test_manifests_read_as_kubernetes_objects():
    run = stack_runs.preview_run("staging")
    first_model = stack_runs.inventory_of("staging")["models"][0]["name"]
    (deployment,) = [o for o in k8s_objects.objects(run.registrations)
                     if o.kind == "Deployment" and o.manifest["metadata"].get("namespace") == first_model]
    assert list(deployment.manifest)[:3] == ["apiVersion", "kind", "metadata"]
    assert deployment.api_version == "apps/v1"
    # Protobuf carries numbers as doubles; manifests show integers again.
    spec = deployment.manifest["spec"]
    assert spec["replicas"] == stack_runs.inventory_of("staging")["models"][0]["min_replicas"]
    assert isinstance(spec["replicas"], int)
    assert isinstance(spec["progressDeadlineSeconds"], int) and spec["progressDeadlineSeconds"] > 0
    text = k8s_objects.render_yaml(k8s_objects.objects(run.registrations))
    assert "kind: Deployment" in text and text.count("\n---\n") >= 5
    kinds = {o.type_token for o in k8s_objects.objects(run.registrations)}
    assert "kubernetes:helm.sh/v3:Release" not in kinds
    assert not any(t.startswith("pulumi:providers") for t in kinds)
