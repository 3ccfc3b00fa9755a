"""Fault injection: does the test suite notice the bugs a developer could plausibly write?

Each fault in CATALOGUE is one realistic single change (a snippet to find, its replacement) that leaves a stack that
still renders. For each, a scratch copy of the tracked files gets the fault, the fault's own test files run
(`pytest -x -q`), then the whole suite if those stay green. A fault is *killed* when a test fails, *survived* when
everything passes. Not part of CI (a full run takes hours on a laptop); run it before a release:

    venv/bin/python -m tools.faults              # every fault; the whole suite for those the targeted tests miss
    venv/bin/python -m tools.faults --quick      # targeted test files only
    venv/bin/python -m tools.faults --only net-redis-anywhere --only iso-owner-of-all
    venv/bin/python -m tools.faults --check      # every snippet occurs exactly once; runs no tests

Faults name code by a snippet, never by file and line, so they keep working when code moves between modules; a
snippet that is not found exactly once in the tracked sources fails the run loudly. `hint` only says where it lived.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEARCHED = ("components/", "__main__.py", "tools/", "policy/", "scripts/", "docs/runbooks/", "dev/")
"""Tracked paths a snippet may live in; this file is excluded (it quotes every snippet)."""
LINKED = ("venv", ".ci/checkov", ".ci/node", ".ci/airflow")
"""Untracked tool directories the tests look for beside the checkout; linked, not copied, into the scratch copy."""


@dataclass(frozen=True)
class Fault:
    id: str
    cls: str
    """data-safety, secrets, access, isolation, naming, retention, network, alerts, config, hardening."""
    why: str
    """What a user would suffer."""
    find: str
    replace: str
    tests: tuple[str, ...]
    """Test files that should kill it; the whole suite runs if they stay green."""
    hint: str = ""
    """Where the snippet lived when the fault was written (informational only)."""
    equivalent: str = ""
    """Why no test can tell the fault from the original (an equivalent mutant): its targeted tests still run, and a
    kill still counts, but the whole suite is not spent on it and the run reports it with this reason."""


F = Fault
CATALOGUE: tuple[Fault, ...] = (
    # --- data safety ------------------------------------------------------------------------------------------
    F("ds-storage-class-delete", "data-safety", "deleting a claim deletes the volume and its data",
      ' reclaim_policy="Retain",', ' reclaim_policy="Delete",', ("tests/test_cluster.py",), "components/cluster.py"),
    F("ds-stateful-not-retained", "data-safety", "removing a data resource from code deletes it in the cluster",
      "pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)", "pulumi.ResourceOptions(protect=protect, retain_on_delete=False)",
      ("tests/test_platform_invariants.py", "tests/test_postgres_cluster.py"), "components/kube.py"),
    F("ds-database-reclaim-delete", "data-safety", "deleting a Database resource drops the application's data",
      '"databaseReclaimPolicy": "retain",', '"databaseReclaimPolicy": "delete",', ("tests/test_postgres_cluster.py",),
      "components/postgres_cluster.py"),
    F("ds-redis-no-aof", "data-safety", "Valkey loses every key on a restart",
      '"--appendonly", "yes",', '"--appendonly", "no",', ("tests/test_redis.py",), "components/redis.py"),
    F("ds-vault-pvc-deleted", "data-safety", "scaling or deleting Vault's StatefulSet deletes its raft data",
      '"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}',
      '"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}',
      ("tests/test_vault.py",), "components/vault_server.py"),
    F("ds-upload-to-bucket-root", "data-safety", "backups land at the bucket root, where restores never look",
      'f\'rclone copy --checksum /backup/{prefix} "store:$BACKUP_BUCKET/{prefix}"\'',
      'f\'rclone copy --checksum /backup/{prefix} "store:$BACKUP_BUCKET"\'',
      ("tests/test_backups.py", "tests/test_backup_drills.py"), "components/backups.py"),
    F("ds-mirror-no-backup-dir", "data-safety", "an object deleted at the source is gone from the mirror too",
      'f\'--backup-dir "store:$BACKUP_BUCKET/mirror-deleted/$stamp/{logical}"\'', "''",
      ("tests/test_backups.py", "tests/test_backup_drills.py"), "components/backups.py"),
    F("ds-pg-dump-plain", "data-safety", "dumps are plain SQL that the runbook's pg_restore cannot read",
      "f'pg_dump --format=custom", "f'pg_dump --format=plain", ("tests/test_backup_drills.py", "tests/test_backups.py"),
      "components/backups.py"),
    F("ds-sqlite-file-copy", "data-safety", "the SQLite backup copies a file a writer may tear",
      "    src.backup(dst)\n    check = ", "    dst.executescript(''.join(src.iterdump()))\n    check = ",
      ("tests/test_backup_drills.py", "tests/test_backups.py"), "components/backups/mlflow_sqlite.py"),
    # --- secrets ----------------------------------------------------------------------------------------------
    F("sec-uri-not-secret", "secrets", "database URIs with passwords appear in plain text in the Pulumi state",
      'return secrets[0], pulumi.Output.secret(data.apply(lambda fields: fields["uri"]))',
      'return secrets[0], data.apply(lambda fields: fields["uri"])', ("tests/test_postgres_cluster.py",),
      "components/postgres_cluster.py",
      equivalent="the URI derives from a RandomPassword result, which pulumi_random's SDK marks secret itself (additional_secret_outputs); Output.secret here is defence in depth"),
    F("sec-secret-data-not-secret", "secrets", "every Vault-held secret value is stored in plain text in the state",
      "data_json=pulumi.Output.secret(pulumi.Output.json_dumps(data))", "data_json=pulumi.Output.json_dumps(data)",
      ("tests/test_vault.py",), "components/secret_store.py",
      equivalent="pulumi_vault's SDK marks SecretV2.data_json secret itself, and every payload is a pulumi_random result or a require_secret value; tests/test_platform_invariants.py proves every payload is secret"),
    F("sec-receiver-url-plain", "secrets", "the Alertmanager receiver URL (a webhook token) is stored in plain text",
      "url = pulumi.Output.secret(args.receiver_url) if", "url = pulumi.Output.from_input(args.receiver_url) if",
      ("tests/test_observability.py",), "components/observability.py",
      equivalent="the URL's only source is config.require_secret, already a secret; Output.secret here is defence in depth"),
    F("sec-superuser-access", "secrets", "CloudNativePG publishes a superuser Secret any namespace reader can use",
      '"enableSuperuserAccess": False,', '"enableSuperuserAccess": True,', ("tests/test_postgres_cluster.py",),
      "components/postgres_cluster.py"),
    F("sec-short-redis-password", "secrets", "the Valkey password is 8 characters",
      'random.RandomPassword(f"{name}-password", length=32', 'random.RandomPassword(f"{name}-password", length=8',
      ("tests/test_redis.py", "tests/test_platform_invariants.py"), "components/redis.py"),
    F("sec-rclone-env-auth", "secrets", "rclone falls back to the node's ambient credentials",
      '"RCLONE_CONFIG_STORE_ENV_AUTH": "false",', '"RCLONE_CONFIG_STORE_ENV_AUTH": "true",',
      ("tests/test_backups.py", "tests/test_platform_invariants.py"), "components/backups.py"),
    F("sec-mlflow-default-kek", "secrets", "MLflow encrypts stored API keys under the passphrase printed in its source",
      "        kube.secret_env(KEK_ENV, crypto_secret, KEK_KEY),\n", "",
      ("tests/test_mlflow_server.py", "tests/test_mlflow_real.py"), "components/mlflow_server/server.py"),
    # --- access paths -----------------------------------------------------------------------------------------
    F("ap-no-172-31", "access", "pods in 172.31.0.0/16 (AWS VPC CNI's default VPC) cannot be scraped",
      'POD_ADDRESS_PATTERNS = ("10.*", "192.168.*", *(f"172.{n}.*" for n in range(16, 32)))',
      'POD_ADDRESS_PATTERNS = ("10.*", "192.168.*", *(f"172.{n}.*" for n in range(16, 31)))',
      ("tests/test_mlflow_real.py", "tests/test_mlflow_server.py"), "components/mlflow_server.py"),
    F("ap-no-192-168", "access", "pods in 192.168.0.0/16 (Calico's default pool) cannot be scraped",
      'POD_ADDRESS_PATTERNS = ("10.*", "192.168.*", ', 'POD_ADDRESS_PATTERNS = ("10.*", ',
      ("tests/test_mlflow_real.py", "tests/test_mlflow_server.py"), "components/mlflow_server.py"),
    F("ap-bare-host-refused", "access", "a Host header without a port (the front door's host, port 443 implied) gets 403",
      'for pattern in (host, f"{host}:*")]', 'for pattern in (f"{host}:*",)]',
      ("tests/test_mlflow_real.py", "tests/test_mlflow_server.py"), "components/mlflow_server.py"),
    F("ap-loopback-ip-refused", "access", "http://127.0.0.1:30500 (the seed port map's address) gets 403",
      'hosts += [f"localhost:{node_port}", f"127.0.0.1:{node_port}"]', 'hosts += [f"localhost:{node_port}"]',
      ("tests/test_mlflow_real.py", "tests/test_mlflow_server.py"), "components/mlflow_server.py"),
    F("ap-fqdn-refused", "access", "the Service's fully qualified name with a trailing .svc gets 403",
      '        f"{service_name}.{namespace}.svc",\n', "",
      ("tests/test_mlflow_real.py", "tests/test_mlflow_server.py"), "components/kube.py"),
    # --- isolation --------------------------------------------------------------------------------------------
    F("iso-createdb", "isolation", "an application role can create databases",
      '"createdb": False,', '"createdb": True,', ("tests/test_postgres_real.py", "tests/test_postgres_cluster.py"),
      "components/postgres_cluster.py"),
    F("iso-member-of-others", "isolation", "each owner role is a member of every other owner and reads their data",
      '"inherit": True,', '"inherit": True,\n                    "inRoles": [o.name for o in args.databases if o.name != db.name],',
      ("tests/test_postgres_real.py", "tests/test_postgres_cluster.py"), "components/postgres_cluster.py"),
    F("iso-read-all-data", "isolation", "owner roles may read every database (pg_read_all_data)",
      '"inherit": True,', '"inherit": True,\n                    "inRoles": ["pg_read_all_data"],',
      ("tests/test_postgres_real.py", "tests/test_postgres_cluster.py"), "components/postgres_cluster.py"),
    F("iso-owner-of-all", "isolation", "the first application owns every database",
      '"owner": db.name,', '"owner": args.databases[0].name,',
      ("tests/test_postgres_real.py", "tests/test_postgres_cluster.py"), "components/postgres_cluster.py"),
    F("iso-s3-policy-wildcard", "isolation", "every consumer's credentials reach every bucket",
      'Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],', 'Resource": ["arn:aws:s3:::*/*"],',
      ("tests/test_object_store_cloud.py", "tests/test_object_store.py"), "components/object_store.py"),
    # --- naming: physical vs logical bucket names -------------------------------------------------------------
    F("nm-mirror-logical", "naming", "the S3/R2 mirror syncs buckets that do not exist (logical names)",
      "buckets={bucket: name for bucket, name in store.bucket_names.items() if bucket != backup_jobs.BUCKET},",
      "buckets={bucket: bucket for bucket in store.bucket_names if bucket != backup_jobs.BUCKET},",
      ("tests/test_object_store_cloud.py", "tests/test_backups.py",), "components/operations.py"),
    F("nm-backup-target-logical", "naming", "S3/R2 backups upload to a bucket named `backups`, not the stack's",
      "bucket=store.bucket_names[backup_jobs.BUCKET],", "bucket=backup_jobs.BUCKET,",
      ("tests/test_object_store_cloud.py", "tests/test_backups.py",), "components/operations.py"),
    F("nm-consumer-bucket-logical", "naming",
      "prod MLflow's artifacts, Loki's chunks and Airflow's logs go to unprefixed buckets that do not exist",
      "bucket=self.bucket_names[bucket],", "bucket=bucket,",
      ("tests/test_object_store_cloud.py", "tests/test_mlflow_server.py", "tests/test_observability.py"),
      "components/object_store/__init__.py"),
    F("ac-consumer-outside-scope", "access",
      "a component is handed a bucket its credentials may not write: every upload fails with 403 at run time",
      "        if bucket not in allowed:\n", "        if bucket not in allowed and False:\n",
      ("tests/test_object_store.py",), "components/object_store/__init__.py"),
    F("nm-cnpg-destination-logical", "naming", "WAL archiving targets s3://backups, not the stack's bucket",
      '"s3://", store.bucket_names[backup_jobs.BUCKET], "/cnpg"', '"s3://", backup_jobs.BUCKET, "/cnpg"',
      ("tests/test_object_store_cloud.py", "tests/test_postgres_cluster.py",), "components/assembly.py"),
    F("nm-iam-policy-logical", "naming", "S3 consumers' IAM policies name buckets that do not exist",
      "policy=bucket_policy(tuple(physical[b] for b in consumer.buckets), settings.kms_key_arn),",
      "policy=bucket_policy(tuple(consumer.buckets), settings.kms_key_arn),",
      ("tests/test_object_store_cloud.py",), "components/object_store.py"),
    # --- retention --------------------------------------------------------------------------------------------
    F("rt-upload-no-prune", "retention", "MinIO keeps every dump, copy and snapshot forever; the disk fills",
      "lines.append(f'rclone delete --min-age {target.retention_days}d \"store:$BACKUP_BUCKET/{prefix}\"')",
      "lines.append(f'echo \"kept every copy under {prefix}\"')", ("tests/test_object_store_cloud.py", "tests/test_backups.py",), "components/backups.py"),
    F("rt-mirror-no-prune", "retention", "MinIO keeps every mirror-deleted copy forever",
      "lines.append(f'rclone delete --min-age {target.retention_days}d \"store:$BACKUP_BUCKET/mirror-deleted\"')",
      "lines.append('echo \"kept every deleted copy\"')", ("tests/test_object_store_cloud.py", "tests/test_backups.py",), "components/backups.py"),
    F("rt-vault-prefix-never-expires", "retention", "Vault snapshots on S3/R2 are never expired",
      '"mirror-deleted/", "vault/")', '"mirror-deleted/")', ("tests/test_object_store_cloud.py", "tests/test_backups.py"),
      "components/config/backups.py"),
    F("rt-prune-on-wrong-engine", "retention", "MinIO stops pruning (and S3 prunes what its lifecycle already does)",
      'return self.engine == "minio"', 'return self.engine == "s3"', ("tests/test_object_store_cloud.py", "tests/test_backups.py",), "components/backups.py"),
    F("rt-r2-age-in-days", "retention", "R2 deletes backups after N seconds instead of N days",
      '"delete_objects_transition": {"condition": {"type": "Age", "max_age": retention.backups_days * day}}',
      '"delete_objects_transition": {"condition": {"type": "Age", "max_age": retention.backups_days}}',
      ("tests/test_object_store_cloud.py",), "components/object_store.py"),
    # --- network ----------------------------------------------------------------------------------------------
    F("net-redis-anywhere", "network", "every pod in the cluster reaches Valkey",
      'Flow("redis-clients", NAMESPACE, (PORT,), (CLIENTS,),', 'Flow("redis-clients", NAMESPACE, (PORT,), ("anywhere",),',
      ("tests/test_network_policies.py",), "components/redis.py"),
    F("net-temporal-anywhere", "network", "every pod in the cluster reaches Temporal's frontend",
      'Flow("temporal-clients", NAMESPACE, (GRPC_PORT,), (CLIENTS,))', 'Flow("temporal-clients", NAMESPACE, (GRPC_PORT,), ("anywhere",))',
      ("tests/test_network_policies.py",), "components/temporal_stack.py"),
    F("net-vault-anywhere", "network", "every pod in the cluster reaches Vault's API",
      "Flow(\"vault-readers\", vault_server.NAMESPACE, (vault_server.PORT,), (NAMESPACE,))",
      "Flow(\"vault-readers\", vault_server.NAMESPACE, (vault_server.PORT,), (ANYWHERE,))",
      ("tests/test_network_policies.py",), "components/secret_sync.py"),
    F("net-scrape-whole-namespace", "network", "Grafana, Loki and Alloy reach every namespace, not only Prometheus",
      'source_pods={"app.kubernetes.io/name": "prometheus"})', "source_pods={})",
      ("tests/test_network_policies.py",), "components/observability.py"),
    F("net-s3-anywhere", "network", "every pod reaches MinIO's S3 API",
      'return Flow("s3-clients", NAMESPACE, (S3_PORT,), (*users, CLIENTS))', 'return Flow("s3-clients", NAMESPACE, (S3_PORT,), ("anywhere",))',
      ("tests/test_network_policies.py",), "components/object_store.py"),
    # --- alerts and dashboards --------------------------------------------------------------------------------
    F("al-dash-connections-name", "alerts", "the connections panel is empty: no exporter serves that name",
      'f"sum by (pod) (cnpg_backends_total{{{pods}}})"', 'f"sum by (pod) (cnpg_backends_count{{{pods}}})"',
      ("tests/test_alert_rules.py", "tests/test_observability.py"), "components/monitoring.py"),
    F("al-dash-requests-name", "alerts", "the MLflow requests panel is empty (plural name)",
      "rate(mlflow_http_request_total{{namespace=", "rate(mlflow_http_requests_total{{namespace=",
      ("tests/test_alert_rules.py", "tests/test_observability.py"), "components/monitoring.py"),
    F("al-dash-latency-name", "alerts", "the MLflow latency panel is empty",
      '"histogram_quantile(0.95, sum by (le) (rate(mlflow_http_request_duration_seconds_bucket"',
      '"histogram_quantile(0.95, sum by (le) (rate(mlflow_request_duration_seconds_bucket"',
      ("tests/test_alert_rules.py", "tests/test_observability.py"), "components/monitoring.py"),
    F("al-dash-archival-name", "alerts", "the WAL archiving panel is empty",
      'f"cnpg_pg_stat_archiver_seconds_since_last_archival{{{pods}}}"', 'f"cnpg_pg_stat_archiver_seconds_since_last_archive{{{pods}}}"',
      ("tests/test_alert_rules.py", "tests/test_observability.py"), "components/monitoring.py"),
    F("al-vault-sealed-name", "alerts", "VaultSealed never fires",
      'f\'vault_core_unsealed{{namespace="{targets.vault_namespace}"}} == 0\'', 'f\'vault_core_sealed{{namespace="{targets.vault_namespace}"}} == 1\'',
      ("tests/test_alert_rules.py",), "components/monitoring.py"),
    F("al-backup-stale-schedule", "alerts", "BackupStale measures the last schedule, not the last success",
      'f"(time() - kube_cronjob_status_last_successful_time{{{selector}}} > {limit})"',
      'f"(time() - kube_cronjob_status_last_schedule_time{{{selector}}} > {limit})"',
      ("tests/test_alert_rules.py",), "components/monitoring.py"),
    F("al-wal-failing-inverted", "alerts", "PostgresWalArchivingFailing fires while archiving works",
      'f"cnpg_pg_stat_archiver_last_failed_time{{{pods}}} > cnpg_pg_stat_archiver_last_archived_time{{{pods}}}"',
      'f"cnpg_pg_stat_archiver_last_failed_time{{{pods}}} < cnpg_pg_stat_archiver_last_archived_time{{{pods}}}"',
      ("tests/test_alert_rules.py",), "components/monitoring.py"),
    # --- config validation ------------------------------------------------------------------------------------
    F("cfg-zero-size", "config", "size: 0Gi is accepted and fails only at `pulumi up`",
      "return isinstance(value, str) and quantity_value(value) > 0", "return isinstance(value, str) and quantity_value(value) >= 0",
      ("tests/test_config.py",), "components/config/formats.py"),
    F("cfg-zero-workers", "config", "mlflow.workers: 0 is accepted; gunicorn refuses to start",
      "Workers = whole(1, 16)", "Workers = whole(0, 16)", ("tests/test_config.py",), "components/config/mlflow.py"),
    F("cfg-zero-instances", "config", "postgres.instances: 0 is accepted; the cluster never starts",
      "Instances = whole(1, 9)", "Instances = whole(0, 9)", ("tests/test_config.py",), "components/config/postgres.py"),
    F("cfg-zero-retention", "config", "backups.retentionDays: 0 is accepted; every copy is pruned at once",
      'BarmanRetention = matching(r"^[1-9][0-9]*[dwm]$", "expected a number and d, w or m, such as 30d")\nDays = whole(1, 3650)',
      'BarmanRetention = matching(r"^[1-9][0-9]*[dwm]$", "expected a number and d, w or m, such as 30d")\nDays = whole(0, 3650)',
      ("tests/test_config.py",), "components/config/backups.py"),
    F("cfg-zero-barman-retention", "config", "continuousRetention: 0d is accepted; barman keeps no base backup",
      r'matching(r"^[1-9][0-9]*[dwm]$"', r'matching(r"^[0-9]+[dwm]$"', ("tests/test_config.py",), "components/config/backups.py"),
    # --- serving and the SQLite -> PostgreSQL migration ---------------------------------------------------------
    F("sv-ready-before-model", "access", "serving pods take traffic before a model is loaded: errors on every rollout",
      'readiness_probe=kube.http_probe(pod.PROBES["readiness"], "http", period=5)',
      'readiness_probe=kube.http_probe(pod.PROBES["liveness"], "http", period=5)',
      ("tests/test_model_serving.py",), "components/model_serving/component.py"),
    F("sv-rollout-lowers-capacity", "access", "a serving rollout takes a pod away before its successor has a model",
      'a rollout never lowers capacity.\n            strategy=k8s.apps.v1.DeploymentStrategyArgs(\n                type="RollingUpdate",\n'
      '                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),',
      'a rollout never lowers capacity.\n            strategy=k8s.apps.v1.DeploymentStrategyArgs(\n                type="RollingUpdate",\n'
      '                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=1),',
      ("tests/test_model_serving.py",), "components/model_serving/component.py"),
    F("sv-password-from-username", "secrets", "serving pods send the user name as password: every model load is a 401",
      'kube.secret_env(password, credentials.name, "password")', 'kube.secret_env(password, credentials.name, "username")',
      ("tests/test_model_serving.py",), "components/model_serving/component.py"),
    F("sv-reader-may-edit", "isolation", "the serving user may move aliases and delete versions, not just read them",
      '{**grant, "permission": "READ"})\n        return "granted"', '{**grant, "permission": "EDIT"})\n        return "granted"',
      ("tests/test_model_serving_real.py",), "components/model_serving/reader.py"),
    F("sv-egress-unlimited", "network", "a compromised serving pod may reach every database and bucket",
      'policies += [("limit-egress", egress_spec(limit, args.namespace_names)) for limit in args.egress if limit.namespace == role]',
      "policies += []", ("tests/test_network_policies.py", "tests/test_model_serving.py"), "components/network_policies.py"),
    F("mg-claim-writable", "data-safety", "the migration mounts the only copy of the SQLite store writable",
      'k8s.core.v1.VolumeMountArgs(name="data", mount_path=backends.DATA_DIR, read_only=True),',
      'k8s.core.v1.VolumeMountArgs(name="data", mount_path=backends.DATA_DIR, read_only=False),',
      ("tests/test_mlflow_migration.py",), "components/mlflow_server/migration.py"),
    F("mg-server-does-not-wait", "data-safety", "the PostgreSQL-backed server takes writes before the copy, which then refuses",
      "opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after))) if after else child,",
      "opts=child,", ("tests/test_mlflow_migration.py",), "components/mlflow_server/server.py"),
    F("mg-late-writes-ignored", "data-safety", "writes to SQLite after the migration are silently left behind",
      'if marker["source_fingerprint"] == source_fingerprint:\n            return False', "if True:\n            return False",
      ("tests/test_mlflow_migration_real.py",), "components/mlflow_migration/migrate.py"),
    F("mg-psycopg3", "access", "MLflow's registry fails alias and version queries on PostgreSQL (psycopg 3)",
      'URI_KEY = "sqlalchemy-uri"', 'URI_KEY = "uri"', ("tests/test_mlflow_server.py", "tests/test_mlflow_prod_real.py"),
      "components/mlflow_server/backends.py"),
    # --- pod hardening ----------------------------------------------------------------------------------------
    F("ph-writable-root", "hardening", "our containers get a writable root filesystem",
      "        read_only_root_filesystem=True,\n        run_as_non_root=True,", "        read_only_root_filesystem=False,\n        run_as_non_root=True,",
      ("tests/test_pod_security.py", "tests/test_platform_invariants.py"), "components/kube.py"),
    F("ph-privilege-escalation", "hardening", "our containers may escalate privileges",
      "        allow_privilege_escalation=False,\n        read_only_root_filesystem=True,",
      "        allow_privilege_escalation=True,\n        read_only_root_filesystem=True,",
      ("tests/test_pod_security.py", "tests/test_platform_invariants.py"), "components/kube.py"),
    F("ph-vault-caps", "hardening", "Vault's container keeps every default capability",
      '"container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},',
      '"container": {"allowPrivilegeEscalation": False},', ("tests/test_charts.py", "tests/test_vault.py"),
      "components/vault_server.py"),
    F("ph-grafana-seccomp", "hardening", "Grafana and the other observability charts lose RuntimeDefault seccomp",
      'RESTRICTED_CONTAINER = {\n    "allowPrivilegeEscalation": False,\n    "capabilities": {"drop": ["ALL"]},\n    "seccompProfile": {"type": "RuntimeDefault"},\n}',
      'RESTRICTED_CONTAINER = {\n    "allowPrivilegeEscalation": False,\n    "capabilities": {"drop": ["ALL"]},\n}',
      ("tests/test_charts.py", "tests/test_observability.py"), "components/observability.py"),
    F("ph-temporal-root", "hardening", "Temporal's chart containers may run as root",
      'restricted = {**kube.RESTRICTED_CONTAINER, "readOnlyRootFilesystem": False}',
      'restricted = {**{k: v for k, v in kube.RESTRICTED_CONTAINER.items() if k != "runAsNonRoot"}, "readOnlyRootFilesystem": False}',
      ("tests/test_charts.py", "tests/test_temporal_stack.py"), "components/temporal_stack.py"),
    F("tls-vault-chart-plain", "secrets", "the chart's Services, probes and the pods' own CLI speak plain http to Vault",
      '"global": {"tlsDisable": False},', '"global": {"tlsDisable": True},', ("tests/test_vault_tls.py",), "components/vault_server.py"),
    F("tls-store-any-ca", "secrets", "External Secrets accepts any certificate a public CA signed for Vault's name",
      'trust = {"caProvider": {"type": "Secret", "namespace": ca.namespace, "name": ca.secret, "key": ca.key}} if ca else {}',
      "trust = {}", ("tests/test_vault_tls.py",), "components/secret_sync.py"),
    F("tls-san-last-pod", "secrets", "the last raft peer's name is missing from Vault's certificate: joining it fails",
      'hosts += [f"{SERVICE}-{n}.{SERVICE}-internal" for n in range(replicas)]',
      'hosts += [f"{SERVICE}-{n}.{SERVICE}-internal" for n in range(replicas - 1)]', ("tests/test_vault_tls.py",),
      "components/vault_server.py"),
    F("tls-clients-plain", "secrets", "External Secrets and the snapshot job reach Vault over plain http",
      'pulumi.Output.concat(f"https://{SERVICE}-active."', 'pulumi.Output.concat(f"http://{SERVICE}-active."',
      ("tests/test_vault_tls.py", "tests/test_vault.py"), "components/vault_server.py"),
    F("tls-peer-trusts-system", "secrets", "raft peers verify the leader against the system's CAs, not Vault's: no peer joins",
      """f'    leader_ca_cert_file = "{CA_FILE}"\\n  }}'""", "'  }'", ("tests/test_vault_tls.py", "tests/test_vault_real.py"),
      "components/vault_server.py"),
    F("tls-monitor-skips-verify", "secrets", "Prometheus scrapes Vault without verifying its certificate",
      '"serverName": f"{vault_server.SERVICE}.{namespace}.svc",', '"insecureSkipVerify": True,', ("tests/test_vault_tls.py",),
      "components/monitoring/__init__.py"),
    F("tls-renewal-never-loaded", "secrets",
      "the tls-reloader cannot see Vault's process: a renewed certificate is never loaded and clients refuse Vault a year on",
      '"shareProcessNamespace": True,', '"shareProcessNamespace": False,', ("tests/test_vault_tls.py",),
      "components/vault_server.py"),
    F("alerts-cert-manager-unscraped", "alerts",
      "the cert-manager monitor names a port the controller lacks: no certificate alert can ever fire",
      '{"port": "http-metrics", "honorLabels": True}))', '{"port": "metrics", "honorLabels": True}))',
      ("tests/test_charts.py",), "components/monitoring/__init__.py"),
    F("alerts-certificate-namespace-lost", "alerts",
      "certificate alerts report cert-manager's namespace instead of the Certificate's",
      '{"port": "http-metrics", "honorLabels": True}))', '{"port": "http-metrics"}))',
      ("tests/test_alert_rules.py",), "components/monitoring/__init__.py"),
    F("tls-reloader-signals-nothing", "secrets", "the tls-reloader signals a process name that does not exist",
      "if pkill -HUP -x vault; then", "if pkill -HUP -x vault-server; then", ("tests/test_vault_real.py",),
      "components/vault_server.py"),
)


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\0") if p and (root / p).is_file()]


def locate(fault: Fault, root: Path, files: list[str]) -> str:
    """The one tracked file holding the fault's snippet exactly once; anything else is a broken catalogue entry."""
    hits = []
    for path in files:
        if path == "tools/faults.py" or not path.startswith(SEARCHED):
            continue
        text = (root / path).read_text(errors="replace")
        hits += [path] * text.count(fault.find)
    if len(hits) != 1:
        where = f"found in {hits}" if hits else "not found"
        raise SystemExit(f"catalogue entry {fault.id}: snippet {fault.find!r} must occur exactly once, {where}"
                         + (f" (it lived in {fault.hint})" if fault.hint else ""))
    return hits[0]


