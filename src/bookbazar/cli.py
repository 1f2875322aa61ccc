"""The `bookbazar` command: up, api, worker, migrate, seed, reconcile."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bookbazar import __version__
from bookbazar.config import ConfigError, Settings, load_settings, setting_names
from bookbazar.logging import configure_logging

if TYPE_CHECKING:
    from bookbazar.inventory.service import ReconcileReport

app = typer.Typer(
    help="Book Bazar: online bookstore backend.",
    epilog=(
        "Settings are read from the environment (or a .env file), see the README: "
        + ", ".join(setting_names())
    ),
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bookbazar {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Book Bazar: online bookstore backend."""


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # Readable lines for a person at a terminal; JSON lines for everything else.
    configure_logging(json=not settings.is_development or not sys.stderr.isatty())
    return settings


def _settle_heap() -> None:
    """What start-up imported and built lives as long as the process: take it out of the
    cyclic GC's reach (gc.freeze), so a full collection walks only what work allocates,
    and collect the young generation every 10,000 allocations instead of 700. Before
    this a full collection walked ~150k start-up objects (~60 ms: the API's p99 under
    load was these stalls). `make bench`, cart at c=50: p99 104 -> 31 ms, API CPU per
    add 0.53 -> 0.41 ms (with FastAPI's telemetry hooks off); RSS unchanged."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def _require_urls(settings: Settings) -> tuple[str, str]:
    try:
        return settings.require_urls()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address", envvar="HOST")] = None,
    port: Annotated[int | None, typer.Option(help="port", envvar="PORT")] = None,
) -> None:
    """Serve the REST API and Socket.IO (uvicorn)."""
    import uvicorn

    from bookbazar.app import create_app

    settings = _settings()
    _require_urls(settings)
    asgi_app = create_app(settings)
    _settle_heap()
    uvicorn.run(
        asgi_app,
        host=host or settings.host,
        port=port or settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="jobs at once per queue")] = 4,
) -> None:
    """Run every queue's jobs, the outbox relay and the sweepers."""
    from bookbazar.worker import WorkerProcess

    settings = _settings()
    _require_urls(settings)
    process = WorkerProcess(settings, concurrency=concurrency)
    _settle_heap()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, process.stop.set)
        await process.run()

    import uvloop  # the API's event loop too (uvicorn's loop="uvloop"): less CPU per wake-up

    uvloop.run(main())


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest."""
    from bookbazar.migrate import upgrade

    settings = _settings()
    database_url, _ = _require_urls(settings)
    upgrade(database_url)
    typer.echo("migrations applied")


@app.command()
def seed(
    quiet: Annotated[
        bool, typer.Option("--quiet", help="do not print the demo logins (`up` prints them)")
    ] = False,
) -> None:
    """Load the demo catalog and demo accounts (idempotent)."""
    settings = _settings()
    creds = asyncio.run(_seed(settings))
    if not quiet:
        for role, entry in creds.items():
            typer.echo(f"{role}: {entry['email']} / {entry['password']}")


async def _seed(settings: Settings) -> dict[str, dict[str, str]]:
    from bookbazar.catalog.seed import demo_credentials, seed_accounts, seed_catalog
    from bookbazar.db import create_engine, create_sessionmaker

    database_url, _ = _require_urls(settings)
    creds = demo_credentials(settings.data_dir / "demo-credentials.json")
    engine = create_engine(database_url, pool_size=2)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            added = await seed_catalog(session)
            await seed_accounts(session, creds)
        typer.echo(f"demo catalog: {added} books added")
        return creds
    finally:
        await engine.dispose()


@app.command()
def reconcile(
    verbose: Annotated[
        bool, typer.Option("--verbose", help="also list the counters that were missing")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would change; change nothing")
    ] = False,
) -> None:
    """Rebuild every Redis stock counter and hold exactly from PostgreSQL and report
    corrections (one summary line; each counter that was wrong and each hold repaired is
    named). With --dry-run, the same report of what it would do, and nothing changed."""
    settings = _settings()
    report = asyncio.run(_reconcile(settings, dry_run=dry_run))
    ordered = sorted(report.corrected.items(), key=lambda kv: str(kv[0]))
    missing = [(book_id, after) for book_id, (before, after) in ordered if before is None]
    wrong = [(book_id, b, a) for book_id, (b, a) in ordered if b is not None]
    created, corrected, repaired = (
        ("to create", "to correct", "to repair")
        if dry_run
        else ("created", "corrected", "repaired")
    )
    typer.echo(
        ("dry run (nothing changed): " if dry_run else "")
        + f"stock counters: {len(missing)} {created}, {len(wrong)} {corrected}; "
        + f"holds: {report.holds_checked} checked, {len(report.repaired)} {repaired}"
        + ("" if report.corrected or report.repaired else " (all were correct)")
    )
    for book_id, before, after in wrong:
        typer.echo(f"book {book_id}: {before} -> {after}")
    for order_id, token, action in report.repaired:
        typer.echo(f"hold {order_id}:{token}: {action}")
    if verbose:
        for book_id, after in missing:
            typer.echo(f"book {book_id}: missing -> {after}")


async def _reconcile(settings: Settings, *, dry_run: bool) -> ReconcileReport:
    from bookbazar.services import Services

    _require_urls(settings)
    # Corrections reach the book rooms of every API instance, as the worker's emits do.
    services = Services.create(settings, pool_size=2)
    try:
        report = await services.inventory.reconcile(dry_run=dry_run)
        if report.corrected and not dry_run:
            await services.emitter.emit_stock({b: new for b, (_, new) in report.corrected.items()})
        return report
    finally:
        await services.close()


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="write here (e.g. docs/openapi.json) instead of stdout")
    ] = None,
) -> None:
    """Print the HTTP contract (OpenAPI 3.1 JSON), generated from the routes; nothing is
    started or connected. `docs/openapi.json` is this output, kept current by a test."""
    import json

    from bookbazar.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port (default 8000)", envvar="PORT")] = None,
    api_processes: Annotated[
        int,
        typer.Option(
            "--api",
            min=1,
            max=16,
            help="API processes; more than one run behind HAProxy, which listens on the port",
        ),
    ] = 1,
    workers: Annotated[int, typer.Option("--workers", min=1, max=16, help="worker processes")] = 1,
    redis_cluster: Annotated[
        bool,
        typer.Option(
            "--redis-cluster", help="embed a 3-master Redis Cluster instead of a single Redis"
        ),
    ] = False,
) -> None:
    """Run everything locally: embedded PostgreSQL and Redis when no URLs are set,
    migrations, demo catalog, then the API and the workers until Ctrl-C or SIGTERM. With
    several processes, one that exits is started again."""
    from bookbazar.balancer import INSTALL_HINT, haproxy_binary

    os.environ.setdefault("BOOKBAZAR_ENV", "development")
    settings = _settings()
    if port is not None:
        settings.port = port
    haproxy = haproxy_binary() if api_processes > 1 else None
    if api_processes > 1 and haproxy is None:
        typer.echo(
            f"error: --api {api_processes} runs the API processes behind HAProxy, which is not "
            f"installed here; {INSTALL_HINT}",
            err=True,
        )
        raise typer.Exit(2)
    # REDIS_CLUSTER=true with no REDIS_URL asks for the embedded cluster too.
    redis_cluster = redis_cluster or (settings.redis_cluster and not settings.redis_url)
    if redis_cluster and settings.redis_url:
        typer.echo(
            "error: --redis-cluster starts an embedded cluster; with REDIS_URL set, point it "
            "at a node of your cluster and set REDIS_CLUSTER=true instead",
            err=True,
        )
        raise typer.Exit(2)
    _require_free_port(settings.host, settings.port)
    fleet = _Fleet(settings, api_processes, workers, haproxy, redis_cluster=redis_cluster)
    fleet.run()


class _Fleet:
    """What `up` starts and watches: the embedded servers, the API processes (behind
    HAProxy when there are several) and the workers."""

    MAX_RESTARTS = 5  # per process and minute; beyond that `up` stops

    def __init__(
        self,
        settings: Settings,
        api_processes: int,
        workers: int,
        haproxy: str | None,
        *,
        redis_cluster: bool = False,
    ) -> None:
        self.settings = settings
        self.redis_cluster = redis_cluster
        self.api_processes = api_processes
        self.workers = workers
        self.haproxy = haproxy
        self.env = dict(os.environ)
        self.specs: dict[str, list[str]] = {}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, list[float]] = {}
        self.stopping = False
        self.cleaning_up = False

    def request_stop(self, signum: int, _frame: object) -> None:
        if self.stopping or self.cleaning_up:  # a signal must not interrupt the clean-up
            return
        self.stopping = True
        raise KeyboardInterrupt

    def run(self) -> None:
        from bookbazar.embedded import EmbeddedServices

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        settings, env = self.settings, self.env
        embedded: EmbeddedServices | None = None
        try:
            need_pg, need_redis = not settings.database_url, not settings.redis_url
            if need_pg or need_redis:
                started = " and ".join(
                    name
                    for name, needed in (("PostgreSQL", need_pg), ("Redis", need_redis))
                    if needed
                )
                if need_redis and self.redis_cluster:
                    started = started.replace("Redis", "a 3-master Redis Cluster")
                _step(f"starting {started} (embedded, data in {settings.data_dir})")
                embedded = EmbeddedServices(settings.data_dir, redis_cluster=self.redis_cluster)
                embedded.start(postgres=need_pg, redis=need_redis)
                if need_pg:
                    env["DATABASE_URL"] = embedded.postgres.create_database("bookbazar")
                if need_redis:
                    env["REDIS_URL"] = embedded.redis.url
                    if self.redis_cluster:
                        env["REDIS_CLUSTER"] = "true"
            env["PORT"] = str(settings.port)
            local = f"http://{_loopback(settings.host)}:{settings.port}"
            env.setdefault("PUBLIC_URL", local)
            for step, title in (
                (["migrate"], "migrating the database"),
                (["seed", "--quiet"], "loading the demo catalog and accounts"),
                (["reconcile"], "rebuilding the stock counters from PostgreSQL"),
            ):
                _step(title)
                subprocess.run([sys.executable, "-m", "bookbazar", *step], env=env, check=True)
            self._start_processes(local)
            typer.echo(_banner(env["PUBLIC_URL"].rstrip("/"), settings, self.describe()))
            self._watch()
        except KeyboardInterrupt:
            typer.echo("stopping…")
        except typer.Exit:
            raise
        except RuntimeError as exc:  # the embedded servers could not start
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except subprocess.CalledProcessError as exc:
            if not self.stopping:
                failed = " ".join(map(str, exc.cmd[2:]))
                typer.echo(f"error: start-up step failed: {failed}", err=True)
                raise typer.Exit(1) from None
        finally:
            self.cleaning_up = True
            self._stop_children()
            if embedded is not None:
                embedded.stop()
            if self.stopping:
                typer.echo("stopped")

    def describe(self) -> str:
        apis = f"{self.api_processes} API processes behind HAProxy"
        return (
            f"{apis if self.api_processes > 1 else '1 API process'}, "
            f"{self.workers} worker{'s' if self.workers > 1 else ''}"
            + (", Redis Cluster" if self.env.get("REDIS_CLUSTER") == "true" else "")
        )

    def _start_processes(self, local: str) -> None:
        from bookbazar.embedded import free_port

        api_urls: list[str] = []
        if self.api_processes == 1:
            self.specs["api"] = ["api"]
            api_urls.append(f"{local}/readyz")
        else:
            for n in range(1, self.api_processes + 1):
                api_port = free_port()
                self.specs[f"api-{n}"] = ["api", "--host", "127.0.0.1", "--port", str(api_port)]
                api_urls.append(f"http://127.0.0.1:{api_port}/readyz")
        for n in range(1, self.workers + 1):
            self.specs["worker" if self.workers == 1 else f"worker-{n}"] = ["worker"]
        _step(f"starting the API and the workers ({self.describe()}) on {local}")
        for name in self.specs:
            self.children[name] = self._spawn(name)
        for url in api_urls:
            _wait_ready(url, self.children)
        if self.haproxy is not None:
            self.children["haproxy"] = self._start_haproxy(self.haproxy)
            _wait_ready(f"{local}/readyz", self.children)

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        from bookbazar.embedded import die_with_parent

        env = self.env
        metrics_port = self.settings.worker_metrics_port
        if metrics_port and name.startswith("worker-"):
            # Each worker serves its metrics on a port of its own: the first one's, then up.
            env = {**env, "WORKER_METRICS_PORT": str(metrics_port + int(name[7:]) - 1)}
        return subprocess.Popen(
            [sys.executable, "-m", "bookbazar", *self.specs[name]],
            env=env,
            preexec_fn=die_with_parent,
            # Own session: Ctrl-C reaches only us, and we stop them in order
            # (processes first, then the servers they use).
            start_new_session=True,
        )

    def _start_haproxy(self, binary: str) -> subprocess.Popen[bytes]:
        from bookbazar.balancer import haproxy_config
        from bookbazar.embedded import die_with_parent

        servers = [
            ("127.0.0.1", int(args[args.index("--port") + 1]))
            for name, args in self.specs.items()
            if name.startswith("api")
        ]
        config = self.settings.data_dir / "haproxy.cfg"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(haproxy_config(self.settings.host, self.settings.port, servers))
        return subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            preexec_fn=die_with_parent,
            start_new_session=True,
        )

    def _watch(self) -> None:
        """Until stopped: a process that exits is started again when there are several
        of its kind (the others carry the load meanwhile), else everything stops."""
        while True:
            for name, child in list(self.children.items()):
                code = child.poll()
                if code is None or self.stopping:
                    continue
                of_its_kind = self.api_processes if name.startswith("api") else self.workers
                several = name != "haproxy" and of_its_kind > 1
                if several and self._may_restart(name):
                    typer.echo(f"==> `bookbazar {name}` exited ({code}); starting it again…")
                    self.children[name] = self._spawn(name)
                    continue
                typer.echo(f"error: `bookbazar {name}` exited; stopping", err=True)
                raise typer.Exit(1)
            time.sleep(0.5)

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < 60] + [now]
        self.restarts[name] = recent
        return len(recent) <= self.MAX_RESTARTS

    def _stop_children(self) -> None:
        # The balancer first (no new requests), then the processes.
        ordered = sorted(self.children.items(), key=lambda item: item[0] != "haproxy")
        for _, child in ordered:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for _, child in ordered:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)


def _step(title: str) -> None:
    typer.echo(f"==> {title}…")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _require_free_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            typer.echo(f"error: PORT {port} on {host} is in use: set PORT or pass --port", err=True)
            raise typer.Exit(2) from None


def _banner(base: str, settings: Settings, processes: str) -> str:
    import json

    lines = [
        "",
        f"Book Bazar is up ({processes}).",
        f"  Store:      {base}/",
        f"  Admin:      {base}/admin",
        f"  API:        {base}/api/v1",
        f"  Docs:       {base}/docs",
        f"  Ready:      {base}/readyz",
        f"  Metrics:    {base}/metrics",
        f"  Socket.IO:  {base}/socket.io",
    ]
    creds_file = settings.data_dir / "demo-credentials.json"
    try:
        creds: dict[str, dict[str, str]] = json.loads(creds_file.read_text())
        for role, entry in creds.items():
            lines.append(f"  Demo {role + ':':<9} {entry['email']} / {entry['password']}")
    except (OSError, ValueError, KeyError, AttributeError):
        lines.append(f"  Demo logins: {creds_file}")
    lines += ["Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


def _wait_ready(
    url: str, children: dict[str, subprocess.Popen[bytes]], timeout: float = 120
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = [name for name, c in children.items() if c.poll() is not None]
        if exited:
            typer.echo(f"error: `bookbazar {', '.join(exited)}` exited during start-up", err=True)
            raise typer.Exit(1)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    typer.echo(f"error: service not ready after {timeout:.0f}s: {url}", err=True)
    raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
