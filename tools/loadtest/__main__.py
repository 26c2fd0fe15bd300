"""Streaming load test of an OpenAI-compatible endpoint; `--calibrate` checks the throttles.

    python -m tools.loadtest --stack prod --model r1-qwen-7b --requests 200 --concurrency 16
    python -m tools.loadtest --stack prod --requests 400 --duration 600 --concurrency 64 --calibrate
    python -m tools.loadtest --base-url http://127.0.0.1:8000/v1 --model m --api-key-env KEY

With --stack it reads the stack outputs and the smoke client's API key as `make smoke` does
(tools/smoke_target.py, tools/smoke_key.py) and the model's limits from the stack file;
--base-url (with an optional key from an environment variable) tests any OpenAI-compatible
server. The run is bounded by --requests (HTTP attempts, retries included) and
--duration (seconds; in-flight requests are cancelled then), whichever comes first.

Writes <out>/report.json (schema deepseek-serving/loadtest@1) and <out>/chart.png, and
prints the summary. Exit status: 0 the run completed with at least one generation;
1 nothing completed; 2 the test could not run (bad options, outputs or key).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from tools.loadtest import calibrate as calibration
from tools.loadtest.report import render_text, report, write_chart, write_json
from tools.loadtest.runner import Limits, Target, run
from tools.loadtest.stats import summarize
from tools.loadtest.workload import PROFILES, WorkloadError, WorkloadShape, from_sizing

EXIT_OK, EXIT_NOTHING_COMPLETED, EXIT_CANNOT_RUN = 0, 1, 2
# Hard ceilings: a typo must not turn a load test into an outage.
MAX_REQUESTS = 100_000
MAX_DURATION_S = 3600.0
MAX_CONCURRENCY = 1024
# Without a stack (--base-url only): a chat-like shape.
DEFAULT_PROMPT_MEDIAN, DEFAULT_OUTPUT_MEDIAN, DEFAULT_SIGMA = 1024, 512, 0.8


class CannotRun(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest", description=__doc__.split("\n")[0])
    where = parser.add_argument_group("target")
    where.add_argument("--stack", help="stack whose outputs, API key and inventory to use")
    where.add_argument("--outputs", metavar="FILE", help="stack outputs from this JSON file instead of pulumi")
    where.add_argument("--stack-file", metavar="FILE", help="inventory file (default stacks/Pulumi.<stack>.yaml)")
    where.add_argument("--model", help="inventory model name or served model name (default: the first)")
    where.add_argument("--base-url", help="OpenAI base URL (…/v1) to test instead of the stack's endpoint")
    where.add_argument("--api-key-env", metavar="VAR", help="with --base-url: send $VAR as x-api-key and bearer")
    where.add_argument("--aws-endpoint-url", metavar="URL", help="AWS API endpoint override for the key lookup")
    where.add_argument("--authorization-env", metavar="VAR",
                       help="send $VAR as the Authorization header (stacks with an authorizer); never printed")
    load = parser.add_argument_group("load (bounded: the first limit reached stops the run)")
    load.add_argument("--requests", type=int, default=100, help="HTTP attempts in total, retries included")
    load.add_argument("--duration", type=float, default=300.0, help="seconds before in-flight requests are cancelled")
    load.add_argument("--concurrency", type=int, default=8, help="clients, each with one request in flight")
    load.add_argument("--read-timeout", type=float, default=120.0, help="seconds a stream may stay silent")
    shape = parser.add_argument_group("workload")
    shape.add_argument("--profile", choices=PROFILES, default="realistic")
    shape.add_argument("--prompt-median", type=int, help="default: the model's typical prompt (its sizing workload)")
    shape.add_argument("--output-median", type=int, help="default: the model's typical output")
    shape.add_argument("--sigma", type=float, help="lognormal spread of lengths (default: from the workload's p95)")
    shape.add_argument("--max-context", type=int, help="default: the model's max_context from the inventory")
    shape.add_argument("--max-output", type=int, help="default: the workload's max output (the runtime's ceiling)")
    shape.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="DIR", help="where report.json and chart.png go (default build/loadtest/<stack>)")
    parser.add_argument("--calibrate", action="store_true",
                        help="compare the measured capacity with the sizing estimate; propose tier throttles")
    parser.add_argument("--replicas", type=int, default=1, help="replicas serving during the run (for --calibrate)")
    return parser


def _bounded(args: argparse.Namespace) -> Limits:
    if not 1 <= args.requests <= MAX_REQUESTS:
        raise CannotRun(f"--requests {args.requests}: allowed 1..{MAX_REQUESTS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        raise CannotRun(f"--duration {args.duration:g}: allowed (0, {MAX_DURATION_S:g}] seconds")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise CannotRun(f"--concurrency {args.concurrency}: allowed 1..{MAX_CONCURRENCY}")
    if args.read_timeout <= 0:
        raise CannotRun(f"--read-timeout {args.read_timeout:g} must be positive")
    return Limits(requests=args.requests, duration_s=args.duration, concurrency=args.concurrency,
                  read_timeout_s=args.read_timeout)


def _inventory(args: argparse.Namespace):
    if not args.stack:
        return None, None
    from components.config import PROJECT, InventoryError, parse_inventory
    from tools import stack_files

    try:
        stack_file = stack_files.load(args.stack, Path(args.stack_file) if args.stack_file else None)
        inventory = parse_inventory(stack_file.config.get(f"{PROJECT}:inventory"), stack=args.stack,
                                    secret_keys=stack_file.secret_keys, stack_file=stack_file.display_path)
    except (stack_files.StackFileError, InventoryError) as error:
        raise CannotRun(str(error)) from None
    return inventory, stack_file.display_path


def _model(inventory, wanted: Optional[str]):
    from components.serving.runtimes import served_model_name

    if wanted is None:
        return inventory.models[0]
    for model in inventory.models:
        if wanted in (model.name, served_model_name(model)):
            return model
    names = ", ".join(m.name for m in inventory.models)
    raise CannotRun(f"--model {wanted}: not in the inventory; models: {names}")


def _sizing_plan(inventory, stack: str, model):
    from components.gateway.api import model_plan

    try:
        return model_plan(inventory, model, stack)
    except ValueError as error:  # the inventory or the catalog cannot size it
        raise CannotRun(str(error)) from None


def _shape(args: argparse.Namespace, model, plan) -> WorkloadShape:
    """The model's sizing workload (with a stack), each option overriding its part."""
    if plan is not None and getattr(plan, "workload", None) is not None:
        base = from_sizing(plan.workload, max_context=model.max_context)
    else:
        base = WorkloadShape(prompt_median=DEFAULT_PROMPT_MEDIAN, output_median=DEFAULT_OUTPUT_MEDIAN,
                             sigma=DEFAULT_SIGMA, max_context=model.max_context if model else 8192,
                             max_output=4096)
    sigma = base.sigma if args.sigma is None else args.sigma
    return WorkloadShape(
        profile=args.profile,
        prompt_median=args.prompt_median or base.prompt_median,
        output_median=args.output_median or base.output_median,
        sigma=sigma, output_sigma=base.output_sigma if args.sigma is None else args.sigma,
        max_context=args.max_context or base.max_context,
        max_output=args.max_output or base.max_output)


