"""`mlops-platform:nodePorts`: services reachable from the host (dev on Kind), each on its own NodePort."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from components.config.base import null_as_empty
from components.config.formats import whole
from components.config.problems import Problem, reject

NODE_PORT_RANGE = range(30000, 32768)
NodePort = whole(NODE_PORT_RANGE.start, NODE_PORT_RANGE.stop - 1)


# A TypedDict validates to a plain dict of the roles that are set: what components read as `config.node_ports`.
@with_config(ConfigDict(extra="forbid"))
class NodePortRoles(TypedDict, total=False):
    """Host-reachable NodePorts by service (30000-32767, each unique); absent: ClusterIP Services only."""

    minioApi: Annotated[NodePort, Field(description="MinIO's S3 API (seed: 30900).")]
    minioConsole: Annotated[NodePort, Field(description="MinIO's console (seed: 30901).")]
    mlflow: Annotated[NodePort, Field(description="MLflow's UI and API (seed: 30500).")]
    postgres: Annotated[NodePort, Field(description="PostgreSQL's primary (seed: 30543).")]
    redis: Annotated[NodePort, Field(description="Valkey (seed: 30679).")]
    temporalGrpc: Annotated[NodePort, Field(description="Temporal's frontend gRPC (seed: 30700).")]
    temporalUi: Annotated[NodePort, Field(description="Temporal's web UI (seed: 30233).")]
    prometheus: Annotated[NodePort, Field(description="Prometheus (seed: 30090).")]
    grafana: Annotated[NodePort, Field(description="Grafana (seed: 30030).")]
    loki: Annotated[NodePort, Field(description="Loki's push and query API (seed: 30100).")]
    serving: Annotated[NodePort, Field(description="The first model of serving.models (dev: 30800).")]
    airflow: Annotated[NodePort, Field(description="Airflow's api-server: UI and REST API (dev: 30808).")]


NODE_PORT_ROLES = tuple(NodePortRoles.__annotations__)
"""Services that can be given a NodePort (the seed port map: 30900, 30901, 30500, 30543, 30679, 30700, 30233,
30090, 30030, 30100), model serving's 30800 and Airflow's 30808."""


def _unique(ports: dict[str, int]) -> dict[str, int]:
    owner: dict[int, str] = {}
    problems = []
    for role in NODE_PORT_ROLES:
        port = ports.get(role)
        if port in owner:
            problems.append(Problem(role, port, f"already used by nodePorts.{owner[port]}; every NodePort must be unique"))
        elif port is not None:
            owner[port] = role
    reject(problems)
    return ports


# `nodePorts:` with nothing under it is YAML null: no NodePorts, as if it were absent.
NodePorts = Annotated[NodePortRoles, BeforeValidator(null_as_empty), AfterValidator(_unique)]
