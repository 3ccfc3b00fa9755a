"""`mlops-platform:secrets` and `mlops-platform:vault`: where generated secrets are kept."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from components.config.base import Block
from components.config.formats import CRON5, DnsLabel, Flag, Quantity, Url, matching, one_of, whole
from components.config.problems import Problem, reject
from components.config.resources import ResourceSpec

SECRET_STORES = ("kubernetes", "vault")
VAULT_PHASES = ("install", "configure")
Store = one_of(*SECRET_STORES)
Phase = one_of(*VAULT_PHASES)
Peers = whole(1, 7)
Cron = matching(CRON5, "expected a 5-field cron schedule such as '0 */6 * * *'")
DEPLOYED_CA_FILE = "vault-ca.crt"
"""Where the README's kubectl command writes a deployed Vault's CA (project directory, ignored by git)."""
CaFile = matching(r"^\S*$", "expected a file path without spaces, or empty for the system's CAs")
GoDuration = matching(r"^[1-9][0-9]*(s|m|h)$", "expected a duration such as 15m or 1h")


class SecretsConfig(Block):
    """Where the platform's generated secrets (passwords, keys) are kept."""

    store: Store = Field(
        "kubernetes",
        description="kubernetes: Pulumi writes them as Kubernetes Secrets; vault: into Vault, synced into Secrets by External Secrets.",
    )


class VaultConfig(Block):
    """HashiCorp Vault as the secret store (secrets.store: vault)."""

    # The deployment rules below, for editors: an existing Vault needs its address and has its own seal.
    model_config = ConfigDict(json_schema_extra={"allOf": [{
        "if": {"properties": {"deploy": {"const": False}}, "required": ["deploy"]},
        "then": {
            "required": ["clusterAddress"], "properties": {"autoUnseal": {"const": False}, "phase": {"const": "configure"}},
        },
    }]})

    deploy: Flag = Field(
        True,
        description="Run Vault in the cluster (HA, raft); false: use an existing Vault at `address`.",
    )
    phase: Phase = Field(
        "configure",
        description="install: the first `pulumi up` on an empty cluster deploys Vault alone; configure: everything, Vault included.",
    )
    address: Url = Field(
        "https://127.0.0.1:8200",
        description="Where Pulumi reaches Vault (a port-forward, or the public address of an existing Vault); https for a deployed Vault.",
    )
    ca_cert_file: CaFile = Field(
        "",
        description="PEM file of the CA Pulumi verifies Vault's certificate against (fetch a deployed Vault's with kubectl, README); empty: vault-ca.crt with a deployed Vault, the system's CAs otherwise.",
    )
    cluster_address: Url = Field(
        "",
        description="Where the cluster reaches Vault; empty: the deployed Vault's Service (required with deploy false).",
    )
    kv_mount: DnsLabel = Field(
        "mlops",
        description="KV v2 mount holding the platform's secrets under `<stack>/<namespace>/<secret>`.",
    )
    replicas: Peers = Field(3, description="Vault servers (raft peers, an odd number), spread over nodes.")
    data_size: Quantity = Field("10Gi", description="Raft data claim per server.")
    audit_size: Quantity = Field("10Gi", description="Audit log claim per server.")
    auto_unseal: Flag = Field(
        False,
        description="Create an AWS KMS key and let Vault unseal with it, so pods restart without unseal keys (objectStore.engine s3).",
    )
    snapshot_schedule: Cron = Field(
        "0 */6 * * *",
        description="Cron of the raft snapshot CronJob (into the backups bucket).",
    )
    refresh_interval: GoDuration = Field(
        "1h",
        description="How often the sync operator re-reads each secret from Vault.",
    )
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "512Mi"}),
        description="Requests and limits of each Vault server.",
    )

    @property
    def provider_ca_file(self) -> str:
        """The CA file Pulumi's provider verifies Vault with: a deployed Vault's own CA is never in the system's."""
        return self.ca_cert_file or (DEPLOYED_CA_FILE if self.deploy else "")

    @model_validator(mode="after")
    def _deployment_rules(self) -> VaultConfig:
        problems = []
        if not self.deploy and not self.cluster_address:
            allowed = "required with vault.deploy false: where the cluster reaches the existing Vault"
            problems.append(Problem("clusterAddress", None, allowed))
        if self.deploy and self.replicas % 2 == 0:
            allowed = "use an odd number of raft peers (1, 3, 5) so a majority survives a loss"
            problems.append(Problem("replicas", self.replicas, allowed))
        if self.auto_unseal and not self.deploy:
            allowed = "configure the seal of an existing Vault where it runs; autoUnseal needs vault.deploy"
            problems.append(Problem("autoUnseal", True, allowed))
        if self.deploy and self.address.startswith("http://"):
            allowed = "the deployed Vault serves TLS only: https://, e.g. https://127.0.0.1:8200 through the port-forward"
            problems.append(Problem("address", self.address, allowed))
        if self.phase == "install" and not self.deploy:
            allowed = "the install phase deploys Vault; with vault.deploy false use phase configure"
            problems.append(Problem("phase", "install", allowed))
        reject(problems)
        return self
