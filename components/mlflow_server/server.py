"""The tracking server itself: its pod (schema upgrade, then the server), the replicated Deployment of the postgres
engine, and the ServiceMonitor (the front door publishes it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.mlflow_server.backends import KEK_ENV, KEK_KEY, BackendParts
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.versions import IMAGES

if TYPE_CHECKING:
    from components.mlflow_server import MlflowServerArgs

PORT = 5000
SERVICE_NAME = "mlflow"
UID = 1000
METRICS_DIR = "/tmp/prometheus-metrics"  # the worker processes' shared metric files (prometheus_flask_exporter)
# Prometheus scrapes each pod by its IP, so the Host header is `<pod IP>:5000`. MLflow's own default allow-list
# admits the private ranges; we admit them on the server port only.
POD_ADDRESS_PATTERNS = ("10.*", "192.168.*", *(f"172.{n}.*" for n in range(16, 32)))


def allowed_hosts(namespace: str, node_port: int | None, public_host: str | None = None) -> str:
    """Host headers the server accepts (MLflow >= 3.5 answers 403 to any other): its Service names, any port,
    the front door's host, pod addresses on the server port (metrics scrapes), and the dev NodePort through the
    host's loopback."""
    names = kube.cluster_dns_names(SERVICE_NAME, namespace) + ([public_host] if public_host else [])
    hosts = [pattern for host in names for pattern in (host, f"{host}:*")]
    hosts += [f"{pattern}:{PORT}" for pattern in POD_ADDRESS_PATTERNS]
    if node_port:
        hosts += [f"localhost:{node_port}", f"127.0.0.1:{node_port}"]
    return ",".join(hosts)


def server_args(args: MlflowServerArgs, backend_flags: list[str], namespace: str, bucket: str) -> list[str]:
    return [
        "server",
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--workers", str(args.workers),
        *backend_flags,
        "--serve-artifacts",
        "--artifacts-destination", f"s3://{bucket}/",
        "--allowed-hosts", allowed_hosts(namespace, args.node_port, args.public_host),
        # Request counts and latencies at /metrics, aggregated over the worker processes.
        "--expose-prometheus", METRICS_DIR,
    ]


def server_pod(
    args: MlflowServerArgs, backend: BackendParts, crypto_secret: pulumi.Input[str], spread: bool = False
) -> k8s.core.v1.PodSpecArgs:
    client_env = dict(args.artifacts.client_env)
    env = [
        kube.secret_env("AWS_ACCESS_KEY_ID", args.artifacts.credentials_secret, CONSUMER_ACCESS_KEY),
        kube.secret_env("AWS_SECRET_ACCESS_KEY", args.artifacts.credentials_secret, CONSUMER_SECRET_KEY),
        kube.secret_env(KEK_ENV, crypto_secret, KEK_KEY),
        *backend.env,
        *kube.plain_env(
            {
                **client_env,
                # MLflow's artifact proxy reads its own variable, not boto3's AWS_ENDPOINT_URL_S3.
                "MLFLOW_S3_ENDPOINT_URL": client_env["AWS_ENDPOINT_URL_S3"],
                # MLflow >= 3.x also starts a GenAI job runner with eight consumer processes (~800 MiB) by default;
                # a tracking server does not use it, and with it the pod would outgrow its memory limit.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "HOME": "/tmp",
            }
        ),
    ]
    mounts = [*backend.mounts, k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")]
    upgrade = k8s.core.v1.ContainerArgs(
        name="db-upgrade",
        image=IMAGES["mlflow"],
        # Migrate the schema before a newer server opens the database.
        command=["/bin/sh", "-c"],
        args=[backend.upgrade_script],
        env=[*backend.upgrade_env, *kube.plain_env({"HOME": "/tmp"})],
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )
    server = k8s.core.v1.ContainerArgs(
        name="mlflow",
        image=IMAGES["mlflow"],
        command=["mlflow"],
        args=pulumi.Output.all(args.namespace, args.artifacts.bucket).apply(lambda v: server_args(args, backend.flags, *v)),
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT)],
        startup_probe=kube.http_probe("/health", "http", period=5, failures=60),
        readiness_probe=kube.http_probe("/health", "http"),
        liveness_probe=kube.http_probe("/health", "http", period=20),
        resources=kube.resources(args.resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
    )
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        init_containers=[upgrade],
        containers=[server],
        volumes=[*backend.volumes, kube.scratch_volume(size="1Gi")],
        topology_spread_constraints=[
            # Replicas on different nodes, so one node's loss leaves the server up.
            k8s.core.v1.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key="kubernetes.io/hostname",
                when_unsatisfiable="DoNotSchedule",
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            )
        ]
        if spread
        else None,
    )


def replicated_server(
    name: str,
    args: MlflowServerArgs,
    backend: BackendParts,
    crypto_secret: pulumi.Input[str],
    child: pulumi.ResourceOptions,
    after: Sequence[pulumi.Resource] = (),
) -> None:
    """The postgres engine's Deployment (and its disruption budget), declared after `after` (the migration Job):
    Pulumi waits for those to complete before it rolls the server out."""
    pod_spec = server_pod(args, backend, crypto_secret, spread=args.replicas > 1)
    k8s.apps.v1.Deployment(
        f"{name}-server",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="mlflow", namespace=args.namespace, labels=kube.labels("mlflow", "server"), annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=args.replicas,
            # One new pod at a time, never below the wanted count: rollouts keep the server available.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
            ),
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels("mlflow", "server")),
                spec=pod_spec,
            ),
        ),
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))) if after else child,
    )
    if args.replicas > 1:
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="mlflow", namespace=args.namespace, labels=kube.labels("mlflow", "server")),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=args.replicas - 1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector("mlflow", "server")),
            ),
            opts=child,
        )


def service_monitor(name: str, args: MlflowServerArgs, auth_secret: pulumi.Output[str] | None, opts: pulumi.ResourceOptions) -> None:
    endpoint: dict = {"port": "http", "path": "/metrics", "interval": "30s"}
    if auth_secret is not None:
        # With basic auth every path but /health needs a login; Prometheus uses the admin's, read from the Secret.
        endpoint["basicAuth"] = {
            "username": {"name": auth_secret, "key": "admin-username"},
            "password": {"name": auth_secret, "key": "admin-password"},
        }
    kube.metrics_monitor(
        f"{name}-service-monitor",
        kind="ServiceMonitor",
        monitor_name=SERVICE_NAME,
        namespace=args.namespace,
        app="mlflow",
        match_labels=kube.selector("mlflow", "server"),
        endpoints=[endpoint],
        opts=opts,
    )
