"""One model on the EKS platform: namespace, workload, exposure, disruption and scaling rules.

The runtime-specific parts live in one place (`_RUNTIME_POD` and the probe/trigger helpers
below, fed by the shared `RuntimeLaunch`); everything else is written once for all three
runtimes. Pure functions build the Kubernetes specs from plain data, so tests can check
them without the mock engine, and the component only turns them into resources.

Decisions (why, not what):
- No API key: the runtime starts without one and the gateway holds no backend credential
  (docs/BACKEND_AUTH.md). The pod is reachable only from its load balancer's subnets (the
  NetworkPolicy below, over a namespace default deny), and only the weight stager gets the
  Pod Identity credentials.
- Exposure: the shared internal NLB (components/load_balancer.py) with `ip` targets, bound
  to the pods by a TargetGroupBinding. The namespace asks the load balancer controller to
  inject pod readiness gates, so a new pod only counts as Ready once the NLB sees it
  healthy; with maxUnavailable 0 a rollout never removes capacity the NLB still needs.
- NetworkPolicy: NLB `ip` targets see the NLB's private addresses as the source (client IP
  preservation is off on the target group). The NLBs sit in subnets that hold nothing else
  (components/network.py), so the model port admits those subnets' CIDRs and not the VPC,
  where other pods and hosts could reach the runtime's unkeyed admin routes; the security
  group rule below narrows it further at the ENI level to the NLB's own security group.
  Metrics are admitted from the `monitoring` namespace only.
- Scale to zero and schedules: with `min_replicas: 0` the ScaledObject may take the
  Deployment to zero once no trigger is active for `idle_minutes` (cooldownPeriod). With no
  pod there is no queue metric, so the wake signal is the gateway's own request count
  (KEDA's aws-cloudwatch scaler on AWS/ApiGateway Count per route of the model, through
  the KEDA operator's Pod Identity role): any request activates the ScaledObject and KEDA
  scales to one replica; those triggers' targets are set so high that above one replica
  only the queue drives scaling. The gateway answers the first requests 503 + Retry-After
  while the replica starts (components/gateway/responses.py). A `schedule` adds KEDA's
  cron scaler: at least schedule.min_replicas during business hours.
- Autoscaling: KEDA ScaledObjects querying the in-cluster Prometheus (components/
  k8s_addons.py). vLLM scales on `vllm:num_requests_waiting`, TGI on `tgi_queue_size`
  (requests admitted but not yet in a batch), per replica. Ollama has no /metrics: it
  scales on the DCGM GPU utilisation of its own pods, a saturation signal that does not
  depend on the server at all. KEDA owns the replica count between min and max; the
  Deployment's `spec.replicas` is only the starting point (ignored on later updates).
- Weights: an init container stages them into an emptyDir before the server starts and
  refuses to finish unless they match the pinned manifest (same rules as the EC2 hosts'
  fetch script): the SHA256SUMS file hashes to `weights.manifest_sha256`, every file
  matches it, and no unlisted file is present. A hub repository carries no SHA256SUMS, so
  for `source: hub` the init step writes the canonical one (`sha256sum` lines sorted by
  path, as `find . -type f ! -name SHA256SUMS -printf '%P\\n' | LC_ALL=C sort | xargs -d
  '\\n' sha256sum` prints) and the same pinned hash check decides.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.serving.catalog import InstanceSpec, get_instance
from components.config import Inventory, Model
from components.serving.weights import VERIFY_WEIGHTS_SH, s3_download_command
from components.eks.cluster import GPU_TOLERATION, GpuCluster
from components.eks.network_policy import (DNS_PORTS, KUBE_DNS_LABELS, POD_IDENTITY_AGENT_CIDR,
                                           POD_IDENTITY_AGENT_PORT, PRIVATE_RANGES, collector_egress_rule)
from components.eks.addons import (MONITORING_NAMESPACE, PART_OF_LABEL, PART_OF_VALUE,
                                   ClusterAddons)
from components.load_balancer import HealthCheck, LoadBalancer, LoadBalancerArgs
from components.serving.runtimes import MODELFILE_PARAMETERS, RUNTIME_CONFIG_DIR, RuntimeLaunch, tracing_settings
from components.serving.sandbox import IDENTITY_ENV, RUN_AS_UID
from components.serving.storage import pod_scratch

# aws-cli v2 (Pod Identity credentials need >= 2.15), pinned by the digest several
# independent public deployments record for this tag (code search: "amazon/aws-cli:2.17.0@
# sha256:643507c1..."); confirm with `docker buildx imagetools inspect` before release.
WEIGHTS_STAGING_IMAGE = ("amazon/aws-cli:2.17.0@sha256:"
                         "643507c10ada7964ca6157b3d799f030b90577643da9955d319a77399ed80d73")

# Every container runs as this UID (restricted Pod Security), the one the EC2 hosts use too
# (components/serving/sandbox.py says why 10001). Images must support it: TGI 3.1+ images
# install Python under /root (mode 0700) and fail to start as non-root
# (huggingface/text-generation-inference#3082, fix proposed in #3197), so the catalog's
# TGI image must be one built with a world-readable interpreter (UV_PYTHON_INSTALL_DIR).
RUN_AS = RUN_AS_UID
CONTAINER = "server"
WEIGHTS_STAGER = "stage-weights"
RUNTIME_CONFIG_MAP = "runtime-config"
HF_TOKEN_SECRET = "hf-token"
PORT_NAME = "http"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
# Seconds a terminating pod keeps accepting new connections: the load balancer controller
# deregisters the target when the pod starts terminating, and the NLB takes tens of
# seconds to stop routing to it.
PRESTOP_SLEEP_SECONDS = 60
# KEDA targets. Queue depth per replica: a replica with this many requests waiting is
# saturated (its batch is full); derived from the runtime's concurrency cap so a large
# batch tolerates a proportionally larger queue before adding a GPU replica.
QUEUE_PER_REPLICA_DIVISOR = 16
MIN_QUEUE_PER_REPLICA = 2
# Ollama: average GPU utilisation (percent) of the model's pods above which to add one.
OLLAMA_GPU_UTILIZATION_TARGET = 75
# Share of the node a replica may request: the rest is kubelet reserve and daemonsets.
NODE_MEMORY_SHARE = 0.8
NODE_CPU_SHARE = 0.75
# Why the server has a CPU request but no CPU limit. A limit is a CFS quota: once the
# tokenizer, detokenizer and scheduler threads use it up inside a 100 ms period they are
# paused until the next one, which stalls every GPU step waiting on them (Kubernetes,
# "Resource Management for Pods and Containers": a container at its CPU limit is
# throttled). The GPU node exists for this pod and the request already reserves its share,
# so there is no neighbour to protect. No "=" in it: Checkov splits its annotation there.
CPU_LIMIT_REASON = ("GPU server: a CFS quota throttles the tokenizer and scheduler threads and stalls "
                    "GPU steps; the CPU request reserves its share of a node dedicated to it")
# Where a scanner disagrees with a deliberate choice, the reason in the form the scanner
# reads (Checkov, "Suppressing and Skipping Policies": `checkov.io/skip<n>` annotations
# with `<CHECK_ID>=<reason>`), on the object Checkov judges. tools/checkov_scan.py runs it.
SCANNER_DECISIONS = {"checkov.io/skip1": f"CKV_K8S_11={CPU_LIMIT_REASON}"}
# How fast weights arrive and are hashed (GiB/s, conservative) for rollout deadlines.
STAGING_GIB_PER_SECOND = 0.1
NVME_STAGING_GIB_PER_SECOND = 0.5
STAGING_FIXED_SECONDS = 300

# Egress a model pod needs (everything else is denied by the namespace's default deny):
# cluster DNS and the EKS Pod Identity agent (components/eks/network_policy.py); a hub
# download reaches the internet through the NAT, never PRIVATE_RANGES.
# The Prometheus server's pods (prometheus-community/prometheus chart, selectorLabels in
# templates/_helpers.tpl): the metrics scraper is admitted by these, not by its namespace.
PROMETHEUS_SERVER_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}
# Pod annotation of the Pod Identity webhook (aws/amazon-eks-pod-identity-webhook README):
# the listed containers get no credential variables and no token volume.
SKIP_CREDENTIALS_ANNOTATION = "eks.amazonaws.com/skip-containers"

# Runtime-specific pod parts. The container never overrides the image's ENTRYPOINT:
# RuntimeLaunch.args are written for it (vLLM's is `vllm serve`; TGI's is a script that
# activates its Python environment before exec'ing text-generation-launcher, so calling
# the launcher directly would skip that; Ollama's is the ollama binary). `python` is the
# interpreter probes and the hub download may use inside the runtime image.
_RUNTIME_POD = {
    "vllm": {"python": "python3"},
    "tgi": {"python": "python3"},
    "ollama": {"python": None},
}


class ModelServiceError(ValueError):
    """A model that cannot be placed on its pool; the message says what to change."""


@dataclass(frozen=True)
class PodResources:
    gpus: int
    memory_gib: int
    cpu: int
    shm_gib: Optional[int]
    weights_gib: int
    # Ollama keeps a second copy of the GGUF in its own store.
    store_gib: Optional[int]
    tmp_gib: int


def pod_resources(launch: RuntimeLaunch, instance: InstanceSpec) -> PodResources:
    """GPUs per replica are the tensor-parallel size; host memory and CPU follow the share
    of the node's GPUs a replica takes, minus what the node keeps for itself."""
    tp = launch.capacity.gpus_per_node if launch.capacity else 1
    gpus = 1 if launch.runtime == "ollama" else tp
    if gpus > instance.gpu_count:
        raise ModelServiceError(
            f"{launch.served_model_name}: {gpus} GPUs per replica (tensor parallel) but "
            f"{instance.name} has {instance.gpu_count}; lower tensor_parallel or use a pool "
            f"with a larger instance type")
    share = gpus / instance.gpu_count
    memory = int(instance.memory_gib * share * NODE_MEMORY_SHARE)
    cpu = max(1, int(instance.vcpus * share * NODE_CPU_SHARE))
    # Shard workers exchange activations through /dev/shm; it is memory, so it is carved
    # out of the pod's limit: a quarter of it, at most 32 GiB.
    shm = min(32, max(8, memory // 4)) if tp > 1 else None
    scratch = pod_scratch(launch.weights_gib, launch.runtime)
    return PodResources(gpus=gpus, memory_gib=memory, cpu=cpu, shm_gib=shm, weights_gib=scratch.weights_gib,
                        store_gib=scratch.store_gib, tmp_gib=scratch.tmp_gib)


def staging_seconds(launch: RuntimeLaunch, local_storage: str = "ebs") -> int:
    """Seconds to download and verify the weights before the server starts. On the instance
    store (NVMe RAID0) the parallel download and hashing run about five times faster than
    into a gp3 root volume capped at 500 MB/s; DSRI measured about 20 minutes from start to
    serving for DeepSeek-R1 671B once staging was optimised, against hours before
    (https://dsri.org/blog/testing-deepseek-r1)."""
    rate = NVME_STAGING_GIB_PER_SECOND if local_storage == "instance_store" else STAGING_GIB_PER_SECOND
    return STAGING_FIXED_SECONDS + int(launch.weights_gib / rate)


def selector_labels(model: Model) -> dict[str, str]:
    # Immutable once created (Deployment selector): keep it to the stable identity.
    return {"app.kubernetes.io/name": model.name, "app.kubernetes.io/component": "model-server"}


def pod_labels(model: Model) -> dict[str, str]:
    return {**selector_labels(model), PART_OF_LABEL: PART_OF_VALUE,
            "deepseek-serving/runtime": model.runtime}


def namespace_labels(kubernetes_version: str) -> dict[str, str]:
    version = f"v{kubernetes_version}"
    return {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": version,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": version,
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": version,
        # The load balancer controller adds a readiness gate to every pod here: Ready
        # then also means "healthy in the NLB target group".
        "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
        PART_OF_LABEL: PART_OF_VALUE,
    }


# --- probes ---------------------------------------------------------------------------

def _readiness_exec(launch: RuntimeLaunch) -> list[str]:
    """A readiness command proving the model serves, for routes an httpGet cannot check
    (an API key header, or a body that must name the model): the key is read from the
    environment inside the container, never written into the pod spec."""
    name = launch.readiness_body_contains or launch.served_model_name
    if launch.runtime == "ollama":
        # The image has no curl or python; `ollama show` asks the running server and fails
        # unless the model was created in its store.
        return ["ollama", "show", name]
    script = (
        "import sys, urllib.request\n"
        f"request = urllib.request.Request('http://127.0.0.1:{launch.port}{launch.readiness_path}')\n"
        "body = urllib.request.urlopen(request, timeout=8).read().decode()\n"
        f"sys.exit(0 if {name!r} in body else 1)\n"
    )
    return [_RUNTIME_POD[launch.runtime]["python"], "-c", script]


# Seconds one warm-up attempt may take: the first generation after load compiles and
# allocates lazily, and a probe that gives up early only retries it.
WARMUP_TIMEOUT_SECONDS = 60


def warmup_exec(launch: RuntimeLaunch) -> list[str]:
    """The startup probe: the model is listed and answers one real generation (the same
    `warmup_request` the EC2 hosts send before their health gate opens, components/ec2/host.py).

    Kubernetes runs no readiness or liveness probe until the startup probe succeeds, and
    runs it again after every container restart, so "ready" always follows a generation by
    this very process. The key is read from the container's environment, never the spec.
    """
    request = launch.warmup_request
    if launch.runtime == "ollama":
        # No curl or python in the image: bash's /dev/tcp speaks enough HTTP/1.0 for one call,
        # and the generation fails (404) unless the model was created in the store.
        body = json.dumps(request["json"], separators=(",", ":"))
        script = (
            f"body='{body}'\n"
            f"exec 3<>/dev/tcp/127.0.0.1/{launch.port} || exit 1\n"
            f"printf '{request['method']} {request['path']} HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n"
            "Content-Type: application/json\\r\\nContent-Length: %s\\r\\n\\r\\n%s' "
            '"${#body}" "$body" >&3\n'
            f"IFS= read -r -t {WARMUP_TIMEOUT_SECONDS - 5} status <&3 || exit 1\n"
            "case \"$status\" in 'HTTP/1.'?' 200'*) exit 0 ;; *) echo \"$status\" >&2; exit 1 ;; esac\n"
        )
        return ["/bin/bash", "-c", script]
    key_header = (f"headers['Authorization'] = 'Bearer ' + os.environ['{launch.api_key_env}']\n"
                  if launch.api_key_env else "")
    listed = ""
    if launch.readiness_body_contains:
        listed = (
            f"body = u.urlopen(u.Request(base + {launch.readiness_path!r}, headers=headers), timeout=8)"
            ".read().decode()\n"
            f"if {launch.readiness_body_contains!r} not in body: sys.exit(1)\n")
    script = (
        "import json, os, sys, urllib.request as u\n"
        f"base = 'http://127.0.0.1:{launch.port}'\n"
        "headers = {'Content-Type': 'application/json'}\n"
        + key_header + listed +
        f"data = json.dumps({request['json']!r}).encode()\n"
        f"u.urlopen(u.Request(base + {request['path']!r}, data=data, headers=headers, "
        f"method={request['method']!r}), timeout={WARMUP_TIMEOUT_SECONDS - 5}).read()\n"
    )
    return [_RUNTIME_POD[launch.runtime]["python"], "-c", script]


def probes(launch: RuntimeLaunch) -> dict[str, dict]:
    """startup: within the model-load budget, the model answers one real generation (the
    warm-up); readiness: the model serves; liveness: the process answers, generously, so a
    long generation is never killed."""
    http = lambda path: {"httpGet": {"path": path, "port": PORT_NAME}}  # noqa: E731
    startup_period = 10
    startup = {"exec": {"command": warmup_exec(launch)}, "periodSeconds": startup_period,
               "timeoutSeconds": WARMUP_TIMEOUT_SECONDS,
               "failureThreshold": int(math.ceil(launch.startup_budget_seconds / startup_period))}
    if launch.readiness_requires_api_key or launch.readiness_body_contains:
        readiness_check: dict = {"exec": {"command": _readiness_exec(launch)}}
    else:
        readiness_check = http(launch.readiness_path)
    readiness = {**readiness_check, "periodSeconds": 10, "timeoutSeconds": 10,
                 "failureThreshold": 3, "successThreshold": 1}
    # Liveness never does GPU work and tolerates 2.5 minutes of silence: a busy engine
    # answering slowly is not a hung one.
    liveness = {**http(launch.liveness_path), "periodSeconds": 30, "timeoutSeconds": 10,
                "failureThreshold": 5}
    return {"startupProbe": startup, "readinessProbe": readiness, "livenessProbe": liveness}


def nlb_health_path(launch: RuntimeLaunch) -> str:
    """The NLB cannot send the API key: keyed readiness routes fall back to the liveness
    route (cheap, open); the pod's readiness probe still gates on the real route."""
    return launch.liveness_path if launch.readiness_requires_api_key else launch.readiness_path


# --- weights --------------------------------------------------------------------------

_VERIFY = "\ncd \"$DEST\"\n" + VERIFY_WEIGHTS_SH + 'echo "weights verified against manifest $MANIFEST_SHA256"\n'

_HUB_DOWNLOAD = (
    "import os\n"
    "from huggingface_hub import snapshot_download\n"
    "snapshot_download(repo_id=os.environ['HF_REPO'], revision=os.environ['REVISION'], "
    "local_dir=os.environ['DEST'])\n"
)


def weights_init_container(model: Model, launch: RuntimeLaunch, mounts: list[dict]) -> dict:
    """Stage the weights into the shared volume and verify them before anything serves."""
    env = [{"name": "DEST", "value": launch.model_path},
           {"name": "MANIFEST_SHA256", "value": model.weights.manifest_sha256},
           {"name": "WEIGHTS_SOURCE", "value": model.weights.source},
           {"name": "HOME", "value": "/tmp"}]
    if model.weights.source == "s3":
        script = ("set -eu\n"
                  + s3_download_command('"$S3_URI"', '"$DEST"', resume=True) + _VERIFY)
        env.append({"name": "S3_URI", "value": model.weights.s3_uri})
        image = WEIGHTS_STAGING_IMAGE
    else:
        # The runtime image carries huggingface_hub; the revision is a pinned commit.
        env += [{"name": "HF_REPO", "value": model.hf_repo}, {"name": "REVISION", "value": model.revision},
                {"name": "HF_HOME", "value": "/tmp/hf"}, {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
        if model.hf_token is not None:
            env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": HF_TOKEN_SECRET, "key": "token"}}})
        script = ("set -eu\n"
                  f"{_RUNTIME_POD[launch.runtime]['python']} -c \"$DOWNLOAD\"\n"
                  'rm -rf "$DEST/.cache"\n' + _VERIFY)
        env.append({"name": "DOWNLOAD", "value": _HUB_DOWNLOAD})
        image = launch.image
    return {
        "name": WEIGHTS_STAGER,
        "image": image,
        "command": ["/bin/bash", "-c", script],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    }


def ollama_import_container(launch: RuntimeLaunch, mounts: list[dict]) -> dict:
    """Create the Ollama model from the verified GGUF before the server starts, so the
    model is in the store before readiness (never a postStart pull)."""
    name = launch.served_model_name
    script = (
        "set -eu\n"
        'gguf=$(find "$DEST" -maxdepth 1 -name "*.gguf")\n'
        '[ "$(printf "%s\\n" "$gguf" | grep -c .)" -eq 1 ] || '
        '{ echo "expected exactly one .gguf in $DEST" >&2; exit 1; }\n'
        'printf "FROM %s\\n" "$gguf" > /tmp/Modelfile\n'
        f'cat "{RUNTIME_CONFIG_DIR}/{MODELFILE_PARAMETERS}" >> /tmp/Modelfile\n'
        "export OLLAMA_HOST=127.0.0.1:11434\n"
        "ollama serve & server=$!\n"
        "for i in $(seq 1 60); do ollama list >/dev/null 2>&1 && break; sleep 1; done\n"
        f"ollama create {name} -f /tmp/Modelfile\n"
        'kill "$server"; wait "$server" || true\n'
    )
    env = [{"name": "DEST", "value": launch.model_path}, {"name": "HOME", "value": "/tmp"},
           {"name": "OLLAMA_MODELS", "value": launch.env["OLLAMA_MODELS"]}]
    return {
        "name": "import-model",
        "image": launch.image,
        "command": ["/bin/bash", "-c", script],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}},
    }


# --- pod and workload -----------------------------------------------------------------

def container_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"}}


def server_env(launch: RuntimeLaunch) -> list[dict]:
    env = [{"name": key, "value": value} for key, value in sorted(launch.env.items())]
    # Writable home for caches (compile caches, Ollama's key pair) on a read-only root;
    # USER keeps getpass/torch from failing on a UID without a passwd entry.
    env += [{"name": name, "value": value} for name, value in IDENTITY_ENV.items()]
    return env


def deployment_spec(model: Model, launch: RuntimeLaunch, resources: PodResources, *,
                    node_selector: dict[str, str], service_account: str,
                    pod_annotations: dict[str, Any], local_storage: str = "ebs") -> dict:
    """The Deployment spec (camelCase, as the API and the wire form spell it)."""
    weights_mount = {"name": "weights", "mountPath": launch.model_path}
    tmp_mount = {"name": "tmp", "mountPath": "/tmp"}
    volumes: list[dict] = [
        {"name": "weights", "emptyDir": {"sizeLimit": f"{resources.weights_gib}Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": f"{resources.tmp_gib}Gi"}},
    ]
    server_mounts = [{**weights_mount, "readOnly": True}, tmp_mount]
    init_containers = [weights_init_container(model, launch, [weights_mount, tmp_mount])]
    config_mounts: list[dict] = []
    if launch.config_files:
        # The same files the EC2 hosts write to RUNTIME_CONFIG_DIR (logging config, Modelfile
        # parameters), from the model's ConfigMap; a changed file rolls the pods through the
        # `runtime-config` annotation below.
        volumes.append({"name": "runtime-config", "configMap": {"name": RUNTIME_CONFIG_MAP}})
        config_mounts = [{"name": "runtime-config", "mountPath": RUNTIME_CONFIG_DIR, "readOnly": True}]
        server_mounts += config_mounts
        pod_annotations = {**pod_annotations, "deepseek-serving/runtime-config": runtime_config_hash(launch)}
    if resources.shm_gib:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{resources.shm_gib}Gi"}})
        server_mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if launch.runtime == "ollama":
        store = {"name": "ollama-store", "mountPath": launch.env["OLLAMA_MODELS"]}
        volumes.append({"name": "ollama-store", "emptyDir": {"sizeLimit": f"{resources.store_gib}Gi"}})
        init_containers.append(ollama_import_container(
            launch, [{**weights_mount, "readOnly": True}, store, tmp_mount, *config_mounts]))
        server_mounts.append(store)

    scratch = resources.weights_gib + (resources.store_gib or 0) + resources.tmp_gib
    container = {
        "name": CONTAINER,
        "image": launch.image,
        "args": list(launch.args),
        "ports": [{"name": PORT_NAME, "containerPort": launch.port, "protocol": "TCP"}],
        "env": server_env(launch),
        # No CPU limit, deliberately (Checkov CKV_K8S_11 disagrees; the reason is recorded
        # for it in SCANNER_DECISIONS): see CPU_LIMIT_REASON.
        "resources": {
            "requests": {"cpu": str(resources.cpu), "memory": f"{resources.memory_gib}Gi",
                         "nvidia.com/gpu": str(resources.gpus), "ephemeral-storage": f"{scratch}Gi"},
            "limits": {"memory": f"{resources.memory_gib}Gi", "nvidia.com/gpu": str(resources.gpus),
                       "ephemeral-storage": f"{scratch + 5}Gi"},
        },
        "volumeMounts": server_mounts,
        "securityContext": container_security_context(),
        **probes(launch),
        # New connections keep arriving while the NLB deregisters the target; after the
        # sleep the runtime gets SIGTERM and finishes in-flight streams.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }

    labels = pod_labels(model)
    spread = [
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": selector_labels(model)}}
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    return {
        "replicas": model.min_replicas,
        "revisionHistoryLimit": 5,
        # Weights staging plus model load: a rollout is only stuck after both budgets.
        "progressDeadlineSeconds": staging_seconds(launch, local_storage) + launch.startup_budget_seconds + 300,
        "minReadySeconds": 30,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "selector": {"matchLabels": selector_labels(model)},
        "template": {
            "metadata": {"labels": labels, "annotations": {
                **pod_annotations,
                # Only the weight stager needs the Pod Identity role: the server (which
                # handles untrusted prompts) gets no credential variables or token file.
                SKIP_CREDENTIALS_ANNOTATION: ",".join(
                    c["name"] for c in [*init_containers, container] if c["name"] != WEIGHTS_STAGER)}},
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                # preStop sleep, then the load balancer's deregistration delay for streams.
                "terminationGracePeriodSeconds": PRESTOP_SLEEP_SECONDS + launch.drain_seconds,
                "securityContext": pod_security_context(),
                "nodeSelector": node_selector,
                "tolerations": [GPU_TOLERATION],
                "topologySpreadConstraints": spread,
                "initContainers": init_containers,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


def runtime_config_hash(launch: RuntimeLaunch) -> str:
    """A short digest of the runtime's config files: pods restart when a file changes."""
    return hashlib.sha256(json.dumps(launch.config_files, sort_keys=True).encode()).hexdigest()[:16]


# --- periodic restarts ------------------------------------------------------------------

# kubectl for the scheduled rolling restart: the Kubernetes project's own image (distroless,
# no shell), pinned by the digest the Rancher system-upgrade-controller release config
# records for this tag; confirm with `docker buildx imagetools inspect` before release.
# `rollout restart` is one PATCH of the pod template, which any supported API server takes.
KUBECTL_IMAGE = ("registry.k8s.io/kubectl:v1.31.2@sha256:"
                 "d31de5468fb5c0943358671e3dcf8e4d8281108027efd1f211262d09aedd5519")
RESTARTER = "restarter"
# Restarts start at 03:00 UTC plus a per-model minute, so models do not roll at once.
RESTART_HOUR_UTC = 3


def restart_schedule(model: Model) -> str:
    """The cron schedule that bounds a pod's lifetime to `max_lifetime_days` (plus one rollout)."""
    assert model.max_lifetime_days is not None
    minute = int(hashlib.sha256(model.name.encode()).hexdigest(), 16) % 60
    days = "*" if model.max_lifetime_days == 1 else f"*/{model.max_lifetime_days}"
    return f"{minute} {RESTART_HOUR_UTC} {days} * *"


def restart_role_rules(model: Model) -> list[dict]:
    """What the restart job may do: read and patch this model's Deployment, nothing else
    (`kubectl rollout restart` patches the pod template's restartedAt annotation)."""
    return [{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [model.name],
             "verbs": ["get", "patch"]}]


def restart_cronjob_spec(model: Model, launch: RuntimeLaunch) -> dict:
    """A scheduled rolling restart: the Deployment's own strategy (maxUnavailable 0, a new
    pod warm and in the NLB before an old one stops, each old one draining for the preStop
    sleep plus the deregistration delay) replaces every pod without dropping streams."""
    job_seconds = staging_seconds(launch) + launch.startup_budget_seconds + 600
    container = {
        "name": "rollout-restart",
        "image": KUBECTL_IMAGE,
        "args": ["rollout", "restart", f"deployment/{model.name}", "--namespace", model.name],
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
    return {
        "schedule": restart_schedule(model),
        "timeZone": "Etc/UTC",
        # A restart still rolling is never doubled; one missed by a control-plane outage
        # runs within the hour or waits for the next day.
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": job_seconds,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": {PART_OF_LABEL: PART_OF_VALUE, "app.kubernetes.io/component": RESTARTER}},
                "spec": {
                    "serviceAccountName": RESTARTER,
                    "automountServiceAccountToken": True,
                    "restartPolicy": "Never",
                    "securityContext": pod_security_context(),
                    "containers": [container],
                },
            },
        }},
    }


# --- multi-node replicas (LeaderWorkerSet) ------------------------------------------------

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
# The label the leader's pods carry; the Service (and so the NLB) selects it.
ROLE_LABEL = "role"
# vLLM's helper that starts a Ray head (leader) and blocks until the group has joined, or
# joins a worker to it; shipped in the vllm/vllm-openai image and used by vLLM's own LWS
# example (https://docs.vllm.ai/en/stable/deployment/frameworks/lws.html,
# https://docs.vllm.ai/en/stable/examples/online_serving/multi-node-serving/).
RAY_HELPER = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
# `vllm serve` runs on the leader once Ray has every node; LWS_GROUP_SIZE and
# LWS_LEADER_ADDRESS are injected by the LWS controller into every pod of a group. The
# serve arguments follow as "$@" (bash -c SCRIPT NAME ARGS...), so they stay a list and
# are exactly the single-node arguments, never re-quoted through a shell string.
LEADER_SCRIPT = (f'bash {RAY_HELPER} leader --ray_cluster_size="$LWS_GROUP_SIZE" '
                 '&& exec vllm serve "$@"')
WORKER_SCRIPT = f'exec bash {RAY_HELPER} worker --ray_address="$LWS_LEADER_ADDRESS"'
# NCCL over EFA through libfabric (aws-ofi-nccl), as AWS documents for P5:
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-start-nccl.html
# (FI_PROVIDER=efa, FI_EFA_USE_DEVICE_RDMA=1 for GPUDirect RDMA on p4d/p5), and NCCL's own
# socket bootstrap on the pod interface (https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html).
EFA_ENV = {
    "FI_PROVIDER": "efa",
    "FI_EFA_USE_DEVICE_RDMA": "1",
    "FI_EFA_FORK_SAFE": "1",
    "NCCL_SOCKET_IFNAME": "eth0",
    "GLOO_SOCKET_IFNAME": "eth0",
    "NCCL_DEBUG": "WARN",
}
EFA_RESOURCE = "vpc.amazonaws.com/efa"


def leader_worker_set_spec(model: Model, launch: RuntimeLaunch, resources: PodResources, *,
                           node_selector: dict[str, str], service_account: str,
                           pod_annotations: dict[str, Any], efa_interfaces: int,
                           local_storage: str = "ebs") -> dict:
    """A LeaderWorkerSet: one group per replica, `pipeline_parallel` pods per group (one per
    node). Both templates stage and verify the same weights and carry the same image, GPU,
    EFA and NCCL settings; only the leader serves, so probes, the port and the metrics
    annotations are on the leader and the workers just hold their Ray node.

    `RecreateGroupOnPodRestart`: a Ray worker that restarts cannot rejoin a running vLLM
    engine, so the whole group restarts (LWS API:
    https://lws.sigs.k8s.io/docs/reference/leaderworkerset.v1/)."""
    nodes = launch.capacity.pipeline_parallel if launch.capacity else 1
    templates = {}
    for role in ("leader", "worker"):
        # Built afresh per role (annotations hold Outputs, which cannot be deep-copied).
        template = deployment_spec(model, launch, resources, node_selector=node_selector,
                                   service_account=service_account,
                                   pod_annotations=dict(pod_annotations),
                                   local_storage=local_storage)["template"]
        template["metadata"]["labels"][ROLE_LABEL] = role
        pod = template["spec"]
        container = pod["containers"][0]
        container["env"] = container["env"] + [{"name": k, "value": v} for k, v in EFA_ENV.items()]
        for kind in ("requests", "limits"):
            if efa_interfaces:
                container["resources"][kind][EFA_RESOURCE] = str(efa_interfaces)
        # Pods of a group reach each other on Ray's and NCCL's ports; each sits on its own node.
        pod["topologySpreadConstraints"] = [c for c in pod["topologySpreadConstraints"]
                                            if c["topologyKey"] != "topology.kubernetes.io/zone"]
        if role == "leader":
            container["command"] = ["/bin/bash", "-c", LEADER_SCRIPT]
            container["args"] = ["vllm-serve", *launch.args]
        else:
            container["command"] = ["/bin/bash", "-c", WORKER_SCRIPT]
            container["args"] = []
            container.pop("ports", None)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                container.pop(probe, None)
            template["metadata"]["annotations"] = {
                k: v for k, v in template["metadata"]["annotations"].items()
                if not k.startswith("prometheus.io/")}
        templates[role] = template
    return {
        "replicas": model.min_replicas,
        # Workers start with the leader: the leader cannot be Ready before they join.
        "startupPolicy": "LeaderCreated",
        "rolloutStrategy": {"type": "RollingUpdate",
                            "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1}},
        "leaderWorkerTemplate": {
            "size": nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": templates["leader"],
            "workerTemplate": templates["worker"],
        },
    }


def metrics_annotations(launch: RuntimeLaunch) -> dict[str, str]:
    if not launch.metrics_path:
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(launch.port),
            "prometheus.io/path": launch.metrics_path}


def network_policy_spec(model: Model, launch: RuntimeLaunch, load_balancer_cidrs: Sequence[str],
                        group_peers: bool = False) -> dict:
    """Ingress from the load balancers' own subnets and the metrics scraper only.

    Pods and hosts elsewhere in the VPC must not reach the runtime: its admin routes
    (/metrics, /tokenize, ...) have no key, and Ollama has no auth at all.
    """
    if not load_balancer_cidrs:
        raise ValueError(f"model {model.name}: the load balancer's subnet CIDRs are needed "
                         "to admit it, and only it, to the pods")
    port = [{"protocol": "TCP", "port": launch.port}]
    rules = [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in load_balancer_cidrs], "ports": port}]
    if launch.metrics_path:
        # The scraper by its pod labels: a namespace selector alone would admit every pod
        # of the monitoring namespace (Alertmanager included).
        rules.append({"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
            "podSelector": {"matchLabels": PROMETHEUS_SERVER_LABELS}}], "ports": port})
    if group_peers:
        # A multi-node replica's pods talk Ray (GCS, object manager, workers) and NCCL on
        # ports chosen at run time: admit the model's own pods, nothing else.
        rules.append({"from": [{"podSelector": {"matchLabels": selector_labels(model)}}]})
    return {"podSelector": {"matchLabels": selector_labels(model)}, "policyTypes": ["Ingress"],
            "ingress": rules}


