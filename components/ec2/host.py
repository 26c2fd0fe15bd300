"""Host provisioning for the EC2 platform, rendered as data: cloud-init, systemd units, scripts.

The "Ansible-style" part of the platform: every step is declarative and idempotent, so a
reboot or a re-run converges instead of repeating work:
- the container runtime and the NVIDIA container toolkit are configured only if absent
  (the NVIDIA-driver AMI ships both; a bare AMI gets them);
- weights are copied from S3 (or downloaded from the hub at a pinned commit) into a
  staging directory, checked against a SHA256SUMS manifest whose own sha256 is pinned in
  the inventory, and only then moved into place; a verified copy is never fetched again;
- the runtime runs as a container (image pinned by tag and digest) under a systemd unit
  with `Restart=always`, holding no credential: the network is its boundary
  (docs/BACKEND_AUTH.md);
- every container (the server, the hub download) runs as the unprivileged UID the EKS pods
  use (components/serving/sandbox.py) with a read-only root filesystem, no capabilities
  and no privilege gain: it writes only a tmpfs at /tmp, /dev/shm, and the host
  directories made for it and owned by that UID (compile caches, Ollama's store); the
  weights are owned by it too but mounted read-only (see `docker_run_argv`);
- after start a warm-up request runs, and only then does the local health gate report
  ready; the load balancer's health check asks the gate, which re-checks that the model
  is listed by the runtime on every probe;
- logs: the container logs to journald; an exporter writes the unit's journal as JSON
  lines that the CloudWatch agent ships. Prompts are never logged (see runtimes.py).
- spot hosts run a watcher (WATCHER_SCRIPT) that polls IMDSv2 for the two-minute
  interruption notice (`spot/instance-action`, EC2 User Guide "Spot Instance interruption
  notices") and then drains: the health gate answers 503 from that moment, the instance
  enters Standby (Auto Scaling deregisters it from the target group, so the NLB sends no
  new flow while in-flight streams drain, and launches the replacement at once instead of
  after the reclaim), and the runtime is stopped once its connections are gone or just
  before the reclaim time, so streams finish what they can and the server exits cleanly.
- metrics: the CloudWatch agent (configuration in SSM, see `agent_config_parameter`) scrapes
  the runtime's Prometheus counters and gauges; the health gate publishes the queue for
  scaling and the per-minute p95 of the runtime's latency histograms, which the agent drops.

User data is rendered only from values known at preview (inventory, catalog, the secret's
*name*), so `pulumi preview` shows it and the policy pack can inspect it. It is a
`#cloud-config` document produced with `yaml.safe_dump`; tests parse it back.

The container never shares the host network: its port is published on the host's private
address only, and because the container sits one hop behind the docker bridge, IMDSv2's
hop limit of 1 keeps instance credentials out of its reach (SSRF from model tools).
"""
from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
from dataclasses import dataclass
from typing import Optional

import yaml

from components.serving.runtimes import MODELFILE_PARAMETERS, RUNTIME_CONFIG_DIR, RuntimeLaunch
from components.serving.sandbox import (IDENTITY_ENV, RUN_AS_GID, RUN_AS_UID, SCRATCH_HOME, cache_env,
                                        user_spec)
from components.serving.weights import VERIFY_WEIGHTS_SH, s3_download_command

CONTAINER = "deepseek-runtime"
STATE_DIR = "/run/deepseek"
CACHE_MOUNT = "/opt/deepseek"
CACHE_DEVICE = "/dev/sdf"
CACHE_LABEL = "model-cache"
ENV_FILE = "/etc/deepseek/model.env"
HOST_ENV_FILE = f"{STATE_DIR}/host.env"
READY_MARKER = f"{STATE_DIR}/warm"
RUNTIME_LOG = "/var/log/deepseek/runtime.json"
# The local gate the NLB health check asks; it answers for the runtime (see GATE_SCRIPT).
HEALTH_GATE_PORT = 8099
# EC2 user data is limited to 16 KB before base64.
USER_DATA_LIMIT = 16 * 1024
# Seconds allowed for pulling the image (10-25 GB) before the start budget begins.
IMAGE_PULL_SECONDS = 900
# Where the runtime's compile and JIT caches live inside its container: a host directory
# on the cache volume, so a restarted container reuses what the last one compiled.
CONTAINER_CACHE_DIR = "/var/cache/deepseek"
# The /tmp tmpfs of a container, in RAM: scratch only (HOME, the shard sockets, a JIT
# build's temp files, Ollama's Modelfile); the caches above live on disk. Small because
# the smallest GPU hosts have 16 GiB of host memory that the runtime itself needs while it
# loads weights; a runaway writer gets ENOSPC instead of starving the server.
RUNTIME_TMP_SIZE = "2g"
# The hub download: huggingface_hub keeps its partial files in the target directory.
DOWNLOAD_TMP_SIZE = "1g"


