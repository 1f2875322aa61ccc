"""How many idle Socket.IO connections one `bookbazar api` process holds, and its memory.

A quick, bounded local probe (not a test): starts one API process on loopback (embedded
PostgreSQL and Redis unless DATABASE_URL and REDIS_URL are set), opens N authenticated
WebSocket connections speaking the Engine.IO 4 / Socket.IO 5 protocol directly (one
aiohttp session, so the client side stays light), answers the server's pings, then
prints the server's connected-socket gauge and its RSS. Finally it sends one event to
every user through a worker-style write-only emitter and times the fan-out.

    .venv/bin/python benchmarks/sockets_probe.py --sockets 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import psutil

from bookbazar.auth.tokens import issue_token
from bookbazar.embedded import EmbeddedServices, free_port
from bookbazar.realtime.emitter import Emitter
from bookbazar.redis import create_redis


@dataclass
class Probe:
    session: aiohttp.ClientSession
    url: str
    connected: int = 0
    failed: int = 0
    received: int = 0
    all_received: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def hold_socket(probe: Probe, token: str, ready: asyncio.Event) -> None:
    """One client: handshake, CONNECT with auth {token}, then pong every ping."""
    try:
        async with probe.session.ws_connect(probe.url, heartbeat=None, autoping=True) as ws:
            opened = await ws.receive_str(timeout=30)
            assert opened.startswith("0"), opened
            await ws.send_str("40" + json.dumps({"token": token}))
            reply = await ws.receive_str(timeout=30)
            if not reply.startswith("40"):
                raise RuntimeError(reply)
            probe.connected += 1
            ready.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                if msg.data == "2":
                    await ws.send_str("3")
                elif msg.data.startswith("42"):
                    probe.received += 1
                    if probe.received >= probe.expected > 0:
                        probe.all_received.set()
    except Exception as exc:
        if not ready.is_set():
            probe.failed += 1
            print(f"connect failed: {exc!r}"[:200], file=sys.stderr)
            ready.set()


def start_api(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bookbazar", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


async def wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=1) as c:
        for _ in range(400):
            if process.poll() is not None:
                raise RuntimeError("the API process exited during start-up")
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get(f"{base}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the API process did not become healthy")


async def gauge(base: str) -> float:
    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(f"{base}/metrics")).text
    for line in text.splitlines():
        if line.startswith("bookbazar_sockets_connected "):
            return float(line.split()[1])
    return float("nan")


def mib(n: int) -> float:
    return n / (1024 * 1024)


async def run(sockets: int, batch: int, database_url: str, redis_url: str, work: Path) -> None:
    secret = secrets.token_urlsafe(48)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "BOOKBAZAR_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": secret,
        "PORT": str(port),
    }
    api = start_api(port, env, work / "api.log")
    try:
        await wait_healthy(base, api)
        server = psutil.Process(api.pid)
        await asyncio.sleep(0.5)
        rss_idle = server.memory_info().rss
        users = [uuid.uuid4() for _ in range(sockets)]
        tokens = [issue_token(secret, u, "customer", 3600) for u in users]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            probe = Probe(session, f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
            started = time.perf_counter()
            for i in range(0, sockets, batch):
                readies = []
                for token in tokens[i : i + batch]:
                    ready = asyncio.Event()
                    readies.append(ready)
                    probe.tasks.append(asyncio.create_task(hold_socket(probe, token, ready)))
                await asyncio.gather(*(r.wait() for r in readies))
            connect_s = time.perf_counter() - started
            await asyncio.sleep(2.0)
            rss_full = server.memory_info().rss
            server_count = await gauge(base)
            cpu = server.cpu_percent(interval=1.0)

            # One event per user from a worker-style write-only emitter.
            redis = create_redis(redis_url)
            emitter = Emitter(redis)
            probe.expected = probe.connected
            fan_start = time.perf_counter()
            for user in users:
                await emitter.emit_to_user(user, "cart:update", {"event": "cart:cleared"})
            emit_s = time.perf_counter() - fan_start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.all_received.wait(), 60)
            fan_s = time.perf_counter() - fan_start
            await redis.aclose()

            per_socket = (rss_full - rss_idle) / max(1, probe.connected)
            print(f"sockets requested          {sockets}")
            print(f"connected (client side)    {probe.connected}  failed {probe.failed}")
            print(f"connected (server gauge)   {server_count:.0f}")
            print(f"time to connect all        {connect_s:.1f} s ({batch} at a time)")
            print(f"API RSS idle               {mib(rss_idle):.1f} MiB")
            print(f"API RSS with all connected {mib(rss_full):.1f} MiB")
            print(f"per socket                 {per_socket / 1024:.1f} KiB")
            print(f"API CPU while idle-held    {cpu:.0f} %")
            print(
                f"fan-out: {probe.connected} emits in {emit_s:.2f} s, "
                f"{probe.received}/{probe.expected} delivered in {fan_s:.2f} s"
            )
            for task in probe.tasks:
                task.cancel()
            await asyncio.gather(*probe.tasks, return_exceptions=True)
    finally:
        api.terminate()
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="bb-sockets-probe-") as tmp:
        work = Path(tmp)
        embedded: EmbeddedServices | None = None
        if not database_url or not redis_url:
            embedded = EmbeddedServices(work / "embedded")
            embedded.start()
            database_url = database_url or embedded.postgres.create_database("bookbazar_probe")
            redis_url = redis_url or embedded.redis.url
        try:
            asyncio.run(run(args.sockets, args.batch, database_url, redis_url, work))
        finally:
            if embedded is not None:
                embedded.stop()


if __name__ == "__main__":
    main()