def _secret_env(var: Optional[str], option: str) -> Optional[str]:
    if var is None:
        return None
    value = os.environ.get(var, "").strip()
    if not value:
        raise CannotRun(f"{option} {var}: that environment variable is empty or unset")
    return value


def _target(args: argparse.Namespace, inventory, model) -> Target:
    headers: dict[str, str] = {}
    authorization = _secret_env(args.authorization_env, "--authorization-env")
    if args.base_url:
        key = _secret_env(args.api_key_env, "--api-key-env")
        if key:
            headers.update({"x-api-key": key, "Authorization": f"Bearer {key}"})
        if authorization:
            headers["Authorization"] = authorization
        if model is not None:
            from components.serving.runtimes import served_model_name
            name = served_model_name(model)
        elif args.model:
            name = args.model
        else:
            raise CannotRun("--base-url needs --model (the served model name) or --stack")
        return Target(args.base_url, name, headers)
    if not args.stack and not args.outputs:
        raise CannotRun("give --stack NAME (the deployed stack) or --base-url URL")
    from components.serving.runtimes import served_model_name
    from tools.smoke_key import fetch_api_key
    from tools.smoke_target import CannotRun as TargetError, read_stack_outputs, target_from_outputs

    try:
        outputs, source = read_stack_outputs(args.stack, args.outputs)
        deployed = target_from_outputs(outputs, source)
        served = served_model_name(model) if model is not None else (args.model or deployed.served_models[0])
        if served not in deployed.model_base_urls:
            raise CannotRun(f"model {served} is not served by {source}; served: "
                            f"{', '.join(deployed.served_models)}")
        key = fetch_api_key(deployed, region=deployed.region, aws_endpoint_url=args.aws_endpoint_url)
    except TargetError as error:
        raise CannotRun(str(error)) from None
    headers["x-api-key"] = key.value
    if authorization:
        headers["Authorization"] = authorization
    return Target(deployed.model_base_urls[served], served, headers)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        limits = _bounded(args)
        inventory, stack_file = _inventory(args)
        model = _model(inventory, args.model) if inventory is not None else None
        if args.calibrate and model is None:
            raise CannotRun("--calibrate needs --stack (the inventory holds the sizing estimate's inputs)")
        if args.replicas < 1:
            raise CannotRun(f"--replicas {args.replicas} must be at least 1")
        plan = _sizing_plan(inventory, args.stack, model) if model is not None else None
        shape = _shape(args, model, plan)
        target = _target(args, inventory, model)
    except (CannotRun, WorkloadError) as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN

    out = Path(args.out) if args.out else Path("build") / "loadtest" / (args.stack or "local")
    print(f"load test of {target.model} at {target.base_url}: {limits.requests} attempts at most, "
          f"{limits.concurrency} clients, {limits.duration_s:g} s at most, {shape.profile} workload "
          f"(median prompt {shape.prompt_median}, output {shape.output_median} tokens, context {shape.max_context})",
          flush=True)
    result = asyncio.run(run(target, shape, limits, seed=args.seed))
    summary = summarize(result.attempts, result.wall_s)
    settings = {"model": target.model, "base_url": target.base_url, "requests": limits.requests,
                "duration_s": limits.duration_s, "concurrency": limits.concurrency, "profile": shape.profile,
                "prompt_median": shape.prompt_median, "output_median": shape.output_median,
                "sigma": shape.sigma, "max_context": shape.max_context, "max_output": shape.max_output,
                "seed": args.seed, "stack": args.stack}
    calibrated = None
    if args.calibrate:
        calibrated = calibration.calibrate(
            inventory, args.stack, model, summary, replicas=args.replicas, concurrency=limits.concurrency,
            profile=shape.profile, prompt_median=shape.prompt_median, output_median=shape.output_median,
            plans={model.name: plan} if plan is not None else None)
    document = report(summary, settings=settings, stopped_by=result.stopped_by,
                      interrupted_clients=result.interrupted_clients, calibration=calibrated)
    write_json(document, out / "report.json")
    write_chart(result.attempts, summary, out / "chart.png",
                title=f"{target.model}: {limits.concurrency} clients, {shape.profile} workload")
    print(render_text(summary))
    print(f"stopped by {result.stopped_by}; report {out / 'report.json'}, chart {out / 'chart.png'}")
    if calibrated is not None:
        print(calibration.render_calibration(calibrated, stack_file))
    return EXIT_OK if summary["completed"] else EXIT_NOTHING_COMPLETED


if __name__ == "__main__":
    sys.exit(main())