def sandbox_flags(tmp_size: str) -> list[str]:
    """The `docker run` flags every container on the host gets (the EKS pods' securityContext:
    runAsUser/runAsGroup, readOnlyRootFilesystem, capabilities drop ALL,
    allowPrivilegeEscalation false).

    /tmp is a tmpfs that allows exec, unlike Docker's default for `--tmpfs` (noexec, nosuid,
    nodev: moby daemon/oci_linux.go; a later `exec` option wins, pkg/mount
    MergeTmpfsOptions): Triton and the CUDA toolchain build shared objects in temporary
    directories and load them, as they may on the EKS emptyDir. Mode 1777 lets the UID
    write it whatever its passwd entry. GPUs stay usable by a non-root UID: the NVIDIA
    driver creates /dev/nvidia* world read-write (0666 by default: NVIDIA/nvidia-modprobe
    modprobe-utils/nvidia-modprobe-utils.h NV_DEVICE_FILE_MODE; open-gpu-kernel-modules
    kernel-open/nvidia/nv-reg.h DeviceFileMode), and the container toolkit bind-mounts the
    host's nodes with their mode (NVIDIA/libnvidia-container src/nvc_mount.c mount_device).
    """
    return ["--user", user_spec(), "--read-only",
            "--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={tmp_size},mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


class HostProvisioningError(ValueError):
    """Host configuration that must not be deployed; the message says what to change."""


@dataclass(frozen=True)
class HostPlan:
    """Everything a host needs to serve one model, all known at preview time."""

    stack: str
    region: str
    model_name: str
    launch: RuntimeLaunch
    weights_source: str  # "s3" or "hub"
    manifest_sha256: str
    s3_uri: Optional[str]
    hf_repo: str
    revision: str
    # ARN of a Secrets Manager secret holding a hub token (hub downloads of gated repos).
    hf_token_secret_arn: Optional[str]
    log_group_name: str
    metrics_namespace: str
    # Spot capacity in the group: the host watches for interruption notices and drains.
    spot: bool = False
    # "ebs": the cache volume at CACHE_DEVICE; "instance_store": the NVMe disks as RAID0.
    local_storage: str = "ebs"
    # What the host pulls and runs: the runtime image in ECR of the stack's region, directly or
    # through its pull-through cache, tag and digest kept (components/serving/images.py).
    # None: the launch's own reference.
    image: Optional[str] = None

    @property
    def image_reference(self) -> str:
        return self.image or self.launch.image

    @property
    def model_dir(self) -> str:
        return f"{CACHE_MOUNT}/models/{self.model_name}"

    @property
    def writable_dirs(self) -> dict[str, str]:
        """Host directory -> container path of every mount the runtime writes, each made and
        owned by the container's UID before every start (ExecStartPre): after an instance-store
        host is stopped and started, the disks are new and empty."""
        dirs = {}
        if cache_env(self.launch.runtime, CONTAINER_CACHE_DIR):
            dirs[f"{CACHE_MOUNT}/cache/{self.model_name}"] = CONTAINER_CACHE_DIR
        if self.launch.runtime == "ollama":
            dirs[f"{CACHE_MOUNT}/ollama"] = self.launch.env["OLLAMA_MODELS"]
        return dirs

    @property
    def agent_config_parameter(self) -> str:
        """SSM parameter holding the CloudWatch agent's configuration: the `AmazonCloudWatch-`
        prefix is the one the managed CloudWatchAgentServerPolicy lets the agent read, and the
        configuration stays out of the 16 KB of user data."""
        return f"AmazonCloudWatch-deepseek-{self.stack}-{self.model_name}"

    @property
    def prometheus_log_group_name(self) -> str:
        """Where the agent writes the runtime's metrics as embedded metric format events."""
        return f"/deepseek/{self.stack}/{self.model_name}/prometheus"

    @property
    def scrape_config_parameter(self) -> str:
        return f"{self.agent_config_parameter}-prometheus"

    @property
    def scrapes_runtime(self) -> bool:
        return self.launch.runtime in AGENT_SERIES and bool(self.launch.metrics_path)


# --------------------------------------------------------------------------- scripts

PREPARE_HOST = r"""#!/bin/bash
# Idempotent host preparation: install or configure only what is missing.
set -euo pipefail
if ! command -v docker >/dev/null 2>&1; then dnf install -y docker; fi
systemctl enable --now docker
if ! command -v nvidia-ctk >/dev/null 2>&1; then dnf install -y nvidia-container-toolkit; fi
if ! docker info --format '{{json .Runtimes}}' | grep -q nvidia; then
  nvidia-ctk runtime configure --runtime=docker
  systemctl restart docker
fi
if ! rpm -q amazon-cloudwatch-agent >/dev/null 2>&1; then dnf install -y amazon-cloudwatch-agent; fi
install -d -m 0755 /var/log/deepseek /opt/deepseek/models
"""

HOST_ENV = r"""#!/bin/bash
# The host's private address from IMDSv2 (token required; hop limit 1 keeps containers out).
set -euo pipefail
install -d -m 0700 /run/deepseek
token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
ip=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/local-ipv4)
[[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "no private IPv4 from IMDS" >&2; exit 1; }
echo "HOST_PRIVATE_IP=$ip" > /run/deepseek/host.env
source /etc/deepseek/model.env
# The CloudWatch agent's scrape of the runtime, aimed at this address.
[[ -z ${PROM_PARAM:-} ]] || aws ssm get-parameter --region "$AWS_REGION" --name "$PROM_PARAM" --query \
  Parameter.Value --output text | sed "s/@HOST@/$ip/" > /opt/aws/amazon-cloudwatch-agent/etc/deepseek-prometheus.yaml
"""

# The runtime image from ECR over the VPC endpoints (hosts have no internet egress), by digest:
# Docker checks what it receives against the digest, so only the pinned bytes ever run. The
# login token (valid 12 hours) stays on tmpfs and is removed after the pull. A first pull by
# digest can miss a cold pull-through cache (aws/containers-roadmap#2837): then the tag fills
# it, and the pull by digest after it fails if the tag no longer names the pinned bytes.
PULL_IMAGE = r"""#!/bin/bash
set -euo pipefail
. "${DEEPSEEK_ENV:-/etc/deepseek/model.env}"
docker image inspect "$IMAGE" >/dev/null 2>&1 && exit
export DOCKER_CONFIG=${STATE_DIR:-/run/deepseek}/docker
install -d -m 0700 $DOCKER_CONFIG
trap 'rm -rf $DOCKER_CONFIG' EXIT
r=${IMAGE%%/*}
[[ $r != *.dkr.ecr.*.amazonaws.com ]] || aws ecr get-login-password --region $AWS_REGION | docker login -u AWS --password-stdin $r
docker pull $IMAGE || { docker pull ${IMAGE%@*} && docker pull $IMAGE; }
"""

FETCH_WEIGHTS = r"""#!/bin/bash
# Weights into place only after every file matches the pinned manifest, owned by the
# containers' UID (RUN_AS) and mounted read-only into the server.
set -euo pipefail
source "${DEEPSEEK_ENV:-/etc/deepseek/model.env}"
final="$MODEL_DIR"; staging="$MODEL_DIR.partial"
if [[ -f $final/.verified ]] && [[ $(cat "$final/.verified") == "$MANIFEST_SHA256" ]]; then
  chown -R "$RUN_AS" "$final"; echo "weights already verified"; exit 0
fi
rm -rf "$staging"; install -d -m 0755 "$staging"
if [[ $WEIGHTS_SOURCE == s3 ]]; then
  __S3_DOWNLOAD__else
  chown "$RUN_AS" "$staging"
  hub_auth=()
  if [[ -n ${HUB_TOKEN_SECRET_ARN:-} ]]; then
    umask 077
    printf '%s=%s\n' HF_TOKEN "$(aws secretsmanager get-secret-value --region "$AWS_REGION" \
      --secret-id "$HUB_TOKEN_SECRET_ARN" --query SecretString --output text)" > /run/deepseek/hf.env
    hub_auth=(--env-file /run/deepseek/hf.env)
  fi
  # HF_HOME (token, xet chunk cache) beside the download on disk, removed with it below.
  docker run --rm __SANDBOX__ -e HOME=__HOME__ -e HF_HOME=/out/.cache/hf-home -e HF_HUB_DISABLE_TELEMETRY=1 \
    "${hub_auth[@]}" -v "$staging:/out" --entrypoint python3 "$IMAGE" -c \
    "from huggingface_hub import snapshot_download as d; d(repo_id='$HF_REPO', revision='$REVISION', local_dir='/out')"
  rm -f /run/deepseek/hf.env
  rm -rf "$staging/.cache"
fi
cd "$staging"
""" + VERIFY_WEIGHTS_SH + r"""echo "$MANIFEST_SHA256" > .verified
chown -R "$RUN_AS" .
rm -rf "$final"; mv "$staging" "$final"
"""
FETCH_WEIGHTS = (FETCH_WEIGHTS
                 .replace("__S3_DOWNLOAD__", s3_download_command('"$S3_URI"', '"$staging/"').replace("\n", "\n  ", 1))
                 .replace("__SANDBOX__", shlex.join(sandbox_flags(DOWNLOAD_TMP_SIZE)))
                 .replace("__HOME__", SCRATCH_HOME))

# The instance's NVMe store as one RAID0 at the cache mount, run at every boot (cloud-init
# bootcmd): after a reboot the array is assembled again; a new or stopped-and-started
# instance has empty disks, so the array and filesystem are created (the weights are then
# fetched again). Instance store disks report the model "Amazon EC2 NVMe Instance Storage"
# (https://docs.aws.amazon.com/ebs/latest/userguide/nvme-ebs-volumes.html).
ASSEMBLE_INSTANCE_STORE = r"""set -eu
mountpoint -q /opt/deepseek && exit
command -v mdadm >/dev/null || dnf -y install mdadm
m=/dev/md/deepseek
[ -e $m ] || mdadm -A --scan || :
if [ ! -e $m ]; then
d=$(lsblk -dpno NAME,MODEL | awk '/Instance Storage/{print $1}')
[ -n "$d" ]
mdadm -C $m -R -f -l 0 -N deepseek -n $(echo $d | wc -w) $d
mkfs.xfs -f -L model-cache $m
fi
mkdir -p /opt/deepseek
mount -o noatime LABEL=model-cache /opt/deepseek
"""

WARMUP_HEAD = r"""#!/bin/bash
# After start: wait until the model is listed, send one tiny generation, then mark the host
# warm for the health gate.
set -euo pipefail
source /etc/deepseek/model.env
source /run/deepseek/host.env
base="http://$HOST_PRIVATE_IP:$RUNTIME_PORT"
deadline=$((SECONDS + STARTUP_BUDGET))
"""

# Ollama serves what was created into its store: create it from the verified GGUF first.
WARMUP_OLLAMA = r"""until curl -fsS "$base$LIVENESS_PATH" >/dev/null 2>&1; do
  (( SECONDS < deadline )) || { echo "server did not start" >&2; exit 1; }; sleep 2
done
gguf=$(cd "$MODEL_DIR" && ls -1 *.gguf)
[[ $(wc -l <<<"$gguf") == 1 ]] || { echo "expected exactly one .gguf" >&2; exit 1; }
docker exec -u "$RUN_AS" deepseek-runtime sh -c "printf 'FROM %s\n' '$MODEL_PATH/$gguf' > /tmp/Modelfile && \
  cat '""" + f"{RUNTIME_CONFIG_DIR}/{MODELFILE_PARAMETERS}" + r"""' >> /tmp/Modelfile && \
  ollama create '$SERVED_MODEL' -f /tmp/Modelfile"
"""

WARMUP_TAIL = r"""until curl -fsS "$base$READINESS_PATH" | grep -q -- "$READINESS_BODY"; do
  (( SECONDS < deadline )) || { echo "model not serving within $STARTUP_BUDGET s" >&2; exit 1; }
  sleep 5
done
curl -fsS -H 'Content-Type: application/json' -X "$WARMUP_METHOD" \
  --data @/etc/deepseek/warmup.json "$base$WARMUP_PATH" >/dev/null
touch /run/deepseek/warm
"""


def warmup_script(runtime: str) -> str:
    return WARMUP_HEAD + (WARMUP_OLLAMA if runtime == "ollama" else "") + WARMUP_TAIL


# The local health gate (stdlib only). It answers the NLB on the private address:
#   /ready 200 only when the warm-up finished AND the runtime lists the model right now;
#   /live  200 when the runtime's liveness route answers.
# It also publishes the serving metrics (GATE_SERIES; requests waiting drives scaling).
GATE_SCRIPT = r'''import json, os, re, subprocess, threading, time, urllib.request as u
from http.server import BaseHTTPRequestHandler as H, ThreadingHTTPServer as S
E = os.environ
RUN = E.get("STATE_DIR", "/run/deepseek")
BASE = "http://%s:%s" % (E["HOST_PRIVATE_IP"], E["RUNTIME_PORT"])
SERIES = json.loads(E.get("GATE_SERIES", "[]"))  # [[CloudWatch name, Prometheus name, scale, how]]

def get(path):
    with u.urlopen(BASE + path, timeout=4) as r:
        return r.status, r.read().decode("utf-8", "replace")

def ready():
    if os.path.exists(RUN + "/draining"):  # spot notice: stop admitting (WATCHER_SCRIPT)
        return False
    try:
        s, body = get(E["READINESS_PATH"])
        return os.path.exists(RUN + "/warm") and s == 200 and E["READINESS_BODY"] in body
    except Exception:
        return False

P = {}

def hist(text, prom, q):
    b = {}
    for le, v in re.findall("^%s_bucket{.*le=\"([^\"]+)\".*} (\\S+)$" % re.escape(prom), text, re.M):
        b[float(le)] = b.get(float(le), 0) + float(v)
    d, P[prom] = sorted((k, v - P.get(prom, b).get(k, 0)) for k, v in b.items()), b
    lo = c0 = 0
    for le, c in d:
        if c >= q * d[-1][1] > 0:
            return lo if le > 1e300 else lo + (le - lo) * (q * d[-1][1] - c0) / (c - c0)
        lo, c0 = le, c

def rate(prom, v):
    t, P[prom] = P.get(prom), (time.time(), v)
    if t and v >= t[1]:
        return (v - t[1]) / max(time.time() - t[0], 1)

def samples():
    if SERIES:
        text = get(E["METRICS_PATH"])[1]
        out = {}
        for name, prom, scale, how in SERIES:
            f = [float(v) for v in re.findall("^" + re.escape(prom) + r"(?:{.*})? (\S+)$", text, re.M)]
            v = (max(f) if how == "max" else sum(f)) if f else None
            if how[0] == "p":
                v = hist(text, prom, int(how[1:]) / 100)
            elif how == "rate" and f:
                v = rate(prom, v)
            if v is not None:
                out[name] = scale * v
        return out
    # Ollama has no metrics: connections to it are requests; beyond its slots they wait.
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%s )" % E["RUNTIME_PORT"]],
                         capture_output=True, text=True).stdout
    n, slots = len(out.splitlines()), int(E["OLLAMA_NUM_PARALLEL"])
    return {"RequestsRunning": min(n, slots), "RequestsWaiting": max(0, n - slots)}

def publish():
    dims = [{"Name": "Stack", "Value": E["STACK"]}, {"Name": "Model", "Value": E["MODEL_NAME"]}]
    while True:
        time.sleep(60)
        try:
            assert ready()
            # Units must match the scaling policy's metric spec, or CloudWatch finds no data.
            data = [{"MetricName": k, "Value": v, "Dimensions": dims, "Unit": "Percent" if k.endswith("Percent")
                     else "Seconds" if k.endswith("Seconds") else "Count/Second" if k.endswith("Second") else "Count"}
                    for k, v in samples().items()]
        except Exception:
            continue
        subprocess.run(["aws", "cloudwatch", "put-metric-data", "--region", E["AWS_REGION"],
                        "--namespace", E["METRICS_NAMESPACE"], "--metric-data", json.dumps(data)])

class Gate(H):
    def do_GET(self):
        try:
            ok = {"/ready": ready, "/live": lambda: get(E["LIVENESS_PATH"])[0] == 200}[self.path]()
        except KeyError:
            return self.send_error(404)
        except Exception:
            ok = False
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(json.dumps({"ok": ok}).encode())

    def log_message(self, *a):
        pass

threading.Thread(target=publish, daemon=True).start()
S((E["HOST_PRIVATE_IP"], int(E["GATE_PORT"])), Gate).serve_forever()
'''


# The spot interruption watcher (stdlib only); IMDS_ENDPOINT and STATE_DIR exist so tests run
# the real script against a fake IMDS on 127.0.0.1.
WATCHER_SCRIPT = r'''import datetime as d, json, os, subprocess, sys, time, urllib.error, urllib.request as u
E = os.environ
IMDS = E.get("IMDS_ENDPOINT", "http://169.254.169.254")
RUN = E.get("STATE_DIR", "/run/deepseek")
POLL = float(E.get("WATCH_INTERVAL", "5"))
MARGIN = float(E.get("STOP_MARGIN_SECONDS", "15"))

def imds(path):
    req = u.Request(IMDS + "/latest/api/token", method="PUT",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = u.urlopen(req, timeout=2).read().decode()
    req = u.Request(IMDS + "/latest/meta-data/" + path, headers={"X-aws-ec2-metadata-token": token})
    try:
        with u.urlopen(req, timeout=2) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise

def aws(*args):
    return subprocess.run(["aws", "--region", E["AWS_REGION"], *args], capture_output=True, text=True)

def busy():
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%s )" % E["RUNTIME_PORT"]],
                         capture_output=True, text=True).stdout
    return bool(out.strip())

def notice():
    """Seconds left before EC2 reclaims this spot instance, or None."""
    action = imds("spot/instance-action")
    if not action:
        return None
    when = d.datetime.strptime(json.loads(action)["time"], "%Y-%m-%dT%H:%M:%SZ")
    return (when.replace(tzinfo=d.timezone.utc) - d.datetime.now(d.timezone.utc)).total_seconds()

def drain(left):
    deadline = time.monotonic() + left - MARGIN
    open(RUN + "/draining", "w").close()  # the health gate answers 503 from now on
    me = imds("instance-id")
    found = aws("autoscaling", "describe-auto-scaling-instances", "--instance-ids", me, "--output", "json")
    groups = [i["AutoScalingGroupName"] for i in json.loads(found.stdout or "{}").get("AutoScalingInstances", [])]
    for group in groups:
        # Standby deregisters from the target groups (in-flight streams drain) and, without
        # decrementing, makes Auto Scaling launch the replacement now, not in two minutes.
        aws("autoscaling", "enter-standby", "--instance-ids", me, "--auto-scaling-group-name", group,
            "--no-should-decrement-desired-capacity")
    while time.monotonic() < deadline and busy():
        time.sleep(POLL)
    subprocess.run(["systemctl", "stop", "--no-block", "deepseek-runtime.service"])
    print("drained for spot interruption", flush=True)

while True:
    try:
        left = notice()
    except Exception as error:
        print("imds: %s" % error, file=sys.stderr, flush=True)
        left = None
    if left is not None:
        drain(left)
        break
    time.sleep(POLL)
'''


# --------------------------------------------------------------------------- rendering

# What each host's gate publishes to CloudWatch (dimensions Stack, Model) from the runtime's
# own Prometheus gauges: [CloudWatch name, Prometheus name, scale, aggregate over series].
# RequestsWaiting drives the scaling policy; components/observability.py alarms on all of them.
# Histograms (how "p95": the p95 of the last minute's observations, from bucket deltas) and
# rates of histogram sums: the CloudWatch agent drops Prometheus histograms (AWS, "Prometheus
# metric type conversion by the CloudWatch agent"), so their token timings come from here; the
# agent's scrape (runtime_scrape_config) ships the runtimes' counters and gauges.
GATE_SERIES = {
    "vllm": [["RequestsWaiting", "vllm:num_requests_waiting", 1, "sum"],
             ["RequestsRunning", "vllm:num_requests_running", 1, "sum"],
             ["KvCacheUsagePercent", "vllm:kv_cache_usage_perc", 100, "max"],
             ["TimeToFirstTokenP95Seconds", "vllm:time_to_first_token_seconds", 1, "p95"],
             ["TimePerOutputTokenP95Seconds", "vllm:inter_token_latency_seconds", 1, "p95"],
             ["QueueTimeP95Seconds", "vllm:request_queue_time_seconds", 1, "p95"]],
    "tgi": [["RequestsWaiting", "tgi_queue_size", 1, "sum"],
            ["RequestsRunning", "tgi_batch_current_size", 1, "sum"],
            ["BatchTokens", "tgi_batch_current_max_tokens", 1, "sum"],
            ["TimePerOutputTokenP95Seconds", "tgi_request_mean_time_per_token_duration", 1, "p95"],
            ["QueueTimeP95Seconds", "tgi_request_queue_duration", 1, "p95"],
            ["PromptTokensPerSecond", "tgi_request_input_length_sum", 1, "rate"],
            ["GenerationTokensPerSecond", "tgi_request_generated_tokens_sum", 1, "rate"]],
}
# What the CloudWatch agent's Prometheus scrape keeps and turns into metrics (EMF, namespace
# and dimensions Stack + Model as the gate's): counters arrive as per-scrape deltas (Sum per
# minute = per minute), gauges as they are. Names as components/serving/metrics.py lists them
# (CloudWatch constrains a metric name's length only, colons included: API reference, Metric).
AGENT_SERIES = {
    "vllm": ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:num_preemptions_total",
             "vllm:request_success_total", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
    "tgi": ("tgi_request_count", "tgi_request_success", "tgi_request_failure", "tgi_batch_max_total_tokens"),
}
SCRAPE_JOB = "deepseek-runtime"
PROMETHEUS_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/deepseek-prometheus.yaml"


def model_env(plan: HostPlan) -> dict[str, str]:
    """Non-secret settings every script and unit reads from /etc/deepseek/model.env."""
    launch = plan.launch
    return {
        "STACK": plan.stack,
        "AWS_REGION": plan.region,
        "MODEL_NAME": plan.model_name,
        "RUNTIME": launch.runtime,
        "IMAGE": plan.image_reference,
        "RUNTIME_PORT": str(launch.port),
        "GATE_PORT": str(HEALTH_GATE_PORT),
        "SERVED_MODEL": launch.served_model_name,
        "MODEL_DIR": plan.model_dir,
        "MODEL_PATH": launch.model_path,
        "READINESS_PATH": launch.readiness_path,
        "READINESS_BODY": launch.readiness_body_contains or "",
        "LIVENESS_PATH": launch.liveness_path,
        "METRICS_PATH": launch.metrics_path or "",
        "WARMUP_METHOD": launch.warmup_request["method"],
        "WARMUP_PATH": launch.warmup_request["path"],
        "STARTUP_BUDGET": str(launch.startup_budget_seconds),
        # uid:gid of every container; the weights and the writable host directories are its.
        "RUN_AS": user_spec(),
        "HUB_TOKEN_SECRET_ARN": plan.hf_token_secret_arn or "",
        "WEIGHTS_SOURCE": plan.weights_source,
        "S3_URI": plan.s3_uri or "",
        "HF_REPO": plan.hf_repo if plan.weights_source == "hub" else "",
        "REVISION": plan.revision if plan.weights_source == "hub" else "",
        "MANIFEST_SHA256": plan.manifest_sha256,
        "METRICS_NAMESPACE": plan.metrics_namespace,
        "OLLAMA_NUM_PARALLEL": launch.env.get("OLLAMA_NUM_PARALLEL", ""),
        "GATE_SERIES": json.dumps(GATE_SERIES[launch.runtime], separators=(",", ":")) if launch.runtime in GATE_SERIES else "",
        "PROM_PARAM": plan.scrape_config_parameter if plan.scrapes_runtime else "",
    }


def docker_run_argv(plan: HostPlan) -> list[str]:
    """The container's command line: isolation, GPUs, logging, then the runtime's own args."""
    launch = plan.launch
    argv = [
        "/usr/bin/docker", "run", "--rm", "--name", CONTAINER,
        "--gpus", "all",
        # Bridge network: published only on the private address, one hop from IMDS.
        "--publish", f"${{HOST_PRIVATE_IP}}:{launch.port}:{launch.port}",
        *sandbox_flags(RUNTIME_TMP_SIZE),
        "--pids-limit", "4096",
        # vLLM/TGI shard workers exchange tensors through shared memory (vLLM's docs: --ipc=host
        # or --shm-size; a private IPC namespace keeps the host's segments out of reach). Docker
        # mounts /dev/shm mode 1777, so the container's UID writes it on a read-only root.
        "--shm-size", "16g" if launch.capacity and launch.capacity.tensor_parallel_size > 1 else "4g",
        "--log-driver", "journald", "--log-opt", f"tag={CONTAINER}",
        # The server only reads the weights: read-only even though its UID owns them.
        "--volume", f"{plan.model_dir}:{launch.model_path}:ro",
    ]
    if launch.config_files:
        # The same non-secret files the EKS pod gets from its ConfigMap (logging config, ...).
        argv += ["--volume", f"{RUNTIME_CONFIG_DIR}:{RUNTIME_CONFIG_DIR}:ro"]
    # Writable on purpose (a checker that wants every volume read-only disagrees): compile
    # caches that a restart reuses and Ollama's model store, each a directory of its own on
    # the cache volume owned by the container's UID, never the host's root filesystem.
    argv += [arg for host_dir, path in plan.writable_dirs.items() for arg in ("--volume", f"{host_dir}:{path}:rw")]
    env = {**launch.env, **IDENTITY_ENV, **cache_env(launch.runtime, CONTAINER_CACHE_DIR)}
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    argv.append(plan.image_reference)
    argv += launch.args
    return argv


def _systemd_word(word: str) -> str:
    """Quote one ExecStart word for systemd: `%` is a specifier, `'` quotes; `${...}` expands."""
    if "'" in word:
        raise HostProvisioningError(f"a runtime argument contains a single quote: {word!r}")
    word = word.replace("%", "%%")
    if word == "" or any(c in word for c in " \t\"\\;{}[]"):
        if "${" in word:
            return word  # an environment reference: systemd expands it inside a word
        return f"'{word}'"
    return word


def exec_line(argv: list[str]) -> str:
    return " ".join(_systemd_word(word) for word in argv)


def systemd_units(plan: HostPlan) -> dict[str, str]:
    """Unit file name -> text."""
    launch = plan.launch
    drain = launch.drain_seconds
    start_budget = launch.startup_budget_seconds + IMAGE_PULL_SECONDS
    env_files = f"EnvironmentFile={ENV_FILE}\nEnvironmentFile={HOST_ENV_FILE}\n"
    return {
        "deepseek-host-env.service": (
            "[Unit]\nDescription=Private address of this host (IMDSv2)\n"
            "Wants=network-online.target\nAfter=network-online.target\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            "ExecStart=/usr/local/sbin/deepseek-host-env\n"),
        "deepseek-weights.service": (
            "[Unit]\nDescription=Model weights verified against the pinned manifest\n"
            f"Wants=network-online.target\nAfter=network-online.target docker.service\n"
            f"RequiresMountsFor={CACHE_MOUNT}\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            # A hub download runs in the runtime image: pulled from ECR first, like the server's.
            + ("ExecStartPre=/usr/local/sbin/deepseek-pull-image\n" if plan.weights_source == "hub" else "")
            + "ExecStart=/usr/local/sbin/deepseek-fetch-weights\n"
            "TimeoutStartSec=3600\nRestart=on-failure\nRestartSec=30\n"),
        "deepseek-runtime.service": (
            f"[Unit]\nDescription=DeepSeek model server {plan.model_name} ({launch.runtime})\n"
            "Requires=docker.service deepseek-host-env.service deepseek-weights.service\n"
            "After=docker.service deepseek-host-env.service deepseek-weights.service\n"
            # Restart forever: a crash loop is visible in alarms, a stopped unit is not.
            "StartLimitIntervalSec=0\n\n"
            f"[Service]\nType=simple\n{env_files}"
            f"ExecStartPre=/bin/rm -f {READY_MARKER}\n"
            # Idempotent at every start: an instance-store host comes back with empty disks.
            + "".join(f"ExecStartPre=/usr/bin/install -d -o {RUN_AS_UID} -g {RUN_AS_GID} -m 0700 {host_dir}\n"
                      for host_dir in plan.writable_dirs) +
            f"ExecStartPre=-/usr/bin/docker rm -f {CONTAINER}\n"
            "ExecStartPre=/usr/local/sbin/deepseek-pull-image\n"
            f"ExecStart={exec_line(docker_run_argv(plan))}\n"
            "ExecStartPost=/usr/local/sbin/deepseek-warmup\n"
            f"ExecStop=/bin/rm -f {READY_MARKER}\n"
            # Streams in flight get the same time to finish as the load balancer's drain.
            f"ExecStop=/usr/bin/docker stop --time {drain} {CONTAINER}\n"
            "Restart=always\nRestartSec=10\n"
            f"TimeoutStartSec={start_budget}\nTimeoutStopSec={drain + 30}\n\n"
            "[Install]\nWantedBy=multi-user.target\n"),
        "deepseek-health-gate.service": (
            "[Unit]\nDescription=Health gate: ready only when the model serves\n"
            "Requires=deepseek-host-env.service\nAfter=deepseek-host-env.service\n\n"
            f"[Service]\nType=simple\n{env_files}"
            "ExecStart=/usr/bin/python3 /usr/local/lib/deepseek/health_gate.py\n"
            "Restart=always\nRestartSec=5\n"
            "ProtectSystem=strict\nPrivateTmp=yes\n\n"
            "[Install]\nWantedBy=multi-user.target\n"),
        **({"deepseek-spot-watcher.service": (
            "[Unit]\nDescription=Drain on a spot interruption notice\n"
            "Requires=deepseek-host-env.service\nAfter=deepseek-host-env.service\n\n"
            f"[Service]\nType=simple\n{env_files}"
            "ExecStart=/usr/bin/python3 /usr/local/lib/deepseek/spot_watcher.py\n"
            # It exits after draining: that instance is going away.
            "Restart=on-failure\nRestartSec=5\n\n"
            "[Install]\nWantedBy=multi-user.target\n")} if plan.spot else {}),
        "deepseek-log-export.service": (
            "[Unit]\nDescription=Runtime journal as JSON lines for the CloudWatch agent\n\n"
            "[Service]\nType=simple\n"
            f"ExecStart=/bin/sh -c 'exec journalctl --follow --lines=0 --output=json "
            f"--output-fields=MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,CONTAINER_NAME,_SYSTEMD_UNIT "
            f"SYSLOG_IDENTIFIER={CONTAINER} >> {RUNTIME_LOG}'\n"
            "Restart=always\nRestartSec=5\n\n"
            "[Install]\nWantedBy=multi-user.target\n"),
    }


def runtime_scrape_config(plan: HostPlan) -> dict:
    """The agent's Prometheus scrape of the runtime's /metrics (a YAML file; JSON is YAML),
    kept in an SSM parameter: the runtime listens on the host's private address, known only at
    boot, so the host-env unit writes the file with `@HOST@` replaced. Stack and Model become
    labels and then the metrics' dimensions; only the series the stack uses are kept."""
    keep = "|".join(re.escape(name) for name in AGENT_SERIES[plan.launch.runtime])
    return {
        "global": {"scrape_interval": "60s", "scrape_timeout": "10s"},
        "scrape_configs": [{
            "job_name": SCRAPE_JOB,
            "metrics_path": plan.launch.metrics_path,
            "static_configs": [{"targets": [f"@HOST@:{plan.launch.port}"]}],
            "relabel_configs": [{"target_label": "Stack", "replacement": plan.stack},
                                {"target_label": "Model", "replacement": plan.model_name}],
            "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": f"({keep})", "action": "keep"}],
        }],
    }


