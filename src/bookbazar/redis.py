"""Redis client factory and the request dependency."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

# A cluster client's pools are per node and fail, rather than wait, when full: roomy.
CLUSTER_CONNECTIONS_PER_NODE = 1024


def create_redis(
    url: str, *, socket_timeout: float = 2.0, max_connections: int = 128, cluster: bool = False
) -> Redis:
    """A pooled client for requests, scripts and enqueueing (never for blocking reads:
    bullmq's workers open their own connections without a timeout). A stalled Redis
    fails a call within `socket_timeout` seconds (503) instead of hanging it. Under a
    burst the pool waits for a free connection (up to 10 s) instead of failing at once.

    With `cluster`, `url` is any node of a Redis Cluster and the client is redis-py's
    RedisCluster. It answers the same commands for keys of one slot (every script's keys
    share a hash tag), so it is typed as Redis here rather than in every caller."""
    if cluster:
        client = RedisCluster.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            max_connections=CLUSTER_CONNECTIONS_PER_NODE,
        )
        return cast(Redis, client)
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=10,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


async def _request_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(_request_redis)]
