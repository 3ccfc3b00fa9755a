"""Kubernetes building blocks every component shares: labels, hardened pods, retained claims, options."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components.config import ResourceSpec
from components.versions import Chart

PART_OF = "mlops-platform"

POD_SECURITY_VERSION = "v1.33"
"""Pod Security Standards version the namespace labels pin, matching the Kubernetes version we validate against."""
SYNCED_LABEL = "mlops.platform/synced-from-vault"
"""Label the External Secrets Operator puts on Secrets it creates from Vault."""


def labels(app: str, component: str, instance: str | None = None) -> dict[str, str]:
    """Recommended app.kubernetes.io labels; `name` + `component` (+ `instance`) also serve as selectors."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        **({"app.kubernetes.io/instance": instance} if instance else {}),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(app: str, component: str, instance: str | None = None) -> dict[str, str]:
    """The immutable subset of `labels` used in Deployment/StatefulSet/Service selectors; `instance` tells apart
    several copies of one app (one per served model)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        **({"app.kubernetes.io/instance": instance} if instance else {}),
    }


def stateful(opts: pulumi.ResourceOptions, protect: bool) -> pulumi.ResourceOptions:
    """Options for a child that holds data: protected from `pulumi destroy` and left in place if removed from code."""
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect))


def pod_security(uid: int) -> k8s.core.v1.PodSecurityContextArgs:
    """Restricted-profile pod security: a fixed non-root uid that owns its volumes."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        # Only chown a volume when its root is not already ours: a large claim would otherwise be walked on every start.
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}
"""container_security() as a manifest, for security contexts written into chart values or files a program reads
(tests/test_platform_invariants.py keeps the two equal)."""


def container_security() -> k8s.core.v1.SecurityContextArgs:
    """Restricted-profile container security: read-only root, no privilege escalation, no capabilities."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def scratch_volume(name: str = "tmp", size: str = "256Mi") -> k8s.core.v1.VolumeArgs:
    """A size-limited emptyDir for the writes a read-only root filesystem no longer allows."""
    return k8s.core.v1.VolumeArgs(name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=size))


def secret_env(variable: str, secret_name: pulumi.Input[str], key: str) -> k8s.core.v1.EnvVarArgs:
    """An environment variable whose value only ever lives in a Secret."""
    return k8s.core.v1.EnvVarArgs(
        name=variable,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=key)
        ),
    )


def plain_env(values: Mapping[str, pulumi.Input[str]]) -> list[k8s.core.v1.EnvVarArgs]:
    """Non-secret environment variables, in a stable order so previews stay quiet."""
    return [k8s.core.v1.EnvVarArgs(name=name, value=values[name]) for name in sorted(values)]


def http_probe(path: str, port: str, period: int = 10, failures: int = 3) -> k8s.core.v1.ProbeArgs:
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=port),
        period_seconds=period,
        timeout_seconds=5,
        failure_threshold=failures,
    )


def resources(spec: ResourceSpec) -> k8s.core.v1.ResourceRequirementsArgs:
    return k8s.core.v1.ResourceRequirementsArgs(requests=dict(spec.requests), limits=dict(spec.limits))


def retained_claim(
    name: str,
    *,
    claim_name: str,
    namespace: pulumi.Input[str],
    size: str,
    storage_class: pulumi.Input[str],
    app: str,
    protect: bool,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    """A ReadWriteOnce claim on the stack's Retain class.

    Declared as its own resource rather than a volumeClaimTemplate so Pulumi can protect it and show its size in
    previews; with `protect` it also survives `pulumi destroy` and removal from code.
    """
    return k8s.core.v1.PersistentVolumeClaim(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=claim_name, namespace=namespace, labels=labels(app, "storage")),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": size}),
        ),
        opts=stateful(opts, protect),
    )


def claim_volume(claim: k8s.core.v1.PersistentVolumeClaim, name: str = "data") -> k8s.core.v1.VolumeArgs:
    """A pod volume backed by `claim`."""
    return k8s.core.v1.VolumeArgs(
        name=name,
        persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim.metadata.name),
    )


def secret_file_volume(name: str, secret_name: pulumi.Input[str], key: str) -> k8s.core.v1.VolumeArgs:
    """One key of a Secret as a file of the same name, readable by the pod's group only (fsGroup)."""
    return k8s.core.v1.VolumeArgs(
        name=name,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=secret_name, items=[k8s.core.v1.KeyToPathArgs(key=key, path=key)], default_mode=0o440
        ),
    )


