"""ObjectStore on AWS S3 (prod) and Cloudflare R2 (a prod variant): bucket hardening, lifecycle, least-privilege
credentials, protection, and the same interface for consumers."""

from __future__ import annotations

import json
import re

import pytest

from components.config import ConfigError, parse_stack_config
from tests.support import container, env_of, secret_data
from tools.render import is_secret, render_stack, unwrap_secrets

PREFIX = "acme-mlops-prod"
# The seed buckets plus `logs`, where prod's Loki keeps its chunks.
SEED = (
    "training-datasets", "training-checkpoints", "training-results", "model-weights", "config-schemas", "mlflow-artifacts", "backups", "logs",
    # Airflow's task logs (components/airflow): the one bucket the platform adds to the seed's.
    "airflow-logs",
)
ACCOUNT = "0123456789abcdef0123456789abcdef"
R2_STORE = {
    "engine": "r2", "accountId": ACCOUNT, "bucketPrefix": PREFIX, "buckets": list(SEED),
    "retention": {"backupsDays": 14, "abortMultipartDays": 3},
}
R2_SECRETS = {
    "mlops-platform:r2AccessKeyId": "r2-token-id",
    "mlops-platform:r2SecretAccessKey": "r2-secret-sha256",
    "mlops-platform:cloudflareApiToken": "cf-api-token",
}


# R2 has no KMS: a prod variant on R2 unseals Vault by hand.
MANUAL_UNSEAL = {"mlops-platform:vault": {"autoUnseal": False}}


@pytest.fixture(scope="module")
def r2():
    return render_stack("prod", overrides={"mlops-platform:objectStore": R2_STORE, **R2_SECRETS, **MANUAL_UNSEAL})


@pytest.fixture(scope="module")
def kms():
    store = {"engine": "s3", "region": "eu-central-1", "bucketPrefix": PREFIX, "buckets": list(SEED),
             "kmsKeyArn": "arn:aws:kms:eu-central-1:123456789012:key/abcd"}
    return render_stack("prod", overrides={"mlops-platform:objectStore": store})


def for_bucket(rendering, type_: str, bucket: str):
    return rendering.find(type=type_, name=f"objects-{bucket}-{type_.rsplit(':', 1)[-1].lower()}")


def by_suffix(rendering, suffix: str, bucket: str):
    return rendering.find(name=f"objects-{bucket}-{suffix}")


def test_one_protected_bucket_per_configured_name_with_the_stack_prefix(prod):
    buckets = prod.find_all(type="aws:s3/bucket:Bucket")
    assert sorted(b.inputs["bucket"] for b in buckets) == sorted(f"{PREFIX}-{b}" for b in SEED)
    for bucket in buckets:
        assert bucket.protect and bucket.retain_on_delete, bucket.name
        assert bucket.inputs["forceDestroy"] is False
    assert prod.outputs["buckets"]["mlflow-artifacts"] == f"{PREFIX}-mlflow-artifacts"


