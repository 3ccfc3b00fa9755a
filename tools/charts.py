"""The Helm charts the platform installs: a local cache of every pinned chart, and Helm's own engine rendering each
release with exactly what the program hands Pulumi.

    python -m tools.charts pull                         # every pinned chart into the cache (needs internet)
    python -m tools.charts render --stack dev           # render every release of a stack; print objects by kind

The cache is `$MLOPS_CHART_CACHE` (default `~/.cache/mlops-platform/charts`), outside the clone like Helm's own:
`<cache>/<chart>/<version>/` is the chart as `helm pull --untar` unpacks it, dependencies under `charts/`.

Rendering follows the semantics of the Pulumi resource that installs the chart:
- `helm.v3.Release` is `helm install`: the chart's CRDs and every hook but test hooks are applied;
- `helm.v4.Chart` is `helm template --include-crds`: pulumi-kubernetes never deploys hook resources, so every hook
  is dropped, and the release name is the Pulumi resource name unless the program sets one.
Capabilities are those of the stack's cluster (Kubernetes 1.33, the Kind node): the 1.33 built-in API versions plus
every CRD the stack itself installs, i.e. the cluster as a second `pulumi up` finds it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.versions import CHARTS, Chart
from tools.render import Rendering, _integral, unwrap_secrets
from tools.semver import satisfies

KUBE_VERSION = "v1.33.0"
"""The cluster every stack is rendered for: the Kind node image (dev/kind-cluster.yaml), the prod floor."""
CACHE_ENV = "MLOPS_CHART_CACHE"
PULL_COMMAND = "python -m tools.charts pull"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
HOOK = "helm.sh/hook"
TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})

# Kinds Kubernetes 1.33 serves without a namespace; custom resources say so in their CRD's spec.scope.
CLUSTER_SCOPED_KINDS = frozenset({
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding", "ComponentStatus",
    "CSIDriver", "CSINode", "CustomResourceDefinition", "FlowSchema", "IngressClass", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "PriorityLevelConfiguration", "RuntimeClass", "StorageClass", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration", "VolumeAttachment", "VolumeAttributesClass",
    "DeviceClass", "IPAddress", "ServiceCIDR",
})


class ChartNotCached(LookupError):
    """The pinned chart is not in the cache; the message says which and how to get it."""

    def __init__(self, chart: Chart) -> None:
        super().__init__(
            f"chart {chart.name} {chart.version} is not in the chart cache {cache_dir()}: run `{PULL_COMMAND}` "
            f"(needs {chart.repository}), or point ${CACHE_ENV} at a cache that has it"
        )
        self.chart = chart


class RenderError(RuntimeError):
    """Helm refused the release: a template or schema error, an unmet kubeVersion, a missing dependency."""


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mlops-platform" / "charts")


def chart_path(chart: Chart) -> Path:
    return cache_dir() / chart.name / chart.version


def is_cached(chart: Chart) -> bool:
    return (chart_path(chart) / "Chart.yaml").is_file()


def pull(charts: Iterable[Chart] = CHARTS.values(), out=sys.stdout) -> list[Path]:
    """Download each pinned chart from its Helm repository (with the dependencies its package carries) into the
    cache; charts already there are kept. Atomic per chart: a failed download leaves nothing half-written."""
    import helm_python as helm

    pulled = []
    for chart in charts:
        target = chart_path(chart)
        if is_cached(chart):
            print(f"{chart.name} {chart.version}: cached in {target}", file=out)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            # An OCI chart is pulled by its full reference; a repository chart by name from the repository.
            repo_url = None if chart.oci else chart.repository
            helm.pull(chart.reference, repo_url=repo_url, version=chart.version, destination=scratch, untar=True, untar_dir=scratch)
            (Path(scratch) / chart.name).rename(target)
        print(f"{chart.name} {chart.version}: pulled into {target}", file=out)
        pulled.append(target)
    return pulled


@dataclass(frozen=True)
class HelmRelease:
    """One Helm release as the program registers it: which chart, and exactly the values and names it passes."""

    resource: str
    """The Pulumi resource name."""
    type: str
    """RELEASE_TYPE (`helm install`, hooks run) or CHART_TYPE (`helm template`, hooks never deployed)."""
    chart: Chart
    name: str
    """The Helm release name."""
    namespace: str
    values: Mapping[str, Any]

    @property
    def runs_hooks(self) -> bool:
        return self.type == RELEASE_TYPE

    @property
    def label(self) -> str:
        return f"{self.name} ({self.chart.name} {self.chart.version})"


def helm_releases(rendering: Rendering) -> list[HelmRelease]:
    """Every Helm release of a stack, from what the program registered under mocks."""
    releases = []
    for resource in rendering.resources:
        if resource.type not in (RELEASE_TYPE, CHART_TYPE):
            continue
        inputs = _integral(unwrap_secrets(resource.inputs))
        chart = Chart.from_reference(inputs["chart"], inputs["version"], (inputs.get("repositoryOpts") or {}).get("repo", ""))
        releases.append(
            HelmRelease(
                resource=resource.name,
                type=resource.type,
                chart=chart,
                # v4.Chart names the release after the resource; v3.Release would auto-name it (the program sets names).
                name=inputs.get("name") or resource.name,
                namespace=inputs.get("namespace") or "default",
                values=inputs.get("values") or {},
            )
        )
    return releases


@dataclass
class RenderedRelease:
    """What `pulumi up` applies for one release."""

    release: HelmRelease
    objects: list[dict[str, Any]]
    """CRDs first, then every template object (namespaced ones placed in the release namespace)."""
    dropped_hooks: list[str] = field(default_factory=list)
    """`Kind/name` of hook objects this resource type never applies."""

    def counts(self) -> Counter:
        return Counter(o["kind"] for o in self.objects)


def render_release(release: HelmRelease, api_versions: Iterable[str] = ()) -> RenderedRelease:
    """Render one release with Helm's own engine (helm-python-sdk, Helm v4 Go SDK).

    Raises ChartNotCached when the chart is missing, RenderError with Helm's own message when Helm refuses it."""
    import helm_python as helm
    from helm_python import _native

    if not is_cached(release.chart):
        raise ChartNotCached(release.chart)
    # render() drops disabled subcharts from the loaded chart: a fresh load per render.
    with helm.Chart.load(chart_path(release.chart)) as chart:
        _check_kube_version(release, chart.metadata.get("kubeVersion"))
        missing = [d["name"] for d in helm.dependency_list(chart_path(release.chart)) if d["status"] not in ("ok", "unpacked")]
        if missing:
            raise RenderError(f"{release.label}: dependencies missing from charts/: {', '.join(missing)}")
        options = {
            "name": release.name,
            "namespace": release.namespace,
            "is_install": True,
            "kube_version": KUBE_VERSION,
            "api_versions": sorted(api_versions),
        }
        try:
            rendered = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(release.values), json.dumps(options)))
            crds = chart.crds
        except helm.HelmError as error:
            raise RenderError(f"{release.label}: {error}") from error
    objects = [doc for crd in crds for doc in _documents(crd["data"], crd["filename"])]
    dropped = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml", ".tpl")) or path.endswith("NOTES.txt"):
            continue
        for doc in _documents(text, path):
            hooks = {h.strip() for h in ((doc.get("metadata") or {}).get("annotations") or {}).get(HOOK, "").split(",") if h.strip()}
            if hooks and (not release.runs_hooks or hooks <= TEST_HOOKS):
                dropped.append(f"{doc['kind']}/{doc['metadata'].get('name')}")
                continue
            objects.append(doc)
    scopes = {**{kind: "Cluster" for kind in CLUSTER_SCOPED_KINDS}, **crd_scopes(objects)}
    for doc in objects:
        if scopes.get(doc["kind"]) != "Cluster":
            doc.setdefault("metadata", {}).setdefault("namespace", release.namespace)
    return RenderedRelease(release, objects, dropped)


