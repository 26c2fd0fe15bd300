"""managed-platform-not-public through the analyzer protocol: platforms that hand out public URLs
or addresses, in dict and typed-Args spellings, with compliant twins that must pass."""
from __future__ import annotations

import pulumi_aws as aws
import pytest

from tests.policy_helpers import expect_clean, expect_violation, judge, pack, unknown_of

__all__ = ["pack"]

POLICY = "managed-platform-not-public"
APP_RUNNER = "aws:apprunner/service:Service"
AMPLIFY_APP = "aws:amplify/app:App"
AMPLIFY_BRANCH = "aws:amplify/branch:Branch"
BEANSTALK = "aws:elasticbeanstalk/environment:Environment"
_IMAGE = {"image_repository": {"image_identifier": "public.ecr.aws/x/vllm:latest", "image_repository_type": "ECR_PUBLIC",
                               "image_configuration": {"port": "8000"}}, "auto_deployments_enabled": False}


def app_runner_default():
    aws.apprunner.Service("svc", service_name="chat", source_configuration=_IMAGE)


def app_runner_public_typed():
    aws.apprunner.Service("svc", aws.apprunner.ServiceArgs(
        service_name="chat", source_configuration=_IMAGE,
        network_configuration=aws.apprunner.ServiceNetworkConfigurationArgs(
            ingress_configuration=aws.apprunner.ServiceNetworkConfigurationIngressConfigurationArgs(
                is_publicly_accessible=True))))


def app_runner_unknown():
    aws.apprunner.Service("svc", service_name="chat", source_configuration=_IMAGE,
                          network_configuration={"ingress_configuration": {
                              "is_publicly_accessible": unknown_of(False)}})


def amplify_app_default():
    aws.amplify.App("site", name="chat-ui", repository="https://github.com/example/ui")


def amplify_branch_basic_auth_off():
    app = aws.amplify.App("site", name="chat-ui", enable_basic_auth=True, basic_auth_credentials="dXNlcjpwYXNz")
    aws.amplify.Branch("main", app_id=app.id, branch_name="main", enable_basic_auth=False)


def beanstalk_default_public_lb():
    app = aws.elasticbeanstalk.Application("app", name="chat")
    aws.elasticbeanstalk.Environment("env", application=app.name,
                                     solution_stack_name="64bit Amazon Linux 2023 v4.3.0 running Docker",
                                     settings=[{"namespace": "aws:ec2:vpc", "name": "VPCId", "value": "vpc-1"}])


def beanstalk_single_instance_typed():
    aws.elasticbeanstalk.Environment("env", application="chat", solution_stack_name="Docker", settings=[
        aws.elasticbeanstalk.EnvironmentSettingArgs(namespace="aws:elasticbeanstalk:environment",
                                                    name="EnvironmentType", value="SingleInstance"),
        aws.elasticbeanstalk.EnvironmentSettingArgs(namespace="aws:ec2:vpc", name="ELBScheme", value="internal")])


def beanstalk_public_ips():
    aws.elasticbeanstalk.Environment("env", application="chat", solution_stack_name="Docker", settings=[
        {"namespace": "aws:ec2:vpc", "name": "ELBScheme", "value": "internal"},
        {"namespace": "aws:ec2:vpc", "name": "AssociatePublicIpAddress", "value": "true"}])


def lightsail_instance():
    aws.lightsail.Instance("box", availability_zone="us-east-1a", blueprint_id="ubuntu_22_04", bundle_id="gpu_xl_2_0")


def lightsail_open_ports_default_cidrs():
    aws.lightsail.InstancePublicPorts("ports", instance_name="box", port_infos=[
        {"protocol": "tcp", "from_port": 8000, "to_port": 8000}])


def lightsail_container_service_typed():
    aws.lightsail.ContainerService("containers", aws.lightsail.ContainerServiceArgs(
        name="chat", power="nano", scale=1))


def lightsail_public_database():
    aws.lightsail.Database("db", relational_database_name="db", blueprint_id="postgres_16", bundle_id="micro_2_0",
                           master_database_name="app", master_username="app", master_password="x" * 12,
                           publicly_accessible=True)


CASES = [
    ("app-runner-default", app_runner_default, APP_RUNNER, "svc"),
    ("app-runner-public-typed", app_runner_public_typed, APP_RUNNER, "svc"),
    ("app-runner-unknown", app_runner_unknown, APP_RUNNER, "svc"),
    ("amplify-app-default", amplify_app_default, AMPLIFY_APP, "site"),
    ("amplify-branch-basic-auth-off", amplify_branch_basic_auth_off, AMPLIFY_BRANCH, "main"),
    ("beanstalk-default-public-lb", beanstalk_default_public_lb, BEANSTALK, "env"),
    ("beanstalk-single-instance-typed", beanstalk_single_instance_typed, BEANSTALK, "env"),
    ("beanstalk-public-ips", beanstalk_public_ips, BEANSTALK, "env"),
    ("lightsail-instance", lightsail_instance, "aws:lightsail/instance:Instance", "box"),
    ("lightsail-open-ports", lightsail_open_ports_default_cidrs, "aws:lightsail/instancePublicPorts:InstancePublicPorts",
     "ports"),
    ("lightsail-container-service-typed", lightsail_container_service_typed,
     "aws:lightsail/containerService:ContainerService", "containers"),
    ("lightsail-public-database", lightsail_public_database, "aws:lightsail/database:Database", "db"),
]


@pytest.mark.parametrize("program,type_token,name", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_public_platform_endpoint_is_a_mandatory_violation(pack, program, type_token, name):
    expect_violation(judge(pack, program, "dev"), POLICY, type_token, name)


def compliant_twins():
    aws.apprunner.Service("svc", service_name="chat", source_configuration=_IMAGE, network_configuration={
        "ingress_configuration": {"is_publicly_accessible": False}})
    app = aws.amplify.App("site", name="chat-ui", enable_basic_auth=True, basic_auth_credentials="dXNlcjpwYXNz")
    aws.amplify.Branch("main", app_id=app.id, branch_name="main")
    aws.elasticbeanstalk.Environment("env", application="chat", solution_stack_name="Docker", settings=[
        {"namespace": "aws:ec2:vpc", "name": "ELBScheme", "value": "internal"},
        {"namespace": "aws:ec2:vpc", "name": "AssociatePublicIpAddress", "value": "false"}])
    aws.elasticbeanstalk.Environment("worker", application="chat", solution_stack_name="Docker", tier="Worker")
    aws.lightsail.ContainerService("containers", name="chat", power="nano", scale=1, is_disabled=True)
    aws.lightsail.InstancePublicPorts("ports", instance_name="box", port_infos=[
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["10.0.0.0/8"]}])


def test_the_compliant_twins_pass(pack):
    verdict = judge(pack, compliant_twins, "prod")
    expect_clean(verdict, POLICY)
    expect_clean(verdict, "entry-point-classified")
