"""Redis client factory and the request dependency."""

from __future__ import annotations

from typing import Annotated, Any, cast
from urllib.parse import unquote, urlsplit

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"

# A cluster client's pools are per node and fail, rather than wait, when full: roomy.
CLUSTER_CONNECTIONS_PER_NODE = 1024


def create_redis(
    url: str,
    *,
    socket_timeout: float | None = 2.0,
    max_connections: int = 128,
    cluster: bool = False,
) -> Redis:
    """A pooled client for requests, scripts and enqueueing (never for blocking reads:
    bullmq's workers open their own connections without a timeout). A stalled Redis
    fails a call within `socket_timeout` seconds (503) instead of hanging it. Under a
    burst the pool waits for a free connection (up to 10 s) instead of failing at once.

    With `cluster`, `url` is any node of a Redis Cluster and the client is redis-py's
    RedisCluster. It answers the same commands for keys of one slot (every script's keys
    share a hash tag), so it is typed as Redis here rather than in every caller."""
    if url.startswith(SENTINEL_SCHEME + "://"):
        return sentinel_primary(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            max_connections=max_connections,
            health_check_interval=30,
        )
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


def sentinel_primary(url: str, **kwargs: Any) -> Redis:
    """A client of the primary Sentinel names, followed across failovers (each new
    connection asks a Sentinel where the primary is now). `url` as python-socketio reads
    it: redis+sentinel://[:password@]host:port[,host:port...]/db/service"""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        sentinels.append((name, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if len(path) != 2 or not path[0].isdigit():
        raise ValueError(f"a Sentinel URL ends in /<db>/<service>: {url}")
    password = unquote(credentials.partition(":")[2]) if credentials else None
    sentinel = Sentinel(sentinels, socket_timeout=kwargs.get("socket_timeout"))  # type: ignore[no-untyped-call]
    primary = sentinel.master_for(
        path[1], db=int(path[0]), password=password, decode_responses=True, **kwargs
    )
    return cast(Redis, primary)


async def _request_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


RedisDep = Annotated[Redis, Depends(_request_redis)]
