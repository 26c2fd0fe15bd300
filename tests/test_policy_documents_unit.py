"""Who a resource policy lets in: the document helpers the access rules share, on plain data."""
from __future__ import annotations

import pytest

from policies.rules import policy_documents

INVOKE = ("execute-api:Invoke",)


def _doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


@pytest.mark.parametrize("statement, is_open", [
    ({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke"}, True),
    ({"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}, "Action": "execute-api:*"}, True),
    ({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "*"}, True),
    ({"Effect": "Allow", "Principal": "*", "NotAction": "execute-api:ManageConnections"}, True),
    ({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
      "Condition": {"IpAddress": {"aws:SourceIp": ["0.0.0.0/0"]}}}, True),
    ({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
      "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}}, False),
    ({"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
      "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}, False),
    ({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/x"}, "Action": "execute-api:Invoke"}, False),
    ({"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke"}, False),
    ({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}, False),
])
def test_an_open_statement_is_an_allow_for_everyone_without_a_confining_condition(statement, is_open):
    assert bool(policy_documents.open_statements(_doc(statement), INVOKE)) is is_open


def test_a_deny_for_everyone_outside_an_endpoint_confines_an_open_allow():
    allow = {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*"}
    deny = {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke", "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}}
    assert policy_documents.open_statements(_doc(allow), INVOKE)
    assert not policy_documents.open_statements(_doc(allow, deny), INVOKE)


@pytest.mark.parametrize("text, expected", [("", None), ("{not json", "unreadable"), ("[1]", "unreadable"),
                                             ('{"Statement": {"Effect": "Allow"}}', {"Statement": {"Effect": "Allow"}})])
def test_documents_parse_from_strings_and_say_when_they_cannot(text, expected):
    assert policy_documents.parse(text) == expected
