"""What `pulumi up` applies, offline: the program's own objects and every Helm release rendered by Helm's own engine
(helm-python-sdk) with exactly the chart, version, values, release name and namespace the program passes.

Per release, in both stacks: it renders; its objects validate (built-in kinds with kubernetes-validate --strict for
1.33, custom resources against their CRDs, the charts' own CRDs included); its pods are admitted by the Pod
Security level their namespace enforces; every container has requests and a memory limit; every image is pinned and
none is Bitnami. Across the stack: no two objects share kind, namespace and name. Charts come from the cache
(`python -m tools.charts pull`); a chart missing there skips its release, naming the chart and that command.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.conftest import STACKS, rendered, stack_charts, stack_crd_schemas
from tests.test_schemas import builtin_problems, is_builtin
from tools.charts import (
    CHART_TYPE,
    HelmRelease,
    RenderedRelease,
    helm_releases,
)
from tools.pod_security import check_pod, namespace_levels, pod_templates
from tools.reference import custom_resource_problems

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk (the test requirements) renders the charts")

# `registry/repo:tag` or `@sha256:` digest; a tag must not float.
FLOATING_TAGS = re.compile(r":(latest|stable|main|master|edge|nightly)$")


def pytest_generate_tests(metafunc):
    if "release_key" in metafunc.fixturenames:
        keys = sorted((stack, release.name) for stack in STACKS for release in helm_releases(rendered(stack)))
        metafunc.parametrize("release_key", keys, ids=[f"{stack}-{name}" for stack, name in keys])


@pytest.fixture
def result(release_key) -> RenderedRelease:
    """The rendered release; skips (naming the chart and the pull command) when its chart is not cached."""
    stack, name = release_key
    charts = stack_charts(stack)
    if name in charts.missing:
        if os.environ.get("MLOPS_REQUIRE_CHARTS") == "1":
            pytest.fail(str(charts.missing[name]), pytrace=False)
        pytest.skip(str(charts.missing[name]))
    if name in charts.failed:
        pytest.fail(f"{stack}: Helm refused release {name}: {charts.failed[name]}", pytrace=False)
    return charts.rendered[name]


def enforced_levels(stack: str) -> dict[str, str]:
    """Pod Security `enforce` level by namespace name, from the Namespaces the program creates."""
    namespaces = [r.manifest() for r in rendered(stack).find_all(kind="Namespace")]
    return {ns["metadata"]["name"]: namespace_levels(ns)["level"] for ns in namespaces}


def describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta.get('name')}"


def containers_of(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    """(`Kind/namespace/name container c`, container) for every container of every pod template, init and
    ephemeral ones included."""
    for obj in objects:
        for _, spec in pod_templates(obj):
            for container in [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]:
                yield f"{describe(obj)} container {container['name']}", container


def test_every_release_renders(result):
    assert result.objects, f"{result.release.label} rendered nothing"


def test_every_builtin_object_validates_strictly(result):
    problems = {describe(obj): p for obj in result.objects if is_builtin(obj) and (p := builtin_problems(obj))}
    assert problems == {}


def test_every_custom_resource_validates_against_its_crd(result, release_key):
    schemas = stack_crd_schemas(release_key[0])
    custom = [obj for obj in result.objects if not is_builtin(obj)]
    problems = {describe(obj): custom_resource_problems(obj, schemas) for obj in custom}
    assert {name: p if p is not None else "no CRD describes this kind" for name, p in problems.items() if p != []} == {}


def test_every_pod_is_admitted_by_its_namespace(result, release_key):
    levels = enforced_levels(release_key[0])
    rejected = {}
    for obj in result.objects:
        level = levels.get(obj["metadata"].get("namespace"), "restricted")
        for meta, spec in pod_templates(obj):
            if violations := check_pod(spec, meta, level):
                rejected[f"{describe(obj)} at {level}"] = [f"{v.control}: {v.message}" for v in violations]
    assert rejected == {}


def test_every_container_has_requests_and_a_memory_limit(result):
    missing = {}
    for label, container in containers_of(result.objects):
        resources = container.get("resources") or {}
        lacks = [f"requests.{r}" for r in ("cpu", "memory") if r not in (resources.get("requests") or {})]
        lacks += ["limits.memory"] if "memory" not in (resources.get("limits") or {}) else []
        if lacks:
            missing[label] = lacks
    assert missing == {}


def test_every_image_is_pinned_and_none_is_bitnami(result):
    bad = {}
    for label, container in containers_of(result.objects):
        image = container.get("image", "")
        last = image.rsplit("/", 1)[-1]
        if "bitnami" in image or FLOATING_TAGS.search(image) or (":" not in last and "@" not in last):
            bad[label] = image
    assert bad == {}


def test_no_release_needs_a_hook_that_is_never_deployed(result):
    """helm.v4.Chart never deploys hooks: a chart whose hooks matter must be a helm.v3.Release (which runs them),
    or have them turned off in values. Nothing may be silently dropped."""
    release: HelmRelease = result.release
    dropped = result.dropped_hooks if release.type == CHART_TYPE else []
    assert dropped == [], f"{release.label} is a helm.v4.Chart, which never applies these hooks"


@pytest.mark.parametrize("stack", STACKS)
def test_no_two_objects_share_kind_namespace_and_name(stack):
    program = [r.manifest() for r in rendered(stack).kubernetes_objects()]
    charts = [obj for _, obj in stack_charts(stack).objects()]
    counts = Counter(describe(obj) for obj in [*program, *charts])
    assert {name: n for name, n in counts.items() if n > 1} == {}


@pytest.mark.parametrize("stack", STACKS)
def test_every_program_pod_is_admitted_by_its_namespace(stack):
    levels = enforced_levels(stack)
    rejected = {}
    for resource in rendered(stack).kubernetes_objects():
        manifest = resource.manifest(redact=False)
        level = levels.get(manifest["metadata"].get("namespace"), "restricted")
        for meta, spec in pod_templates(manifest):
            if violations := check_pod(spec, meta, level):
                rejected[f"{describe(manifest)} at {level}"] = [v.control for v in violations]
    assert rejected == {}


@pytest.mark.parametrize("stack", STACKS)
def test_every_namespace_enforces_restricted_but_node_metrics(stack):
    levels = {name.removeprefix("mlops-"): level for name, level in enforced_levels(stack).items()}
    assert {name: level for name, level in levels.items() if level != "restricted"} == {"node-metrics": "privileged"}


@pytest.mark.parametrize("stack", STACKS)
def test_what_is_not_cached_is_said(stack):
    """The layer never goes quiet: every release either rendered, failed loudly, or is missing with the command."""
    charts = stack_charts(stack)
    releases = {r.name for r in helm_releases(rendered(stack))}
    assert set(charts.rendered) | set(charts.missing) | set(charts.failed) == releases
    for missing in charts.missing.values():
        assert "python -m tools.charts pull" in str(missing)


@pytest.mark.parametrize("stack", STACKS)
def test_the_log_shipper_may_only_read_pods_their_logs_and_namespaces(stack):
    charts = stack_charts(stack)
    if "alloy" not in charts.rendered:
        pytest.skip(str(charts.missing.get("alloy") or charts.failed.get("alloy")))
    roles = [o for o in charts.rendered["alloy"].objects if o["kind"] in ("ClusterRole", "Role")]
    assert [o["kind"] for o in roles] == ["ClusterRole"]
    grants = {(group, resource, verb) for rule in roles[0]["rules"] for group in rule["apiGroups"]
              for resource in rule["resources"] for verb in rule["verbs"]}
    assert grants == {("", r, v) for r in ("pods", "pods/log", "namespaces") for v in ("get", "list", "watch")}


def test_the_objects_of_vaults_tls_validate_against_the_charts_crds():
    """Vault's CA chain (components/vault_server.py), and the two consumers whose TLS settings are custom resources
    (External Secrets' store with its caProvider, Prometheus' PodMonitor with its tlsConfig), against the CRDs the
    cert-manager, external-secrets and kube-prometheus-stack releases render."""
    charts = stack_charts("prod")
    for release in ("cert-manager-chart", "secrets-operator", "observability-metrics"):
        if release in charts.missing:
            pytest.skip(str(charts.missing[release]))
    program = rendered("prod")
    objects = [r.manifest(redact=False) for r in program.kubernetes_objects() if r.type.startswith("kubernetes:cert-manager.io/")]
    vaults = [obj for obj in objects if obj["metadata"].get("namespace") == "mlops-vault"]
    assert sorted(obj["kind"] for obj in vaults) == ["Certificate", "Certificate", "Issuer", "Issuer"]
    objects += [program.find(kind="ClusterSecretStore").manifest(redact=False), program.find(kind="PodMonitor", name="monitoring-vault-monitor").manifest()]
    schemas = stack_crd_schemas("prod")
    problems = {describe(obj): custom_resource_problems(obj, schemas) for obj in objects}
    assert {name: p if p is not None else "no CRD describes this kind" for name, p in problems.items() if p != []} == {}



def operator_pod(cluster: dict) -> dict:
    """The instance pod CloudNativePG makes for a Cluster (no chart renders it): its labels and named ports, as the
    operator's docs give them (`cnpg.io/cluster`; postgresql 5432, status 8000, metrics 9187)."""
    ports = [{"name": "postgresql", "containerPort": 5432}, {"name": "status", "containerPort": 8000}, {"name": "metrics", "containerPort": 9187}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": cluster["metadata"]["namespace"], "labels": {"cnpg.io/cluster": cluster["metadata"]["name"], "cnpg.io/podRole": "instance"}},
        "spec": {"containers": [{"name": "postgres", "ports": ports}]},
    }


