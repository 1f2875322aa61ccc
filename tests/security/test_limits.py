"""Abuse limits: failed sign-ins are rate-limited even when the guesses arrive at once, and
every POST route refuses a body over MAX_BODY_BYTES with 413, whether or not the client
says how long it is."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from bookbazar.app import BookBazarApp
from bookbazar.config import Settings
from bookbazar.realtime.server import gateway_of
from bookbazar.services import Services
from tests.conftest import Infra, LiveServer, make_settings, register
from tests.foundation.helpers import assert_error
from tests.security.routes import app_routes, concrete

LOGIN = "/api/v1/auth/login"
WINDOW = 3


@pytest.fixture
def settings(infra: Infra, clean_state: None) -> Settings:
    return make_settings(infra, login_max_failures=5, login_window_seconds=WINDOW)


async def test_concurrent_wrong_passwords_cannot_slip_past_the_limit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register(client)
    email = user["user"]["email"]
    guesses = await asyncio.gather(
        *(
            client.post(LOGIN, json={"email": email, "password": f"guess-{n:04d}"})
            for n in range(20)
        )
    )
    statuses = Counter(r.status_code for r in guesses)
    assert set(statuses) == {401, 429}, statuses
    assert statuses[401] <= settings.login_max_failures, statuses
    for resp in guesses:
        if resp.status_code == 429:
            assert_error(resp, 429)
            assert 1 <= int(resp.headers["Retry-After"]) <= WINDOW
    # Locked: even the right password is refused until the window ends ...
    locked = await client.post(LOGIN, json={"email": email, "password": user["password"]})
    assert_error(locked, 429)
    await asyncio.sleep(int(locked.headers["Retry-After"]) + 0.5)
    # ... and then it works again.
    again = await client.post(LOGIN, json={"email": email, "password": user["password"]})
    assert again.status_code == 200, again.text


def _post_routes(app: BookBazarApp) -> list[str]:
    return sorted(concrete(path) for method, path in app_routes(app) if method == "POST")


async def test_every_post_route_refuses_an_oversized_body(
    app: BookBazarApp, client: httpx.AsyncClient, settings: Settings, services: Services
) -> None:
    user = await register(client)
    limit = settings.max_body_bytes
    tables = "users, books, orders, payments, outbox_events, processed_webhook_events"

    async def counts() -> tuple[int, ...]:
        async with services.sessionmaker() as session:
            return tuple(
                [
                    (await session.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one()
                    for t in tables.split(", ")
                ]
            )

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"padding": "'
        for _ in range(limit // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    before = await counts()
    failures = []
    headers = {**user["headers"], "Idempotency-Key": uuid.uuid4().hex}
    headers["Content-Type"] = "application/json"
    for path in _post_routes(app):
        sized = await client.post(path, content=b"x" * (limit + 1), headers=headers)
        streamed = await client.post(path, content=chunks(), headers=headers)
        assert "content-length" not in streamed.request.headers
        for how, resp in (("with Content-Length", sized), ("streamed", streamed)):
            try:
                body = assert_error(resp, 413)
                assert str(limit) in str(body["message"]), body
            except AssertionError as exc:
                failures.append(f"POST {path} {how}: {exc}")
    assert not failures, "\n".join(failures)
    assert await counts() == before


async def test_over_a_real_server_streamed_bodies_are_capped_and_small_ones_served(
    live_server: LiveServer, settings: Settings
) -> None:
    """uvicorn with chunked uploads: an oversized one is refused even by a route that
    reads no body; a small one still reaches the route whole."""
    limit = settings.max_body_bytes

    async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        big = await http.post(
            "/api/v1/auth/logout", content=stream([b"x" * 4096] * (limit // 4096 + 2))
        )
        assert_error(big, 413)
        email = f"chunked-{uuid.uuid4().hex[:8]}@example.com"
        body = f'{{"email": "{email}", "password": "long-enough-pw", "name": "Chunked"}}'.encode()
        small = await http.post(
            "/api/v1/auth/register",
            content=stream([body[:10], body[10:30], body[30:]]),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in small.request.headers
        assert small.status_code == 201, small.text
        assert small.json()["data"]["user"]["email"] == email
    await gateway_of(live_server.app.sio).close()
