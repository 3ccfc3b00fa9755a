"""The platform's alerts, checked by Prometheus' own tools: `promtool check rules` on every PrometheusRule the stacks
render, and `promtool test rules` proving each alert fires after its `for` and stays silent below its threshold.
Kind's local-path volumes emit no volume stats, so these tests are the proof that the storage alerts work.
Also: `amtool check-config` on Alertmanager's configuration, and the dashboards' queries through promtool's parser.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.backups import BackupRun
from components.monitoring import AlertTargets, alert_groups, dashboards, longest_gap_seconds, stale_after_seconds
from components.observability import alertmanager_config
from tests.realservers import needs_debian
from tools.render import ROOT

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = needs_debian(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
needs_amtool = needs_debian(AMTOOL is None, reason="amtool (Debian package prometheus-alertmanager) is not installed")

DATA, MLFLOW, TEMPORAL, STORAGE = "mlops-data", "mlops-mlflow", "mlops-temporal", "mlops-storage"
SERVING = "mlops-serving"
AIRFLOW = "mlops-airflow"
EXAMPLE_DAG = {"namespace": AIRFLOW, "dag_id": "mlops_example_train"}
SERVED = {"namespace": SERVING, "model": "example-model", "alias": "champion", "pod": "example-0"}


def rule_groups(rendering) -> list[dict]:
    (rule,) = rendering.find_all(kind="PrometheusRule")
    return rule.manifest()["spec"]["groups"]


def rules_by_alert(groups) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for group in groups:
        for rule in group["rules"]:
            found.setdefault(rule["alert"], []).append(rule)
    return found


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_accepts_every_rendered_rule(rendering, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(rendering)}))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout + result.stderr)


def test_every_alert_has_a_severity_summary_and_a_runbook_that_exists(rendering):
    for group in rule_groups(rendering):
        assert group["name"].startswith("mlops-")
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            path, anchor = rule["annotations"]["runbook_url"].split("#")
            text = (ROOT / path).read_text()
            headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^## (.+)$", text, re.M)}
            assert anchor in headings, (rule["alert"], anchor)


def test_the_alert_set_per_stack(dev, prod):
    assert set(rules_by_alert(rule_groups(dev))) == {
        "PVCAlmostFull", "PVCFillingSoon", "BackupStale", "BackupJobFailed",
        "MlflowDown", "TemporalDown", "PostgresDown", "PostgresInstanceDown", "ObjectStoreDown",
        "ModelServingErrors", "ModelServingNotReady", "AirflowSchedulerNotHeartbeating", "AirflowDagRunFailed",
    }
    assert set(rules_by_alert(rule_groups(prod))) == {
        "AirflowSchedulerNotHeartbeating", "AirflowDagRunFailed",
        "PVCAlmostFull", "PVCFillingSoon", "BackupStale", "BackupJobFailed",
        "PostgresWalArchivingFailing", "PostgresBaseBackupFailed", "PostgresBaseBackupStale",
        "MlflowDown", "TemporalDown", "PostgresDown", "PostgresInstanceDown", "VaultSealed", "VaultDown",
        "CertificateNotReady", "CertificateRenewalOverdue", "CertificateExpiresSoon", "CertManagerDown",
    }
    # One staleness alert per backup CronJob the stack runs.
    assert {r["labels"]["backup"] for r in rules_by_alert(rule_groups(dev))["BackupStale"]} == {
        "backup-postgres-logical", "backup-mlflow-sqlite", "backup-objects-mirror",
    }
    assert {r["labels"]["backup"] for r in rules_by_alert(rule_groups(prod))["BackupStale"]} == {"backup-postgres-logical", "backup-vault-snapshot"}


# --------------------------------------------------------------------------------------------------------------
# promtool test rules: each case is series, then an evaluation before the alert may fire and one after
# --------------------------------------------------------------------------------------------------------------

PVC = {"namespace": DATA, "persistentvolumeclaim": "redis-data"}
GiB = 2**30


def series(name: str, labels: dict, values: str) -> dict:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def volume(used: str, capacity: str, labels=PVC) -> list[dict]:
    return [
        series("kubelet_volume_stats_used_bytes", labels, used),
        series("kubelet_volume_stats_capacity_bytes", labels, capacity),
    ]


CRON = {"namespace": DATA, "cronjob": "backup-postgres-logical"}
STALE_AFTER_MINUTES = 99000 // 60  # 0 2 * * *: a day's gap + the 3 h deadline + 30 min grace
DEV_CASES = [
    # (name, alert, interval, input series, [(eval time, expected labels or None)])
    ("disk 85 % full", "PVCAlmostFull", "1m", volume("85x20", "100x20"), [("4m", None), ("6m", PVC)]),
    ("disk 79 % full", "PVCAlmostFull", "1m", volume("79x20", "100x20"), [("15m", None)]),
    ("full disk outside the platform", "PVCAlmostFull", "1m",
     volume("95x20", "100x20", {"namespace": "kube-system", "persistentvolumeclaim": "x"}), [("15m", None)]),
    ("filling: 50 GiB free, losing 100 MB a minute", "PVCFillingSoon", "1m",
     [series("kubelet_volume_stats_available_bytes", PVC, f"{50 * GiB}-100000000x200")], [("30m", None), ("2h", PVC)]),
    ("growing slowly: 50 GiB free, losing 100 kB a minute", "PVCFillingSoon", "1m",
     [series("kubelet_volume_stats_available_bytes", PVC, f"{50 * GiB}-100000x200")], [("3h", None)]),
    # Samples a minute apart: Prometheus forgets a series 5 minutes after its last sample.
    ("no successful dump since the epoch", "BackupStale", "1m",
     [series("kube_cronjob_status_last_successful_time", CRON, "0x1700")],
     [(f"{STALE_AFTER_MINUTES - 10}m", None), (f"{STALE_AFTER_MINUTES + 10}m", CRON)]),
    ("a dump every day", "BackupStale", "1m",
     [series("kube_cronjob_status_last_successful_time", CRON, "0x1439 86400x600")], [("2000m", None)]),
    ("a CronJob that never succeeded", "BackupStale", "1m",
     [series("kube_cronjob_created", CRON, "0x1700")],
     [(f"{STALE_AFTER_MINUTES - 10}m", None), (f"{STALE_AFTER_MINUTES + 10}m", CRON)]),
    ("a dump job failed", "BackupJobFailed", "1m",
     [series("kube_job_failed", {"condition": "true", "namespace": DATA, "job_name": "backup-postgres-logical-29400120"}, "0 1x10")],
     [("1m", None), ("3m", {"condition": "true", "namespace": DATA, "job_name": "backup-postgres-logical-29400120"})]),
    ("some other job failed", "BackupJobFailed", "1m",
     [series("kube_job_failed", {"condition": "true", "namespace": DATA, "job_name": "migrate-29400120"}, "1x10")], [("5m", None)]),
    ("mlflow stops answering scrapes", "MlflowDown", "1m",
     [series("up", {"namespace": MLFLOW, "service": "mlflow", "pod": "mlflow-0"}, "1 0x20")],
     [("4m", None), ("8m", {"namespace": MLFLOW, "service": "mlflow"})]),
    ("mlflow answers", "MlflowDown", "1m", [series("up", {"namespace": MLFLOW, "service": "mlflow", "pod": "mlflow-0"}, "1x20")], [("15m", None)]),
    ("temporal has no targets at all", "TemporalDown", "1m",
     [series("up", {"namespace": "elsewhere"}, "1x20")], [("4m", None), ("8m", {"namespace": TEMPORAL})]),
    ("temporal answers", "TemporalDown", "1m", [series("up", {"namespace": TEMPORAL, "pod": "t"}, "1x20")], [("15m", None)]),
    ("postgres reports down", "PostgresDown", "1m",
     [series("cnpg_collector_up", {"namespace": DATA, "pod": "postgres-1"}, "0x20")], [("4m", None), ("8m", {"namespace": DATA})]),
    ("postgres reports up", "PostgresDown", "1m", [series("cnpg_collector_up", {"namespace": DATA, "pod": "postgres-1"}, "1x20")], [("15m", None)]),
    ("one instance down", "PostgresInstanceDown", "1m",
     [series("cnpg_collector_up", {"namespace": DATA, "pod": "postgres-2"}, "0x20")],
     [("4m", None), ("8m", {"namespace": DATA, "pod": "postgres-2"})]),
    ("every instance up", "PostgresInstanceDown", "1m", [series("cnpg_collector_up", {"namespace": DATA, "pod": "postgres-2"}, "1x20")], [("15m", None)]),
    ("minio stops answering", "ObjectStoreDown", "1m",
     [series("up", {"namespace": STORAGE, "service": "minio"}, "0x20")], [("4m", None), ("8m", {"namespace": STORAGE, "service": "minio"})]),
    ("minio answers", "ObjectStoreDown", "1m", [series("up", {"namespace": STORAGE, "service": "minio"}, "1x20")], [("15m", None)]),
    # Half of the predictions answer 503 (no model loaded): past the 5 % share, for longer than 10 minutes.
    ("a model answers 503 to half its requests", "ModelServingErrors", "1m",
     [series("model_serving_requests_total", {**SERVED, "status": "503"}, "0+60x30"),
      series("model_serving_requests_total", {**SERVED, "status": "200"}, "0+60x30")],
     [("8m", None), ("15m", {"namespace": SERVING, "model": "example-model", "alias": "champion"})]),
    ("one failure in a hundred, and client errors", "ModelServingErrors", "1m",
     [series("model_serving_requests_total", {**SERVED, "status": "500"}, "0+1x30"),
      series("model_serving_requests_total", {**SERVED, "status": "400"}, "0+50x30"),
      series("model_serving_requests_total", {**SERVED, "status": "200"}, "0+100x30")],
     [("20m", None)]),
    ("a serving pod stays not ready", "ModelServingNotReady", "1m",
     [series("kube_deployment_status_replicas_unavailable", {"namespace": SERVING, "deployment": "example"}, "1x30")],
     [("8m", None), ("15m", {"namespace": SERVING, "deployment": "example"})]),
    ("every serving pod ready", "ModelServingNotReady", "1m",
     [series("kube_deployment_status_replicas_unavailable", {"namespace": SERVING, "deployment": "example"}, "0x30")], [("20m", None)]),
    # The heartbeat counter (statsd-exporter) climbs while the scheduler runs, then stands still.
    ("the scheduler stops heartbeating", "AirflowSchedulerNotHeartbeating", "1m",
     [series("airflow_scheduler_heartbeat_total", {"namespace": AIRFLOW, "pod": "airflow-statsd-0"}, "0+12x5 60x30")],
     [("8m", None), ("20m", {"namespace": AIRFLOW})]),
    ("the scheduler heartbeats", "AirflowSchedulerNotHeartbeating", "1m",
     [series("airflow_scheduler_heartbeat_total", {"namespace": AIRFLOW, "pod": "airflow-statsd-0"}, "0+12x40")], [("30m", None)]),
    ("no heartbeat series at all (exporter restarted, scheduler gone)", "AirflowSchedulerNotHeartbeating", "1m",
     [series("up", {"namespace": "elsewhere"}, "1x20")], [("4m", None), ("8m", {"namespace": AIRFLOW})]),
    # A DAG's first failure creates its series (count 1): increase() alone would never see it.
    ("a DAG fails for the first time", "AirflowDagRunFailed", "1m",
     [series("airflow_dagrun_failed_duration_seconds_count", {**EXAMPLE_DAG, "pod": "airflow-statsd-0"}, "_x5 1x30")],
     [("3m", None), ("7m", EXAMPLE_DAG)]),
    ("a DAG fails again, long after its first failure", "AirflowDagRunFailed", "1m",
     [series("airflow_dagrun_failed_duration_seconds_count", {**EXAMPLE_DAG, "pod": "airflow-statsd-0"}, "1x20 2x20")],
     [("18m", None), ("25m", EXAMPLE_DAG)]),
    ("old failures only", "AirflowDagRunFailed", "1m",
     [series("airflow_dagrun_failed_duration_seconds_count", {**EXAMPLE_DAG, "pod": "airflow-statsd-0"}, "3x40")], [("30m", None)]),
]
PODS = {"namespace": DATA, "pod": "postgres-1"}
VAULT_CERT = {"namespace": "mlops-vault", "name": "vault"}
BASE_STALE_MINUTES = (86400 + 3 * 3600) // 60
PROD_CASES = [
    ("archiving fails after the last success", "PostgresWalArchivingFailing", "1m",
     [series("cnpg_pg_stat_archiver_last_failed_time", PODS, "200x20"), series("cnpg_pg_stat_archiver_last_archived_time", PODS, "100x20")],
     [("4m", None), ("6m", PODS)]),
    ("archiving recovered", "PostgresWalArchivingFailing", "1m",
     [series("cnpg_pg_stat_archiver_last_failed_time", PODS, "100x20"), series("cnpg_pg_stat_archiver_last_archived_time", PODS, "200x20")],
     [("15m", None)]),
    ("the last base backup failed", "PostgresBaseBackupFailed", "1m",
     [series("barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp", PODS, "200x20"),
      series("barman_cloud_cloudnative_pg_io_last_available_backup_timestamp", PODS, "100x20")],
     [("4m", None), ("6m", {})]),
    ("a good backup after an old failure", "PostgresBaseBackupFailed", "1m",
     [series("barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp", PODS, "100x20"),
      series("barman_cloud_cloudnative_pg_io_last_available_backup_timestamp", PODS, "200x20")],
     [("15m", None)]),
    ("no base backup for more than a day", "PostgresBaseBackupStale", "1m",
     [series("barman_cloud_cloudnative_pg_io_last_available_backup_timestamp", PODS, "0x1700")],
     [(f"{BASE_STALE_MINUTES - 10}m", None), (f"{BASE_STALE_MINUTES + 20}m", {})]),
    ("a vault server is sealed", "VaultSealed", "1m",
     [series("vault_core_unsealed", {"namespace": "mlops-vault", "pod": "vault-1"}, "1 0x20")],
     [("4m", None), ("8m", {"namespace": "mlops-vault", "pod": "vault-1"})]),
    ("every vault server is unsealed", "VaultSealed", "1m",
     [series("vault_core_unsealed", {"namespace": "mlops-vault", "pod": "vault-1"}, "1x20")], [("15m", None)]),
    ("vault stops answering scrapes", "VaultDown", "1m",
     [series("up", {"namespace": "mlops-vault", "pod": "vault-0"}, "1 0x20")], [("4m", None), ("8m", {"namespace": "mlops-vault"})]),
    ("vault answers", "VaultDown", "1m", [series("up", {"namespace": "mlops-vault", "pod": "vault-0"}, "1x20")], [("15m", None)]),
    ("a base backup every day", "PostgresBaseBackupStale", "1m",
     [series("barman_cloud_cloudnative_pg_io_last_available_backup_timestamp", PODS, "0x1439 86400x600")], [("2000m", None)]),
    # cert-manager's series carry the Certificate's namespace and name (the PodMonitor honours them).
    ("a certificate stays not ready", "CertificateNotReady", "1m",
     [series("certmanager_certificate_ready_status", {**VAULT_CERT, "condition": "False"}, "1x40"),
      series("certmanager_certificate_ready_status", {**VAULT_CERT, "condition": "True"}, "0x40")],
     [("10m", None), ("20m", VAULT_CERT)]),
    ("a ready certificate", "CertificateNotReady", "1m",
     [series("certmanager_certificate_ready_status", {**VAULT_CERT, "condition": "False"}, "0x40"),
      series("certmanager_certificate_ready_status", {**VAULT_CERT, "condition": "True"}, "1x40")],
     [("30m", None)]),
    # promtool's clock starts at 0: a renewal time of 0 is due at once, overdue after 24 h, alerting an hour on.
    ("renewal keeps failing", "CertificateRenewalOverdue", "1m",
     [series("certmanager_certificate_renewal_timestamp_seconds", VAULT_CERT, "0x1600")], [("1400m", None), ("1520m", VAULT_CERT)]),
    ("renewal is not due yet", "CertificateRenewalOverdue", "1m",
     [series("certmanager_certificate_renewal_timestamp_seconds", VAULT_CERT, "100000x1600")], [("1520m", None)]),
    # Expiry at 700,000 s: under 7 days left from 95,200 s (1587 min), alerting an hour on.
    ("a certificate close to expiry", "CertificateExpiresSoon", "1m",
     [series("certmanager_certificate_expiration_timestamp_seconds", VAULT_CERT, "700000x1700")],
     [("1560m", None), ("1660m", VAULT_CERT)]),
    ("a certificate far from expiry", "CertificateExpiresSoon", "1m",
     [series("certmanager_certificate_expiration_timestamp_seconds", VAULT_CERT, "2000000x1700")], [("1660m", None)]),
    ("cert-manager stops answering scrapes", "CertManagerDown", "1m",
     [series("up", {"namespace": "mlops-cert-manager", "pod": "cert-manager-0"}, "1 0x20")],
     [("4m", None), ("8m", {"namespace": "mlops-cert-manager"})]),
    ("cert-manager answers", "CertManagerDown", "1m",
     [series("up", {"namespace": "mlops-cert-manager", "pod": "cert-manager-0"}, "1x20")], [("15m", None)]),
]
CASES = {"dev": DEV_CASES, "prod": PROD_CASES}


def without_annotations(groups: list[dict]) -> list[dict]:
    """promtool compares annotations exactly; the cases check expressions, labels and timing."""
    groups = copy.deepcopy(groups)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return groups


def promtool_tests(groups: list[dict], cases) -> list[dict]:
    rules = rules_by_alert(groups)
    tests = []
    for name, alert, interval, inputs, evaluations in cases:
        checks = []
        for eval_time, labels in evaluations:
            expected = []
            if labels is not None:
                # Several rules share an alert name (BackupStale): take the one whose expression names these labels.
                (rule,) = [r for r in rules[alert] if all(f'"{v}"' in r["expr"] for v in labels.values())][:1] or rules[alert][:1]
                expected = [{"exp_labels": {**rule["labels"], **labels}}]
            checks.append({"eval_time": eval_time, "alertname": alert, "exp_alerts": expected})
        tests.append({"name": name, "interval": interval, "input_series": inputs, "alert_rule_test": checks})
    return tests


def run_promtool_tests(groups: list[dict], tests: list[dict], directory: Path) -> subprocess.CompletedProcess:
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (directory / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    return promtool("test", "rules", "tests.yaml", cwd=directory)


def test_every_alert_has_a_firing_and_a_silent_case(renderings):
    for stack, cases in CASES.items():
        alerts = set(rules_by_alert(rule_groups(renderings[stack])))
        firing = {alert for _, alert, _, _, evaluations in cases if any(labels is not None for _, labels in evaluations)}
        silent = {alert for _, alert, _, _, evaluations in cases if any(labels is None for _, labels in evaluations)}
        assert alerts - {a for _, a, *_ in DEV_CASES} - {a for _, a, *_ in PROD_CASES} == set(), stack
        assert {a for _, a, *_ in cases} <= alerts
        assert {a for _, a, *_ in cases} <= firing & silent


@needs_promtool
@pytest.mark.parametrize("stack", sorted(CASES))
def test_each_alert_fires_after_its_for_and_not_below_its_threshold(renderings, stack, tmp_path):
    groups = without_annotations(rule_groups(renderings[stack]))
    result = run_promtool_tests(groups, promtool_tests(groups, CASES[stack]), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_the_promtool_harness_fails_on_a_wrong_expectation(dev, tmp_path):
    groups = without_annotations(rule_groups(dev))
    wrong = [("79 % is not almost full", "PVCAlmostFull", "1m", volume("79x20", "100x20"), [("15m", PVC)])]
    result = run_promtool_tests(groups, promtool_tests(groups, wrong), tmp_path)
    assert result.returncode != 0
    assert "PVCAlmostFull" in result.stdout + result.stderr


@needs_promtool
def test_the_summary_names_the_claim_and_how_full_it_is(dev, tmp_path):
    groups = rule_groups(dev)
    (rule,) = rules_by_alert(groups)["PVCAlmostFull"]
    expected = {
        "exp_labels": {**rule["labels"], **PVC},
        "exp_annotations": {**rule["annotations"], "summary": "Claim mlops-data/redis-data is 85% full"},
    }
    test = {"interval": "1m", "input_series": volume("85x20", "100x20"),
            "alert_rule_test": [{"eval_time": "10m", "alertname": "PVCAlmostFull", "exp_alerts": [expected]}]}
    result = run_promtool_tests(groups, [test], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------------------
# Thresholds, Alertmanager and dashboards
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "gap_hours"),
    [("0 2 * * *", 24), ("15 * * * *", 1), ("*/15 * * * *", 0.25), ("0 3 * * 0", 168), ("0 1 * * 1-5", 72), ("0 0 1 * *", 31 * 24)],
)
def test_the_longest_gap_of_a_schedule(schedule, gap_hours):
    assert longest_gap_seconds(schedule) == gap_hours * 3600


def test_staleness_allows_a_whole_gap_plus_the_runs_deadline():
    run = BackupRun("backup-x", "ns", "0 2 * * *", deadline_seconds=3 * 3600)
    assert stale_after_seconds(run) == 24 * 3600 + 3 * 3600 + 1800


@needs_amtool
@pytest.mark.parametrize(
    ("receiver", "url"),
    [("none", None), ("webhook", "https://hooks.example.com/alert"), ("slack", "https://hooks.slack.com/services/T0/B0/x")],
)
def test_amtool_accepts_the_alertmanager_config(receiver, url, tmp_path):
    (tmp_path / "alertmanager.yaml").write_text(alertmanager_config(receiver, url, "#alerts" if receiver == "slack" else ""))
    result = subprocess.run([AMTOOL, "check-config", "alertmanager.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_critical_alerts_silence_their_warnings_and_watchdog_pages_nobody():
    config = yaml.safe_load(alertmanager_config("webhook", "https://hooks.example.com/alert"))
    assert config["inhibit_rules"][0]["source_matchers"] == ["severity = critical"]
    (watchdog,) = config["route"]["routes"]
    assert watchdog["receiver"] == "null" and {"name": "null"} in config["receivers"]


def dashboard_queries(rendering) -> dict[str, list[str]]:
    """PromQL of every Prometheus panel, by dashboard file (LogQL panels excluded)."""
    found = {}
    for config_map in rendering.find_all(kind="ConfigMap"):
        if config_map.metadata.get("labels", {}).get("grafana_dashboard") != "1":
            continue
        for file_name, text in config_map.inputs["data"].items():
            board = yaml.safe_load(text)
            found[file_name] = [
                target["expr"] for panel in board["panels"] if panel["datasource"]["type"] == "prometheus" for target in panel["targets"]
            ]
    return found


def test_three_dashboards_as_config_maps_for_the_grafana_sidecar(rendering):
    queries = dashboard_queries(rendering)
    assert set(queries) == {"mlops-storage.json", "mlops-backups.json", "mlops-services.json"}
    assert all(queries.values())
    joined = "\n".join(q for qs in queries.values() for q in qs)
    assert "predict_linear(kubelet_volume_stats_available_bytes" in joined
    assert "kube_cronjob_status_last_successful_time" in joined


@needs_promtool
def test_every_dashboard_query_parses(rendering, tmp_path):
    queries = [q for qs in dashboard_queries(rendering).values() for q in qs]
    # promtool parses PromQL in recording rules; each query becomes one.
    recording = [{"record": f"dashboard:query_{n}:check", "expr": q} for n, q in enumerate(queries)]
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": recording}]}))
    result = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_a_pure_function_of_their_targets():
    targets = AlertTargets(
        platform_namespaces=("a",), backups=(), mlflow_namespace="m", temporal_namespace="t",
        postgres_namespace="d", postgres_cluster="pg",
    )
    assert alert_groups(targets) == alert_groups(targets)
    assert [r["alert"] for g in alert_groups(targets) for r in g["rules"]] == [
        "PVCAlmostFull", "PVCFillingSoon", "MlflowDown", "TemporalDown", "PostgresDown", "PostgresInstanceDown",
    ]
    assert set(dashboards(targets)) == {"mlops-storage", "mlops-backups", "mlops-services"}


# Every metric name an alert or a dashboard queries, with who serves it. promtool parses any name happily, so a
# misspelt one would leave a panel empty or an alert that can never fire. MLflow's names are proved by a real scrape
# (tests/test_mlflow_real.py asserts each appears on /metrics); the rest come from exporters that cannot run here,
# pinned from their documentation for the versions in components/versions.py.
SERVED_METRICS = {
    "up": "Prometheus itself, per scrape target",
    "mlflow_http_request_total": "MLflow (prometheus-flask-exporter), real scrape",
    "mlflow_http_request_duration_seconds_bucket": "MLflow (prometheus-flask-exporter), real scrape",
    "kubelet_volume_stats_used_bytes": "kubelet, Kubernetes docs 'Metrics for Kubernetes system components'",
    "kubelet_volume_stats_capacity_bytes": "kubelet, same",
    "kubelet_volume_stats_available_bytes": "kubelet, same",
    "kubelet_volume_stats_inodes": "kubelet, same",
    "kubelet_volume_stats_inodes_used": "kubelet, same",
    "kube_job_status_start_time": "kube-state-metrics docs/metrics/workload/job-metrics.md",
    "kube_job_status_completion_time": "kube-state-metrics docs/metrics/workload/job-metrics.md",
    "kube_cronjob_status_last_successful_time": "kube-state-metrics docs/metrics/workload/cronjob-metrics.md",
    "kube_cronjob_created": "kube-state-metrics docs/metrics/workload/cronjob-metrics.md",
    "kube_job_failed": "kube-state-metrics docs/metrics/workload/job-metrics.md",
    "cnpg_collector_up": "CloudNativePG docs 'Monitoring', predefined metrics",
    "cnpg_backends_total": "CloudNativePG default monitoring queries (backends.total)",
    "cnpg_pg_stat_archiver_seconds_since_last_archival": "CloudNativePG default monitoring queries (pg_stat_archiver)",
    "cnpg_pg_stat_archiver_last_failed_time": "CloudNativePG default monitoring queries (pg_stat_archiver)",
    "cnpg_pg_stat_archiver_last_archived_time": "CloudNativePG default monitoring queries (pg_stat_archiver)",
    "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp": "plugin-barman-cloud docs 'Observability'",
    "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp": "plugin-barman-cloud docs 'Observability'",
    "vault_core_unsealed": "Vault docs 'Telemetry metrics reference' (core)",
    # cert-manager's controller (pkg/metrics): {name, namespace} of each Certificate, ready_status also {condition}.
    "certmanager_certificate_ready_status": "cert-manager docs 'Prometheus Metrics', pkg/metrics",
    "certmanager_certificate_renewal_timestamp_seconds": "cert-manager docs 'Prometheus Metrics', pkg/metrics",
    "certmanager_certificate_expiration_timestamp_seconds": "cert-manager docs 'Prometheus Metrics', pkg/metrics",
    "kube_deployment_status_replicas_unavailable": "kube-state-metrics docs/metrics/workload/deployment-metrics.md",
    "model_serving_requests_total": "the serving app (components/model_serving/app.py), real scrape",
    "model_serving_request_duration_seconds_bucket": "the serving app, real scrape",
    "model_version_info": "the serving app, real scrape",
    # Airflow 3.3.2 sends scheduler_heartbeat (jobs/scheduler_job_runner.py) and dagrun.duration.<state> with a dag_id
    # tag (models/dagrun.py) over StatsD; the exporter's mapping (components/airflow/component.py) names them.
    "airflow_scheduler_heartbeat_total": "Airflow StatsD scheduler_heartbeat, statsd-exporter mapping",
    "airflow_dagrun_failed_duration_seconds_count": "Airflow StatsD dagrun.duration.failed, statsd-exporter summary",
    "airflow_dagrun_success_duration_seconds_count": "Airflow StatsD dagrun.duration.success, statsd-exporter summary",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (labels, strings, groupings and functions left out)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {name for name in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare) if name not in PROMQL_WORDS}


def test_metric_names_in_alerts_and_dashboards_are_served(renderings):
    for stack, rendering in renderings.items():
        exprs = [rule["expr"] for group in rule_groups(rendering) for rule in group["rules"]]
        exprs += [q for qs in dashboard_queries(rendering).values() for q in qs]
        unknown = {name for expr in exprs for name in metric_names(expr)} - set(SERVED_METRICS)
        assert unknown == set(), f"{stack}: no exporter serves {sorted(unknown)}"


def test_metric_name_extraction_sees_through_promql():
    assert metric_names('sum by (le) (rate(a_b{x="y{"}[5m])) / on (pod) c > 3 unless d offset 5m') == {"a_b", "c", "d"}


def test_certificate_alerts_watch_cert_manager_where_the_stack_has_it(dev, prod):
    """Prod's cert-manager (Vault's TLS, the front door) is scraped with its metrics' own labels, so `namespace` and
    `name` are the Certificate's; dev has no cert-manager and no certificate alerts."""
    monitor = prod.find(kind="PodMonitor", name="cert-manager").manifest()
    assert monitor["metadata"]["namespace"] == "mlops-cert-manager"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http-metrics", "honorLabels": True}]
    assert "mlops-certificates" in {group["name"] for group in rule_groups(prod)}
    assert dev.find_all(kind="PodMonitor", name="cert-manager") == []
    assert "mlops-certificates" not in {group["name"] for group in rule_groups(dev)}
    expiry = "certmanager_certificate_expiration_timestamp_seconds"
    assert any(expiry in query for query in dashboard_queries(prod)["mlops-services.json"])
    assert not any(expiry in query for query in dashboard_queries(dev)["mlops-services.json"])
