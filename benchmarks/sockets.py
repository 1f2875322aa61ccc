"""Scenario `sockets`: N idle Socket.IO connections held against the API process.

Connects N authenticated sockets (WebSocket transport, `auth: {token}`, the benchmark
users' tokens in turn) with bounded concurrency, holds them idle, and reports the API
process's RSS before, while holding and after closing, with the connect latencies.

The sockets are held by `benchmarks/sockets_probe.py`'s client (`Probe` and
`hold_socket`) when that module provides them, so both tools measure the same client;
otherwise by `benchmarks/sio.py`. Unlike the probe's own command, which starts a fresh
API process, this measures the API process under benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import time
from typing import Any

import aiohttp
import httpx

from benchmarks.load import Progress, Step, describe_error
from benchmarks.scenarios import Context, ScenarioResult
from benchmarks.sio import SioClient, SocketRefused

WS_PATH = "/socket.io/?EIO=4&transport=websocket"


class ProbeSocket:
    """One socket held by sockets_probe.hold_socket, with SioClient's small interface."""

    def __init__(self, module: Any, probe: Any, token: str) -> None:
        self.module = module
        self.probe = probe
        self.token = token
        self.task: asyncio.Task[None] | None = None
        self.ws: object | None = None  # set once connected (as SioClient.ws)
        self.disconnect_reason: str | None = None

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.task is not None and not self.task.done()

    async def connect(self) -> None:
        ready = asyncio.Event()
        failed_before = self.probe.failed
        self.task = asyncio.create_task(self.module.hold_socket(self.probe, self.token, ready))
        await ready.wait()
        if self.task.done() or self.probe.failed > failed_before:
            raise ConnectionError("sockets_probe.hold_socket could not connect")
        self.ws = True
        self.task.add_done_callback(self._ended)

    def _ended(self, _task: asyncio.Task[None]) -> None:
        if self.disconnect_reason is None:
            self.disconnect_reason = "connection ended"

    async def close(self) -> None:
        if self.task is not None:
            self.disconnect_reason = self.disconnect_reason or "closed by the benchmark"
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def _probe_module() -> Any:
    """benchmarks.sockets_probe if it offers the client we reuse, else None."""
    try:
        module = importlib.import_module("benchmarks.sockets_probe")
    except Exception:
        return None
    if hasattr(module, "Probe") and hasattr(module, "hold_socket"):
        return module
    return None


_GAUGE = re.compile(r"^bookbazar_sockets_connected(?:\{[^}]*\})? ([0-9.e+]+)$", re.MULTILINE)


async def _gauge(base_url: str) -> float | None:
    """bookbazar_sockets_connected from /metrics (None when unavailable)."""
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            r = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    m = _GAUGE.search(r.text) if r.status_code == 200 else None
    return float(m.group(1)) if m else None


def _api_rss(ctx: Context) -> int | None:
    group = ctx.service.groups.get("api")
    return group.rss_bytes() if group is not None else None


async def run_sockets(ctx: Context, count: int | None = None) -> ScenarioResult:
    p = ctx.profile
    n = count or p.sockets
    result = ScenarioResult("sockets")
    users = await ctx.fixtures.ensure_users(p.users)
    c = min(p.sockets_connect_concurrency, n)
    step = Step("sockets", f"n={n}", c, frozenset({"connected"}))
    rss_before = _api_rss(ctx)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    tokens = [users[i % len(users)].token for i in range(n)]
    module = _probe_module()
    clients: list[Any]
    if module is not None:
        ws_url = ctx.service.base_url.replace("http", "ws", 1) + WS_PATH
        probe = module.Probe(session, ws_url)
        clients = [ProbeSocket(module, probe, t) for t in tokens]
        client_name = "benchmarks.sockets_probe.hold_socket"
    else:
        clients = [SioClient(session, ctx.service.base_url, t) for t in tokens]
        client_name = "benchmarks.sio.SioClient"
    step.extra["client"] = client_name
    next_index = 0

    async def connect_worker() -> None:
        nonlocal next_index
        while next_index < n:
            client = clients[next_index]
            next_index += 1
            t0 = time.perf_counter()
            try:
                await client.connect()
                step.record("connected", time.perf_counter() - t0)
            except SocketRefused as exc:
                step.record("refused", None)
                if len(step.notes) < 3:
                    step.notes.append(f"refused: {exc}")
            except Exception as exc:
                step.record(describe_error(exc), None)
                if len(step.notes) < 3:
                    step.notes.append(repr(exc)[:300])

    print(f"[sockets] connecting {n} sockets ({c} at a time), then holding {p.sockets_hold:g} s")
    try:
        with Progress(step):
            async with ctx.meter.measure(step, profile=True):
                await asyncio.gather(*(connect_worker() for _ in range(c)))
        connected = sum(1 for s in clients if s.connected)
        await asyncio.sleep(p.sockets_hold)
        rss_held = _api_rss(ctx)
        gauge = await _gauge(ctx.service.base_url)
        still = sum(1 for s in clients if s.connected)
        dropped = [s.disconnect_reason for s in clients if s.ws is not None and not s.connected]
    finally:
        await asyncio.gather(*(s.close() for s in clients), return_exceptions=True)
        await session.close()
    await asyncio.sleep(2.0)
    rss_after = _api_rss(ctx)
    mb = 2**20
    per_socket_kb = None
    projected_5000 = None
    if rss_before is not None and rss_held is not None and connected:
        per_socket_kb = round((rss_held - rss_before) / connected / 1024, 1)
        projected_5000 = round((rss_before + 5000 * (rss_held - rss_before) / connected) / mb, 1)
    result.verdict = {
        "sockets": n,
        "connected": connected,
        "still_connected_after_hold": still,
        "dropped_during_hold": len(dropped),
        "drop_reasons": sorted({str(r) for r in dropped})[:3],
        "metrics_gauge": gauge,
        "api_rss_mb_before": None if rss_before is None else round(rss_before / mb, 1),
        "api_rss_mb_held": None if rss_held is None else round(rss_held / mb, 1),
        "api_rss_mb_after_close": None if rss_after is None else round(rss_after / mb, 1),
        "api_kb_per_socket": per_socket_kb,
        "api_rss_mb_projected_5000": projected_5000,
    }
    if step.elapsed > 0:
        result.verdict["connect_rate_per_s"] = round(connected / step.elapsed, 1)
    result.steps.append(step)
    return result
