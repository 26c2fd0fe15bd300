"""The EC2 platform: per model a launch template and auto scaling group (`fleet`) whose hosts
cloud-init provisions to run the runtime under systemd (`host`)."""
