"""What one Redis shard can do for the stock ledger: reserve + release pairs (the
`stock_reserve.lua` and `stock_finish.lua` scripts every order runs), driven by several
client processes against one Redis, for a few seconds.

All stock keys share one hash tag (`{stock}`), so on Redis Cluster they live on one shard:
this is that shard's ceiling. Reported: pairs/s achieved, and Redis's own CPU per pair
(INFO cpu), whose inverse is the rate one Redis core could carry were the clients not
sharing the box with it.

    python -m benchmarks.stock_scripts [--redis-url URL] [--seconds 10] [--clients 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import time
import uuid
from typing import Any

BOOKS = 200
STOCK = 10**9


def _redis_cpu(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _drive(redis_url: str, seconds: float, concurrency: int, books: list[str]) -> int:
    from bookbazar.inventory.service import Hold, Inventory, Reserve, new_token
    from bookbazar.lua import Scripts
    from bookbazar.redis import create_redis

    redis = create_redis(redis_url, max_connections=concurrency)
    inventory = Inventory(redis, Scripts(redis), None)  # type: ignore[arg-type]
    ids = [uuid.UUID(b) for b in books]
    done = 0
    deadline = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal done
        rng = random.Random()
        while time.monotonic() < deadline:
            lines = [(book, rng.randint(1, 2)) for book in rng.sample(ids, rng.randint(1, 3))]
            hold = Hold(uuid.uuid4(), new_token())
            reserved = await inventory.reserve(hold, lines)
            assert reserved.status is Reserve.OK, reserved
            await inventory.release(hold)
            done += 1

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    await redis.aclose()
    return done


def _client(redis_url: str, seconds: float, concurrency: int, books: list[str], out: Any) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    out.put(asyncio.run(_drive(redis_url, seconds, concurrency, books)))


async def _prepare(redis_url: str) -> tuple[list[str], float]:
    from bookbazar.inventory import keys
    from bookbazar.redis import create_redis

    redis = create_redis(redis_url)
    books = [str(uuid.uuid4()) for _ in range(BOOKS)]
    await redis.mset({keys.avail(uuid.UUID(b)): STOCK for b in books})
    cpu = _redis_cpu(await redis.info("cpu"))
    await redis.aclose()
    return books, cpu


async def _finish(redis_url: str, books: list[str]) -> tuple[float, list[int]]:
    from bookbazar.inventory import keys
    from bookbazar.redis import create_redis

    redis = create_redis(redis_url)
    cpu = _redis_cpu(await redis.info("cpu"))
    levels = [int(v) for v in await redis.mget([keys.avail(uuid.UUID(b)) for b in books])]
    await redis.delete(*[keys.avail(uuid.UUID(b)) for b in books])
    await redis.aclose()
    return cpu, levels


def measure(redis_url: str, seconds: float, clients: int, concurrency: int) -> dict[str, Any]:
    books, cpu_before = asyncio.run(_prepare(redis_url))
    queue: Any = multiprocessing.get_context("spawn").Queue()
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=_client, args=(redis_url, seconds, concurrency, books, queue)
        )
        for _ in range(clients)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    pairs = sum(queue.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    elapsed = time.monotonic() - started
    cpu_after, levels = asyncio.run(_finish(redis_url, books))
    redis_cpu = cpu_after - cpu_before
    per_pair_us = redis_cpu / pairs * 1e6 if pairs else None
    return {
        "pairs": pairs,
        "seconds": round(elapsed, 2),
        "pairs_per_s": round(pairs / elapsed, 1),
        "redis_cpu_s": round(redis_cpu, 3),
        "redis_cpu_us_per_pair": round(per_pair_us, 1) if per_pair_us else None,
        "one_core_ceiling_pairs_per_s": round(1e6 / per_pair_us) if per_pair_us else None,
        "exact": all(level == STOCK for level in levels),  # every unit came back
        "clients": clients,
        "concurrency_per_client": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stock_scripts")
    parser.add_argument("--redis-url", help="a Redis to use (default: an embedded one)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=32, help="pairs in flight per client")
    args = parser.parse_args()
    embedded = None
    url = args.redis_url
    if url is None:
        import tempfile
        from pathlib import Path

        from bookbazar.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="bb-stock-bench-")))
        embedded.start()
        url = embedded.url
    try:
        result = measure(url, args.seconds, args.clients, args.concurrency)
    finally:
        if embedded is not None:
            embedded.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
