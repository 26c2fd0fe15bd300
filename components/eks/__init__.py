"""The EKS platform: the private cluster and its GPU node groups (`cluster`), the add-ons every
model relies on (`addons`), one ModelService per model (`model_service`) and the cluster's
Prometheus alerting (`monitoring`)."""
