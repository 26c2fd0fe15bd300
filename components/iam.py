"""IAM documents the components share: who may assume a role.

Every role in the stack is assumed by one AWS service; writing the trust policy once keeps
them identical in shape, and a reviewer reads the service name and nothing else.
"""
from __future__ import annotations

import json


def service_trust_policy(service: str, *, tag_session: bool = False) -> dict:
    """A trust policy letting `service` (e.g. "ec2.amazonaws.com") assume the role.

    `tag_session` also lets it tag the session, which EKS and Pod Identity do (with the
    cluster, namespace and service account) so that policies can condition on those tags.
    """
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Principal": {"Service": service}}]}


def service_trust_policy_json(service: str, *, tag_session: bool = False) -> str:
    return json.dumps(service_trust_policy(service, tag_session=tag_session))
