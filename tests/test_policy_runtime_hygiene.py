"""Family 2, model servers: vLLM / TGI / Ollama recognised by what they run (image or
command), in Kubernetes pod templates and in EC2 user data, judged per environment."""
from __future__ import annotations

import base64

import pulumi
import pytest
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from tests.policy_helpers import (
    CONFIG_MAP, DEPLOYMENT, INSTANCE, LAUNCH_TEMPLATE, expect_clean, expect_violation, judge, launch_template,
    model_deployment, pack, unknown_of, vllm_container,
)

__all__ = ["pack"]

SERVING_POLICIES = ("no-prompt-logging", "runtime-request-size-bounded", "runtime-concurrency-bounded",
                    "model-pod-hardening", "no-plaintext-secrets", "rollout-availability",
                    "k8s-no-host-network")
HF_TOKEN = "hf_Zx9SyntheticTokenForPolicyTests0000"


VLLM_SCRIPT = """#!/bin/bash
set -euo pipefail
export VLLM_API_KEY="$(aws secretsmanager get-secret-value --secret-id llm/key --query SecretString --output text)"
docker run -d --gpus all -e VLLM_API_KEY -p 8000:8000 vllm/vllm-openai:v0.11.0 \\
  --model deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --max-model-len 16384 --max-num-seqs 64 {extra}
"""


# ---- a compliant model server passes everything -----------------------------------------

def test_a_hardened_vllm_deployment_passes_every_serving_rule(pack):
    verdict = judge(pack, lambda: model_deployment("r1-7b", vllm_container()))
    for policy in SERVING_POLICIES:
        expect_clean(verdict, policy)


def test_a_vllm_launch_template_with_secrets_fetched_at_boot_passes_every_serving_rule(pack):
    verdict = judge(pack, lambda: launch_template("r1-7b", VLLM_SCRIPT.format(extra=""), gzipped=True))
    for policy in SERVING_POLICIES + ("imdsv2-required", "encryption-at-rest"):
        expect_clean(verdict, policy)


# ---- no prompt logging ------------------------------------------------------------------

def test_request_logging_flags_are_mandatory_in_prod_and_advisory_in_dev(pack):
    def program():
        model_deployment("chatty", vllm_container("--enable-log-requests"))

    expect_violation(judge(pack, program, "prod"), "no-prompt-logging", DEPLOYMENT, "chatty",
                     contains=['args is "--enable-log-requests"', "Fix: remove --enable-log-requests"])
    expect_violation(judge(pack, program, "dev"), "no-prompt-logging", DEPLOYMENT, "chatty", level="advisory")


def test_output_logging_in_gzipped_user_data_is_found(pack):
    verdict = judge(pack, lambda: launch_template("chatty-host", VLLM_SCRIPT.format(extra="--enable-log-outputs"),
                                                  gzipped=True))
    expect_violation(verdict, "no-prompt-logging", LAUNCH_TEMPLATE, "chatty-host",
                     contains=['userData is "--enable-log-outputs"'])


