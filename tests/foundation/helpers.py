"""Assertions and process helpers shared by the foundation tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil


def assert_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The response is the DESIGN.md §3 error envelope with `status`."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["statusCode"] == status
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    assert "data" not in body
    return body


def assert_ok(resp: httpx.Response, status: int = 200) -> Any:
    """The response is the success envelope with `status`; returns `data`."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["statusCode"] == status
    assert body["success"] is True
    assert isinstance(body["message"], str)
    return body["data"]


def error_fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}


@contextlib.contextmanager
def world_traversable_tmpdir(prefix: str) -> Iterator[Path]:
    """A temp dir directly under the system temp dir.

    As root, the embedded PostgreSQL runs as another user that must traverse the data
    dir's ancestors; pytest keeps resetting its own temp root to 0700, so servers these
    tests start themselves live outside it."""
    path = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def processes_mentioning(path: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `path` (postmaster -D, redis --dir)."""
    needle = str(path)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.pid != os.getpid() and any(needle in part for part in cmdline) and _alive(proc):
            found.append(proc)
    return found


def children_of(pids: Iterable[int]) -> list[psutil.Process]:
    """Live processes whose parent is one of `pids` (e.g. PostgreSQL's backends)."""
    wanted = set(pids)
    return [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] in wanted and _alive(p)]


def pid_running(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
