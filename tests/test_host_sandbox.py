"""Every container an EC2 host runs is unprivileged: the UID the EKS pods use, a read-only root
filesystem, writable paths only where a runtime writes, no capabilities, no privilege gain.

Read off the rendered user data of every EC2 model of the committed stacks (dev and
ec2-runtimes: vLLM, TGI, Ollama): each `docker run` in a systemd unit is parsed with the
Docker CLI's own flag table (tests/docker_cli.py); the one in the weight script is recorded
by running the real script against a fake `docker`, so the words are the ones bash expands.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from components.config import InventoryError, parse_inventory
from components.ec2 import host as hp
from components.eks import model_service
from components.serving import catalog, runtimes, sandbox
from tests.docker_cli import DockerCliError, DockerRun, parse_run
from tests.stack_runs import inventory_of
from tests.test_host_provisioning import _run_fetch, _s3_plan, FILES, cloud_config, env_file, plan_for, unit, written

ROOT = Path(__file__).resolve().parent.parent
EC2_MODELS = [(stack, model["name"]) for stack in ("dev", "ec2-runtimes")
              for model in inventory_of(stack)["models"]]
RUNTIMES_COVERED = {plan_for(model, stack=stack).launch.runtime for stack, model in EC2_MODELS}

# Where each runtime's libraries write at run time, as the variables that say where, and the
# libraries' defaults when a variable is unset (stated here from the libraries, independently
# of components/serving/sandbox.py). None: no default that a read-only root could hold (Docker
# sets HOME=/ for a UID without a passwd entry; the upstream TGI image sets HF_HOME=/data).
DEFAULTS = {
    "HOME": None, "OLLAMA_MODELS": None, "HF_HOME": None,
    "XDG_CACHE_HOME": "{HOME}/.cache", "XDG_CONFIG_HOME": "{HOME}/.config",
    "VLLM_CACHE_ROOT": "{XDG_CACHE_HOME}/vllm", "VLLM_CONFIG_ROOT": "{XDG_CONFIG_HOME}/vllm",
    "TRITON_CACHE_DIR": "{HOME}/.triton/cache", "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor_{USER}",
    "FLASHINFER_WORKSPACE_BASE": "{HOME}", "CUDA_CACHE_PATH": "{HOME}/.nv/ComputeCache",
}
MUST_BE_WRITABLE = {
    "vllm": {"HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT",
             "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE", "CUDA_CACHE_PATH",
             "HF_HOME"},
    "tgi": {"HOME", "XDG_CACHE_HOME", "HF_HOME", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH"},
    "ollama": {"HOME", "OLLAMA_MODELS"},
}
# Compile and JIT caches: on disk, so a restart reuses them and they take no RAM.
PERSISTENT = {
    "vllm": {"VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE",
             "CUDA_CACHE_PATH"},
    "tgi": {"TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH"},
    "ollama": {"OLLAMA_MODELS"},
}


def resolved(name: str, env: dict[str, str]) -> str | None:
    """The path a library uses for `name` given the container's environment."""
    if name in env:
        return env[name]
    default = DEFAULTS[name]
    if default is None:
        return None
    fields = {key: resolved(key, env) or "" for key in re.findall(r"{(\w+)}", default) if key != "USER"}
    return default.format(USER=env.get("USER", ""), **fields)


def unit_docker_runs(config: dict) -> list[tuple[str, DockerRun]]:
    """Every `docker run` in an Exec line of every rendered systemd unit."""
    runs = []
    for entry in config["write_files"]:
        if not entry["path"].startswith("/etc/systemd/system/"):
            continue
        for line in hp.file_content(entry).splitlines():
            key, _, command = line.partition("=")
            if key.startswith("Exec") and "docker run" in command:
                runs.append((f"{entry['path']} {key}", parse_run(shlex.split(command.lstrip("-+!@:")))))
    return runs