# Helm's own manifest separator (releaseutil.SplitManifests, `(?:^|\s*\n)---\s*`; the whitespace before the newline
# changes nothing where it splits): `---` may be followed directly by a comment.
_SEPARATOR = re.compile(r"(?:^|\n)---\s*")


def _documents(text: str, source: str) -> Iterator[dict[str, Any]]:
    """The objects of one rendered template, fresh copies each call (callers fill in namespaces)."""
    yield from json.loads(_parsed(text, source))


@functools.lru_cache(maxsize=4096)
def _parsed(text: str, source: str) -> str:
    """Parsed with Helm's own YAML reader (sigs.k8s.io/yaml, as Helm and the API server read manifests), three
    times faster than PyYAML on the megabytes of CRDs; a stack renders each chart twice, so each text parses once."""
    import helm_python as helm

    documents = []
    for part in _SEPARATOR.split(text):
        if not any(line.strip() and not line.lstrip().startswith("#") for line in part.splitlines()):
            continue
        try:
            document = helm.values_from_yaml(part)
        except helm.HelmError as error:
            raise RenderError(f"{source}: not YAML: {error}") from error
        if document.get("kind"):
            documents.append(document)
    return json.dumps(documents)


def crd_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {o["spec"]["names"]["kind"]: o["spec"].get("scope", "Namespaced") for o in objects if o["kind"] == "CustomResourceDefinition"}


