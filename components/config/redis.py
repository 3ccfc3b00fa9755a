"""`mlops-platform:redis`: Valkey (Redis-compatible) for cache, pub/sub and WebSocket state."""

from __future__ import annotations

from pydantic import Field

from components.config.base import Block
from components.config.formats import Quantity
from components.config.resources import ResourceSpec


class RedisConfig(Block):
    """Valkey (Redis-compatible) for cache, pub/sub and WebSocket state."""

    size: Quantity = Field("2Gi", description="Claim size for the append-only file.")
    resources: ResourceSpec = Field(
        ResourceSpec({"cpu": "50m", "memory": "64Mi"}, {"cpu": "500m", "memory": "256Mi"}),
        description="Requests and limits of the server.",
    )
