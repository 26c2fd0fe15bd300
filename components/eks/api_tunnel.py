"""The way in to a private cluster's API for `pulumi up`: a port forward through SSM.

The cluster endpoint stays private in every phase: no temporary public endpoint, no
allow-listed laptop address to forget. A small host in a private subnet runs only the SSM
agent (no inbound rules, no public address, no SSH); Session Manager's
AWS-StartPortForwardingSessionToRemoteHost document forwards a local port through it to
the endpoint (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-sessions-start.html#sessions-remote-port-forwarding).
The host reaches SSM through the VPC's interface endpoints and nothing but the cluster
endpoint on 443; sessions are logged by Session Manager like any other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.iam import service_trust_policy_json
from components.session_manager import session_logging_policy_json

# The host only relays TLS bytes: the smallest size of a family on the pack's approved list
# (policies/config: approved-capacity), Graviton for the price.
TUNNEL_INSTANCE_TYPE = "m7g.medium"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
PORT_FORWARD_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"


@dataclass
class ApiTunnelArgs:
    vpc_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    endpoint_security_group_id: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    region: str
    account_id: pulumi.Input[str]
    partition: str = "aws"


class ApiTunnel(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: ApiTunnelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("deepseek:api_tunnel:ApiTunnel", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, description="SSM tunnel host: no inbound; out to SSM and the EKS API",
            opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-ssm", security_group_id=group.id, ip_protocol="tcp", from_port=443, to_port=443,
            referenced_security_group_id=args.endpoint_security_group_id,
            description="Session Manager through the VPC's interface endpoints", opts=child)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-api", security_group_id=group.id, ip_protocol="tcp", from_port=443, to_port=443,
            referenced_security_group_id=args.cluster_security_group_id,
            description="The private EKS API endpoint", opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-api-from-tunnel", security_group_id=args.cluster_security_group_id, ip_protocol="tcp",
            from_port=443, to_port=443, referenced_security_group_id=group.id,
            description="kubectl and pulumi through the SSM tunnel host", opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-from-tunnel", security_group_id=args.endpoint_security_group_id,
            ip_protocol="tcp", from_port=443, to_port=443, referenced_security_group_id=group.id,
            description="SSM agent of the tunnel host", opts=child)

        role = aws.iam.Role(
            f"{name}-role", assume_role_policy=service_trust_policy_json("ec2.amazonaws.com"),
            description="SSM tunnel host: Session Manager only", opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-ssm", role=role.name, policy_arn=SSM_CORE_POLICY, opts=child)
        # Sessions are logged and encrypted under the account's Session Manager preferences.
        aws.iam.RolePolicy(f"{name}-session-logging", role=role.id,
                           policy=session_logging_policy_json(args.account_id, args.region, args.partition),
                           opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        ami = aws.ssm.get_parameter_output(name=AMI_PARAMETER, opts=pulumi.InvokeOutputOptions(parent=self))

        instance = aws.ec2.Instance(
            f"{name}-host", ami=ami.value, instance_type=TUNNEL_INSTANCE_TYPE, subnet_id=args.subnet_id,
            vpc_security_group_ids=[group.id], iam_instance_profile=profile.name,
            associate_public_ip_address=False,
            metadata_options={"http_tokens": "required", "http_put_response_hop_limit": 1,
                              "http_endpoint": "enabled"},
            root_block_device={"encrypted": True, "kms_key_id": args.data_key_arn, "volume_type": "gp3",
                               "volume_size": 8},
            tags={"Name": f"{name}-host", "deepseek-serving/role": "api-tunnel"},
            # A new AMI release must not replace the host under an open session.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]))
        self.instance_id = instance.id
        self.register_outputs({"instance_id": self.instance_id})


def port_forward_parameters(endpoint: str, local_port: int) -> str:
    """The SSM document parameters that forward `local_port` to the cluster endpoint."""
    host = endpoint.removeprefix("https://").rstrip("/")
    return json.dumps({"host": [host], "portNumber": ["443"], "localPortNumber": [str(local_port)]})


def tunnelled_server(local_port: int) -> str:
    return f"https://127.0.0.1:{local_port}"


def tls_server_name(endpoint: str) -> str:
    return endpoint.removeprefix("https://").rstrip("/")

