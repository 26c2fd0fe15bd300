"""What runs where: pod specs inside Kubernetes objects, model servers inside containers
and EC2 user data, and the flags and environment they are started with.

Model servers are recognised by what they are (image repository, or the command that
starts them), never by resource names, so the rules judge programs this project did not
write: a `Deployment` named "web" that runs `vllm serve` is a model server.
"""
from __future__ import annotations

import base64
import binascii
import email
import gzip
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from ._wire import UNKNOWN, is_unknown

VLLM, TGI, OLLAMA = "vllm", "tgi", "ollama"
RUNTIME_TITLES = {VLLM: "vLLM", TGI: "TGI", OLLAMA: "Ollama"}

# Kubernetes kinds whose pod templates are well known; any other kubernetes:* kind is
# searched for embedded pod specs too (CRDs such as LeaderWorkerSet, Argo Rollouts).
POD_TEMPLATE = "kubernetes:core/v1:PodTemplate"
POD_TEMPLATE_TYPES = (
    "kubernetes:core/v1:Pod",
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:apps/v1:ReplicaSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:batch/v1:CronJob",
    "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet",
    "kubernetes:*",
)

_IMAGE_PATTERNS = (
    # vllm/vllm-openai and its hardware builds; not look-alikes such as a vllm-router.
    (VLLM, re.compile(r"(^|/)vllm(-openai)?(-cpu|-tpu|-neuron|-rocm|-xpu)?$")),
    (TGI, re.compile(r"(^|/)text-generation-inference$")),
    (OLLAMA, re.compile(r"(^|/)ollama$")),
)
_COMMAND_PATTERNS = (
    (VLLM, re.compile(r"(^|[\s/\"'])vllm\s+serve\b|vllm\.entrypoints\.(openai\.)?api_server")),
    (TGI, re.compile(r"(^|[\s/\"'])text-generation-launcher\b")),
    (OLLAMA, re.compile(r"(^|[\s/\"'])ollama\s+serve\b")),
)

# A rebuilt or mirrored image (a private registry's "tgi-nonroot") and a bare flag list
# still name the server by flags only it takes, or by its environment variables.
_FLAG_SIGNATURES = (
    (TGI, re.compile(r"(^|\s)--(max-batch-prefill-tokens|max-total-tokens|max-input-tokens|"
                     r"max-input-length|max-batch-total-tokens|max-concurrent-requests)(\s|=|$)")),
    (VLLM, re.compile(r"(^|\s)--(max-num-seqs|max-num-batched-tokens|gpu-memory-utilization|"
                      r"max-model-len|served-model-name)(\s|=|$)")),
)
_OLLAMA_ENV = re.compile(r"\bOLLAMA_(HOST|NUM_PARALLEL|MAX_QUEUE|KEEP_ALIVE|MODELS)\b")


# ---- Kubernetes pod specs ---------------------------------------------------------------

@dataclass
class PodSpec:
    path: str            # property path of the pod spec, e.g. "spec.template.spec"
    spec: Any            # dict, or the unknown sentinel
    labels: Any = None   # pod template labels when known (for PDB matching)


def pod_specs(resource_type: str, props: dict) -> list[PodSpec]:
    """Every pod spec a Kubernetes object carries (Deployment template, CronJob job
    template, both LeaderWorkerSet templates, a Pod's own spec, ...)."""
    if not resource_type.startswith("kubernetes:"):
        return []
    if resource_type == POD_TEMPLATE:
        # A PodTemplate carries its pod at the top level: {template: {metadata, spec}}.
        template = props.get("template")
        if is_unknown(template):
            return [PodSpec("template", UNKNOWN)]
        found: list[PodSpec] = []
        metadata = template.get("metadata") if isinstance(template, dict) else None
        _find_pod_specs(template, "template", metadata if isinstance(metadata, dict) else None, found)
        return found
    spec = props.get("spec")
    if is_unknown(spec):
        # Only kinds known to carry pods can be said to hide one behind an unknown spec.
        return [PodSpec("spec", UNKNOWN)] if resource_type in POD_TEMPLATE_TYPES else []
    found: list[PodSpec] = []
    metadata = props.get("metadata")
    _find_pod_specs(spec, "spec", metadata if isinstance(metadata, dict) else None, found)
    return found


