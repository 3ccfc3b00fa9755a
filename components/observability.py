"""Metrics, logs and dashboards: kube-prometheus-stack, Loki (monolithic) and Grafana Alloy shipping pod logs.

Secrets never pass through Helm values: Grafana's admin and Alertmanager's whole configuration (which may hold a
webhook URL) are Kubernetes Secrets created here, and the charts are given their names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import kube
from components.config import ObservabilityConfig, ResourceSpec, StackConfig, quantity_value
from components.facts import (
    ANYWHERE,
    CHART_RESTRICTED,
    BucketUse,
    ComponentFacts,
    Flow,
    NamespaceFact,
    NodePortTarget,
    PodSecurity,
)
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import CHARTS

NAMESPACE = "observability"
NODE_METRICS_NAMESPACE = "node-metrics"
KPS_NAME = "kps"
"""fullnameOverride of kube-prometheus-stack: object names stay short and predictable (kps-prometheus, ...)."""
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
"""Grafana's container port (its Service listens on 80)."""
LOKI_PORT = 3100
OPERATOR_WEBHOOK_PORT = 10250
"""The Prometheus operator's admission webhook."""
LOKI_CONSUMER = "loki"
"""Loki's object-store consumer name (cloud engines): its credentials Secret is `loki-s3-credentials`."""
GRAFANA_ADMIN_SECRET = "grafana-admin"
ALERTMANAGER_CONFIG_SECRET = "alertmanager-config"
LOKI_SCHEMA_START = "2026-11-01"
"""First day of Loki's TSDB v13 schema period; a later schema change adds a period, it never edits this one."""

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

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def facts(config: StackConfig) -> ComponentFacts:
    """Prometheus, Alertmanager, Grafana, Loki and Alloy run in `observability`, node-exporter alone in
    `node-metrics`. Prometheus scrapes every other namespace (see `scrape_flow`); with a cloud object store Loki
    keeps its chunks in a bucket."""
    loki_bucket = config.observability.loki.bucket
    return ComponentFacts(
        "observability",
        namespaces=(
            NamespaceFact(NAMESPACE, CHART_RESTRICTED),
            NamespaceFact(NODE_METRICS_NAMESPACE, PodSecurity(
                "privileged", "node-exporter reads the host's network, PIDs and root filesystem; nothing else runs here",
            )),
        ),
        flows=(Flow("operator-webhook", NAMESPACE, (OPERATOR_WEBHOOK_PORT,), (ANYWHERE,)),),
        node_ports={
            "prometheus": NodePortTarget(NAMESPACE, PROMETHEUS_PORT),
            "grafana": NodePortTarget(NAMESPACE, GRAFANA_PORT),
            "loki": NodePortTarget(NAMESPACE, LOKI_PORT),
        },
        buckets=(BucketUse(LOKI_CONSUMER, NAMESPACE, (loki_bucket,)),) if config.object_store.engine != "minio" else (),
    )


def scrape_flow(namespace: str) -> Flow:
    """Prometheus scraping every metrics port of a namespace."""
    return Flow("prometheus-scrape", namespace, (), (NAMESPACE,), source_pods={"app.kubernetes.io/name": "prometheus"})


@dataclass(frozen=True)
class LokiObjectStorage:
    """Loki's chunks and index in a bucket of the ObjectStore (s3/r2 engines)."""

    bucket: pulumi.Input[str]
    """Bucket name."""
    endpoint: pulumi.Input[str]
    """S3 endpoint URL."""
    region: pulumi.Input[str]
    """S3 region (`auto` on R2)."""
    credentials_secret: pulumi.Input[str]
    """Secret in the observability namespace with the bucket consumer's access key pair."""