@pytest.mark.parametrize("bucket", SEED)
def test_every_bucket_is_private_versioned_encrypted_and_tls_only(prod, bucket):
    block = by_suffix(prod, "public-access", bucket).inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert by_suffix(prod, "ownership", bucket).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert by_suffix(prod, "versioning", bucket).inputs["versioningConfiguration"] == {"status": "Enabled"}
    rule = by_suffix(prod, "encryption", bucket).inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    policy = json.loads(by_suffix(prod, "tls-only", bucket).inputs["policy"])
    statement = policy["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [f"arn:aws:s3:::{PREFIX}-{bucket}", f"arn:aws:s3:::{PREFIX}-{bucket}/*"]
    assert by_suffix(prod, "public-access", bucket).urn in by_suffix(prod, "tls-only", bucket).dependencies


def lifecycle(rendering, bucket) -> dict:
    return {r["id"]: r for r in by_suffix(rendering, "lifecycle", bucket).inputs["rules"]}


def test_lifecycle_expires_old_versions_uploads_and_only_backups(prod):
    artifacts = lifecycle(prod, "mlflow-artifacts")
    assert artifacts["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}
    assert artifacts["expire-old-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert not [rule for rule in artifacts if rule.startswith("expire-") and rule != "expire-old-versions"]
    backups = lifecycle(prod, "backups")
    for prefix in ("postgres", "mlflow-sqlite", "mirror-deleted"):
        assert backups[f"expire-{prefix}"]["expiration"] == {"days": 30}
        assert backups[f"expire-{prefix}"]["filter"] == {"prefix": f"{prefix}/"}
    assert "expire-mirror" not in backups, "the live mirror must not expire"


def test_sse_kms_when_a_key_is_configured(kms):
    rule = by_suffix(kms, "encryption", "backups").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:eu-central-1:123456789012:key/abcd"}
    assert rule["bucketKeyEnabled"] is True
    policy = json.loads(kms.find(type="aws:iam/userPolicy:UserPolicy", name="objects-mlflow-policy").inputs["policy"])
    kms_statement = next(s for s in policy["Statement"] if s["Action"][0].startswith("kms:"))
    assert kms_statement["Resource"] == ["arn:aws:kms:eu-central-1:123456789012:key/abcd"]


def test_mlflow_user_is_scoped_to_the_artifact_bucket_only(prod):
    user = prod.find(type="aws:iam/user:User", name="objects-mlflow-user")
    assert user.inputs["name"] == f"{PREFIX}-mlflow"
    policy = json.loads(prod.find(type="aws:iam/userPolicy:UserPolicy", name="objects-mlflow-policy").inputs["policy"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{PREFIX}-mlflow-artifacts", f"arn:aws:s3:::{PREFIX}-mlflow-artifacts/*"}
    for statement in policy["Statement"]:
        assert "*" not in statement["Resource"]
        assert not any(action in ("s3:*", "*") for action in statement["Action"])


def test_access_key_reaches_mlflow_only_through_its_secret(prod):
    key = prod.find(type="aws:iam/accessKey:AccessKey", name="objects-mlflow-access-key")
    data = secret_data(prod, "mlops-mlflow", "mlflow-s3-credentials")
    assert data["AWS_ACCESS_KEY_ID"] == key.urn.rsplit("::", 1)[-1] + "-id"
    assert data["AWS_SECRET_ACCESS_KEY"]
    env = env_of(container(prod.find(kind="Deployment", name="mlflow").manifest(), "mlflow"))
    assert env["AWS_SECRET_ACCESS_KEY"] == ("secret", "mlflow-s3-credentials", "AWS_SECRET_ACCESS_KEY")


def test_backup_user_may_only_write_the_backups_bucket(prod):
    policy = json.loads(prod.find(type="aws:iam/userPolicy:UserPolicy", name="objects-postgres-backup-policy").inputs["policy"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{PREFIX}-backups", f"arn:aws:s3:::{PREFIX}-backups/*"}


def test_aws_resources_use_the_explicit_provider_for_the_configured_region(prod):
    provider = prod.find(type="pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-central-1"
    for resource in prod.resources:
        if resource.type.startswith("aws:"):
            assert resource.provider.startswith(provider.urn + "::"), resource.name


def test_s3_clients_get_the_regional_endpoint_and_aws_checksums(prod):
    env = env_of(container(prod.find(kind="Deployment", name="mlflow").manifest(), "mlflow"))
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-central-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"] == "eu-central-1"
    assert "AWS_REQUEST_CHECKSUM_CALCULATION" not in env


def test_r2_buckets_are_protected_and_carry_only_what_r2_supports(r2):
    buckets = r2.find_all(type="cloudflare:index/r2Bucket:R2Bucket")
    assert sorted(b.inputs["name"] for b in buckets) == sorted(f"{PREFIX}-{b}" for b in SEED)
    assert all(b.protect and b.retain_on_delete and b.inputs["accountId"] == ACCOUNT for b in buckets)
    assert not [r for r in r2.resources if r.type.startswith("aws:")]


def test_r2_lifecycle_aborts_uploads_and_expires_backups(r2):
    rules = {r["id"]: r for r in r2.find(name="objects-backups-lifecycle").inputs["rules"]}
    assert rules["abort-incomplete-uploads"]["abortMultipartUploadsTransition"]["condition"] == {"type": "Age", "maxAge": 3 * 86400}
    assert rules["expire-postgres"]["deleteObjectsTransition"]["condition"] == {"type": "Age", "maxAge": 14 * 86400}
    assert rules["expire-postgres"]["conditions"] == {"prefix": "postgres/"}
    assert "expire-postgres" not in {r["id"] for r in r2.find(name="objects-mlflow-artifacts-lifecycle").inputs["rules"]}


def test_r2_clients_get_the_account_endpoint_region_auto_and_checksum_workaround(r2):
    env = env_of(container(r2.find(kind="Deployment", name="mlflow").manifest(), "mlflow"))
    assert env["MLFLOW_S3_ENDPOINT_URL"] == f"https://{ACCOUNT}.r2.cloudflarestorage.com"
    assert env["AWS_DEFAULT_REGION"] == "auto"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert env["AWS_RESPONSE_CHECKSUM_VALIDATION"] == "when_required"
    assert secret_data(r2, "mlops-mlflow", "mlflow-s3-credentials") == {
        "AWS_ACCESS_KEY_ID": "r2-token-id", "AWS_SECRET_ACCESS_KEY": "r2-secret-sha256",
    }


def test_cloudflare_provider_is_explicit_with_the_secret_token(r2):
    provider = r2.find(type="pulumi:providers:cloudflare")
    assert is_secret(provider.inputs["apiToken"]) and unwrap_secrets(provider.inputs["apiToken"]) == "cf-api-token"
    for bucket in r2.find_all(type="cloudflare:index/r2Bucket:R2Bucket"):
        assert bucket.provider.startswith(provider.urn + "::")


def test_r2_without_its_secrets_stops_with_the_commands_to_run():
    with pytest.raises(ConfigError) as caught:
        render_stack("prod", overrides={"mlops-platform:objectStore": R2_STORE}, mock_secrets=False)
    message = str(caught.value)
    for key in R2_SECRETS:
        assert f"pulumi config set --secret {key} <value>" in message


# --- One table per engine: what a bucket is called, and who prunes old backup copies -------------------------------

BUCKET_REFERENCE = re.compile(r"(?:s3://|store:|arn:aws:s3:::)([a-z0-9][a-z0-9.-]+)")
WRITTEN_PREFIX = re.compile(r'(?:copy|sync|backup-dir) [^\n]*?"store:\$BACKUP_BUCKET/([a-z-]+)')
PRUNED_PREFIX = re.compile(r'rclone delete --min-age (\d+)d "store:\$BACKUP_BUCKET/([a-z-]+)"')
ENGINES = {
    # engine: (how to render it, physical name of a logical bucket, who expires old copies)
    "minio": ("dev", lambda bucket: bucket, "a prune step in the job that writes the prefix"),
    "s3": ("prod", lambda bucket: f"{PREFIX}-{bucket}", "the backups bucket's lifecycle rule for the prefix"),
    "r2": ("r2", lambda bucket: f"{PREFIX}-{bucket}", "the backups bucket's R2 lifecycle rule for the prefix"),
}


@pytest.fixture(scope="module")
def engines(renderings, r2):
    return {engine: {"dev": renderings["dev"], "prod": renderings["prod"], "r2": r2}[stack] for engine, (stack, _, _) in ENGINES.items()}


def rendered_text(rendering) -> str:
    return "\n".join(json.dumps(unwrap_secrets(r.inputs), default=str) for r in rendering.resources).replace("\\n", "\n").replace('\\"', '"')


def env_values(value, name: str):
    if isinstance(value, dict):
        if value.get("name") == name and "value" in value:
            yield value["value"]
        for item in value.values():
            yield from env_values(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from env_values(item, name)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_consumer_names_the_physical_bucket(engines, engine):
    rendering, physical = engines[engine], ENGINES[engine][1]
    text = rendered_text(rendering)
    named = set(BUCKET_REFERENCE.findall(text))
    named |= {v for r in rendering.resources for v in env_values(unwrap_secrets(r.inputs), "BACKUP_BUCKET")}
    for release in rendering.find_all(type="kubernetes:helm.sh/v3:Release"):
        named |= set(unwrap_secrets(release.inputs).get("values", {}).get("loki", {}).get("storage", {}).get("bucketNames", {}).values())
    physical_names = {physical(bucket) for bucket in SEED}
    assert named - physical_names == set(), f"{engine}: logical or unknown bucket names handed to a consumer"
    # The consumers are all there: backups (jobs, WAL archive), MLflow's artifacts, and each mirrored bucket.
    assert {physical("backups"), physical("mlflow-artifacts")} <= named


@pytest.mark.parametrize("engine", ENGINES)
def test_every_backup_prefix_has_its_pruning_or_lifecycle(engines, engine):
    rendering = engines[engine]
    scripts = rendered_text(rendering)
    written = set(WRITTEN_PREFIX.findall(scripts)) - {"mirror"}  # the live mirror is a copy, not a history
    assert written, engine
    if engine == "minio":
        retention = {prefix: int(days) for days, prefix in PRUNED_PREFIX.findall(scripts)}
        assert retention == dict.fromkeys(written, parse_stack_config("dev", dev_settings()).backups.retention_days)
        return
    assert not PRUNED_PREFIX.findall(scripts), f"{engine}: the lifecycle prunes; a job must not"
    rules = [r for r in rendering.resources if r.name.endswith("backups-lifecycle")]
    (rule_set,) = rules
    expiring = {}
    for rule in rule_set.inputs["rules"]:
        prefix = (rule.get("filter") or rule.get("conditions") or {}).get("prefix", "")
        if "expiration" in rule:
            expiring[prefix] = rule["expiration"]["days"] * 86400
        elif "deleteObjectsTransition" in rule:
            expiring[prefix] = rule["deleteObjectsTransition"]["condition"]["maxAge"]
    days = 30 if engine == "s3" else 14
    assert {f"{p}/" for p in written} <= set(expiring), f"{engine}: prefixes written but never expired"
    assert set(expiring.values()) == {days * 86400}, engine


def dev_settings() -> dict:
    import yaml

    from tools.render import ROOT

    settings = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in settings.items() if key.startswith("mlops-platform:")}
