"""Raft snapshots of the in-cluster Vault, taken through Kubernetes auth with a snapshot-only role and uploaded by
rclone."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.backups import job
from components.config import ResourceSpec
from components.versions import IMAGES

BACKUP = "vault-snapshot"
CA_DIR = "/vault-ca"
CA_FILE = f"{CA_DIR}/ca.crt"
DEADLINE_SECONDS = 1800
"""activeDeadlineSeconds of a run: one that takes longer is killed and counts as failed."""


@dataclass(frozen=True)
class VaultSnapshots(job.BackupJob):
    """`vault operator raft snapshot save`, logged in through Kubernetes auth with a snapshot-only role; it runs in
    Vault's namespace, where its ServiceAccount is."""

    address: pulumi.Input[str]
    """In-cluster address of the active Vault server."""
    role: str
    """Kubernetes-auth role allowed to read sys/storage/raft/snapshot and nothing else."""
    service_account: str
    """ServiceAccount the role is bound to."""
    ca_secret: str
    """Secret (in `namespace`) whose key `ca.crt` is the CA of Vault's certificate; the CLI verifies against it."""


VAULT_SNAPSHOT = """set -eu
jwt=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
VAULT_TOKEN=$(vault write -field=token "auth/kubernetes/login" role="$VAULT_ROLE" jwt="$jwt")
export VAULT_TOKEN
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "/backup/vault/$stamp"
vault operator raft snapshot save "/backup/vault/$stamp/raft.snap"
test -s "/backup/vault/$stamp/raft.snap"
"""
"""Log in with the job's ServiceAccount (a snapshot-only role), save a raft snapshot, refuse an empty one."""


def cron_job(
    name: str, snapshots: VaultSnapshots, target: job.BackupTarget, resources: ResourceSpec, child: pulumi.ResourceOptions
) -> k8s.batch.v1.CronJob:
    k8s.core.v1.ServiceAccount(
        f"{name}-vault-snapshot-account",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=snapshots.service_account, namespace=snapshots.namespace, labels=kube.labels("backups", "backup")),
        automount_service_account_token=False,
        opts=child,
    )
    env = [*kube.plain_env({"VAULT_ADDR": snapshots.address, "VAULT_CACERT": CA_FILE, "VAULT_ROLE": snapshots.role, "HOME": "/tmp"})]
    ca = k8s.core.v1.VolumeMountArgs(name="vault-ca", mount_path=CA_DIR, read_only=True)
    save = job.container("raft-snapshot", IMAGES["vault"], ["/bin/sh", "-c", VAULT_SNAPSHOT], env, resources, [job.SCRATCH, job.TMP, ca])
    return job.produce_then_upload(
        name,
        backup=BACKUP,
        settings=snapshots,
        producer=save,
        prefix="vault",
        scratch_size="5Gi",
        uid=job.NOBODY,
        deadline_seconds=DEADLINE_SECONDS,
        target=target,
        resources=resources,
        service_account=snapshots.service_account,
        # Only the CA certificate of the Secret, not the server's key beside it.
        volumes=[k8s.core.v1.VolumeArgs(
            name="vault-ca",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=snapshots.ca_secret, items=[k8s.core.v1.KeyToPathArgs(key="ca.crt", path="ca.crt")]),
        )],
        opts=child,
    )
