"""End to end on Kind: the front door with `frontDoor.enabled` on `*.localtest.me`, a self-signed issuer and Dex as
the test OpenID Connect provider (the client is registered there; the test checks the redirect to it, not a sign-in).
An unauthenticated HTTPS request to the MLflow host, through the gateway, is sent to Dex to sign in; the HTTP port
redirects to HTTPS; no Ingress exists.

The fixture turns the front door on for the dev stack (`pulumi config set` + `pulumi up`) and off again afterwards,
so the other e2e tests see the dev stack as the README brings it up. Skips, saying why, without a reachable Kind
cluster (scripts/dev-up.sh, as the e2e-kind workflow runs it).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time
from contextlib import contextmanager

import pytest

from tests.e2e.kind import kubectl, needs_kind
from tools.render import ROOT

pytestmark = needs_kind
DEX_IMAGE = "ghcr.io/dexidp/dex:v2.43.0"
DEX_ISSUER = "https://dex.localtest.me:8443/dex"
CLIENT_ID = "mlops-platform"
CLIENT_SECRET = "e2e-only-client-secret-not-used-anywhere-else"
LOCAL_PORT = 8443
FRONT_DOOR = {
    "enabled": True,
    "domain": "localtest.me",
    "issuer": {"selfSigned": True},
    "serviceType": "ClusterIP",
    "replicas": 1,
    # Only MLflow and the Temporal UI: the test's subject, and one more UI behind gateway OIDC.
    "hosts": ["mlflow", "temporal"],
    "oidc": {
        "issuer": DEX_ISSUER,
        "clientId": CLIENT_ID,
        # Given, the gateway needs no discovery fetch from Dex to redirect to it.
        "authorizationUrl": f"{DEX_ISSUER}/auth",
        "tokenUrl": f"{DEX_ISSUER}/token",
    },
}
DEX_CONFIG = {
    "issuer": DEX_ISSUER,
    "storage": {"type": "memory"},
    "web": {"http": "0.0.0.0:5556"},
    "enablePasswordDB": True,
    "staticClients": [{
        "id": CLIENT_ID, "name": "mlops-platform", "secret": CLIENT_SECRET,
        "redirectURIs": [f"https://mlflow.localtest.me:{LOCAL_PORT}/oauth2/callback"],
    }],
    "staticPasswords": [{
        "email": "e2e@example.com", "username": "e2e", "userID": "e2e",
        # bcrypt of "password", Dex's own example user.
        "hash": "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W",
    }],
}


def pulumi(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ}
    state = ROOT / ".pulumi-state"
    env.setdefault("PULUMI_BACKEND_URL", f"file://{state}")
    if "PULUMI_CONFIG_PASSPHRASE" not in env:
        env.setdefault("PULUMI_CONFIG_PASSPHRASE_FILE", str(state / "passphrase"))
    result = subprocess.run(["pulumi", *args, "--stack", "dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def deploy_dex() -> None:
    """Dex in namespace `dex`, in-memory, one static client and user (it is only ever redirected to here)."""
    kubectl("create", "namespace", "dex", check=False)
    manifest = {
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dex-config", "namespace": "dex"},
             "stringData": {"config.yaml": json.dumps(DEX_CONFIG)}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dex", "namespace": "dex"},
             "spec": {"selector": {"matchLabels": {"app": "dex"}}, "template": {
                 "metadata": {"labels": {"app": "dex"}},
                 "spec": {"containers": [{
                     "name": "dex", "image": DEX_IMAGE, "args": ["dex", "serve", "/etc/dex/config.yaml"],
                     "ports": [{"containerPort": 5556}],
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/dex"}],
                 }], "volumes": [{"name": "config", "secret": {"secretName": "dex-config"}}]}}}},
        ],
    }
    subprocess.run(["kubectl", "--context", "kind-mlops", "apply", "-f", "-"], input=json.dumps(manifest), text=True, check=True)
    kubectl("-n", "dex", "rollout", "status", "deployment/dex", "--timeout=300s")


@pytest.fixture(scope="module")
def front_door():
    deploy_dex()
    for path, value in settings("mlops-platform:frontDoor", FRONT_DOOR):
        pulumi("config", "set", "--path", path, value)
    pulumi("config", "set", "--secret", "mlops-platform:oidcClientSecret", CLIENT_SECRET)
    try:
        pulumi("up", "--yes", "--skip-preview")
        kubectl("-n", "mlops-gateway", "wait", "--for=condition=Programmed", "gateway/front-door", "--timeout=600s")
        kubectl("-n", "mlops-gateway", "wait", "--for=condition=Ready", "certificate/mlflow-tls", "--timeout=300s")
        with port_forward():
            yield
    finally:
        pulumi("config", "rm", "mlops-platform:frontDoor")
        pulumi("config", "rm", "mlops-platform:oidcClientSecret")
        pulumi("up", "--yes", "--skip-preview")
        kubectl("delete", "namespace", "dex", "--wait=false", check=False)


def settings(prefix: str, value) -> list[tuple[str, str]]:
    """`pulumi config set --path` arguments for a nested value (with --path, true and numbers are typed)."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in settings(f"{prefix}.{key}", item)]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in settings(f"{prefix}[{index}]", item)]
    return [(prefix, json.dumps(value) if isinstance(value, bool) else str(value))]


@contextmanager
def port_forward():
    process = subprocess.Popen(
        ["kubectl", "--context", "kind-mlops", "-n", "mlops-gateway", "port-forward", "svc/front-door", f"{LOCAL_PORT}:443", "8080:80"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", LOCAL_PORT), timeout=2).close()
                break
            except OSError:
                time.sleep(1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def request(host: str, path: str = "/", tls: bool = True) -> http.client.HTTPResponse:
    """A request as a browser sends it to `host` (`*.localtest.me` resolves to 127.0.0.1); the certificate is the
    self-signed one, so it is not verified here."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", LOCAL_PORT, timeout=20, context=context)
        authority = f"{host}:{LOCAL_PORT}"
    else:
        connection = http.client.HTTPConnection("127.0.0.1", 8080, timeout=20)
        authority = host
    connection.request("GET", path, headers={"Host": authority})
    return connection.getresponse()


def test_an_unauthenticated_request_to_mlflow_is_sent_to_the_identity_provider(front_door):
    response = request("mlflow.localtest.me")
    assert response.status == 302, (response.status, response.getheaders())
    location = response.getheader("Location")
    assert location.startswith(f"{DEX_ISSUER}/auth?"), location
    assert f"client_id={CLIENT_ID}" in location
    assert "redirect_uri=https%3A%2F%2Fmlflow.localtest.me" in location


def test_the_http_port_redirects_to_https(front_door):
    response = request("mlflow.localtest.me", tls=False)
    assert response.status == 301
    assert response.getheader("Location").startswith("https://mlflow.localtest.me")


def test_no_ingress_exists_in_the_cluster(front_door):
    assert json.loads(kubectl("get", "ingress", "-A", "-o", "json").stdout)["items"] == []
