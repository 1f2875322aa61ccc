"""/metrics runs no query per scrape and is not public (defect 13).

The API's scrape renders what the process already holds (order and stock gauges are the
worker's). With METRICS_TOKEN set a scrape must send it as a Bearer token (401 with
WWW-Authenticate otherwise); in production without METRICS_TOKEN /metrics is off (404).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bookbazar import __version__
from bookbazar.app import create_app
from bookbazar.config import Settings
from bookbazar.services import Services
from tests.conftest import Infra, make_settings

TOKEN = "scrape-token-4f9c2e7a1b"
# Production refuses weak secrets: at least 32 characters, at least 8 distinct ones.
STRONG_JWT_SECRET = "pR0d-Jwt-S3cret-9f8e7d6c5b4a3210-ZyXwVu"
PRODUCTION_WEBHOOK_SECRET = "whsec_prod_8c1d2e3f4a5b6c7d"


@contextlib.contextmanager
def statements(*engines: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement these engines send, and every statement any asyncpg
    connection of this process sends (the order flow's pool, bookbazar/pg.py), while
    inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    original_execute = asyncpg.connection.Connection._execute
    original_simple = asyncpg.connection.Connection.execute

    async def spy_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return await original_execute(self, query, *args, **kwargs)

    async def spy_simple(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return await original_simple(self, query, *args, **kwargs)

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncpg.connection.Connection, "_execute", spy_execute)
        patch.setattr(asyncpg.connection.Connection, "execute", spy_simple)
        try:
            yield seen
        finally:
            for engine in engines:
                event.remove(engine.sync_engine, "before_cursor_execute", record)


@contextlib.asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with application.api.router.lifespan_context(application.api):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def production(infra: Infra, **overrides: Any) -> Settings:
    return make_settings(
        infra,
        environment="production",
        jwt_secret=STRONG_JWT_SECRET,
        sandbox_webhook_secret=PRODUCTION_WEBHOOK_SECRET,
        **overrides,
    )


def assert_metrics(resp: httpx.Response) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    assert "bookbazar_http_requests_total" in resp.text


def assert_envelope(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, f"/metrics answered {resp.status_code}, not {status}"
    body = resp.json()
    assert body["success"] is False and body["statusCode"] == status, body
    assert body["message"]
    assert "bookbazar_" not in resp.text  # no metric leaks into the refusal


async def test_a_scrape_runs_no_query(client: httpx.AsyncClient, services: Services) -> None:
    engines = (services.engine, services.maintenance_engine)
    # The listeners do see this process's queries (a catalog read runs some on the
    # asyncpg pool; a book's page through SQLAlchemy).
    with statements(*engines) as control:
        assert (await client.get("/api/v1/books")).status_code == 200
    assert control, "the asyncpg spy saw nothing: it would prove nothing below"
    with statements(*engines) as control:
        missing = await client.get("/api/v1/books/00000000-0000-4000-8000-000000000000")
        assert missing.status_code == 404
    assert control, "the SQLAlchemy listener saw nothing: it would prove nothing below"

    with statements(*engines) as seen:
        for _ in range(3):
            assert_metrics(await client.get("/metrics"))
    assert seen == [], f"/metrics ran SQL: {seen}"


@pytest.mark.parametrize("environment", ["test", "production"])
async def test_a_token_is_required_when_set(
    infra: Infra, settings: Settings, environment: str
) -> None:
    if environment == "production":
        configured = production(infra, metrics_token=TOKEN)
    else:
        configured = make_settings(infra, metrics_token=TOKEN)
    async with app_client(configured) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": TOKEN},  # without the scheme
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert_envelope(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer"), refused.headers
        assert_metrics(await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}))
        # Only /metrics is guarded by it.
        assert (await client.get("/healthz")).status_code == 200


async def test_production_without_a_token_has_no_metrics(infra: Infra, settings: Settings) -> None:
    async with app_client(production(infra)) as client:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            assert_envelope(await client.get("/metrics", headers=headers), 404)
        assert (await client.get("/healthz")).status_code == 200


async def test_each_gauge_is_exported_by_one_process_kind(
    client: httpx.AsyncClient,
) -> None:
    """The API exports its own metrics and the build, never the worker's gauges (a sum
    over every scraped process would count them twice), and no `_created` series."""
    resp = await client.get("/metrics")
    assert_metrics(resp)
    names = {
        line.split("{")[0].split(" ")[0]
        for line in resp.text.splitlines()
        if line and not line.startswith("#")
    }
    assert f'bookbazar_build_info{{version="{__version__}"}} 1.0' in resp.text
    assert "process_cpu_seconds_total" in names
    worker_only = {
        "bookbazar_orders",
        "bookbazar_active_reservations",
        "bookbazar_reserved_units",
        "bookbazar_stock_drift_units",
        "bookbazar_stock_audit_last_timestamp_seconds",
        "bookbazar_jobs_total",
    }
    assert not names & worker_only, names & worker_only
    assert not [name for name in names if name.endswith("_created")]


async def test_development_without_a_token_serves_metrics(infra: Infra, settings: Settings) -> None:
    async with app_client(make_settings(infra, environment="development")) as client:
        assert_metrics(await client.get("/metrics"))
