"""The real `bookbazar api` and `bookbazar worker` processes, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookbazar.config import Settings
from tests.conftest import free_port, process_env


@dataclass
class Processes:
    url: str
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    logs: Path

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def _env(settings: Settings, port: int) -> dict[str, str]:
    return process_env(
        settings,
        PORT=str(port),
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FULFILLMENT_SHIP_DELAY_SECONDS="1",
        FULFILLMENT_DELIVER_DELAY_SECONDS="1",
    )


@contextlib.contextmanager
def _spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[Any]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bookbazar", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:  # only if the test failed before stopping it
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
async def processes(settings: Settings, tmp_path: Path) -> AsyncIterator[Processes]:
    port = free_port()
    env = _env(settings, port)
    with (
        _spawn(
            ["api", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path, tmp_path / "api.log"
        ) as api,
        _spawn(["worker", "--concurrency", "4"], env, tmp_path, tmp_path / "worker.log") as worker,
    ):
        running = Processes(f"http://127.0.0.1:{port}", api, worker, tmp_path)
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(300):
                assert api.poll() is None, running.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{running.url}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the API did not become ready\n" + running.tail())
        assert worker.poll() is None, running.tail()
        yield running
