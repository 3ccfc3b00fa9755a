"""The typed config layer: every rule fails with one readable message naming key, value and what is allowed."""

from __future__ import annotations

import copy

import pulumi
import pytest
import yaml

from components.config import (
    SCALAR_KEYS,
    ConfigError,
    StackConfig,
    decode_settings,
    parse_stack_config,
    quantity_value,
)
from tools.render import ROOT, render_stack


def problems_for(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("dev", raw)
    return str(caught.value)


def stack_file(stack: str) -> dict:
    settings = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in settings.items() if key.startswith("mlops-platform:")}


def test_dev_stack_file_is_the_seed_platform():
    config = parse_stack_config("dev", stack_file("dev"))
    assert config.kube_context == "kind-mlops"
    assert config.mlflow.engine == "sqlite" and config.mlflow.replicas == 1
    assert config.object_store.engine == "minio" and config.object_store.size == "20Gi"
    assert config.mlflow.size == "5Gi"
    assert "backups" in config.object_store.buckets and "mlflow-artifacts" in config.object_store.buckets
    assert config.node_ports == {
        "minioApi": 30900, "minioConsole": 30901, "mlflow": 30500,
        "postgres": 30543, "redis": 30679, "temporalGrpc": 30700, "temporalUi": 30233,
        "prometheus": 30090, "grafana": 30030, "loki": 30100, "serving": 30800, "airflow": 30808,
    }
    assert config.observability.enabled is True
    assert config.protect_state is False


def test_prod_stack_file_protects_state_on_its_own_storage_class():
    # The Vault token is a secret setting: only its presence is checked.
    config = parse_stack_config("prod", {**stack_file("prod"), "vaultToken": "set-with-pulumi-config-set-secret", "oidcClientSecret": "set"})
    assert config.protect_state is True
    assert config.storage.provisioner == "ebs.csi.aws.com"
    assert config.storage.parameters == {"type": "gp3", "encrypted": "true"}
    assert config.node_ports == {}


