"""The ModelServing component: the app's ConfigMap, per served model a Deployment and Service, a ServiceMonitor, and,
with MLflow basic auth, the read-only MLflow user the pods log in as."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import ResourceSpec
from components.model_serving import pod
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

APP = "model-serving"
"""`app.kubernetes.io/name` of every serving pod and Service; each model is an `app.kubernetes.io/instance`."""
UID = 1000
"""The MLflow image's own non-root user."""
READER_USERNAME = "model-serving"
"""The read-only MLflow user every serving pod logs in as (with MLflow basic auth)."""
READER_SECRET = "model-serving-mlflow-reader"
"""Secret (`username`, `password`) of the read-only user, in the serving namespace and in MLflow's (for the Job)."""
APP_HASH_ANNOTATION = "mlops.platform/app-sha256"
"""On each pod template: a changed app.py changes it, so the pods roll."""
PASSWORD_HASH_ANNOTATION = "mlops.platform/reader-password-sha256"
"""On the reader Job's pod template: a regenerated password replaces the Job, which sets it in MLflow again (else
the pods would log in with a password MLflow never learnt). A SHA-256 of 32 random characters reveals nothing."""
GRACE_SECONDS = 30
"""Pod termination grace: longer than uvicorn's --timeout-graceful-shutdown, so requests in flight finish."""
JOB_RESOURCES = ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "128Mi"})
"""The bootstrap Job runs a stdlib-only script: a bare Python interpreter's memory."""


@dataclass(frozen=True)
class ServedModelArgs:
    """One model to serve: a Deployment and a Service of its own."""

    name: str
    """Deployment and Service name (a DNS label)."""
    model: str
    """Registered model name in MLflow."""
    alias: str
    """Alias the pods follow (models:/<model>@<alias>)."""
    resources: ResourceSpec
    """Requests and limits of each pod."""
    replicas: int = 1
    """Serving pods."""
    node_port: int | None = None
    """Host NodePort of its Service (dev), or None for ClusterIP."""


@dataclass(frozen=True)
class MlflowReader:
    """MLflow with basic auth: a read-only user for the pods, created by a Job that logs in as the admin."""

    namespace: pulumi.Input[str]
    """MLflow's namespace: the Job runs there, where the admin's Secret is."""
    admin_secret: pulumi.Input[str]
    """Secret with `admin-username` / `admin-password` (MLflow's `mlflow-auth`)."""
    after: pulumi.Resource
    """The MLflow server (component); the Job starts once it is declared ready."""


@dataclass(frozen=True)
class ModelServingArgs:
    """What a ModelServing needs; built by the assembly from the plan."""

    namespace: pulumi.Input[str]
    """Namespace the serving pods run in."""
    tracking_uri: str
    """MLflow's in-cluster URL (the server proxies artifacts: no object-store access needed)."""
    models: tuple[ServedModelArgs, ...]
    """Models to serve; empty: only the app's ConfigMap."""
    reader: MlflowReader | None = None
    """With MLflow basic auth, how the read-only user is made; None: the pods send no credentials."""
    poll_seconds: int = pod.DEFAULT_POLL_SECONDS
    """How often each pod resolves its alias again."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where the read-only user's generated password is kept."""
    metrics_after: pulumi.Resource | None = None
    """The release installing the Prometheus CRDs; when given, a ServiceMonitor scrapes `/metrics`."""


class ModelServing(pulumi.ComponentResource):
    """Registered MLflow models behind the FastAPI app in app.py, one Deployment and Service per model.

    The app runs with uvicorn inside the pinned MLflow image and reaches the pods as a ConfigMap; its hash on the
    pod template rolls the pods when it changes. Alias moves need no rollout: each pod resolves its alias every
    `poll_seconds`, loads a new version beside the served one, checks it against its serving input example and
    swaps it in, keeping the old version on any failure (app.py); the version served is in `model_version_info` and
    the logs. A config change (model, alias, resources) rolls the Deployment with maxUnavailable 0 and readiness
    gating, so no request meets a pod without a model.
    """

    urls: pulumi.Output[dict[str, str]]
    """In-cluster URL of each served model, by name."""
    reader_secret: pulumi.Output[str] | None
    """With MLflow basic auth: the read-only user's Secret in the serving namespace."""

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:model_serving:ModelServing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        source = pod.APP_SOURCE.read_text()
        app = k8s.core.v1.ConfigMap(
            f"{name}-app",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{APP}-app", namespace=args.namespace, labels=kube.labels(APP, "app")),
            data={pod.APP_FILE: source},
            opts=child,
        )
        app_hash = _sha256(source)
        credentials, after = None, []
        if args.reader is not None and args.models:
            credentials, job = _reader(name, args, args.reader, child)
            after.append(job)
        self.reader_secret = credentials.name if credentials else None
        services = []
        for served in args.models:
            pod_spec = _pod(args, served, app.metadata.name, credentials)
            _deployment(name, args, served, pod_spec, app_hash, pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=after)))
            if served.replicas > 1:
                # A node drain takes one pod at a time: the model stays served while nodes are replaced.
                k8s.policy.v1.PodDisruptionBudget(
                    f"{name}-{served.name}-disruption-budget",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=served.name, namespace=args.namespace, labels=kube.labels(APP, "server", served.name)),
                    spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                        min_available=served.replicas - 1,
                        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector(APP, "server", served.name)),
                    ),
                    opts=child,
                )
            services.append(kube.service(
                f"{name}-{served.name}-service",
                service_name=served.name,
                namespace=args.namespace,
                app=APP,
                component="server",
                instance=served.name,
                ports={"http": pod.PORT},
                node_ports={"http": served.node_port},
                opts=child,
            ))
        if args.metrics_after is not None and args.models:
            kube.metrics_monitor(
                f"{name}-service-monitor",
                kind="ServiceMonitor",
                monitor_name=APP,
                namespace=args.namespace,
                app=APP,
                match_labels=kube.selector(APP, "server"),
                endpoints=[{"port": "http", "path": pod.METRICS_PATH, "interval": "30s"}],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*services, args.metrics_after]),
            )
        self.urls = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: {s.name: f"http://{s.name}.{namespace}.svc.cluster.local:{pod.PORT}" for s in args.models}
        )
        self.register_outputs({"urls": self.urls, "reader_secret": self.reader_secret})


