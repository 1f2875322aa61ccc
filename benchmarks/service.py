"""The service under test: started here on the embedded default, or one already running.

Embedded default: this process starts PostgreSQL and Redis (so it knows both URLs for the
stock check), then runs `python -m bookbazar up --port <free>` with DATABASE_URL and
REDIS_URL set, in a temporary working directory (its data dir `.bookbazar/` and the demo
credentials file live there). On exit the `up` process gets SIGTERM and is waited for,
then the embedded servers stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

READY_TIMEOUT_S = 180.0


@dataclass
class ProcessGroup:
    """Processes counted together (e.g. the PostgreSQL postmaster and its backends)."""

    name: str
    roots: list[psutil.Process]
    with_children: bool = False

    def processes(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for root in self.roots:
            out.append(root)
            if self.with_children:
                with contextlib.suppress(psutil.Error):
                    out.extend(root.children(recursive=True))
        return out

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total


@dataclass
class Service:
    """What the scenarios need to know about the service under test."""

    base_url: str
    admin_email: str | None = None
    admin_password: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    groups: dict[str, ProcessGroup] = field(default_factory=dict)
    log_path: Path | None = None
    managed: bool = False

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def api_pid(self) -> int | None:
        group = self.groups.get("api")
        return group.roots[0].pid if group and group.roots else None

    def cpu_snapshot(self) -> dict[str, float]:
        return {name: g.cpu_seconds() for name, g in self.groups.items()}

    def rss_snapshot(self) -> dict[str, int]:
        # PostgreSQL backends share memory: summing their RSS would mislead.
        return {name: g.rss_bytes() for name, g in self.groups.items() if name != "postgres"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"`bookbazar up` exited with {proc.returncode} during start-up")
        try:
            r = httpx.get(f"{base_url}/readyz", timeout=2)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(f"service not ready after {timeout:.0f} s ({base_url}/readyz: {last})")


def _role_of(proc: psutil.Process) -> str | None:
    """ "api" or "worker" for a `bookbazar api|worker ...` process, "balancer" for HAProxy."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return None
    if cmd and os.path.basename(cmd[0]) == "haproxy":
        return "balancer"
    if "bookbazar" not in cmd:
        return None
    after = cmd[cmd.index("bookbazar") + 1 :]
    return after[0] if after and after[0] in ("api", "worker") else None


def discover_children(
    up: psutil.Process, apis: int = 1, workers: int = 1, timeout: float = 10.0
) -> dict[str, list[psutil.Process]]:
    """The `api` and `worker` processes (and HAProxy, with several APIs) `bookbazar up`
    started, by role."""
    deadline = time.monotonic() + timeout
    wanted = {"api": apis, "worker": workers, **({"balancer": 1} if apis > 1 else {})}
    found: dict[str, list[psutil.Process]] = {}
    while time.monotonic() < deadline:
        found = {}
        for child in up.children(recursive=True):
            role = _role_of(child)
            if role is not None:
                found.setdefault(role, []).append(child)
        if {role: len(procs) for role, procs in found.items()} == wanted:
            break
        time.sleep(0.2)
    return found


