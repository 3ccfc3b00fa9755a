"""The whole of a stack's settings (`mlops-platform:*` in Pulumi.<stack>.yaml), the rules across blocks, and the
typed `StackConfig` components read."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from components.config.airflow import AIRFLOW_DATABASES, AIRFLOW_LOGS_BUCKET, AirflowConfig
from components.config.backups import BackupsConfig
from components.config.base import Block
from components.config.formats import DnsLabel, Flag, Text
from components.config.front_door import FrontDoorConfig
from components.config.mlflow import MlflowConfig
from components.config.node_ports import NodePorts
from components.config.object_store import ObjectStoreConfig
from components.config.observability import ObservabilityConfig
from components.config.postgres import MLFLOW_DATABASES, TEMPORAL_DATABASES, PostgresConfig
from components.config.problems import Problem, reject
from components.config.redis import RedisConfig
from components.config.serving import ServingConfig
from components.config.storage import StorageConfig
from components.config.temporal import TemporalConfig
from components.config.vault import SecretsConfig, VaultConfig

PROJECT = "mlops-platform"

SCALAR_KEYS: Mapping[str, type] = {"kubeContext": str, "namespacePrefix": str, "protectState": bool}
"""Scalar settings; each is declared with a type, default and description in Pulumi.yaml."""
SECRET_KEYS: Mapping[str, str] = {
    "r2AccessKeyId": "R2 API token id (the S3 access key id)",
    "r2SecretAccessKey": "SHA-256 of the R2 API token value (the S3 secret access key)",
    "cloudflareApiToken": "Cloudflare API token that may manage R2 buckets",
    "alertmanagerReceiverUrl": "webhook or Slack incoming-webhook URL Alertmanager notifies",
    "vaultToken": "Vault token Pulumi configures Vault with (the root token from `vault operator init`, or a token with the platform's policy)",
    "oidcClientSecret": "client secret of frontDoor.oidc.clientId at the OpenID Connect provider",
}
"""Secret settings (`pulumi config set --secret`); only their presence is checked here, values are read as secrets."""
R2_SECRET_KEYS = {key: SECRET_KEYS[key] for key in ("r2AccessKeyId", "r2SecretAccessKey", "cloudflareApiToken")}
BLOCK_KEYS = (
    "storage", "objectStore", "mlflow", "postgres", "redis", "temporal", "backups", "observability", "secrets", "vault",
    "serving", "airflow", "nodePorts", "frontDoor",
)
"""Structured settings, which Pulumi.yaml cannot type; they live in the stack files."""


def _secret_needed(key: str, why: str, placeholder: str = "<value>") -> Problem:
    return Problem(key, None, f"{why}: pulumi config set --secret {PROJECT}:{key} {placeholder}")


def _secrets_set(info: ValidationInfo) -> frozenset[str] | None:
    """The secret settings that have a value; None when the caller did not say (e.g. a StackConfig built in code)."""
    return (info.context or {}).get("secrets")


class StackSettings(Block):
    """Every `mlops-platform:` setting of a stack file except the secrets (`SECRET_KEYS`), which are only counted."""

    # Rules across blocks live in validators of the later block, reading earlier ones from `info.data`: each is
    # checked once the blocks it reads are valid (an invalid block is absent there), so unrelated blocks do not hold
    # it back, and no rule is checked against a default standing in for a bad value, which could report a problem
    # that is not there. Defaults are validated too: the rules hold for blocks a stack file leaves out.
    model_config = ConfigDict(validate_default=True)

    kube_context: Text = Field("kind-mlops", description="kubeconfig context the kubernetes provider talks to.")
    namespace_prefix: DnsLabel = Field(
        "mlops",
        description="Prefix of every namespace the platform creates (`<prefix>-storage`, `<prefix>-mlflow`, ...).",
    )
    protect_state: Flag = Field(
        False,
        description="Protect stateful resources against `pulumi destroy` and keep them in the cluster if removed from code.",
    )
    storage: StorageConfig = Field(StorageConfig(), description="The Retain StorageClass.")
    object_store: ObjectStoreConfig = Field(
        ObjectStoreConfig(),
        description="Object storage for artifacts, datasets and backups.",
    )
    mlflow: MlflowConfig = Field(MlflowConfig(), description="The MLflow tracking server.")
    postgres: PostgresConfig = Field(PostgresConfig(), description="The PostgreSQL cluster.")
    redis: RedisConfig = Field(RedisConfig(), description="The Valkey server.")
    temporal: TemporalConfig = Field(TemporalConfig(), description="Temporal.")
    backups: BackupsConfig = Field(BackupsConfig(), description="Backups.")
    observability: ObservabilityConfig = Field(
        ObservabilityConfig(),
        description="Metrics, logs, dashboards and alerts.",
    )
    secrets: SecretsConfig = Field(SecretsConfig(), description="Where generated secrets are kept.")
    vault: VaultConfig | None = Field(
        None,
        description="Vault settings; only with secrets.store vault (absent then: the defaults).",
    )
    serving: ServingConfig = Field(ServingConfig(), description="Registered MLflow models served over HTTP.")
    airflow: AirflowConfig = Field(AirflowConfig(), description="Apache Airflow: pipelines on the platform.")
    node_ports: NodePorts = Field(
        default_factory=dict,
        description="Host-reachable NodePorts by service role; empty means ClusterIP Services only.",
    )
    front_door: FrontDoorConfig = Field(
        FrontDoorConfig(),
        description="The gateway publishing the UIs on <host>.<domain> with TLS and single sign-on (off: in-cluster and NodePorts only).",
    )

    @field_validator("object_store")
    @classmethod
    def _r2_needs_its_secrets(cls, store: ObjectStoreConfig, info: ValidationInfo) -> ObjectStoreConfig:
        present = _secrets_set(info)
        if store.engine == "r2" and present is not None:
            reject([
                _secret_needed(key, f"required with objectStore.engine r2 ({meaning})")
                for key, meaning in R2_SECRET_KEYS.items() if key not in present
            ], across_blocks=True)
        return store

    @field_validator("mlflow")
    @classmethod
    def _artifacts_in_a_bucket(cls, mlflow: MlflowConfig, info: ValidationInfo) -> MlflowConfig:
        store = info.data.get("object_store")
        if store and mlflow.artifact_bucket not in store.buckets:
            allowed = f"must be one of objectStore.buckets: {', '.join(store.buckets)}"
            reject([Problem("mlflow.artifactBucket", mlflow.artifact_bucket, allowed)], across_blocks=True)
        return mlflow

    @field_validator("backups")
    @classmethod
    def _recovery_reads_continuous_backups(cls, backups: BackupsConfig, info: ValidationInfo) -> BackupsConfig:
        postgres = info.data.get("postgres")
        if postgres and postgres.recovery is not None and not backups.continuous:
            recovery = postgres.recovery.model_dump(by_alias=True, exclude_unset=True)
            allowed = "recovery reads the continuous backups: set backups.continuous: true"
            reject([Problem("postgres.recovery", recovery, allowed)], across_blocks=True)
        return backups

    @field_validator("observability")
    @classmethod
    def _alerts_and_logs_have_a_place(cls, observe: ObservabilityConfig, info: ValidationInfo) -> ObservabilityConfig:
        if observe.enabled:
            reject(_observability_problems(observe, info), across_blocks=True)
        return observe

    @field_validator("airflow")
    @classmethod
    def _airflow_has_its_bucket(cls, airflow: AirflowConfig, info: ValidationInfo) -> AirflowConfig:
        if not airflow.enabled:
            return airflow
        problems = []
        store = info.data.get("object_store")
        if store and AIRFLOW_LOGS_BUCKET not in store.buckets:
            allowed = f"Airflow keeps its task logs in bucket {AIRFLOW_LOGS_BUCKET}: add it to objectStore.buckets"
            problems.append(Problem("objectStore.buckets", list(store.buckets), allowed))
        context = info.data.get("kube_context", "")
        if airflow.logs.nfs is not None and context.startswith("kind-"):
            allowed = "Kind nodes have no NFS client (kubernetes-sigs/kind#1806): leave airflow.logs.nfs out on Kind"
            problems.append(Problem("airflow.logs.nfs", airflow.logs.nfs.model_dump(by_alias=True), allowed))
        reject(problems, across_blocks=True)
        return airflow

    @field_validator("front_door")
    @classmethod
    def _front_door_hosts_exist(cls, door: FrontDoorConfig, info: ValidationInfo) -> FrontDoorConfig:
        if door.enabled:
            reject(_front_door_problems(door, info), across_blocks=True)
        return door

    @field_validator("vault")
    @classmethod
    def _vault_with_the_vault_store(cls, vault: VaultConfig | None, info: ValidationInfo) -> VaultConfig | None:
        secrets = info.data.get("secrets")
        if secrets is None:  # invalid, and reported as such
            return vault
        if secrets.store != "vault":
            if vault is not None:
                shown = vault.model_dump(by_alias=True, exclude_unset=True)
                reject([Problem("vault", shown, "Vault settings need secrets.store: vault")], across_blocks=True)
            return None
        vault = vault or VaultConfig()
        reject(_vault_problems(vault, info), across_blocks=True)
        return vault


def _observability_problems(observe: ObservabilityConfig, info: ValidationInfo) -> list[Problem]:
    problems = []
    receiver, present = observe.alerting.receiver, _secrets_set(info)
    if receiver != "none" and present is not None and "alertmanagerReceiverUrl" not in present:
        why = f"required with observability.alerting.receiver {receiver}"
        problems.append(_secret_needed("alertmanagerReceiverUrl", why, "<url>"))
    store = info.data.get("object_store")
    if store and store.engine != "minio" and observe.loki.bucket not in store.buckets:
        allowed = f"must be one of objectStore.buckets ({', '.join(store.buckets)}): Loki keeps its chunks there"
        problems.append(Problem("observability.loki.bucket", observe.loki.bucket, allowed))
    return problems


def _front_door_problems(door: FrontDoorConfig, info: ValidationInfo) -> list[Problem]:
    problems = []
    # Vault's install phase builds Vault alone: the client secret is needed from the configure phase on.
    vault = info.data.get("vault")
    installing_vault = vault is not None and vault.phase == "install"
    if (present := _secrets_set(info)) is not None and "oidcClientSecret" not in present and not installing_vault:
        problems.append(_secret_needed("oidcClientSecret", "required with frontDoor.enabled (the OIDC client's secret)"))
    observe, serving = info.data.get("observability"), info.data.get("serving")
    needs = {
        "grafana": (observe, lambda o: o.enabled, "observability.enabled: true"),
        "prometheus": (observe, lambda o: o.enabled, "observability.enabled: true"),
        "alertmanager": (observe, lambda o: o.enabled, "observability.enabled: true"),
        "models": (serving, lambda s: bool(s.models), "a model in serving.models"),
    }
    for host in door.hosts or ():
        block, there, what = needs.get(host, (None, None, ""))
        if block is not None and not there(block):
            problems.append(Problem("frontDoor.hosts", host, f"{host} is published only with {what}; leave it out"))
    grafana = "grafana" in (door.hosts or ("grafana",)) and observe is not None and observe.enabled
    oidc = door.oidc
    if grafana and oidc is not None:
        missing = [key for key in ("authorizationUrl", "tokenUrl", "userinfoUrl") if getattr(oidc, _snake(key)) is None]
        if missing:
            problems.append(Problem(
                "frontDoor.oidc", ", ".join(missing),
                "Grafana's generic OAuth needs authorizationUrl, tokenUrl and userinfoUrl (see <issuer>/.well-known/"
                "openid-configuration), or leave grafana out of frontDoor.hosts",
            ))
    return problems


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _vault_problems(vault: VaultConfig, info: ValidationInfo) -> list[Problem]:
    problems = []
    store = info.data.get("object_store")
    if vault.auto_unseal and store and store.engine != "s3":
        allowed = "the AWS KMS key is created with the aws provider of objectStore.engine s3"
        problems.append(Problem("vault.autoUnseal", True, allowed))
    present = _secrets_set(info)
    if vault.phase == "configure" and present is not None and "vaultToken" not in present:
        problems.append(_missing_token(vault, info.data.get("namespace_prefix", "mlops")))
    return problems


def _missing_token(vault: VaultConfig, namespace_prefix: str) -> Problem:
    """The configure phase without a token: the exact steps of the two-phase bootstrap, for this stack."""
    first = "on an empty cluster, first set vault.phase: install and run `pulumi up`; then " if vault.deploy else ""
    init = (
        "vault operator init -recovery-shares=5 -recovery-threshold=3` (KMS unseals it)"
        if vault.auto_unseal
        else "vault operator init -key-shares=5 -key-threshold=3`, then `vault operator unseal` with 3 keys on each server"
    )
    return Problem(
        "vaultToken", None,
        "the configure phase writes the platform's secrets into Vault and needs a token: "
        f"{first}initialise Vault (`kubectl -n {namespace_prefix}-vault exec vault-0 -- {init}), "
        f"run `pulumi config set --secret {PROJECT}:vaultToken <root token>`, set vault.phase: configure, and run "
        "`pulumi up` again (docs/runbooks/vault-bootstrap.md)",
    )


class StackConfig(StackSettings):
    """Everything a stack needs, validated."""

    stack: str = Field(
        exclude=True,
        description="Pulumi stack name (dev, prod, ...); not a setting, the name of the stack file.",
    )

    @classmethod
    def of(cls, stack: str, settings: StackSettings) -> StackConfig:
        """The typed config of `stack`, from settings already validated."""
        fields = {name: getattr(settings, name) for name in StackSettings.model_fields}
        return cls.model_construct(stack=stack, **fields)

    @property
    def secret_store(self) -> str:
        """kubernetes: generated secrets are Kubernetes Secrets written by Pulumi; vault: stored in Vault and synced."""
        return self.secrets.store

    @property
    def databases(self) -> tuple[str, ...]:
        """Every database the PostgresCluster serves: the configured ones plus those engines need."""
        extra = (
            (TEMPORAL_DATABASES if self.temporal.engine == "chart" else ())
            + (MLFLOW_DATABASES if self.mlflow.engine == "postgres" else ())
            + (AIRFLOW_DATABASES if self.airflow.enabled else ())
        )
        return self.postgres.databases + tuple(d for d in extra if d not in self.postgres.databases)

    def namespace(self, role: str) -> str:
        return f"{self.namespace_prefix}-{role}"

    @property
    def namespace_roles(self) -> tuple[str, ...]:
        """The platform's parts that get a namespace; `storage` only when the object store runs in the cluster.
        cert-manager's is added by the plan when something needs it (components/plan.py, needs_cert_manager)."""
        in_cluster_objects = ("storage",) if self.object_store.engine == "minio" else ()
        observability = ("observability", "node-metrics") if self.observability.enabled else ()
        vault = ((("vault",) if self.vault.deploy else ()) + ("external-secrets",)) if self.vault else ()
        if self.installing_vault:
            return vault
        serving = ("serving",) if self.serving.models else ()
        airflow = ("airflow",) if self.airflow.enabled else ()
        gateway = ("gateway",) if self.front_door.enabled else ()
        return (
            *in_cluster_objects, "mlflow", "data", "temporal", "cnpg", *observability, *vault, *serving, *airflow, *gateway,
        )

    @property
    def installing_vault(self) -> bool:
        """The first phase of a Vault stack: only Vault is deployed, nothing can be written into it yet."""
        return self.vault is not None and self.vault.phase == "install"
