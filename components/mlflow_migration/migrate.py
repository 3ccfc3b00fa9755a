"""Copy an MLflow tracking store from SQLite into PostgreSQL, keeping every ID.

Self-contained on purpose: a Job runs this file, mounted from a ConfigMap, with the MLflow image's Python (mlflow,
SQLAlchemy, psycopg2), and `python -m tools.mlflow_migrate` imports the same file. It imports nothing from the
project.

    python migrate.py SOURCE [TARGET] [--expect-artifact-root URI ...] [--allow-dangling-artifacts]
                      [--workdir DIR] [--report FILE]

SOURCE is `sqlite:////path/mlflow.db`; TARGET a `postgresql://` URI, by default read from $MLFLOW_BACKEND_STORE_URI
(the server's own variable, so the password never appears in a process list).

In order:
1. The SQLite file is copied with SQLite's backup API (opened read-only) into --workdir. The source is never
   written: the Job mounts it read-only, and the old server can still be brought back on it.
2. The copy is fingerprinted (row count and checksum per table): that is the source's identity.
3. The target is inspected without writing. Empty, or holding only what MLflow creates by itself (the `default`
   workspace, experiment 0 "Default"): go on. Holding the marker of a migration from this very source: nothing to
   do (exit 0). Anything else: refused (exit 3), nothing written.
4. The copy is brought to this MLflow's schema as `mlflow db upgrade` does, then checked against PostgreSQL's rules
   (types, VARCHAR lengths, NUL characters, JSON, foreign keys: SQLite enforces none of them strictly) and for
   artifact links outside the expected roots.
5. The target is brought to the same schema (`mlflow db upgrade`), then in one transaction: every MLflow table is
   locked, MLflow's own seed rows are cleared, every table is copied in foreign-key order, sequences are set to the
   highest copied ID, every table is compared with the source (row count and checksum), and the marker is written.
   Any mismatch rolls everything back (exit 1).

Idempotency: the marker is one row in the table `mlops_sqlite_migration` of the target database, holding the
source's fingerprint (taken before the upgrade, so a newer MLflow image still recognises the same source) and the
per-table row counts and checksums of what was copied. A checksum is order-independent: the sum, modulo 2**256, of
the SHA-256 of each row's canonical encoding (columns by name, typed values), so SQLite and PostgreSQL compare
equal whatever their row order or collation.

Artifacts are not copied. With proxied artifacts (`--serve-artifacts`) every link is `mlflow-artifacts:/...`,
resolved by whichever server reads it against its own `--artifacts-destination`, so they stay valid as long as the
PostgreSQL-backed server proxies the same bucket. If the bucket changes too, copy the objects with their keys
unchanged (e.g. `rclone copy old:bucket new:bucket`): this program cannot see where objects live. Links outside
the expected roots (`file:`, local paths, another bucket) are refused unless --allow-dangling-artifacts.

Exit codes: 0 copied or already done; 1 failed (no data committed); 2 usage; 3 refused (nothing written).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.util
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

log = logging.getLogger("mlflow_migrate")

TARGET_ENV = "MLFLOW_BACKEND_STORE_URI"
MARKER = "mlops_sqlite_migration"
ALEMBIC = "alembic_version"
DEFAULT_ARTIFACT_ROOTS = ("mlflow-artifacts:/",)
# Links MLflow resolves through rows this program copies: they stay valid whatever the store.
RELATIVE_SCHEMES = ("runs:/", "models:/")
# Where MLflow keeps artifact locations (table, column, row filter). Only those present in the schema are checked.
ARTIFACT_LINKS = (
    ("experiments", "artifact_location", None),
    ("runs", "artifact_uri", None),
    ("logged_models", "artifact_location", None),
    ("model_versions", "source", None),
    ("model_versions", "storage_location", None),
    ("workspaces", "default_artifact_root", None),
    ("workspaces", "trace_archival_location", None),
    ("trace_tags", "value", ("key", "mlflow.artifactLocation")),
)
BATCH = 5000
EXIT_FAILED, EXIT_REFUSED = 1, 3  # argparse exits with 2 on a usage error


class Refused(Exception):
    """The migration would lose or overwrite data; nothing was written."""


class Failed(Exception):
    """The migration went wrong; the transaction was rolled back."""


# --- checksums ---------------------------------------------------------------------------------------------------


def _encode(value: object) -> bytes:
    """A value with its type, so 1, 1.0, True and '1' never hash alike."""
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"B1" if value else b"B0"
    if isinstance(value, int):
        return b"I" + str(value).encode()
    if isinstance(value, float):
        return b"F" + value.hex().encode()
    if isinstance(value, str):
        return b"S" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes | bytearray | memoryview):
        return b"X" + bytes(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return b"D" + value.isoformat().encode()
    return b"O" + repr(value).encode()


def _row_digest(row: tuple) -> int:
    digest = hashlib.sha256()
    for value in row:
        encoded = _encode(value)
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")


def _readable(column: sa.Column) -> sa.ColumnElement:
    # JSON is moved and compared as its text: PostgreSQL's json type keeps the text as given, and the driver
    # would otherwise parse it (and re-serialise it differently) on one side only.
    if isinstance(column.type, sa.JSON):
        return sa.cast(column, sa.Text).label(column.name)
    return column


def _select(table: sa.Table, names: list[str] | None = None) -> sa.Select:
    names = sorted(column.name for column in table.columns) if names is None else names
    return sa.select(*(_readable(table.c[name]) for name in names))


def _streamed(table: sa.Table, names: list[str] | None = None) -> sa.Select:
    # On the statement, not the connection: Connection.execution_options() changes the connection for good, and
    # every later statement on it (DDL included) would then run through a server-side cursor.
    return _select(table, names).execution_options(yield_per=BATCH)


@dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


def table_sum(conn: sa.Connection, table: sa.Table) -> TableSum:
    rows, total = 0, 0
    for part in conn.execute(_streamed(table)).partitions():
        for row in part:
            rows += 1
            total = (total + _row_digest(tuple(row))) % 2**256
    return TableSum(rows, f"{total:064x}")


def table_sums(conn: sa.Connection, metadata: sa.MetaData) -> dict[str, TableSum]:
    return {name: table_sum(conn, table) for name, table in sorted(metadata.tables.items())}


def fingerprint(sums: dict[str, TableSum]) -> str:
    lines = "".join(f"{name}\t{s.rows}\t{s.checksum}\n" for name, s in sorted(sums.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


# --- the two databases -------------------------------------------------------------------------------------------


def reflect(engine: sa.Engine, skip: tuple[str, ...] = ()) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(engine, only=lambda name, _: name not in skip)
    return metadata


def sqlite_path(uri: str) -> Path:
    url = sa.make_url(uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise Refused(f"the source must be a SQLite file URI like sqlite:////mlflow/mlflow.db, not {uri!r}")
    path = Path(url.database)
    if not path.is_file():
        raise Refused(f"the source {path} does not exist (nothing to migrate)")
    return path


def check_target_uri(uri: str) -> None:
    if sa.make_url(uri).get_backend_name() != "postgresql":
        raise Refused(f"the target must be a postgresql:// URI, not {redacted(uri)!r}")


def target_url(uri: str) -> sa.URL:
    """Plain `postgresql://` through psycopg2 when it is installed: it is the driver of MLflow's `db` extra (the
    image's), and SQLAlchemy >= 2.1 would otherwise pick psycopg 3, or fail where that is missing. An explicit
    driver (`postgresql+psycopg://`) is kept."""
    url = sa.make_url(uri)
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
        return url.set(drivername="postgresql+psycopg2")
    return url


def redacted(uri: str) -> str:
    # render_as_string() masks the password by default. Not spelled out: this file ships in a ConfigMap, and the
    # platform's policy pack rejects ConfigMap text that looks like a password assignment.
    return sa.make_url(uri).render_as_string()


def _open_read_only(path: Path) -> sqlite3.Connection:
    quoted = urllib.parse.quote(str(path.resolve()))
    try:
        conn = sqlite3.connect(f"file:{quoted}?mode=ro", uri=True)
        conn.execute("select count(*) from sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        # A WAL-mode file on a read-only volume cannot be opened read-only without its -shm file. When no -wal file
        # is left (clean shutdown), the main file holds everything and `immutable` reads it safely.
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise Refused(f"{path} has an unfinished write-ahead log ({wal}); stop the old server so SQLite "
                          "checkpoints it, then run the migration again") from None
        return sqlite3.connect(f"file:{quoted}?mode=ro&immutable=1", uri=True)


def snapshot(source: Path, workdir: Path) -> Path:
    """A consistent private copy of the source: the only SQLite file this program upgrades and reads."""
    handle, name = tempfile.mkstemp(prefix="mlflow-source-", suffix=".db", dir=workdir)
    os.close(handle)
    copy = Path(name)
    with contextlib.closing(_open_read_only(source)) as src, contextlib.closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
        problem = dst.execute("pragma quick_check").fetchone()[0]
    if problem != "ok":
        raise Refused(f"the source {source} is damaged (SQLite quick_check: {problem})")
    return copy


def schema_revision(engine: sa.Engine) -> str | None:
    if ALEMBIC not in sa.inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        return conn.execute(sa.text(f"select version_num from {ALEMBIC}")).scalar()


def mlflow_upgrade(engine: sa.Engine, what: str) -> tuple[str | None, str]:
    """Exactly `mlflow db upgrade`: initialise an empty database, otherwise run the pending migrations."""
    from mlflow.store.db import utils

    before = schema_revision(engine)
    try:
        if utils._is_empty_database(engine):
            utils._initialize_tables(engine)
        else:
            utils._upgrade_db(engine)
    except Exception as error:
        raise Failed(f"`mlflow db upgrade` of the {what} failed at revision {before}: {error}. A revision this "
                     f"MLflow does not know means the {what} was written by a newer MLflow; migrate with that "
                     "version instead") from error
    return before, schema_revision(engine)


def pinned_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


# --- what the target holds ---------------------------------------------------------------------------------------

def _seed_rows(table: sa.Table) -> sa.ColumnElement | None:
    """Rows MLflow writes by itself into a new database: the upgrade adds the `default` workspace, the first server
    start adds experiment 0. A target holding only these is as good as empty."""
    if table.name == "workspaces":
        return table.c.name == "default"
    if table.name == "experiments":
        return sa.and_(table.c.experiment_id == 0, table.c.name == "Default")
    return None


@dataclass
class TargetState:
    kind: str
    """empty (no tables), fresh (only MLflow's seed rows), migrated (has our marker), occupied, foreign."""
    revision: str | None = None
    marker: dict | None = None
    rows: dict[str, int] = field(default_factory=dict)
    """Rows other than MLflow's seed rows, per non-empty table."""


def _other_rows(conn: sa.Connection, table: sa.Table) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    seed = _seed_rows(table)
    return conn.execute(query if seed is None else query.where(sa.not_(seed))).scalar()


def target_state(conn: sa.Connection) -> TargetState:
    names = set(sa.inspect(conn).get_table_names())
    if not names:
        return TargetState("empty")
    if MARKER in names:
        marker = sa.Table(MARKER, sa.MetaData(), autoload_with=conn)
        row = conn.execute(sa.select(marker)).mappings().first()
        if row is not None:
            return TargetState("migrated", marker=dict(row))
    if ALEMBIC not in names:
        return TargetState("foreign", rows=dict.fromkeys(sorted(names), -1))
    metadata = sa.MetaData()
    metadata.reflect(conn, only=lambda name, _: name not in (ALEMBIC, MARKER))
    rows = {name: n for name, table in sorted(metadata.tables.items()) if (n := _other_rows(conn, table))}
    revision = conn.execute(sa.text(f"select version_num from {ALEMBIC}")).scalar()
    return TargetState("occupied" if rows else "fresh", revision=revision, rows=rows)


def decide(state: TargetState, source_fingerprint: str, source: str) -> bool:
    """True: copy. False: this source is already there. Raises Refused for anything else."""
    if state.kind in ("empty", "fresh"):
        return True
    if state.kind == "migrated":
        marker = state.marker
        if marker["source_fingerprint"] == source_fingerprint:
            return False
        when = datetime.datetime.fromtimestamp(marker["migrated_at"] / 1000, datetime.UTC).isoformat(timespec="seconds")
        raise Refused(
            f"the target already holds a migration from {marker['source']} (at {when}, source fingerprint "
            f"{marker['source_fingerprint'][:12]}), but {source} has fingerprint {source_fingerprint[:12]}: either a "
            "different SQLite file, or the same one written to after that migration. Refusing to overwrite it. "
            "To migrate again from scratch, drop and recreate the target database first."
        )
    advice = ("Refusing to overwrite it. Point the migration at an empty database (or one holding only what a new "
              "MLflow server creates: the default experiment).")
    if state.kind == "foreign":
        raise Refused(f"the target is not empty and not an MLflow database (tables: {', '.join(state.rows)}). {advice}")
    listing = ", ".join(f"{name} ({n} rows)" for name, n in state.rows.items())
    raise Refused(f"the target already holds MLflow data that did not come from this migration: {listing}. {advice}")


# --- checks on the upgraded source -------------------------------------------------------------------------------


def _type_problems(table: sa.Table) -> list[tuple[str, sa.ColumnElement]]:
    """(description, SQL condition on a bad value) for each rule PostgreSQL enforces and SQLite does not."""
    # SQLite lets NULL into a primary key that is not an INTEGER one (a kept bug); PostgreSQL never does.
    checks = [(f"{column.name}: NULL in the primary key", column.is_(None)) for column in table.primary_key.columns]
    for column in table.columns:
        kind, name = column.type, column.name
        stored = sa.func.typeof(column)
        if isinstance(kind, sa.Boolean):
            checks.append((f"{name}: not 0/1 for a boolean", sa.and_(column.is_not(None), column.not_in([0, 1]))))
        elif isinstance(kind, sa.Integer):
            checks.append((f"{name}: not an integer", stored.not_in(["integer", "null"])))
        elif isinstance(kind, sa.Float | sa.Numeric):
            checks.append((f"{name}: not a number", stored.not_in(["integer", "real", "null"])))
        elif isinstance(kind, sa.JSON):
            checks.append((f"{name}: not valid JSON", sa.and_(column.is_not(None), sa.func.json_valid(column) == 0)))
        elif isinstance(kind, sa.LargeBinary):
            checks.append((f"{name}: not a blob", stored.not_in(["blob", "null"])))
        elif isinstance(kind, sa.String):
            checks.append((f"{name}: not text", stored.not_in(["text", "null"])))
            checks.append((f"{name}: contains a NUL character", sa.func.instr(column, sa.func.char(0)) > 0))
            if kind.length:
                checks.append((f"{name}: longer than VARCHAR({kind.length})", sa.func.length(column) > kind.length))
    return checks


def fit_problems(conn: sa.Connection, metadata: sa.MetaData) -> list[str]:
    problems = []
    for name, table in sorted(metadata.tables.items()):
        checks = _type_problems(table)
        if not checks:
            continue
        counts = conn.execute(sa.select(*(sa.func.count().filter(condition) for _, condition in checks))).one()
        problems += [f"{name}.{what} ({n} rows)" for (what, _), n in zip(checks, counts, strict=True) if n]
    # SQLite only checks foreign keys when a connection asks it to; PostgreSQL always does.
    orphans: dict[str, int] = {}
    for table, *_ in conn.exec_driver_sql("pragma foreign_key_check").fetchall():
        orphans[table] = orphans.get(table, 0) + 1
    problems += [f"{table}: {n} rows reference a missing parent row (PRAGMA foreign_key_check)" for table, n in orphans.items()]
    return problems


def artifact_problems(conn: sa.Connection, metadata: sa.MetaData, roots: tuple[str, ...]) -> list[str]:
    problems = []
    for table_name, column_name, where in ARTIFACT_LINKS:
        table = metadata.tables.get(table_name)
        if table is None or column_name not in table.c:
            continue
        column = table.c[column_name]
        good = [column.is_(None), column == "", *(column.startswith(p, autoescape=True) for p in roots + RELATIVE_SCHEMES)]
        query = sa.select(sa.func.count(), sa.func.min(column)).where(sa.not_(sa.or_(*good)))
        if where is not None:
            query = query.where(table.c[where[0]] == where[1])
        count, example = conn.execute(query).one()
        if count:
            problems.append(f"{table_name}.{column_name}: {count} links, e.g. {example}")
    return problems


# --- the copy ----------------------------------------------------------------------------------------------------


def _quoted(conn: sa.Connection, names) -> str:
    return ", ".join(conn.dialect.identifier_preparer.quote(name) for name in names)


def _copy_table(src: sa.Connection, dst: sa.Connection, source: sa.Table, target: sa.Table) -> int:
    # Generated columns (spans.duration_ns) are computed by PostgreSQL as by SQLite; the checksums still compare them.
    names = sorted(column.name for column in target.columns if column.computed is None)
    # Untyped columns: the driver adapts each Python value itself (bool, bytes, float, text for JSON), with no
    # SQLAlchemy type conversion that could differ between the two dialects.
    insert = sa.table(target.name, *(sa.column(name) for name in names)).insert()
    copied = 0
    for part in src.execute(_streamed(source, names)).partitions():
        dst.execute(insert, [dict(zip(names, row, strict=True)) for row in part])
        copied += len(part)
    return copied


def reset_sequences(dst: sa.Connection) -> list[str]:
    """Each serial/identity column continues after its highest copied value, as SQLite's rowid would."""
    columns = dst.execute(sa.text(
        "select table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) "
        "from information_schema.columns where table_schema = current_schema() "
        "and pg_get_serial_sequence(quote_ident(table_name), column_name) is not null"
    )).all()
    for table, column, sequence in columns:
        top = dst.execute(sa.text(f"select max({_quoted(dst, [column])}) from {_quoted(dst, [table])}")).scalar()
        # setval refuses 0; an empty table (or only experiment 0) starts at 1.
        dst.execute(sa.text("select setval(:s, :v, :called)"), {"s": sequence, "v": max(top or 0, 1), "called": (top or 0) >= 1})
    return [f"{table}.{column}" for table, column, _ in columns]


def _marker_table() -> sa.Table:
    return sa.Table(
        MARKER, sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("source_fingerprint", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_revision", sa.String(64)),
        sa.Column("schema_revision", sa.String(64), nullable=False),
        sa.Column("mlflow_version", sa.String(32), nullable=False),
        sa.Column("migrated_at", sa.BigInteger, nullable=False),
        sa.Column("tables", sa.Text, nullable=False),
        comment="Written by the SQLite -> PostgreSQL migration (components/mlflow_migration); keep it: a rerun reads it",
    )


@dataclass
class Plan:
    source: str
    source_fingerprint: str
    source_revision: str | None
    schema_revision: str
    source_sums: dict[str, TableSum]


def mismatches(expected: dict[str, TableSum], actual: dict[str, TableSum]) -> list[str]:
    wrong = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want != got:
            wrong.append(f"{name}: source {want.rows if want else 'absent'} rows, target {got.rows if got else 'absent'} rows"
                         + (", checksums differ" if want and got and want.rows == got.rows else ""))
    return wrong


def copy_all(src: sa.Connection, dst: sa.Connection, source_md: sa.MetaData, target_md: sa.MetaData, plan: Plan) -> dict[str, int] | None:
    """The whole copy inside the caller's transaction. None: another run finished the same migration first."""
    # Nobody else reads or writes MLflow's tables until commit: a server that started early waits, then sees the
    # copied data; a second migration waits, then finds the marker.
    dst.exec_driver_sql(f"lock table {_quoted(dst, sorted(target_md.tables))} in access exclusive mode")
    if not decide(target_state(dst), plan.source_fingerprint, plan.source):
        return None
    for table in reversed(target_md.sorted_tables):
        dst.execute(table.delete())  # only MLflow's seed rows are left here (decide said fresh)
    copied = {}
    for table in target_md.sorted_tables:
        copied[table.name] = _copy_table(src, dst, source_md.tables[table.name], table)
        log.info("copied %9d rows  %s", copied[table.name], table.name)
    for name in reset_sequences(dst):
        log.info("sequence of %s continues after the highest copied value", name)
    target_sums = table_sums(dst, target_md)
    wrong = mismatches(plan.source_sums, target_sums)
    if wrong:
        raise Failed("the copy does not match the source, rolled back: " + "; ".join(wrong))
    marker = _marker_table()
    marker.create(dst, checkfirst=True)
    dst.execute(marker.insert().values(
        id=1, source_fingerprint=plan.source_fingerprint, source=plan.source, source_revision=plan.source_revision,
        schema_revision=plan.schema_revision, mlflow_version=_mlflow_version(), migrated_at=int(time.time() * 1000),
        tables=json.dumps({name: {"rows": s.rows, "checksum": s.checksum} for name, s in target_sums.items()}),
    ))
    return copied


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


# --- orchestration -----------------------------------------------------------------------------------------------


@dataclass
class Options:
    source: str
    target: str
    artifact_roots: tuple[str, ...]
    allow_dangling: bool
    workdir: Path
    report: Path | None


@contextlib.contextmanager
def timed(name: str, seconds: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    yield
    seconds[name] = round(time.monotonic() - start, 3)


def already_done(target: sa.Engine, marker: dict) -> dict:
    """The no-op answer, saying which tables the PostgreSQL-backed server has written to since."""
    recorded = json.loads(marker["tables"])
    metadata = reflect(target, skip=(ALEMBIC, MARKER))
    changed = {}
    with target.connect() as conn:
        for name, table in sorted(metadata.tables.items()):
            now = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            if now != recorded.get(name, {}).get("rows", 0):
                changed[name] = now - recorded.get(name, {}).get("rows", 0)
    when = datetime.datetime.fromtimestamp(marker["migrated_at"] / 1000, datetime.UTC).isoformat(timespec="seconds")
    log.info("already migrated from this source at %s (fingerprint %s); nothing to do", when, marker["source_fingerprint"][:12])
    if changed:
        log.info("rows added (or removed) in the target since, by the server: %s",
                 ", ".join(f"{name} {n:+d}" for name, n in changed.items()))
    else:
        log.info("the target holds exactly the row counts the migration copied")
    return {"status": "already-migrated", "migrated_at": when, "changed_since": changed}


def prepare_source(snapshot_engine: sa.Engine, options: Options, raw: dict[str, TableSum], seconds: dict) -> Plan:
    with timed("upgrade_source", seconds):
        before, after = mlflow_upgrade(snapshot_engine, "source")
    if after != pinned_revision():
        raise Failed(f"the source snapshot is at schema {after} after the upgrade, not this MLflow's {pinned_revision()}")
    log.info("source schema %s -> %s (upgraded in the snapshot only)", before, after)
    metadata = reflect(snapshot_engine, skip=(ALEMBIC,))
    with timed("check_source", seconds), snapshot_engine.connect() as conn:
        problems = fit_problems(conn, metadata)
        if problems:
            raise Refused("the source holds values PostgreSQL would reject; fix them in the SQLite file first: "
                          + "; ".join(problems))
        dangling = artifact_problems(conn, metadata, options.artifact_roots)
    if dangling and not options.allow_dangling:
        raise Refused(
            f"artifact links outside the expected roots ({', '.join(options.artifact_roots)}): " + "; ".join(dangling)
            + ". The migration copies links, not objects: make sure these locations stay readable by the new "
            "server (or add them with --expect-artifact-root), then pass --allow-dangling-artifacts."
        )
    for line in dangling:
        log.warning("artifact links left as they are (--allow-dangling-artifacts): %s", line)
    if before == after:
        sums = {name: s for name, s in raw.items() if name != ALEMBIC}  # nothing changed: reuse the first pass
    else:
        with timed("checksum_upgraded_source", seconds), snapshot_engine.connect() as conn:
            sums = table_sums(conn, metadata)
    return Plan(sanitised_source(options.source), fingerprint(raw), before, after, sums)


def sanitised_source(uri: str) -> str:
    return str(sa.make_url(uri).database)


def migrate(options: Options) -> dict:
    check_target_uri(options.target)
    source_path = sqlite_path(options.source)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    log.info("migrating %s -> %s", source_path, redacted(options.target))
    with timed("snapshot", seconds):
        copy = snapshot(source_path, options.workdir)
    snapshot_engine = sa.create_engine(f"sqlite:///{copy}")
    target = sa.create_engine(target_url(options.target), pool_pre_ping=True)
    try:
        names = set(sa.inspect(snapshot_engine).get_table_names())
        if "experiments" not in names or ALEMBIC not in names:
            raise Refused(f"{source_path} is not an MLflow tracking database (no experiments or {ALEMBIC} table)")
        with timed("checksum_source", seconds), snapshot_engine.connect() as conn:
            raw = table_sums(conn, reflect(snapshot_engine))
        source_fingerprint = fingerprint(raw)
        log.info("source: %d tables, %d rows, fingerprint %s", len(raw), sum(s.rows for s in raw.values()), source_fingerprint[:12])
        with target.connect() as conn:
            state = target_state(conn)
        if not decide(state, source_fingerprint, sanitised_source(options.source)):
            return {**already_done(target, state.marker), "seconds": seconds}
        plan = prepare_source(snapshot_engine, options, raw, seconds)
        with timed("upgrade_target", seconds):
            before, after = mlflow_upgrade(target, "target")
        log.info("target schema %s -> %s", before or "(empty)", after)
        source_md = reflect(snapshot_engine, skip=(ALEMBIC,))
        target_md = reflect(target, skip=(ALEMBIC, MARKER))
        check_same_schema(source_md, target_md)
        with timed("copy_and_verify", seconds), target.begin() as dst, snapshot_engine.connect() as src:
            copied = copy_all(src, dst, source_md, target_md, plan)
        if copied is None:
            with target.connect() as conn:
                return {**already_done(target, target_state(conn).marker), "seconds": seconds}
        seconds["total"] = round(time.monotonic() - started, 3)
        log.info("copied %d rows in %d tables; every table matches the source (rows and checksums); %.1fs in all",
                 sum(copied.values()), len(copied), seconds["total"])
        return {"status": "copied", "schema_revision": plan.schema_revision, "source_fingerprint": plan.source_fingerprint,
                "rows": copied, "checksums": {n: s.checksum for n, s in plan.source_sums.items()}, "seconds": seconds}
    finally:
        snapshot_engine.dispose()
        target.dispose()
        copy.unlink(missing_ok=True)


def check_same_schema(source: sa.MetaData, target: sa.MetaData) -> None:
    def shape(metadata: sa.MetaData) -> dict[str, set[str]]:
        return {name: {c.name for c in table.columns} for name, table in metadata.tables.items()}

    if shape(source) != shape(target):
        differ = sorted(n for n in set(shape(source)) | set(shape(target)) if shape(source).get(n) != shape(target).get(n))
        raise Failed(f"source and target schemas differ after both were upgraded, in: {', '.join(differ)}")


# --- command line ------------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="mlflow-migrate", description="Copy an MLflow tracking store from SQLite into PostgreSQL, keeping every ID.",
    )
    parser.add_argument("source", help="SQLite URI of the source, e.g. sqlite:////mlflow/mlflow.db (never written)")
    parser.add_argument("target", nargs="?", default=os.environ.get(TARGET_ENV),
                        help=f"postgresql:// URI of the target (default: ${TARGET_ENV}, which keeps the password out of ps)")
    parser.add_argument("--expect-artifact-root", action="append", dest="roots", metavar="URI",
                        help=f"prefix artifact links may start with (repeatable; replaces the default {DEFAULT_ARTIFACT_ROOTS[0]}, "
                        "so pass it too when the target server proxies artifacts)")
    parser.add_argument("--allow-dangling-artifacts", action="store_true",
                        help="migrate even when artifact links point outside the expected roots")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the source snapshot is written and upgraded (needs the source's size free)")
    parser.add_argument("--report", type=Path, help="write the outcome (rows per table, checksums, timings) as JSON")
    args = parser.parse_args(argv)
    if not args.target:
        parser.error(f"no target: give a postgresql:// URI or set ${TARGET_ENV}")
    return Options(args.source, args.target, tuple(args.roots or DEFAULT_ARTIFACT_ROOTS),
                   args.allow_dangling_artifacts, args.workdir, args.report)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    # Alembic names every one of ~60 migrations; the schema revisions before and after say enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    options = parse(sys.argv[1:] if argv is None else argv)
    try:
        outcome = migrate(options)
    except Refused as reason:
        log.error("REFUSED, nothing written: %s", reason)
        outcome, code = {"status": "refused", "reason": str(reason)}, EXIT_REFUSED
    except (Failed, sa.exc.SQLAlchemyError) as reason:
        # A database error (unreachable host, wrong password, a row PostgreSQL refused) ends here too: the copy's
        # transaction is rolled back; only a schema upgrade of the target may have been committed before it.
        log.error("FAILED, no data committed: %s", reason)
        outcome, code = {"status": "failed", "reason": str(reason)}, EXIT_FAILED
    else:
        code = 0
    if options.report:
        options.report.write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
