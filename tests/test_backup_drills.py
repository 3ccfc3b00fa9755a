"""Backup and restore drills on real servers: nothing may be lost.

Each drill takes the exact commands and environment of a rendered backup CronJob (secrets from the rendered
Secrets; only in-cluster hosts, mount paths and ports mapped), runs them against real PostgreSQL / SQLite / rclone
with a moto S3 endpoint, then restores with the command the runbook documents (`# drill:` blocks in
docs/runbooks) and compares row counts and checksums. The figures are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

import boto3
import pytest

from tests.realservers import (
    LocalMapping,
    apply_declared_roles_and_databases,
    container_command,
    container_env,
    moto_server,
    needs_debian,
    postgres_bin,
    postgres_server,
    runbook_command,
)
from tests.support import container, pod_spec, secret_data

psycopg = pytest.importorskip("psycopg")
pytestmark = needs_debian(
    shutil.which("rclone") is None or shutil.which("sqlite3") is None,
    reason="Debian's rclone and sqlite3 are not installed (scripts/test.sh installs them)",
)

IN_CLUSTER_S3 = "http://minio.mlops-storage.svc.cluster.local:9000"
IN_CLUSTER_POSTGRES = "postgres-rw.mlops-data.svc.cluster.local:5432"


def run(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{argv[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def s3():
    with moto_server() as moto:
        client = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="drill", aws_secret_access_key="drill")
        yield moto.endpoint, client


def cron_job(rendering, backup: str) -> dict:
    return rendering.find(kind="CronJob", name=f"backup-{backup}").manifest(redact=False)


def pod(rendering, backup: str, namespace: str, mapping: LocalMapping, extra_path: str = "") -> dict:
    """The CronJob's containers as local commands with their environments."""
    spec = pod_spec(cron_job(rendering, backup))
    steps = {}
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        env = container_env(c, rendering, namespace, mapping)
        env["PATH"] = f"{extra_path}:{env['PATH']}" if extra_path else env["PATH"]
        steps[c["name"]] = (container_command(c, mapping), env)
    return steps


def buckets_in(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    objects = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in objects}


# --- PostgreSQL: pg_dump per database, restore into fresh databases ---------------------------------------------

TABLES = {
    "platform": {"experiments": 40000, "datasets": 8000},
    "users": {"accounts": 12000},
    "labeler": {"labels": 20000},
}


def generate(uri: str, tables: dict[str, int]) -> None:
    with psycopg.connect(uri, autocommit=True) as db:
        for table, rows in tables.items():
            db.execute(
                f"create table {table} (id bigint primary key, name text, payload jsonb, amount numeric(12,4), "
                "blob bytea, created timestamptz, note text)"
            )
            db.execute(
                f"insert into {table} select g, 'row ' || g || ' ''quoted'' \\ ünïcödé', "
                "jsonb_build_object('g', g, 'tags', jsonb_build_array('a', mod(g, 7))), g * 1.2345, "
                "decode(md5(g::text), 'hex'), timestamptz '2026-01-01' + g * interval '1 minute', "
                "case when mod(g, 5) = 0 then null else repeat('x', mod(g, 50)::int) end from generate_series(1, %s) g",
                (rows,),
            )


def fingerprint(uri: str, tables: dict[str, int]) -> dict[str, tuple[int, str]]:
    with psycopg.connect(uri) as db:
        return {
            table: db.execute(f"select count(*), md5(string_agg(t::text, '|' order by t.id)) from {table} t").fetchone()
            for table in tables
        }


