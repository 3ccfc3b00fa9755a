"""The README's dev path: the Kind cluster config matches the stack's NodePorts, and dev-up fails clearly."""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml

from tools.render import ROOT


def kind_node() -> dict:
    return yaml.safe_load((ROOT / "dev" / "kind-cluster.yaml").read_text())["nodes"][0]


def test_every_dev_node_port_is_published_on_the_same_localhost_port(dev):
    mappings = {m["containerPort"]: m for m in kind_node()["extraPortMappings"]}
    node_ports = [
        int(port["nodePort"])
        for service in dev.find_all(kind="Service")
        for port in service.inputs["spec"]["ports"]
        if "nodePort" in port
    ]
    # Prometheus and Grafana get theirs through the kube-prometheus-stack values.
    metrics = dev.find(type="kubernetes:helm.sh/v3:Release", name="observability-metrics").inputs["values"]
    node_ports += [int(metrics[part]["service"]["nodePort"]) for part in ("prometheus", "grafana")]
    assert sorted(node_ports) == [30030, 30090, 30100, 30233, 30500, 30543, 30679, 30700, 30800, 30808, 30900, 30901]
    for port in node_ports:
        assert mappings[port]["hostPort"] == port
        assert mappings[port]["listenAddress"] == "127.0.0.1"


def test_the_seed_port_map_is_published_in_full():
    published = {m["hostPort"] for m in kind_node()["extraPortMappings"]}
    # The seed port map, model serving's first model on 30800 and Airflow's api-server on 30808.
    assert published == {30900, 30901, 30500, 30543, 30679, 30700, 30233, 30090, 30030, 30100, 30800, 30808}


def test_local_path_volumes_live_on_the_host_so_deleting_the_cluster_keeps_them():
    mounts = kind_node()["extraMounts"]
    assert {"hostPath": "__DATA_DIR__", "containerPath": "/var/local-path-provisioner"} in mounts
    assert "__DATA_DIR__" in (ROOT / "scripts" / "dev-up.sh").read_text()


def test_kind_context_matches_the_dev_stack(dev):
    cluster = yaml.safe_load((ROOT / "dev" / "kind-cluster.yaml").read_text())
    assert f"kind-{cluster['name']}" == dev.find(type="pulumi:providers:kubernetes").inputs["context"]


def test_dev_up_names_the_missing_tool_instead_of_failing_later(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    result = subprocess.run(
        [shutil.which("bash"), str(ROOT / "scripts" / "dev-up.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "dev-up: 'docker' is not installed. Install it first: https://docs.docker.com" in result.stderr
