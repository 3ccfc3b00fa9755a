"""The AirflowStack component: Airflow 3's four processes as our own Deployments (no Helm chart), from the plain data
in components/airflow/__init__.py that tests/test_airflow_real.py runs against real Airflow.

Order on every `pulumi up`: the generated keys and the admin's Secret, then the migration Job (`airflow db migrate`,
then the admin bootstrap), then the Deployments, which depend on the Job. The Job's name carries a hash of the image
and its commands: a new Airflow image is a new Job, which Pulumi runs (and waits for) before it rolls the processes
to that image, so the schema always leads the code. Both commands are idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components import airflow as af
from components import kube
from components.config import AirflowResources, DagsGitConfig, NfsLogsConfig, ResourceSpec
from components.object_store import BucketAccess
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

APP = "airflow"
"""`app.kubernetes.io/name` of every Airflow object; the process is the `component`."""
UID = 50000
"""The official image's `airflow` user, which owns its virtualenv."""
ADMIN_USERNAME = "admin"
DAGS_HASH_ANNOTATION = "mlops.platform/dags-sha256"
"""On the pod templates that read the DAG ConfigMap: a changed DAG file rolls them."""
ADMIN_HASH_ANNOTATION = "mlops.platform/admin-password-sha256"
"""On the migration Job's template: a regenerated admin password replaces the Job, which sets it again."""
POD_TEMPLATE_DIR = f"{af.HOME}/pod-templates"
"""KubernetesExecutor: where the scheduler reads the task pods' template (a ConfigMap)."""
POD_TEMPLATE_FILE = "pod_template.yaml"
GIT_ROOT = af.DAGS_DIR
"""git-sync's root: the checkout is linked at `<root>/repo`."""
GIT_LINK = "repo"
NFS_CLAIM = "airflow-logs"
"""The claim of the NFS task-log volume (`airflow.logs.nfs`)."""
GIT_SECRET_DIR = "/etc/git-secret"
GIT_SYNC_HTTP_PORT = 2020
"""git-sync's health endpoint (`--http-bind`), which the sidecar's probes call."""
STATSD_MAPPINGS = """\
# Airflow sends InfluxDB-style tags (statsd_influxdb_enabled), which the exporter turns into labels.
defaults:
  observer_type: summary
mappings:
  - match: airflow.scheduler_heartbeat
    name: airflow_scheduler_heartbeat_total
  - match: airflow.dagrun.duration.failed
    name: airflow_dagrun_failed_duration_seconds
  - match: airflow.dagrun.duration.success
    name: airflow_dagrun_success_duration_seconds
  - match: airflow.ti_failures
    name: airflow_task_failures_total
  - match: airflow.ti_successes
    name: airflow_task_successes_total
"""
"""statsd-exporter's mapping: fixed metric names the alerts and the dashboard use."""
MIGRATION_RESOURCES = ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
"""`airflow db migrate` and the admin bootstrap: one Airflow CLI process each."""
GIT_SYNC_RESOURCES = ResourceSpec({"cpu": "10m", "memory": "32Mi"}, {"cpu": "200m", "memory": "256Mi"})
"""git-sync: a Go binary and a shallow checkout."""
TASK_POD_RESOURCES = ResourceSpec({"cpu": "100m", "memory": "384Mi"}, {"cpu": "2", "memory": "2Gi"})
"""KubernetesExecutor: each task pod (the example task builds a virtualenv and trains in it)."""