@needs_debian(postgres_bin() is None, "Debian's postgresql is not installed (scripts/test.sh installs it)")
def test_postgres_dump_drill_restores_every_row(dev, s3, tmp_path):
    endpoint, client = s3
    client.create_bucket(Bucket="backups")
    with postgres_server() as pg:
        apply_declared_roles_and_databases(dev, pg["admin"])
        local_pg = f"127.0.0.1:{pg['port']}"
        uris = {db: secret_data(dev, "mlops-data", f"postgres-{db}")["uri"].replace(IN_CLUSTER_POSTGRES, local_pg) for db in TABLES}
        for db, tables in TABLES.items():
            generate(uris[db], tables)
        before = {db: fingerprint(uris[db], TABLES[db]) for db in TABLES}

        mapping = LocalMapping(paths={"/backup": tmp_path / "backup", "/tmp": tmp_path / "tmp"},
                               text={IN_CLUSTER_S3: endpoint, IN_CLUSTER_POSTGRES: local_pg})
        for d in ("backup", "tmp", "restore"):
            (tmp_path / d).mkdir()
        steps = pod(dev, "postgres-logical", "mlops-data", mapping, extra_path=str(postgres_bin()))
        started = time.monotonic()
        run(*steps["pg-dump"])
        run(*steps["upload"])
        backup_seconds = time.monotonic() - started

        uploaded = buckets_in(client, "backups", "postgres/")
        stamps = {key.split("/")[1] for key in uploaded}
        assert len(stamps) == 1 and all(re.fullmatch(r"\d{8}T\d{6}Z", s) for s in stamps)
        declared = [d.inputs["spec"]["name"] for d in dev.find_all(kind="Database")]
        assert {key.rsplit("/", 1)[-1] for key in uploaded} == {f"{db}.dump" for db in declared}

        # Restore each dump into a fresh database owned by the same role, with the runbook's command.
        command = runbook_command("postgres-restore-dump.md", "restore-pg-dump")
        restore_env = {**steps["upload"][1], "STAMP": stamps.pop(), "WORKDIR": str(tmp_path / "restore")}
        started = time.monotonic()
        with psycopg.connect(**pg["admin"]) as admin:
            for db in TABLES:
                admin.execute(f'create database "{db}_restored" owner "{db}"')
                run(["bash", "-euc", command], {**restore_env, "DB": db, "PATH": f"{postgres_bin()}:/usr/bin:/bin",
                                                "TARGET_URI": uris[db].replace(f"/{db}?", f"/{db}_restored?")})
        restore_seconds = time.monotonic() - started
        after = {db: fingerprint(uris[db].replace(f"/{db}?", f"/{db}_restored?"), TABLES[db]) for db in TABLES}
    assert after == before
    rows = sum(n for tables in TABLES.values() for n in tables.values())
    size = sum(len(body) for body in uploaded.values())
    print(f"\nDRILL postgres: {rows} rows in {len(TABLES)} databases, dumps {size / 1e6:.2f} MB, "
          f"backup {backup_seconds:.1f}s, restore {restore_seconds:.1f}s, checksums equal")


# --- MLflow SQLite: an online copy while a writer keeps inserting ----------------------------------------------

WRITER = """
import os, sqlite3, sys, pathlib
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("create table if not exists metrics (id integer primary key, run text, value real)")
db.commit()
progress = pathlib.Path(sys.argv[2])
scratch = progress.with_suffix(".tmp")
i = 0
while True:
    i += 1
    db.execute("insert into metrics (id, run, value) values (?, ?, ?)", (i, f"run-{i % 97}", i * 0.5))
    db.commit()
    # Published atomically after each commit, so a reader never sees a half-written count.
    scratch.write_text(str(i))
    os.replace(scratch, progress)
"""


def test_sqlite_drill_copies_a_consistent_snapshot_under_a_live_writer(dev, s3, tmp_path):
    endpoint, client = s3
    client.create_bucket(Bucket="backups-sqlite")
    for d in ("data", "backup", "tmp", "restore"):
        (tmp_path / d).mkdir()
    database, progress = tmp_path / "data" / "mlflow.db", tmp_path / "committed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(database), str(progress)])
    try:
        deadline = time.monotonic() + 120  # a loaded disk commits slowly; the count is what matters
        while not progress.exists() or int(progress.read_text()) < 3000:
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not get going"
            time.sleep(0.05)
        mapping = LocalMapping(paths={"/mlflow": tmp_path / "data", "/backup": tmp_path / "backup", "/tmp": tmp_path / "tmp"},
                               text={IN_CLUSTER_S3: endpoint})
        steps = pod(dev, "mlflow-sqlite", "mlops-mlflow", mapping)
        committed_before = int(progress.read_text())
        started = time.monotonic()
        copied = run(*steps["sqlite-backup"])
        upload_env = {**steps["upload"][1], "BACKUP_BUCKET": "backups-sqlite"}
        run(steps["upload"][0], upload_env)
        backup_seconds = time.monotonic() - started
        committed_after = int(progress.read_text())
    finally:
        writer.kill()
        writer.wait()
    assert "integrity ok" in copied.stdout
    assert committed_after > committed_before, "the writer must have kept writing during the backup"

    keys = list(buckets_in(client, "backups-sqlite", "mlflow-sqlite/"))
    stamp = re.fullmatch(r"mlflow-sqlite/mlflow-(\d{8}T\d{6}Z)\.db", keys[0]).group(1)
    command = runbook_command("mlflow-sqlite-restore.md", "restore-mlflow-sqlite")
    run(["bash", "-euc", command], {**upload_env, "STAMP": stamp, "WORKDIR": str(tmp_path / "restore"), "PATH": "/usr/bin:/bin"})
    restored = tmp_path / "restore" / f"mlflow-{stamp}.db"
    import sqlite3

    with sqlite3.connect(restored) as db:
        count, top = db.execute("select count(*), max(id) from metrics").fetchone()
        present_before = db.execute("select count(*) from metrics where id <= ?", (committed_before,)).fetchone()[0]
    assert present_before == committed_before, "every row committed before the backup started must be in the copy"
    assert count == top, "the copy holds a gap-free prefix of the writer's commits"
    print(f"\nDRILL sqlite: {count} rows copied while writing ({committed_before} committed before the start, "
          f"{committed_after} after), {restored.stat().st_size / 1e6:.2f} MB, backup {backup_seconds:.1f}s, integrity ok")


