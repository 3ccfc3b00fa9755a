"""Typed stack configuration: read once from `Pulumi.<stack>.yaml`, validated before any resource exists.

One pydantic model per area (storage, objectStore, mlflow, ...), unknown keys refused; `parse_stack_config` is a
pure function over the decoded settings, so every rule is testable without mocks. All problems are reported together
in one `ConfigError`, a `pulumi.RunError`: the CLI prints its message without a traceback. The JSON Schema editors
read (schema/stack-config.json) is generated from the same models by `python -m tools.config_schema`.
"""

from components.config.airflow import (
    AIRFLOW_DATABASES,
    AIRFLOW_EXECUTORS,
    AIRFLOW_LOGS_BUCKET,
    AirflowConfig,
    AirflowResources,
    DagsGitConfig,
    NfsLogsConfig,
)
from components.config.backups import EXPIRING_BACKUP_PREFIXES, BackupsConfig
from components.config.errors import ConfigError
from components.config.formats import quantity_value
from components.config.front_door import FRONT_DOOR_HOSTS, FrontDoorConfig, IssuerConfig, OidcConfig
from components.config.loading import decode_settings, load_stack_config, parse_stack_config
from components.config.mlflow import MLFLOW_ENGINES, MlflowConfig
from components.config.node_ports import NODE_PORT_RANGE, NODE_PORT_ROLES
from components.config.object_store import OBJECT_STORE_ENGINES, SEED_BUCKETS, ObjectStoreConfig, RetentionConfig
from components.config.observability import (
    ALERT_RECEIVERS,
    AlertingConfig,
    GrafanaConfig,
    LokiConfig,
    ObservabilityConfig,
    PrometheusConfig,
)
from components.config.postgres import MLFLOW_DATABASES, TEMPORAL_DATABASES, PostgresConfig, RecoveryConfig
from components.config.redis import RedisConfig
from components.config.resources import RESOURCE_NAMES, ResourceSpec
from components.config.serving import ServedModel, ServingConfig
from components.config.stack import (
    BLOCK_KEYS,
    PROJECT,
    R2_SECRET_KEYS,
    SCALAR_KEYS,
    SECRET_KEYS,
    StackConfig,
    StackSettings,
)
from components.config.storage import BINDING_MODES, StorageConfig
from components.config.temporal import TEMPORAL_ENGINES, TemporalConfig
from components.config.vault import SECRET_STORES, VAULT_PHASES, SecretsConfig, VaultConfig

__all__ = [
    "AIRFLOW_DATABASES",
    "AIRFLOW_EXECUTORS",
    "AIRFLOW_LOGS_BUCKET",
    "ALERT_RECEIVERS",
    "BINDING_MODES",
    "BLOCK_KEYS",
    "EXPIRING_BACKUP_PREFIXES",
    "FRONT_DOOR_HOSTS",
    "MLFLOW_DATABASES",
    "MLFLOW_ENGINES",
    "NODE_PORT_RANGE",
    "NODE_PORT_ROLES",
    "OBJECT_STORE_ENGINES",
    "PROJECT",
    "R2_SECRET_KEYS",
    "RESOURCE_NAMES",
    "SCALAR_KEYS",
    "SECRET_KEYS",
    "SECRET_STORES",
    "SEED_BUCKETS",
    "TEMPORAL_DATABASES",
    "TEMPORAL_ENGINES",
    "VAULT_PHASES",
    "AirflowConfig",
    "AirflowResources",
    "AlertingConfig",
    "BackupsConfig",
    "ConfigError",
    "DagsGitConfig",
    "FrontDoorConfig",
    "GrafanaConfig",
    "IssuerConfig",
    "LokiConfig",
    "MlflowConfig",
    "NfsLogsConfig",
    "ObjectStoreConfig",
    "ObservabilityConfig",
    "OidcConfig",
    "PostgresConfig",
    "PrometheusConfig",
    "RecoveryConfig",
    "RedisConfig",
    "ResourceSpec",
    "RetentionConfig",
    "SecretsConfig",
    "ServedModel",
    "ServingConfig",
    "StackConfig",
    "StackSettings",
    "StorageConfig",
    "TemporalConfig",
    "VaultConfig",
    "decode_settings",
    "load_stack_config",
    "parse_stack_config",
    "quantity_value",
]