@dataclass(frozen=True)
class AirflowStackArgs:
    """What an AirflowStack needs; built by the assembly from the plan."""

    namespace: pulumi.Input[str]
    """Namespace the Airflow pods run in."""
    namespace_name: str
    """The same namespace's name, known in advance (it is part of the execution API's URL)."""
    database_secret: pulumi.Input[str]
    """The `airflow` database owner's Secret (PostgresCluster) in the namespace: its `uri` is used as is."""
    logs: BucketAccess
    """The remote task logs' bucket."""
    mlflow_tracking_uri: str
    """MLflow's in-cluster URL, which tasks log to."""
    resources: AirflowResources = field(default_factory=AirflowResources)
    """Requests and limits per process."""
    executor: str = "local"
    """local (tasks in the scheduler's pod) or kubernetes (a pod per task)."""
    parallelism: int = 4
    """Tasks running at once."""
    dags_git: DagsGitConfig | None = None
    """DAGs from git (git-sync); None: the repository's components/airflow/dags/ as a ConfigMap."""
    nfs_logs: NfsLogsConfig | None = None
    """Task logs also on this NFS export (a retained ReadWriteMany volume); None: the bucket only."""
    node_port: int | None = None
    """Host NodePort of the api-server (dev), or None for ClusterIP."""
    after: tuple[pulumi.Resource, ...] = ()
    """What the migration waits for (the PostgresCluster that creates the database)."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where the generated keys and the admin password are kept."""
    metrics_after: pulumi.Resource | None = None
    """The release installing the Prometheus CRDs; when given, a statsd-exporter and its ServiceMonitor."""
    protect: bool = False
    """Protect and retain the NFS volume and its claim."""


class AirflowStack(pulumi.ComponentResource):
    """Apache Airflow 3: api-server, scheduler, dag-processor and triggerer, each its own Deployment, on the
    `airflow` database of the PostgresCluster, with task logs in the object store and generated keys and admin."""

    url: pulumi.Output[str]
    """In-cluster URL of the api-server (UI and REST API)."""
    admin_secret: pulumi.Output[str]
    """Secret with the admin's `username` and `password`."""
    migration_job: pulumi.Output[str]
    """Name of the current migration Job."""

    def __init__(self, name: str, args: AirflowStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:airflow:AirflowStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keys, admin, admin_password = _secrets(name, args, child)
        names = {
            af.DATABASE_SECRET: args.database_secret,
            af.KEYS_SECRET: keys.name,
            af.ADMIN_SECRET: admin.name,
            af.S3_SECRET: args.logs.credentials_secret,
        }
        env = _Env(args, names, metrics=args.metrics_after is not None)
        dags = _Dags(name, args, child)
        volumes = _Volumes(name, args, dags, child)
        migration = _migration(name, args, env, volumes, admin_password, [keys.resource, admin.resource, *args.after], child)
        account = _executor_rbac(name, args, env, dags, child) if args.executor == "kubernetes" else None
        processes = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[migration]))
        for process in af.PROCESSES.values():
            _deployment(name, args, process, env, volumes, account if process.name == "scheduler" else None, processes)
        kube.service(
            f"{name}-api-server-service", service_name=af.SERVICE_NAME, namespace=args.namespace, app=APP,
            component="api-server", ports={"http": af.API_PORT}, node_ports={"http": args.node_port}, opts=child,
        )
        # The api-server reads a running task's log from the scheduler's log server (LocalExecutor).
        kube.service(
            f"{name}-scheduler-service", service_name="airflow-scheduler", namespace=args.namespace, app=APP,
            component="scheduler", ports={"task-logs": af.WORKER_LOG_PORT}, node_ports={}, opts=child,
        )
        if args.metrics_after is not None:
            _statsd(name, args, child)
        self.url = pulumi.Output.from_input(args.namespace).apply(
            lambda namespace: f"http://{af.SERVICE_NAME}.{namespace}.svc.cluster.local:{af.API_PORT}"
        )
        self.admin_secret = admin.name
        self.migration_job = migration.metadata.name
        self.register_outputs({"url": self.url, "admin_secret": self.admin_secret, "migration_job": self.migration_job})


# --- Secrets ----------------------------------------------------------------------------------------------------


def _secrets(
    name: str, args: AirflowStackArgs, child: pulumi.ResourceOptions
) -> tuple[StoredSecret, StoredSecret, pulumi.Output[str]]:
    """The keys every process shares and the admin's login, generated once (never re-generated on a render)."""
    fernet = random.RandomBytes(f"{name}-fernet-key", length=32, opts=child)
    api_key = random.RandomPassword(f"{name}-api-secret-key", length=48, special=False, opts=child)
    jwt = random.RandomPassword(f"{name}-jwt-secret", length=48, special=False, opts=child)
    password = random.RandomPassword(f"{name}-admin-password", length=32, special=True, override_special="-_.~!*@#%^+=", opts=child)
    keys = args.secrets.secret(
        f"{name}-keys",
        name=af.KEYS_SECRET,
        namespace=args.namespace,
        labels=kube.labels(APP, "keys"),
        data=pulumi.Output.all(fernet.base64, api_key.result, jwt.result).apply(
            lambda v: {"fernet-key": af.fernet_key(v[0]), "api-secret-key": v[1], "jwt-secret": v[2]}
        ),
        opts=child,
    )
    admin = args.secrets.secret(
        f"{name}-admin",
        name=af.ADMIN_SECRET,
        namespace=args.namespace,
        labels=kube.labels(APP, "admin"),
        data=password.result.apply(lambda value: {"username": ADMIN_USERNAME, "password": value}),
        opts=child,
    )
    return keys, admin, password.result


