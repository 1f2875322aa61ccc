"""`bookbazar up --api 2 --workers 2`: the real command, its HAProxy and its processes, over
the tests' PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from bookbazar.balancer import haproxy_binary
from bookbazar.config import Settings
from bookbazar.embedded import EmbeddedRedisCluster
from tests.conftest import Infra, free_port, make_settings
from tests.e2e.conftest import _env


def _require_haproxy() -> None:
    # `make test` sets this only after trying to install HAProxy and failing (no root or
    # no apt-get): the one case where these tests are skipped, saying why.
    if haproxy_binary() is not None:
        return
    reason = os.environ.get("BOOKBAZAR_SKIP_BALANCER")
    if reason:
        pytest.skip(f"scale-out tests skipped: {reason}")
    pytest.fail(
        "HAProxy not found. Install Debian's package as root: `apt-get install -y haproxy` "
        "(`make test` does this when it can).",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedRedisCluster]:
    """A 3-master Redis Cluster (the embedded one `bookbazar up --redis-cluster` starts)."""
    with tempfile.TemporaryDirectory(prefix="bb-cluster-") as root:
        cluster = EmbeddedRedisCluster(Path(root))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(params=["redis", "redis-cluster"])
def settings(request: pytest.FixtureRequest, infra: Infra, clean_state: None) -> Iterator[Settings]:
    """Each fleet test runs on a single Redis and on Redis Cluster (emptied first)."""
    if request.param == "redis":
        yield make_settings(infra)
        return
    import redis as redis_sync

    cluster: EmbeddedRedisCluster = request.getfixturevalue("redis_cluster")
    for node in cluster.nodes:
        with redis_sync.Redis(port=node.port) as client:
            client.flushall()
    yield make_settings(infra, redis_url=cluster.url, redis_cluster=True)


@dataclass
class Fleet:
    url: str
    up: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def processes(self, kind: str) -> dict[str, psutil.Process]:
        """The live `bookbazar <kind>` children by name (api-1, api-2, worker-1, ...), told
        apart by their order of start (ports for the APIs)."""
        found: dict[str, psutil.Process] = {}
        for child in psutil.Process(self.up.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                argv = child.cmdline()
                if argv[1:4] == ["-m", "bookbazar", kind]:
                    found[" ".join(argv[4:]) or str(child.pid)] = child
        return found

    def api_by_port(self) -> dict[int, psutil.Process]:
        return {
            int(argv[argv.index("--port") + 1]): proc
            for proc in self.processes("api").values()
            if "--port" in (argv := proc.cmdline())
        }


@pytest.fixture
async def fleet(settings: Settings, tmp_path: Path) -> AsyncIterator[Fleet]:
    """Two API processes behind HAProxy and two workers, started by `bookbazar up`."""
    _require_haproxy()
    port = free_port()
    env = _env(settings, port)
    env.update(
        {
            "AUDIT_INTERVAL_SECONDS": "2",
            "JOB_LOCK_SECONDS": "3",
            "SWEEPER_INTERVAL_SECONDS": "1",
        }
    )
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "bookbazar", "up", "--api", "2", "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Fleet(f"http://127.0.0.1:{port}", up, log)
    try:
        for _ in range(600):
            assert up.poll() is None, "`up` exited:\n" + running.tail()
            if "Book Bazar is up" in log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("`up` did not come up\n" + running.tail())
        async with httpx.AsyncClient(timeout=2) as http:
            assert (await http.get(f"{running.url}/readyz")).status_code == 200
        yield running
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=40)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait(timeout=10)