@dataclass(frozen=True)
class ObservabilityStackArgs:
    """What an ObservabilityStack needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace of Prometheus, Alertmanager, Grafana, Loki and Alloy."""
    node_metrics_namespace: pulumi.Input[str]
    """Namespace of node-exporter, the only piece that needs the host's network, PIDs and filesystem."""
    config: ObservabilityConfig
    """Retention, sizes, resources and the alert receiver."""
    storage_class: pulumi.Input[str]
    """The Retain StorageClass every claim uses."""
    loki_objects: LokiObjectStorage | None = None
    """Where Loki keeps chunks; None: the filesystem of its claim (dev)."""
    receiver_url: pulumi.Input[str] | None = None
    """Secret webhook or Slack URL Alertmanager notifies (config.alerting.receiver other than none)."""
    node_ports: Mapping[str, int] = field(default_factory=dict)
    """Host NodePorts by role (prometheus, grafana, loki); empty: ClusterIP only."""
    protect: bool = False
    """Protect the releases that own claims (prod)."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""


class ObservabilityStack(pulumi.ComponentResource):
    """Prometheus with Alertmanager and Grafana, Loki for logs, Alloy shipping every pod's logs to Loki."""

    ready: pulumi.Resource
    """The kube-prometheus-stack release: depend on it before declaring monitoring.coreos.com resources."""
    grafana_admin_secret: pulumi.Output[str]
    """Secret with Grafana's `admin-user` and generated `admin-password`."""
    prometheus_url: pulumi.Output[str]
    """In-cluster URL of Prometheus."""
    grafana_url: pulumi.Output[str]
    """In-cluster URL of Grafana."""
    loki_url: pulumi.Output[str]
    """In-cluster URL of Loki."""

    def __init__(self, name: str, args: ObservabilityStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:observability:ObservabilityStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ports = dict(args.node_ports)
        dns = pulumi.Output.concat(".", args.namespace, ".svc.cluster.local")
        self.loki_url = pulumi.Output.concat("http://loki", dns, f":{LOKI_PORT}")
        self.prometheus_url = pulumi.Output.concat(f"http://{KPS_NAME}-prometheus", dns, f":{PROMETHEUS_PORT}")
        self.grafana_url = pulumi.Output.concat(f"http://{KPS_NAME}-grafana", dns, ":80")

        admin = _grafana_admin(name, args, child)
        alerting = _alertmanager_config(name, args, child)
        self.grafana_admin_secret = admin.name
        # helm.v3.Release: the operator's admission-webhook certificates come from Helm hook Jobs, which
        # helm.v4.Chart skips (the operator would then wait for its webhook certificate forever).
        self.ready = k8s.helm.v3.Release(
            f"{name}-metrics",
            name=KPS_NAME,
            chart=CHARTS["kube-prometheus-stack"].name,
            version=CHARTS["kube-prometheus-stack"].version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHARTS["kube-prometheus-stack"].repository),
            namespace=args.namespace,
            values=metrics_values(args, self.loki_url, ports),
            timeout=900,
            opts=pulumi.ResourceOptions.merge(
                kube.stateful(child, args.protect), pulumi.ResourceOptions(depends_on=[admin.resource, alerting.resource])
            ),
        )
        after_metrics = pulumi.ResourceOptions(depends_on=[self.ready])
        loki = k8s.helm.v3.Release(
            f"{name}-logs",
            name="loki",
            chart=CHARTS["loki"].name,
            version=CHARTS["loki"].version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHARTS["loki"].repository),
            namespace=args.namespace,
            values=loki_values(args),
            timeout=600,
            # After the metrics release: Loki's ServiceMonitor needs the Prometheus CRDs.
            opts=pulumi.ResourceOptions.merge(kube.stateful(child, args.protect), after_metrics),
        )
        k8s.helm.v3.Release(
            f"{name}-log-shipper",
            name="alloy",
            chart=CHARTS["alloy"].name,
            version=CHARTS["alloy"].version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHARTS["alloy"].repository),
            namespace=args.namespace,
            values=alloy_values(self.loki_url),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[loki])),
        )
        if ports.get("loki"):
            _loki_node_port(name, args.namespace, ports["loki"], pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[loki])))
        self.register_outputs({
            "grafana_admin_secret": self.grafana_admin_secret,
            "prometheus_url": self.prometheus_url,
            "grafana_url": self.grafana_url,
            "loki_url": self.loki_url,
        })


def _grafana_admin(name: str, args: ObservabilityStackArgs, child: pulumi.ResourceOptions) -> StoredSecret:
    """A generated admin password: never the chart's `prom-operator`, never admin/admin."""
    password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
    return args.secrets.secret(
        f"{name}-grafana-admin",
        name=GRAFANA_ADMIN_SECRET,
        namespace=args.namespace,
        labels=kube.labels("grafana", "auth"),
        data={"admin-user": "admin", "admin-password": password.result},
        opts=child,
    )