# --- Environment ------------------------------------------------------------------------------------------------


class _Env:
    """Every process's environment: the literal values of `af.process_env` and the Secret keys of `af.SECRET_ENV`."""

    def __init__(self, args: AirflowStackArgs, names: Mapping[str, pulumi.Input[str]], metrics: bool) -> None:
        self.names = names
        placeholder = self._literal(args, "bucket", "endpoint", "region")
        literal = pulumi.Output.all(args.logs.bucket, args.logs.endpoint, args.logs.region).apply(
            lambda v: self._literal(args, *v)
        )
        self.literal: dict[str, pulumi.Input[str]] = {
            key: literal.apply(lambda values, key=key: values[key]) for key in placeholder
        }
        # The store's client environment, where Airflow's own settings (the region of its log connection) do not
        # already say the same.
        for key, value in args.logs.client_env.items():
            self.literal.setdefault(key, value)
        self.literal.update(self._extra(args, metrics))

    @staticmethod
    def _literal(args: AirflowStackArgs, bucket: str, endpoint: str, region: str) -> dict[str, str]:
        return af.process_env(
            namespace=args.namespace_name, logs_bucket=bucket, s3_endpoint=endpoint, s3_region=region,
            mlflow_tracking_uri=args.mlflow_tracking_uri, parallelism=args.parallelism,
        )

    @staticmethod
    def _extra(args: AirflowStackArgs, metrics: bool) -> dict[str, str]:
        """What a pod needs beyond the processes' own environment."""
        extra = {
            # The image's home is on the read-only root filesystem; Python tools write caches under $HOME.
            "HOME": af.TMP_DIR,
            # A pod's name is not resolvable: the api-server reaches a running task's log server by the pod's IP.
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow.utils.net.get_host_ip_address",
        }
        if args.nfs_logs is not None:
            # The seed's shape: task logs stay on the shared volume as well as in the bucket.
            extra["AIRFLOW__LOGGING__DELETE_LOCAL_LOGS"] = "False"
        if args.dags_git is not None:
            extra["AIRFLOW__CORE__DAGS_FOLDER"] = "/".join(
                part for part in (GIT_ROOT, GIT_LINK, args.dags_git.sub_path.strip("/")) if part
            )
        if args.executor == "kubernetes":
            extra |= {
                "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
                "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": args.namespace_name,
                "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": f"{POD_TEMPLATE_DIR}/{POD_TEMPLATE_FILE}",
                "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "True",
                # A failed task's pod stays for its events and log until the next cleanup; its log is in the bucket.
                "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS_ON_FAILURE": "True",
                "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER": "True",
            }
        if metrics:
            extra |= {
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": f"{af.STATSD_SERVICE}.{args.namespace_name}.svc.cluster.local",
                "AIRFLOW__METRICS__STATSD_PORT": str(af.STATSD_PORT),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
                # Tags (dag_id) travel in the metric name, InfluxDB style, and become labels in the exporter.
                "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
            }
        return extra

    def secret(self, table: Mapping[str, af.SecretKey]) -> list[k8s.core.v1.EnvVarArgs]:
        return [kube.secret_env(variable, self.names[ref.secret], ref.key) for variable, ref in sorted(table.items())]

    def process(self) -> list[k8s.core.v1.EnvVarArgs]:
        return [*kube.plain_env(self.literal), *self.secret(af.SECRET_ENV)]

    def task_manifest(self) -> list[dict]:
        """A KubernetesExecutor task pod: the literal environment and the bucket's credentials (for its log upload);
        no database and no keys: Airflow 3 tasks reach the metadata only through the execution API, with a token."""
        s3 = sorted((name, ref) for name, ref in af.SECRET_ENV.items() if ref.secret == af.S3_SECRET)
        return [
            *({"name": name, "value": self.literal[name]} for name in sorted(self.literal)),
            *({"name": name, "valueFrom": {"secretKeyRef": {"name": self.names[ref.secret], "key": ref.key}}} for name, ref in s3),
        ]


