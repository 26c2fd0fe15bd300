"""The real Pulumi CLI, always with the policy pack: `make up`, `make preview-live`, `make tunnel`.

    python -m tools.live up --stack prod [--phase cluster]
    python -m tools.live preview --stack prod
    python -m tools.live tunnel --stack prod        # hold the SSM port forward open (kubectl)

Every `pulumi preview`/`pulumi up` gets `--policy-pack policies` and the pack config of the
stack's environment (policies/config/<environment>.json): nobody can forget them. A stack
whose inventory says `eks.api_access: ssm_tunnel` is reached through a Session Manager port
forward opened for the duration of the command (components/eks/api_tunnel.py); the first
apply of such a stack runs `--phase cluster`, which needs no tunnel.

Exit codes: what the CLI returned; 2 when a prerequisite is missing (the message says which).
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

from components.config import PROJECT
from components.eks.api_tunnel import PORT_FORWARD_DOCUMENT, port_forward_parameters
from tools.cli_names import option
from tools.stack_files import PROJECT_DIR, StackFileError, load

POLICY_PACK = PROJECT_DIR / "policies"
TUNNEL_WAIT_S = 60.0


class Refused(Exception):
    """A prerequisite is missing; nothing was run."""


def require(program: str, why: str, install: str) -> str:
    path = shutil.which(program)
    if not path:
        raise Refused(f"`{program}` is not on PATH; {why}. Install it: {install}")
    return path


def stack_facts(stack: str) -> tuple[str, dict]:
    """(environment, eks section) of the stack's inventory, as written in the stack file."""
    try:
        stack_file = load(stack)
    except StackFileError as error:
        raise Refused(str(error)) from None
    inventory = stack_file.config.get(f"{PROJECT}:inventory") or {}
    return str(inventory.get("environment", stack)), inventory.get("eks") or {}


def pulumi_command(verb: str, stack: str, environment: str, *, phase: Optional[str],
                   extra: Sequence[str] = ()) -> list[str]:
    config = POLICY_PACK / "config" / f"{environment}.json"
    if not config.is_file():
        raise Refused(f"{config.relative_to(PROJECT_DIR)} does not exist: the pack needs the config of "
                      f"environment {environment!r}")
    command = ["pulumi", verb, "--stack", stack, "--policy-pack", str(POLICY_PACK.relative_to(PROJECT_DIR)),
               "--policy-pack-config", str(config.relative_to(PROJECT_DIR))]
    # The phase is stack config, recorded in the stack file like any other setting.
    command += ["--config", f"{PROJECT}:phase={phase or 'all'}"]
    return command + list(extra)


def stack_output(stack: str, name: str) -> dict:
    result = subprocess.run(["pulumi", "stack", "output", name, "--json", "--stack", stack],
                            cwd=PROJECT_DIR, capture_output=True, text=True)
    if result.returncode != 0:
        raise Refused(f"`pulumi stack output {name}` failed: {result.stderr.strip() or result.stdout.strip()}; "
                      f"has the first apply run? ({option('--phase', 'cluster')} with `make up`)")
    return json.loads(result.stdout or "null") or {}


def port_forward_command(instance_id: str, endpoint: str, local_port: int) -> list[str]:
    return ["aws", "ssm", "start-session", "--target", instance_id, "--document-name", PORT_FORWARD_DOCUMENT,
            "--parameters", port_forward_parameters(endpoint, local_port)]


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = TUNNEL_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Refused(f"the SSM session ended before the tunnel opened (exit {process.returncode}); "
                          "check AWS credentials and that the tunnel host is online in Systems Manager")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise Refused(f"no tunnel on 127.0.0.1:{port} after {timeout_s:g} s")


@contextmanager
def tunnel(stack: str, eks: dict) -> Iterator[None]:
    """The port forward to the private API, open for the duration of the block."""
    require("aws", "the tunnel to the private cluster API is an SSM session",
            "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html")
    require("session-manager-plugin", "`aws ssm start-session` needs it",
            "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html")
    facts = stack_output(stack, "eks").get("api_tunnel") or {}
    if not facts.get("instance_id") or not facts.get("endpoint"):
        raise Refused(f"stack {stack} has no eks.api_tunnel output yet: run the first apply with "
                      f"{option('--phase', 'cluster')}")
    port = int(eks.get("api_tunnel_port", 8443))
    process = subprocess.Popen(port_forward_command(facts["instance_id"], facts["endpoint"], port),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process)
        print(f"tunnel: 127.0.0.1:{port} -> {facts['endpoint']} through {facts['instance_id']}", file=sys.stderr)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def run(verb: str, stack: str, *, phase: Optional[str], extra: Sequence[str] = ()) -> int:
    require("pulumi", "make up and make preview-live wrap the real Pulumi CLI (the offline "
            "`make preview` needs no CLI)", "https://www.pulumi.com/docs/iac/download-install/")
    environment, eks = stack_facts(stack)
    command = pulumi_command(verb, stack, environment, phase=phase, extra=extra)
    print("+ " + " ".join(command), file=sys.stderr)
    needs_tunnel = eks.get("api_access", "ssm_tunnel") == "ssm_tunnel" and eks and phase != "cluster"
    if not needs_tunnel:
        return subprocess.run(command, cwd=PROJECT_DIR).returncode
    with tunnel(stack, eks):
        return subprocess.run(command, cwd=PROJECT_DIR).returncode


def hold_tunnel(stack: str) -> int:
    _, eks = stack_facts(stack)
    if not eks or eks.get("api_access", "ssm_tunnel") != "ssm_tunnel":
        raise Refused(f"stack {stack} has no SSM tunnel (eks.api_access is not ssm_tunnel)")
    require("pulumi", "the tunnel reads the stack outputs", "https://www.pulumi.com/docs/iac/download-install/")
    with tunnel(stack, eks):
        print("tunnel open; press Ctrl-C to close it", file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=("up", "preview", "tunnel"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--phase", choices=("cluster", "all"), help="cluster: the first apply of a private EKS stack")
    args, extra = parser.parse_known_args(argv)
    try:
        if args.verb == "tunnel":
            return hold_tunnel(args.stack)
        return run(args.verb, args.stack, phase=args.phase, extra=extra)
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
