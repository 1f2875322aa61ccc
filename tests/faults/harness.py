"""Crash-point harness: the real `bookbazar api` / `worker` processes started with
FAULT_POINTS (they SIGKILL themselves at the named point), restarted without it, and the
checks every crash must pass afterwards (DESIGN.md §7: no stock leaked or double-counted,
no order stuck, no event lost, no email sent twice)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import socketio
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar.config import Settings
from bookbazar.kit.queues import ALL_QUEUES
from bookbazar.services import Services
from tests.conftest import free_port
from tests.conftest import process_env as shared_process_env
from tests.orders.conftest import available, held_in_db, on_hand

# Worker settings for a process that must not repair anything on its own schedule.
QUIET_SWEEPER = {"SWEEPER_INTERVAL_SECONDS": "3600", "PENDING_GRACE_SECONDS": "60"}
# Worker settings for the restarted process: its sweepers repair within about a second.
FAST_SWEEPER = {"SWEEPER_INTERVAL_SECONDS": "0.3", "PENDING_GRACE_SECONDS": "1"}


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    return shared_process_env(settings, **{"FAULT_POINTS": "", **extra})


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    url: str = ""

    def tail(self) -> str:
        return f"--- {self.log.name}\n{self.log.read_text(errors='replace')[-4000:]}"

    async def killed(self, timeout: float = 30.0) -> None:
        """Wait for the process to SIGKILL itself at its crash point."""
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} never reached its crash point\n{self.tail()}"
            ) from None
        assert code == -signal.SIGKILL, f"{self.name} exited {code}\n{self.tail()}"
        assert "fault_injected" in self.log.read_text(errors="replace"), self.tail()

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Launcher:
    """Starts api/worker processes on the test's PostgreSQL and Redis; stops what is left."""

    settings: Settings
    logs: Path
    procs: list[Proc] = field(default_factory=list)

    async def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = self.logs / f"{len(self.procs):02d}-{name}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bookbazar",
                *args,
                env=env,
                cwd=self.logs,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    async def api(self, faults: str = "", **env: str) -> Proc:
        """`bookbazar api` on a free port, ready (PostgreSQL and Redis reachable)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = await self._spawn(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(port)],
            process_env(self.settings, FAULT_POINTS=faults, PORT=str(port), PUBLIC_URL=url, **env),
        )
        proc.url = url
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(300):
                assert proc.process.returncode is None, proc.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        return proc
                await asyncio.sleep(0.05)
        raise AssertionError("the API did not become ready\n" + proc.tail())

    async def worker(self, faults: str = "", **env: str) -> Proc:
        """`bookbazar worker`, started (its queues and loops are running)."""
        proc = await self._spawn(
            "worker",
            ["worker", "--concurrency", "4"],
            process_env(self.settings, FAULT_POINTS=faults, **{**QUIET_SWEEPER, **env}),
        )
        for _ in range(300):
            if "worker_started" in proc.log.read_text(errors="replace"):
                return proc
            if proc.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError("the worker did not start\n" + proc.tail())

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    async def close(self) -> None:
        for proc in self.procs:
            await proc.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, launcher: Launcher, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{launcher.tails()}")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- BullMQ after a kill


async def requeue_stalled(redis: Redis, services: Services) -> list[str]:
    """What BullMQ's stalled-job check does once a killed worker's job locks have expired
    (lockDuration 30 s, checked every 15 s in production), done at once: every job the
    dead worker left active goes back to wait, to be run again by the next worker.
    Uses BullMQ's own moveStalledJobsToWait script (first call marks, second moves)."""
    moved: list[str] = []
    for name in ALL_QUEUES:
        active = await redis.lrange(f"bull:{name}:active", 0, -1)  # type: ignore[misc]
        if not active:
            continue
        for job_id in active:
            await redis.delete(f"bull:{name}:{job_id}:lock")
        backend = services.queues.get(name).backend
        for _ in range(2):
            await redis.delete(f"bull:{name}:stalled-check")
            moved += [str(j) for j in await backend.moveStalledJobsToWait(1, 15_000)]
    return moved


async def job_state(services: Services, queue: str, job_id: str) -> str:
    job = await services.queues.get(queue).getJob(job_id)
    return "missing" if job is None else str(await job.getState())


# ---------------------------------------------------------------- the invariants


