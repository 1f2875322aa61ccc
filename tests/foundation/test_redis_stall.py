"""A stalled Redis fails requests fast instead of hanging them (defect 5).

A private redis-server is frozen for real (SIGSTOP: the socket stays open, the kernel
still accepts connections, nothing answers) while the API is served by uvicorn. Every
Redis call is bounded by REDIS_TIMEOUT_SECONDS, so /readyz and the cart answer 503 with
the error envelope long before the stall ends, and 200 again once it is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookbazar.config import Settings
from bookbazar.embedded import EmbeddedRedis
from tests.conftest import Infra, create_book, make_settings, register, serve_app

STALL_SECONDS = 8.0
TIMEOUT_SECONDS = 1
# Generous: a bounded call fails after about TIMEOUT_SECONDS; a hanging one waits the
# whole stall out.
FAST_ENOUGH = STALL_SECONDS - 2


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        resume(redis)  # never leave a stopped process behind (stop() would wait on it)
        redis.stop()


def resume(redis: EmbeddedRedis) -> None:
    assert redis.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(redis.process.pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def stalled(redis: EmbeddedRedis, seconds: float) -> AsyncIterator[float]:
    """Freeze the server now and let it go `seconds` later; yields when it resumes
    (a loop.time() deadline). On leaving, the stall is over."""
    assert redis.process is not None
    loop = asyncio.get_running_loop()
    os.kill(redis.process.pid, signal.SIGSTOP)
    handle = loop.call_later(seconds, resume, redis)
    try:
        yield loop.time() + seconds
    finally:
        handle.cancel()
        resume(redis)


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = await call
    return resp, time.monotonic() - started


def assert_fast_503(resp: httpx.Response, elapsed: float) -> None:
    assert elapsed < FAST_ENOUGH, (
        f"{resp.request.url.path} took {elapsed:.1f} s during a {STALL_SECONDS:.0f} s "
        f"Redis stall (answered {resp.status_code})"
    )
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["success"] is False and body["statusCode"] == 503, body
    assert body["message"]


async def test_a_stalled_redis_gives_a_fast_503_then_recovers(
    infra: Infra, settings: Settings, private_redis: EmbeddedRedis
) -> None:
    private = make_settings(
        infra, redis_url=private_redis.url, redis_timeout_seconds=TIMEOUT_SECONDS
    )
    async with serve_app(private) as api, httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        book = await create_book(api.services, stock=5)
        user = await register(http)
        added = await http.post(
            "/api/v1/cart/add", json={"bookId": str(book), "quantity": 2}, headers=user["headers"]
        )
        assert added.status_code == 200, added.text
        cart = await http.get("/api/v1/cart", headers=user["headers"])
        assert cart.status_code == 200, cart.text
        assert (await http.get("/readyz")).status_code == 200

        async with stalled(private_redis, STALL_SECONDS) as resumes_at:
            # Twice: at the start of the stall, and again once the first calls timed out
            # (their connections were dropped; new ones connect but get no answer).
            for _ in range(2):
                (ready, ready_s), (read, read_s) = await asyncio.gather(
                    timed(http.get("/readyz")),
                    timed(http.get("/api/v1/cart", headers=user["headers"])),
                )
                assert_fast_503(ready, ready_s)
                assert ready.json()["errors"][0]["redis"].startswith("unavailable"), ready.text
                assert ready.json()["errors"][0]["postgres"] == "ok", ready.text
                assert_fast_503(read, read_s)
            await asyncio.sleep(max(0.0, resumes_at - asyncio.get_running_loop().time()))

        # The stall is over: served again, with the same cart.
        again = await http.get("/readyz")
        assert again.status_code == 200, again.text
        after = await http.get("/api/v1/cart", headers=user["headers"])
        assert after.status_code == 200, after.text
        assert after.json()["data"] == cart.json()["data"]
