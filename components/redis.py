"""Valkey (Redis-compatible) as a single StatefulSet with append-only persistence and a required password."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.config import ResourceSpec, StackConfig
from components.facts import CLIENTS, ComponentFacts, Flow, NamespaceFact, NodePortTarget
from components.secret_store import KubernetesSecrets, SecretStore, StoredSecret
from components.versions import IMAGES

PORT = 6379
NAMESPACE = "data"
"""Beside PostgreSQL: the platform's stateful services share one namespace."""
UID = 999  # the valkey user of the official image
SERVICE_NAME = "redis"
AUTH_FILE = "auth.conf"
AUTH_DIR = "/etc/valkey/auth"
PASSWORD_SPECIALS = "-_.~!*@#%^&+=:/?"
"""No quote, backslash or space: the password sits in double quotes in the auth config file."""


def facts(config: StackConfig) -> ComponentFacts:
    """Valkey serves the platform's clients on PORT; it exports no metrics."""
    return ComponentFacts(
        "redis",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(Flow("redis-clients", NAMESPACE, (PORT,), (CLIENTS,), pods={"app.kubernetes.io/name": "redis"}),),
        node_ports={"redis": NodePortTarget(NAMESPACE, PORT)},
    )


@dataclass(frozen=True)
class RedisArgs:
    """What a Redis needs; built by the composition from typed config."""

    namespace: pulumi.Input[str]
    """Namespace of the server and its Secret."""
    size: str
    """Claim size for the append-only file (Kubernetes quantity)."""
    storage_class: pulumi.Input[str]
    """Storage class of the claim; reclaimPolicy Retain."""
    resources: ResourceSpec
    """Requests and limits of the server."""
    node_port: int | None = None
    """Host NodePort (dev), or None."""
    protect: bool = False
    """Protect the claim from `pulumi destroy`."""
    secrets: SecretStore = field(default_factory=KubernetesSecrets)
    """Where generated secrets are kept: Kubernetes Secrets, or Vault synced into Secrets of the same name."""


class Redis(pulumi.ComponentResource):
    """A password-protected Valkey whose data survives restarts through its append-only file."""

    host: pulumi.Output[str]
    """Cluster DNS name of the server."""
    port: pulumi.Output[int]
    """Server port."""
    secret_name: pulumi.Output[str]
    """Secret with `password` and `url` (`redis://default:<password>@host:6379/0`, password percent-encoded; the
    explicit ACL user `default` is what redis-cli needs to use the password at all)."""

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:redis:Redis", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.host = pulumi.Output.concat(f"{SERVICE_NAME}.", args.namespace, ".svc.cluster.local")
        self.port = pulumi.Output.from_input(PORT)

        password = random.RandomPassword(f"{name}-password", length=32, special=True, override_special=PASSWORD_SPECIALS, opts=child)
        secret = args.secrets.secret(
            f"{name}-auth",
            name="redis-auth",
            namespace=args.namespace,
            labels=kube.labels("redis", "server"),
            data=pulumi.Output.all(password.result, self.host).apply(lambda v: auth_fields(v[0], v[1])),
            opts=child,
        )
        claim = kube.retained_claim(
            f"{name}-data",
            claim_name="redis-data",
            namespace=args.namespace,
            size=args.size,
            storage_class=args.storage_class,
            app="redis",
            protect=args.protect,
            opts=child,
        )
        service = kube.service(
            f"{name}-service",
            service_name=SERVICE_NAME,
            namespace=args.namespace,
            app="redis",
            component="server",
            ports={"redis": PORT},
            node_ports={"redis": args.node_port},
            opts=child,
        )
        kube.single_writer_statefulset(
            f"{name}-server",
            statefulset_name="redis",
            namespace=args.namespace,
            app="redis",
            service_name=service.metadata.name,
            pod_spec=_pod_spec(args, secret, claim),
            opts=child,
        )
        self.secret_name = secret.name
        self.register_outputs({"host": self.host, "port": self.port, "secret_name": self.secret_name})


def auth_fields(password: str, host: str) -> dict[str, str]:
    return {
        "password": password,
        "url": f"redis://default:{quote(password, safe='')}@{host}:{PORT}/0",
        # Read by the server as a config file, so the password is never an argument or a ConfigMap value.
        AUTH_FILE: f'requirepass "{password}"\n',
    }


def server_args() -> list[str]:
    return [
        f"{AUTH_DIR}/{AUTH_FILE}",
        "--port", str(PORT),
        "--dir", "/data",
        # Every write goes to the append-only file, fsynced each second; RDB snapshots are off, so the AOF alone
        # is the persistence that must (and, per the tests, does) survive a restart.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
    ]


def _pod_spec(args: RedisArgs, secret: StoredSecret, claim: k8s.core.v1.PersistentVolumeClaim) -> k8s.core.v1.PodSpecArgs:
    # valkey-cli reads REDISCLI_AUTH, so probes authenticate without a password on their command line.
    ping = k8s.core.v1.ExecActionArgs(command=["sh", "-c", '[ "$(valkey-cli -p 6379 ping)" = PONG ]'])
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=kube.pod_security(UID),
        containers=[
            k8s.core.v1.ContainerArgs(
                name="valkey",
                image=IMAGES["valkey"],
                command=["valkey-server"],
                args=server_args(),
                env=[kube.secret_env("REDISCLI_AUTH", secret.name, "password")],
                ports=[k8s.core.v1.ContainerPortArgs(name="redis", container_port=PORT)],
                readiness_probe=k8s.core.v1.ProbeArgs(exec_=ping, period_seconds=10, timeout_seconds=5),
                liveness_probe=k8s.core.v1.ProbeArgs(exec_=ping, period_seconds=20, timeout_seconds=5, failure_threshold=3),
                resources=kube.resources(args.resources),
                security_context=kube.container_security(),
                volume_mounts=[
                    k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
                    k8s.core.v1.VolumeMountArgs(name="auth", mount_path=AUTH_DIR, read_only=True),
                ],
            )
        ],
        volumes=[
            kube.claim_volume(claim),
            kube.secret_file_volume("auth", secret.name, AUTH_FILE),
        ],
    )
