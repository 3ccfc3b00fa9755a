"""A real PostgreSQL (Debian's) given the roles and databases exactly as the rendered CloudNativePG resources
declare them; then every connection URI from the rendered Secrets must connect over TLS as its owner, and no
owner may read or write another application's tables.

The server runs on 127.0.0.1 in a temp dir, with TLS like CloudNativePG's; only the `-rw` host is mapped.
"""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest

from tests.realservers import apply_declared_roles_and_databases, needs_debian, postgres_bin, postgres_server
from tests.support import secret_data

psycopg = pytest.importorskip("psycopg")

IN_CLUSTER_HOST = "postgres-rw.mlops-data.svc.cluster.local:5432"


pytestmark = needs_debian(
    postgres_bin() is None or shutil.which("openssl") is None,
    reason="Debian's postgresql (and openssl) are not installed (scripts/test.sh installs them)",
)


@pytest.fixture(params=["dev", "prod"], scope="module")
def server(request, renderings):
    rendering = renderings[request.param]
    with postgres_server() as pg:
        apply_declared_roles_and_databases(rendering, pg["admin"])
        yield {"rendering": rendering, **pg}


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


def test_every_owner_is_walled_off_from_every_other_owners_database(server):
    """For every ordered pair (owner, other database): the owner can connect (PUBLIC may), but neither read the
    other's tables nor create anything there, and it owns nothing but its own database."""
    names = declared_databases(server)
    for name in names:
        with psycopg.connect(local_uri(server, name), autocommit=True) as db:
            db.execute(f"create table if not exists owned_by_{name} (id int)")
            db.execute(f"insert into owned_by_{name} values (1)")
            owned = {row[0] for row in db.execute("select datname from pg_database where pg_get_userbyid(datdba) = current_user")}
            assert owned == {name}, f"{name} owns {sorted(owned)}"
    for owner in names:
        for other in (n for n in names if n != owner):
            with psycopg.connect(local_uri(server, owner, as_database=other), autocommit=True) as intruder:
                granted = intruder.execute(
                    "select pg_has_role(current_user, r.rolname, 'USAGE') from pg_roles r where r.rolname = %s", (other,)
                ).fetchone()
                assert granted == (False,), f"{owner} holds {other}'s rights"
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    intruder.execute(f"select * from owned_by_{other}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    intruder.execute(f"create table planted_by_{owner} (id int)")


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
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(uri.replace(quote(password, safe=""), "wrong"))
