"""The s3 engine: AWS S3 buckets that are private, versioned, encrypted and refuse plain HTTP, and one IAM user per
consumer (the aws provider comes from the component's providers)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components import kube
from components.config import EXPIRING_BACKUP_PREFIXES, RetentionConfig
from components.object_store import ObjectStoreArgs, S3Settings
from components.object_store.credentials import bucket_policy, consumer_secret


class S3Engine:
    """AWS S3: private, versioned, encrypted buckets that refuse plain HTTP; one IAM user per consumer."""

    def __init__(self, name: str, args: ObjectStoreArgs, settings: S3Settings, child: pulumi.ResourceOptions) -> None:
        self.endpoint = pulumi.Output.from_input(f"https://s3.{args.region}.amazonaws.com")
        physical = {bucket: f"{settings.bucket_prefix}-{bucket}" for bucket in args.buckets}
        self.bucket_names = {
            bucket: self._bucket(f"{name}-{bucket}", bucket_name, bucket == "backups", settings, args.protect, child)
            for bucket, bucket_name in physical.items()
        }
        self.credentials_secrets: dict[str, pulumi.Output[str]] = {}
        for consumer in args.consumers:
            user = aws.iam.User(
                f"{name}-{consumer.name}-user",
                name=f"{settings.bucket_prefix}-{consumer.name}",
                tags={"app.kubernetes.io/part-of": kube.PART_OF},
                opts=child,
            )
            aws.iam.UserPolicy(
                f"{name}-{consumer.name}-policy",
                user=user.name,
                policy=bucket_policy(tuple(physical[b] for b in consumer.buckets), settings.kms_key_arn),
                opts=child,
            )
            key = aws.iam.AccessKey(f"{name}-{consumer.name}-access-key", user=user.name, opts=child)
            secret = consumer_secret(name, args, consumer, key.id, key.secret, child)
            self.credentials_secrets[consumer.name] = secret.name

    @staticmethod
    def _bucket(
        name: str, bucket_name: str, is_backups: bool, settings: S3Settings, protect: bool, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=bucket_name,
            force_destroy=False,
            tags={"app.kubernetes.io/part-of": kube.PART_OF},
            opts=kube.stateful(child, protect),
        )
        # Ownership enforced: ACLs are off, the bucket owner owns every object.
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Versioning is the undo button for overwrites and deletes; old versions expire by lifecycle.
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        encryption = (
            {"sse_algorithm": "aws:kms", "kms_master_key_id": settings.kms_key_arn}
            if settings.kms_key_arn
            else {"sse_algorithm": "AES256"}
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": encryption, "bucket_key_enabled": bool(settings.kms_key_arn)}],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(deny_insecure_transport),
            # A policy put while the public access block is being applied can be refused; order them.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[public_access])),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=s3_lifecycle_rules(settings.retention, is_backups), opts=child
        )
        return bucket.bucket


def deny_insecure_transport(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )


def s3_lifecycle_rules(retention: RetentionConfig, is_backups: bool) -> list[dict]:
    rules = [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": retention.abort_multipart_days},
        },
        {
            "id": "expire-old-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": retention.noncurrent_version_days},
        },
    ]
    if is_backups:
        rules += [
            {
                "id": f"expire-{prefix.rstrip('/')}",
                "status": "Enabled",
                "filter": {"prefix": prefix},
                "expiration": {"days": retention.backups_days},
            }
            for prefix in EXPIRING_BACKUP_PREFIXES
        ]
    return rules