# --- DAGs and volumes -------------------------------------------------------------------------------------------


class _Dags:
    """The repository's DAG files as a ConfigMap, or git-sync containers when a repository is configured."""

    def __init__(self, name: str, args: AirflowStackArgs, child: pulumi.ResourceOptions) -> None:
        self.git = args.dags_git
        self.config_map: pulumi.Output[str] | None = None
        self.hash = ""
        if self.git is None:
            files = {path.name: path.read_text() for path in sorted(af.DAGS_SOURCE.glob("*.py"))}
            self.hash = _sha256("\0".join(f"{k}\0{v}" for k, v in files.items()))
            self.config_map = k8s.core.v1.ConfigMap(
                f"{name}-dags",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-dags", namespace=args.namespace, labels=kube.labels(APP, "dags")),
                data=files,
                opts=child,
            ).metadata.name

    def volume(self) -> k8s.core.v1.VolumeArgs:
        if self.config_map is not None:
            return k8s.core.v1.VolumeArgs(
                name="dags", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.config_map, default_mode=0o444)
            )
        return kube.scratch_volume("dags", size="1Gi")

    def mount(self) -> k8s.core.v1.VolumeMountArgs:
        # git-sync writes the checkout; the Airflow containers only read it.
        return k8s.core.v1.VolumeMountArgs(name="dags", mount_path=af.DAGS_DIR, read_only=True)

    def secret_volumes(self) -> list[k8s.core.v1.VolumeArgs]:
        if self.git is None or self.git.credentials_secret is None or not _ssh(self.git):
            return []
        return [k8s.core.v1.VolumeArgs(
            name="git-secret",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=self.git.credentials_secret, default_mode=0o440),
        )]

    def manifests(self, one_time: bool) -> list[dict]:
        """git-sync as container manifests: once before the process starts (an init container), then beside it."""
        if self.git is None:
            return []
        git = self.git
        command = [
            "/git-sync", f"--repo={git.repo}", f"--ref={git.ref}", f"--root={GIT_ROOT}", f"--link={GIT_LINK}",
            "--depth=1", f"--period={git.period_seconds}s",
        ]
        env: list[dict] = [{"name": "HOME", "value": "/tmp"}]
        mounts = [{"name": "dags", "mountPath": GIT_ROOT}, {"name": "git-tmp", "mountPath": "/tmp"}]
        if git.credentials_secret is not None:
            if _ssh(git):
                command += [f"--ssh-key-file={GIT_SECRET_DIR}/ssh", f"--ssh-known-hosts-file={GIT_SECRET_DIR}/known_hosts"]
                mounts.append({"name": "git-secret", "mountPath": GIT_SECRET_DIR, "readOnly": True})
            else:
                env += [
                    {"name": variable, "valueFrom": {"secretKeyRef": {"name": git.credentials_secret, "key": key}}}
                    for variable, key in (("GITSYNC_USERNAME", "username"), ("GITSYNC_PASSWORD", "password"))
                ]
        probes = {}
        if one_time:
            command.append("--one-time")
        else:
            # git-sync's HTTP endpoint answers 200 once a sync succeeded and while syncs keep succeeding.
            command.append(f"--http-bind=:{GIT_SYNC_HTTP_PORT}")
            health = {"httpGet": {"path": "/", "port": GIT_SYNC_HTTP_PORT}, "periodSeconds": 30, "timeoutSeconds": 5}
            probes = {"livenessProbe": {**health, "failureThreshold": 10}, "readinessProbe": health}
        return [{
            "name": "git-sync-init" if one_time else "git-sync",
            "image": IMAGES["git-sync"],
            "command": command,
            "env": env,
            "resources": GIT_SYNC_RESOURCES.as_k8s(),
            "securityContext": kube.RESTRICTED_CONTAINER,
            "volumeMounts": mounts,
            **probes,
        }]

    def containers(self, one_time: bool) -> list[k8s.core.v1.ContainerArgs]:
        return [_container_args(manifest) for manifest in self.manifests(one_time)]