def scratch_copy(files: list[str]) -> Path:
    """The working tree's tracked files (with uncommitted edits) in a temp dir, tool directories linked."""
    base = Path(tempfile.mkdtemp(prefix="mlops-faults-"))
    scratch = base / "checkout"
    for path in files:
        target = scratch / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    for linked in LINKED:
        if (ROOT / linked).exists():
            (scratch / linked).parent.mkdir(parents=True, exist_ok=True)
            (scratch / linked).symlink_to(ROOT / linked)
    # A git index holding the same tracked files: tests that ask git what is tracked (yamllint's file list, say) see
    # what they see in a checkout, instead of failing for want of a repository and passing for a kill.
    git = ["git", "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q"], cwd=scratch, check=True)
    (scratch / ".git" / "info" / "exclude").write_text("\n".join(f"/{linked}" for linked in LINKED) + "\n")
    subprocess.run([*git, "add", "-A"], cwd=scratch, check=True)
    return scratch


NOT_RUN = ("tests/test_faults_catalogue.py",)
"""Never run under a fault: it checks that every snippet is in the code, so an injected fault would fail it, a kill
that says nothing about the suite."""
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+?)(?: - |$)", re.M)


def run_pytest(scratch: Path, targets: list[str], timeout: int) -> tuple[str, str]:
    """(outcome, by what): `killed` by a failing test or a collection error, `SURVIVED`, or `TIMEOUT`. A timeout is
    not a kill: on a loaded machine it says nothing about the fault, so it is reported and left out of the rate."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # ../shared/reference beside the real checkout, not beside the scratch copy.
    env.setdefault("MLOPS_REFERENCE_DIR", str(ROOT.parent / "shared" / "reference"))
    ignored = [f"--ignore={path}" for path in NOT_RUN]
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", *ignored, *targets]
    try:
        result = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"no verdict within {timeout}s"
    if result.returncode == 0:
        return "SURVIVED", ""
    if result.returncode == 5:  # no tests collected: a target file no longer exists
        raise SystemExit(f"pytest collected nothing from {targets}:\n{result.stdout[-2000:]}")
    found = FAILED.search(result.stdout)
    return "killed", found.group(1) if found else f"pytest exit {result.returncode}: {result.stdout.strip().splitlines()[-1:]}"


def run_fault(fault: Fault, scratch: Path, files: list[str], quick: bool, timeout: int) -> tuple[str, str, float]:
    path = locate(fault, scratch, files)
    original = (scratch / path).read_text()
    started = time.monotonic()
    try:
        (scratch / path).write_text(original.replace(fault.find, fault.replace, 1))
        outcome, by = run_pytest(scratch, list(fault.tests), timeout)
        if outcome == "SURVIVED" and fault.equivalent:
            outcome, by = "EQUIVALENT", fault.equivalent
        whole_suite = outcome == "SURVIVED" and not quick
        if whole_suite:
            outcome, by = run_pytest(scratch, [], timeout * 6)
    finally:
        (scratch / path).write_text(original)
    if outcome == "killed" and "::" in by:
        # A kill counts only if the killing test passes without the fault: else it says nothing about the fault.
        control, _ = run_pytest(scratch, [by], timeout)
        if control != "SURVIVED":
            outcome, by = "UNSOUND", f"{by} fails without the fault too"
    if whole_suite and outcome == "killed":
        by = f"{by} (whole suite)"
    return outcome, by, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="run only each fault's targeted test files")
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="run this fault (repeatable)")
    parser.add_argument("--check", action="store_true", help="check every snippet occurs exactly once; run nothing")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per targeted run (whole suite: 6x)")
    parser.add_argument("--jobs", type=int, default=1, help="faults run in parallel, each in its own scratch copy")
    parser.add_argument("--list", action="store_true", help="list the catalogue")
    options = parser.parse_args(argv)

    ids = [f.id for f in CATALOGUE]
    if len(set(ids)) != len(ids):
        raise SystemExit("duplicate fault ids in the catalogue")
    unknown = set(options.only) - set(ids)
    if unknown:
        raise SystemExit(f"unknown fault ids: {sorted(unknown)}")
    faults = [f for f in CATALOGUE if not options.only or f.id in options.only]
    files = tracked_files(ROOT)
    for fault in faults:
        locate(fault, ROOT, files)
        for test in fault.tests:
            if not (ROOT / test).is_file():
                raise SystemExit(f"catalogue entry {fault.id}: test file {test} does not exist")
    if options.list or options.check:
        for fault in faults:
            print(f"{fault.id:32} {fault.cls:12} {locate(fault, ROOT, files):40} {fault.why}")
        print(f"{len(faults)} faults, every snippet found exactly once")
        return 0

    # One scratch copy per worker: a fault is applied to its copy only, and a crash leaves nothing in the checkout.
    copies: queue.Queue[Path] = queue.Queue()
    for _ in range(options.jobs):
        copies.put(scratch_copy(files))
    done = []

    def one(fault: Fault) -> tuple[str, str]:
        scratch = copies.get()
        try:
            outcome, by, seconds = run_fault(fault, scratch, files, options.quick, options.timeout)
        finally:
            copies.put(scratch)
        done.append(fault.id)
        print(f"[{len(done)}/{len(faults)}] {fault.id}: {outcome} {by} ({seconds:.0f}s)", file=sys.stderr, flush=True)
        return outcome, by

    try:
        with ThreadPoolExecutor(options.jobs) as pool:
            rows = [(fault, *result) for fault, result in zip(faults, pool.map(one, faults), strict=True)]
    finally:
        while not copies.empty():
            shutil.rmtree(copies.get().parent, ignore_errors=True)

    print(f"\n| {'fault':32} | {'class':11} | result   | killed by")
    print(f"|{'-' * 34}|{'-' * 13}|----------|{'-' * 40}")
    for fault, outcome, by in rows:
        print(f"| {fault.id:32} | {fault.cls:11} | {outcome:8} | {by}")
    killed = sum(outcome == "killed" for _, outcome, _ in rows)
    scope = " (targeted tests only)" if options.quick else ""
    print(f"\nkilled {killed}/{len(rows)} ({100 * killed / len(rows):.0f} %){scope}")
    for fault, outcome, by in rows:
        if outcome != "killed":
            print(f"{outcome.lower()}: {fault.id}: {fault.why}{f' ({by})' if by else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