def _find_pod_specs(node: Any, path: str, metadata: Optional[dict], found: list[PodSpec]) -> None:
    if not isinstance(node, dict):
        return
    if "containers" in node:
        found.append(PodSpec(path, node, metadata.get("labels") if metadata else None))
        return
    for key, child in node.items():
        child_path = f"{path}.{key}"
        if isinstance(child, dict):
            # A pod template is {metadata, spec}: its labels belong to the spec below it.
            own = child.get("metadata")
            child_metadata = own if isinstance(own, dict) else (metadata if key == "spec" else None)
            _find_pod_specs(child, child_path, child_metadata, found)
        elif is_unknown(child) and key == "spec" and ("metadata" in node or path.lower().endswith("template")):
            # A template whose spec is computed may hide anything: report it as unreadable.
            found.append(PodSpec(child_path, UNKNOWN))


def containers(pod: PodSpec, include_init: bool = True) -> Iterator[tuple[str, Any]]:
    """(path, container) pairs; a container list that is unknown yields one unknown."""
    if not isinstance(pod.spec, dict):
        return
    keys = ("containers", "initContainers") if include_init else ("containers",)
    for key in keys:
        items = pod.spec.get(key)
        if is_unknown(items):
            yield f"{pod.path}.{key}", UNKNOWN
            continue
        for index, container in enumerate(items or []):
            yield f"{pod.path}.{key}[{index}]", container


# ---- model servers ----------------------------------------------------------------------

SECRET_REF = object()  # an env var whose value comes from valueFrom (a reference, not a literal)


