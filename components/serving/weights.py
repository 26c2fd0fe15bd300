"""How downloaded weights are verified before any runtime may load them, on either platform.

The inventory pins `weights.manifest_sha256`: the sha256 of a SHA256SUMS manifest with one
`sha256sum` line per file. The same shell fragment runs on EC2 hosts (cloud-init's fetch
script) and in the EKS init container, so one pinned hash means the same thing on both:
1. the manifest is the pinned one; 2. every file matches it; 3. no unlisted file is present.

A Hugging Face repository ships no SHA256SUMS, so for `source: hub` the fragment writes
the canonical one (lines sorted by path in the C locale, as printed below) and the pinned
hash decides. Operators compute the pin the same way from a trusted download.
"""
from __future__ import annotations

# POSIX sh (the EKS init image and bash on EC2 both run it). Expects the working directory
# to hold the downloaded files, and WEIGHTS_SOURCE and MANIFEST_SHA256 in the environment.
VERIFY_WEIGHTS_SH = r"""if [ ! -f SHA256SUMS ] && [ "$WEIGHTS_SOURCE" = hub ]; then
  # A hub repository ships no manifest: write the canonical one; the pinned hash decides.
  find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -r -d '\n' sha256sum > SHA256SUMS
fi
# 1. the manifest is the one the inventory pins; 2. every file matches it; 3. nothing unlisted.
echo "$MANIFEST_SHA256  SHA256SUMS" | sha256sum --check --strict --quiet -
n=$(nproc);c=$(mktemp -d);split -en r/$n SHA256SUMS $c/
find $c -type f|xargs -n1 -P$n sha256sum -c --strict --quiet;rm -r $c
listed=$(awk '{sub(/^\*/, "", $2); print $2}' SHA256SUMS | sed 's#^\./##' | LC_ALL=C sort)
present=$(find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort)
[ "$listed" = "$present" ] || { echo "weights: files not in the manifest" >&2; exit 1; }
"""

# What an operator runs over a trusted copy of the weights to get `manifest_sha256`.
PIN_COMMAND = ("find . -type f ! -name SHA256SUMS -printf '%P\\n' | LC_ALL=C sort | "
               "xargs -r -d '\\n' sha256sum > SHA256SUMS && sha256sum SHA256SUMS")

# How many S3 requests the AWS CLI keeps in flight (its default is 10). Safetensors shards
# are several GiB each: more concurrent ranged GETs fill a 100+ Gbps NIC
# (https://docs.aws.amazon.com/cli/latest/topic/s3-config.html: max_concurrent_requests,
# S3 performance guidelines: parallel requests).
S3_MAX_CONCURRENT_REQUESTS = 64



def s3_download_command(source: str, destination: str, *, resume: bool = False) -> str:
    """Shell lines downloading `source` (an S3 prefix) into `destination` with
    S3_MAX_CONCURRENT_REQUESTS requests in flight (set in the CLI's config under $HOME).
    Arguments are shell words, quoted by the caller. `resume`: `aws s3 sync`, which skips
    files already complete (an init container that restarts keeps its emptyDir);
    otherwise `aws s3 cp --recursive` into a fresh directory."""
    verb = "sync" if resume else "cp --recursive"
    return (f"aws configure set default.s3.max_concurrent_requests {S3_MAX_CONCURRENT_REQUESTS}\n"
            f"aws s3 {verb} --only-show-errors {source} {destination}\n")
