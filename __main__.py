"""mlops-platform, the architecture on one screen: typed config -> platform plan -> components, in dependency order.
The plan (components/plan.py) decides; each component's module holds its own facts (ports, buckets, databases);
components/assembly.py and components/operations.py turn the plan into each component's args."""

from components.airflow.component import AirflowStack
from components.assembly import (
    airflow_args,
    backup_plugin_args,
    cert_manager_args,
    cnpg_args,
    foundation_args,
    front_door_args,
    mlflow_args,
    network_args,
    object_store_args,
    observability_args,
    postgres_args,
    redis_args,
    secret_sync_args,
    serving_args,
    temporal_args,
    vault_args,
)
from components.backups import Backups
from components.cert_manager import CertManager
from components.cluster import ClusterFoundation
from components.cnpg_backup_plugin import CnpgBackupPlugin
from components.cnpg_operator import CnpgOperator
from components.config import load_stack_config
from components.front_door import FrontDoor
from components.mlflow_server import MlflowServer
from components.model_serving import ModelServing
from components.monitoring import PlatformMonitoring
from components.network_policies import NetworkPolicies
from components.object_store import ObjectStore
from components.observability import ObservabilityStack
from components.operations import backups_args, export_outputs, export_vault_install_steps, monitoring_args
from components.plan import platform_plan
from components.postgres_cluster import PostgresCluster
from components.providers import providers_for
from components.redis import Redis
from components.secret_store import KubernetesSecrets
from components.secret_sync import SecretSync
from components.temporal_stack import TemporalStack
from components.vault_server import VaultServer

config = load_stack_config()  # typed and validated: one error lists every bad key
plan = platform_plan(config)  # pure data: what exists, where it runs, who talks to whom
opts = providers_for(config)  # the kubernetes provider, plus the cloud provider only where the stack uses one

# Foundation: namespaces with their Pod Security levels, the Retain StorageClass, cert-manager (Vault's certificate,
# the backup plugin's), Vault, default-deny policies.
foundation = ClusterFoundation("cluster", foundation_args(plan), opts=opts)
certificates = CertManager("cert-manager", cert_manager_args(plan, foundation), opts=opts) if plan.has("cert-manager") else None
vault = VaultServer("vault", vault_args(plan, foundation, certificates), opts=opts) if plan.has("vault") else None
NetworkPolicies("network", network_args(plan, foundation), opts=opts)

if plan.installing_vault:
    export_vault_install_steps(plan, foundation)
else:
    # Secrets: Kubernetes Secrets, or Vault synced into Secrets of the same names by External Secrets.
    sync = SecretSync("secrets", secret_sync_args(plan, foundation, vault), opts=opts) if plan.has("secrets") else None
    secrets = sync.store if sync else KubernetesSecrets()
    # Storage, with observability first (MinIO scraped from the start) or right after it (Loki's chunks in a bucket).
    observability = None
    if plan.observability_first:
        observability = ObservabilityStack("observability", observability_args(plan, foundation, secrets), opts=opts)
    store = ObjectStore("objects", object_store_args(plan, foundation, secrets, observability), opts=opts)
    if plan.has("observability") and observability is None:
        observability = ObservabilityStack("observability", observability_args(plan, foundation, secrets, store), opts=opts)
    # Data
    operator = CnpgOperator("cnpg", cnpg_args(foundation), opts=opts)
    # Continuous WAL archiving: the barman-cloud plugin (its certificates from cert-manager).
    plugin = (
        CnpgBackupPlugin("cnpg-backup", backup_plugin_args(foundation, operator, certificates), opts=opts)
        if plan.has("cnpg-backup") and certificates
        else None
    )
    postgres = PostgresCluster("postgres", postgres_args(plan, foundation, secrets, operator, plugin, store, observability), opts=opts)
    redis = Redis("redis", redis_args(plan, foundation, secrets), opts=opts)
    # Apps: MLflow, the registered models it serves (each pod following its alias), Temporal, Airflow.
    mlflow = MlflowServer("mlflow", mlflow_args(plan, foundation, secrets, postgres, store, observability), opts=opts)
    serving = ModelServing("serving", serving_args(plan, foundation, secrets, mlflow, observability), opts=opts) if plan.has("serving") else None
    temporal = TemporalStack("temporal", temporal_args(plan, foundation, postgres, observability), opts=opts)
    # Pipelines: Airflow on its own database, its example DAG training and registering a model in MLflow.
    pipelines = AirflowStack("airflow", airflow_args(plan, foundation, secrets, postgres, store, observability), opts=opts) if plan.has("airflow") else None
    # The way in from outside: one Gateway, TLS from cert-manager, single sign-on.
    door = FrontDoor("front-door", front_door_args(plan, foundation, secrets, certificates), opts=opts) if plan.has("front-door") else None
    # Backups, then the alerts and dashboards that watch everything above.
    backups = Backups("backups", backups_args(plan, foundation, store, postgres, mlflow, vault), opts=opts)
    if observability:
        PlatformMonitoring("monitoring", monitoring_args(plan, foundation, observability, backups), opts=opts)
    export_outputs(
        plan, foundation=foundation, observability_stack=observability, store=store, postgres=postgres, redis=redis,
        mlflow=mlflow, serving=serving, temporal=temporal, airflow=pipelines, backups=backups, front_door=door,
    )
