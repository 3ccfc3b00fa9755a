"""What every engine gives a bucket consumer: an S3 key pair under the same Secret keys, and a policy allowing exactly
its buckets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pulumi

from components import kube
from components.secret_store import StoredSecret

if TYPE_CHECKING:
    from components.object_store import BucketConsumer, ObjectStoreArgs

CONSUMER_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
CONSUMER_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"


def bucket_policy(buckets: tuple[str, ...], kms_key_arn: str = "") -> str:
    """An S3 policy document allowing object read/write in exactly these buckets (and use of their KMS key)."""
    kms = [{"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [kms_key_arn]}] if kms_key_arn else []
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                *kms,
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                    "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts",
                    ],
                    "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
                },
            ],
        },
        sort_keys=True,
    )


def consumer_secret(
    name: str,
    args: ObjectStoreArgs,
    consumer: BucketConsumer,
    access_key: pulumi.Input[str],
    secret_key: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> StoredSecret:
    """A consumer's S3 credentials, in its own namespace, under the keys every engine uses."""
    return args.secrets.secret(
        f"{name}-{consumer.name}-credentials",
        name=f"{consumer.name}-s3-credentials",
        namespace=consumer.namespace,
        labels=kube.labels(consumer.name, "s3-credentials"),
        data={CONSUMER_ACCESS_KEY: access_key, CONSUMER_SECRET_KEY: secret_key},
        opts=opts,
    )
