"""Every image and chart version the platform deploys, pinned in one place.

Bump a version here and nowhere else; tests check that the real servers they start match these tags.
Bitnami images are never used: their versioned tags stopped being published in 2025.
"""

from dataclasses import dataclass

MLFLOW_VERSION = "3.15.1"
"""MLflow server version; the test requirements pin the same PyPI release."""

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
    "temporal-cli": "temporalio/temporal:1.9.1",
    "temporal-server": "temporalio/server:1.31.2",
    "temporal-admin-tools": "temporalio/admin-tools:1.31.2",
    "temporal-ui": "temporalio/ui:2.52.0",
    # Backups: uploads, prunes and mirrors; the drills run Debian's rclone with the same flags.
    "rclone": "rclone/rclone:1.75.0",
}
"""Container images by role, each pinned to an immutable release tag."""


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to a version, with the repository it comes from."""

    name: str
    version: str
    repository: str


CHARTS = {
    "cloudnative-pg": Chart("cloudnative-pg", "0.29.0", "https://cloudnative-pg.github.io/charts"),
    # Temporal's chart installs no database; it runs its schema job as a Helm hook.
    "temporal": Chart("temporal", "1.6.0", "https://go.temporal.io/helm-charts"),
    # Continuous PostgreSQL backups: the barman-cloud plugin (replacing CNPG's deprecated in-tree barmanObjectStore)
    # and cert-manager, which issues the plugin's TLS certificates.
    "plugin-barman-cloud": Chart("plugin-barman-cloud", "0.7.0", "https://cloudnative-pg.github.io/charts"),
    "cert-manager": Chart("cert-manager", "v1.21.1", "https://charts.jetstack.io"),
}
"""Helm charts by name, pinned; ../shared/reference/charts/<name>/<version> holds their values and CRDs."""
