"""What the smoke test checks, read from the stack outputs and validated.

The output names are the contract with the program (the gateway component's
`stack_outputs()`); a missing or malformed output stops the smoke test with exit 2.
"""
from __future__ import annotations

import json
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tools.cli_names import option

# The stack outputs this tool reads; the program must export exactly these names.
OUTPUT_API_ENDPOINT = "api_endpoint"
OUTPUT_SERVED_MODELS = "served_models"
OUTPUT_REGION = "region"
OUTPUT_TIER_LIMITS = "smoke_tier_limits"
OUTPUT_MAX_REQUEST_BYTES = "max_request_bytes"
OUTPUT_API_KEY_ID = "smoke_api_key_id"
OUTPUT_API_KEY_SECRET_ARN = "smoke_api_key_secret_arn"
# Optional: {served model: its OpenAI base URL} when the gateway routes each model under
# its own path (one VPC link and NLB per model) instead of one shared <api_endpoint>/v1.
OUTPUT_MODEL_BASE_URLS = "model_endpoints"
# Optional, with a stage per tier: {tier: {model: base URL}} and the smoke key's tier. A key
# works only on its tier's stage, so the smoke test calls that tier's URLs.
OUTPUT_TIER_BASE_URLS = "tier_endpoints"
OUTPUT_SMOKE_TIER = "smoke_tier"
# {served model: {max_context, max_input_tokens, max_output_tokens}}: the worst-case request.
OUTPUT_MODEL_LIMITS = "model_limits"
LIMIT_FIELDS = ("max_context", "max_input_tokens", "max_output_tokens")

# `pulumi stack output --show-secrets=false` prints secret outputs as this string.
PULUMI_SECRET_PLACEHOLDER = "[secret]"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PULUMI_TIMEOUT_S = 120

# Plain http is accepted only where no key can leak on the way: tests on this machine.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class CannotRun(Exception):
    """Bad input or setup: reported as one message and exit status 2, no traceback."""