def default_deny_spec() -> dict:
    """Nothing in or out for any pod of the namespace unless another policy allows it
    (Kubernetes docs, Network Policies: "Default deny all ingress and all egress traffic")."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def egress_spec(model: Model, s3_cidrs: Sequence[str], otlp_endpoint: Optional[str] = None) -> dict:
    """What a model pod may reach: DNS, the Pod Identity agent, its weights' source, and the
    trace collector when the runtime exports traces (`otlp_endpoint`).

    NetworkPolicies match addresses, not names. S3 (`source: s3`) is reached through the
    VPC's gateway endpoint at S3's public addresses, which AWS publishes as the managed
    prefix list com.amazonaws.<region>.s3: its CIDRs are read at deploy time, so a range
    AWS adds later is admitted after the next `pulumi up`. A hub download (`source: hub`)
    goes to the internet through the NAT; only the pod's init step needs it, but egress
    policies apply per pod, so the rule admits public addresses on 443 and no private ones.
    """
    rules: list[dict] = [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": KUBE_DNS_LABELS}}], "ports": [dict(p) for p in DNS_PORTS]},
    ]
    https = [{"protocol": "TCP", "port": 443}]
    if model.weights.source == "s3":
        rules.append({"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT_CIDR}}],
                      "ports": [{"protocol": "TCP", "port": POD_IDENTITY_AGENT_PORT}]})
        if not s3_cidrs:
            raise ValueError(f"model {model.name}: the S3 prefix list has no CIDRs to admit")
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in s3_cidrs], "ports": https})
    else:
        rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}],
                      "ports": https})
    if otlp_endpoint:
        rules.append(collector_egress_rule(otlp_endpoint))
    if model.pipeline_parallel > 1:
        # The pods of a multi-node replica reach each other (Ray, NCCL bootstrap) on ports
        # chosen at run time; EFA traffic itself bypasses the kernel network stack.
        rules.append({"to": [{"podSelector": {"matchLabels": selector_labels(model)}}]})
    return {"podSelector": {"matchLabels": selector_labels(model)}, "policyTypes": ["Egress"],
            "egress": rules}


def traces_endpoint(inventory: Inventory, model: Model) -> Optional[str]:
    """The OTLP collector this model's runtime exports to, if any (the runtime's own flags
    come from the same setting: components/serving/runtimes.py tracing_settings)."""
    args, env = tracing_settings(inventory, model)
    return inventory.observability.tracing.otlp_endpoint if (args or env) else None


def scaling_trigger(model: Model, launch: RuntimeLaunch, prometheus_url: str) -> dict:
    """The KEDA trigger for a model: a queue signal where the runtime exports one."""
    namespace = model.name
    if launch.runtime in ("vllm", "tgi"):
        metric = "vllm:num_requests_waiting" if launch.runtime == "vllm" else "tgi_queue_size"
        concurrency = launch.capacity.max_concurrency if launch.capacity else 64
        threshold = max(MIN_QUEUE_PER_REPLICA, concurrency // QUEUE_PER_REPLICA_DIVISOR)
        return {"type": "prometheus", "metricType": "AverageValue", "metadata": {
            "serverAddress": prometheus_url,
            "query": f'sum({metric}{{namespace="{namespace}"}})',
            "threshold": str(threshold)}}
    return {"type": "prometheus", "metricType": "Value", "metadata": {
        "serverAddress": prometheus_url,
        "query": f'avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}"}}[2m]))',
        "threshold": str(OLLAMA_GPU_UTILIZATION_TARGET)}}


# The TriggerAuthentication the gateway-request triggers use (KEDA operator identity).
GATEWAY_METRICS_AUTH = "gateway-metrics"
# A wake trigger's target per replica: unreachable, so it only ever activates (0 -> 1).
WAKE_TARGET = "1000000"


@dataclass(frozen=True)
class RequestMetrics:
    """Where the gateway counts a model's requests: AWS/ApiGateway Count, per route."""

    region: str
    # Per route: {"ApiName", "Stage", "Resource", "Method"} (values may be Outputs).
    dimensions: tuple