@pytest.mark.parametrize("stack", STACKS)
def test_every_monitor_selects_pods_that_serve_its_port(stack):
    """A PodMonitor or ServiceMonitor that selects nothing, or names a port its targets lack, scrapes nothing, and
    an alert on those metrics (a certificate near expiry, a sealed Vault) never fires. Each monitor the program
    declares is checked against the pods and Services of the program and of every chart, in its namespace."""
    charts = stack_charts(stack)
    if charts.missing:
        pytest.skip(f"charts not cached: {', '.join(sorted(charts.missing))}")
    program = [r.manifest() for r in rendered(stack).kubernetes_objects()]
    objects = program + [obj for _, obj in charts.objects()]
    monitors = [m for m in program if m["kind"] in ("PodMonitor", "ServiceMonitor")]
    assert monitors

    def matches(labels: dict, selector: dict) -> bool:
        return selector.items() <= (labels or {}).items()

    for monitor in monitors:
        namespace, selector = monitor["metadata"]["namespace"], monitor["spec"]["selector"]["matchLabels"]
        local = [obj for obj in objects if obj["metadata"].get("namespace") == namespace]
        local += [operator_pod(obj) for obj in local if obj["kind"] == "Cluster"]
        if monitor["kind"] == "PodMonitor":
            endpoints = monitor["spec"]["podMetricsEndpoints"]
            ports = {
                port["name"]
                for obj in local for meta, spec in pod_templates(obj) if matches(meta.get("labels"), selector)
                for container in spec.get("containers", []) for port in container.get("ports", []) if "name" in port
            }
        else:
            endpoints = monitor["spec"]["endpoints"]
            ports = {
                port.get("name")
                for obj in local if obj["kind"] == "Service" and matches(obj["metadata"].get("labels"), selector)
                for port in obj["spec"]["ports"]
            }
        name = f"{monitor['kind']}/{namespace}/{monitor['metadata']['name']}"
        assert ports, f"{name} selects no pod or Service"
        assert {endpoint["port"] for endpoint in endpoints} <= ports, f"{name}: ports {sorted(ports)}"