@dataclass(frozen=True)
class SmokeTarget:
    """What the stack says it deployed, validated."""

    api_endpoint: str
    served_models: tuple[str, ...]
    # The OpenAI base URL (the part before /models, /chat/completions) of each model.
    model_base_urls: dict[str, str]
    region: str
    tier_rate: float
    tier_burst: int
    max_request_bytes: int
    api_key_id: Optional[str]
    api_key_secret_arn: Optional[str]
    # Per model, the longest request it accepts (absent from stacks older than the output).
    model_limits: dict[str, dict[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------- outputs


def read_stack_outputs(stack: Optional[str], outputs_path: Optional[str]) -> tuple[dict, str]:
    """The stack outputs as a dict, and a phrase naming where they came from."""
    if outputs_path:
        path = Path(outputs_path)
        source = f"outputs file {path}"
        if not path.is_file():
            raise CannotRun(
                f"{source} does not exist; write it with "
                f"`pulumi stack output --json --stack <name> > {path}`, "
                f"or leave out {option('--outputs')} to read the stack directly"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CannotRun(f"cannot read {source}: {error}") from None
    else:
        source = f"stack {stack}"
        command = ["pulumi", "stack", "output", "--json", "--show-secrets=false", "--stack", stack]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=PULUMI_TIMEOUT_S,
                cwd=PROJECT_ROOT,
            )
        except FileNotFoundError:
            raise CannotRun(
                "the pulumi CLI is not on PATH; install it, or save the outputs elsewhere "
                f"with `pulumi stack output --json` and pass them with {option('--outputs', 'FILE')}"
            ) from None
        except subprocess.TimeoutExpired:
            raise CannotRun(
                f"`{' '.join(command)}` did not finish within {PULUMI_TIMEOUT_S} s"
            ) from None
        if completed.returncode != 0:
            reason = completed.stderr.strip().splitlines()[-1:] or ["no error output"]
            raise CannotRun(
                f"`{' '.join(command)}` failed with exit status {completed.returncode}: {reason[0]}"
            )
        text = completed.stdout
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise CannotRun(
            f"{source} is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    if not isinstance(outputs, dict):
        raise CannotRun(f"{source} must be a JSON object of output names to values")
    return outputs, source


def _output(outputs: dict, name: str, source: str) -> Any:
    if outputs.get(name) is None:
        raise CannotRun(
            f"{source} has no output '{name}'; the stack must export it "
            f'(pulumi.export("{name}", ...)) for the smoke test'
        )
    value = outputs[name]
    if value == PULUMI_SECRET_PLACEHOLDER:
        raise CannotRun(
            f"output '{name}' in {source} is a secret (shown as {PULUMI_SECRET_PLACEHOLDER}); "
            "it is not sensitive, so export it as a plain value"
        )
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _base_url(value: Any, name: str, source: str) -> str:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise CannotRun(
            f"output '{name}' in {source} is {value!r}; expected the base URL of the API "
            "including its stage, e.g. https://abc.execute-api.us-east-1.amazonaws.com/v1"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise CannotRun(
            f"output '{name}' in {source} is plain http ({value}); the API key travels in a "
            "header, so the endpoint must be https"
        )
    if parts.query or parts.fragment:
        raise CannotRun(f"output '{name}' in {source} ({value}) has a query or fragment; expected a base URL")
    return value.rstrip("/")


def target_from_outputs(outputs: dict, source: str) -> SmokeTarget:
    """Validate the outputs the smoke test needs; each error names the output and the fix."""
    endpoint = _base_url(_output(outputs, OUTPUT_API_ENDPOINT, source), OUTPUT_API_ENDPOINT, source)

    models = _output(outputs, OUTPUT_SERVED_MODELS, source)
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(m, str) and m for m in models)
    ):
        raise CannotRun(
            f"output '{OUTPUT_SERVED_MODELS}' in {source} is {models!r}; expected a non-empty "
            "list of served model names"
        )

    region = _output(outputs, OUTPUT_REGION, source)
    if not isinstance(region, str) or not region:
        raise CannotRun(f"output '{OUTPUT_REGION}' in {source} is {region!r}; expected e.g. us-east-1")

    limits = _output(outputs, OUTPUT_TIER_LIMITS, source)
    rate = limits.get("rate") if isinstance(limits, dict) else None
    burst = limits.get("burst") if isinstance(limits, dict) else None
    if not (_is_number(rate) and rate > 0 and _is_number(burst) and burst >= 1 and burst == int(burst)):
        raise CannotRun(
            f"output '{OUTPUT_TIER_LIMITS}' in {source} is {limits!r}; expected "
            '{"rate": <requests per second > 0>, "burst": <integer >= 1>} of the smoke key\'s tier'
        )

    max_bytes = _output(outputs, OUTPUT_MAX_REQUEST_BYTES, source)
    if not (_is_number(max_bytes) and max_bytes == int(max_bytes) and max_bytes > 0):
        raise CannotRun(
            f"output '{OUTPUT_MAX_REQUEST_BYTES}' in {source} is {max_bytes!r}; expected a "
            "positive integer (the body size limit the gateway enforces)"
        )

    base_urls = {model: f"{endpoint}/v1" for model in models}
    if outputs.get(OUTPUT_MODEL_BASE_URLS) is not None:
        per_model = _output(outputs, OUTPUT_MODEL_BASE_URLS, source)
        if not isinstance(per_model, dict) or set(per_model) != set(models):
            listed = sorted(per_model) if isinstance(per_model, dict) else per_model
            raise CannotRun(
                f"output '{OUTPUT_MODEL_BASE_URLS}' in {source} maps {listed!r}; expected one "
                f"base URL for each served model: {', '.join(models)}"
            )
        base_urls = {
            model: _base_url(url, f"{OUTPUT_MODEL_BASE_URLS}.{model}", source) for model, url in per_model.items()
        }

    if outputs.get(OUTPUT_SMOKE_TIER) is not None:
        tier = _output(outputs, OUTPUT_SMOKE_TIER, source)
        per_tier = _output(outputs, OUTPUT_TIER_BASE_URLS, source)
        urls = per_tier.get(tier) if isinstance(per_tier, dict) and isinstance(tier, str) else None
        if not isinstance(urls, dict) or set(urls) != set(models):
            raise CannotRun(
                f"output '{OUTPUT_TIER_BASE_URLS}' in {source} has no base URL per served model for the "
                f"smoke key's tier {tier!r} (output '{OUTPUT_SMOKE_TIER}'); expected {{tier: {{model: url}}}}")
        base_urls = {model: _base_url(url, f"{OUTPUT_TIER_BASE_URLS}.{tier}.{model}", source)
                     for model, url in urls.items()}

    model_limits: dict[str, dict[str, int]] = {}
    if outputs.get(OUTPUT_MODEL_LIMITS) is not None:
        limits = _output(outputs, OUTPUT_MODEL_LIMITS, source)
        if not isinstance(limits, dict):
            raise CannotRun(f"output '{OUTPUT_MODEL_LIMITS}' in {source} is {limits!r}; expected "
                            f"{{model: {{{', '.join(LIMIT_FIELDS)}}}}}")
        for model, values in limits.items():
            good = isinstance(values, dict) and all(
                isinstance(values.get(name), (int, float)) and not isinstance(values.get(name), bool)
                and values[name] > 0 for name in LIMIT_FIELDS)
            if model not in models or not good:
                raise CannotRun(f"output '{OUTPUT_MODEL_LIMITS}.{model}' in {source} is {values!r}; expected a "
                                f"served model with positive {', '.join(LIMIT_FIELDS)}")
            model_limits[model] = {name: int(values[name]) for name in LIMIT_FIELDS}

    key_id = outputs.get(OUTPUT_API_KEY_ID)
    secret_arn = outputs.get(OUTPUT_API_KEY_SECRET_ARN)
    if key_id is None and secret_arn is None:
        raise CannotRun(
            f"{source} has neither '{OUTPUT_API_KEY_ID}' (an API Gateway key id) nor "
            f"'{OUTPUT_API_KEY_SECRET_ARN}' (a Secrets Manager secret holding the key); "
            "export one of them for the smoke test"
        )
    # The key id is preferred: it needs no second copy of the key in Secrets Manager.
    if key_id is not None:
        key_id = _output(outputs, OUTPUT_API_KEY_ID, source)
        if not isinstance(key_id, str) or not key_id:
            raise CannotRun(f"output '{OUTPUT_API_KEY_ID}' in {source} is {key_id!r}; expected a key id")
        secret_arn = None
    else:
        secret_arn = _output(outputs, OUTPUT_API_KEY_SECRET_ARN, source)
        if not isinstance(secret_arn, str) or not secret_arn.startswith("arn:"):
            raise CannotRun(
                f"output '{OUTPUT_API_KEY_SECRET_ARN}' in {source} is {secret_arn!r}; "
                "expected a Secrets Manager secret ARN"
            )

    return SmokeTarget(
        api_endpoint=endpoint,
        served_models=tuple(models),
        model_base_urls=base_urls,
        region=region,
        tier_rate=float(rate),
        tier_burst=int(burst),
        max_request_bytes=int(max_bytes),
        api_key_id=key_id,
        api_key_secret_arn=secret_arn,
        model_limits=model_limits,
    )