def single_writer_deployment(
    name: str,
    *,
    deployment_name: str,
    namespace: pulumi.Input[str],
    app: str,
    pod_spec: k8s.core.v1.PodSpecArgs,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.Deployment:
    """One replica of a server that owns a file on a ReadWriteOnce claim (SQLite and the like).

    Recreate, never RollingUpdate: the old pod must release the claim and the file before a new one opens them,
    or two writers would share one database file.
    """
    return k8s.apps.v1.Deployment(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=deployment_name, namespace=namespace, labels=labels(app, "server"), annotations=scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels(app, "server")),
                spec=pod_spec,
            ),
        ),
        opts=opts,
    )


def single_writer_statefulset(
    name: str,
    *,
    statefulset_name: str,
    namespace: pulumi.Input[str],
    app: str,
    service_name: pulumi.Input[str],
    pod_spec: k8s.core.v1.PodSpecArgs,
    opts: pulumi.ResourceOptions,
) -> k8s.apps.v1.StatefulSet:
    """One replica of a server that owns the data on a ReadWriteOnce claim, with a stable identity behind its
    Service `service_name`. A StatefulSet replaces its pod only once the old one is gone, so there is one writer."""
    return k8s.apps.v1.StatefulSet(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=statefulset_name, namespace=namespace, labels=labels(app, "server"), annotations=scanner_skips(pod_spec)
        ),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            replicas=1,
            service_name=service_name,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(app, "server")),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels(app, "server")),
                spec=pod_spec,
            ),
        ),
        opts=opts,
    )


def one_shot_job(
    name: str,
    *,
    namespace: pulumi.Input[str],
    job_labels: Mapping[str, str],
    pod_spec: k8s.core.v1.PodSpecArgs,
    backoff_limit: int,
    deadline_seconds: int,
    opts: pulumi.ResourceOptions,
    job_name: str | None = None,
    pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
    failure_policy: k8s.batch.v1.PodFailurePolicyArgs | None = None,
) -> k8s.batch.v1.Job:
    """A Job that runs its pod to completion once; Pulumi waits for it.

    A Job's template is immutable, so any change to it replaces the Job. Without `job_name` the replacement gets a
    fresh generated name; with one (a name that hashes what the Job runs, say) the caller decides when it is new,
    and a changed template under the same name needs `delete_before_replace`. `pod_annotations` carry hashes of
    secret inputs, so rotating one re-runs the Job. `deadline_seconds` bounds every attempt together.
    """
    return k8s.batch.v1.Job(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=job_name, namespace=namespace, labels=dict(job_labels), annotations=scanner_skips(pod_spec)
        ),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=backoff_limit,
            active_deadline_seconds=deadline_seconds,
            pod_failure_policy=failure_policy,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels=dict(job_labels), annotations=dict(pod_annotations) if pod_annotations else None
                ),
                spec=pod_spec,
            ),
        ),
        opts=opts,
    )


def service_ports(ports: Mapping[str, int], node_ports: Mapping[str, int | None]) -> list[k8s.core.v1.ServicePortArgs]:
    """Named TCP ports; a port listed in `node_ports` is also reachable from the host at that NodePort."""
    return [
        k8s.core.v1.ServicePortArgs(name=name, port=port, target_port=name, protocol="TCP", node_port=node_ports.get(name))
        for name, port in ports.items()
    ]


def service(
    name: str,
    *,
    service_name: str,
    namespace: pulumi.Input[str],
    app: str,
    component: str,
    ports: Mapping[str, int],
    node_ports: Mapping[str, int | None],
    opts: pulumi.ResourceOptions,
    instance: str | None = None,
) -> k8s.core.v1.Service:
    """A Service with a fixed DNS name; NodePort type when any of its ports has a host NodePort."""
    exposed = any(node_ports.get(port) for port in ports)
    return k8s.core.v1.Service(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=service_name, namespace=namespace, labels=labels(app, component, instance)),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="NodePort" if exposed else "ClusterIP",
            selector=selector(app, component, instance),
            ports=service_ports(ports, node_ports),
        ),
        opts=opts,
    )


