"""KMS keys: encrypted volumes only launch when Auto Scaling may use the key that encrypts them."""
from __future__ import annotations

import pytest

from tests import stack_runs

GRANT = "aws:kms/grant:Grant"
LAUNCHERS = {"dev": "aws:autoscaling/group:Group", "staging": "aws:eks/nodeGroup:NodeGroup",
             "prod": "aws:eks/nodeGroup:NodeGroup"}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_group_that_launches_encrypted_volumes_waits_for_the_auto_scaling_grant(stack):
    run = stack_runs.preview_run(stack)
    (grant,) = run.by_type(GRANT)
    assert set(grant.inputs["operations"]) >= {"Decrypt", "GenerateDataKeyWithoutPlaintext", "CreateGrant"}
    key = run.one("aws:kms/key:Key", "keys-data")
    assert key.urn in grant.property_dependencies["keyId"]
    launchers = run.by_type(LAUNCHERS[stack])
    assert launchers and all(grant.urn in group.dependencies for group in launchers)


def test_the_grant_is_for_the_auto_scaling_service_linked_role():
    from tests.program_harness import record_main
    from tools import stack_files

    stack_file = stack_files.load("dev")
    run = record_main(stack="dev", config=stack_file.config, secret_keys=stack_file.secret_keys,
                      preview=False, region=stack_file.region)
    (grant,) = run.by_type(GRANT)
    assert grant.inputs["granteePrincipal"] == (
        "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/"
        "AWSServiceRoleForAutoScaling")
