"""EC2 user data as cloud-init reads it, judged by cloud-init's own schema validator.

What an operator relies on: a host boots with every module the program rendered, because
no key of its user data is one cloud-init would reject or silently ignore. The validator
is Debian's cloud-init package (tools/cloud_init/install.sh), not a hand-written schema.
"""
from __future__ import annotations

import base64
import copy
import gzip
from pathlib import Path

import pytest
import yaml

from tests.stack_runs import preview_run
from tools import cloud_init_schema, stack_files


def _ec2_stacks() -> list[str]:
    stacks = []
    for name in stack_files.committed_stacks():
        inventory = stack_files.load(name).config.get("deepseek-serving:inventory") or {}
        if inventory.get("platform") == "ec2":
            stacks.append(name)
    return stacks


@pytest.fixture(scope="module")
def dev_documents() -> list[tuple[str, str]]:
    return cloud_init_schema.launch_template_user_data(preview_run("dev").registrations)


@pytest.mark.parametrize("stack", _ec2_stacks())
def test_every_hosts_user_data_is_valid_cloud_config(stack):
    documents = cloud_init_schema.launch_template_user_data(preview_run(stack).registrations)
    inventory = stack_files.load(stack).config["deepseek-serving:inventory"]
    assert len(documents) == len(inventory["models"])  # one launch template per model
    for name, text in documents:
        configs, others = cloud_init_schema.split_parts(text)
        assert len(configs) == 1 and others == [], name
        assert cloud_init_schema.validate_text(configs[0]) == (), name


def test_the_ec2_stacks_are_found_and_the_validator_is_debians():
    assert {"dev", "ec2-runtimes"} <= set(_ec2_stacks())
    assert cloud_init_schema.validator_version()  # e.g. 22.4.2-1+deb12u4, printed by the tool


def _mutated(text: str, mutate) -> str:
    document = copy.deepcopy(yaml.safe_load(text))
    mutate(document)
    return "#cloud-config\n" + yaml.safe_dump(document)


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["write_files"][0].__setitem__("permissions", 420), "write_files.0.permissions"),
    (lambda d: d["write_files"][0].__setitem__("encoding", "base65"), "write_files.0.encoding"),
    (lambda d: d["write_files"][0].__setitem__("contents", "typo"), "'contents' was unexpected"),
    (lambda d: d.__setitem__("runcmd", "systemctl start x"), "runcmd"),
    (lambda d: d.__setitem__("runcmds", [["true"]]), "runcmds: no cloud-init module declares"),
    (lambda d: d.__setitem__("mounts", [["LABEL=x", "/x", "xfs", {"opts": 1}]]), "mounts.0.3"),
])
def test_what_cloud_init_would_reject_or_ignore_is_reported(dev_documents, mutate, expected):
    (_, text), *_ = dev_documents
    errors = cloud_init_schema.validate_text(_mutated(text, mutate))
    assert any(expected in error for error in errors), errors


def test_a_document_without_the_header_is_not_cloud_config(dev_documents):
    (_, text), *_ = dev_documents
    headless = text.split("\n", 1)[1]
    assert cloud_init_schema.split_parts(headless)[0] == []
    assert "first line" in cloud_init_schema.validate_text(headless)[0]


def test_user_data_is_decoded_as_ec2_hands_it_over(dev_documents):
    (_, text), *_ = dev_documents
    plain = base64.b64encode(text.encode()).decode()
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    assert cloud_init_schema.decode_user_data(plain) == cloud_init_schema.decode_user_data(packed) == text
    with pytest.raises(ValueError, match="not base64"):
        cloud_init_schema.decode_user_data("#cloud-config")


def test_mime_user_data_is_split_and_only_its_cloud_config_parts_judged():
    bad = "#cloud-config\nwrite_files:\n- path: /x\n  permissions: 420\n"
    message = ("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n\n"
               "--//\nContent-Type: application/node.eks.aws\n\n---\nkind: NodeConfig\n"
               f"--//\nContent-Type: text/cloud-config\n\n{bad}\n--//--\n")
    configs, others = cloud_init_schema.split_parts(message)
    assert others == ["application/node.eks.aws"]
    assert [c.strip() for c in configs] == [bad.strip()]
    assert "write_files.0.permissions" in cloud_init_schema.validate_text(configs[0])[0]


def test_the_tool_lists_each_document_and_exits_1_on_an_invalid_one(monkeypatch, capsys):
    assert cloud_init_schema.main(["--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert "r1-qwen-7b-lt" in out and "0 invalid" in out

    real = cloud_init_schema.launch_template_user_data

    def one_broken(registrations):
        (name, text), *rest = real(registrations)
        broken = _mutated(text, lambda d: d["write_files"][0].__setitem__("permissions", 420))
        return [(name, broken), *rest]

    monkeypatch.setattr(cloud_init_schema, "launch_template_user_data", one_broken)
    assert cloud_init_schema.main(["--stack", "dev"]) == 1
    captured = capsys.readouterr()
    assert "1 invalid" in captured.out and "write_files.0.permissions" in captured.err


def test_without_the_validator_the_tool_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(cloud_init_schema, "ROOT", Path("/nonexistent/cloud-init"))
    assert cloud_init_schema.main(["--stack", "dev"]) == 2
    assert "tools/cloud_init/install.sh" in capsys.readouterr().err