def cluster_dns_names(service_name: str, namespace: str) -> list[str]:
    """Every name a pod can use to reach a Service, shortest first."""
    return [
        service_name,
        f"{service_name}.{namespace}",
        f"{service_name}.{namespace}.svc",
        f"{service_name}.{namespace}.svc.cluster.local",
    ]


def metrics_monitor(
    name: str,
    *,
    kind: str,
    monitor_name: str,
    namespace: pulumi.Input[str],
    app: str,
    match_labels: Mapping[str, str],
    endpoints: list[dict],
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """A ServiceMonitor (endpoints are Service port names) or PodMonitor (container port names) for Prometheus;
    `opts` must depend on the release that installs the Prometheus CRDs."""
    endpoints_key = {"ServiceMonitor": "endpoints", "PodMonitor": "podMetricsEndpoints"}[kind]
    return k8s.apiextensions.CustomResource(
        name,
        api_version="monitoring.coreos.com/v1",
        kind=kind,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=monitor_name, namespace=namespace, labels=labels(app, "metrics")),
        spec={"selector": {"matchLabels": dict(match_labels)}, endpoints_key: endpoints},
        opts=opts,
    )


def helm_release(
    name: str,
    chart: Chart,
    *,
    release_name: str,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict],
    opts: pulumi.ResourceOptions,
    timeout: int | None = None,
    atomic: bool | None = None,
) -> k8s.helm.v3.Release:
    """A pinned chart (components/versions.py) as a helm.v3.Release, that is `helm install`: its hooks run."""
    return k8s.helm.v3.Release(
        name,
        name=release_name,
        chart=chart.reference,
        version=chart.version,
        repository_opts=None if chart.oci else k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace,
        values=values,
        timeout=timeout,
        atomic=atomic,
        opts=opts,
    )


def helm_chart(
    name: str,
    chart: Chart,
    *,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict],
    opts: pulumi.ResourceOptions,
    release_name: str | None = None,
) -> k8s.helm.v4.Chart:
    """A pinned chart (components/versions.py) as a helm.v4.Chart, that is `helm template`: objects applied one by one
    (previews show each), hooks never. The release name, and the prefix of every object's resource name, is the
    resource name unless `release_name` is given (to keep a release, and its objects' URNs, across a rename)."""
    return k8s.helm.v4.Chart(
        name,
        name=release_name,
        resource_prefix=release_name,
        chart=chart.reference,
        version=chart.version,
        repository_opts=None if chart.oci else k8s.helm.v4.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace,
        values=values,
        opts=opts,
    )


SCANNER_SKIPS = {
    "CKV_K8S_43": "images are pinned to immutable release tags in components/versions.py; digests cannot be resolved here",
    "CKV_K8S_15": "pinned release tags: IfNotPresent lets pods restart on a node while the registry is unreachable",
}
"""checkov checks every workload we author skips, with the reason."""


def scanner_skips(
    pod_spec: k8s.core.v1.PodSpecArgs,
    token_use: str = "the job logs in to Vault with its ServiceAccount token (Kubernetes auth), its only use",
) -> dict[str, str]:
    """`checkov.io/skip<n>` annotations: the checks in SCANNER_SKIPS, plus the ones this pod cannot meet
    (`token_use`: why a pod that mounts its ServiceAccount token needs it)."""
    skips = dict(SCANNER_SKIPS)
    uid = pod_spec.security_context.run_as_user if pod_spec.security_context else None
    if isinstance(uid, int) and uid < 10000:
        skips["CKV_K8S_40"] = f"runs as the image's own non-root user {uid}, which owns the image's files"
    containers = [*(pod_spec.init_containers or []), *(pod_spec.containers or [])]
    if pod_spec.automount_service_account_token:
        skips["CKV_K8S_38"] = token_use
    if any(getattr(env.value_from, "secret_key_ref", None) for c in containers for env in (c.env or [])):
        skips["CKV_K8S_35"] = "the program reads these credentials from its environment; they come from a Secret"
    return {f"checkov.io/skip{n}": f"{check}={reason}" for n, (check, reason) in enumerate(sorted(skips.items()), start=1)}