def prometheus_agent_section(plan: HostPlan) -> dict:
    """`logs.metrics_collected.prometheus`: scrape, then publish as metrics through EMF
    (AWS, "Set up and configure Prometheus metrics collection on Amazon EC2 instances")."""
    return {
        "log_group_name": plan.prometheus_log_group_name,
        "prometheus_config_path": PROMETHEUS_CONFIG,
        "emf_processor": {
            "metric_declaration_dedup": True,
            "metric_namespace": plan.metrics_namespace,
            "metric_declaration": [{
                "source_labels": ["job"], "label_matcher": f"^{SCRAPE_JOB}$",
                "dimensions": [["Stack", "Model"]],
                "metric_selectors": [f"^{re.escape(name)}$" for name in AGENT_SERIES[plan.launch.runtime]],
            }],
        },
    }


def cloudwatch_agent_config(plan: HostPlan) -> dict:
    """CloudWatch agent: ship the runtime's JSON log; GPU, memory and disk metrics per ASG;
    the runtime's token counters and gauges through its Prometheus support."""
    config = _agent_base_config(plan)
    if plan.scrapes_runtime:
        config["logs"]["metrics_collected"] = {"prometheus": prometheus_agent_section(plan)}
    return config


def _agent_base_config(plan: HostPlan) -> dict:
    return {
        "agent": {"metrics_collection_interval": 60, "run_as_user": "root"},
        "logs": {"logs_collected": {"files": {"collect_list": [{
            "file_path": RUNTIME_LOG,
            "log_group_name": plan.log_group_name,
            "log_stream_name": "{instance_id}",
            # The log group (retention, KMS key) is created by the stack, not the agent.
            "retention_in_days": -1,
        }]}}},
        "metrics": {
            "namespace": plan.metrics_namespace,
            "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}",
                                  "InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": {
                "nvidia_gpu": {"measurement": ["utilization_gpu", "memory_used", "memory_total",
                                               "temperature_gpu"]},
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/", CACHE_MOUNT]},
            },
        },
    }