def _container_args(manifest: dict) -> k8s.core.v1.ContainerArgs:
    """A git-sync container manifest as ContainerArgs (the same container in the processes' pods and the task pods)."""
    env = [
        kube.secret_env(e["name"], e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        if "valueFrom" in e else k8s.core.v1.EnvVarArgs(name=e["name"], value=e["value"])
        for e in manifest["env"]
    ]
    probes = {
        key: k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=probe["httpGet"]["path"], port=probe["httpGet"]["port"]),
            period_seconds=probe["periodSeconds"], timeout_seconds=probe["timeoutSeconds"],
            failure_threshold=probe.get("failureThreshold"),
        )
        for key, probe in (("liveness_probe", manifest.get("livenessProbe")), ("readiness_probe", manifest.get("readinessProbe")))
        if probe
    }
    return k8s.core.v1.ContainerArgs(
        name=manifest["name"],
        image=manifest["image"],
        command=manifest["command"],
        **probes,
        env=env,
        resources=k8s.core.v1.ResourceRequirementsArgs(**manifest["resources"]),
        security_context=kube.container_security(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name=m["name"], mount_path=m["mountPath"], read_only=m.get("readOnly"))
            for m in manifest["volumeMounts"]
        ],
    )


def _ssh(git: DagsGitConfig) -> bool:
    return not git.repo.startswith("https://")


class _Volumes:
    """The volumes of a process's pod: emptyDirs for AIRFLOW_HOME and /tmp, the DAGs, NFS task logs if configured."""

    def __init__(self, name: str, args: AirflowStackArgs, dags: _Dags, child: pulumi.ResourceOptions) -> None:
        self.dags = dags
        self.nfs_claim = _nfs_claim(name, args, child) if args.nfs_logs else None

    def volumes(self, tmp_size: str) -> list[k8s.core.v1.VolumeArgs]:
        volumes = [kube.scratch_volume("home", size="1Gi"), kube.scratch_volume("tmp", size=tmp_size), self.dags.volume()]
        if self.dags.git is not None:
            volumes += [kube.scratch_volume("git-tmp", size="64Mi"), *self.dags.secret_volumes()]
        if self.nfs_claim is not None:
            volumes.append(kube.claim_volume(self.nfs_claim, name="logs"))
        return volumes

    def mounts(self, dags: bool = True) -> list[k8s.core.v1.VolumeMountArgs]:
        mounts = [
            k8s.core.v1.VolumeMountArgs(name="home", mount_path=af.HOME),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=af.TMP_DIR),
        ]
        if dags:
            mounts.append(self.dags.mount())
        if self.nfs_claim is not None:
            mounts.append(k8s.core.v1.VolumeMountArgs(name="logs", mount_path=af.LOGS_DIR))
        return mounts


def _nfs_claim(name: str, args: AirflowStackArgs, child: pulumi.ResourceOptions) -> k8s.core.v1.PersistentVolumeClaim:
    """The seed's task-log volume: a retained ReadWriteMany PersistentVolume on an existing NFS export, bound to its
    claim by name (no StorageClass provisions it). Kind nodes have no NFS client: config refuses it there."""
    nfs = args.nfs_logs
    stateful = kube.stateful(child, args.protect)
    volume = k8s.core.v1.PersistentVolume(
        f"{name}-logs-volume",
        metadata=k8s.meta.v1.ObjectMetaArgs(labels=kube.labels(APP, "logs")),
        spec=k8s.core.v1.PersistentVolumeSpecArgs(
            capacity={"storage": nfs.size},
            access_modes=["ReadWriteMany"],
            persistent_volume_reclaim_policy="Retain",
            storage_class_name="",
            nfs=k8s.core.v1.NFSVolumeSourceArgs(server=nfs.server, path=nfs.path),
        ),
        opts=stateful,
    )
    return k8s.core.v1.PersistentVolumeClaim(
        f"{name}-logs-claim",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=NFS_CLAIM, namespace=args.namespace, labels=kube.labels(APP, "logs")),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteMany"],
            storage_class_name="",
            volume_name=volume.metadata.name,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": nfs.size}),
        ),
        opts=stateful,
    )


