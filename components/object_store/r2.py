"""The r2 engine: Cloudflare R2 buckets and their lifecycle (the cloudflare provider comes from the component's
providers)."""

from __future__ import annotations

import pulumi
import pulumi_cloudflare as cloudflare

from components import kube
from components.config import EXPIRING_BACKUP_PREFIXES, RetentionConfig
from components.object_store import ObjectStoreArgs, R2Settings
from components.object_store.credentials import consumer_secret


class R2Engine:
    """Cloudflare R2: buckets and lifecycle through the cloudflare provider, S3 API credentials from config.

    R2 has no versioning, bucket policies, public-access block, ACLs or SSE headers: none is emitted. Buckets are
    private unless a public domain is attached, and encrypted at rest by Cloudflare. R2 cannot scope the S3
    credentials per consumer here: scope the API token to these buckets when creating it.
    """

    def __init__(self, name: str, args: ObjectStoreArgs, settings: R2Settings, child: pulumi.ResourceOptions) -> None:
        self.endpoint = pulumi.Output.from_input(f"https://{settings.account_id}.r2.cloudflarestorage.com")
        self.bucket_names = {}
        for bucket in args.buckets:
            r2_bucket = cloudflare.R2Bucket(
                f"{name}-{bucket}-bucket",
                account_id=settings.account_id,
                name=f"{settings.bucket_prefix}-{bucket}",
                opts=kube.stateful(child, args.protect),
            )
            cloudflare.R2BucketLifecycle(
                f"{name}-{bucket}-lifecycle",
                account_id=settings.account_id,
                bucket_name=r2_bucket.name,
                rules=r2_lifecycle_rules(settings.retention, bucket == "backups"),
                opts=child,
            )
            self.bucket_names[bucket] = r2_bucket.name
        self.credentials_secrets = {
            consumer.name: consumer_secret(name, args, consumer, settings.access_key_id, settings.secret_access_key, child).name
            for consumer in args.consumers
        }


def r2_lifecycle_rules(retention: RetentionConfig, is_backups: bool) -> list[dict]:
    day = 86400
    rules = [
        {
            "id": "abort-incomplete-uploads",
            "enabled": True,
            "conditions": {"prefix": ""},
            "abort_multipart_uploads_transition": {"condition": {"type": "Age", "max_age": retention.abort_multipart_days * day}},
        }
    ]
    if is_backups:
        rules += [
            {
                "id": f"expire-{prefix.rstrip('/')}",
                "enabled": True,
                "conditions": {"prefix": prefix},
                "delete_objects_transition": {"condition": {"type": "Age", "max_age": retention.backups_days * day}},
            }
            for prefix in EXPIRING_BACKUP_PREFIXES
        ]
    return rules
