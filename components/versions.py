"""Every image and chart version the platform deploys, pinned in one place.

Bump a version here and nowhere else; tests check that the real servers they start match these tags.
Bitnami images are never used: their versioned tags stopped being published in 2025.
"""

MLFLOW_VERSION = "3.15.1"
"""MLflow server version; the test requirements pin the same PyPI release."""

IMAGES = {
    # Last published MinIO server image; upstream stopped maintaining it in 2025-12.
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "mc": "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
    # The -full variant ships boto3, psycopg2 and the basic-auth app; the plain image has neither driver.
    "mlflow": f"ghcr.io/mlflow/mlflow:v{MLFLOW_VERSION}-full",
}
"""Container images by role, each pinned to an immutable release tag."""