@dataclass
class Serving:
    """One model server process and how it is started."""

    runtime: str
    where: str                      # property path, for messages
    flags: dict[str, list[Any]] = field(default_factory=dict)   # "--max-model-len" -> values
    env: dict[str, Any] = field(default_factory=dict)           # literal, SECRET_REF or UNKNOWN
    # Why absence cannot be proven, as (path, why) pairs: some arguments/env are unknown,
    # or env comes from a ConfigMap/Secret (envFrom) a resource rule cannot read.
    opaque: list[tuple[str, str]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return RUNTIME_TITLES[self.runtime]

    def has_flag(self, *names: str) -> bool:
        return any(_flag_key(n) in self.flags for n in names)

    def flag_values(self, *names: str) -> list[Any]:
        values: list[Any] = []
        for name in names:
            values.extend(self.flags.get(_flag_key(name), []))
        return values

    def setting(self, flag: Optional[str], env: Optional[str]) -> tuple[bool, Any]:
        """Whether a setting is given as a flag or env var, and its value."""
        if flag and self.has_flag(flag):
            values = self.flag_values(flag)
            return True, values[-1] if values else None
        if env and env in self.env:
            return True, self.env[env]
        return False, None


def _flag_key(flag: str) -> str:
    # vLLM accepts --max_model_len as well as --max-model-len.
    return flag.split("=", 1)[0].replace("_", "-").lower()


def runtime_of_image(image: Any) -> Optional[str]:
    if not isinstance(image, str) or is_unknown(image):
        return None
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    repository = repository.lower()
    for runtime, pattern in _IMAGE_PATTERNS:
        if pattern.search(repository):
            return runtime
    return None


def runtimes_in_text(text: str) -> list[str]:
    found = []
    for runtime, pattern in _COMMAND_PATTERNS:
        if pattern.search(text):
            found.append(runtime)
    for token in re.findall(r"[\w./:@-]+", text):
        runtime = runtime_of_image(token)
        if runtime and runtime not in found and ("/" in token or ":" in token):
            found.append(runtime)
    if not found:
        normalised = re.sub(r"--([a-z0-9]+(?:_[a-z0-9]+)+)", lambda m: "--" + m.group(1).replace("_", "-"), text)
        found = [runtime for runtime, pattern in _FLAG_SIGNATURES if pattern.search(normalised)][:1]
        if not found and _OLLAMA_ENV.search(text):
            found = [OLLAMA]
    return found


def tokens_of(items: list[Any]) -> tuple[list[str], bool]:
    """Whitespace tokens of command/args (a `sh -c "..."` script is split too), and
    whether any element was unknown."""
    tokens: list[str] = []
    saw_unknown = False
    for item in items:
        if is_unknown(item):
            saw_unknown = True
            tokens.append(UNKNOWN)
            continue
        if not isinstance(item, str):
            item = str(item)
        for token in item.split():
            tokens.append(token.strip("\"'").rstrip(";\\"))
    return tokens, saw_unknown


def parse_flags(tokens: list[str]) -> dict[str, list[Any]]:
    flags: dict[str, list[Any]] = {}
    for index, token in enumerate(tokens):
        if not token.startswith("--") or len(token) <= 2:
            continue
        key = _flag_key(token)
        if "=" in token:
            value: Any = token.split("=", 1)[1]
        elif index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
            value = tokens[index + 1]
        else:
            value = None
        flags.setdefault(key, []).append(value)
    return flags


# A multi-node vLLM replica's workers (LeaderWorkerSet workerTemplate) run the vLLM image
# but only join the leader's Ray cluster: `ray start --address ...`, or vLLM's helper
# `multi-node-serving.sh worker --ray_address=...`. They serve no HTTP, so request limits
# and probes belong to the leader that does.
_RAY_WORKER = re.compile(r"(^|\s)ray\s+start\b(?=.*--address)(?!.*--head)|multi-node-serving\.sh\s+worker\b")
_SERVES = re.compile(_COMMAND_PATTERNS[0][1].pattern + "|" + _COMMAND_PATTERNS[1][1].pattern + "|"
                     + _COMMAND_PATTERNS[2][1].pattern)


def is_ray_worker(container: dict, tokens: list[str], saw_unknown: bool) -> bool:
    """Only a fully known command that joins a Ray cluster, starts no server, and exposes
    no port; anything unknown stays a model server (fail closed)."""
    if saw_unknown or container.get("ports"):
        return False
    text = " ".join(tokens)
    return bool(_RAY_WORKER.search(text)) and not _SERVES.search(text)


def container_serving(path: str, container: Any) -> Optional[Serving]:
    """The model server a container runs, if it runs one."""
    if not isinstance(container, dict):
        return None
    command = container.get("command")
    args = container.get("args")
    items = ([command] if is_unknown(command) else list(command or [])) + \
            ([args] if is_unknown(args) else list(args or []))
    tokens, saw_unknown = tokens_of(items)
    if is_ray_worker(container, tokens, saw_unknown):
        return None
    runtime = runtime_of_image(container.get("image"))
    if runtime is None:
        env_names = " ".join(e.get("name", "") for e in container.get("env") or []
                             if isinstance(e, dict) and isinstance(e.get("name"), str)) \
            if isinstance(container.get("env"), list) else ""
        text = " ".join(t for t in tokens if not is_unknown(t)) + " " + env_names
        found = runtimes_in_text(text)
        runtime = found[0] if found else None
    if runtime is None:
        return None
    env: dict[str, Any] = {}
    env_list = container.get("env")
    opaque: list[tuple[str, str]] = []
    if is_unknown(env_list):
        opaque.append((f"{path}.env", "is unknown during preview"))
    for entry in env_list if isinstance(env_list, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if entry.get("valueFrom") is not None:
            env[entry["name"]] = SECRET_REF
        else:
            env[entry["name"]] = entry.get("value")
    if saw_unknown:
        opaque.append((f"{path}.command/args", "is unknown during preview"))
    if container.get("envFrom"):
        opaque.append((f"{path}.envFrom", "loads variables from a ConfigMap or Secret that a "
                       "resource policy cannot read (set limits on the container to make them checkable)"))
    return Serving(runtime, path, parse_flags(tokens), env, opaque)


def kubernetes_servings(resource_type: str, props: dict) -> list[tuple[PodSpec, Serving]]:
    result = []
    for pod in pod_specs(resource_type, props):
        for path, container in containers(pod, include_init=False):
            serving = container_serving(path, container)
            if serving is not None:
                result.append((pod, serving))
    return result


# ---- EC2 user data ----------------------------------------------------------------------

USER_DATA_TYPES = (
    "aws:ec2/instance:Instance",
    "aws:ec2/launchTemplate:LaunchTemplate",
)


@dataclass
class UserData:
    path: str
    text: Optional[str]   # decoded text; None when unknown
    unknown: bool = False


def user_data_of(resource_type: str, props: dict) -> list[UserData]:
    """The decoded user data of an instance or launch template.

    Launch templates take base64; instances take plain text (`userData`) or base64
    (`userDataBase64`). cloud-init also accepts gzip and MIME multipart, so both are
    unpacked: a flag hidden in a gzipped part still starts the server.
    """
    found: list[UserData] = []
    if resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        candidates = (("userData", True),)
    elif resource_type == "aws:ec2/instance:Instance":
        candidates = (("userData", False), ("userDataBase64", True))
    else:
        return found
    for key, is_base64 in candidates:
        value = props.get(key)
        if value is None:
            continue
        if is_unknown(value):
            found.append(UserData(key, None, unknown=True))
            continue
        found.append(UserData(key, decode_user_data(str(value), is_base64)))
    return found


def decode_user_data(value: str, is_base64: bool) -> str:
    data: bytes = value.encode()
    if is_base64:
        try:
            data = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            data = value.encode()
    data = _gunzip(data)
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().lower().startswith(("content-type: multipart", "mime-version")):
        text = _mime_text(text)
    return _with_encoded_files(text)


# cloud-init decodes these `write_files` encodings before writing the file
# (https://cloudinit.readthedocs.io/en/latest/reference/yaml_examples/write_files.html):
# a flag or secret in an encoded file is as real as one in plain text.
_B64_ENCODINGS = {"b64", "base64"}
_GZ_B64_ENCODINGS = {"gz+b64", "gzip+b64", "gz+base64", "gzip+base64"}
_GZ_ENCODINGS = {"gz", "gzip"}


def _with_encoded_files(text: str) -> str:
    """The text, followed by the decoded content of every encoded `write_files` entry of each
    cloud-config document in it."""
    decoded = []
    for document in _cloud_configs(text):
        files = document.get("write_files") if isinstance(document, dict) else None
        for entry in files if isinstance(files, list) else []:
            if not isinstance(entry, dict):
                continue
            encoding = str(entry.get("encoding", "")).strip().lower()
            content = entry.get("content")
            if encoding and isinstance(content, (str, bytes)):
                decoded.append(_decode_file(content if isinstance(content, bytes) else content.encode(),
                                            encoding))
    return "\n".join([text, *decoded]) if decoded else text


def _cloud_configs(text: str) -> list:
    import yaml  # ships with the Pulumi SDK the pack runs on

    documents = []
    for chunk in text.split("\n#cloud-config")[1:] if not text.startswith("#cloud-config") else [text]:
        try:
            documents.append(yaml.safe_load(chunk if chunk.startswith("#cloud-config") else "#cloud-config" + chunk))
        except yaml.YAMLError:
            continue
    return documents


def _decode_file(content: bytes, encoding: str) -> str:
    data = content
    try:
        if encoding in _B64_ENCODINGS or encoding in _GZ_B64_ENCODINGS:
            data = base64.b64decode(content, validate=False)
        if encoding in _GZ_B64_ENCODINGS or encoding in _GZ_ENCODINGS:
            data = gzip.decompress(data)
    except (binascii.Error, ValueError, OSError, EOFError):
        return content.decode("utf-8", errors="replace")
    return data.decode("utf-8", errors="replace")


def _gunzip(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except OSError:
            return data
    return data


def _mime_text(text: str) -> str:
    message = email.message_from_string(text)
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        parts.append(_gunzip(payload).decode("utf-8", errors="replace"))
    return "\n".join(parts) if parts else text


# NAME=value anywhere a script can set it (export, docker -e, systemd Environment=...).
# Zero-width so that "Environment=HF_TOKEN=x" yields HF_TOKEN too.
_ENV_ASSIGNMENT = re.compile(
    r"""(?<![\w-])(?=([A-Za-z_][A-Za-z0-9_]*)=("[^"\n]*"|'[^'\n]*'|[^\s"']*))""")


def user_data_servings(user_data: UserData) -> list[Serving]:
    """Model servers started by a user data script (docker run, systemd units, ...)."""
    if user_data.text is None:
        return []
    runtimes = runtimes_in_text(user_data.text)
    if not runtimes:
        return []
    tokens, _ = tokens_of([user_data.text])
    flags = parse_flags(tokens)
    env = {name: value.strip("\"'") for name, value in _ENV_ASSIGNMENT.findall(user_data.text)}
    return [Serving(runtime, user_data.path, flags, env) for runtime in runtimes]


def env_assignments(text: str) -> list[tuple[str, str]]:
    """NAME=value assignments in a script (export, docker -e, systemd Environment=)."""
    return [(name, value.strip("\"'")) for name, value in _ENV_ASSIGNMENT.findall(text)]