LOGROTATE = f"""{RUNTIME_LOG} {{
  daily
  rotate 3
  maxsize 200M
  missingok
  notifempty
  copytruncate
  compress
}}
"""

# Bound the journal itself; the JSON export is what leaves the host.
JOURNALD = "[Journal]\nSystemMaxUse=2G\nMaxRetentionSec=7day\n"


def cloud_config(plan: HostPlan) -> dict:
    """The `#cloud-config` document as data."""
    launch = plan.launch
    if plan.weights_source == "s3" and not plan.s3_uri:
        raise HostProvisioningError(f"model {plan.model_name}: weights.source s3 needs s3_uri")
    files = [
        _file(ENV_FILE, "".join(f"{k}={shlex.quote(v)}\n" for k, v in model_env(plan).items() if v),
              "0644"),
        _file("/etc/deepseek/warmup.json", json.dumps(launch.warmup_request["json"]) + "\n", "0644"),
        *(_runtime_config_file(name, text) for name, text in sorted(launch.config_files.items())),
        # Compressed (16 KB cap): scripts with no runtime flag or secret in them.
        _gzip_file("/usr/local/sbin/deepseek-prepare-host", PREPARE_HOST, "0755"),
        _gzip_file("/usr/local/sbin/deepseek-host-env", HOST_ENV, "0755"),
        _gzip_file("/usr/local/sbin/deepseek-pull-image", PULL_IMAGE, "0755"),
        _gzip_file("/usr/local/sbin/deepseek-fetch-weights", FETCH_WEIGHTS, "0755"),
        _gzip_file("/usr/local/sbin/deepseek-warmup", warmup_script(launch.runtime), "0755"),
        # Compressed: the gate is the largest file and user data is capped at 16 KB; its
        # source is GATE_SCRIPT above (a plan diff shows that it changed, the repo diff how).
        _gzip_file("/usr/local/lib/deepseek/health_gate.py", GATE_SCRIPT, "0644"),
        _file("/etc/logrotate.d/deepseek", LOGROTATE, "0644"),
        _file("/etc/systemd/journald.conf.d/deepseek.conf", JOURNALD, "0644"),
    ]
    if plan.spot:
        files.append(_gzip_file("/usr/local/lib/deepseek/spot_watcher.py", WATCHER_SCRIPT, "0644"))
    files += [_file(f"/etc/systemd/system/{name}", text, "0644")
              for name, text in systemd_units(plan).items()]
    if plan.local_storage == "instance_store":
        storage: dict = {"bootcmd": [["bash", "-c", ASSEMBLE_INSTANCE_STORE]]}
    else:
        storage = {
            # The model cache volume: formatted once (never over an existing filesystem) and
            # mounted by label, so a reboot or replacement device converges the same way.
            "fs_setup": [{"label": CACHE_LABEL, "filesystem": "xfs", "device": CACHE_DEVICE,
                          "partition": "none", "overwrite": False}],
            "mounts": [[f"LABEL={CACHE_LABEL}", CACHE_MOUNT, "xfs", "defaults,nofail,noatime", "0", "2"]],
        }
    return {
        **storage,
        "write_files": files,
        "runcmd": [
            ["mkdir", "-p", f"{CACHE_MOUNT}/models"],
            ["/usr/local/sbin/deepseek-prepare-host"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "restart", "systemd-journald"],
            # Writes the agent's scrape configuration before the agent starts.
            ["systemctl", "start", "deepseek-host-env.service"],
            ["/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl", "-a", "fetch-config",
             "-m", "ec2", "-s", "-c", f"ssm:{plan.agent_config_parameter}"],
            ["systemctl", "enable", "--now", "deepseek-log-export.service",
             "deepseek-health-gate.service"]
            + (["deepseek-spot-watcher.service"] if plan.spot else []),
            # Not waited for: weights and model load outlast cloud-init; the ASG grace
            # period and the health gate cover them.
            ["systemctl", "enable", "--now", "--no-block", "deepseek-runtime.service"],
        ],
    }


