"""A real PostgreSQL (Debian's) given the roles and databases exactly as the rendered CloudNativePG resources
declare them; then every connection URI from the rendered Secrets must connect over TLS as its owner, and no
owner may read or write another application's tables.

The server runs on 127.0.0.1 in a temp dir, with TLS like CloudNativePG's; only the `-rw` host is mapped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.realservers import free_port
from tests.support import secret_data

psycopg = pytest.importorskip("psycopg")
from psycopg import sql  # noqa: E402

IN_CLUSTER_HOST = "postgres-rw.mlops-data.svc.cluster.local:5432"


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


BIN = postgres_bin()
pytestmark = pytest.mark.skipif(
    BIN is None or shutil.which("openssl") is None,
    reason="Debian's postgresql (and openssl) are not installed (scripts/test.sh installs them)",
)


def as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; under root (CI), run it as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(params=["dev", "prod"], scope="module")
def server(request, renderings):
    rendering = renderings[request.param]
    root = Path(tempfile.mkdtemp(prefix="pg-real-"))
    data, port = root / "data", free_port()
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=postgres-rw",
         "-keyout", str(root / "server.key"), "-out", str(root / "server.crt")],
        check=True, capture_output=True,
    )
    os.chmod(root / "server.key", 0o600)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, root / "server.key", root / "server.crt"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    subprocess.run(as_server_user([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                                   "--auth-host=scram-sha-256"]), check=True, capture_output=True)
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    )
    options = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c ssl=on "
               f"-c ssl_cert_file={root / 'server.crt'} -c ssl_key_file={root / 'server.key'}")
    subprocess.run(as_server_user([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"]),
                   check=True, capture_output=True)
    admin = {"host": str(root), "port": port, "user": "postgres", "dbname": "postgres", "autocommit": True}
    try:
        apply_declared_roles_and_databases(rendering, admin)
        yield {"rendering": rendering, "port": port, "admin": admin}
    finally:
        subprocess.run(as_server_user([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def apply_declared_roles_and_databases(rendering, admin: dict) -> None:
    """What CloudNativePG does with the rendered spec: managed roles (password from their Secret), then databases."""
    cluster = rendering.find(kind="Cluster", name="postgres").manifest(redact=False)["spec"]
    attributes = {"login": "LOGIN", "superuser": "SUPERUSER", "createdb": "CREATEDB", "createrole": "CREATEROLE", "inherit": "INHERIT"}
    with psycopg.connect(**admin) as db:
        for role in cluster["managed"]["roles"]:
            password = secret_data(rendering, "mlops-data", role["passwordSecret"]["name"])["password"]
            flags = " ".join(word if role.get(key) else f"NO{word}" for key, word in attributes.items())
            db.execute(sql.SQL("CREATE ROLE {} WITH " + flags + " PASSWORD {}").format(sql.Identifier(role["name"]), sql.Literal(password)))
        for database in rendering.find_all(kind="Database"):
            spec = database.inputs["spec"]
            db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(spec["name"]), sql.Identifier(spec["owner"])))


def local_uri(server, database: str, as_database: str | None = None) -> str:
    """The rendered URI of `database`'s Secret with the in-cluster host mapped; optionally aimed at another db."""
    uri = secret_data(server["rendering"], "mlops-data", f"postgres-{database.replace('_', '-')}")["uri"]
    uri = uri.replace(IN_CLUSTER_HOST, f"127.0.0.1:{server['port']}")
    return uri.replace(f"/{database}?", f"/{as_database}?") if as_database else uri


def declared_databases(server) -> list[str]:
    return [d.inputs["spec"]["name"] for d in server["rendering"].find_all(kind="Database")]


def test_every_rendered_uri_connects_over_tls_as_its_owner(server):
    names = declared_databases(server)
    assert {"platform", "users", "labeler"} <= set(names)
    for name in names:
        with psycopg.connect(local_uri(server, name)) as db:
            user, database, ssl = db.execute(
                "select current_user, current_database(), ssl from pg_stat_ssl where pid = pg_backend_pid()"
            ).fetchone()
            assert (user, database, ssl) == (name, name, True)


def test_passwords_with_uri_reserved_characters_survive_encoding(server):
    password = secret_data(server["rendering"], "mlops-data", "postgres-users")["password"]
    assert any(c in password for c in "@:/%#?")
    with psycopg.connect(local_uri(server, "users")) as db:
        assert db.execute("select 1").fetchone() == (1,)


def test_an_owner_cannot_read_or_write_another_applications_tables(server):
    with psycopg.connect(local_uri(server, "platform"), autocommit=True) as db:
        db.execute("create table experiments (id int primary key, secret text)")
        db.execute("insert into experiments values (1, 'platform only')")
    with psycopg.connect(local_uri(server, "users", as_database="platform"), autocommit=True) as intruder:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            intruder.execute("select * from experiments")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            intruder.execute("create table planted (id int)")


def test_application_roles_cannot_escalate(server):
    with psycopg.connect(local_uri(server, "labeler"), autocommit=True) as db:
        assert db.execute("select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user").fetchone() == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("create database sneaky")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("create role sneaky login")


def test_a_wrong_password_is_refused(server):
    uri = local_uri(server, "platform")
    password = secret_data(server["rendering"], "mlops-data", "postgres-platform")["password"]
    from urllib.parse import quote

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(uri.replace(quote(password, safe=""), "wrong"))
