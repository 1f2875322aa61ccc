"""`bookbazar up` end to end, as `make run` runs it on a fresh machine: embedded servers,
migrations, demo catalog, API and worker; a crash (SIGKILL) followed by a second start
on the same data; a clean stop on SIGTERM that leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.foundation.helpers import (
    pid_running,
    processes_mentioning,
    wait_until,
    world_traversable_tmpdir,
)

# Settings that would make `up` use external servers or another port.
UNSET = (
    "DATABASE_URL",
    "REDIS_URL",
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "PORT",
    "PUBLIC_URL",
    "JWT_SECRET",
    "SANDBOX_WEBHOOK_SECRET",
    "PAYMENT_PROVIDER",
    "CORS_ORIGINS",
    "FAULT_POINTS",
)


class Up:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = workdir / f"up-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["BOOKBAZAR_ENV"] = "development"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bookbazar", "up", "--port", str(port)],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"`up` exited early:\n{self.output()[-3000:]}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not ready after {timeout}s:\n{self.output()[-3000:]}")

    def descendants(self) -> list[psutil.Process]:
        return list(psutil.Process(self.proc.pid).children(recursive=True))


def books_total(base: str) -> int:
    resp = httpx.get(f"{base}/api/v1/books", params={"pageSize": 5}, timeout=10)
    assert resp.status_code == 200, resp.text
    total: int = resp.json()["data"]["total"]
    return total


def login(base: str, creds: dict[str, str]) -> dict[str, Any]:
    resp = httpx.post(f"{base}/api/v1/auth/login", json=creds, timeout=10)
    assert resp.status_code == 200, resp.text
    user: dict[str, Any] = resp.json()["data"]["user"]
    return user


def test_up_runs_everything_survives_a_crash_and_stops_cleanly() -> None:
    with world_traversable_tmpdir("bb-up-") as workdir:
        data_dir = workdir / ".bookbazar"

        # ---- first run, then a crash: SIGKILL leaves no API, worker or Redis behind.
        first = Up(workdir, free_port())
        try:
            first.wait_ready()
            total = books_total(first.base)
            assert total >= 50
            creds = json.loads((data_dir / "demo-credentials.json").read_text())
            assert login(first.base, creds["customer"])["role"] == "customer"
            assert login(first.base, creds["admin"])["role"] == "admin"
            banner = first.output()
            for expected in (
                "Store:",
                "/admin",
                "/api/v1",
                "/docs",
                creds["customer"]["email"],
                creds["customer"]["password"],
            ):
                assert expected in banner, banner[-2000:]
            # Each step says what it is doing; the demo logins are printed once.
            steps = [
                "==> starting PostgreSQL and Redis",
                "==> migrating the database",
                "==> loading the demo catalog",
                "==> rebuilding the stock counters",
                "==> starting the API",
            ]
            at = [banner.find(step) for step in steps]
            assert -1 not in at and at == sorted(at), banner[-3000:]
            assert banner.count(creds["customer"]["password"]) == 1, banner[-3000:]
            children = first.descendants()
            commands = [" ".join(c.cmdline()) for c in children]
            assert any("bookbazar api" in c for c in commands), commands
            assert any("bookbazar worker" in c for c in commands), commands
            assert any("redis-server" in c for c in commands), commands
        finally:
            first.proc.kill()
            first.proc.wait(timeout=10)
        assert wait_until(lambda: not any(pid_running(c.pid) for c in children), timeout=20), [
            (c.pid, c.cmdline()) for c in children if pid_running(c.pid)
        ]
        leftovers = processes_mentioning(workdir)
        # Only PostgreSQL outlives a SIGKILLed `up` (it is not our child); it is re-attached.
        assert leftovers and all(p.name() == "postgres" for p in leftovers), leftovers

        # ---- a second run on the same data starts, keeps the data, and stops on SIGTERM.
        second = Up(workdir, free_port())
        try:
            second.wait_ready()
            assert books_total(second.base) == total  # seeding again added nothing
            assert login(second.base, creds["customer"])["role"] == "customer"
            assert json.loads((data_dir / "demo-credentials.json").read_text()) == creds
            children = second.descendants()
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=30) == 0, second.output()[-3000:]
        finally:
            if second.proc.poll() is None:
                second.proc.kill()
                second.proc.wait(timeout=10)
        assert "stopped" in second.output()
        assert wait_until(lambda: not any(pid_running(c.pid) for c in children), timeout=10)
        assert wait_until(lambda: processes_mentioning(workdir) == [], timeout=10), [
            (p.pid, p.cmdline()) for p in processes_mentioning(workdir)
        ]
        try:
            httpx.get(f"{second.base}/healthz", timeout=1)
            raise AssertionError("the API still answers after `up` stopped")
        except httpx.HTTPError:
            pass


def test_up_refuses_a_taken_port_before_starting_anything() -> None:
    with world_traversable_tmpdir("bb-up-") as workdir, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env["BOOKBAZAR_ENV"] = "development"
        result = subprocess.run(
            [sys.executable, "-m", "bookbazar", "up", "--port", str(port)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert f"PORT {port}" in result.stderr
        assert not (workdir / ".bookbazar").exists()  # no server was started
        assert processes_mentioning(workdir) == []


def test_up_with_several_api_processes_needs_haproxy_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from bookbazar import balancer
    from bookbazar.cli import app as cli

    monkeypatch.setattr(balancer, "haproxy_binary", lambda: None)
    monkeypatch.setenv("BOOKBAZAR_ENV", "development")  # `up` sets it otherwise, for good
    result = CliRunner().invoke(cli, ["up", "--api", "2", "--port", str(free_port())])
    assert result.exit_code == 2
    assert "apt-get install haproxy" in result.output