async def assert_stock_exact(services: Services, books: list[uuid.UUID]) -> None:
    """Nothing leaked or double-counted: no reservation outlives its order, every order
    awaiting payment holds its units, each counter is on hand - held (PostgreSQL's view),
    and a full reconcile finds nothing to correct."""
    held = {str(h.order_id) for h in await services.inventory.holds()}
    async with services.sessionmaker() as session:
        waiting = {
            str(r.id)
            for r in await session.execute(
                text("SELECT id FROM orders WHERE status = 'PAYMENT_PENDING'")
            )
        }
    assert held == waiting, f"reservations {held} != orders awaiting payment {waiting}"
    for book in books:
        have, shelf, pending = (
            await available(services, book),
            await on_hand(services, book),
            await held_in_db(services, book),
        )
        assert have == shelf - pending, f"book {book}: available {have} != {shelf} - {pending}"
        assert have >= 0
    assert (await services.inventory.reconcile()).corrected == {}


async def assert_nothing_stuck(services: Services) -> None:
    """No order left half-placed, none awaiting payment past its deadline."""
    async with services.sessionmaker() as session:
        stuck = (
            await session.execute(
                text(
                    "SELECT id, status, expires_at FROM orders WHERE status = 'PENDING' "
                    "OR (status = 'PAYMENT_PENDING' AND expires_at < now())"
                )
            )
        ).all()
    assert not stuck, f"stuck orders: {stuck}"


async def outbox_events(services: Services, order_id: str) -> list[tuple[str, str, bool]]:
    """(event id, type, relayed) of the order's events, oldest first."""
    async with services.sessionmaker() as session:
        rows = await session.execute(
            text(
                "SELECT id, type, sent_at IS NOT NULL AS sent FROM outbox_events "
                "WHERE order_id = :o ORDER BY created_at"
            ),
            {"o": uuid.UUID(order_id)},
        )
        return [(str(r.id), str(r.type), bool(r.sent)) for r in rows]


async def all_relayed(services: Services) -> bool:
    async with services.sessionmaker() as session:
        left = (
            await session.execute(text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL"))
        ).scalar_one()
    return int(left) == 0


# ---------------------------------------------------------------- a Socket.IO client


@dataclass
class Listener:
    """A Socket.IO client as a browser tab would be: records every event with an id."""

    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        async def on_any(event: str, data: Any = None, *_: Any) -> None:
            if isinstance(data, dict):
                self.events.append((event, data))

        self.sio.on("*", on_any)

    @property
    def last_id(self) -> str | None:
        ids = [d["id"] for _, d in self.events if "id" in d]
        return ids[-1] if ids else None

    def of(self, order_id: str) -> list[tuple[str, str]]:
        """(type, event id) of the order's events received, duplicates included."""
        return [(e, d["id"]) for e, d in self.events if d.get("orderId") == order_id]

    async def connect(self, url: str, token: str) -> None:
        await self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)

    async def wait_for(self, event: str, order_id: str, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (event, order_id) not in {(e, d.get("orderId")) for e, d in self.events}:
            if loop.time() > deadline:
                raise AssertionError(f"no {event} for {order_id}: {self.events}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


async def resume(url: str, token: str, last_event_id: str | None) -> list[tuple[str, Any]]:
    """Reconnect as a client that saw `last_event_id` last and ask for what it missed."""
    listener = Listener()
    await listener.connect(url, token)
    try:
        ack = await listener.sio.call("resume", {"lastEventId": last_event_id}, timeout=5)
        assert ack["success"], ack
        count = ack["data"]["count"]
        for _ in range(100):  # the events precede the ack on the socket; be lenient
            if len(listener.events) >= count:
                break
            await asyncio.sleep(0.02)
        return list(listener.events)
    finally:
        await listener.close()


async def caught_up(listener: Listener, url: str, token: str) -> list[tuple[str, Any]]:
    """Everything a client has after reconnecting: what it received live, then what
    `resume` from the last id it saw sends."""
    return [*listener.events, *await resume(url, token, listener.last_id)]


def ids_by_type(events: list[tuple[str, Any]], order_id: str) -> dict[str, set[str]]:
    """The order's event ids per type (a duplicate delivery carries the same id)."""
    out: dict[str, set[str]] = {}
    for name, data in events:
        if isinstance(data, dict) and data.get("orderId") == order_id:
            out.setdefault(name, set()).add(data["id"])
    return out
