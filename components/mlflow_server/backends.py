"""The backend store engines: sqlite (a file on a retained claim, one writer) and postgres (the PostgresCluster,
optionally with MLflow's basic-auth app), and what each adds to the server's pod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.secret_store import StoredSecret

if TYPE_CHECKING:
    from components.mlflow_server import MlflowServerArgs

DATA_DIR = "/mlflow"
URI_KEY = "sqlalchemy-uri"
"""Key of the database Secret MLflow reads its backend URI from: `postgresql+psycopg2://`, the image's driver (the
`uri` key's plain `postgresql://` is for libpq tools)."""
AUTH_DIR = "/etc/mlflow/auth"
AUTH_FILE = "basic_auth.ini"
ADMIN_USERNAME = "admin"
CRYPTO_SECRET = "mlflow-crypto"
KEK_KEY = "kek-passphrase"
KEK_ENV = "MLFLOW_CRYPTO_KEK_PASSPHRASE"
"""MLflow encrypts the secrets it stores (AI gateway API keys) under a key derived from this passphrase; unset, it
uses a passphrase published in its source, so anyone with a database copy could decrypt them."""


@dataclass(frozen=True)
class SqliteBackend:
    """MLflow metadata in a SQLite file on a retained claim: one writer, so one replica."""

    size: str
    """Claim size (Kubernetes quantity)."""
    storage_class: pulumi.Input[str]
    """Storage class of the claim; reclaimPolicy Retain."""

    @property
    def uri(self) -> str:
        return f"sqlite:///{DATA_DIR}/mlflow.db"


@dataclass(frozen=True)
class PostgresBackend:
    """MLflow metadata in the `mlflow` database of the PostgresCluster; any number of replicas."""

    secret: pulumi.Input[str]
    """Secret in the server's namespace whose URI_KEY is the tracking database's SQLAlchemy URI."""
    auth_database_uri: pulumi.Input[str] | None = None
    """SQLAlchemy URI (a secret, psycopg2 named) of the basic-auth app's database; None: no authentication."""


@dataclass(frozen=True)
class BackendParts:
    """What a backend adds to the pod: server flags, env, volumes and the upgrade step."""

    flags: list[str]
    env: list[k8s.core.v1.EnvVarArgs]
    volumes: list[k8s.core.v1.VolumeArgs]
    mounts: list[k8s.core.v1.VolumeMountArgs]
    upgrade_script: str
    upgrade_env: list[k8s.core.v1.EnvVarArgs]


def sqlite_parts(backend: SqliteBackend, claim: k8s.core.v1.PersistentVolumeClaim) -> BackendParts:
    return BackendParts(
        flags=["--backend-store-uri", backend.uri],
        env=[],
        volumes=[kube.claim_volume(claim)],
        mounts=[k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR)],
        # A fresh database is created by the server itself; only an existing one needs migrating.
        upgrade_script=(
            f'if [ -f {DATA_DIR}/mlflow.db ]; then exec mlflow db upgrade "{backend.uri}"; fi; '
            'echo "no database yet; the server creates it"'
        ),
        upgrade_env=[],
    )


def postgres_parts(backend: PostgresBackend, auth: StoredSecret | None) -> BackendParts:
    # The URI carries the password, so it reaches the process only as an env var from its Secret, never as a flag.
    uri = kube.secret_env("MLFLOW_BACKEND_STORE_URI", backend.secret, URI_KEY)
    env = [uri]
    volumes, mounts, flags = [], [], []
    if auth is not None:
        flags = ["--app-name", "basic-auth"]
        env += [
            kube.secret_env("MLFLOW_FLASK_SERVER_SECRET_KEY", auth.name, "flask-secret-key"),
            *kube.plain_env({"MLFLOW_AUTH_CONFIG_PATH": f"{AUTH_DIR}/{AUTH_FILE}"}),
        ]
        volumes.append(kube.secret_file_volume("auth", auth.name, AUTH_FILE))
        mounts.append(k8s.core.v1.VolumeMountArgs(name="auth", mount_path=AUTH_DIR, read_only=True))
    return BackendParts(
        flags=flags, env=env, volumes=volumes, mounts=mounts,
        upgrade_script='exec mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"',
        upgrade_env=[uri],
    )


def auth_config(admin_password: str, database_uri: str) -> str:
    """MLflow's basic_auth.ini. It is read by ConfigParser with interpolation, so every '%' is written '%%'."""

    def escaped(value: str) -> str:
        return value.replace("%", "%%")

    return (
        "[mlflow]\n"
        # Users other than the admin start with no access; grants are explicit.
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {escaped(database_uri)}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        f"admin_password = {escaped(admin_password)}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def auth_secret(name: str, args: MlflowServerArgs, backend: PostgresBackend, child: pulumi.ResourceOptions) -> StoredSecret:
    """The generated admin (replacing MLflow's admin/password1234) and the session key all replicas share."""
    admin = random.RandomPassword(f"{name}-admin-password", length=32, special=True, override_special="-_.~!*@#%^&+=", opts=child)
    flask_key = random.RandomPassword(f"{name}-flask-secret-key", length=64, special=False, opts=child)
    return args.secrets.secret(
        f"{name}-auth",
        name="mlflow-auth",
        namespace=args.namespace,
        labels=kube.labels("mlflow", "auth"),
        data=pulumi.Output.all(admin.result, flask_key.result, backend.auth_database_uri).apply(
            lambda v: {
                "admin-username": ADMIN_USERNAME,
                "admin-password": v[0],
                "flask-secret-key": v[1],
                AUTH_FILE: auth_config(v[0], v[2]),
            }
        ),
        opts=child,
    )



def crypto_secret(name: str, args: MlflowServerArgs, child: pulumi.ResourceOptions) -> StoredSecret:
    """The generated KEK passphrase, one for both engines (the same resource, so a switch keeps it and with it every
    stored secret readable). Changing it needs `mlflow crypto rotate-kek` first; never regenerate it on its own."""
    passphrase = random.RandomPassword(f"{name}-kek-passphrase", length=48, special=False, opts=child)
    return args.secrets.secret(
        f"{name}-crypto",
        name=CRYPTO_SECRET,
        namespace=args.namespace,
        labels=kube.labels("mlflow", "crypto"),
        data=passphrase.result.apply(lambda value: {KEK_KEY: value}),
        opts=child,
    )
