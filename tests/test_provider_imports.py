"""Each stack imports only the provider SDKs it uses: importing pulumi_cloudflare alone takes seconds, and dev uses
none of the cloud SDKs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.render import ROOT

CLOUD_SDKS = ("pulumi_aws", "pulumi_cloudflare", "pulumi_vault")
PROBE = """
import json, sys
from tools.render import render_stack
render_stack({stack!r}, overrides=json.loads({overrides!r}))
print(json.dumps(sorted(m for m in {sdks!r} if m in sys.modules)))
"""
R2_STORE = {
    "engine": "r2", "accountId": "0123456789abcdef0123456789abcdef", "bucketPrefix": "acme-mlops-prod",
    "buckets": ["mlflow-artifacts", "backups", "logs", "airflow-logs"],
}
R2 = {
    "mlops-platform:objectStore": R2_STORE,
    "mlops-platform:r2AccessKeyId": "id", "mlops-platform:r2SecretAccessKey": "key", "mlops-platform:cloudflareApiToken": "token",
    # R2 has no KMS: Vault is unsealed by hand.
    "mlops-platform:vault": {"autoUnseal": False},
}
KUBERNETES_SECRETS = {"mlops-platform:secrets": {"store": "kubernetes"}, "mlops-platform:vault": None}


def imported_sdks(stack: str, overrides: dict) -> list[str]:
    """The cloud SDKs a fresh interpreter has imported after evaluating the stack. Fresh, because this test session
    has imported all of them already (other tests render S3, R2 and Vault stacks)."""
    code = PROBE.format(stack=stack, overrides=json.dumps(overrides), sdks=CLOUD_SDKS)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "stack, overrides, expected",
    [
        ("dev", {}, []),
        # S3 buckets and the KMS key that unseals Vault; the platform's secrets in Vault.
        ("prod", {}, ["pulumi_aws", "pulumi_vault"]),
        ("prod", KUBERNETES_SECRETS, ["pulumi_aws"]),
        ("prod", R2, ["pulumi_cloudflare", "pulumi_vault"]),
    ],
    ids=["dev", "prod", "prod-kubernetes-secrets", "prod-r2"],
)
def test_a_stack_imports_exactly_the_cloud_sdks_it_uses(stack, overrides, expected):
    assert imported_sdks(stack, overrides) == expected
