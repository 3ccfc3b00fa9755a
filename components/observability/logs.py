"""Logs: Loki (grafana-community chart), monolithic, on its own claim or with its chunks in a bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.object_store import CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY
from components.versions import CHARTS

if TYPE_CHECKING:
    from components.observability import ObservabilityStackArgs

LOKI_PORT = 3100
LOKI_SCHEMA_START = "2026-11-01"
"""First day of Loki's TSDB v13 schema period; a later schema change adds a period, it never edits this one."""


def release(name: str, args: ObservabilityStackArgs, child: pulumi.ResourceOptions, after: pulumi.Resource) -> k8s.helm.v3.Release:
    """The Loki release, and its NodePort Service when it has one."""
    loki = kube.helm_release(
        f"{name}-logs",
        CHARTS["loki"],
        release_name="loki",
        namespace=args.namespace,
        values=loki_values(args),
        timeout=600,
        # After the metrics release: Loki's ServiceMonitor needs the Prometheus CRDs.
        opts=pulumi.ResourceOptions.merge(kube.stateful(child, args.protect), pulumi.ResourceOptions(depends_on=[after])),
    )
    if args.node_ports.get("loki"):
        _node_port(name, args.namespace, args.node_ports["loki"], pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[loki])))
    return loki


def _loki_storage(args: ObservabilityStackArgs) -> tuple[dict, str, list[dict]]:
    """Loki's `storage` values, the object store name its schema and compactor use, and the env it needs."""
    objects = args.loki_objects
    if objects is None:
        return {"type": "filesystem"}, "filesystem", []
    endpoint = pulumi.Output.from_input(objects.endpoint).apply(lambda url: url.split("://", 1)[-1])
    storage = {
        "type": "s3",
        "bucketNames": {"chunks": objects.bucket, "ruler": objects.bucket, "admin": objects.bucket},
        # No keys here: the AWS SDK reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the Secret-backed env.
        "s3": {"endpoint": endpoint, "region": objects.region, "s3ForcePathStyle": True, "insecure": False},
    }
    env = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": objects.credentials_secret, "key": variable}}}
        for variable in (CONSUMER_ACCESS_KEY, CONSUMER_SECRET_KEY)
    ]
    return storage, "s3", env


def loki_values(args: ObservabilityStackArgs) -> dict:
    config = args.config.loki
    storage, store, env = _loki_storage(args)
    return {
        "deploymentMode": "Monolithic",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "storage": storage,
            "schemaConfig": {
                "configs": [{
                    "from": LOKI_SCHEMA_START, "store": "tsdb", "object_store": store, "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }]
            },
            "limits_config": {"retention_period": f"{config.retention_days * 24}h"},
            # Retention is the compactor's job; without it chunks are kept forever.
            "compactor": {"retention_enabled": True, "delete_request_store": store, "working_directory": "/var/loki/compactor"},
        },
        "singleBinary": {
            "replicas": 1,
            "resources": config.resources.as_k8s(),
            "extraEnv": env,
            "persistence": {
                "enabled": True,
                "size": config.size,
                "storageClass": args.storage_class,
                # The claim outlives the StatefulSet: logs survive an uninstall and a scale-down.
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
        },
        **{target: {"replicas": 0} for target in ("read", "write", "backend")},
        # Monolithic and small: no memcached caches (8 GiB by default), canary, gateway, test pod or bundled MinIO.
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
        "gateway": {"enabled": False},
        "minio": {"enabled": False},
        "sidecar": {"rules": {"enabled": False}},
        "monitoring": {"serviceMonitor": {"enabled": True}},
    }


def _node_port(name: str, namespace: pulumi.Input[str], node_port: int, opts: pulumi.ResourceOptions) -> None:
    k8s.core.v1.Service(
        f"{name}-loki-node-port",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="loki-node-port", namespace=namespace, labels=kube.labels("loki", "logs")),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="NodePort",
            selector={"app.kubernetes.io/name": "loki", "app.kubernetes.io/instance": "loki", "app.kubernetes.io/component": "single-binary"},
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=LOKI_PORT, target_port=LOKI_PORT, protocol="TCP", node_port=node_port)],
        ),
        opts=opts,
    )
