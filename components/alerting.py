"""Alerting conventions shared by the CloudWatch alarms (EC2 and the gateway) and the
Prometheus rules on EKS, so both platforms page on the same conditions with the same runbook."""

# A GPU busier than this is doing work; below it with requests admitted, nothing moves.
STUCK_GPU_PERCENT = 5
RUNBOOK = "docs/OPERATIONS.md"
