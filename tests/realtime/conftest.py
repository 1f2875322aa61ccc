"""Realtime test helpers: real Socket.IO clients (python-socketio over aiohttp, and the
stock Node socket.io-client), a second API instance as its own process, and users."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from bookbazar.config import Settings
from bookbazar.realtime.emitter import Emitter
from bookbazar.realtime.server import Gateway, gateway_of
from tests.conftest import REPO_ROOT, LiveServer, free_port, process_env, register

NODE_DIR = REPO_ROOT / "tests" / "node"
# After the expected copy arrives, how long we keep listening to prove no second one does.
QUIET_PERIOD = 0.4


@dataclass
class Received:
    event: str
    data: Any


@dataclass
class SocketClient:
    """A python-socketio client that records every event it receives, in order."""

    sio: socketio.AsyncClient
    events: list[Received] = field(default_factory=list)
    connect_errors: list[Any] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, event: str) -> list[Any]:
        return [r.data for r in self.events if r.event == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """Wait until at least `count` `event`s arrived; returns all of them so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.of(event)) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"expected {count} {event!r}, got {len(self.of(event))}: {self.events}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.of(event)

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=5)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


def new_client() -> SocketClient:
    client = SocketClient(socketio.AsyncClient(reconnection=False))

    async def on_any(event: str, data: Any = None, *_: Any) -> None:
        client.events.append(Received(event, data))
        client._arrived.set()

    async def on_connect_error(data: Any = None) -> None:
        client.connect_errors.append(data)

    client.sio.on("*", on_any)
    client.sio.on("connect_error", on_connect_error)
    return client


def handshake(token: str, carrier: str) -> dict[str, Any]:
    """connect() keyword arguments that carry `token` as `carrier` does."""
    if carrier == "cookie":
        return {"headers": {"Cookie": f"accessToken={token}"}}
    if carrier == "header":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if carrier == "auth":
        return {"auth": {"token": token}}
    raise ValueError(carrier)


ClientFactory = Callable[..., Any]


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """connect(url, token, carrier='auth') -> a connected SocketClient (closed at the end)."""
    clients: list[SocketClient] = []

    async def _connect(
        url: str, token: str, carrier: str = "auth", transports: list[str] | None = None
    ) -> SocketClient:
        client = new_client()
        clients.append(client)
        await client.sio.connect(
            url,
            transports=transports or ["websocket"],
            wait_timeout=5,
            **handshake(token, carrier),
        )
        return client

    yield _connect
    for client in clients:
        await client.close()


@pytest.fixture
async def live_server(live_server: LiveServer) -> AsyncIterator[LiveServer]:
    """The shared live server, with its gateway closed at the end (its channel listener
    would otherwise outlive the test in the session's event loop)."""
    yield live_server
    await gateway_of(live_server.app.sio).close()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as c:
        yield c


@pytest.fixture
def gateway(live_server: LiveServer) -> Gateway:
    return gateway_of(live_server.app.sio)


@pytest.fixture
def emitter(live_server: LiveServer) -> Emitter:
    """The API instance's own emitter (its Socket.IO server's Redis manager)."""
    emitter: Emitter = live_server.app.api.state.services.emitter
    return emitter


async def new_user(http: httpx.AsyncClient) -> dict[str, Any]:
    return await register(http)


async def settle() -> None:
    """Long enough for a duplicate copy (another instance's fan-out) to show up."""
    await asyncio.sleep(QUIET_PERIOD)


# ---------------------------------------------------------------- a second API process


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]


def _spawn_api(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bookbazar", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=log_path.parent,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def api_process(settings: Settings, tmp_path: Path) -> AsyncIterator[ApiProcess]:
    """`bookbazar api` in its own process, on the test's PostgreSQL and Redis."""
    port = free_port()
    env = process_env(settings, PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}")
    log_path = tmp_path / "api-b.log"
    process = _spawn_api(port, env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            for _ in range(300):
                if process.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("second API process did not become healthy")
        if process.poll() is not None:
            raise AssertionError(f"second API process exited: {log_path.read_text()[-2000:]}")
        yield ApiProcess(url, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


# ---------------------------------------------------------------- Node


@pytest.fixture(scope="session")
def node_client_dir() -> Path:
    """tests/node with socket.io-client installed (npm ci from the lockfile, no scripts)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the Node socket.io-client tests (Node >= 18)")
    if not (NODE_DIR / "node_modules" / "socket.io-client" / "package.json").exists():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{result.stdout}\n{result.stderr}")
    return NODE_DIR
