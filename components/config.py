"""Typed stack configuration: read once from `Pulumi.<stack>.yaml`, validated before any resource exists.

`parse_stack_config` is a pure function over the decoded settings, so every rule is testable without mocks.
All problems are reported together in one `ConfigError`, a `pulumi.RunError`: the CLI prints its message
without a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

PROJECT = "mlops-platform"

NODE_PORT_RANGE = range(30000, 32768)

SEED_BUCKETS = (
    "training-datasets",
    "training-checkpoints",
    "training-results",
    "model-weights",
    "config-schemas",
    "mlflow-artifacts",
    "backups",
)

# Kubernetes' own grammar for resource.Quantity (k8s.io/apimachinery/pkg/api/resource).
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIX_FACTORS = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")
_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
_CRON5 = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")
_CRON6 = re.compile(rf"^{_CRON_FIELD}( {_CRON_FIELD}){{5}}$")
_BARMAN_RETENTION = re.compile(r"^[1-9][0-9]*[dwm]$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d+)?(/.*)?$")
_GO_DURATION = re.compile(r"^[1-9][0-9]*(s|m|h)$")
_PROM_DURATION = re.compile(r"^[1-9][0-9]*[hdwy]$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class ConfigError(pulumi.RunError):
    """A stack setting is invalid; the message names every bad key, its value and what is allowed."""


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes quantity (`512Mi` -> 536870912.0); raises ValueError if malformed."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(text)
    suffix = match["suffix"] or ""
    factor = 10 ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIX_FACTORS[suffix]
    return float(match["number"]) * factor


# --------------------------------------------------------------------------------------------------------------
# The typed configuration
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceSpec:
    """Container requests and limits, as Kubernetes quantities keyed by resource name (`cpu`, `memory`)."""

    requests: Mapping[str, str]
    """Guaranteed resources the scheduler reserves."""
    limits: Mapping[str, str]
    """Hard ceiling; memory over it gets the container OOM-killed."""

    def as_k8s(self) -> dict[str, dict[str, str]]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}


@dataclass(frozen=True)
class StorageConfig:
    """The one StorageClass every claim of the stack uses; it always has reclaimPolicy Retain."""

    class_name: str = "mlops-retained"
    """Name of the StorageClass the stack creates."""
    provisioner: str = "rancher.io/local-path"
    """CSI driver or provisioner (Kind: rancher.io/local-path; EKS: ebs.csi.aws.com)."""
    volume_binding_mode: str = "WaitForFirstConsumer"
    """WaitForFirstConsumer binds a volume where its pod is scheduled; Immediate binds at claim time."""
    allow_volume_expansion: bool = False
    """Whether claims may grow in place (the provisioner must support it; local-path does not)."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Provisioner parameters, e.g. {type: gp3, encrypted: "true"}."""


@dataclass(frozen=True)
class RetentionConfig:
    """Lifecycle rules of the cloud engines (s3, r2)."""

    backups_days: int = 7
    """Objects in the `backups` bucket expire after this many days."""
    noncurrent_version_days: int = 30
    """s3: overwritten or deleted object versions are kept this many days (undo window for mistakes)."""
    abort_multipart_days: int = 7
    """Incomplete multipart uploads are aborted after this many days."""


@dataclass(frozen=True)
class ObjectStoreConfig:
    """Where buckets live and how they are reached."""

    engine: str = "minio"
    """minio: an in-cluster MinIO StatefulSet (dev); s3: AWS S3 buckets; r2: Cloudflare R2 buckets."""
    bucket_prefix: str = ""
    """s3/r2: prefix making bucket names unique (`<prefix>-<bucket>`); required for those engines."""
    kms_key_arn: str = ""
    """s3: encrypt with this KMS key (SSE-KMS) instead of S3-managed keys (SSE-S3)."""
    aws_profile: str = ""
    """s3: AWS shared-config profile of the aws provider (empty: the standard credential chain)."""
    aws_role_arn: str = ""
    """s3: role the aws provider assumes (empty: none)."""
    account_id: str = ""
    """r2: Cloudflare account id; required for that engine."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    """s3/r2 lifecycle rules."""
    buckets: tuple[str, ...] = SEED_BUCKETS
    """Bucket names; `mlflow.artifactBucket` and `backups` must be among them."""
    region: str = "us-east-1"
    """Region reported to S3 clients."""
    size: str = "20Gi"
    """Claim size of the in-cluster engine."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
    )
    """Requests and limits of the in-cluster engine."""


@dataclass(frozen=True)
class IngressConfig:
    """How MLflow is published outside the cluster."""

    host: str
    """Public host name, e.g. mlflow.example.com."""
    class_name: str = "nginx"
    """IngressClass of the ingress controller."""
    tls_secret: str = ""
    """Secret with the TLS certificate for `host` (cert-manager fills it when `cluster_issuer` is set)."""
    cluster_issuer: str = ""
    """cert-manager ClusterIssuer to request the certificate from (empty: none)."""
    controller_namespace: str = "ingress-nginx"
    """Namespace of the ingress controller, whose pods the NetworkPolicy admits to MLflow."""