def wake_triggers(metrics: RequestMetrics) -> list[dict]:
    """KEDA aws-cloudwatch triggers, one per route: active while the route saw requests in
    the last minute (https://keda.sh/docs/2.17/scalers/aws-cloudwatch/)."""
    triggers = []
    for dims in metrics.dimensions:
        names = list(dims)
        triggers.append({
            "type": "aws-cloudwatch",
            "authenticationRef": {"name": GATEWAY_METRICS_AUTH},
            "metadata": {
                "namespace": "AWS/ApiGateway", "metricName": "Count",
                "dimensionName": ";".join(names),
                "dimensionValue": pulumi.Output.all(*[dims[n] for n in names]).apply(";".join),
                "metricStat": "Sum", "metricStatPeriod": "60", "metricCollectionTime": "180",
                "metricEndTimeOffset": "60", "minMetricValue": "0",
                "targetMetricValue": WAKE_TARGET, "activationTargetMetricValue": "0",
                "awsRegion": metrics.region,
            },
        })
    return triggers


def schedule_trigger(model: Model) -> Optional[dict]:
    """KEDA's cron scaler: business hours keep schedule.min_replicas replicas."""
    schedule = model.schedule
    if schedule is None:
        return None
    return {"type": "cron", "metadata": {
        "timezone": schedule.timezone, "start": schedule.cron(schedule.start),
        "end": schedule.cron(schedule.end), "desiredReplicas": str(schedule.min_replicas)}}


