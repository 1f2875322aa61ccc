"""The `bookbazar` command: up, api, worker, migrate, seed, reconcile."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Annotated
from uuid import UUID

import typer

from bookbazar.config import ConfigError, Settings, load_settings
from bookbazar.logging import configure_logging

app = typer.Typer(help="Book Bazar: online bookstore backend.", no_args_is_help=True)


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(json=not settings.is_development)
    return settings


def _require_urls(settings: Settings) -> tuple[str, str]:
    try:
        return settings.require_urls()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (default HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default PORT)")] = None,
) -> None:
    """Serve the REST API and Socket.IO (uvicorn)."""
    import uvicorn

    from bookbazar.app import create_app

    settings = _settings()
    _require_urls(settings)
    uvicorn.run(
        create_app(settings),
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
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="jobs at once per queue")] = 16,
) -> None:
    """Run every queue's jobs, the outbox relay and the sweepers."""
    from bookbazar.worker import WorkerProcess

    settings = _settings()
    _require_urls(settings)
    process = WorkerProcess(settings, concurrency=concurrency)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, process.stop.set)
        await process.run()

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest."""
    from bookbazar.migrate import upgrade

    settings = _settings()
    database_url, _ = _require_urls(settings)
    upgrade(database_url)
    typer.echo("migrations applied")


@app.command()
def seed() -> None:
    """Load the demo catalog and demo accounts (idempotent)."""
    settings = _settings()
    creds = asyncio.run(_seed(settings))
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
def reconcile() -> None:
    """Rebuild every Redis stock counter exactly from PostgreSQL and report corrections."""
    settings = _settings()
    report = asyncio.run(_reconcile(settings))
    if not report:
        typer.echo("all stock counters were correct")
    for book_id, (before, after) in sorted(report.items(), key=lambda kv: str(kv[0])):
        was = "missing" if before is None else str(before)
        typer.echo(f"book {book_id}: {was} -> {after}")


async def _reconcile(settings: Settings) -> dict[UUID, tuple[int | None, int]]:
    from bookbazar.realtime.emitter import Emitter
    from bookbazar.services import Services

    async def no_emit(event: str, data: object, room: str) -> None:
        return None

    _require_urls(settings)
    services = Services.create(settings, no_emit, pool_size=2)
    try:
        report = await services.inventory.reconcile()
        if report.corrected:
            emitter = Emitter(services.redis, no_emit)
            await emitter.emit_stock({b: new for b, (_, new) in report.corrected.items()})
        return dict(report.corrected)
    finally:
        await services.close()


@app.command()
def up(
    port: Annotated[int | None, typer.Option(help="API port (default PORT or 8000)")] = None,
) -> None:
    """Run everything locally: embedded PostgreSQL and Redis when no URLs are set,
    migrations, demo catalog, then the API and a worker until Ctrl-C."""
    from bookbazar.embedded import EmbeddedServices

    os.environ.setdefault("BOOKBAZAR_ENV", "development")
    settings = _settings()
    if port is not None:
        settings.port = port
    env = dict(os.environ)
    embedded: EmbeddedServices | None = None
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    children: list[subprocess.Popen[bytes]] = []
    try:
        if not settings.database_url or not settings.redis_url:
            embedded = EmbeddedServices(settings.data_dir)
            embedded.start()
            if not settings.database_url:
                env["DATABASE_URL"] = embedded.postgres.create_database("bookbazar")
            if not settings.redis_url:
                env["REDIS_URL"] = embedded.redis.url
        env["PORT"] = str(settings.port)
        env.setdefault("PUBLIC_URL", f"http://{settings.host}:{settings.port}")
        for command in (["migrate"], ["seed"], ["reconcile"]):
            subprocess.run([sys.executable, "-m", "bookbazar", *command], env=env, check=True)
        from bookbazar.embedded import _die_with_parent

        for command in (["api"], ["worker"]):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bookbazar", *command],
                    env=env,
                    preexec_fn=_die_with_parent,
                )
            )
        base = env["PUBLIC_URL"]
        _wait_ready(f"{base}/readyz", children)
        typer.echo(
            "\nBook Bazar is up.\n"
            f"  API:      {base}/api/v1\n"
            f"  Docs:     {base}/docs\n"
            f"  Health:   {base}/readyz\n"
            f"  Metrics:  {base}/metrics\n"
            f"  Socket.IO: {base}/socket.io\n"
            f"  Demo logins: see `bookbazar seed` output above "
            f"({settings.data_dir / 'demo-credentials.json'})\n"
            "Press Ctrl-C to stop.\n"
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c.args for c in children if c.poll() not in (None, 0)]
        if failed and not stopping:
            typer.echo(f"a process exited: {failed}", err=True)
            raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopping…")
    except subprocess.CalledProcessError as exc:
        typer.echo(f"start-up step failed: {' '.join(map(str, exc.cmd[2:]))}", err=True)
        raise typer.Exit(1) from None
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise typer.Exit(1)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    typer.echo(f"service not ready after {timeout:.0f}s: {url}", err=True)
    raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