@dataclass(frozen=True)
class MlflowConfig:
    """The MLflow tracking server."""

    engine: str = "sqlite"
    """sqlite: a single-writer SQLite file on a retained claim (dev); postgres: databases on the PostgresCluster."""
    replicas: int = 1
    """Server replicas; exactly 1 with SQLite, 2 by default with PostgreSQL."""
    auth: bool = False
    """Require HTTP basic auth (MLflow's basic-auth app, generated admin); needs the postgres engine."""
    ingress: IngressConfig | None = None
    """Publish through an Ingress (None: in-cluster only)."""
    workers: int = 2
    """Server worker processes per replica (each holds its own copy of MLflow in memory)."""
    size: str = "5Gi"
    """Claim size of the SQLite backend."""
    artifact_bucket: str = "mlflow-artifacts"
    """Bucket (one of objectStore.buckets) the server proxies artifacts to."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "512Mi"}, {"cpu": "1", "memory": "1Gi"})
    )
    """Requests and limits of the server container."""


_DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

TEMPORAL_DATABASES = ("temporal", "temporal_visibility")
"""Databases the Temporal chart engine needs on the PostgresCluster (added automatically)."""
EXPIRING_BACKUP_PREFIXES = ("postgres/", "mlflow-sqlite/", "mirror-deleted/", "vault/")
"""Prefixes of the backups bucket whose objects expire after the retention; the live mirror (`mirror/`) does not."""
MLFLOW_DATABASES = ("mlflow", "mlflow_auth")
"""Databases the MLflow postgres engine needs: tracking data, and the basic-auth app's users (added automatically)."""


@dataclass(frozen=True)
class PostgresConfig:
    """The CloudNativePG cluster and the application databases on it."""

    instances: int = 1
    """PostgreSQL instances: 1 primary plus streaming replicas, spread over nodes."""
    size: str = "10Gi"
    """Data claim size per instance."""
    databases: tuple[str, ...] = ("platform", "users", "labeler")
    """Application databases, each owned by a login role of the same name."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
    )
    """Requests and limits of each PostgreSQL instance."""
    recovery: RecoveryConfig | None = None
    """Recover from continuous backups at creation (None: a new, empty cluster)."""


@dataclass(frozen=True)
class RedisConfig:
    """Valkey (Redis-compatible) for cache, pub/sub and WebSocket state."""

    size: str = "2Gi"
    """Claim size for the append-only file."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "50m", "memory": "64Mi"}, {"cpu": "500m", "memory": "256Mi"})
    )
    """Requests and limits of the server."""


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal: the CLI dev server on SQLite, or the Helm chart on PostgreSQL."""

    engine: str = "dev"
    """dev: `temporal server start-dev` on a retained claim; chart: the temporal chart on the PostgresCluster."""
    size: str = "5Gi"
    """Claim size of the dev engine's SQLite file."""
    num_history_shards: int = 512
    """Chart engine: history shards. FIXED FOREVER after the first deploy; changing it breaks the cluster."""
    replicas: int = 1
    """Chart engine: replicas of each server service (frontend, history, matching, worker)."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
    )
    """Requests and limits of the dev server, or of each chart server service."""


@dataclass(frozen=True)
class RecoveryConfig:
    """Bootstrap the PostgresCluster from its continuous backups instead of an empty initdb."""

    source_cluster: str = "postgres"
    """Name the backed-up cluster had (its server name in the object store)."""
    target_time: str = ""
    """Point in time to recover to (RFC 3339, e.g. 2026-11-22T10:00:00Z); empty: the latest WAL."""


@dataclass(frozen=True)
class BackupsConfig:
    """Schedules and retention of every backup the platform takes."""

    logical_schedule: str = "0 2 * * *"
    """Cron (5 fields, UTC) of the pg_dump of every database."""
    sqlite_schedule: str = "15 * * * *"
    """Cron of MLflow's SQLite copy (sqlite engine)."""
    mirror_schedule: str = "30 3 * * *"
    """Cron of the object-store mirror (rclone sync of every data bucket)."""
    retention_days: int = 7
    """Days dumps and copies are kept: by bucket lifecycle on s3/r2, by a prune step on minio."""
    continuous: bool = False
    """PostgreSQL WAL archiving + base backups with the barman-cloud plugin (needs cert-manager): RPO of minutes."""
    continuous_retention: str = "30d"
    """Retention of base backups and WAL (barman form: 30d, 4w, 6m)."""
    base_backup_schedule: str = "0 0 3 * * *"
    """CloudNativePG ScheduledBackup cron: 6 fields, starting with seconds."""


@dataclass(frozen=True)
class PrometheusConfig:
    """Metrics storage."""

    retention: str = "7d"
    """How long samples are kept (Prometheus duration: 12h, 7d, 2w, 1y)."""
    size: str = "10Gi"
    """Claim size of the TSDB; Prometheus also stops at 80 % of it (retentionSize), whichever comes first."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "200m", "memory": "512Mi"}, {"cpu": "1", "memory": "2Gi"})
    )
    """Requests and limits of the Prometheus container."""


@dataclass(frozen=True)
class AlertingConfig:
    """Where Alertmanager sends notifications."""

    receiver: str = "none"
    """none: alerts are only visible in Alertmanager and Grafana; webhook or slack: sent to `alertmanagerReceiverUrl`."""
    slack_channel: str = ""
    """slack: the channel to post to (the webhook URL's default channel when empty)."""
    size: str = "1Gi"
    """Claim size of Alertmanager's silences and notification log."""


@dataclass(frozen=True)
class GrafanaConfig:
    """Dashboards."""

    size: str = "2Gi"
    """Claim size of Grafana's SQLite database (users, stars, annotations)."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "50m", "memory": "192Mi"}, {"cpu": "500m", "memory": "512Mi"})
    )
    """Requests and limits of the Grafana container."""


@dataclass(frozen=True)
class LokiConfig:
    """Logs."""

    retention_days: int = 7
    """Days log lines are kept; the compactor deletes older chunks."""
    size: str = "10Gi"
    """Claim size: all chunks with the minio engine (filesystem), only the write-ahead log and index cache otherwise."""
    bucket: str = "logs"
    """s3/r2 engines: the bucket (one of objectStore.buckets) holding chunks and index."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"})
    )
    """Requests and limits of the Loki container."""


