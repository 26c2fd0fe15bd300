"""Where a runtime image comes from when the host has no internet egress: ECR, over the VPC endpoints.

EC2 GPU hosts reach AWS only through the VPC's endpoints (components/network.py), so every
image they run must be in Amazon ECR in the stack's region:
- an image already in that region's ECR (`models[].image`, for example the team's non-root
  TGI build) is pulled as it is;
- an image on a public registry (the catalog's vLLM and Ollama on Docker Hub, TGI on
  ghcr.io) is pulled through an ECR pull-through cache rule of the stack: the host pulls
  `<account>.dkr.ecr.<region>.amazonaws.com/<stack>/<upstream>/<repository>:<tag>@<digest>`
  and ECR fetches the upstream image on the first pull (AWS, "Sync an upstream registry
  with an Amazon ECR private registry",
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache.html).

The digest pin survives the detour: a digest names the bytes of a manifest (OCI image spec,
https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests), the cache
stores upstream's manifest rather than rebuilding it, and Docker verifies what it receives
against the digest it asked for, so a cache that held anything else fails the pull instead
of starting it. Upstreams that ECR reaches only with credentials (Docker Hub, GitHub and
GitLab container registries) take a Secrets Manager secret whose name starts with
`ecr-pullthroughcache/` (AWS, "Creating a pull through cache rule in Amazon ECR",
https://docs.aws.amazon.com/AmazonECR/latest/userguide/pull-through-cache-creating-rule.html).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


class ImageSourceError(ValueError):
    """An image the hosts could not pull without internet egress; the message says what to do."""


@dataclass(frozen=True)
class Upstream:
    # ECR's name for the registry (CreatePullThroughCacheRule `upstreamRegistry`).
    name: str
    # `upstreamRegistryUrl` as ECR expects it (AWS CLI create-pull-through-cache-rule).
    url: str
    # Registry hosts an image reference may name for it.
    hosts: tuple[str, ...]
    credential_required: bool
    # The cache's namespace under the stack's prefix (repository names stay short).
    short: str


# The upstream registries ECR's pull-through cache supports with a fixed URL (Azure's is
# per registry, so it is not offered here).
UPSTREAMS: tuple[Upstream, ...] = (
    Upstream("docker-hub", "registry-1.docker.io", ("docker.io", "registry-1.docker.io", "index.docker.io"),
             True, "docker-hub"),
    Upstream("github-container-registry", "ghcr.io", ("ghcr.io",), True, "ghcr"),
    Upstream("gitlab-container-registry", "registry.gitlab.com", ("registry.gitlab.com",), True, "gitlab"),
    Upstream("quay", "quay.io", ("quay.io",), False, "quay"),
    Upstream("ecr-public", "public.ecr.aws", ("public.ecr.aws",), False, "ecr-public"),
    Upstream("k8s", "registry.k8s.io", ("registry.k8s.io",), False, "k8s"),
)
UPSTREAMS_BY_NAME = {upstream.name: upstream for upstream in UPSTREAMS}
CREDENTIAL_UPSTREAMS = tuple(u.name for u in UPSTREAMS if u.credential_required)
# Secrets the cache may read: this name prefix, in the rule's own account and region.
CREDENTIAL_SECRET_PREFIX = "ecr-pullthroughcache/"

_ECR_REGISTRY = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
# CreatePullThroughCacheRule `ecrRepositoryPrefix`: 2..30 characters of this shape.
_PREFIX = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
PREFIX_MAX = 30
_REFERENCE = re.compile(r"^(?P<name>[^@:\s]+(?::\d+)?(?:/[^@:\s]+)*):(?P<tag>[A-Za-z0-9._-]+)"
                        r"@(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class ImageReference:
    """A reference pinned by tag and digest, normalised the way Docker reads it."""

    registry: str
    repository: str
    tag: str
    digest: str

    @property
    def pinned(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}@{self.digest}"


def parse_reference(image: str) -> ImageReference:
    """`[registry/]repository:tag@sha256:<hex>`. As Docker normalises names (distribution's
    reference.ParseNormalizedNamed): the first component is a registry when it holds a `.`
    or a `:` or is `localhost`; otherwise the image is on Docker Hub, and a one-component
    name is an official image under `library/`."""
    match = _REFERENCE.match(image)
    if not match:
        raise ImageSourceError(f"image {image!r} is not pinned as [registry/]repository:tag@sha256:<64 hex>")
    name = match["name"]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", name
    if registry in UPSTREAMS_BY_NAME["docker-hub"].hosts:
        registry = "docker.io"
        if "/" not in repository:
            repository = f"library/{repository}"
    return ImageReference(registry=registry, repository=repository, tag=match["tag"], digest=match["digest"])


def upstream_of(registry: str) -> Optional[Upstream]:
    return next((u for u in UPSTREAMS if registry in u.hosts), None)


def ecr_registry(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def cache_prefix(stack: str, upstream: Upstream) -> str:
    """The stack's repository prefix for one upstream: `<stack>/<upstream>`. Per stack, so
    two stacks in one account neither fight over a rule nor delete each other's cache."""
    prefix = f"{stack}/{upstream.short}"
    if len(prefix) > PREFIX_MAX or not _PREFIX.match(prefix):
        raise ImageSourceError(
            f"stack name {stack!r} cannot start an ECR pull-through cache prefix ({prefix!r}: lowercase "
            f"letters, digits, '.', '_' and '-', at most {PREFIX_MAX} characters with the upstream's "
            f"name); use a shorter lowercase stack name")
    return prefix


@dataclass(frozen=True)
class HostImage:
    """What a host pulls and runs, and what it must be allowed to do for it."""

    # <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>@sha256:<digest>
    reference: str
    # The ECR registry the host logs in to.
    registry: str
    # The ECR repository (for the instance role's resource ARN).
    repository: str
    account: str
    region: str
    # The pull-through rule the repository is under; None for an image already in ECR.
    upstream: Optional[Upstream] = None

    def repository_arn(self, partition: str = "aws") -> str:
        return f"arn:{partition}:ecr:{self.region}:{self.account}:repository/{self.repository}"


def host_image(image: str, *, account: str, region: str, stack: str) -> HostImage:
    """The reference an EC2 host pulls for `image`, keeping its tag and digest."""
    ref = parse_reference(image)
    in_ecr = _ECR_REGISTRY.match(ref.registry)
    if in_ecr:
        if in_ecr["region"] != region:
            raise ImageSourceError(
                f"image {image} is in ECR in {in_ecr['region']}, but hosts reach only the ECR of "
                f"their own region ({region}) through its VPC endpoints: replicate the repository to "
                f"{region} (ECR replication) and name that copy")
        return HostImage(reference=ref.pinned, registry=ref.registry, repository=ref.repository,
                         account=in_ecr["account"], region=region)
    upstream = upstream_of(ref.registry)
    if upstream is None:
        supported = ", ".join(host for u in UPSTREAMS for host in u.hosts[:1])
        raise ImageSourceError(
            f"image {image} is on {ref.registry}, which ECR's pull-through cache does not mirror "
            f"(it mirrors {supported}); hosts have no internet egress, so push the image to ECR in "
            f"{region} and name that copy in models[].image")
    registry = ecr_registry(account, region)
    repository = f"{cache_prefix(stack, upstream)}/{ref.repository}"
    return HostImage(reference=f"{registry}/{repository}:{ref.tag}@{ref.digest}", registry=registry,
                     repository=repository, account=account, region=region, upstream=upstream)