def scaled_object_spec(model: Model, launch: RuntimeLaunch, deployment: str, prometheus_url: str,
                       wake: Optional[RequestMetrics] = None,
                       scale_target: Optional[dict] = None) -> dict:
    """KEDA scales a Deployment's pods, or a LeaderWorkerSet's groups (its scale subresource
    counts groups: https://lws.sigs.k8s.io/docs/concepts/#horizontal-pod-autoscaler)."""
    target = scale_target or {"apiVersion": "apps/v1", "kind": "Deployment"}
    if model.min_replicas == 0 and wake is None:
        raise ModelServiceError(f"model {model.name}: min_replicas 0 needs the gateway's request "
                                "metrics to wake it")
    triggers = [scaling_trigger(model, launch, prometheus_url)]
    triggers += wake_triggers(wake) if model.min_replicas == 0 and wake is not None else []
    cron = schedule_trigger(model)
    if cron is not None:
        triggers.append(cron)
    idle = {"cooldownPeriod": model.idle_minutes * 60} if model.min_replicas == 0 else {}
    return {
        "scaleTargetRef": {**target, "name": deployment},
        "minReplicaCount": model.min_replicas,
        "maxReplicaCount": model.max_replicas,
        **idle,
        "pollingInterval": 15,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            # Add GPUs quickly (a replica takes minutes to load), remove them slowly.
            "scaleUp": {"stabilizationWindowSeconds": 30,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 600,
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
        }}},
        "triggers": triggers,
    }


