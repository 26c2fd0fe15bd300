"""The stack's ECR pull-through cache: one rule per upstream registry its EC2 images come from.

EC2 hosts have no internet egress; they pull `<account>.dkr.ecr.<region>.amazonaws.com/
<stack>/<upstream>/<repository>@<digest>` through the VPC's ECR endpoints, and ECR fetches
the upstream image on the first pull (components/serving/images.py). Rules are per stack
(prefix `<stack>/<upstream>`), so two stacks in one account neither collide on a prefix nor
remove each other's cache when one is destroyed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.serving.images import HostImage, cache_prefix


@dataclass
class PullThroughCacheArgs:
    stack: str
    # What each model's hosts pull (images already in ECR need no rule).
    images: Sequence[HostImage]
    # Upstream name -> ARN of its ecr-pullthroughcache/ secret (inventory image_cache.credentials).
    credentials: Mapping[str, str] = field(default_factory=dict)


class PullThroughCache(pulumi.ComponentResource):
    rules: list[aws.ecr.PullThroughCacheRule]
    prefixes: dict[str, str]

    def __init__(self, name: str, args: PullThroughCacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:image_cache:PullThroughCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        upstreams = {image.upstream.name: image.upstream for image in args.images if image.upstream}
        self.prefixes = {}
        self.rules = []
        for upstream_name in sorted(upstreams):
            upstream = upstreams[upstream_name]
            prefix = cache_prefix(args.stack, upstream)
            self.prefixes[upstream_name] = prefix
            self.rules.append(aws.ecr.PullThroughCacheRule(
                f"{name}-{upstream.short}", ecr_repository_prefix=prefix, upstream_registry_url=upstream.url,
                # Only the secret's ARN: ECR reads the credential itself, nothing passes through here.
                credential_arn=args.credentials.get(upstream_name) if upstream.credential_required else None,
                opts=child))
        self.register_outputs({"prefixes": self.prefixes})
