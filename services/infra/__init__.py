"""Local infrastructure: a Tansu broker and a redis-server on loopback ports."""

from __future__ import annotations

from services.infra.processes import (
    LocalServer,
    find_free_port,
    find_free_ports,
    start_broker,
    start_redis,
    tansu_binary,
)

__all__ = [
    "LocalServer",
    "find_free_port",
    "find_free_ports",
    "start_broker",
    "start_redis",
    "tansu_binary",
]
