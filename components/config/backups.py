"""`mlops-platform:backups`: schedules and retention of every backup the platform takes."""

from __future__ import annotations

from pydantic import Field

from components.config.base import Block
from components.config.formats import CRON5, CRON6, Flag, matching, whole

EXPIRING_BACKUP_PREFIXES = ("postgres/", "mlflow-sqlite/", "mirror-deleted/", "vault/")
"""Prefixes of the backups bucket whose objects expire after the retention; the live mirror (`mirror/`) does not."""
Cron = matching(CRON5, "expected a 5-field cron schedule such as '0 2 * * *' (minute hour day month weekday, UTC)")
SecondsCron = matching(
    CRON6, "expected a 6-field cron schedule starting with seconds, such as '0 0 3 * * *' (CloudNativePG ScheduledBackup)"
)
BarmanRetention = matching(r"^[1-9][0-9]*[dwm]$", "expected a number and d, w or m, such as 30d")
Days = whole(1, 3650)


class BackupsConfig(Block):
    """Schedules and retention of every backup the platform takes."""

    logical_schedule: Cron = Field("0 2 * * *", description="Cron (5 fields, UTC) of the pg_dump of every database.")
    sqlite_schedule: Cron = Field("15 * * * *", description="Cron of MLflow's SQLite copy (sqlite engine).")
    mirror_schedule: Cron = Field(
        "30 3 * * *",
        description="Cron of the object-store mirror (rclone sync of every data bucket).",
    )
    retention_days: Days = Field(
        7,
        description="Days dumps and copies are kept: by bucket lifecycle on s3/r2, by a prune step on minio.",
    )
    continuous: Flag = Field(
        False,
        description="PostgreSQL WAL archiving + base backups with the barman-cloud plugin (needs cert-manager): RPO of minutes.",
    )
    continuous_retention: BarmanRetention = Field(
        "30d",
        description="Retention of base backups and WAL (barman form: 30d, 4w, 6m).",
    )
    base_backup_schedule: SecondsCron = Field(
        "0 0 3 * * *",
        description="CloudNativePG ScheduledBackup cron: 6 fields, starting with seconds.",
    )