@dataclass(frozen=True)
class ObservabilityConfig:
    """Prometheus, Alertmanager, Grafana, Loki and Alloy."""

    enabled: bool = False
    """Deploy the ObservabilityStack (dev may turn it off to save about 1.3 GiB of memory)."""
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    """Metrics."""
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    """Notifications."""
    grafana: GrafanaConfig = field(default_factory=GrafanaConfig)
    """Dashboards."""
    loki: LokiConfig = field(default_factory=LokiConfig)
    """Logs."""


VAULT_PHASES = ("install", "configure")


@dataclass(frozen=True)
class VaultConfig:
    """HashiCorp Vault as the secret store (secrets.store: vault)."""

    deploy: bool = True
    """Run Vault in the cluster (HA, raft); false: use an existing Vault at `address`."""
    phase: str = "configure"
    """install: the first `pulumi up` on an empty cluster deploys Vault alone; configure: everything, Vault included."""
    address: str = "http://127.0.0.1:8200"
    """Where Pulumi reaches Vault (a port-forward, or the public address of an existing Vault)."""
    cluster_address: str = ""
    """Where the cluster reaches Vault; empty: the deployed Vault's Service."""
    kv_mount: str = "mlops"
    """KV v2 mount holding the platform's secrets under `<stack>/<namespace>/<secret>`."""
    replicas: int = 3
    """Vault servers (raft peers), spread over nodes."""
    data_size: str = "10Gi"
    """Raft data claim per server."""
    audit_size: str = "10Gi"
    """Audit log claim per server."""
    auto_unseal: bool = False
    """Create an AWS KMS key and let Vault unseal with it, so pods restart without unseal keys."""
    snapshot_schedule: str = "0 */6 * * *"
    """Cron of the raft snapshot CronJob (into the backups bucket)."""
    refresh_interval: str = "1h"
    """How often the sync operator re-reads each secret from Vault."""
    resources: ResourceSpec = field(
        default_factory=lambda: ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "512Mi"})
    )
    """Requests and limits of each Vault server."""


@dataclass(frozen=True)
class StackConfig:
    """Everything a stack needs, validated."""

    stack: str
    """Pulumi stack name (dev, prod, ...)."""
    kube_context: str = "kind-mlops"
    """kubeconfig context the kubernetes provider talks to."""
    namespace_prefix: str = "mlops"
    """Prefix of every namespace the platform creates (`<prefix>-storage`, `<prefix>-mlflow`, ...)."""
    protect_state: bool = False
    """Protect stateful resources against `pulumi destroy` and keep them in the cluster if removed from code."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """The Retain StorageClass."""
    object_store: ObjectStoreConfig = field(default_factory=ObjectStoreConfig)
    """Object storage for artifacts, datasets and backups."""
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    """The MLflow tracking server."""
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    """The PostgreSQL cluster."""
    redis: RedisConfig = field(default_factory=RedisConfig)
    """The Valkey server."""
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    """Temporal."""
    backups: BackupsConfig = field(default_factory=BackupsConfig)
    """Backups."""
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    """Metrics, logs, dashboards and alerts."""
    secret_store: str = "kubernetes"
    """kubernetes: generated secrets are Kubernetes Secrets written by Pulumi; vault: stored in Vault and synced."""
    vault: VaultConfig | None = None
    """Vault settings (secret_store vault)."""
    node_ports: Mapping[str, int] = field(default_factory=dict)
    """Host-reachable NodePorts by service role; empty means ClusterIP Services only."""

    @property
    def databases(self) -> tuple[str, ...]:
        """Every database the PostgresCluster serves: the configured ones plus those engines need."""
        extra = (TEMPORAL_DATABASES if self.temporal.engine == "chart" else ()) + (
            MLFLOW_DATABASES if self.mlflow.engine == "postgres" else ()
        )
        return self.postgres.databases + tuple(d for d in extra if d not in self.postgres.databases)

    def namespace(self, role: str) -> str:
        return f"{self.namespace_prefix}-{role}"

    @property
    def namespace_roles(self) -> tuple[str, ...]:
        """The platform's parts that get a namespace; `storage` only when the object store runs in the cluster."""
        in_cluster_objects = ("storage",) if self.object_store.engine == "minio" else ()
        cert_manager = ("cert-manager",) if self.backups.continuous else ()
        observability = ("observability", "node-metrics") if self.observability.enabled else ()
        vault = ((("vault",) if self.vault.deploy else ()) + ("external-secrets",)) if self.vault else ()
        if self.installing_vault:
            return vault
        return (*in_cluster_objects, "mlflow", "data", "temporal", "cnpg", *cert_manager, *observability, *vault)

    @property
    def installing_vault(self) -> bool:
        """The first phase of a Vault stack: only Vault is deployed, nothing can be written into it yet."""
        return self.vault is not None and self.vault.phase == "install"


