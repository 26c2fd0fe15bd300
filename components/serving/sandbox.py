"""As whom a runtime container runs, and where it may write on a read-only root filesystem.

Both platforms run every container of a model (the server and its helpers: the weight
download, Ollama's import) as one unprivileged identity with a read-only root filesystem:
EKS through the pod's securityContext (components/eks/model_service.py), EC2 through
`docker run --user/--read-only` (components/ec2/host.py). What differs is only the mount
that makes a path writable (an emptyDir on EKS; a tmpfs or a host directory on EC2), so the
identity and the variables that move each library's caches are decided here, once.
"""
from __future__ import annotations

# The UID and GID of every runtime container. 10001 rather than 1000: UID 1000 is ec2-user
# on Amazon Linux hosts and nodes, and a UID of 10000 or above never matches a host account
# (NSA/CISA Kubernetes Hardening Guide; Checkov CKV_K8S_40). images/tgi-nonroot creates
# the same UID as its default user.
RUN_AS_UID = 10001
RUN_AS_GID = 10001

# HOME is scratch on both platforms (EKS: the /tmp emptyDir; EC2: the /tmp tmpfs): Ollama's
# key pair and whatever a library keeps under ~ land there. USER keeps getpass (torch
# inductor's default cache name) from failing on a UID without a passwd entry; Docker
# would otherwise set HOME=/ for such a UID, which a read-only root cannot hold.
SCRATCH_HOME = "/tmp"
IDENTITY_ENV = {"HOME": SCRATCH_HOME, "USER": "serving"}

# What each runtime's libraries write at run time, and the variable that moves it (its
# default in brackets). Every default lies under HOME or /tmp, so scratch alone is enough
# to start; the variables below move the compile and JIT caches to where a platform keeps
# them (EC2: a directory on the cache volume, so a restarted container does not compile
# again and the caches stay out of RAM), plus HF_HOME, which images set themselves.
#   XDG_CACHE_HOME            [~/.cache]: vLLM's cache root (vllm/envs.py
#                             get_default_cache_root; VLLM_CACHE_ROOT, its torch.compile
#                             artefacts, defaults to $XDG_CACHE_HOME/vllm), torch hub
#   TRITON_CACHE_DIR          [~/.triton/cache]: compiled Triton kernels (dlopen'ed)
#   TORCHINDUCTOR_CACHE_DIR   [/tmp/torchinductor_$USER]: inductor's generated code
#   FLASHINFER_WORKSPACE_BASE [~]: FlashInfer's JIT modules under .cache/flashinfer
#   CUDA_CACHE_PATH           [~/.nv/ComputeCache]: the driver's PTX JIT cache
#   HF_HOME                   [$XDG_CACHE_HOME/huggingface; the upstream TGI image: /data]
# vLLM's config root ($XDG_CONFIG_HOME/vllm: usage stats, off) stays under HOME. Ollama
# writes its models to OLLAMA_MODELS (a mount of its own) and its key pair under HOME.
CACHE_VARIABLES = {
    "vllm": {"XDG_CACHE_HOME": "xdg", "TRITON_CACHE_DIR": "triton", "TORCHINDUCTOR_CACHE_DIR": "inductor",
             "FLASHINFER_WORKSPACE_BASE": "flashinfer", "CUDA_CACHE_PATH": "cuda", "HF_HOME": "hf"},
    "tgi": {"XDG_CACHE_HOME": "xdg", "TRITON_CACHE_DIR": "triton", "TORCHINDUCTOR_CACHE_DIR": "inductor",
            "CUDA_CACHE_PATH": "cuda", "HF_HOME": "hf"},
    "ollama": {},
}


def cache_env(runtime: str, cache_root: str) -> dict[str, str]:
    """Every cache variable of `runtime` pointed under `cache_root` (a writable mount)."""
    return {name: f"{cache_root}/{subdir}" for name, subdir in CACHE_VARIABLES[runtime].items()}


def user_spec() -> str:
    """`uid:gid` as `docker run --user`, `chown` and `install -o/-g` take it."""
    return f"{RUN_AS_UID}:{RUN_AS_GID}"
