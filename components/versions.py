"""Every image and chart version the platform deploys, pinned in one place.

Bump a version here and nowhere else; tests check that the real servers they start match these tags.
Bitnami images are never used: their versioned tags stopped being published in 2025.
"""

from dataclasses import dataclass

MLFLOW_VERSION = "3.15.1"
"""MLflow server version; the test requirements pin the same PyPI release."""

AIRFLOW_VERSION = "3.3.2"
"""Apache Airflow version of the image; scripts/airflow-requirements.txt pins the same PyPI release for the real tests."""

AIRFLOW_PROVIDERS = {"amazon": "9.39.0", "postgres": "7.1.1", "fab": "3.10.2"}
"""Providers the platform relies on (S3 remote logs, the PostgreSQL metadata database, the FAB auth manager and its
users), pinned in the real tests' virtualenv. The image brings the releases its own constraints pinned at build time."""

POSTGRES_MAJOR = 17
"""PostgreSQL major version of the cluster; backup clients must use the same major."""

IMAGES = {
    # Last published MinIO server image; upstream stopped maintaining it in 2025-12.
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "mc": "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
    # The -full variant ships boto3, psycopg2 and the basic-auth app; the plain image has neither driver.
    "mlflow": f"ghcr.io/mlflow/mlflow:v{MLFLOW_VERSION}-full",
    "postgres": f"ghcr.io/cloudnative-pg/postgresql:{POSTGRES_MAJOR}.6-standard-trixie",
    "valkey": "valkey/valkey:9.1.1",
    # The Temporal CLI image, whose `server start-dev` is the dev engine (temporalio/auto-setup is deprecated).
    # Dev and prod servers differ by one minor, on purpose: CLI 1.9.1 embeds Temporal Server 1.32.0, while the
    # newest Temporal chart (1.6.0) is built and tested for server 1.31.2 and no chart release targets 1.32 yet.
    # Running 1.32 under the 1.6.0 chart would pair a server with config templates and a schema job it was not
    # released with; an older CLI would lose what dev users get from 1.9.1. The SDK/gRPC API workflows use is the same
    # in both; the dev SQLite store and the prod PostgreSQL store share no data, so no schema skew can meet. Move
    # prod to 1.32 with the first chart release that pins it.
    "temporal-cli": "temporalio/temporal:1.9.1",
    "temporal-server": "temporalio/server:1.31.2",
    "temporal-admin-tools": "temporalio/admin-tools:1.31.2",
    "temporal-ui": "temporalio/ui:2.52.0",
    # Python 3.11, as CI's interpreter that runs the same release in the real tests (the bare tag is 3.12).
    "airflow": f"apache/airflow:{AIRFLOW_VERSION}-python3.11",
    # Airflow's StatsD metrics as Prometheus metrics; DAGs from git (`airflow.dags.git`).
    "statsd-exporter": "prom/statsd-exporter:v0.30.0",
    "git-sync": "registry.k8s.io/git-sync/git-sync:v4.4.0",
    # Backups: uploads, prunes and mirrors; the drills run Debian's rclone with the same flags.
    "rclone": "rclone/rclone:1.75.0",
    # The Vault chart's server image; the snapshot CronJob runs the same CLI.
    "vault": "hashicorp/vault:2.0.4",
    # The front door's data plane: the Envoy build Envoy Gateway v1.9.0 defaults to (api/v1alpha1/shared_types.go),
    # named here so a gateway-helm bump is a visible proxy bump too.
    "envoy": "docker.io/envoyproxy/envoy:distroless-v1.39.0",
}
"""Container images by role, each pinned to an immutable release tag."""


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to a version, with the repository it comes from."""

    name: str
    version: str
    repository: str
    """An HTTP chart repository, or an OCI registry path (`oci://host/path`) under which the chart is `name`."""

    @property
    def oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def reference(self) -> str:
        """What Helm is given as the chart: `oci://host/path/name` from a registry, the bare name from a repository."""
        return f"{self.repository}/{self.name}" if self.oci else self.name

    @classmethod
    def from_reference(cls, chart: str, version: str, repository: str = "") -> "Chart":
        """The inverse of `reference` (with the HTTP repository passed apart, as Helm takes it)."""
        if chart.startswith("oci://"):
            registry, _, name = chart.rpartition("/")
            return cls(name, version, registry)
        return cls(chart, version, repository)


CHARTS = {
    "cloudnative-pg": Chart("cloudnative-pg", "0.29.0", "https://cloudnative-pg.github.io/charts"),
    # Temporal's chart installs no database; it runs its schema job as a Helm hook.
    "temporal": Chart("temporal", "1.6.0", "https://go.temporal.io/helm-charts"),
    # Continuous PostgreSQL backups: the barman-cloud plugin (replacing CNPG's deprecated in-tree barmanObjectStore)
    # and cert-manager, which issues the plugin's TLS certificates.
    "plugin-barman-cloud": Chart("plugin-barman-cloud", "0.7.0", "https://cloudnative-pg.github.io/charts"),
    "cert-manager": Chart("cert-manager", "v1.21.1", "https://charts.jetstack.io"),
    # Observability. Each chart pins its own images (Prometheus, Alertmanager, Grafana, Loki 3.7.6, Alloy v1.18.1).
    "kube-prometheus-stack": Chart("kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"),
    # Loki's chart moved to grafana-community; Promtail reached end of life on 2026-03-02, Alloy replaces it.
    "loki": Chart("loki", "18.11.0", "https://grafana-community.github.io/helm-charts"),
    "alloy": Chart("alloy", "1.11.1", "https://grafana.github.io/helm-charts"),
    # Secrets (prod): Vault (BUSL) as the store, External Secrets Operator (Apache-2.0) syncing it into Secrets.
    "vault": Chart("vault", "0.34.1", "https://helm.releases.hashicorp.com"),
    "external-secrets": Chart("external-secrets", "2.9.0", "https://charts.external-secrets.io"),
    # The front door (Gateway API): Envoy Gateway, CNCF, Gateway API conformant, OIDC in its SecurityPolicy; it
    # replaces the community ingress-nginx, retired in March 2026. Its chart ships the Gateway API CRDs (v1.6.1).
    # Published only to an OCI registry; v1.9.0 is the newest release (2026-08-15).
    "gateway-helm": Chart("gateway-helm", "v1.9.0", "oci://docker.io/envoyproxy"),
}
"""Helm charts by name, pinned; ../shared/reference/charts/<name>/<version> holds their values and CRDs."""
