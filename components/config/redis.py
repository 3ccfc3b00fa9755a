"""`mlops-platform:redis`: Valkey (Redis-compatible) for cache, pub/sub and WebSocket state."""

from __future__ import annotations

from components.config.base import Block
from components.config.formats import Quantity
from components.config.resources import ResourceSpec


class RedisConfig(Block):
    """Valkey (Redis-compatible) for cache, pub/sub and WebSocket state."""

    size: Quantity = "2Gi"
    """Claim size for the append-only file."""
    resources: ResourceSpec = ResourceSpec({"cpu": "50m", "memory": "64Mi"}, {"cpu": "500m", "memory": "256Mi"})
    """Requests and limits of the server."""