def fetch_script_docker_runs(tmp_path: Path, plan: hp.HostPlan) -> tuple[list[DockerRun], list[str], subprocess.CompletedProcess]:
    """Run the real weight script down its hub branch against a fake `docker` that records its
    argv and serves the files; returns the recorded runs, the chown calls and the result."""
    config = cloud_config(plan)
    hub = tmp_path / "hub"
    hub.mkdir()
    manifest = []
    for name, content in FILES.items():
        (hub / name).write_bytes(content)
        manifest.append(f"{hashlib.sha256(content).hexdigest()}  {name}\n")
    (hub / "SHA256SUMS").write_text("".join(manifest))
    digest = hashlib.sha256("".join(manifest).encode()).hexdigest()
    env = {**env_file(config), "MODEL_DIR": str(tmp_path / "models" / plan.model_name), "WEIGHTS_SOURCE": "hub",
           "HF_REPO": "deepseek-ai/x", "REVISION": "0" * 40, "MANIFEST_SHA256": digest}
    (tmp_path / "model.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    script = tmp_path / "fetch-weights"
    script.write_text(written(config, "/usr/local/sbin/deepseek-fetch-weights"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # docker: record argv (one JSON list per call), then copy the hub files into the /out mount.
    (bin_dir / "docker").write_text(
        "#!/usr/bin/env python3\nimport json, os, shutil, sys\n"
        "open(os.environ['DOCKER_LOG'], 'a').write(json.dumps(sys.argv) + '\\n')\n"
        "args = sys.argv\n"
        "out = next(a.split(':')[0] for i, a in enumerate(args) if args[i - 1] in ('-v', '--volume') and a.endswith(':/out'))\n"
        "shutil.copytree(os.environ['FAKE_HUB'], out, dirs_exist_ok=True)\n")
    (bin_dir / "chown").write_text('#!/bin/bash\necho "$*" >> "$CHOWN_LOG"\n')
    for tool in ("docker", "chown"):
        (bin_dir / tool).chmod(0o755)
    log, chowns = tmp_path / "docker.log", tmp_path / "chown.log"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, env={
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DEEPSEEK_ENV": str(tmp_path / "model.env"),
        "DOCKER_LOG": str(log), "CHOWN_LOG": str(chowns), "FAKE_HUB": str(hub)})
    runs = [parse_run(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
    return runs, chowns.read_text().splitlines() if chowns.exists() else [], result


def all_docker_runs(tmp_path: Path, plan: hp.HostPlan) -> list[tuple[str, DockerRun]]:
    """Every container the host starts, and proof that none was missed: each file's count of
    `docker run` equals the runs read from it."""
    config = cloud_config(plan)
    from_units = unit_docker_runs(config)
    fetched, _, result = fetch_script_docker_runs(tmp_path, plan)
    assert result.returncode == 0, result.stderr
    found = {}
    for entry in config["write_files"]:
        count = len(re.findall(r"\bdocker\s+run\b", hp.file_content(entry)))
        if count:
            found[entry["path"]] = count
    expected = {"/usr/local/sbin/deepseek-fetch-weights": len(fetched)}
    for where, _ in from_units:
        path = where.split()[0]
        expected[path] = expected.get(path, 0) + 1
    assert found == expected, f"docker run lines this test does not read: {found} vs {expected}"
    return from_units + [("/usr/local/sbin/deepseek-fetch-weights", run) for run in fetched]


def effective(options, *pair: str) -> str | None:
    """Which of two opposite mount options holds: the later one (moby pkg/mount
    MergeTmpfsOptions keeps the last of a flag; Docker's tmpfs defaults come first)."""
    chosen = [option for option in options if option in pair]
    return chosen[-1] if chosen else None


def writable(run: DockerRun, path: str) -> bool:
    """Whether `path` inside the container lies on a writable mount (the deepest mount wins)."""
    mounts = [(target, effective(options, "ro", "rw") != "ro") for target, options in run.tmpfs.items()]
    mounts += [(target, effective(options, "ro", "rw") != "ro") for _, target, options in run.volumes]
    mounts += [("/dev/shm", True)] if run.value("shm-size") else []
    deepest = None
    for target, rw in mounts:
        if PurePosixPath(path) == PurePosixPath(target) or PurePosixPath(target) in PurePosixPath(path).parents:
            if deepest is None or len(target) > len(deepest[0]):
                deepest = (target, rw)
    return bool(deepest and deepest[1])


def test_the_committed_ec2_stacks_cover_every_runtime():
    assert RUNTIMES_COVERED == set(runtimes.PORTS)


@pytest.mark.parametrize("stack, model", EC2_MODELS)
def test_every_container_runs_as_the_eks_uid_read_only_without_capabilities(stack, model, tmp_path):
    runs = all_docker_runs(tmp_path, plan_for(model, stack=stack))
    assert len(runs) == 2  # the server and the hub download
    for where, run in runs:
        uid, _, gid = run.value("user").partition(":")
        assert (int(uid), int(gid)) == (model_service.RUN_AS, model_service.RUN_AS), where
        assert int(uid) >= 10000 and run.values("user") == [run.value("user")], where
        assert run.has("read-only"), where
        assert run.values("cap-drop") == ["ALL"] and not run.values("cap-add"), where
        assert any(re.fullmatch(r"no-new-privileges(?:[:=]true)?", opt) for opt in run.values("security-opt")), where
        assert not run.has("privileged") and not run.values("device"), where
        for namespace in ("network", "net", "ipc", "pid", "uts", "userns", "cgroupns"):
            assert "host" not in run.values(namespace), (where, namespace)
        # /tmp is the one tmpfs: bounded, writable, never setuid or device nodes.
        options = ["noexec", "nosuid", "nodev", *run.tmpfs["/tmp"]]  # Docker's defaults first
        assert effective(options, "ro", "rw") != "ro" and effective(options, "suid", "nosuid") == "nosuid", where
        assert effective(options, "dev", "nodev") == "nodev", where
        assert any(re.fullmatch(r"size=\d+[kmg]", o) for o in options), where
        # Docker's default for --tmpfs is noexec; Triton and the CUDA JIT load what they build.
        assert effective(options, "exec", "noexec") == "exec", where
        assert writable(run, run.env["HOME"]), where


@pytest.mark.parametrize("stack, model", EC2_MODELS)
def test_commands_run_inside_the_server_run_as_its_uid_too(stack, model):
    # docker exec would inherit the container's user; the scripts say it, so a change to the
    # run line cannot leave an exec as root.
    config = cloud_config(plan_for(model, stack=stack))
    execs = [match for entry in config["write_files"]
             for match in re.findall(r"\bdocker\s+exec\s+(\S+)\s+(\S+)", hp.file_content(entry))]
    assert len(execs) == (1 if plan_for(model, stack=stack).launch.runtime == "ollama" else 0)
    for flag, user in execs:
        assert (flag, user) == ("-u", '"$RUN_AS"') and env_file(config)["RUN_AS"] == sandbox.user_spec()


@pytest.mark.parametrize("stack, model", EC2_MODELS)
def test_the_server_env_points_every_cache_at_a_writable_path(stack, model):
    plan = plan_for(model, stack=stack)
    ((_, server),) = [(w, r) for w, r in unit_docker_runs(cloud_config(plan)) if "deepseek-runtime" in w]
    env = server.env
    for name in MUST_BE_WRITABLE[plan.launch.runtime]:
        path = resolved(name, env)
        assert path, f"{name} is not set and has no default a read-only root could hold"
        assert writable(server, path), f"{name} resolves to {path}, not on a writable mount"
    disk = {target for _, target, options in server.volumes if "ro" not in options}
    for name in PERSISTENT[plan.launch.runtime]:
        path = PurePosixPath(resolved(name, env))
        assert any(path == PurePosixPath(t) or PurePosixPath(t) in path.parents for t in disk), (name, path)
    # And nothing the server only reads is writable.
    mounts = {target: options for _, target, options in server.volumes}
    assert "ro" in mounts[plan.launch.model_path]
    if plan.launch.config_files:
        assert "ro" in mounts[runtimes.RUNTIME_CONFIG_DIR]
    assert not writable(server, plan.launch.model_path) and not writable(server, "/etc")


@pytest.mark.parametrize("stack, model", EC2_MODELS)
def test_host_directories_the_server_writes_are_made_and_owned_by_its_uid_before_it_starts(stack, model):
    plan = plan_for(model, stack=stack)
    config = cloud_config(plan)
    ((_, server),) = [(w, r) for w, r in unit_docker_runs(config) if "deepseek-runtime" in w]
    pre = [shlex.split(line.lstrip("-")) for line in unit(config, "deepseek-runtime.service")["ExecStartPre"]]
    owned = {}
    for argv in pre:
        if argv[0] == "/usr/bin/install" and "-d" in argv:
            owned[argv[-1]] = (argv[argv.index("-o") + 1], argv[argv.index("-g") + 1], argv[argv.index("-m") + 1])
    rw_sources = [source for source, _, options in server.volumes if "ro" not in options]
    assert rw_sources, "the server writes its caches or model store to a host directory"
    for source in rw_sources:
        # On the cache volume, never the host's root filesystem.
        assert source.startswith(hp.CACHE_MOUNT + "/"), source
        assert owned.get(source) == (str(sandbox.RUN_AS_UID), str(sandbox.RUN_AS_GID), "0700"), source
    if plan.launch.runtime == "ollama":
        assert f"{hp.CACHE_MOUNT}/ollama" in rw_sources


def test_weights_are_handed_to_the_uid_after_verification_and_on_every_later_start(tmp_path):
    plan = _s3_plan(tmp_path, FILES)
    first = _run_fetch(tmp_path, plan)
    assert first.returncode == 0, first.stderr
    log = (tmp_path / "chown.log").read_text().splitlines()
    assert log == [f"-R {sandbox.user_spec()} ."]  # inside the verified staging dir, before the move
    again = _run_fetch(tmp_path, plan)
    assert "already verified" in again.stdout
    final = tmp_path / "models" / plan.model_name
    assert (tmp_path / "chown.log").read_text().splitlines()[1:] == [f"-R {sandbox.user_spec()} {final}"]


def test_the_hub_download_writes_only_its_target_and_is_verified_before_use(tmp_path):
    plan = plan_for("r1-qwen-7b")
    runs, chowns, result = fetch_script_docker_runs(tmp_path, plan)
    assert result.returncode == 0, result.stderr
    (run,) = runs
    # The target directory is the container UID's before the download writes into it.
    staging = f"{tmp_path}/models/{plan.model_name}.partial"
    assert chowns[0] == f"{sandbox.user_spec()} {staging}"
    assert [(s, t) for s, t, _ in run.volumes] == [(staging, "/out")]
    assert run.env["HF_HOME"].startswith("/out/") and run.env["HOME"] == "/tmp"
    assert run.values("entrypoint") == ["python3"] and run.image == plan.launch.image
    assert "snapshot_download" in run.command[1]
    assert (tmp_path / "models" / plan.model_name / ".verified").exists()
    assert not (tmp_path / "models" / plan.model_name / ".cache").exists()


def test_the_uid_is_the_one_the_eks_pods_and_the_tgi_image_use():
    assert sandbox.RUN_AS_UID == model_service.RUN_AS >= 10000
    assert model_service.container_security_context()["runAsUser"] == sandbox.RUN_AS_UID
    dockerfile = (ROOT / "images/tgi-nonroot/Dockerfile").read_text()
    assert f"USER {sandbox.RUN_AS_UID}:{sandbox.RUN_AS_GID}" in dockerfile
    assert f"--uid {sandbox.RUN_AS_UID}" in dockerfile


def test_shared_memory_is_sized_for_tensor_parallel_shards():
    single = plan_for("r1-qwen-7b")
    ((_, server),) = [(w, r) for w, r in unit_docker_runs(cloud_config(single)) if "deepseek-runtime" in w]
    assert server.value("shm-size") == "4g" and not server.values("ipc")
    import dataclasses
    sharded = dataclasses.replace(single, launch=dataclasses.replace(
        single.launch, capacity=dataclasses.replace(single.launch.capacity, tensor_parallel_size=4)))
    assert hp.docker_run_argv(sharded)[hp.docker_run_argv(sharded).index("--shm-size") + 1] == "16g"


# --- TGI: a non-root build, or a clear refusal ------------------------------------------------

def test_the_catalog_says_its_tgi_image_cannot_run_as_non_root():
    assert catalog.get_runtime_image("tgi").non_root_problem
    assert catalog.get_runtime_image("vllm").non_root_problem is None
    assert catalog.get_runtime_image("ollama").non_root_problem is None


def test_a_tgi_model_without_a_non_root_image_is_refused_with_the_fix():
    raw = inventory_of("ec2-runtimes")
    del raw["models"][1]["image"]
    inventory = parse_inventory(raw, stack="ec2-runtimes", secret_keys=set())
    with pytest.raises(runtimes.LaunchError, match=r"cannot run as the non-root UID.*images/tgi-nonroot"):
        runtimes.render_for_inventory(inventory, inventory.models[1])


@pytest.mark.parametrize("image, refused", [
    ("ghcr.io/huggingface/text-generation-inference:3.3.5", True),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/ghcr/huggingface/text-generation-inference:3.1.0", True),
    ("ghcr.io/huggingface/text-generation-inference:latest", True),
    ("ghcr.io/huggingface/text-generation-inference:3.0.2", False),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/tgi-nonroot:3.3.5", False),
])
def test_an_upstream_tgi_image_is_refused_by_the_inventory(image, refused):
    raw = inventory_of("ec2-runtimes")
    raw["models"][1]["image"] = image + "@sha256:" + "ab" * 32
    if not refused:
        parse_inventory(raw, stack="ec2-runtimes", secret_keys=set())
        return
    with pytest.raises(InventoryError) as error:
        parse_inventory(raw, stack="ec2-runtimes", secret_keys=set())
    message = str(error.value)
    assert message.count("stacks/Pulumi.ec2-runtimes.yaml") == 1
    assert "models[1].image" in message and "non-root" in message and "images/tgi-nonroot" in message


def test_the_parser_refuses_what_docker_would():
    for argv in (["docker", "run", "--cap_drop", "ALL", "img"], ["docker", "run", "--read-only=true", "img"],
                 ["docker", "run", "--user"], ["docker", "ps"]):
        with pytest.raises(DockerCliError):
            parse_run(argv)
    run = parse_run(["/usr/bin/docker", "run", "-u", "1:2", "--rm", "img:1", "--user", "0", "-p", "1"])
    # Words after the image belong to the container, as the CLI stops parsing there.
    assert run.value("user") == "1:2" and run.command == ["--user", "0", "-p", "1"]