# --- Pods -------------------------------------------------------------------------------------------------------


def _container(
    name: str, command: tuple[str, ...], env: list, resources: ResourceSpec, mounts: list, **extra
) -> k8s.core.v1.ContainerArgs:
    return k8s.core.v1.ContainerArgs(
        name=name,
        image=IMAGES["airflow"],
        command=list(command),
        env=env,
        resources=kube.resources(resources),
        security_context=kube.container_security(),
        volume_mounts=mounts,
        **extra,
    )


def _probe(process: af.Process, period: int, failures: int, exec_period: int) -> k8s.core.v1.ProbeArgs:
    probe = process.probe
    if isinstance(probe, af.HttpProbe):
        port = next(name for name, number in process.ports.items() if number == probe.port)
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=probe.path, port=port),
            period_seconds=period, timeout_seconds=probe.timeout_seconds, failure_threshold=failures,
        )
    # Each check starts Airflow's CLI (5-12 s of CPU measured on a loaded machine, and its memory beside the
    # process): seldom, and with time to finish.
    return k8s.core.v1.ProbeArgs(
        exec_=k8s.core.v1.ExecActionArgs(command=list(probe.command)),
        period_seconds=exec_period, timeout_seconds=probe.timeout_seconds, failure_threshold=failures,
    )


RESOURCE_FIELD = {"api-server": "api_server", "scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def _deployment(
    name: str,
    args: AirflowStackArgs,
    process: af.Process,
    env: _Env,
    volumes: _Volumes,
    account: _ExecutorAccount | None,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    # Tasks (LocalExecutor) and their virtualenvs live in the scheduler's /tmp.
    tmp_size = "4Gi" if process.name == "scheduler" else "512Mi"
    mounts = volumes.mounts(dags=process.name != "api-server")
    if account is not None:
        mounts.append(k8s.core.v1.VolumeMountArgs(name="pod-template", mount_path=POD_TEMPLATE_DIR, read_only=True))
    container = _container(
        "airflow", process.command, env.process(), getattr(args.resources, RESOURCE_FIELD[process.name]), mounts,
        ports=[k8s.core.v1.ContainerPortArgs(name=port, container_port=number) for port, number in process.ports.items()],
        # Importing Airflow and a first DAG parse take a while on a cold node: up to 5 minutes before liveness applies.
        startup_probe=_probe(process, period=10, failures=30, exec_period=60),
        liveness_probe=_probe(process, period=30, failures=3, exec_period=120),
        # Not ready while its own check fails: the api-server's Service (and `kubectl rollout status`) see it.
        readiness_probe=_probe(process, period=10, failures=3, exec_period=300),
    )
    reads_dags = process.name != "api-server"
    pod_volumes = volumes.volumes(tmp_size)
    if account is not None:
        pod_volumes.append(k8s.core.v1.VolumeArgs(
            name="pod-template",
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=account.config_map, default_mode=0o444),
        ))
    pod_spec = k8s.core.v1.PodSpecArgs(
        # Only the KubernetesExecutor's scheduler talks to the Kubernetes API (to start and delete task pods).
        service_account_name=account.name if account is not None else None,
        automount_service_account_token=account is not None,
        security_context=kube.pod_security(UID),
        termination_grace_period_seconds=60,
        init_containers=volumes.dags.containers(one_time=True) if reads_dags else None,
        containers=[container, *(volumes.dags.containers(one_time=False) if reads_dags else [])],
        volumes=pod_volumes,
    )
    labels = kube.labels(APP, process.name)
    annotations = {DAGS_HASH_ANNOTATION: volumes.dags.hash} if reads_dags and volumes.dags.hash else {}
    return k8s.apps.v1.Deployment(
        f"{name}-{process.name}",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=f"airflow-{process.name}", namespace=args.namespace, labels=labels,
            annotations=kube.scanner_skips(pod_spec, token_use="the scheduler starts and deletes task pods (KubernetesExecutor)"),
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector(APP, process.name)),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=annotations or None), spec=pod_spec
            ),
        ),
        opts=opts,
    )