def test_debug_logging_dev_mode_and_ollama_debug_are_violations(pack):
    def program():
        model_deployment("debug", vllm_container(env=[{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
                                                      {"name": "VLLM_SERVER_DEV_MODE", "value": "1"}]))
        model_deployment("ollama", ollama_container(env=[{"name": "OLLAMA_DEBUG", "value": "1"}]))

    verdict = judge(pack, program)
    expect_violation(verdict, "no-prompt-logging", DEPLOYMENT, "debug",
                     contains=["env[VLLM_LOGGING_LEVEL]", "env[VLLM_SERVER_DEV_MODE]"])
    expect_violation(verdict, "no-prompt-logging", DEPLOYMENT, "ollama", contains=["OLLAMA_DEBUG"])


def test_api_gateway_data_trace_logs_prompts(pack):
    def program():
        api = aws.apigateway.RestApi("llm-api")
        aws.apigateway.MethodSettings("trace-on", rest_api=api.id, stage_name="v1", method_path="*/*",
                                      settings={"data_trace_enabled": True, "logging_level": "INFO"})
        aws.apigateway.MethodSettings("trace-off", rest_api=api.id, stage_name="v2", method_path="*/*",
                                      settings={"data_trace_enabled": False, "logging_level": "ERROR"})

    verdict = judge(pack, program)
    expect_violation(verdict, "no-prompt-logging", "aws:apigateway/methodSettings:MethodSettings", "trace-on",
                     contains=["settings.dataTraceEnabled is true"])
    assert not verdict.on("no-prompt-logging", "aws:apigateway/methodSettings:MethodSettings", "trace-off")


def test_user_data_unknown_during_preview_is_an_advisory_cannot_check_even_in_prod(pack):
    def program():
        aws.ec2.LaunchTemplate("rendered", image_id="ami-1", instance_type="g6e.xlarge",
                               user_data=unknown_of(base64.b64encode(b"#!/bin/bash\n").decode()))

    verdict = judge(pack, program, "prod")
    diagnostic = expect_violation(verdict, "no-prompt-logging", LAUNCH_TEMPLATE, "rendered", level="advisory",
                                  contains=["can't run policy 'no-prompt-logging'", "userData is unknown during preview"])
    assert "can't run" in diagnostic.message


# ---- request size and concurrency --------------------------------------------------------

def tgi_container(*args: str, env: list[dict] = ()) -> dict:
    return vllm_container(image="ghcr.io/huggingface/text-generation-inference:3.3.4", name="tgi",
                          args=["--model-id", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", *args],
                          env=list(env))


def ollama_container(env: list[dict] = ()) -> dict:
    return vllm_container(image="ollama/ollama:0.12.6", name="ollama", args=[], env=list(env))


def test_tgi_without_a_total_token_limit_is_a_violation(pack):
    def program():
        model_deployment("tgi", tgi_container("--max-input-tokens", "8192", "--max-concurrent-requests", "64"))

    verdict = judge(pack, program)
    expect_violation(verdict, "runtime-request-size-bounded", DEPLOYMENT, "tgi",
                     contains=["is missing --max-total-tokens", "without it TGI accepts prompts"])
    expect_clean(verdict, "runtime-concurrency-bounded")


def test_tgi_limits_given_as_environment_variables_pass(pack):
    def program():
        model_deployment("tgi", tgi_container(env=[{"name": "MAX_INPUT_TOKENS", "value": "8192"},
                                                   {"name": "MAX_TOTAL_TOKENS", "value": "16384"},
                                                   {"name": "MAX_CONCURRENT_REQUESTS", "value": "64"}]))

    verdict = judge(pack, program)
    expect_clean(verdict, "runtime-request-size-bounded")
    expect_clean(verdict, "runtime-concurrency-bounded")


def test_a_rebuilt_tgi_image_is_still_recognised_by_its_flags(pack):
    rebuilt = "123456789012.dkr.ecr.us-west-2.amazonaws.com/tgi-nonroot:3.3.5@sha256:" + "ab" * 32

    def program():
        model_deployment("tgi-mirror", vllm_container(
            image=rebuilt, name="server",
            args=["--model-id", "/models/r1", "--max-input-tokens", "8192",
                  "--max-concurrent-requests", "64"]))

    expect_violation(judge(pack, program), "runtime-request-size-bounded", DEPLOYMENT, "tgi-mirror",
                     contains=["is missing --max-total-tokens"])


def test_a_mirrored_ollama_image_is_still_recognised_by_its_environment(pack):
    def program():
        model_deployment("ollama-mirror", vllm_container(
            image="registry.internal/ollama-mirror:0.12.6", name="server", args=[],
            env=[{"name": "OLLAMA_HOST", "value": "0.0.0.0:11434"}]))

    expect_violation(judge(pack, program), "runtime-concurrency-bounded", DEPLOYMENT, "ollama-mirror",
                     contains=["OLLAMA_NUM_PARALLEL"])


def test_a_vllm_server_started_by_a_shell_command_is_recognised(pack):
    def program():
        script = "pip install vllm && vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-7B --max-num-seqs 32"
        model_deployment("shell", vllm_container(image="python:3.12-slim", command=["sh", "-c"], args=[script]))

    expect_violation(judge(pack, program), "runtime-request-size-bounded", DEPLOYMENT, "shell",
                     contains=["missing --max-model-len"])


def test_vllm_on_a_plain_instance_without_limits_is_a_violation(pack):
    def program():
        aws.ec2.Instance("bare-vllm", ami="ami-1", instance_type="g6e.xlarge",
                         user_data="#!/bin/bash\ndocker run --gpus all vllm/vllm-openai:v0.11.0 --model m\n")

    verdict = judge(pack, program)
    expect_violation(verdict, "runtime-request-size-bounded", INSTANCE, "bare-vllm", contains=["--max-model-len"])
    expect_violation(verdict, "runtime-concurrency-bounded", INSTANCE, "bare-vllm", contains=["--max-num-seqs"])


def test_ollama_without_parallel_and_queue_limits_is_a_violation(pack):
    verdict = judge(pack, lambda: model_deployment("ollama", ollama_container()))
    expect_violation(verdict, "runtime-concurrency-bounded", DEPLOYMENT, "ollama",
                     contains=["OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE"])


def test_ollama_limits_in_a_systemd_unit_pass(pack):
    script = """#!/bin/bash
cat >/etc/systemd/system/ollama.service.d/limits.conf <<'EOF'
[Service]
Environment="OLLAMA_NUM_PARALLEL=2"
Environment="OLLAMA_MAX_QUEUE=64"
EOF
systemctl restart ollama && ollama serve
"""
    verdict = judge(pack, lambda: launch_template("ollama-host", script))
    expect_clean(verdict, "runtime-concurrency-bounded")


def test_a_zero_concurrency_cap_is_not_a_bound(pack):
    def program():
        container = vllm_container()
        container["args"] = ["--model", "m", "--max-model-len", "8192", "--max-num-seqs=0"]
        model_deployment("zero", container)

    expect_violation(judge(pack, program), "runtime-concurrency-bounded", DEPLOYMENT, "zero",
                     contains=["--max-num-seqs must be a positive number"])


def test_limits_hidden_in_env_from_cannot_be_checked_and_say_so(pack):
    def program():
        model_deployment("from-config", ollama_container() | {"env_from": [{"config_map_ref": {"name": "ollama"}}]})

    expect_violation(judge(pack, program), "runtime-concurrency-bounded", DEPLOYMENT, "from-config",
                     level="advisory", contains=["envFrom loads variables from a ConfigMap or Secret"])


# ---- pod hardening ----------------------------------------------------------------------

def test_an_unhardened_model_pod_is_a_violation_per_missing_control(pack):
    def program():
        k8s.apps.v1.Deployment("loose", spec={
            "selector": {"match_labels": {"app": "loose"}},
            "template": {"metadata": {"labels": {"app": "loose"}}, "spec": {"containers": [{
                "name": "vllm", "image": "vllm/vllm-openai",
                "args": ["--max-model-len", "8192", "--max-num-seqs", "8"],
                "security_context": {"privileged": True}}]}}})

    verdict = judge(pack, program)
    expect_violation(verdict, "model-pod-hardening", DEPLOYMENT, "loose", contains=[
        "automountServiceAccountToken is not set", "runAsNonRoot: true", "privileged: false",
        "capabilities.drop: [ALL]", "seccompProfile.type: RuntimeDefault",
        'image is "vllm/vllm-openai"', "missing memory and nvidia.com/gpu", "missing startupProbe and readinessProbe"])


def test_pods_that_serve_no_model_are_not_judged_for_model_hardening(pack):
    def program():
        k8s.apps.v1.Deployment("docs", spec={
            "selector": {"match_labels": {"app": "docs"}},
            "template": {"metadata": {"labels": {"app": "docs"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}})

    expect_clean(judge(pack, program), "model-pod-hardening")


# ---- no plaintext secrets ---------------------------------------------------------------

def test_a_literal_token_in_env_is_a_violation_and_the_message_never_shows_it(pack):
    def program():
        model_deployment("leaky", vllm_container(env=[{"name": "HF_TOKEN", "value": HF_TOKEN}]))
        # Marked secret in Pulumi, but still plaintext in the Deployment object.
        model_deployment("leaky-secret", vllm_container(env=[{"name": "HUGGING_FACE_HUB_TOKEN",
                                                               "value": pulumi.Output.secret(HF_TOKEN)}]))

    verdict = judge(pack, program)
    expect_violation(verdict, "no-plaintext-secrets", DEPLOYMENT, "leaky",
                     contains=["env[1] (HF_TOKEN) is a literal value (redacted)", "secretKeyRef"])
    expect_violation(verdict, "no-plaintext-secrets", DEPLOYMENT, "leaky-secret")
    assert all(HF_TOKEN not in d.message for d in verdict.diagnostics)


def test_an_api_key_on_the_command_line_is_a_violation_but_an_env_reference_is_not(pack):
    def program():
        model_deployment("argv-key", vllm_container("--api-key", HF_TOKEN))
        model_deployment("argv-ref", vllm_container("--api-key", "$(VLLM_API_KEY)"))

    verdict = judge(pack, program)
    expect_violation(verdict, "no-plaintext-secrets", DEPLOYMENT, "argv-key", contains=["--api-key <redacted>"])
    assert not verdict.on("no-plaintext-secrets", DEPLOYMENT, "argv-ref")
    assert all(HF_TOKEN not in d.message for d in verdict.diagnostics)


def test_secrets_in_user_data_config_maps_and_lambda_environments_are_violations(pack):
    def program():
        launch_template("leaky-host", VLLM_SCRIPT.format(extra="") + f"export HF_TOKEN={HF_TOKEN}\n")
        k8s.core.v1.ConfigMap("settings", data={"OPENAI_API_KEY": HF_TOKEN, "MAX_TOTAL_TOKENS": "16384"})
        aws.lambda_.Function("proxy", role="arn:aws:iam::1:role/l", runtime="python3.12", handler="h.main",
                             code=pulumi.AssetArchive({"h.py": pulumi.StringAsset("def main(e, c): pass")}),
                             environment={"variables": {"UPSTREAM_API_KEY": HF_TOKEN, "OLLAMA_KEEP_ALIVE": "-1"}})

    verdict = judge(pack, program)
    expect_violation(verdict, "no-plaintext-secrets", LAUNCH_TEMPLATE, "leaky-host", contains=["assigns HF_TOKEN"])
    expect_violation(verdict, "no-plaintext-secrets", CONFIG_MAP, "settings", contains=["data[OPENAI_API_KEY]"])
    expect_violation(verdict, "no-plaintext-secrets", "aws:lambda/function:Function", "proxy",
                     contains=["environment.variables[UPSTREAM_API_KEY]"])
    assert len(verdict.on("no-plaintext-secrets", CONFIG_MAP, "settings")) == 1  # MAX_TOTAL_TOKENS is no secret
    assert all(HF_TOKEN not in d.message for d in verdict.diagnostics)


def _cloud_config_with_encoded_script(script: str, encoding: str) -> str:
    import gzip as gzip_module
    data = script.encode()
    if "gz" in encoding:
        data = gzip_module.compress(data)
    content = base64.b64encode(data).decode()
    return ("#cloud-config\nwrite_files:\n  - path: /opt/serve.sh\n    permissions: '0755'\n"
            f"    encoding: {encoding}\n    content: {content}\nruncmd:\n  - [/opt/serve.sh]\n")


@pytest.mark.parametrize("encoding", ["gz+b64", "gzip+base64", "b64"])
def test_flags_hidden_in_an_encoded_cloud_init_file_are_found(pack, encoding):
    user_data = _cloud_config_with_encoded_script(VLLM_SCRIPT.format(extra="--enable-log-requests"), encoding)
    verdict = judge(pack, lambda: launch_template("hidden-host", user_data, gzipped=True))
    expect_violation(verdict, "no-prompt-logging", LAUNCH_TEMPLATE, "hidden-host",
                     contains=['userData is "--enable-log-requests"'])


def test_an_encoded_cloud_init_file_without_the_flag_passes(pack):
    user_data = _cloud_config_with_encoded_script(VLLM_SCRIPT.format(extra=""), "gz+b64")
    verdict = judge(pack, lambda: launch_template("quiet-host", user_data, gzipped=True))
    for policy in ("no-prompt-logging", "runtime-request-size-bounded", "runtime-concurrency-bounded"):
        expect_clean(verdict, policy)


def test_a_literal_secret_in_an_encoded_cloud_init_file_is_found(pack):
    script = f"#!/bin/bash\nexport HF_TOKEN={HF_TOKEN}\n"
    verdict = judge(pack, lambda: launch_template("leaky-host", _cloud_config_with_encoded_script(script, "b64")),
                    "prod")
    expect_violation(verdict, "no-plaintext-secrets", LAUNCH_TEMPLATE, "leaky-host")


# ---- priority scheduling takes the priority from the gateway ----------------------------

PRIORITY_RULE = "vllm-priority-from-gateway"
SHIPPED_MIDDLEWARE = ("--middleware", "deepseek_priority_middleware.PriorityHeaderMiddleware")


def test_priority_scheduling_without_the_middleware_lets_clients_pick_and_is_refused_in_prod(pack):
    def program():
        model_deployment("self-serve", vllm_container("--scheduling-policy", "priority"))
        model_deployment("by-tier", vllm_container("--scheduling-policy", "priority", *SHIPPED_MIDDLEWARE))
        model_deployment("fcfs", vllm_container("--scheduling-policy", "fcfs"))
        model_deployment("default", vllm_container())

    verdict = judge(pack, program, "prod")
    expect_violation(verdict, PRIORITY_RULE, DEPLOYMENT, "self-serve",
                     contains=["--scheduling-policy priority without a trusted --middleware",
                               "--middleware deepseek_priority_middleware.PriorityHeaderMiddleware"])
    for name in ("by-tier", "fcfs", "default"):
        assert not verdict.on(PRIORITY_RULE, DEPLOYMENT, name), verdict.describe(PRIORITY_RULE)
    expect_violation(judge(pack, program, "dev"), PRIORITY_RULE, DEPLOYMENT, "self-serve", level="advisory")


def test_an_untrusted_middleware_does_not_count_unless_the_pack_config_lists_it(pack):
    import json

    from tools.analyzer import config_path

    def program():
        model_deployment("own", vllm_container("--scheduling-policy=priority", "--middleware", "acme.TierPriority"))

    expect_violation(judge(pack, program, "prod"), PRIORITY_RULE, DEPLOYMENT, "own")
    config = json.loads(config_path("prod").read_text())
    config[PRIORITY_RULE] = {"enforcementLevel": "mandatory", "priorityMiddlewares": ["acme.TierPriority"]}
    expect_clean(judge(pack, program, "prod", config=config), PRIORITY_RULE)


def test_priority_scheduling_in_gzipped_user_data_needs_the_middleware_too(pack):
    def program():
        launch_template("self-serve-host", VLLM_SCRIPT.format(extra="--scheduling-policy priority"), gzipped=True)
        launch_template("by-tier-host", VLLM_SCRIPT.format(extra="--scheduling-policy priority " + " ".join(SHIPPED_MIDDLEWARE)),
                        gzipped=True)

    verdict = judge(pack, program, "prod")
    expect_violation(verdict, PRIORITY_RULE, LAUNCH_TEMPLATE, "self-serve-host")
    assert not verdict.on(PRIORITY_RULE, LAUNCH_TEMPLATE, "by-tier-host")


def test_a_scheduling_policy_unknown_during_preview_is_not_passed_silently(pack):
    def program():
        model_deployment("later", vllm_container("--scheduling-policy", unknown_of("priority")))

    found = judge(pack, program, "prod").on(PRIORITY_RULE, DEPLOYMENT, "later")
    assert found and all(d.enforcement_level == "advisory" for d in found)


def test_the_pack_trusts_the_middleware_the_program_ships():
    from components.serving import runtimes
    from policies.rules.runtime_hygiene import PRIORITY_MIDDLEWARE

    assert PRIORITY_MIDDLEWARE == runtimes.PRIORITY_MIDDLEWARE == SHIPPED_MIDDLEWARE[1]