# --------------------------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------------------------

SCALAR_KEYS: Mapping[str, type] = {"kubeContext": str, "namespacePrefix": str, "protectState": bool}
SECRET_KEYS: Mapping[str, str] = {
    "r2AccessKeyId": "R2 API token id (the S3 access key id)",
    "r2SecretAccessKey": "SHA-256 of the R2 API token value (the S3 secret access key)",
    "cloudflareApiToken": "Cloudflare API token that may manage R2 buckets",
    "alertmanagerReceiverUrl": "webhook or Slack incoming-webhook URL Alertmanager notifies",
    "vaultToken": "Vault token Pulumi configures Vault with (the root token from `vault operator init`, or a token with the platform's policy)",
}
"""Secret settings (`pulumi config set --secret`); only their presence is checked here, values are read as secrets."""
R2_SECRET_KEYS = {key: SECRET_KEYS[key] for key in ("r2AccessKeyId", "r2SecretAccessKey", "cloudflareApiToken")}
"""Scalar settings; each is declared with a type, default and description in Pulumi.yaml."""
BLOCK_KEYS = (
    "storage", "objectStore", "mlflow", "postgres", "redis", "temporal", "backups", "observability", "secrets", "vault", "nodePorts",
)
"""Structured settings, which Pulumi.yaml cannot type; they live in the stack files."""
NODE_PORT_ROLES = (
    "minioApi", "minioConsole", "mlflow", "postgres", "redis", "temporalGrpc", "temporalUi", "prometheus", "grafana", "loki",
)
"""Services that can be given a NodePort (the seed port map: 30900, 30901, 30500, 30543, 30679, 30700, 30233,
30090, 30030, 30100)."""
OBJECT_STORE_ENGINES = ("minio", "s3", "r2")
MLFLOW_ENGINES = ("sqlite", "postgres")
TEMPORAL_ENGINES = ("dev", "chart")
ALERT_RECEIVERS = ("none", "webhook", "slack")
SECRET_STORES = ("kubernetes", "vault")
BINDING_MODES = ("WaitForFirstConsumer", "Immediate")
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


class _Problems:
    """Collects readable problems, each naming the key, the value and what is allowed; secret values are never shown."""

    def __init__(self, secret_keys: frozenset[str] = frozenset()) -> None:
        self.lines: list[str] = []
        self.secret_keys = secret_keys

    def add(self, key: str, value: Any, allowed: str) -> None:
        shown = "[secret]" if key.split(".")[0] in self.secret_keys else json.dumps(value)
        self.lines.append(f"{PROJECT}:{key} = {shown}: {allowed}")


_INVALID = object()


