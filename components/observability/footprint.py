"""Requests and limits of the observability charts' small components, in one table so the stack's footprint is
known (tools/plan.py adds them up)."""

from __future__ import annotations

from components.config import ResourceSpec

FOOTPRINT = {
    "prometheus-operator": ResourceSpec({"cpu": "50m", "memory": "64Mi"}, {"cpu": "500m", "memory": "256Mi"}),
    "config-reloader": ResourceSpec({"cpu": "10m", "memory": "16Mi"}, {"cpu": "100m", "memory": "64Mi"}),
    "webhook-certgen": ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "100m", "memory": "64Mi"}),
    "alertmanager": ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"}),
    "kube-state-metrics": ResourceSpec({"cpu": "20m", "memory": "64Mi"}, {"cpu": "200m", "memory": "256Mi"}),
    "node-exporter": ResourceSpec({"cpu": "20m", "memory": "32Mi"}, {"cpu": "200m", "memory": "64Mi"}),
    "grafana-sidecar": ResourceSpec({"cpu": "10m", "memory": "48Mi"}, {"cpu": "200m", "memory": "128Mi"}),
    "alloy": ResourceSpec({"cpu": "50m", "memory": "96Mi"}, {"cpu": "500m", "memory": "512Mi"}),
}
"""Requests and limits of the small chart components, set explicitly so the stack's footprint is known; the big
three (Prometheus, Grafana, Loki) come from config."""
