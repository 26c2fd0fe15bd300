"""`docker run` command lines parsed the way the Docker CLI parses them, for tests.

The flag table is docker/cli's own: cli/command/container/opts.go (`addFlags`: the container
options) and cli/command/container/run.go (`NewRunCommand`: detach, name, pull, ...), with
their one-letter shorthands. Like the CLI (cobra with `SetInterspersed(false)`), parsing stops
at the first positional word, the image; everything after it is the container's command.
An unknown flag, a missing value or a boolean flag given a value fails the parse, so a test
never reads a misspelt flag as if Docker would honour it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

# Boolean flags (pflag BoolVar): present or absent.
BOOLEAN = {
    "detach": "d", "sig-proxy": None, "quiet": "q", "use-api-socket": None, "disable-content-trust": None,
    "interactive": "i", "tty": "t", "read-only": None, "rm": None, "privileged": None, "publish-all": "P",
    "no-healthcheck": None, "oom-kill-disable": None, "init": None, "help": None,
}
# Flags that take a value; every one is collected as a list (most repeat; for the rest the
# CLI keeps the last, which is what `value()` returns).
VALUED = {
    # run.go
    "name": None, "detach-keys": None, "pull": None, "platform": None,
    # opts.go: general purpose
    "attach": "a", "device-cgroup-rule": None, "device": None, "gpus": None, "env": "e", "env-file": None,
    "entrypoint": None, "group-add": None, "hostname": "h", "domainname": None, "label": "l",
    "label-file": None, "restart": None, "stop-signal": None, "stop-timeout": None, "sysctl": None,
    "ulimit": None, "user": "u", "workdir": "w", "annotation": None,
    # security
    "cap-add": None, "cap-drop": None, "security-opt": None, "userns": None, "cgroupns": None,
    # network and ports
    "add-host": None, "dns": None, "dns-opt": None, "dns-option": None, "dns-search": None, "expose": None,
    "ip": None, "ip6": None, "link": None, "link-local-ip": None, "mac-address": None, "publish": "p",
    "net": None, "network": None, "net-alias": None, "network-alias": None,
    # logging and storage
    "log-driver": None, "volume-driver": None, "log-opt": None, "storage-opt": None, "tmpfs": None,
    "volumes-from": None, "volume": "v", "mount": None,
    # health checks
    "health-cmd": None, "health-interval": None, "health-retries": None, "health-timeout": None,
    "health-start-period": None, "health-start-interval": None,
    # resources
    "blkio-weight": None, "blkio-weight-device": None, "cidfile": None, "cpuset-cpus": None,
    "cpuset-mems": None, "cpu-count": None, "cpu-percent": None, "cpu-period": None, "cpu-quota": None,
    "cpu-rt-period": None, "cpu-rt-runtime": None, "cpu-shares": "c", "cpus": None, "device-read-bps": None,
    "device-read-iops": None, "device-write-bps": None, "device-write-iops": None, "io-maxbandwidth": None,
    "io-maxiops": None, "kernel-memory": None, "memory": "m", "memory-reservation": None, "memory-swap": None,
    "memory-swappiness": None, "oom-score-adj": None, "pids-limit": None,
    # low-level execution
    "cgroup-parent": None, "ipc": None, "isolation": None, "pid": None, "shm-size": None, "uts": None,
    "runtime": None,
}


class DockerCliError(ValueError):
    """A command line the Docker CLI would refuse."""


@dataclass(frozen=True)
class DockerRun:
    flags: dict[str, object]   # flag name -> True (boolean) or the list of values given
    image: str
    command: list[str]

    def values(self, flag: str) -> list[str]:
        got = self.flags.get(flag)
        return list(got) if isinstance(got, list) else []

    def value(self, flag: str) -> str | None:
        got = self.values(flag)
        return got[-1] if got else None

    def has(self, flag: str) -> bool:
        return self.flags.get(flag) is True

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.values("env"))

    @property
    def volumes(self) -> list[tuple[str, str, list[str]]]:
        """(host path, container path, options) of every `--volume src:dst[:opts]`."""
        found = []
        for spec in self.values("volume"):
            parts = spec.split(":")
            if len(parts) not in (2, 3):
                raise DockerCliError(f"not a bind mount: --volume {spec}")
            found.append((parts[0], parts[1], parts[2].split(",") if len(parts) == 3 else []))
        return found

    @property
    def tmpfs(self) -> dict[str, list[str]]:
        """Container path -> the mount options of every `--tmpfs path[:opts]`."""
        mounts = {}
        for spec in self.values("tmpfs"):
            path, _, options = spec.partition(":")
            mounts[path] = options.split(",") if options else []
        return mounts


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit
        raise DockerCliError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="docker run", add_help=False, allow_abbrev=False, exit_on_error=False)
    for name, short in BOOLEAN.items():
        parser.add_argument(f"--{name}", *([f"-{short}"] if short else []), dest=name, action="store_true")
    for name, short in VALUED.items():
        parser.add_argument(f"--{name}", *([f"-{short}"] if short else []), dest=name, action="append")
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    return parser


def parse_run(argv: list[str]) -> DockerRun:
    """`argv` of `docker run ...` (or `docker container run ...`), program name first."""
    words = list(argv)
    if not words or words[0].rsplit("/", 1)[-1] != "docker":
        raise DockerCliError(f"not a docker command: {argv[:2]}")
    words = words[1:]
    if words[:2] == ["container", "run"]:
        words = words[2:]
    elif words[:1] == ["run"]:
        words = words[1:]
    else:
        raise DockerCliError(f"not docker run: {argv[:3]}")
    # Flags end at the image (SetInterspersed(false)): the REMAINDER positional takes every
    # word after it, option-like or not, so the container's own arguments are never read as
    # docker flags.
    try:
        parsed, unknown = _parser().parse_known_args(words)
    except (argparse.ArgumentError, DockerCliError) as error:
        raise DockerCliError(f"docker run would refuse {argv}: {error}") from None
    if unknown:
        raise DockerCliError(f"docker run would refuse {argv}: unknown flag(s) {unknown}")
    flags = {name: value for name, value in vars(parsed).items()
             if name not in ("image", "command") and value not in (None, False)}
    return DockerRun(flags=flags, image=parsed.image, command=list(parsed.command))