def migration_job_name() -> str:
    """`airflow-migrate-<hash of image and commands>`: a new image is a new Job, run before the processes roll."""
    digest = _sha256("\0".join([IMAGES["airflow"], *af.MIGRATE_COMMAND, *af.ADMIN_COMMAND]))
    return f"airflow-migrate-{digest[:8]}"


def _migration(
    name: str,
    args: AirflowStackArgs,
    env: _Env,
    volumes: _Volumes,
    admin_password: pulumi.Output[str],
    after: list[pulumi.Resource],
    child: pulumi.ResourceOptions,
) -> k8s.batch.v1.Job:
    mounts = volumes.mounts(dags=False)
    pod_spec = k8s.core.v1.PodSpecArgs(
        restart_policy="Never",
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        # Migrate first (an init container), then make or reset the admin against the migrated schema.
        init_containers=[_container("migrate", af.MIGRATE_COMMAND, env.process(), MIGRATION_RESOURCES, mounts)],
        containers=[_container("admin", af.ADMIN_COMMAND, [*env.process(), *env.secret(af.ADMIN_ENV)], MIGRATION_RESOURCES, mounts)],
        volumes=[kube.scratch_volume("home", size="256Mi"), kube.scratch_volume("tmp", size="256Mi")],
    )
    return kube.one_shot_job(
        f"{name}-migration",
        job_name=migration_job_name(),
        namespace=args.namespace,
        job_labels=kube.labels(APP, "migration"),
        pod_spec=pod_spec,
        # On a first `up` the database and its owner are created in the same run: retries cover the wait.
        backoff_limit=6,
        deadline_seconds=1800,
        pod_annotations={ADMIN_HASH_ANNOTATION: admin_password.apply(_sha256)},
        # Same name, changed template (a new admin password): delete the finished Job, then run the new one.
        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=after, delete_before_replace=True)),
    )


# --- KubernetesExecutor -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ExecutorAccount:
    name: pulumi.Output[str]
    config_map: pulumi.Output[str]


def task_pod_template(args: AirflowStackArgs, env: list[dict], git: list[dict]) -> dict:
    """The KubernetesExecutor's pod template: Airflow fills in the command of container `base`; everything else,
    including `restricted` Pod Security, is ours."""
    mounts = [{"name": "home", "mountPath": af.HOME}, {"name": "tmp", "mountPath": af.TMP_DIR},
              {"name": "dags", "mountPath": af.DAGS_DIR, "readOnly": True}]
    dags = (
        {"name": "dags", "emptyDir": {"sizeLimit": "1Gi"}}
        if args.dags_git is not None
        else {"name": "dags", "configMap": {"name": "airflow-dags", "defaultMode": 0o444}}
    )
    volumes = [{"name": "home", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}, dags]
    if args.dags_git is not None:
        volumes.append({"name": "git-tmp", "emptyDir": {"sizeLimit": "64Mi"}})
    if args.nfs_logs is not None:
        # A task pod writes its log where the processes read it.
        volumes.append({"name": "logs", "persistentVolumeClaim": {"claimName": NFS_CLAIM}})
        mounts.append({"name": "logs", "mountPath": af.LOGS_DIR})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": kube.labels(APP, "task")},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **({"initContainers": git} if git else {}),
            "containers": [{
                "name": "base",
                "image": IMAGES["airflow"],
                "env": env,
                "resources": TASK_POD_RESOURCES.as_k8s(),
                "securityContext": kube.RESTRICTED_CONTAINER,
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    }


def _executor_rbac(
    name: str, args: AirflowStackArgs, env: _Env, dags: _Dags, child: pulumi.ResourceOptions
) -> _ExecutorAccount:
    """The scheduler's ServiceAccount, allowed to manage pods in its own namespace only, and the task pod template."""
    labels = kube.labels(APP, "scheduler")
    account = k8s.core.v1.ServiceAccount(
        f"{name}-scheduler-account",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-scheduler", namespace=args.namespace, labels=labels),
        automount_service_account_token=False,
        opts=child,
    )
    role = k8s.rbac.v1.Role(
        f"{name}-pod-launcher",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-pod-launcher", namespace=args.namespace, labels=labels),
        rules=[
            # `patch`: the executor labels the pods it adopts after a scheduler restart.
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["create", "delete", "get", "list", "patch", "watch"]),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods/log"], verbs=["get"]),
        ],
        opts=child,
    )
    k8s.rbac.v1.RoleBinding(
        f"{name}-pod-launcher-binding",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-pod-launcher", namespace=args.namespace, labels=labels),
        role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
        subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=args.namespace)],
        opts=child,
    )
    # Output.from_input resolves the Outputs (the bucket's endpoint, Secret names) nested in the manifest.
    template = pulumi.Output.from_input(task_pod_template(args, env.task_manifest(), dags.manifests(one_time=True))).apply(
        lambda manifest: yaml.safe_dump(manifest, sort_keys=False)
    )
    config_map = k8s.core.v1.ConfigMap(
        f"{name}-pod-template",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-pod-template", namespace=args.namespace, labels=kube.labels(APP, "task")),
        data={POD_TEMPLATE_FILE: template},
        opts=child,
    )
    return _ExecutorAccount(account.metadata.name, config_map.metadata.name)