def weights_read_policy(model: Model, partition: str = "aws") -> Optional[str]:
    """Read-only access to the model's own weights prefix, nothing else."""
    if model.weights.source != "s3":
        return None
    bucket, prefix = model.weights.s3_bucket, model.weights.s3_prefix
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadWeights", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:{partition}:s3:::{bucket}/{prefix}*"},
            {"Sid": "ListWeights", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:{partition}:s3:::{bucket}",
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        ],
    })


# --- component ------------------------------------------------------------------------

def eks_load_balancer_args(inventory: Inventory, model: Model, launch: RuntimeLaunch, *,
                           vpc_id: pulumi.Input[str], subnet_ids: Sequence[pulumi.Input[str]],
                           vpc_cidr: str, subnet_cidrs: Sequence[str] = ()) -> LoadBalancerArgs:
    """The NLB in front of a ModelService: `ip` targets (pod addresses) on the runtime's port,
    health checked on the traffic port (see `nlb_health_path`)."""
    settings = inventory.load_balancer
    return LoadBalancerArgs(
        model_name=model.name, vpc_id=vpc_id, subnet_ids=subnet_ids, vpc_cidr=vpc_cidr,
        subnet_cidrs=tuple(subnet_cidrs), certificate=settings.certificate, target_type="ip",
        target_port=launch.port,
        health_check=HealthCheck(path=nlb_health_path(launch)),
        deregistration_delay_seconds=settings.deregistration_delay_seconds,
        cross_zone=settings.cross_zone,
        unhealthy_draining_seconds=settings.unhealthy_draining_seconds,
        deletion_protection=inventory.environment == "prod")


