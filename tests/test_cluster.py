"""ClusterFoundation and providers: namespaces under Pod Security Admission, one Retain class, explicit providers."""

from __future__ import annotations

import yaml

from tools.render import ROOT

# node-exporter alone needs the host; every chart pod elsewhere is admitted at restricted (tests/test_charts.py).
LOOSER_LEVELS = {"mlops-node-metrics": "privileged"}


def test_each_platform_part_gets_a_namespace_that_enforces_restricted_where_its_pods_allow(rendering):
    namespaces = {r.metadata["name"]: r.metadata["labels"] for r in rendering.find_all(kind="Namespace")}
    # Dev serves a model (mlops-serving); prod lists none yet, and a namespace without pods is not created.
    per_stack = {"dev": {"mlops-storage", "mlops-serving"}, "prod": {"mlops-cert-manager", "mlops-vault", "mlops-external-secrets", "mlops-gateway"}}[rendering.stack]
    common = {"mlops-mlflow", "mlops-data", "mlops-temporal", "mlops-cnpg", "mlops-observability", "mlops-node-metrics", "mlops-airflow"}
    assert set(namespaces) == common | per_stack
    for name, labels in namespaces.items():
        assert labels["pod-security.kubernetes.io/enforce"] == LOOSER_LEVELS.get(name, "restricted")
        # Where a looser level is enforced, restricted is still audited and warned about.
        for mode in ("audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.33"


def test_dev_storage_class_retains_volumes_on_kind_local_path(dev):
    storage_class = dev.find(kind="StorageClass").inputs
    assert storage_class["metadata"]["name"] == "mlops-retained"
    assert storage_class["provisioner"] == "rancher.io/local-path"
    assert storage_class["reclaimPolicy"] == "Retain"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


def test_prod_storage_class_comes_from_config(prod):
    storage_class = prod.find(kind="StorageClass").inputs
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["reclaimPolicy"] == "Retain"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage_class["allowVolumeExpansion"] is True


def test_every_claim_uses_the_stacks_retain_class(rendering):
    class_name = rendering.find(kind="StorageClass").inputs["metadata"]["name"]
    claims = rendering.find_all(kind="PersistentVolumeClaim")
    # prod keeps MLflow and Temporal in PostgreSQL and objects in S3: only Redis has a claim of ours.
    expected = {"redis-data"} | ({"minio-data", "mlflow-data", "temporal-data"} if rendering.stack == "dev" else set())
    assert {c.metadata["name"] for c in claims} == expected
    for claim in claims:
        assert claim.inputs["spec"]["storageClassName"] == class_name
        assert claim.inputs["spec"]["accessModes"] == ["ReadWriteOnce"]
    # CloudNativePG creates its own claims, from the Cluster's storage section.
    assert rendering.find(kind="Cluster").inputs["spec"]["storage"]["storageClass"] == class_name


def test_every_kubernetes_resource_uses_the_explicit_provider_for_the_stacks_context(rendering):
    provider = rendering.find(type="pulumi:providers:kubernetes")
    expected_context = {"dev": "kind-mlops", "prod": "prod"}[rendering.stack]
    assert provider.inputs["context"] == expected_context
    kubernetes = [r for r in rendering.resources if r.type.startswith("kubernetes:")]
    assert kubernetes
    for resource in kubernetes:
        assert resource.provider.startswith(provider.urn + "::"), resource.name


def test_default_kubernetes_and_aws_providers_are_disabled():
    config = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert set(config["pulumi:disable-default-providers"]["value"]) >= {"kubernetes", "aws"}


def test_children_are_parented_to_their_component_and_named_after_it(rendering):
    components = {r.urn: r for r in rendering.resources if r.type.startswith("mlops:")}
    assert {r.type for r in components.values()} == {
        "mlops:cluster:ClusterFoundation",
        "mlops:object_store:ObjectStore",
        "mlops:mlflow_server:MlflowServer",
        "mlops:cnpg_operator:CnpgOperator",
        "mlops:postgres_cluster:PostgresCluster",
        "mlops:redis:Redis",
        "mlops:temporal_stack:TemporalStack",
        "mlops:backups:Backups",
        "mlops:observability:ObservabilityStack",
        "mlops:monitoring:PlatformMonitoring",
        "mlops:network_policies:NetworkPolicies",
        "mlops:airflow:AirflowStack",
    } | (
        {"mlops:cnpg_backup_plugin:CnpgBackupPlugin", "mlops:cert_manager:CertManager", "mlops:vault_server:VaultServer",
         "mlops:secret_sync:SecretSync", "mlops:front_door:FrontDoor"}
        if rendering.stack == "prod"
        else {"mlops:model_serving:ModelServing"}
    )
    for resource in rendering.resources:
        if resource.type.startswith(("mlops:", "pulumi:providers:")):
            continue
        parent = components.get(resource.parent)
        assert parent is not None, f"{resource.name} is not parented to a component"
        assert resource.name.startswith(parent.name + "-"), resource.name