def _file(path: str, content: str, permissions: str) -> dict:
    # No `owner`: cloud-init writes files as root:root unless told otherwise (cloud-init docs,
    # write_files), and every byte of user data counts against EC2's 16 KB; for the same
    # reason no `permissions` when they are cloud-init's default, 0644 (DEFAULT_PERMS in
    # cloudinit/config/cc_write_files.py).
    entry = {"path": path, "content": content}
    if permissions != "0644":
        entry["permissions"] = permissions
    return entry


def _runtime_config_file(name: str, text: str) -> dict:
    """A file of RUNTIME_CONFIG_DIR: settings as text; Python modules (the vLLM priority
    middleware) compressed, being code rather than settings and most of the 16 KB."""
    path = f"{RUNTIME_CONFIG_DIR}/{name}"
    return _gzip_file(path, text, "0644") if name.endswith(".py") else _file(path, text, "0644")


def _gzip_file(path: str, content: str, permissions: str) -> dict:
    """A write_files entry cloud-init decompresses (`encoding: gz+b64`); mtime 0 keeps the
    bytes, and so the plan, the same between runs."""
    data = base64.b64encode(gzip.compress(content.encode(), mtime=0)).decode()
    return {**_file(path, data, permissions), "encoding": "gz+b64"}


def file_content(entry: dict) -> str:
    """A write_files entry's text as cloud-init writes it (plain, or gz+b64)."""
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"])).decode()
    return entry["content"]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts, units) as literal blocks: readable in a plan diff and small."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def user_data_payload(text: str, model_name: str) -> bytes:
    """The bytes EC2 receives: the text, or gzip of it when the text alone is over the
    16 KB limit (cloud-init unpacks gzip user data:
    https://cloudinit.readthedocs.io/en/latest/explanation/format.html): the instance-store
    variant (its RAID0 assembly script) and vLLM with priority scheduling (the middleware
    module) need it."""
    raw = text.encode()
    if len(raw) <= USER_DATA_LIMIT:
        return raw
    packed = gzip.compress(raw, mtime=0)
    if len(packed) > USER_DATA_LIMIT:
        raise HostProvisioningError(
            f"model {model_name}: user data is {len(packed)} bytes even compressed, over EC2's "
            f"{USER_DATA_LIMIT}; shorten the scripts in components/ec2/host.py")
    return packed


def user_data_text(encoded: str) -> str:
    """A launch template's `user_data` (base64 of user_data_payload) as cloud-init reads it."""
    raw = base64.b64decode(encoded)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def render_user_data(plan: HostPlan) -> str:
    """The user data text: `#cloud-config` plus the document, within EC2's 16 KB limit
    (compressed by `user_data_payload` when the text alone is over it)."""
    text = "#cloud-config\n" + yaml.dump(cloud_config(plan), Dumper=_Dumper, sort_keys=False,
                                         width=1000)
    user_data_payload(text, plan.model_name)  # refuses what does not fit even compressed
    return text
