"""Model serving: registered MLflow models behind our FastAPI app (`app.py`), one Deployment and Service per model
(`component.py`). `pod.py` says how a pod runs the app (file, command, port, environment) as plain data, which the
real-server tests run as is; `reader.py` is the bootstrap Job's script that creates the read-only MLflow user."""

from __future__ import annotations

from components import mlflow_server
from components.config import StackConfig
from components.facts import CLIENTS, ComponentFacts, EgressLimit, Flow, Metrics, NamespaceFact, NodePortTarget
from components.model_serving.component import (
    APP,
    READER_SECRET,
    READER_USERNAME,
    MlflowReader,
    ModelServing,
    ModelServingArgs,
    ServedModelArgs,
)
from components.model_serving.pod import (
    APP_DIR,
    APP_FILE,
    APP_SOURCE,
    CREDENTIAL_ENV,
    DEFAULT_POLL_SECONDS,
    DOWNLOAD_DIR,
    ENV_ALIAS,
    ENV_DOWNLOAD_DIR,
    ENV_MODEL,
    ENV_POLL,
    ENV_TRACKING_URI,
    METRICS_PATH,
    PORT,
    PROBES,
    READER_SOURCE,
    SERVE_COMMAND,
    serve_env,
)

__all__ = [
    "APP",
    "APP_DIR",
    "APP_FILE",
    "APP_SOURCE",
    "CREDENTIAL_ENV",
    "DEFAULT_POLL_SECONDS",
    "DOWNLOAD_DIR",
    "ENV_ALIAS",
    "ENV_DOWNLOAD_DIR",
    "ENV_MODEL",
    "ENV_POLL",
    "ENV_TRACKING_URI",
    "METRICS_PATH",
    "NAMESPACE",
    "NODE_PORT",
    "PORT",
    "PROBES",
    "READER_SECRET",
    "READER_SOURCE",
    "READER_USERNAME",
    "SERVE_COMMAND",
    "MlflowReader",
    "ModelServing",
    "ModelServingArgs",
    "ServedModelArgs",
    "facts",
    "serve_env",
]

NAMESPACE = "serving"
NODE_PORT = "serving"
"""The `nodePorts` key of the first served model's Service (dev: 30800)."""


def facts(config: StackConfig) -> ComponentFacts:
    """The serving pods receive predictions from client namespaces on PORT (metrics there too), and send to MLflow's
    server port and nowhere else: the server proxies artifacts, so they need neither the object store nor the
    internet (models load in the image's own environment, nothing is pip-installed)."""
    return ComponentFacts(
        "serving",
        namespaces=(NamespaceFact(NAMESPACE),),
        flows=(
            Flow("serving-clients", NAMESPACE, (PORT,), (CLIENTS,)),
            Flow("mlflow-model-serving", mlflow_server.NAMESPACE, (mlflow_server.PORT,), (NAMESPACE,)),
        ),
        egress=(EgressLimit(NAMESPACE, ((mlflow_server.NAMESPACE, mlflow_server.PORT),)),),
        node_ports={NODE_PORT: NodePortTarget(NAMESPACE, PORT)},
        metrics=(Metrics(NAMESPACE, PORT),),
    )