def discover_by_port(port: int) -> dict[str, psutil.Process]:
    """For --url: the process listening on the port (api) and a `bookbazar worker` next to
    it (same parent), when they run on this machine and we may see them."""
    found: dict[str, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    found["api"] = psutil.Process(conn.pid)
                break
    api = found.get("api")
    if api is not None:
        with contextlib.suppress(psutil.Error):
            parent = api.parent()
            if parent is not None:
                for sibling in parent.children():
                    if _role_of(sibling) == "worker":
                        found["worker"] = sibling
    return found


class ManagedService:
    """Embedded PostgreSQL + Redis and `bookbazar up`, in a temporary working directory."""

    def __init__(self, keep: bool = False, apis: int = 1, workers: int = 1) -> None:
        self.keep = keep
        self.apis = apis
        self.workers = workers
        self.workdir: Path | None = None
        self.embedded: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def start(self) -> Service:
        from bookbazar.embedded import EmbeddedServices

        self.workdir = Path(tempfile.mkdtemp(prefix="bookbazar-bench-"))
        # As root, PostgreSQL runs as another user that must traverse this directory.
        self.workdir.chmod(0o755)
        data_dir = self.workdir / ".bookbazar"
        print(f"[service] working directory {self.workdir}")
        t0 = time.monotonic()
        self.embedded = EmbeddedServices(data_dir)
        self.embedded.start()
        database_url = self.embedded.postgres.create_database("bookbazar")
        redis_url = self.embedded.redis.url
        port = _free_port()
        env = dict(os.environ)
        for name in ("PUBLIC_URL", "PORT", "FAULT_POINTS"):
            env.pop(name, None)
        env.update(
            BOOKBAZAR_ENV="development",
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            PYTHONUNBUFFERED="1",
        )
        log_path = self.workdir / "service.log"
        self._log_file = log_path.open("wb")
        topology = ["--api", str(self.apis), "--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bookbazar", "up", "--port", str(port), *topology],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        shown = " ".join(["--port", str(port), *topology])
        print(f"[service] `bookbazar up {shown}` (pid {self.proc.pid}); log {log_path}")
        _wait_ready(base_url, self.proc, READY_TIMEOUT_S)
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        up = psutil.Process(self.proc.pid)
        children = discover_children(up, self.apis, self.workers)
        groups = {name: ProcessGroup(name, procs) for name, procs in sorted(children.items())}
        if self.embedded.postgres.pid:
            groups["postgres"] = ProcessGroup(
                "postgres", [psutil.Process(self.embedded.postgres.pid)], with_children=True
            )
        if self.embedded.redis.process is not None:
            groups["redis"] = ProcessGroup(
                "redis", [psutil.Process(self.embedded.redis.process.pid)]
            )
        pids = ", ".join(f"{n} {g.roots[0].pid}" for n, g in groups.items())
        print(f"[service] ready in {time.monotonic() - t0:.1f} s ({pids})")
        return Service(
            base_url=base_url,
            admin_email=creds["admin"]["email"],
            admin_password=creds["admin"]["password"],
            database_url=database_url,
            redis_url=redis_url,
            groups=groups,
            log_path=log_path,
            managed=True,
        )

    def stop(self) -> int | None:
        """SIGTERM `up`, wait for it, stop the embedded servers. Returns up's exit code."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print("[service] `bookbazar up` did not stop within 60 s: killing it")
                self.proc.kill()
                code = self.proc.wait(timeout=10)
            print(f"[service] `bookbazar up` exited with {code}")
        if self._log_file is not None:
            self._log_file.close()
        if self.embedded is not None:
            self.embedded.stop()
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.workdir is not None:
            print(f"[service] kept {self.workdir}")
        return code


def external_service(
    url: str,
    *,
    admin_email: str | None,
    admin_password: str | None,
    credentials_file: Path | None,
    database_url: str | None,
    redis_url: str | None,
) -> Service:
    base_url = url.rstrip("/")
    _wait_ready(base_url, None, 30)
    if (admin_email is None or admin_password is None) and credentials_file is not None:
        creds = json.loads(credentials_file.read_text())
        admin_email = admin_email or creds["admin"]["email"]
        admin_password = admin_password or creds["admin"]["password"]
    service = Service(
        base_url=base_url,
        admin_email=admin_email,
        admin_password=admin_password,
        database_url=database_url,
        redis_url=redis_url,
    )
    host, port = service.host_port
    if host in ("127.0.0.1", "localhost", "::1"):
        for name, proc in discover_by_port(port).items():
            service.groups[name] = ProcessGroup(name, [proc])
    return service


_ERROR = re.compile(
    rb"\[(error|critical)\s*\]|Traceback|\bERROR\b|\bCRITICAL\b|\"level\": ?\"(error|critical)\""
)
_WARNING = re.compile(rb"\[warning\s*\]|\bWARNING\b|\"level\": ?\"warning\"")
# New books' counters created on first use (an info line, counted apart).
_COUNTER_INIT = re.compile(rb"stock_counters_created")
_ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def scan_log(path: Path | None, start: int = 0, limit: int = 10) -> dict[str, Any]:
    """Error and warning lines of the service log from byte offset `start`: counts, and
    one sample of each distinct kind (ids, numbers and timestamps masked to compare)."""
    out: dict[str, Any] = {"errors": 0, "warnings": 0, "counter_inits": 0, "samples": []}
    if path is None or not path.exists():
        return out
    kinds: set[str] = set()
    with path.open("rb") as f:
        f.seek(start)
        for raw in f:
            line = _ANSI.sub(b"", raw)
            if _COUNTER_INIT.search(line):
                # A new book's counter created on first use: expected, counted apart.
                out["counter_inits"] += 1
                continue
            if _ERROR.search(line):
                out["errors"] += 1
            elif _WARNING.search(line):
                out["warnings"] += 1
            else:
                continue
            text = line.decode(errors="replace").strip()
            kind = re.sub(r"[0-9a-f]{8}-?[0-9a-f-]{27,28}|[0-9a-f]{32}|\d+", "#", text)[:120]
            if kind not in kinds and len(out["samples"]) < limit:
                kinds.add(kind)
                out["samples"].append(text[:500])
    return out


def log_size(path: Path | None) -> int:
    if path is None:
        return 0
    try:
        return path.stat().st_size
    except OSError:
        return 0