def test_pulumi_yaml_declares_every_scalar_setting_with_the_code_default():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    defaults = StackConfig(stack="any")
    attribute = {"kubeContext": "kube_context", "namespacePrefix": "namespace_prefix", "protectState": "protect_state"}
    assert set(SCALAR_KEYS) == set(attribute)
    for key, kind in SCALAR_KEYS.items():
        declaration = declared[key]
        assert declaration["type"] == {str: "string", bool: "boolean"}[kind]
        assert declaration["description"]
        assert declaration["default"] == getattr(defaults, attribute[key])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"objectStore": {"size": "5GB"}}, 'mlops-platform:objectStore.size = "5GB": expected a positive Kubernetes quantity'),
        ({"mlflow": {"size": "-1Gi"}}, 'mlops-platform:mlflow.size = "-1Gi": expected a positive Kubernetes quantity'),
        ({"objectStore": {"engine": "ceph"}}, 'mlops-platform:objectStore.engine = "ceph": allowed values: minio'),
        ({"mlflow": {"engine": "mysql"}}, 'mlops-platform:mlflow.engine = "mysql": allowed values: sqlite'),
        ({"nodePorts": {"mlflow": 8080}}, "mlops-platform:nodePorts.mlflow = 8080: expected a whole number from 30000 to 32767"),
        ({"nodePorts": {"mlflow": 32768}}, "mlops-platform:nodePorts.mlflow = 32768: expected a whole number from 30000 to 32767"),
        (
            {"nodePorts": {"minioApi": 30500, "mlflow": 30500}},
            "mlops-platform:nodePorts.mlflow = 30500: already used by nodePorts.minioApi",
        ),
        (
            {"mlflow": {"replicas": 2}},
            "mlops-platform:mlflow.replicas = 2: the sqlite engine runs exactly 1 replica",
        ),
        ({"mlflow": {"replica": 1}}, 'mlops-platform:mlflow.replica = 1: unknown key (a typo?); allowed keys: artifactBucket, auth, engine, migrateFrom, replicas'),
        ({"mlfow": {}}, "mlops-platform:mlfow = {}: unknown key (a typo?); allowed keys: airflow, alertmanagerReceiverUrl, backups, cloudflareApiToken, frontDoor, kubeContext"),
        ({"objectStore": {"engine": "s3"}}, "mlops-platform:objectStore.bucketPrefix = null: required with engine s3"),
        ({"objectStore": {"engine": "s3", "bucketPrefix": "acme", "region": "Frankfurt"}}, 'mlops-platform:objectStore.region = "Frankfurt": expected an AWS region'),
        ({"objectStore": {"engine": "s3", "bucketPrefix": "acme", "kmsKeyArn": "my-key"}}, 'mlops-platform:objectStore.kmsKeyArn = "my-key": expected a KMS key or alias ARN'),
        (
            {"objectStore": {"engine": "s3", "bucketPrefix": "a" * 35, "buckets": ["backups", "mlflow-artifacts", "long-" + "x" * 25]}},
            "makes bucket names longer than 63 characters: long-xxxxxxxxxxxxxxxxxxxxxxxxx",
        ),
        ({"objectStore": {"engine": "r2", "bucketPrefix": "acme"}}, "mlops-platform:objectStore.accountId = null: required with engine r2"),
        ({"objectStore": {"engine": "r2", "bucketPrefix": "acme", "accountId": "42"}}, 'mlops-platform:objectStore.accountId = "42": expected a Cloudflare account id'),
        ({"objectStore": {"engine": "r2", "bucketPrefix": "acme", "region": "eu-west-1"}}, 'mlops-platform:objectStore.region = "eu-west-1": R2 has one region: auto'),
        (
            {"objectStore": {"engine": "r2", "bucketPrefix": "acme", "accountId": "0" * 32}},
            "mlops-platform:r2SecretAccessKey = [secret]: required with objectStore.engine r2 (SHA-256 of the R2 API token value (the S3 secret access key)): pulumi config set --secret mlops-platform:r2SecretAccessKey <value>",
        ),
        ({"objectStore": {"retention": {"backupsDays": 0}}}, "mlops-platform:objectStore.retention.backupsDays = 0: expected a whole number from 1 to 3650"),
        ({"mlflow": {"auth": True}}, "mlops-platform:mlflow.auth = true: basic auth keeps its users in PostgreSQL: use engine postgres"),
        (
            {"mlflow": {"migrateFrom": "sqlite"}},
            'mlops-platform:mlflow.migrateFrom = "sqlite": copies the SQLite store into PostgreSQL, so it needs engine postgres; with engine sqlite leave it out',
        ),
        ({"mlflow": {"engine": "postgres", "migrateFrom": "mysql"}}, 'mlops-platform:mlflow.migrateFrom = "mysql": allowed values: sqlite'),
        ({"frontDoor": {"enabled": True, "domain": "MLops.Example.com"}}, 'mlops-platform:frontDoor.domain = "MLops.Example.com": expected a lowercase DNS name'),
        ({"frontDoor": {"oidc": {"issuer": "http://login.example.com", "clientId": "c"}}}, 'mlops-platform:frontDoor.oidc.issuer = "http://login.example.com": expected an https URL'),
        (
            {"mlflow": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}},
            'mlops-platform:mlflow.resources.requests.memory = "2Gi": must not exceed its limit 1Gi',
        ),
        (
            {"mlflow": {"resources": {"requests": {"gpu": "1"}}}},
            'mlops-platform:mlflow.resources.requests.gpu = "1": unknown key (a typo?); allowed keys: cpu, ephemeral-storage, memory',
        ),
        ({"objectStore": {"buckets": ["backups", "Backups"]}}, 'mlops-platform:objectStore.buckets[1] = "Backups": bucket names are 3-63'),
        ({"objectStore": {"buckets": ["backups", "backups"]}}, "bucket names must be unique; listed more than once: backups"),
        ({"objectStore": {"buckets": ["mlflow-artifacts"]}}, "must include the 'backups' bucket"),
        ({"mlflow": {"artifactBucket": "nowhere"}}, 'mlops-platform:mlflow.artifactBucket = "nowhere": must be one of objectStore.buckets'),
        ({"storage": {"parameters": {"encrypted": True}}}, 'mlops-platform:storage.parameters.encrypted = true: expected a string; quote numbers and booleans in YAML ("true")'),
        ({"storage": {"volumeBindingMode": "Lazy"}}, 'mlops-platform:storage.volumeBindingMode = "Lazy": allowed values: WaitForFirstConsumer, Immediate'),
        ({"storage": "fast"}, 'mlops-platform:storage = "fast": expected a mapping of settings'),
        ({"protectState": "yes"}, 'mlops-platform:protectState = "yes": expected true or false'),
        ({"namespacePrefix": "MLOps"}, 'mlops-platform:namespacePrefix = "MLOps": expected a lowercase DNS label'),
    ],
)
def test_bad_value_is_named_with_what_is_allowed(raw, expected):
    message = problems_for(raw)
    assert expected in message
    assert message.startswith("invalid configuration in Pulumi.dev.yaml")


