"""The HTTP edge: the error envelope for each kind of bad input, request ids, and the
operations routes (/healthz, /readyz, /metrics, /docs)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bookbazar.app import create_app
from bookbazar.config import Settings
from bookbazar.errors import install_error_handlers
from bookbazar.kit.responses import error_example
from bookbazar.middleware import RequestContextMiddleware
from bookbazar.services import Services
from tests.conftest import Infra, create_book, free_port, make_settings, register
from tests.foundation.helpers import assert_error, assert_ok, error_fields

REGISTER = "/api/v1/auth/register"


async def user_count(services: Services) -> int:
    async with services.sessionmaker() as session:
        return int((await session.execute(text("SELECT count(*) FROM users"))).scalar_one())


# ------------------------------------------------------------------ bad bodies


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a@example.com", "password": ',
        b"{'email': 'single-quoted@example.com'}",
        b"not json at all",
        b'{"email": "a@example.com",}',
        b"\xff\xfe\x00garbage",
    ],
)
async def test_malformed_json_gets_the_envelope(
    client: httpx.AsyncClient, services: Services, raw: bytes
) -> None:
    resp = await client.post(REGISTER, content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422), resp.text
    body = assert_error(resp, resp.status_code)
    assert error_fields(body) == {"body"}
    assert "json" in (body["message"] + str(body["errors"])).lower()
    assert await user_count(services) == 0


@pytest.mark.parametrize(
    "payload, fields",
    [
        ([1, 2, 3], {"body"}),
        ("just a string", {"body"}),
        (None, {"body"}),
        ({"email": 42, "password": True, "name": {"first": "A"}}, {"email", "password", "name"}),
        ({"email": ["a@example.com"], "password": "long-enough", "name": "A"}, {"email"}),
    ],
)
async def test_wrong_types_are_422_naming_each_field(
    client: httpx.AsyncClient, services: Services, payload: Any, fields: set[str]
) -> None:
    body = assert_error(await client.post(REGISTER, json=payload), 422)
    assert error_fields(body) == fields
    for field in fields - {"body"}:
        assert field in body["message"]
    assert await user_count(services) == 0


async def test_a_rejected_password_is_not_echoed(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        REGISTER, json={"email": "x@example.com", "password": "s3cr3t!", "name": "X"}
    )
    assert_error(resp, 422)
    assert "s3cr3t!" not in resp.text


async def test_form_encoded_body_is_422(client: httpx.AsyncClient) -> None:
    resp = await client.post(REGISTER, data={"email": "a@example.com", "password": "12345678"})
    assert_error(resp, 422)


async def test_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings, services: Services
) -> None:
    big = {
        "email": "big@example.com",
        "password": "long-enough",
        "name": "x" * settings.max_body_bytes,
    }
    body = assert_error(await client.post(REGISTER, json=big), 413)
    assert str(settings.max_body_bytes) in body["message"]

    # Without a Content-Length (chunked upload) the cap applies while reading.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "big@example.com", "password": "long-enough", "name": "'
        for _ in range(settings.max_body_bytes // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    resp = await client.post(
        REGISTER, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in resp.request.headers
    assert_error(resp, 413)
    assert await user_count(services) == 0


async def test_body_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        REGISTER,
        json={"email": "ok@example.com", "password": "p" * 100, "name": "n" * 200},
    )
    assert_ok(resp, 201)


# ------------------------------------------------------------------ routing errors


@pytest.mark.parametrize("path", ["/api/v1/nope", "/nope", "/api/v2/books", "/api/v1/books/x/y"])
async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404)


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/api/v1/books"),
        ("PUT", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/me"),
        ("PATCH", "/healthz"),
    ],
)
async def test_wrong_method_is_405_envelope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    resp = await client.request(method, path)
    assert_error(resp, 405)
    assert resp.headers.get("allow")


# ------------------------------------------------------------------ request ids


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    ids = set()
    for resp in (
        await client.get("/healthz"),
        await client.get("/api/v1/books"),
        await client.get("/api/v1/nope"),
        await client.post(REGISTER, content=b"{", headers={"Content-Type": "application/json"}),
        await client.get("/api/v1/auth/me"),
    ):
        request_id = resp.headers.get("x-request-id")
        assert request_id and re.fullmatch(r"[0-9a-f]{32}", request_id), resp.headers
        ids.add(request_id)
    assert len(ids) == 5  # a new one per request


async def test_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/v1/books", headers={"X-Request-ID": "trace-abc-123"})
    assert resp.headers["x-request-id"] == "trace-abc-123"
    resp = await client.get("/api/v1/nope", headers={"X-Request-ID": "trace-404"})
    assert resp.headers["x-request-id"] == "trace-404"


@pytest.mark.parametrize("unsafe", ["x" * 129, "has space", 'quote"d', "semi;colon"])
async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient, unsafe: str) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": unsafe})
    assert resp.headers["x-request-id"] != unsafe
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


# ------------------------------------------------------------------ operations


async def test_healthz(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    body = resp.json()
    assert body.get("data", body)["status"] == "ok"


async def test_readyz_with_both_services(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    payload = body.get("data", body)
    assert payload["status"] == "ready"
    assert payload["checks"] == {"postgres": "ok", "redis": "ok"}


@pytest.fixture
async def app_without_redis(infra: Infra, clean_state: None) -> AsyncIterator[httpx.AsyncClient]:
    """The app pointed at a Redis port where nothing listens."""
    settings = make_settings(infra, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    application = create_app(settings)
    async with application.api.router.lifespan_context(application.api):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_readyz_is_503_when_redis_is_unreachable(
    app_without_redis: httpx.AsyncClient,
) -> None:
    resp = await app_without_redis.get("/readyz")
    body = assert_error(resp, 503)
    assert body["errors"][0]["postgres"] == "ok"
    assert body["errors"][0]["redis"].startswith("unavailable")
    assert (await app_without_redis.get("/healthz")).status_code == 200


async def test_metrics_count_requests_by_route_template_and_status(
    client: httpx.AsyncClient, services: Services
) -> None:
    book_id = await create_book(services)
    await client.get(f"/api/v1/books/{book_id}")
    await client.get(f"/api/v1/books/{uuid.uuid4()}")
    await client.get("/assets/store.css")  # a mount (static files)
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    metrics = resp.text
    for status in ("200", "404"):
        line = re.search(
            r'^bookbazar_http_requests_total\{method="GET",route="/api/v1/books/\{book_id\}",'
            rf'status="{status}"\}} (\d+\.\d+)$',
            metrics,
            re.MULTILINE,
        )
        assert line and float(line.group(1)) >= 1, status
    assert str(book_id) not in metrics  # labels are route templates, not raw paths
    assert "store.css" not in metrics
    latency = (
        'bookbazar_http_request_duration_seconds_count{method="GET",'
        'route="/api/v1/books/{book_id}"}'
    )
    assert latency in metrics


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "swagger" in docs.text.lower()
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/books",
        "/api/v1/books/{book_id}",
        "/api/v1/admin/books",
        "/api/v1/admin/books/{book_id}/restock",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


async def test_a_signed_in_request_reaches_the_api_over_a_real_server(
    live_server: Any,
) -> None:
    """The same envelope and headers through uvicorn (not only the ASGI transport)."""
    async with httpx.AsyncClient(base_url=live_server.url) as c:
        user = await register(c)
        me = await c.get("/api/v1/auth/me", headers=user["headers"])
        assert assert_ok(me)["user"]["id"] == user["user"]["id"]
        assert me.headers["x-request-id"]
        resp = await c.post(REGISTER, content=b"{", headers={"Content-Type": "application/json"})
        assert_error(resp, 422)


# ------------------------------------------------------------------ the last line of defence


@pytest.fixture
async def bare_client(engine: AsyncEngine, clean_state: None) -> AsyncIterator[httpx.AsyncClient]:
    """The error handlers and middleware around routes that fail the way bugs and races do."""
    api = FastAPI()
    install_error_handlers(api)
    api.add_middleware(RequestContextMiddleware, max_body_bytes=1024)

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    @api.post("/race")
    async def race() -> None:
        # What two racing requests do when a service forgot the conflict: a real
        # unique-constraint violation from PostgreSQL.
        async with engine.begin() as conn:
            for _ in range(2):
                await conn.execute(
                    text(
                        "INSERT INTO users (id, email, name, password_hash, role) VALUES "
                        "(gen_random_uuid(), 'race@example.com', 'R', 'x', 'customer')"
                    )
                )

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_an_unexpected_error_is_a_500_envelope_with_request_id(
    bare_client: httpx.AsyncClient,
) -> None:
    resp = await bare_client.get("/boom", headers={"X-Request-ID": "bug-42"})
    body = assert_error(resp, 500)
    assert body["message"] == "Internal server error"
    assert "internal detail" not in resp.text
    assert resp.headers["x-request-id"] == "bug-42"


async def test_a_constraint_violation_is_409_not_500(
    bare_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    resp = await bare_client.post("/race")
    assert_error(resp, 409)
    assert resp.headers["x-request-id"]
    async with engine.connect() as conn:
        count = await conn.execute(text("SELECT count(*) FROM users"))
        assert count.scalar_one() == 0  # rolled back: nothing changed


async def test_the_documented_error_examples_are_what_the_server_answers(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The examples in the OpenAPI document (kit/responses.py) are real answers, not
    invented ones: each is reproduced here."""
    book_id = await create_book(services)
    anonymous = await client.get("/api/v1/orders")  # before signing in sets the cookie
    auth = (await register(client))["headers"]
    answers = {
        400: await client.post("/api/v1/orders", headers=auth),
        401: anonymous,
        403: await client.get("/api/v1/admin/orders", headers=auth),
        404: await client.get(f"/api/v1/orders/{uuid.uuid4()}", headers=auth),
        413: await client.post(
            "/api/v1/cart/add", headers=auth, content=b"x" * (services.settings.max_body_bytes + 1)
        ),
        422: await client.post(
            "/api/v1/cart/add", headers=auth, json={"bookId": str(book_id), "quantity": 0}
        ),
    }
    for code, resp in answers.items():
        assert resp.status_code == code, resp.text
        assert resp.json() == error_example(code), code