# --- Object mirror: rclone sync, then restore a lost bucket -----------------------------------------------------


def test_object_mirror_drill_brings_back_a_deleted_bucket_and_keeps_overwritten_files(dev, s3, tmp_path):
    endpoint, client = s3
    # Every bucket of the dev stack but the backups bucket the mirror writes to.
    sources = {b: b for b in dev.outputs["buckets"] if b != "backups"}
    for bucket in sources:
        client.create_bucket(Bucket=bucket)
    client.create_bucket(Bucket="backups-mirror")
    originals: dict[tuple[str, str], str] = {}
    for i in range(150):
        bucket = list(sources)[i % len(sources)]
        key = f"set-{i % 7}/object-{i}.bin"
        body = os.urandom((i * 7919) % 300_000)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        originals[(bucket, key)] = hashlib.sha256(body).hexdigest()

    (tmp_path / "tmp").mkdir()
    mapping = LocalMapping(paths={"/tmp": tmp_path / "tmp"}, text={IN_CLUSTER_S3: endpoint})
    argv, env = pod(dev, "objects-mirror", "mlops-data", mapping)["mirror"]
    env = {**env, "BACKUP_BUCKET": "backups-mirror"}
    started = time.monotonic()
    run(argv, env)
    mirror_seconds = time.monotonic() - started
    mirrored = buckets_in(client, "backups-mirror", "mirror/")
    # moto keeps one store per process: objects other tests left in these buckets (MLflow's artifacts, say) are
    # mirrored too, as they would be in a cluster. The mirror must hold exactly what the sources hold.
    present = {(b, k): hashlib.sha256(v).hexdigest() for b in sources for k, v in buckets_in(client, b).items()}
    assert originals.items() <= present.items()
    assert {k: hashlib.sha256(v).hexdigest() for k, v in mirrored.items()} == {f"mirror/{b}/{k}": h for (b, k), h in present.items()}

    # Disaster: a whole bucket deleted, one weights file overwritten.
    for key in list(buckets_in(client, "training-datasets")):
        client.delete_object(Bucket="training-datasets", Key=key)
    overwritten_key = next(k for (b, k) in originals if b == "model-weights")
    client.put_object(Bucket="model-weights", Key=overwritten_key, Body=b"corrupted")

    command = runbook_command("object-restore.md", "restore-objects")
    started = time.monotonic()
    run(["bash", "-euc", command], {**env, "BUCKET": "training-datasets", "BUCKET_NAME": "training-datasets", "PATH": "/usr/bin:/bin"})
    restore_seconds = time.monotonic() - started
    restored = {k: hashlib.sha256(v).hexdigest() for k, v in buckets_in(client, "training-datasets").items()}
    assert restored == {k: h for (b, k), h in present.items() if b == "training-datasets"}

    # The next mirror keeps the pre-overwrite version under mirror-deleted/.
    run(argv, env)
    kept = {k: v for k, v in buckets_in(client, "backups-mirror", "mirror-deleted/").items() if k.endswith(overwritten_key)}
    assert [hashlib.sha256(v).hexdigest() for v in kept.values()] == [originals[("model-weights", overwritten_key)]]
    size = sum(len(v) for v in mirrored.values())
    print(f"\nDRILL objects: {len(originals)} objects ({size / 1e6:.2f} MB) mirrored in {mirror_seconds:.1f}s; "
          f"{len(restored)} restored in {restore_seconds:.1f}s with equal SHA-256; overwritten file kept")


def test_drill_commands_are_the_rendered_ones(dev):
    """The drills above must exercise what the CronJobs really run: guard against testing a stale copy."""
    upload = container(cron_job(dev, "postgres-logical"), "upload")
    assert "rclone copy --checksum /backup/postgres" in upload["args"][0]
    assert container(cron_job(dev, "mlflow-sqlite"), "sqlite-backup")["command"] == ["python3", "-c"]
