"""Every route is classified (public, signed-in user, admin), and every route that needs a
user refuses a missing, an expired and a forged token with 401, whichever way it is
carried (Bearer header or the accessToken cookie)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from bookbazar.app import BookBazarApp
from bookbazar.auth.tokens import issue_token
from bookbazar.config import Settings
from tests.conftest import register
from tests.foundation.helpers import assert_error
from tests.security.routes import (
    ADMIN,
    AUTHENTICATED,
    CUSTOMER,
    PUBLIC,
    Route,
    app_routes,
    concrete,
    requires,
)


def test_every_route_is_classified(app: BookBazarApp) -> None:
    served = set(app_routes(app))
    assert not PUBLIC & AUTHENTICATED
    unclassified = served - PUBLIC - AUTHENTICATED
    assert not unclassified, f"classify these routes in tests/security/routes.py: {unclassified}"
    gone = (PUBLIC | AUTHENTICATED) - served
    assert not gone, f"these routes are listed but no longer served: {gone}"


def test_the_classification_matches_the_routes_dependencies(app: BookBazarApp) -> None:
    """A route listed as public takes no user; one listed for users or admins requires one."""
    expected = {"nobody": PUBLIC, "user": CUSTOMER, "admin": ADMIN}
    for route_key, route in app_routes(app).items():
        needs = requires(route)
        assert route_key in expected[needs], f"{route_key} requires {needs}"


def test_the_spec_declares_security_exactly_where_a_token_is_needed(app: BookBazarApp) -> None:
    spec = app.api.openapi()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            secured = bool(operation.get("security"))
            assert secured == (key in AUTHENTICATED), f"{key}: security {secured}"


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _bad_tokens(settings: Settings, user_id: str) -> dict[str, str]:
    """An expired token and forged ones, all for a real user."""
    now = int(time.time())
    valid = issue_token(settings.secret, uuid.UUID(user_id), "customer", 3600)
    header, _, signature = valid.split(".")
    promoted = _b64({"sub": user_id, "role": "admin", "iat": now, "exp": now + 3600})
    return {
        "expired": jwt.encode(
            {"sub": user_id, "role": "customer", "iat": now - 7200, "exp": now - 3600},
            settings.secret,
            algorithm="HS256",
        ),
        "wrong secret": jwt.encode(
            {"sub": user_id, "role": "admin", "iat": now, "exp": now + 3600},
            "attacker-secret-" + "z" * 40,
            algorithm="HS256",
        ),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{promoted}.",
        "payload swapped": f"{header}.{promoted}.{signature}",
        "signature cut": f"{header}.{valid.split('.')[1]}.",
        "garbage": "not.a.jwt",
    }


def _request(client: httpx.AsyncClient, route: Route) -> Callable[..., Any]:
    method, path = route
    url = concrete(path)

    async def send(headers: dict[str, str], cookies: dict[str, str] | None = None) -> Any:
        client.cookies.clear()
        if cookies:
            client.cookies.update(cookies)
        body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        try:
            return await client.request(method, url, headers=headers, **body)
        finally:
            client.cookies.clear()

    return send


async def test_every_authenticated_route_refuses_missing_expired_and_forged_tokens(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register(client)
    bad = _bad_tokens(settings, user["user"]["id"])
    failures: list[str] = []
    for route in sorted(AUTHENTICATED):
        send = _request(client, route)
        attempts: dict[str, tuple[dict[str, str], dict[str, str] | None]] = {
            "missing": ({}, None),
            "empty bearer": ({"Authorization": "Bearer "}, None),
        }
        for name, token in bad.items():
            attempts[f"{name} (bearer)"] = ({"Authorization": f"Bearer {token}"}, None)
            attempts[f"{name} (cookie)"] = ({}, {"accessToken": token})
        for name, (headers, cookies) in attempts.items():
            resp = await send(headers, cookies)
            try:
                body = assert_error(resp, 401)
                if name.startswith("expired"):
                    assert "expired" in str(body["message"]).lower(), body
            except AssertionError as exc:
                failures.append(f"{route} with a {name} token: {exc}")
    assert not failures, "\n".join(failures)


async def test_admin_routes_refuse_a_customer_with_403(client: httpx.AsyncClient) -> None:
    user = await register(client)
    failures = []
    for route in sorted(ADMIN):
        resp = await _request(client, route)(user["headers"])
        try:
            body = assert_error(resp, 403)
            assert "admin" in str(body["message"]).lower(), body
        except AssertionError as exc:
            failures.append(f"{route}: {exc}")
    assert not failures, "\n".join(failures)


async def test_public_routes_need_no_token(client: httpx.AsyncClient) -> None:
    """Called without any token, none of them answers 401 or 403."""
    failures = []
    for route in sorted(PUBLIC):
        resp = await _request(client, route)({})
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            failures.append(f"{route}: {resp.status_code} {resp.text[:200]}")
    assert not failures, "\n".join(failures)