def alertmanager_config(receiver: str, url: str | None, slack_channel: str = "") -> str:
    """Alertmanager's whole configuration file. Alerts group per namespace and alert; critical ones silence the
    warnings they imply; a receiver of `none` keeps alerts visible in Alertmanager and Grafana only."""
    target: dict = {"name": "platform"}
    if receiver == "webhook":
        target["webhook_configs"] = [{"url": url, "send_resolved": True}]
    elif receiver == "slack":
        slack = {"api_url": url, "send_resolved": True, "title": "{{ .CommonAnnotations.summary }}",
                 "text": "{{ range .Alerts }}{{ .Annotations.description }} {{ .Annotations.runbook_url }}\n{{ end }}"}
        if slack_channel:
            slack["channel"] = slack_channel
        target["slack_configs"] = [slack]
    config = {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "platform",
            "group_by": ["namespace", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            # The chart's always-firing Watchdog proves the pipeline works; it must not page anyone.
            "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}],
        },
        "inhibit_rules": [
            {"source_matchers": ["severity = critical"], "target_matchers": ["severity = warning"], "equal": ["namespace", "alertname"]},
        ],
        "receivers": [target, {"name": "null"}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _alertmanager_config(name: str, args: ObservabilityStackArgs, child: pulumi.ResourceOptions) -> StoredSecret:
    alerting = args.config.alerting
    url = pulumi.Output.secret(args.receiver_url) if args.receiver_url is not None else pulumi.Output.from_input(None)
    return args.secrets.secret(
        f"{name}-alertmanager-config",
        name=ALERTMANAGER_CONFIG_SECRET,
        namespace=args.namespace,
        labels=kube.labels("alertmanager", "config"),
        data={"alertmanager.yaml": url.apply(lambda u: alertmanager_config(alerting.receiver, u, alerting.slack_channel))},
        opts=child,
    )


def _claim_template(storage_class: pulumi.Input[str], size: str) -> dict:
    return {
        "spec": {
            "storageClassName": storage_class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
    }


def retention_size(size: str) -> str:
    """Prometheus deletes the oldest blocks beyond this, so the TSDB stops at 80 % of its claim (WAL headroom)."""
    return f"{int(quantity_value(size) * 0.8 / 2**20)}MB"


def metrics_values(args: ObservabilityStackArgs, loki_url: pulumi.Input[str], ports: Mapping[str, int]) -> dict:
    config = args.config
    small = {role: spec.as_k8s() for role, spec in FOOTPRINT.items()}
    prometheus_service = {"type": "NodePort", "nodePort": ports["prometheus"]} if ports.get("prometheus") else {}
    grafana_service = {"type": "NodePort", "nodePort": ports["grafana"]} if ports.get("grafana") else {}
    # Any ServiceMonitor, PodMonitor or PrometheusRule in any namespace is picked up, not only this release's.
    selectors = {
        f"{kind}SelectorNilUsesHelmValues": False
        for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")
    }
    return {
        "fullnameOverride": KPS_NAME,
        "crds": {"enabled": True},
        "windowsMonitoring": {"enabled": False},
        # Managed control planes (EKS) and Kind expose none of these; their default alerts would fire forever.
        **{component: {"enabled": False} for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")},
        "defaultRules": {
            "rules": {rule: False for rule in ("etcd", "kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording", "kubeProxy", "windows")},
        },
        "prometheusOperator": {
            "resources": small["prometheus-operator"],
            "prometheusConfigReloader": {"resources": small["config-reloader"]},
            "admissionWebhooks": {"patch": {"resources": small["webhook-certgen"]}},
        },
        "prometheus": {
            "service": prometheus_service,
            "prometheusSpec": {
                "retention": config.prometheus.retention,
                "retentionSize": retention_size(config.prometheus.size),
                "resources": config.prometheus.resources.as_k8s(),
                "storageSpec": {"volumeClaimTemplate": _claim_template(args.storage_class, config.prometheus.size)},
                **selectors,
            },
        },
        "alertmanager": {
            "alertmanagerSpec": {
                # The whole configuration is our Secret (it may hold a webhook URL), never Helm values.
                "useExistingSecret": True,
                "configSecret": ALERTMANAGER_CONFIG_SECRET,
                "resources": small["alertmanager"],
                "storage": {"volumeClaimTemplate": _claim_template(args.storage_class, config.alerting.size)},
            },
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "defaultDashboardsTimezone": "utc",
            "additionalDataSources": [
                {"name": "Loki", "type": "loki", "uid": "loki", "access": "proxy", "url": loki_url, "isDefault": False},
            ],
            # Keys of the grafana subchart (12.11.1) itself, below kube-prometheus-stack's section:
            "resources": config.grafana.resources.as_k8s(),
            "persistence": {"enabled": True, "type": "pvc", "storageClassName": args.storage_class, "size": config.grafana.size},
            # One writer on a ReadWriteOnce claim: the old pod must stop before the new one mounts it.
            "deploymentStrategy": {"type": "Recreate"},
            # The chown init container runs as root; fsGroup already gives Grafana its volume.
            "initChownData": {"enabled": False},
            "sidecar": {"resources": small["grafana-sidecar"]},
            "service": grafana_service,
        },
        "kube-state-metrics": {"resources": small["kube-state-metrics"]},
        "prometheus-node-exporter": {
            # Host network, PIDs and root filesystem: only the node-metrics namespace allows that.
            "namespaceOverride": args.node_metrics_namespace,
            "resources": small["node-exporter"],
        },
    }


def _loki_storage(args: ObservabilityStackArgs) -> tuple[dict, str, list[dict]]:
    """Loki's `storage` values, the object store name its schema and compactor use, and the env it needs."""
    objects = args.loki_objects
    if objects is None:
        return {"type": "filesystem"}, "filesystem", []
    endpoint = pulumi.Output.from_input(objects.endpoint).apply(lambda url: url.split("://", 1)[-1])
    storage = {
        "type": "s3",
        "bucketNames": {"chunks": objects.bucket, "ruler": objects.bucket, "admin": objects.bucket},
        # No keys here: the AWS SDK reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the Secret-backed env.
        "s3": {"endpoint": endpoint, "region": objects.region, "s3ForcePathStyle": True, "insecure": False},
    }
    env = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": objects.credentials_secret, "key": variable}}}
        for variable in (CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY)
    ]
    return storage, "s3", env


def loki_values(args: ObservabilityStackArgs) -> dict:
    config = args.config.loki
    storage, store, env = _loki_storage(args)
    return {
        "deploymentMode": "Monolithic",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "storage": storage,
            "schemaConfig": {
                "configs": [{
                    "from": LOKI_SCHEMA_START, "store": "tsdb", "object_store": store, "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }]
            },
            "limits_config": {"retention_period": f"{config.retention_days * 24}h"},
            # Retention is the compactor's job; without it chunks are kept forever.
            "compactor": {"retention_enabled": True, "delete_request_store": store, "working_directory": "/var/loki/compactor"},
        },
        "singleBinary": {
            "replicas": 1,
            "resources": config.resources.as_k8s(),
            "extraEnv": env,
            "persistence": {
                "enabled": True,
                "size": config.size,
                "storageClass": args.storage_class,
                # The claim outlives the StatefulSet: logs survive an uninstall and a scale-down.
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
        },
        **{target: {"replicas": 0} for target in ("read", "write", "backend")},
        # Monolithic and small: no memcached caches (8 GiB by default), canary, gateway, test pod or bundled MinIO.
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
        "gateway": {"enabled": False},
        "minio": {"enabled": False},
        "sidecar": {"rules": {"enabled": False}},
        "monitoring": {"serviceMonitor": {"enabled": True}},
    }


def alloy_config(loki_url: str) -> str:
    """Alloy pipeline: every pod's container logs, read through the Kubernetes API (no hostPath), labelled and
    pushed to Loki."""
    relabel = "\n".join(
        f'  rule {{\n    source_labels = ["{source}"]\n    target_label  = "{target}"\n  }}'
        for source, target in (
            ("__meta_kubernetes_namespace", "namespace"),
            ("__meta_kubernetes_pod_name", "pod"),
            ("__meta_kubernetes_pod_container_name", "container"),
            ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "app"),
        )
    )
    return (
        'discovery.kubernetes "pods" {\n  role = "pod"\n}\n\n'
        f'discovery.relabel "pods" {{\n  targets = discovery.kubernetes.pods.targets\n{relabel}\n}}\n\n'
        'loki.source.kubernetes "pods" {\n  targets    = discovery.relabel.pods.output\n'
        "  forward_to = [loki.write.platform.receiver]\n}\n\n"
        f'loki.write "platform" {{\n  endpoint {{\n    url = "{loki_url}/loki/api/v1/push"\n  }}\n}}\n'
    )


def alloy_values(loki_url: pulumi.Input[str]) -> dict:
    return {
        # One replica tailing through the API server: no DaemonSet, no hostPath, no root.
        "controller": {"type": "deployment", "replicas": 1},
        "crds": {"create": False},
        "alloy": {
            "configMap": {"content": pulumi.Output.from_input(loki_url).apply(alloy_config)},
            "enableReporting": False,
            "mounts": {"varlog": False, "dockercontainers": False},
            "resources": FOOTPRINT["alloy"].as_k8s(),
            "securityContext": {**RESTRICTED_CONTAINER, "runAsNonRoot": True, "runAsUser": 473, "runAsGroup": 473},
        },
        "configReloader": {"resources": FOOTPRINT["config-reloader"].as_k8s()},
        # Only what log tailing needs, instead of the chart's default read access to every Secret and ConfigMap.
        # The chart prints `rules` then `clusterRules` into one ClusterRole, and an empty list there as a stray `[]`
        # that breaks the render (Alloy 1.11.1): both lists carry part of the one rule set, neither may be empty.
        "rbac": {
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}],
            "clusterRules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}],
        },
    }


def _loki_node_port(name: str, namespace: pulumi.Input[str], node_port: int, opts: pulumi.ResourceOptions) -> None:
    k8s.core.v1.Service(
        f"{name}-loki-node-port",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="loki-node-port", namespace=namespace, labels=kube.labels("loki", "logs")),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="NodePort",
            selector={"app.kubernetes.io/name": "loki", "app.kubernetes.io/instance": "loki", "app.kubernetes.io/component": "single-binary"},
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=LOKI_PORT, target_port=LOKI_PORT, protocol="TCP", node_port=node_port)],
        ),
        opts=opts,
    )
