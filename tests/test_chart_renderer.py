"""tools.charts itself, on small charts written here: the semantics of each Pulumi Helm resource (hooks, CRDs,
release names, namespaces), kubeVersion and schema enforcement, and what a missing chart says. No cache needed."""

from __future__ import annotations

import functools
import http.server
import io
import json
import re
import threading

import pytest

from components.versions import Chart
from tools import charts
from tools.charts import CHART_TYPE, RELEASE_TYPE, ChartNotCached, HelmRelease, RenderError, render_release, satisfies

pytest.importorskip("helm_python", reason="helm-python-sdk (the test requirements) renders the charts")

DEMO = Chart("demo", "1.0.0", "https://charts.example.com")
TEMPLATES = {
    "config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  size: {{ .Values.size | quote }}\n",
    "role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {{ .Release.Name }}\nrules: []\n",
    "migrate.yaml": (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n"
        '    "helm.sh/hook": pre-install,pre-upgrade\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n'
        "      containers: [{name: m, image: busybox:1.37}]\n"
    ),
    "test.yaml": (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke\n  annotations:\n"
        '    "helm.sh/hook": test\nspec:\n  containers: [{name: t, image: busybox:1.37}]\n'
    ),
    "capabilities.yaml": (
        '{{- if .Capabilities.APIVersions.Has "example.com/v1/Widget" }}\napiVersion: example.com/v1\nkind: Widget\n'
        "metadata:\n  name: w\n{{- end }}\n---# a comment straight after the separator, as cert-manager renders\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-{{ .Capabilities.KubeVersion.Minor }}\n"
    ),
}
CRD = (
    "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n"
    "spec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n"
    "  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A chart cache holding only the demo chart, laid out as `python -m tools.charts pull` lays it out."""
    monkeypatch.setenv(charts.CACHE_ENV, str(tmp_path))
    root = tmp_path / DEMO.name / DEMO.version
    (root / "templates").mkdir(parents=True)
    (root / "crds").mkdir()
    (root / "Chart.yaml").write_text(f"apiVersion: v2\nname: demo\nversion: {DEMO.version}\nkubeVersion: '>=1.30.0-0'\n")
    (root / "values.yaml").write_text("size: 1Gi\n")
    (root / "values.schema.json").write_text(json.dumps({"type": "object", "properties": {"size": {"type": "string"}}}))
    (root / "crds" / "widgets.yaml").write_text(CRD)
    for name, text in TEMPLATES.items():
        (root / "templates" / name).write_text(text)
    return root


def release(type_: str, **overrides) -> HelmRelease:
    fields = {"resource": "demo-chart", "type": type_, "chart": DEMO, "name": "demo", "namespace": "apps", "values": {}}
    return HelmRelease(**{**fields, **overrides})


def names(result) -> set[str]:
    return {f"{o['kind']}/{o['metadata']['name']}" for o in result.objects}


def test_a_v3_release_applies_crds_and_install_hooks_but_not_test_hooks(cache):
    result = render_release(release(RELEASE_TYPE))
    assert {"CustomResourceDefinition/widgets.example.com", "Job/migrate", "ConfigMap/demo-config"} <= names(result)
    assert result.dropped_hooks == ["Pod/smoke"]


def test_a_v4_chart_never_applies_hooks(cache):
    result = render_release(release(CHART_TYPE))
    assert "Job/migrate" not in names(result)
    assert sorted(result.dropped_hooks) == ["Job/migrate", "Pod/smoke"]
    assert "CustomResourceDefinition/widgets.example.com" in names(result)


def test_values_release_name_and_namespace_are_the_programs(cache):
    result = render_release(release(RELEASE_TYPE, name="mine", namespace="data", values={"size": "5Gi"}))
    config = next(o for o in result.objects if o["metadata"]["name"] == "mine-config")
    assert config["data"] == {"size": "5Gi"}
    assert config["metadata"]["namespace"] == "data"
    cluster_scoped = [o for o in result.objects if o["kind"] in ("ClusterRole", "CustomResourceDefinition")]
    assert all("namespace" not in o["metadata"] for o in cluster_scoped)


def test_capabilities_are_a_133_cluster_with_the_stacks_crds(cache):
    assert "ConfigMap/kube-33" in names(render_release(release(RELEASE_TYPE)))
    assert "Widget/w" not in names(render_release(release(RELEASE_TYPE)))
    assert "Widget/w" in names(render_release(release(RELEASE_TYPE), api_versions={"example.com/v1/Widget"}))


def test_the_values_schema_is_enforced_with_helms_message(cache):
    with pytest.raises(RenderError, match=r"at '/size': got number, want string"):
        render_release(release(RELEASE_TYPE, values={"size": 5}))


def test_an_unmet_kube_version_is_refused(cache):
    (cache / "Chart.yaml").write_text(f"apiVersion: v2\nname: demo\nversion: {DEMO.version}\nkubeVersion: '>=1.34.0'\n")
    with pytest.raises(RenderError, match=re.escape("requires kubeVersion: >=1.34.0")):
        render_release(release(RELEASE_TYPE))


def test_a_template_error_is_helms_own(cache):
    (cache / "templates" / "broken.yaml").write_text("{{ required \"size is required\" .Values.missing }}\n")
    with pytest.raises(RenderError, match="size is required"):
        render_release(release(RELEASE_TYPE))


@pytest.fixture
def helm_repository(cache, tmp_path):
    """The demo chart packaged and indexed as a Helm repository served on 127.0.0.1."""
    import helm_python as helm

    served = tmp_path / "repository"
    served.mkdir()
    helm.package(cache, destination=served)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    )
    url = f"http://127.0.0.1:{server.server_port}"
    helm.repo_index_generate(served, base_url=url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()


def test_pull_lays_each_chart_out_where_the_renderer_reads_it(helm_repository, tmp_path, monkeypatch):
    monkeypatch.setenv(charts.CACHE_ENV, str(tmp_path / "fresh-cache"))
    served = Chart(DEMO.name, DEMO.version, helm_repository)
    out = io.StringIO()
    (pulled,) = charts.pull([served], out=out)
    assert pulled == tmp_path / "fresh-cache" / "demo" / "1.0.0"
    assert "kubeVersion" in (pulled / "Chart.yaml").read_text() and (pulled / "crds" / "widgets.yaml").is_file()
    assert "Job/migrate" in names(render_release(release(RELEASE_TYPE)))
    assert charts.pull([served], out=out) == []
    assert out.getvalue().splitlines()[-1] == f"demo 1.0.0: cached in {pulled}"


def test_a_missing_chart_names_itself_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(charts.CACHE_ENV, str(tmp_path))
    with pytest.raises(ChartNotCached) as missing:
        render_release(release(RELEASE_TYPE))
    assert "chart demo 1.0.0 is not in the chart cache" in str(missing.value)
    assert "python -m tools.charts pull" in str(missing.value)


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (">=1.21.0-0", True), (">= 1.19.0-0 < 1.40.0-0", True), (">=1.34", False), ("~1.33", True), ("~1.32", False),
        ("^1.20", True), ("<1.33", False), ("<=1.33", True), (">1.33", False), ("1.33.x", True),
        (">=1.40 || >=1.22.0-0", True), ("1.20 - 1.33", True), ("1.20 - 1.32", False), ("!=1.33.0", False),
    ],
)
def test_kube_version_constraints_read_as_helm_reads_them(constraint, expected):
    assert satisfies("v1.33.0", constraint) is expected