# --- Metrics ----------------------------------------------------------------------------------------------------


def _statsd(name: str, args: AirflowStackArgs, child: pulumi.ResourceOptions) -> None:
    """One statsd-exporter for every process (each sends its StatsD metrics to its Service over UDP), scraped by
    Prometheus through a ServiceMonitor."""
    mappings = k8s.core.v1.ConfigMap(
        f"{name}-statsd-mappings",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="airflow-statsd-mappings", namespace=args.namespace, labels=kube.labels(APP, "statsd")),
        data={"mappings.yml": STATSD_MAPPINGS},
        opts=child,
    )
    pod_spec = k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=kube.pod_security(65534),
        containers=[k8s.core.v1.ContainerArgs(
            name="statsd-exporter",
            image=IMAGES["statsd-exporter"],
            args=[
                "--statsd.mapping-config=/etc/statsd/mappings.yml",
                f"--statsd.listen-udp=:{af.STATSD_PORT}",
                f"--statsd.listen-tcp=:{af.STATSD_PORT}",
                f"--web.listen-address=:{af.STATSD_METRICS_PORT}",
            ],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="statsd", container_port=af.STATSD_PORT, protocol="UDP"),
                k8s.core.v1.ContainerPortArgs(name="metrics", container_port=af.STATSD_METRICS_PORT),
            ],
            liveness_probe=kube.http_probe("/metrics", "metrics", period=30),
            readiness_probe=kube.http_probe("/metrics", "metrics"),
            resources=kube.resources(args.resources.statsd_exporter),
            security_context=kube.container_security(),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="mappings", mount_path="/etc/statsd", read_only=True)],
        )],
        volumes=[k8s.core.v1.VolumeArgs(
            name="mappings", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=mappings.metadata.name, default_mode=0o444)
        )],
    )
    labels = kube.labels(APP, "statsd")
    k8s.apps.v1.Deployment(
        f"{name}-statsd",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=af.STATSD_SERVICE, namespace=args.namespace, labels=labels, annotations=kube.scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=kube.selector(APP, "statsd")),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={"mlops.platform/mappings-sha256": _sha256(STATSD_MAPPINGS)}),
                spec=pod_spec,
            ),
        ),
        opts=child,
    )
    service = k8s.core.v1.Service(
        f"{name}-statsd-service",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=af.STATSD_SERVICE, namespace=args.namespace, labels=labels),
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=kube.selector(APP, "statsd"),
            ports=[
                k8s.core.v1.ServicePortArgs(name="statsd", port=af.STATSD_PORT, target_port="statsd", protocol="UDP"),
                k8s.core.v1.ServicePortArgs(name="metrics", port=af.STATSD_METRICS_PORT, target_port="metrics", protocol="TCP"),
            ],
        ),
        opts=child,
    )
    kube.metrics_monitor(
        f"{name}-service-monitor",
        kind="ServiceMonitor",
        monitor_name=APP,
        namespace=args.namespace,
        app=APP,
        match_labels=kube.selector(APP, "statsd"),
        endpoints=[{"port": "metrics", "path": "/metrics", "interval": "30s"}],
        opts=pulumi.ResourceOptions(parent=child.parent, depends_on=[service, args.metrics_after]),
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