def crd_api_versions(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """`group/version` and `group/version/Kind` of every CRD among `objects`, as a cluster's discovery lists them."""
    versions = set()
    for crd in objects:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                versions |= {f"{group}/{version['name']}", f"{group}/{version['name']}/{kind}"}
    return versions


def _check_kube_version(release: HelmRelease, constraint: str | None) -> None:
    """Helm's install action refuses a chart whose `kubeVersion` the cluster does not meet; the SDK's render does
    not check it, so we do."""
    if not constraint:
        return
    try:
        met = satisfies(KUBE_VERSION, constraint)
    except ValueError as error:
        raise RenderError(f"{release.label}: kubeVersion {constraint!r}: {error}") from error
    if not met:
        raise RenderError(f"{release.label}: chart requires kubeVersion: {constraint} which is incompatible with Kubernetes {KUBE_VERSION}")


@functools.cache
def builtin_api_versions(kube_version: str = KUBE_VERSION) -> frozenset[str]:
    """`group/version` and `group/version/Kind` of every built-in kind a Kubernetes `kube_version` cluster serves by
    default, from the OpenAPI definitions kubernetes-validate ships for it. Alpha and beta versions are left out:
    a default cluster serves none that a chart here asks about (new beta APIs are off by default since 1.24)."""
    import kubernetes_validate

    minor = ".".join(kube_version.lstrip("v").split(".")[:2])
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    definitions = json.loads((schemas / "_definitions.json").read_text())["$defs"]
    versions = set()
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            if re.search(r"v\d+(alpha|beta)", gvk["version"]):
                continue
            group_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            versions |= {group_version, f"{group_version}/{gvk['kind']}"}
    return frozenset(versions)


@dataclass
class StackCharts:
    """Every release of one stack, rendered, or why it could not be."""

    rendered: dict[str, RenderedRelease]
    missing: dict[str, ChartNotCached]
    failed: dict[str, RenderError]

    def objects(self) -> Iterator[tuple[HelmRelease, dict[str, Any]]]:
        for result in self.rendered.values():
            for obj in result.objects:
                yield result.release, obj


def render_stack_charts(rendering: Rendering) -> StackCharts:
    """Render every release of a stack. Capabilities list the stack's own CRDs, so two passes: the first finds the
    CRDs the charts ship, the second renders with them known (as the cluster would serve them)."""
    releases = helm_releases(rendering)
    program_objects = [r.manifest() for r in rendering.kubernetes_objects()]
    known = set(builtin_api_versions()) | crd_api_versions(program_objects)
    first = _render_all(releases, known)
    known |= crd_api_versions(obj for _, obj in first.objects())
    return _render_all(releases, known)


def _render_all(releases: list[HelmRelease], api_versions: set[str]) -> StackCharts:
    result = StackCharts({}, {}, {})
    for release in releases:
        try:
            result.rendered[release.name] = render_release(release, api_versions)
        except ChartNotCached as missing:
            result.missing[release.name] = missing
        except RenderError as error:
            result.failed[release.name] = error
    return result


def write_objects(charts: StackCharts, out: Path) -> list[Path]:
    """One YAML file per rendered chart object: `chart-<release>-<kind>-<namespace>-<name>.yaml`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for release, obj in charts.objects():
        meta = obj.get("metadata") or {}
        stem = "-".join(p for p in ("chart", release.name, obj["kind"].lower(), meta.get("namespace"), meta.get("name")) if p)
        path = out / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=True))
        written.append(path)
    return written


def summary(charts: StackCharts) -> str:
    lines = []
    for result in charts.rendered.values():
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result.counts().items()))
        dropped = f"; hooks not applied: {len(result.dropped_hooks)}" if result.dropped_hooks else ""
        lines.append(f"{result.release.label}: {len(result.objects)} objects ({kinds}){dropped}")
    lines += [f"{name}: MISSING: {error}" for name, error in sorted(charts.missing.items())]
    lines += [f"{name}: FAILED: {error}" for name, error in sorted(charts.failed.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.charts", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("pull", help="download every pinned chart into the cache")
    render = commands.add_parser("render", help="render every Helm release of a stack")
    render.add_argument("--stack", required=True)
    render.add_argument("--out", type=Path, help="also write each rendered object as YAML here")
    options = parser.parse_args(argv)
    if options.command == "pull":
        pull()
        return 0
    from tools.render import render_stack

    charts = render_stack_charts(render_stack(options.stack))
    print(summary(charts))
    if options.out:
        print(f"{len(write_objects(charts, options.out))} files -> {options.out}")
    return 1 if charts.missing or charts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