class _Checks:
    """Value checks that record a problem and return _INVALID, or return the accepted value."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems

    def _accept(self, ok: bool, key: str, value: Any, allowed: str, result: Any = None) -> Any:
        if ok:
            return value if result is None else result
        self.problems.add(key, value, allowed)
        return _INVALID

    def string(self, key: str, value: Any) -> Any:
        return self._accept(isinstance(value, str) and bool(value), key, value, "expected a non-empty string")

    def boolean(self, key: str, value: Any) -> Any:
        return self._accept(isinstance(value, bool), key, value, "expected true or false")

    def one_of(self, *allowed: str) -> Callable[[str, Any], Any]:
        return lambda key, value: self._accept(value in allowed, key, value, f"allowed values: {', '.join(allowed)}")

    def integer(self, low: int, high: int) -> Callable[[str, Any], Any]:
        def check(key: str, value: Any) -> Any:
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
            return self._accept(ok, key, value, f"expected a whole number from {low} to {high}")

        return check

    def quantity(self, key: str, value: Any) -> Any:
        try:
            ok = isinstance(value, str) and quantity_value(value) > 0
        except ValueError:
            ok = False
        return self._accept(ok, key, value, "expected a positive Kubernetes quantity such as 5Gi, 512Mi or 500m (not 5GB)")

    def matching(self, pattern: re.Pattern, allowed: str) -> Callable[[str, Any], Any]:
        return lambda key, value: self._accept(isinstance(value, str) and bool(pattern.match(value)), key, value, allowed)

    def dns_label(self, key: str, value: Any) -> Any:
        ok = isinstance(value, str) and len(value) <= 40 and bool(_DNS_LABEL.match(value))
        return self._accept(ok, key, value, "expected a lowercase DNS label (a-z, 0-9, '-'), at most 40 characters")

    def dns_subdomain(self, key: str, value: Any) -> Any:
        ok = isinstance(value, str) and len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))
        return self._accept(ok, key, value, "expected a lowercase DNS name (a-z, 0-9, '-', '.')")

    def string_map(self, key: str, value: Any) -> Any:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        return self._accept(ok, key, value, 'expected a mapping of strings to strings (quote numbers and booleans: "true")', result=dict(value) if ok else None)

    def database_names(self, key: str, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            return self._accept(False, key, value, "expected a non-empty list of database names")
        bad = [d for d in value if not (isinstance(d, str) and _DATABASE_NAME.match(d)) or d in ("postgres", "template0", "template1")]
        if bad:
            return self._accept(False, key, bad, "database names are lowercase letters, digits and '_', start with a letter, and are not postgres/template0/template1")
        return self._accept(len(set(value)) == len(value), key, value, "database names must be unique", result=tuple(value))

    def buckets(self, key: str, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            return self._accept(False, key, value, "expected a non-empty list of bucket names")
        bad = [b for b in value if not (isinstance(b, str) and _BUCKET.match(b) and ".." not in b)]
        if bad:
            return self._accept(False, key, bad, "bucket names are 3-63 characters of a-z, 0-9, '.', '-', starting and ending alphanumeric")
        return self._accept(len(set(value)) == len(value), key, value, "bucket names must be unique", result=tuple(value))


class _Reader:
    """Reads one mapping of settings, remembering which keys were read so typos can be reported."""

    def __init__(self, key: str, raw: Any, problems: _Problems) -> None:
        self.key = key
        self.problems = problems
        self.check = _Checks(problems)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.add(key, raw, "expected a mapping of settings")
            raw = {}
        self.raw = raw
        self.used: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, default: Any, check: Callable[[str, Any], Any]) -> Any:
        """The checked value of `name`, or `default` when it is absent or invalid."""
        self.used.add(name)
        if name not in self.raw:
            return default
        value = check(self.path(name), self.raw[name])
        return default if value is _INVALID else value

    def block(self, name: str) -> _Reader:
        self.used.add(name)
        return _Reader(self.path(name), self.raw.get(name), self.problems)

    def finish(self) -> None:
        allowed = ", ".join(sorted(self.used))
        for name in sorted(set(self.raw) - self.used):
            self.problems.add(self.path(name), self.raw[name], f"unknown key (a typo?); allowed keys: {allowed}")


def _resources(parent: _Reader, default: ResourceSpec) -> ResourceSpec:
    block = parent.block("resources")
    amounts: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        section = block.block(kind)
        merged = dict(getattr(default, kind))
        for name in RESOURCE_NAMES:
            merged[name] = section.get(name, merged.get(name), section.check.quantity)
        amounts[kind] = {k: v for k, v in merged.items() if v is not None}
        section.finish()
    block.finish()
    for name, request in amounts["requests"].items():
        limit = amounts["limits"].get(name)
        if limit and quantity_value(request) > quantity_value(limit):
            parent.problems.add(f"{block.key}.requests.{name}", request, f"must not exceed its limit {limit}")
    return ResourceSpec(amounts["requests"], amounts["limits"])


def _storage(top: _Reader) -> StorageConfig:
    s, d = top.block("storage"), StorageConfig()
    storage = StorageConfig(
        class_name=s.get("className", d.class_name, s.check.dns_subdomain),
        provisioner=s.get("provisioner", d.provisioner, s.check.string),
        volume_binding_mode=s.get("volumeBindingMode", d.volume_binding_mode, s.check.one_of(*BINDING_MODES)),
        allow_volume_expansion=s.get("allowVolumeExpansion", d.allow_volume_expansion, s.check.boolean),
        parameters=s.get("parameters", d.parameters, s.check.string_map),
    )
    s.finish()
    return storage


def _retention(parent: _Reader) -> RetentionConfig:
    r, d = parent.block("retention"), RetentionConfig()
    days = r.check.integer(1, 3650)
    retention = RetentionConfig(
        backups_days=r.get("backupsDays", d.backups_days, days),
        noncurrent_version_days=r.get("noncurrentVersionDays", d.noncurrent_version_days, days),
        abort_multipart_days=r.get("abortMultipartDays", d.abort_multipart_days, days),
    )
    r.finish()
    return retention


def _object_store(top: _Reader) -> ObjectStoreConfig:
    o, d = top.block("objectStore"), ObjectStoreConfig()
    engine = o.get("engine", d.engine, o.check.one_of(*OBJECT_STORE_ENGINES))
    object_store = ObjectStoreConfig(
        engine=engine,
        buckets=o.get("buckets", d.buckets, o.check.buckets),
        region=o.get("region", "auto" if engine == "r2" else d.region, o.check.string),
        size=o.get("size", d.size, o.check.quantity),
        resources=_resources(o, d.resources),
        bucket_prefix=o.get("bucketPrefix", d.bucket_prefix, o.check.dns_label),
        kms_key_arn=o.get("kmsKeyArn", d.kms_key_arn, o.check.matching(_KMS_ARN, "expected a KMS key or alias ARN (arn:aws:kms:<region>:<account>:key/...)")),
        aws_profile=o.get("awsProfile", d.aws_profile, o.check.string),
        aws_role_arn=o.get("awsRoleArn", d.aws_role_arn, o.check.matching(_ROLE_ARN, "expected an IAM role ARN (arn:aws:iam::<account>:role/...)")),
        account_id=o.get("accountId", d.account_id, o.check.matching(_ACCOUNT_ID, "expected a Cloudflare account id (32 hexadecimal characters)")),
        retention=_retention(o),
    )
    o.finish()
    problems = o.problems
    if "backups" not in object_store.buckets:
        problems.add("objectStore.buckets", list(object_store.buckets), "must include the 'backups' bucket")
    if engine in ("s3", "r2") and not object_store.bucket_prefix:
        problems.add("objectStore.bucketPrefix", None, f"required with engine {engine}: bucket names must be unique (e.g. acme-mlops-prod)")
    if engine in ("s3", "r2") and object_store.bucket_prefix:
        too_long = [b for b in object_store.buckets if len(f"{object_store.bucket_prefix}-{b}") > 63]
        if too_long:
            problems.add("objectStore.bucketPrefix", object_store.bucket_prefix, f"makes bucket names longer than 63 characters: {', '.join(too_long)}")
    if engine == "s3" and not _AWS_REGION.match(object_store.region):
        problems.add("objectStore.region", object_store.region, "expected an AWS region such as us-east-1 with engine s3")
    if engine == "r2":
        if object_store.region != "auto":
            problems.add("objectStore.region", object_store.region, "R2 has one region: auto")
        if not object_store.account_id:
            problems.add("objectStore.accountId", None, "required with engine r2: the Cloudflare account id")
        if object_store.kms_key_arn:
            problems.add("objectStore.kmsKeyArn", object_store.kms_key_arn, "R2 does not support SSE-KMS; remove it")
    return object_store


def _ingress(parent: _Reader) -> IngressConfig | None:
    if "ingress" not in parent.raw:
        parent.used.add("ingress")
        return None
    i = parent.block("ingress")
    host = i.get("host", None, i.check.dns_subdomain)
    ingress = IngressConfig(
        host=host or "",
        class_name=i.get("className", "nginx", i.check.string),
        tls_secret=i.get("tlsSecret", "", i.check.dns_subdomain),
        cluster_issuer=i.get("clusterIssuer", "", i.check.string),
        controller_namespace=i.get("controllerNamespace", "ingress-nginx", i.check.dns_label),
    )
    i.finish()
    if host is None and "host" not in i.raw:
        i.problems.add("mlflow.ingress.host", None, "required when mlflow.ingress is set")
    return ingress


def _mlflow(top: _Reader, buckets: tuple[str, ...]) -> MlflowConfig:
    m, d = top.block("mlflow"), MlflowConfig()
    engine = m.get("engine", d.engine, m.check.one_of(*MLFLOW_ENGINES))
    mlflow = MlflowConfig(
        engine=engine,
        replicas=m.get("replicas", 2 if engine == "postgres" else d.replicas, m.check.integer(1, 20)),
        workers=m.get("workers", d.workers, m.check.integer(1, 16)),
        size=m.get("size", d.size, m.check.quantity),
        artifact_bucket=m.get("artifactBucket", d.artifact_bucket, m.check.string),
        resources=_resources(m, d.resources),
        auth=m.get("auth", d.auth, m.check.boolean),
        ingress=_ingress(m),
    )
    m.finish()
    if mlflow.engine == "sqlite" and mlflow.replicas != 1:
        m.problems.add(
            "mlflow.replicas", mlflow.replicas,
            "the sqlite engine runs exactly 1 replica (one writer on a ReadWriteOnce volume); set 1, or use engine postgres",
        )
    if mlflow.auth and mlflow.engine != "postgres":
        m.problems.add("mlflow.auth", True, "basic auth keeps its users in PostgreSQL: use engine postgres")
    if mlflow.artifact_bucket not in buckets:
        m.problems.add("mlflow.artifactBucket", mlflow.artifact_bucket, f"must be one of objectStore.buckets: {', '.join(buckets)}")
    return mlflow


def _secrets(top: _Reader, object_store: ObjectStoreConfig) -> None:
    """Secret settings are only checked for presence (and where they are needed); their values stay secret."""
    for key in SECRET_KEYS:
        top.used.add(key)
    if object_store.engine == "r2":
        for key, meaning in R2_SECRET_KEYS.items():
            if not top.raw.get(key):
                top.problems.add(key, None, f"required with objectStore.engine r2 ({meaning}): pulumi config set --secret {PROJECT}:{key} <value>")


def _postgres(top: _Reader) -> PostgresConfig:
    p, d = top.block("postgres"), PostgresConfig()
    postgres = PostgresConfig(
        instances=p.get("instances", d.instances, p.check.integer(1, 9)),
        size=p.get("size", d.size, p.check.quantity),
        databases=p.get("databases", d.databases, p.check.database_names),
        resources=_resources(p, d.resources),
        recovery=_recovery(p),
    )
    p.finish()
    return postgres


def _recovery(parent: _Reader) -> RecoveryConfig | None:
    parent.used.add("recovery")
    if "recovery" not in parent.raw:
        return None
    r, d = parent.block("recovery"), RecoveryConfig()
    recovery = RecoveryConfig(
        source_cluster=r.get("sourceCluster", d.source_cluster, r.check.dns_label),
        target_time=r.get("targetTime", d.target_time, r.check.matching(_RFC3339, "expected an RFC 3339 time such as 2026-11-22T10:00:00Z")),
    )
    r.finish()
    return recovery


def _backups(top: _Reader, postgres: PostgresConfig) -> BackupsConfig:
    b, d = top.block("backups"), BackupsConfig()
    cron5 = b.check.matching(_CRON5, "expected a 5-field cron schedule such as '0 2 * * *' (minute hour day month weekday, UTC)")
    backups = BackupsConfig(
        logical_schedule=b.get("logicalSchedule", d.logical_schedule, cron5),
        sqlite_schedule=b.get("sqliteSchedule", d.sqlite_schedule, cron5),
        mirror_schedule=b.get("mirrorSchedule", d.mirror_schedule, cron5),
        retention_days=b.get("retentionDays", d.retention_days, b.check.integer(1, 3650)),
        continuous=b.get("continuous", d.continuous, b.check.boolean),
        continuous_retention=b.get("continuousRetention", d.continuous_retention, b.check.matching(_BARMAN_RETENTION, "expected a number and d, w or m, such as 30d")),
        base_backup_schedule=b.get("baseBackupSchedule", d.base_backup_schedule, b.check.matching(
            _CRON6, "expected a 6-field cron schedule starting with seconds, such as '0 0 3 * * *' (CloudNativePG ScheduledBackup)")),
    )
    b.finish()
    if postgres.recovery is not None and not backups.continuous:
        b.problems.add("postgres.recovery", {}, "recovery reads the continuous backups: set backups.continuous: true")
    return backups


def _redis(top: _Reader) -> RedisConfig:
    r, d = top.block("redis"), RedisConfig()
    redis = RedisConfig(size=r.get("size", d.size, r.check.quantity), resources=_resources(r, d.resources))
    r.finish()
    return redis


def _temporal(top: _Reader) -> TemporalConfig:
    t, d = top.block("temporal"), TemporalConfig()
    temporal = TemporalConfig(
        engine=t.get("engine", d.engine, t.check.one_of(*TEMPORAL_ENGINES)),
        size=t.get("size", d.size, t.check.quantity),
        num_history_shards=t.get("numHistoryShards", d.num_history_shards, t.check.integer(1, 16384)),
        replicas=t.get("replicas", d.replicas, t.check.integer(1, 20)),
        resources=_resources(t, d.resources),
    )
    t.finish()
    if temporal.num_history_shards & (temporal.num_history_shards - 1):
        t.problems.add("temporal.numHistoryShards", temporal.num_history_shards, "use a power of two (512, 1024, ...); it can never change after the first deploy")
    return temporal


def _observability(top: _Reader, object_store: ObjectStoreConfig) -> ObservabilityConfig:
    o, d = top.block("observability"), ObservabilityConfig()
    duration = "expected a Prometheus duration in hours, days, weeks or years, such as 7d or 2w"
    p, dp = o.block("prometheus"), d.prometheus
    prometheus = PrometheusConfig(
        retention=p.get("retention", dp.retention, p.check.matching(_PROM_DURATION, duration)),
        size=p.get("size", dp.size, p.check.quantity),
        resources=_resources(p, dp.resources),
    )
    a, da = o.block("alerting"), d.alerting
    alerting = AlertingConfig(
        receiver=a.get("receiver", da.receiver, a.check.one_of(*ALERT_RECEIVERS)),
        slack_channel=a.get("slackChannel", da.slack_channel, a.check.string),
        size=a.get("size", da.size, a.check.quantity),
    )
    g, dg = o.block("grafana"), d.grafana
    grafana = GrafanaConfig(size=g.get("size", dg.size, g.check.quantity), resources=_resources(g, dg.resources))
    lo, dl = o.block("loki"), d.loki
    loki = LokiConfig(
        retention_days=lo.get("retentionDays", dl.retention_days, lo.check.integer(1, 3650)),
        size=lo.get("size", dl.size, lo.check.quantity),
        bucket=lo.get("bucket", dl.bucket, lo.check.string),
        resources=_resources(lo, dl.resources),
    )
    observability = ObservabilityConfig(
        enabled=o.get("enabled", d.enabled, o.check.boolean),
        prometheus=prometheus,
        alerting=alerting,
        grafana=grafana,
        loki=loki,
    )
    for reader in (p, a, g, lo, o):
        reader.finish()
    if not observability.enabled:
        return observability
    if alerting.receiver != "none" and not top.raw.get("alertmanagerReceiverUrl"):
        o.problems.add(
            "alertmanagerReceiverUrl", None,
            f"required with observability.alerting.receiver {alerting.receiver}: "
            f"pulumi config set --secret {PROJECT}:alertmanagerReceiverUrl <url>",
        )
    if object_store.engine != "minio" and loki.bucket not in object_store.buckets:
        o.problems.add(
            "observability.loki.bucket", loki.bucket,
            f"must be one of objectStore.buckets ({', '.join(object_store.buckets)}): Loki keeps its chunks there",
        )
    return observability


def _secret_store(top: _Reader) -> tuple[str, VaultConfig | None]:
    s = top.block("secrets")
    store = s.get("store", "kubernetes", s.check.one_of(*SECRET_STORES))
    s.finish()
    top.used.add("vault")
    if store != "vault":
        if top.raw.get("vault") is not None:
            top.problems.add("vault", top.raw["vault"], "Vault settings need secrets.store: vault")
        return store, None
    v, d = top.block("vault"), VaultConfig()
    vault = VaultConfig(
        deploy=v.get("deploy", d.deploy, v.check.boolean),
        phase=v.get("phase", d.phase, v.check.one_of(*VAULT_PHASES)),
        address=v.get("address", d.address, v.check.matching(_URL, "expected an http(s) URL such as https://vault.example.com:8200")),
        cluster_address=v.get("clusterAddress", d.cluster_address, v.check.matching(_URL, "expected an http(s) URL")),
        kv_mount=v.get("kvMount", d.kv_mount, v.check.dns_label),
        replicas=v.get("replicas", d.replicas, v.check.integer(1, 7)),
        data_size=v.get("dataSize", d.data_size, v.check.quantity),
        audit_size=v.get("auditSize", d.audit_size, v.check.quantity),
        auto_unseal=v.get("autoUnseal", d.auto_unseal, v.check.boolean),
        snapshot_schedule=v.get("snapshotSchedule", d.snapshot_schedule, v.check.matching(_CRON5, "expected a 5-field cron schedule such as '0 */6 * * *'")),
        refresh_interval=v.get("refreshInterval", d.refresh_interval, v.check.matching(_GO_DURATION, "expected a duration such as 15m or 1h")),
        resources=_resources(v, d.resources),
    )
    v.finish()
    if not vault.deploy and not vault.cluster_address:
        v.problems.add("vault.clusterAddress", None, "required with vault.deploy false: where the cluster reaches the existing Vault")
    if vault.deploy and vault.replicas % 2 == 0:
        v.problems.add("vault.replicas", vault.replicas, "use an odd number of raft peers (1, 3, 5) so a majority survives a loss")
    if vault.auto_unseal and top.raw.get("objectStore", {}).get("engine") != "s3":
        v.problems.add("vault.autoUnseal", True, "the AWS KMS key is created with the aws provider of objectStore.engine s3")
    if vault.auto_unseal and not vault.deploy:
        v.problems.add("vault.autoUnseal", True, "configure the seal of an existing Vault where it runs; autoUnseal needs vault.deploy")
    if vault.phase == "install" and not vault.deploy:
        v.problems.add("vault.phase", "install", "the install phase deploys Vault; with vault.deploy false use phase configure")
    if vault.phase == "configure" and not top.raw.get("vaultToken"):
        namespace = f"{top.raw.get('namespacePrefix', 'mlops')}-vault"
        first = "on an empty cluster, first set vault.phase: install and run `pulumi up`; then " if vault.deploy else ""
        init = (
            "vault operator init -recovery-shares=5 -recovery-threshold=3` (KMS unseals it)"
            if vault.auto_unseal
            else "vault operator init -key-shares=5 -key-threshold=3`, then `vault operator unseal` with 3 keys on each server"
        )
        top.problems.add(
            "vaultToken", None,
            "the configure phase writes the platform's secrets into Vault and needs a token: "
            f"{first}initialise Vault (`kubectl -n {namespace} exec vault-0 -- {init}), "
            f"run `pulumi config set --secret {PROJECT}:vaultToken <root token>`, set vault.phase: configure, and run "
            "`pulumi up` again (docs/runbooks/vault-bootstrap.md)",
        )
    return store, vault


def _node_ports(top: _Reader) -> dict[str, int]:
    n = top.block("nodePorts")
    in_range = n.check.integer(NODE_PORT_RANGE.start, NODE_PORT_RANGE.stop - 1)
    ports = {role: n.get(role, None, in_range) for role in NODE_PORT_ROLES}
    n.finish()
    owner: dict[int, str] = {}
    for role, port in ports.items():
        if port is None:
            continue
        if port in owner:
            n.problems.add(f"nodePorts.{role}", port, f"already used by nodePorts.{owner[port]}; every NodePort must be unique")
        owner[port] = role
    return {role: port for role, port in ports.items() if port is not None}


def parse_stack_config(stack: str, raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Build the typed configuration from decoded project settings (keys without the `mlops-platform:` prefix).

    `secret_keys` names the settings stored as secrets, whose values no message may show.
    Raises one ConfigError listing every problem found.
    """
    problems = _Problems(secret_keys | frozenset(SECRET_KEYS))
    top, d = _Reader("", raw, problems), StackConfig(stack=stack)
    kube_context = top.get("kubeContext", d.kube_context, top.check.string)
    namespace_prefix = top.get("namespacePrefix", d.namespace_prefix, top.check.dns_label)
    protect_state = top.get("protectState", d.protect_state, top.check.boolean)
    storage = _storage(top)
    object_store = _object_store(top)
    mlflow = _mlflow(top, object_store.buckets)
    postgres = _postgres(top)
    redis = _redis(top)
    temporal = _temporal(top)
    backups = _backups(top, postgres)
    observability = _observability(top, object_store)
    secret_store, vault = _secret_store(top)
    node_ports = _node_ports(top)
    _secrets(top, object_store)
    top.finish()
    if problems.lines:
        raise ConfigError(
            f"invalid configuration in Pulumi.{stack}.yaml ({len(problems.lines)} problem(s)):\n  - "
            + "\n  - ".join(problems.lines)
        )
    return StackConfig(
        stack=stack,
        kube_context=kube_context,
        namespace_prefix=namespace_prefix,
        protect_state=protect_state,
        storage=storage,
        object_store=object_store,
        mlflow=mlflow,
        postgres=postgres,
        redis=redis,
        temporal=temporal,
        backups=backups,
        observability=observability,
        secret_store=secret_store,
        vault=vault,
        node_ports=node_ports,
    )


def decode_settings(values: Mapping[str, str]) -> dict[str, Any]:
    """Decode the strings Pulumi hands the program: structured blocks are JSON, scalars are typed per Pulumi.yaml."""
    decoded: dict[str, Any] = {}
    for key, text in values.items():
        kind = SCALAR_KEYS.get(key)
        if kind is str:
            decoded[key] = text
        elif kind is bool:
            decoded[key] = {"true": True, "false": False}.get(text, text)
        else:
            try:
                decoded[key] = json.loads(text)
            except (TypeError, ValueError):
                decoded[key] = text
    return decoded


def load_stack_config() -> StackConfig:
    """Read every `mlops-platform:*` setting of the running stack and validate it."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{PROJECT}:"
    every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {key[len(prefix):]: value for key, value in every.items() if key.startswith(prefix)}
    secret = {key[len(prefix):] for key in every if key.startswith(prefix) and runtime_config.is_config_secret(key)}
    return parse_stack_config(pulumi.get_stack(), decode_settings(values), frozenset(secret))
