"""The plan diff a reviewer reads on a pull request (tools/diff.py).

Most tests read the diff of two revisions of one fixture inventory
(tests/fixtures/diff/Pulumi.staging.{base,changed}.yaml), both planned by the real offline
preview with the policy pack: a model added, a limit changed, a model (and its gateway
routes) removed, and the cluster API opened to a public range. One test runs the whole
`python -m tools.diff --stack dev --base HEAD~1` in a throwaway git repository.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import diff_markdown, plan_diff
from tools import cost
from tools.diff_markdown import render_markdown
from tools.plan_diff import ABSENT, diff_plans

FIXTURES = ROOT / "tests" / "fixtures" / "diff"


def _preview_plans(out: Path, runs: dict[str, Path], *, policies: bool = True) -> dict[str, dict]:
    """Plan several stack files at once (one subprocess each, as `make plan` would)."""
    processes = {}
    for label, stack_file in runs.items():
        command = [sys.executable, "-m", "tools.preview", "--stack", "staging", "--stack-file",
                   str(stack_file), "--quiet", "--plan-out", str(out / f"{label}.json")]
        if not policies:
            command.append("--no-policies")
        processes[label] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True)
    plans = {}
    for label, process in processes.items():
        _, stderr = process.communicate()
        assert process.returncode in (0, 1), f"preview of {label} failed:\n{stderr}"
        plans[label] = json.loads((out / f"{label}.json").read_text())
    return plans


@pytest.fixture(scope="module")
def fixture_plans(tmp_path_factory) -> dict[str, dict]:
    return _preview_plans(tmp_path_factory.mktemp("plans"), {
        "base": FIXTURES / "Pulumi.staging.base.yaml",
        "changed": FIXTURES / "Pulumi.staging.changed.yaml",
    })


@pytest.fixture(scope="module")
def report(fixture_plans) -> plan_diff.Report:
    return diff_plans(fixture_plans["base"], fixture_plans["changed"])


@pytest.fixture(scope="module")
def markdown(report) -> str:
    return render_markdown(report)


def _changes(report: plan_diff.Report, action: str) -> set[tuple[str, str]]:
    return {(r.type, r.name) for r in report.resources if r.action == action}


def _resource(report: plan_diff.Report, type_token: str, name: str) -> plan_diff.ResourceChange:
    matches = [r for r in report.resources if r.type == type_token and r.name == name]
    assert len(matches) == 1, f"{type_token} {name}: {matches}"
    return matches[0]


# ---- (a) an added model ---------------------------------------------------------------------

def test_an_added_model_lists_its_workload_load_balancer_and_routes_as_added(report, markdown):
    added = _changes(report, "add")
    assert ("kubernetes:apps/v1:Deployment", "r1-qwen-1-5b-deployment") in added
    assert ("aws:lb/loadBalancer:LoadBalancer", "r1-qwen-1-5b-lb-nlb") in added
    assert ("aws:apigateway/resource:Resource", "gateway-path-r1-qwen-1-5b-v1-chat-completions") in added
    assert "| + | `kubernetes:apps/v1:Deployment` | `r1-qwen-1-5b-deployment` |" in markdown
    assert "#### `deepseek:model_service:ModelService r1-qwen-1-5b` (+" in markdown


def test_the_diff_states_the_monthly_cost_before_and_after(fixture_plans, report, markdown):
    expected = cost.change_line(cost.estimate(fixture_plans["base"]), cost.estimate(fixture_plans["changed"]))
    assert report.cost == expected
    assert expected.startswith("**Monthly cost**") and expected in markdown


# ---- (b) a changed limit --------------------------------------------------------------------

def test_a_changed_tier_rate_shows_the_usage_plan_throttle_before_and_after(report, markdown):
    plan = _resource(report, "aws:apigateway/usagePlan:UsagePlan", "gateway-plan-standard")
    assert plan.action == "change"
    rate = [p for p in plan.properties if p.path == "throttleSettings.rateLimit"]
    assert [(p.before, p.after) for p in rate] == [(0.3, 0.4)]
    assert "| `throttleSettings.rateLimit` | `0.3` | `0.4` |" in markdown


def test_a_changed_context_limit_names_the_runtime_flag_whose_value_changed(report, markdown):
    deployment = _resource(report, "kubernetes:apps/v1:Deployment", "r1-llama-8b-deployment")
    by_note = {p.note: (p.before, p.after) for p in deployment.properties if p.note}
    assert by_note["value of --max-total-tokens"] == ("16384", "8192")
    assert "(value of --max-total-tokens) | `\"16384\"` | `\"8192\"` |" in markdown


# ---- (c) a removed route --------------------------------------------------------------------

def test_a_removed_model_removes_its_gateway_routes_and_methods(report, markdown):
    removed = _changes(report, "remove")
    for route in ("chat-completions", "completions", "models", "proxy"):
        assert ("aws:apigateway/resource:Resource", f"gateway-path-r1-qwen-7b-v1-{route}") in removed
    assert ("aws:apigateway/method:Method", "gateway-method-r1-qwen-7b-chat-completions-post") in removed
    assert "| - | `aws:apigateway/resource:Resource` | `gateway-path-r1-qwen-7b-v1-chat-completions` |" in markdown
    # The served model list in the stack outputs says the same.
    assert any(p.path == "served_models[1]" and (p.before, p.after) == ("r1-qwen-7b", "r1-qwen-1-5b")
               for p in report.outputs)


# ---- (d) a new violation --------------------------------------------------------------------

def test_opening_the_cluster_api_to_a_public_range_is_a_new_mandatory_violation(report, markdown):
    # The added model's integrations bring advisories of their own (a private-CA TLS
    # exception); the one new mandatory violation is the public range.
    new = [d for d in report.diagnostics if d.status == "new" and d.level == "mandatory"]
    assert [(d.level, d.policy, d.resource) for d in new] == [
        ("mandatory", "eks-endpoint-private", "aws:eks/cluster:Cluster eks-cluster")]
    assert "52.0.0.0/8" in new[0].message
    assert "(mandatory 0 → 1," in markdown
    assert markdown.index("### Policy diagnostics") < markdown.index("### Resources by component")
    assert "| `vpcConfig.publicAccessCidrs[1]` | *(absent)* | `\"52.0.0.0/8\"` |" in markdown


def test_reverting_the_change_reports_the_violation_as_resolved(fixture_plans):
    reverse = diff_plans(fixture_plans["changed"], fixture_plans["base"])
    assert [(d.status, d.policy) for d in reverse.diagnostics if d.level == "mandatory"] == [
        ("resolved", "eks-endpoint-private")]
    assert "**Resolved**" in render_markdown(reverse)


# ---- report shape and determinism -----------------------------------------------------------

def test_changes_are_grouped_under_their_component_in_a_stable_order(report, markdown):
    headings = [line for line in markdown.splitlines() if line.startswith("#### ")]
    assert headings[0].startswith("#### (top level)")
    assert headings[1:] == sorted(headings[1:])
    gateway = markdown.index("#### `deepseek:api_gateway:ApiGateway gateway`")
    assert gateway < markdown.index("gateway-plan-standard") < markdown.index("#### `deepseek:eks_cluster")


def test_the_same_plans_render_to_the_same_bytes_whatever_their_order(fixture_plans, markdown):
    shuffled = copy.deepcopy(fixture_plans)
    for plan in shuffled.values():
        plan["resources"].reverse()
        plan["diagnostics"].reverse()
    again = render_markdown(diff_plans(shuffled["base"], shuffled["changed"]))
    assert again.encode() == markdown.encode()
    assert "/tmp" not in markdown and "pytest-" not in markdown


def test_the_report_never_shows_the_offline_secret_placeholder(markdown):
    from tools.stack_files import SECRET_PLACEHOLDER

    assert SECRET_PLACEHOLDER not in markdown


# ---- pure cases -----------------------------------------------------------------------------

def _plan(stack: str, resources: list[dict], diagnostics: list[dict] = (), outputs=None) -> dict:
    plan = plan_diff.empty_plan(stack)
    for resource in resources:
        parent_type = resource.pop("parent_type", "pulumi:pulumi:Stack")
        resource.setdefault("urn", f"urn:pulumi:{stack}::deepseek-serving::{parent_type}"
                                   f"${resource['type']}::{resource['name']}")
        resource.setdefault("component", "")
        resource.setdefault("custom", True)
    plan["resources"] = sorted(resources, key=lambda r: r["urn"])
    plan["diagnostics"] = list(diagnostics)
    plan["outputs"] = outputs or {}
    plan["summary"]["mandatory"] = sum(1 for d in diagnostics if d["level"] == "mandatory")
    return plan


SG = "aws:ec2/securityGroup:SecurityGroup"


def test_property_paths_read_like_json_paths():
    before = {"ingress": [{"cidrBlocks": ["10.0.0.0/16"], "fromPort": 443}],
              "tags": {"kubernetes.io/role": "x", "Name": "a"}}
    after = {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "fromPort": 443}],
             "tags": {"kubernetes.io/role": "y", "Name": "a"}}
    paths = [(c.path, c.before, c.after) for c in plan_diff.diff_values(before, after)]
    assert paths == [("ingress[0].cidrBlocks[0]", "10.0.0.0/16", "0.0.0.0/0"),
                     ('tags["kubernetes.io/role"]', "x", "y")]


def test_a_json_document_in_a_string_is_diffed_inside():
    before = json.dumps({"Statement": [{"Action": "s3:GetObject", "Effect": "Allow"}]})
    after = json.dumps({"Statement": [{"Action": "s3:*", "Effect": "Allow"}]})
    [change] = plan_diff.diff_values({"policy": before}, {"policy": after})
    assert (change.path, change.before, change.after) == (
        "policy<json>.Statement[0].Action", "s3:GetObject", "s3:*")


def test_base64_user_data_is_shown_as_a_line_diff():
    import base64

    encode = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    before = encode("#cloud-config\nruncmd:\n- serve --max-model-len 16384\n")
    after = encode("#cloud-config\nruncmd:\n- serve --max-model-len 32768\n")
    [change] = plan_diff.diff_values({"userData": before}, {"userData": after})
    assert change.path == "userData<base64>"
    assert "-- serve --max-model-len 16384" in change.text_diff
    assert "+- serve --max-model-len 32768" in change.text_diff
    rendered = render_markdown(diff_plans(_plan("dev", [{"type": "aws:ec2/launchTemplate:LaunchTemplate",
                                                         "name": "lt", "inputs": {"userData": before}}]),
                                          _plan("dev", [{"type": "aws:ec2/launchTemplate:LaunchTemplate",
                                                         "name": "lt", "inputs": {"userData": after}}])))
    assert "```diff\n@@" in rendered and "+- serve --max-model-len 32768" in rendered


def test_long_values_are_abbreviated_with_their_length():
    long = "x" * 500
    plans = [_plan("dev", [{"type": SG, "name": "sg", "inputs": {"description": value}}])
             for value in ("short", long)]
    rendered = render_markdown(diff_plans(*plans))
    row = next(line for line in rendered.splitlines() if line.startswith("| `description`"))
    assert "(502 chars)" in row  # the JSON string, quotes included
    assert len(row) < 200


def test_secrets_stay_masked_and_an_unchanged_secret_is_no_change():
    before = _plan("dev", [{"type": "aws:secretsmanager/secretVersion:SecretVersion", "name": "v",
                            "inputs": {"secretString": "[secret]", "secretId": "[unknown]"}}])
    after = _plan("dev", [{"type": "aws:secretsmanager/secretVersion:SecretVersion", "name": "v",
                           "inputs": {"secretString": "[secret]", "secretId": "[unknown]"}}])
    assert diff_plans(before, after).resources == ()
    made_secret = _plan("dev", [{"type": SG, "name": "sg", "inputs": {"description": "[secret]"}}])
    plain = _plan("dev", [{"type": SG, "name": "sg", "inputs": {"description": "visible"}}])
    rendered = render_markdown(diff_plans(plain, made_secret))
    assert "| `description` | `\"visible\"` | `[secret]` |" in rendered


def test_a_resource_under_a_new_parent_is_reported_as_replaced():
    old = _plan("dev", [{"type": SG, "name": "sg", "inputs": {}}])
    new = _plan("dev", [{"type": SG, "name": "sg", "inputs": {}, "parent_type": "deepseek:network:Network"}])
    report = diff_plans(old, new)
    assert [(r.action, r.name) for r in report.resources] == [("replace", "sg")]
    assert "0 to add · 0 to remove · 0 to change · 1 to replace" in render_markdown(report)


def test_two_stacks_are_compared_by_type_and_name():
    staging = _plan("staging", [{"type": SG, "name": "sg", "inputs": {"description": "a"}},
                                {"type": SG, "name": "only-staging", "inputs": {}}])
    prod = _plan("prod", [{"type": SG, "name": "sg", "inputs": {"description": "b"}}])
    by_urn = diff_plans(staging, prod)
    # By URN every resource of another stack is a different resource.
    assert {r.action for r in by_urn.resources} == {"replace", "remove"}
    by_name = diff_plans(staging, prod, match="name", old_label="`staging`", new_label="`prod`")
    assert [(r.action, r.name) for r in by_name.resources] == [("remove", "only-staging"), ("change", "sg")]
    assert render_markdown(by_name).startswith("## Plan diff: `staging` → `prod`\n")


def test_diagnostics_are_matched_by_resource_not_urn():
    diagnostic = {"policy": "p", "pack": "x", "level": "advisory", "message": "m"}
    staging = _plan("staging", [{"type": SG, "name": "sg", "inputs": {}}])
    prod = _plan("prod", [{"type": SG, "name": "sg", "inputs": {}}])
    staging["diagnostics"] = [dict(diagnostic, urn=staging["resources"][0]["urn"])]
    prod["diagnostics"] = [dict(diagnostic, urn=prod["resources"][0]["urn"]),
                           dict(diagnostic, urn="", policy="stack-wide")]
    report = diff_plans(staging, prod, match="name")
    assert [(d.status, d.policy, d.resource) for d in report.diagnostics] == [("new", "stack-wide", "(stack)")]


def test_no_changes_says_so():
    plan = _plan("dev", [{"type": SG, "name": "sg", "inputs": {"a": 1}}])
    rendered = render_markdown(diff_plans(plan, copy.deepcopy(plan)))
    assert rendered.rstrip().endswith("No changes.")


def test_a_long_report_is_cut_at_a_line_and_keeps_code_fences_closed():
    text = "intro\n```diff\n" + "+line\n" * 5000 + "```\n"
    cut = diff_markdown.truncate(text, 2000)
    assert len(cut) <= 2100 and cut.count("```") % 2 == 0 and "**Truncated**" in cut
    assert diff_markdown.truncate("short\n", 2000) == "short\n"


def test_absent_is_distinct_from_every_value():
    assert ABSENT != None and ABSENT != "" and ABSENT == plan_diff._Absent()  # noqa: E711


# ---- the CLI, end to end in a throwaway git repository -----------------------------------

def _git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout


def test_diff_against_a_base_revision_plans_it_in_a_worktree(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    (repo / "README.md").write_text("before the offline preview existed\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "no tooling yet")
    # The project as it is now (tracked and untracked, not ignored), as the next commit.
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "the project")
    stack = repo / "stacks" / "Pulumi.dev.yaml"
    text = stack.read_text()
    assert "rate_per_second: 0.35\n" in text
    stack.write_text(text.replace("rate_per_second: 0.35\n", "rate_per_second: 0.3\n"))
    _git(repo, "commit", "--quiet", "-am", "raise the standard tier")

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "tools.diff", "--stack", "dev", "--no-policies"]
    too_old = subprocess.run(command + ["--base", "HEAD~2"], cwd=repo, env=env, capture_output=True, text=True,
                             timeout=300)
    assert too_old.returncode == 2
    assert "has no tools/preview.py" in too_old.stderr

    result = subprocess.run(command + ["--base", "HEAD~1"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert report.startswith("## Plan diff: working tree, stack `dev`\n")
    assert "Base: `HEAD~1` (" in report
    assert "| `throttleSettings.rateLimit` | `0.35` | `0.3` |" in report
    assert "0 to add · 0 to remove" in report
    assert str(tmp_path) not in report and "deepseek-diff-" not in report
    # The worktree is gone again.
    assert _git(repo, "worktree", "list").count("\n") == 1