def test_a_secret_value_never_appears_in_an_error():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("prod", {"r2SecretAcessKey": "hunter2-token"}, secret_keys=frozenset({"r2SecretAcessKey"}))
    message = str(caught.value)
    assert "mlops-platform:r2SecretAcessKey = [secret]: unknown key (a typo?)" in message
    assert "hunter2" not in message


def test_postgres_engine_defaults_to_two_replicas_and_adds_its_databases():
    config = parse_stack_config("any", {"mlflow": {"engine": "postgres"}, "temporal": {"engine": "chart"}})
    assert config.mlflow.replicas == 2
    assert config.databases == ("platform", "users", "labeler", "temporal", "temporal_visibility", "mlflow", "mlflow_auth")


def test_every_problem_is_reported_in_one_message():
    message = problems_for({"objectStore": {"size": "5GB"}, "mlflow": {"replicas": 3}, "typo": 1})
    assert "(3 problem(s))" in message
    assert message.count("\n  - ") == 3


def test_config_error_is_a_run_error_so_the_cli_prints_no_traceback():
    assert issubclass(ConfigError, pulumi.RunError)


def test_the_program_stops_on_a_bad_stack_value_before_creating_anything():
    with pytest.raises(ConfigError, match=r"mlops-platform:mlflow\.size = \"5GB\""):
        render_stack("dev", overrides={"mlops-platform:mlflow": {"size": "5GB", "artifactBucket": "mlflow-artifacts"}})


def test_settings_are_decoded_as_the_cli_hands_them_over():
    decoded = decode_settings({"protectState": "true", "kubeContext": "123", "mlflow": '{"replicas": 1}', "storage": "{oops"})
    assert decoded == {"protectState": True, "kubeContext": "123", "mlflow": {"replicas": 1}, "storage": "{oops"}
    assert "storage" in problems_for(decoded)


@pytest.mark.parametrize(("text", "value"), [("5Gi", 5 * 2**30), ("512Mi", 512 * 2**20), ("500m", 0.5), ("1", 1), ("1e3", 1000), ("2G", 2e9)])
def test_quantities_follow_kubernetes_grammar(text, value):
    assert quantity_value(text) == value


@pytest.mark.parametrize("text", ["5GB", "5 Gi", "Gi", "", "1.2.3", "5gi"])
def test_malformed_quantities_are_rejected(text):
    with pytest.raises(ValueError):
        quantity_value(text)


def test_a_partial_resources_block_keeps_the_defaults_of_its_area():
    config = parse_stack_config("any", {"redis": {"resources": {"requests": {"memory": "100Mi"}}}})
    assert config.redis.resources.as_k8s() == {
        "requests": {"cpu": "50m", "memory": "100Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_a_block_left_empty_in_yaml_means_its_defaults():
    config = parse_stack_config("any", {"mlflow": None, "nodePorts": None, "observability": {"loki": None}, "redis": {"resources": None}})
    defaults = StackConfig(stack="any")
    assert (config.mlflow, config.node_ports, config.observability, config.redis) == (
        defaults.mlflow, {}, defaults.observability, defaults.redis,
    )


def test_a_bad_list_item_is_named_by_its_index():
    message = problems_for({"postgres": {"databases": ["platform", "template1", "Users"]}})
    assert 'mlops-platform:postgres.databases[1] = "template1": database names are' in message
    assert 'mlops-platform:postgres.databases[2] = "Users": database names are' in message


ODD_VALUES = (None, 0, -1, 1.5, True, "", "x", "5Gi\n", [], ["x"], {}, {"x": 1})


def key_paths(value, path=()):
    """Every key and list item of a stack file's settings, as paths."""
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from key_paths(child, (*path, key))


def with_value(settings: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(settings)
    parent = changed
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return changed


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_any_value_anywhere_is_accepted_or_worded_never_a_traceback(stack):
    settings = {**stack_file(stack), "vaultToken": "set", "oidcClientSecret": "set"}
    for path in list(key_paths(settings))[1:]:
        for value in ODD_VALUES:
            try:
                parse_stack_config(stack, with_value(settings, path, value))
            except ConfigError as error:
                # pydantic's own wording ("Input should be ...", "Field required") means a shape nobody translated.
                assert "Input should" not in str(error) and "Field required" not in str(error), str(error)


# Edge values the error messages call invalid: each must be refused by the config layer, not at `pulumi up`.
@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"mlflow": {"size": "0Gi"}}, "mlflow.size"),
        ({"objectStore": {"size": "0"}}, "objectStore.size"),
        ({"postgres": {"size": "0Mi"}}, "postgres.size"),
        ({"redis": {"size": "0Gi"}}, "redis.size"),
        ({"mlflow": {"workers": 0}}, "mlflow.workers"),
        ({"mlflow": {"replicas": 0}}, "mlflow.replicas"),
        ({"postgres": {"instances": 0}}, "postgres.instances"),
        ({"backups": {"retentionDays": 0}}, "backups.retentionDays"),
        ({"backups": {"continuousRetention": "0d"}}, "backups.continuousRetention"),
    ],
)
def test_zero_sizes_counts_and_retentions_are_refused(raw, key):
    assert f"mlops-platform:{key} = " in problems_for(raw)