@dataclass
class ModelServiceArgs:
    inventory: Inventory
    model: Model
    launch: RuntimeLaunch
    cluster: GpuCluster
    addons: ClusterAddons
    load_balancer: LoadBalancer
    partition: str = "aws"
    # What provisions the pool's nodes (Karpenter NodePools); empty with managed node groups.
    capacity: Sequence[pulumi.Resource] = ()


class ModelService(pulumi.ComponentResource):
    """A model's namespace, Deployment, Service, TargetGroupBinding, PDB, NetworkPolicy and
    ScaledObject, bound to its internal NLB."""

    namespace: str
    deployment_name: str
    service_name: str
    runtime: str
    port: int
    target_group_arn: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    load_balancer_arn: pulumi.Output[str]
    load_balancer_arn_suffix: pulumi.Output[str]
    internal_domain: str
    # The PromQL the autoscaler follows, for dashboards and alarms.
    scaling_query: str

    def __init__(self, name: str, args: ModelServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:model_service:ModelService", name, None, opts)
        model, launch, cluster = args.model, args.launch, args.cluster
        pool = cluster.gpu_pools.get(model.node_pool or "")
        if pool is None:
            raise ModelServiceError(f"model {model.name}: node_pool {model.node_pool!r} is not a GPU pool "
                                    f"of the cluster ({', '.join(sorted(cluster.gpu_pools))})")
        instance = get_instance(pool.instance_type)
        resources = pod_resources(launch, instance)
        multi_node = bool(launch.capacity and launch.capacity.pipeline_parallel > 1)
        self.namespace = model.name
        self.deployment_name = model.name
        self.service_name = model.name
        self.runtime = launch.runtime
        self.port = launch.port
        self.internal_domain = args.load_balancer.internal_domain
        lb = args.load_balancer

        def k8s_opts(*depends_on: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(cluster.k8s_opts(self, depends_on),
                                                pulumi.ResourceOptions(**extra))

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": self.namespace, "labels": namespace_labels(cluster.kubernetes_version)},
            opts=k8s_opts())
        meta = lambda object_name, **extra: {"name": object_name, "namespace": self.namespace,  # noqa: E731
                                             "labels": pod_labels(model), **extra}

        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", metadata=meta(model.name),
            # Model servers never talk to the Kubernetes API.
            automount_service_account_token=False, opts=k8s_opts(namespace))
        workload_deps: list[pulumi.Resource] = [namespace, service_account]

        policy = weights_read_policy(model, args.partition)
        if policy is not None:
            identity = cluster.workload_role(
                f"{name}-weights", namespace=self.namespace, service_account=model.name,
                policy=policy, parent=self, description=f"Read {model.name} weights from S3")
            workload_deps += identity.resources

        annotations: dict[str, Any] = dict(metrics_annotations(launch))
        if model.hf_token is not None and model.weights.source == "hub":
            workload_deps.append(k8s.core.v1.Secret(
                f"{name}-hf-token", metadata=meta(HF_TOKEN_SECRET), type="Opaque",
                string_data={"token": _hf_token(model, self)}, opts=k8s_opts(namespace)))

        # Before any pod exists: the policy so no pod is ever reachable beyond it, and the
        # load balancer controller so its webhook injects the readiness gate into every pod.
        workload_deps.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny", metadata=meta("default-deny"), spec=default_deny_spec(),
            opts=k8s_opts(namespace)))
        workload_deps.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy", metadata=meta("load-balancer-and-metrics-only"),
            spec=network_policy_spec(model, launch, args.load_balancer.node_cidrs,
                                     group_peers=multi_node), opts=k8s_opts(namespace)))
        s3_cidrs: pulumi.Input[list] = []
        if model.weights.source == "s3":
            s3_cidrs = aws.ec2.get_prefix_list_output(
                name=f"com.amazonaws.{args.inventory.region}.s3",
                opts=pulumi.InvokeOutputOptions(parent=self)).cidr_blocks
        workload_deps.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-egress", metadata=meta("dns-credentials-and-weights-only"),
            spec=pulumi.Output.from_input(s3_cidrs).apply(
                lambda cidrs: egress_spec(model, cidrs, traces_endpoint(args.inventory, model))),
            opts=k8s_opts(namespace)))
        workload_deps.append(args.addons.load_balancer_controller)

        if launch.config_files:
            workload_deps.append(k8s.core.v1.ConfigMap(
                f"{name}-runtime-config", metadata=meta(RUNTIME_CONFIG_MAP),
                data=dict(launch.config_files), opts=k8s_opts(namespace)))

        if cluster.autoscaler == "karpenter":
            # Karpenter never drains a node for consolidation or drift while a model pod is on
            # it: streams end when the pod does (scale-in, rollout), not when a node is tidied.
            annotations[DO_NOT_DISRUPT] = "true"
        workload_deps += list(args.capacity)
        if multi_node:
            if args.addons.leader_worker_set is None:
                raise ModelServiceError(f"model {model.name}: spans {launch.capacity.pipeline_parallel} "
                                        f"nodes but the cluster add-ons have no LeaderWorkerSet controller")
            spec = leader_worker_set_spec(
                model, launch, resources, node_selector=pool.node_selector, service_account=model.name,
                pod_annotations=annotations, efa_interfaces=pool.efa_interfaces,
                local_storage=pool.local_storage)
            scale_target = {"apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet"}
            deployment = k8s.apiextensions.CustomResource(
                f"{name}-leader-worker-set", api_version=LWS_API_VERSION, kind="LeaderWorkerSet",
                metadata=meta(self.deployment_name), spec=spec,
                opts=k8s_opts(*workload_deps, args.addons.leader_worker_set,
                              # KEDA's HPA owns the number of groups after creation.
                              ignore_changes=["spec.replicas"]))
            service_selector = {**selector_labels(model), ROLE_LABEL: "leader"}
        else:
            spec = deployment_spec(model, launch, resources, node_selector=pool.node_selector,
                                   service_account=model.name, pod_annotations=annotations,
                                   local_storage=pool.local_storage)
            rollout = spec["progressDeadlineSeconds"] + 600
            scale_target = {"apiVersion": "apps/v1", "kind": "Deployment"}
            deployment = k8s.apps.v1.Deployment(
                f"{name}-deployment", metadata=meta(self.deployment_name, annotations=SCANNER_DECISIONS),
                spec=spec,
                opts=k8s_opts(*workload_deps,
                              # KEDA's HPA owns the replica count after creation.
                              ignore_changes=["spec.replicas"],
                              custom_timeouts=pulumi.CustomTimeouts(create=f"{rollout}s", update=f"{rollout}s")))
            service_selector = selector_labels(model)

        service = k8s.core.v1.Service(
            f"{name}-service", metadata=meta(self.service_name),
            # Multi-node: only the leader serves; workers hold Ray nodes.
            spec={"type": "ClusterIP", "selector": service_selector,
                  "ports": [{"name": PORT_NAME, "port": launch.port, "targetPort": PORT_NAME,
                             "protocol": "TCP"}]},
            opts=k8s_opts(namespace))

        # Pods use the cluster security group (no group in the launch template): admit the
        # model port from the NLB's group only, for traffic and health checks alike.
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-nlb", security_group_id=cluster.cluster_security_group_id,
            referenced_security_group_id=lb.security_group_id, ip_protocol="tcp",
            from_port=launch.port, to_port=launch.port,
            description=f"{model.name}: NLB to pods on {launch.port}",
            opts=pulumi.ResourceOptions(parent=self))

        k8s.apiextensions.CustomResource(
            f"{name}-target-group-binding", api_version="elbv2.k8s.aws/v1beta1",
            kind="TargetGroupBinding", metadata=meta(model.name),
            spec={"serviceRef": {"name": self.service_name, "port": launch.port},
                  "targetGroupARN": lb.target_group_arn, "targetType": "ip"},
            opts=k8s_opts(service, args.addons.load_balancer_controller))

        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb", metadata=meta(model.name),
            # One replica at a time for drains and node scale-down; a pod stuck loading
            # may always be evicted so it never blocks a drain.
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(model)},
                  "unhealthyPodEvictionPolicy": "AlwaysAllow"},
            opts=k8s_opts(namespace))

        # A scheduled `rollout restart` needs a Deployment; LeaderWorkerSet groups are
        # replaced by their own rolling update instead.
        if model.max_lifetime_days is not None and not multi_node:
            self._create_restarts(name, model, launch, meta, k8s_opts, namespace, deployment)

        self._scale_target = scale_target
        self._name, self._args, self._namespace, self._deployment = name, args, namespace, deployment
        self._meta = meta
        self.scaling_query = scaling_trigger(model, launch, args.addons.prometheus_url)["metadata"]["query"]
        # A model that scales to zero wakes on the gateway's request count, which exists only
        # once the gateway does: its ScaledObject waits for `wake_on_requests`.
        self.waits_for_gateway = model.min_replicas == 0
        if not self.waits_for_gateway:
            self._create_scaled_object(None)

        self.target_group_arn = lb.target_group_arn
        self.target_group_arn_suffix = lb.target_group_arn_suffix
        self.load_balancer_arn = lb.arn
        self.load_balancer_arn_suffix = lb.arn_suffix
        self.register_outputs({
            "namespace": self.namespace,
            "deployment_name": self.deployment_name,
            "service_name": self.service_name,
            "target_group_arn": self.target_group_arn,
            "load_balancer_arn": self.load_balancer_arn,
            "internal_domain": self.internal_domain,
            "scaling_query": self.scaling_query,
        })


    def _create_restarts(self, name: str, model: Model, launch: RuntimeLaunch, meta: Any, k8s_opts: Any,
                         namespace: pulumi.Resource, deployment: pulumi.Resource) -> None:
        """The scheduled rolling restart (max_lifetime_days) and the least privilege it needs."""
        account = k8s.core.v1.ServiceAccount(
            f"{name}-restarter", metadata=meta(RESTARTER), opts=k8s_opts(namespace))
        role = k8s.rbac.v1.Role(
            f"{name}-restarter-role", metadata=meta(RESTARTER), rules=restart_role_rules(model),
            opts=k8s_opts(namespace))
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-restarter-binding", metadata=meta(RESTARTER),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RESTARTER},
            subjects=[{"kind": "ServiceAccount", "name": RESTARTER, "namespace": self.namespace}],
            opts=k8s_opts(namespace))
        k8s.batch.v1.CronJob(
            f"{name}-restart", metadata=meta("rolling-restart"), spec=restart_cronjob_spec(model, launch),
            opts=k8s_opts(account, role, binding, deployment))


    def wake_on_requests(self, metrics: RequestMetrics) -> None:
        """The ScaledObject of a scale-to-zero model, with the gateway's request triggers."""
        args = self._args
        auth = k8s.apiextensions.CustomResource(
            f"{self._name}-gateway-metrics-auth", api_version="keda.sh/v1alpha1",
            kind="TriggerAuthentication", metadata=self._meta(GATEWAY_METRICS_AUTH),
            # The KEDA operator's own Pod Identity role reads CloudWatch (components/eks/addons.py).
            spec={"podIdentity": {"provider": "aws"}},
            opts=pulumi.ResourceOptions.merge(args.cluster.k8s_opts(self, [self._namespace, args.addons.keda]),
                                              pulumi.ResourceOptions()))
        self._create_scaled_object(metrics, auth)

    def _create_scaled_object(self, wake: Optional[RequestMetrics],
                              auth: Optional[pulumi.Resource] = None) -> None:
        args = self._args
        spec = scaled_object_spec(args.model, args.launch, self.deployment_name,
                                  args.addons.prometheus_url, wake, scale_target=self._scale_target)
        k8s.apiextensions.CustomResource(
            f"{self._name}-scaled-object", api_version="keda.sh/v1alpha1", kind="ScaledObject",
            metadata=self._meta(args.model.name), spec=spec,
            opts=args.cluster.k8s_opts(self, [self._deployment, args.addons.keda, args.addons.prometheus,
                                              *([auth] if auth else [])]))


def _hf_token(model: Model, parent: pulumi.Resource) -> pulumi.Output[str]:
    """The hub token for gated repositories, as a secret: from this stack's encrypted config,
    or read from Secrets Manager with the stack's AWS provider (inherited from `parent`)."""
    ref = model.hf_token
    assert ref is not None
    if ref.config is not None:
        return pulumi.Config().require_secret(ref.config)
    return pulumi.Output.secret(aws.secretsmanager.get_secret_version_output(
        secret_id=ref.secrets_manager_arn, opts=pulumi.InvokeOutputOptions(parent=parent)).secret_string)