def _pod(
    args: ModelServingArgs, served: ServedModelArgs, app_config_map: pulumi.Input[str], credentials: StoredSecret | None
) -> k8s.core.v1.PodSpecArgs:
    env = kube.plain_env(pod.serve_env(args.tracking_uri, served.model, served.alias, args.poll_seconds))
    if credentials is not None:
        username, password = pod.CREDENTIAL_ENV
        env += [kube.secret_env(username, credentials.name, "username"), kube.secret_env(password, credentials.name, "password")]
    server = k8s.core.v1.ContainerArgs(
        name="server",
        image=IMAGES["mlflow"],
        command=list(pod.SERVE_COMMAND),
        env=env,
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=pod.PORT)],
        # Importing MLflow takes a while on a cold node: up to 5 minutes before liveness applies.
        startup_probe=kube.http_probe(pod.PROBES["startup"], "http", period=5, failures=60),
        # Not ready until a model version is loaded, and whenever the alias cannot be served (the reason is in the
        # body of /readyz and in the log); the process stays alive, so it is never a crash loop.
        readiness_probe=kube.http_probe(pod.PROBES["readiness"], "http", period=5),
        liveness_probe=kube.http_probe(pod.PROBES["liveness"], "http", period=20),
        resources=kube.resources(served.resources),
        security_context=kube.container_security(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="app", mount_path=pod.APP_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
        ],
    )
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        termination_grace_period_seconds=GRACE_SECONDS,
        containers=[server],
        volumes=[
            k8s.core.v1.VolumeArgs(
                name="app", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=app_config_map, default_mode=0o444)
            ),
            # The served version and the one being loaded beside it during an alias move.
            kube.scratch_volume(size="2Gi"),
        ],
    )


def _deployment(
    name: str,
    args: ModelServingArgs,
    served: ServedModelArgs,
    pod_spec: k8s.core.v1.PodSpecArgs,
    app_hash: str,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    labels = kube.labels(APP, "server", served.name)
    return k8s.apps.v1.Deployment(
        f"{name}-{served.name}",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=served.name, namespace=args.namespace, labels=labels, annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=served.replicas,
            # A new pod must be ready (a model loaded) before an old one goes: a rollout never lowers capacity.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
            ),
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector(APP, "server", served.name)),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={APP_HASH_ANNOTATION: app_hash}),
                spec=pod_spec,
            ),
        ),
        opts=opts,
    )


def _reader(
    name: str, args: ModelServingArgs, mlflow: MlflowReader, child: pulumi.ResourceOptions
) -> tuple[StoredSecret, k8s.batch.v1.Job]:
    """The read-only user's Secret in both namespaces (the pods', and MLflow's for the Job) and the Job creating it."""
    password = random.RandomPassword(f"{name}-reader-password", length=32, special=False, opts=child)
    data = password.result.apply(lambda value: {"username": READER_USERNAME, "password": value})
    stored = {
        role: args.secrets.secret(
            f"{name}-reader-{role}", name=READER_SECRET, namespace=namespace, data=data,
            labels=kube.labels(APP, "mlflow-reader"), opts=child,
        )
        for role, namespace in (("credentials", args.namespace), ("job-credentials", mlflow.namespace))
    }
    job_credentials = stored["job-credentials"]
    env = [
        kube.secret_env("MLFLOW_ADMIN_USERNAME", mlflow.admin_secret, "admin-username"),
        kube.secret_env("MLFLOW_ADMIN_PASSWORD", mlflow.admin_secret, "admin-password"),
        kube.secret_env("SERVING_READER_USERNAME", job_credentials.name, "username"),
        kube.secret_env("SERVING_READER_PASSWORD", job_credentials.name, "password"),
        *kube.plain_env({
            "MLFLOW_TRACKING_URI": args.tracking_uri,
            "SERVING_READER_MODELS": ",".join(sorted({served.model for served in args.models})),
            "HOME": "/tmp",
        }),
    ]
    pod_spec = k8s.core.v1.PodSpecArgs(
        restart_policy="OnFailure",
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        containers=[
            k8s.core.v1.ContainerArgs(
                name="create-reader",
                image=IMAGES["mlflow"],
                command=["python", "-c", pod.READER_SOURCE.read_text()],
                env=env,
                resources=kube.resources(JOB_RESOURCES),
                security_context=kube.container_security(),
                volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
            )
        ],
        volumes=[kube.scratch_volume()],
    )
    # No job name: a changed script or model list replaces the Job under a fresh name, and the new Job converges
    # the user and its grants again; so does a new password (its hash is in the pod's annotations).
    job = kube.one_shot_job(
        f"{name}-reader-setup",
        namespace=mlflow.namespace,
        job_labels=kube.labels(APP, "mlflow-reader"),
        pod_spec=pod_spec,
        backoff_limit=4,
        deadline_seconds=900,
        pod_annotations={PASSWORD_HASH_ANNOTATION: password.result.apply(_sha256)},
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[mlflow.after, *(s.resource for s in stored.values())])
        ),
    )
    return stored["credentials"], job


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
