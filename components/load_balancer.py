"""The internal TLS load balancer in front of one model's replicas (shared by both platforms).

One Network Load Balancer per model: models are isolated from each other (a flapping
model cannot drain another's targets), and an API Gateway VPC link (v1) targets exactly
one NLB, so the gateway routes a model to its own link.

Request path: API Gateway -> VPC link (PrivateLink) -> NLB TLS listener on 443 -> TCP to
the runtime's port on the target. The NLB terminates TLS with an ACM certificate for the
inventory's `internal_domain`; the hop from the NLB to the target stays inside the VPC on
plain TCP, because the runtimes speak HTTP and re-encrypting would need a certificate on
every replica for no additional boundary (the target only admits the NLB's security group).

Security groups (attached at creation: an NLB created without one can never get one):
- The NLB's group admits no client CIDR by default. API Gateway reaches the NLB through
  PrivateLink, whose source addresses are not in the VPC (re:Post "unable to connect api
  gateway to internal network load balancer in vpc": allowing the VPC CIDR did not work,
  turning enforcement off did), so `enforce_security_group_inbound_rules_on_private_link_
  traffic` is "off": PrivateLink traffic, which only the VPC link creates, skips the
  inbound rules, while every other source in the VPC is refused. That is the product's
  promise: only the gateway can reach the model. `client_cidrs` can open 443 to named
  ranges (for example a VPC link v2, whose ENIs sit in the VPC).
- Its egress reaches only the VPC on the target and health-check ports: NLB health
  checks obey outbound rules, not inbound ones (ELB docs, "Update the security groups for
  your Network Load Balancer").
- Targets admit the target and health ports only from this group (the fleet or pod
  security group references `security_group_id`).

Health checks must not kill live streams: when a target turns unhealthy an NLB resets its
connections unless `target_health_states` turns that off; then the target drains for
`unhealthy_draining_seconds`. Deregistration (scale-in, rolling update) keeps existing
connections for `deregistration_delay_seconds` and does not terminate them at the end of
the delay either, so a stream in progress finishes.

The TLS listener's idle timeout is fixed at 350 s (only TCP listeners accept
`tcp_idle_timeout_seconds`); the gateway's 5-minute stream idle timeout is the tighter one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.config import Certificate as CertificateSettings

LISTENER_PORT = 443
# TLS 1.3 and 1.2 only, forward-secret ciphers: the policy the ELB console proposes for
# new TLS listeners (ELB docs, "Security policies for your Network Load Balancer").
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass
class HealthCheck:
    """How the NLB decides a target may receive new connections."""

    path: str
    # None: the traffic port. EC2 hosts answer on a separate gate port (see host_provisioning).
    port: Optional[int] = None
    protocol: Literal["HTTP", "HTTPS"] = "HTTP"
    matcher: str = "200"
    interval_seconds: int = 10
    timeout_seconds: int = 6
    healthy_threshold: int = 2
    # Three misses at 10 s: a brief GC pause or a long prefill does not flap the target.
    unhealthy_threshold: int = 3


@dataclass
class LoadBalancerArgs:
    model_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    vpc_cidr: str
    certificate: CertificateSettings
    # "instance" for EC2 auto scaling groups, "ip" for pods.
    target_type: Literal["instance", "ip"]
    target_port: int
    health_check: HealthCheck
    deregistration_delay_seconds: int
    cross_zone: bool
    unhealthy_draining_seconds: int
    # Ranges allowed to reach 443 besides the VPC link (PrivateLink): none by default.
    client_cidrs: Sequence[str] = field(default_factory=tuple)
    # Deleting a prod LB by accident takes the model offline: make it a two-step change.
    deletion_protection: bool = False
    # CIDRs of the subnets the NLB sits in: its nodes' addresses, the source targets see.
    subnet_cidrs: Sequence[str] = field(default_factory=tuple)


class LoadBalancer(pulumi.ComponentResource):
    arn: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]
    target_group_arn_suffix: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    listener_arn: pulumi.Output[str]
    certificate_arn: pulumi.Output[str]
    # Plain values the gateway's integration needs at preview time.
    listener_port: int
    internal_domain: str
    # True when the certificate comes from a private CA: REST API integrations then need
    # tls_config.insecure_skip_verification (API Gateway trusts only public CAs; it still
    # checks expiry and hostname).
    tls_skip_verification: bool
    target_port: int
    health_check_port: int

    def __init__(self, name: str, args: LoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:load_balancer:LoadBalancer", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        settings = args.certificate
        self.listener_port = LISTENER_PORT
        self.node_cidrs = list(args.subnet_cidrs)
        self.internal_domain = settings.internal_domain
        self.tls_skip_verification = settings.mode == "private_ca"
        self.target_port = args.target_port
        self.health_check_port = args.health_check.port or args.target_port

        self.security_group = self._create_security_group(args)
        self.certificate_arn = self._certificate(settings)

        self.load_balancer = aws.lb.LoadBalancer(
            f"{name}-nlb",
            load_balancer_type="network",
            internal=True,
            subnets=list(args.subnet_ids),
            security_groups=[self.security_group.id],
            enforce_security_group_inbound_rules_on_private_link_traffic="off",
            enable_cross_zone_load_balancing=args.cross_zone,
            enable_deletion_protection=args.deletion_protection,
            ip_address_type="ipv4",
            tags={"Name": f"{name}-nlb", "model": args.model_name},
            opts=self._child,
        )
        self.target_group = self._create_target_group(args)
        self.listener = aws.lb.Listener(
            f"{name}-tls",
            load_balancer_arn=self.load_balancer.arn,
            port=LISTENER_PORT,
            protocol="TLS",
            ssl_policy=TLS_POLICY,
            certificate_arn=self.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": self.target_group.arn}],
            tags={"model": args.model_name},
            opts=self._child,
        )

        self.arn = self.load_balancer.arn
        self.arn_suffix = self.load_balancer.arn_suffix
        self.dns_name = self.load_balancer.dns_name
        self.zone_id = self.load_balancer.zone_id
        self.target_group_arn = self.target_group.arn
        self.target_group_arn_suffix = self.target_group.arn_suffix
        self.security_group_id = self.security_group.id
        self.listener_arn = self.listener.arn
        self.register_outputs({
            "arn": self.arn,
            "arn_suffix": self.arn_suffix,
            "dns_name": self.dns_name,
            "target_group_arn": self.target_group_arn,
            "target_group_arn_suffix": self.target_group_arn_suffix,
            "security_group_id": self.security_group_id,
            "listener_arn": self.listener_arn,
            "internal_domain": self.internal_domain,
        })

    def _create_security_group(self, args: LoadBalancerArgs) -> aws.ec2.SecurityGroup:
        ingress = [{"protocol": "tcp", "from_port": LISTENER_PORT, "to_port": LISTENER_PORT,
                    "cidr_blocks": [cidr], "description": f"TLS from {cidr}"}
                   for cidr in args.client_cidrs]
        ports = sorted({args.target_port, args.health_check.port or args.target_port})
        egress = [{"protocol": "tcp", "from_port": port, "to_port": port,
                   "cidr_blocks": [args.vpc_cidr],
                   "description": "traffic and health checks to targets in the VPC"}
                  for port in ports]
        return aws.ec2.SecurityGroup(
            f"{self._name}-sg",
            vpc_id=args.vpc_id,
            description=f"NLB for model {args.model_name}: PrivateLink from the API gateway only",
            ingress=ingress,
            egress=egress,
            tags={"Name": f"{self._name}-nlb", "model": args.model_name},
            opts=self._child,
        )

    def _certificate(self, settings: CertificateSettings) -> pulumi.Output[str]:
        if settings.mode == "import":
            return pulumi.Output.from_input(settings.certificate_arn)
        # A private CA issues at once, without DNS validation (there is nothing to validate:
        # the CA vouches for the name), so no CertificateValidation resource is involved;
        # the listener depends on the certificate through its ARN. ECDSA P-256 is within
        # what NLB TLS listeners accept (RSA up to 3072 bits or ECDSA).
        certificate = aws.acm.Certificate(
            f"{self._name}-cert",
            domain_name=settings.internal_domain,
            certificate_authority_arn=settings.private_ca_arn,
            key_algorithm="EC_prime256v1",
            tags={"Name": settings.internal_domain},
            opts=self._child,
        )
        return certificate.arn

    def _create_target_group(self, args: LoadBalancerArgs) -> aws.lb.TargetGroup:
        check = args.health_check
        return aws.lb.TargetGroup(
            f"{self._name}-targets",
            vpc_id=args.vpc_id,
            target_type=args.target_type,
            protocol="TCP",
            port=args.target_port,
            # Streams finish within this delay after a target is deregistered, and the
            # connection is not cut when the delay ends either.
            deregistration_delay=args.deregistration_delay_seconds,
            connection_termination=False,
            # Clients arrive through PrivateLink, so there is no client address to keep;
            # off also avoids the internal-NLB hairpin failure for instance targets.
            preserve_client_ip="false",
            health_check={
                "enabled": True,
                "protocol": check.protocol,
                "path": check.path,
                "port": str(check.port) if check.port else "traffic-port",
                "matcher": check.matcher,
                "interval": check.interval_seconds,
                "timeout": check.timeout_seconds,
                "healthy_threshold": check.healthy_threshold,
                "unhealthy_threshold": check.unhealthy_threshold,
            },
            target_health_states=[{
                "enable_unhealthy_connection_termination": False,
                "unhealthy_draining_interval": args.unhealthy_draining_seconds,
            }],
            tags={"Name": f"{self._name}-targets", "model": args.model_name},
            opts=self._child,
        )