# --- serving.models ------------------------------------------------------------------------------------------------


def served(**fields) -> dict:
    return {"name": "churn", "model": "churn-classifier", **fields}


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            [served(), served(model="other"), served(name="fraud"), served(name="fraud")],
            [
                'mlops-platform:serving.models[1].name = "churn": already the name of serving.models[0]; each name must be unique',
                'mlops-platform:serving.models[3].name = "fraud": already the name of serving.models[2]',
            ],
        ),
        ([served(alias="latest")], ['mlops-platform:serving.models[0].alias = "latest": expected an MLflow alias']),
        ([served(alias="v2")], ['mlops-platform:serving.models[0].alias = "v2": expected an MLflow alias']),
        ([served(alias="champion!")], ['mlops-platform:serving.models[0].alias = "champion!": expected an MLflow alias']),
        ([served(replicas=0)], ["mlops-platform:serving.models[0].replicas = 0: expected a whole number from 1 to 20"]),
        ([served(name="Churn_Model")], ['mlops-platform:serving.models[0].name = "Churn_Model": expected a lowercase DNS label']),
        ([served(model="team/churn")], ['mlops-platform:serving.models[0].model = "team/churn": expected a registered model name']),
        ([{"name": "churn"}], ["mlops-platform:serving.models[0].model = null: required"]),
        ([served(replica=2)], ["mlops-platform:serving.models[0].replica = 2: unknown key (a typo?); allowed keys: alias, model, name, replicas, resources"]),
        ("churn", ['mlops-platform:serving.models = "churn": expected a list of models']),
        (
            [served(resources={"requests": {"memory": "2Gi"}})],
            ['mlops-platform:serving.models[0].resources.requests.memory = "2Gi": must not exceed its limit 1Gi'],
        ),
    ],
)
def test_bad_served_models_are_named_by_their_index(models, expected):
    message = problems_for({"serving": {"models": models}})
    for line in expected:
        assert line in message


def test_served_models_default_to_one_replica_following_champion_and_an_empty_list_serves_nothing():
    config = parse_stack_config("any", {"serving": {"models": [served(resources={"limits": {"memory": "2Gi"}})]}})
    (model,) = config.serving.models
    assert (model.alias, model.replicas) == ("champion", 1)
    # A partial resources block keeps the defaults it does not name.
    assert model.resources.requests == {"cpu": "100m", "memory": "384Mi"} and model.resources.limits == {"cpu": "1", "memory": "2Gi"}
    for empty in ({}, {"serving": None}, {"serving": {"models": None}}, {"serving": {"models": []}}):
        config = parse_stack_config("any", empty)
        assert config.serving.models == () and "serving" not in config.namespace_roles


def test_prod_serves_no_model_yet_and_dev_the_example():
    assert parse_stack_config("prod", {**stack_file("prod"), "vaultToken": "set", "oidcClientSecret": "set"}).serving.models == ()
    (example,) = parse_stack_config("dev", stack_file("dev")).serving.models
    assert (example.name, example.model, example.alias) == ("example", "example-model", "champion")
