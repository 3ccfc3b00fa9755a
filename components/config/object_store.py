"""`mlops-platform:objectStore`: where buckets live (MinIO in the cluster, AWS S3 or Cloudflare R2)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from components.config.base import Block, engine_default
from components.config.formats import (
    AWS_REGION,
    BucketName,
    DnsLabel,
    Quantity,
    Text,
    matching,
    one_of,
    unique_list,
    whole,
)
from components.config.problems import Problem, reject
from components.config.resources import ResourceSpec

OBJECT_STORE_ENGINES = ("minio", "s3", "r2")
SEED_BUCKETS = (
    "training-datasets",
    "training-checkpoints",
    "training-results",
    "model-weights",
    "config-schemas",
    "mlflow-artifacts",
    "backups",
)
Days = whole(1, 3650)
Engine = one_of(*OBJECT_STORE_ENGINES)
BucketNames = unique_list(BucketName, "bucket names")
KmsKeyArn = matching(
    r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+$",
    "expected a KMS key or alias ARN (arn:aws:kms:<region>:<account>:key/...)",
)
RoleArn = matching(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", "expected an IAM role ARN (arn:aws:iam::<account>:role/...)")
AccountId = matching(r"^[0-9a-f]{32}$", "expected a Cloudflare account id (32 hexadecimal characters)")


class RetentionConfig(Block):
    """Lifecycle rules of the cloud engines (s3, r2)."""

    backups_days: Days = Field(7, description="Objects in the `backups` bucket expire after this many days.")
    noncurrent_version_days: Days = Field(
        30,
        description="s3: overwritten or deleted object versions are kept this many days (undo window for mistakes).",
    )
    abort_multipart_days: Days = Field(7, description="Incomplete multipart uploads are aborted after this many days.")


def _engine_is(*engines: str) -> dict[str, Any]:
    return {"properties": {"engine": {"enum": list(engines)}}, "required": ["engine"]}


class ObjectStoreConfig(Block):
    """Where buckets live and how they are reached."""

    # The engine rules below, for editors.
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"if": _engine_is("s3", "r2"), "then": {"required": ["bucketPrefix"]}},
        {"if": _engine_is("r2"), "then": {
            "required": ["accountId"], "properties": {"region": {"const": "auto"}, "kmsKeyArn": False},
        }},
    ]})

    engine: Engine = Field(
        "minio",
        description="minio: an in-cluster MinIO StatefulSet (dev); s3: AWS S3 buckets; r2: Cloudflare R2 buckets.",
    )
    bucket_prefix: DnsLabel = Field(
        "",
        description="s3/r2: prefix making bucket names unique (`<prefix>-<bucket>`); required for those engines.",
    )
    kms_key_arn: KmsKeyArn = Field(
        "",
        description="s3: encrypt with this KMS key (SSE-KMS) instead of S3-managed keys (SSE-S3).",
    )
    aws_profile: Text = Field(
        "",
        description="s3: AWS shared-config profile of the aws provider (empty: the standard credential chain).",
    )
    aws_role_arn: RoleArn = Field("", description="s3: role the aws provider assumes (empty: none).")
    account_id: AccountId = Field("", description="r2: Cloudflare account id; required for that engine.")
    retention: RetentionConfig = Field(RetentionConfig(), description="s3/r2 lifecycle rules.")
    buckets: BucketNames = Field(
        SEED_BUCKETS,
        description="Bucket names; `mlflow.artifactBucket` and `backups` must be among them.",
    )
    region: Text = Field(
        "us-east-1",
        description="Region reported to S3 clients and used by the aws provider (r2: auto, its only region).",
    )
    size: Quantity = Field("20Gi", description="Claim size of the in-cluster engine.")
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "100m", "memory": "256Mi"}, {"cpu": "1", "memory": "1Gi"}),
        description="Requests and limits of the in-cluster engine.",
    )

    @model_validator(mode="before")
    @classmethod
    def _r2_region_is_auto(cls, data: Any) -> Any:
        return engine_default(data, "r2", "region", "auto")

    @model_validator(mode="after")
    def _engine_rules(self) -> ObjectStoreConfig:
        reject(self._bucket_problems() + self._s3_problems() + self._r2_problems())
        return self

    def _bucket_problems(self) -> list[Problem]:
        problems = []
        if "backups" not in self.buckets:
            problems.append(Problem("buckets", list(self.buckets), "must include the 'backups' bucket"))
        if self.engine == "minio":
            return problems
        if not self.bucket_prefix:
            problems.append(Problem(
                "bucketPrefix", None, f"required with engine {self.engine}: bucket names must be unique (e.g. acme-mlops-prod)"
            ))
        # S3 and R2 cap a bucket name at 63 characters, prefix included.
        too_long = [b for b in self.buckets if self.bucket_prefix and len(f"{self.bucket_prefix}-{b}") > 63]
        if too_long:
            problems.append(Problem(
                "bucketPrefix", self.bucket_prefix, f"makes bucket names longer than 63 characters: {', '.join(too_long)}"
            ))
        return problems

    def _s3_problems(self) -> list[Problem]:
        if self.engine == "s3" and not re.fullmatch(AWS_REGION, self.region):
            return [Problem("region", self.region, "expected an AWS region such as us-east-1 with engine s3")]
        return []

    def _r2_problems(self) -> list[Problem]:
        if self.engine != "r2":
            return []
        problems = []
        if self.region != "auto":
            problems.append(Problem("region", self.region, "R2 has one region: auto"))
        if not self.account_id:
            problems.append(Problem("accountId", None, "required with engine r2: the Cloudflare account id"))
        if self.kms_key_arn:
            problems.append(Problem("kmsKeyArn", self.kms_key_arn, "R2 does not support SSE-KMS; remove it"))
        return problems
