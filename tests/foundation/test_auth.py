"""Auth: register, login, logout, me; tokens from header and cookie; roles; rate limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bookbazar.app import BookBazarApp, create_app
from bookbazar.config import Settings
from bookbazar.services import Services
from tests.conftest import Infra, make_settings, register
from tests.foundation.helpers import assert_error, assert_ok, error_fields

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


async def count_users(services: Services, email: str | None = None) -> int:
    async with services.sessionmaker() as session:
        if email is None:
            result = await session.execute(text("SELECT count(*) FROM users"))
        else:
            result = await session.execute(
                text("SELECT count(*) FROM users WHERE lower(email) = lower(:e)"), {"e": email}
            )
        return int(result.scalar_one())


def cookie_header(resp: httpx.Response) -> str:
    headers = [h for h in resp.headers.get_list("set-cookie") if h.startswith("accessToken=")]
    assert len(headers) == 1, resp.headers
    return headers[0]


def new_client(app: BookBazarApp, address: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# ------------------------------------------------------------------ register


async def test_register_creates_user_and_signs_in(
    client: httpx.AsyncClient, settings: Settings, services: Services
) -> None:
    resp = await client.post(
        REGISTER,
        json={"email": "Asha@Example.COM", "password": "correct-horse-battery", "name": " Asha "},
    )
    data = assert_ok(resp, 201)
    user = data["user"]
    assert user["email"] == "asha@example.com"
    assert user["name"] == "Asha"
    assert user["role"] == "customer"
    uuid.UUID(user["id"])
    assert "createdAt" in user
    assert not any("password" in key.lower() for key in user)

    claims = jwt.decode(data["accessToken"], settings.secret, algorithms=["HS256"])
    assert claims["sub"] == user["id"]
    assert claims["role"] == "customer"
    assert claims["exp"] > time.time() + settings.jwt_ttl_seconds - 60

    cookie = cookie_header(resp)
    assert cookie.startswith(f"accessToken={data['accessToken']};")
    assert "httponly" in cookie.lower()
    assert "path=/" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert await count_users(services, "asha@example.com") == 1

    # The new user is signed in: the cookie alone authenticates.
    me = await client.get(ME)
    assert assert_ok(me)["user"]["id"] == user["id"]


async def test_password_is_stored_hashed_with_argon2(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client, password="plain-text-never")
    async with services.sessionmaker() as session:
        stored = (
            await session.execute(
                text("SELECT password_hash FROM users WHERE id = :id"), {"id": user["user"]["id"]}
            )
        ).scalar_one()
    assert stored.startswith("$argon2")
    assert "plain-text-never" not in stored


async def test_duplicate_email_is_409_case_insensitive(
    client: httpx.AsyncClient, services: Services
) -> None:
    await register(client, email="dup@example.com")
    resp = await client.post(
        REGISTER, json={"email": "DUP@Example.com", "password": "another-password", "name": "X"}
    )
    body = assert_error(resp, 409)
    assert "email" in body["message"].lower()
    assert "set-cookie" not in resp.headers
    assert await count_users(services, "dup@example.com") == 1


async def test_short_password_is_422_naming_the_field(
    client: httpx.AsyncClient, services: Services
) -> None:
    resp = await client.post(
        REGISTER, json={"email": "short@example.com", "password": "1234567", "name": "S"}
    )
    body = assert_error(resp, 422)
    assert error_fields(body) == {"password"}
    assert "password" in body["message"]
    assert await count_users(services) == 0


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"email": "not-an-email", "password": "long-enough-pw", "name": "A"}, "email"),
        ({"email": "a@", "password": "long-enough-pw", "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "long-enough-pw", "name": "   "}, "name"),
        ({"email": "a@example.com", "password": "long-enough-pw"}, "name"),
        ({"password": "long-enough-pw", "name": "A"}, "email"),
        ({"email": "a@example.com", "password": 12345678, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129, "name": "A"}, "password"),
    ],
)
async def test_register_rejects_bad_input(
    client: httpx.AsyncClient, services: Services, payload: dict[str, Any], field: str
) -> None:
    body = assert_error(await client.post(REGISTER, json=payload), 422)
    assert field in error_fields(body)
    assert await count_users(services) == 0


async def test_register_refuses_unknown_fields(
    client: httpx.AsyncClient, services: Services
) -> None:
    # A client must not be able to pick its own role.
    resp = await client.post(
        REGISTER,
        json={
            "email": "sneaky@example.com",
            "password": "long-enough-pw",
            "name": "S",
            "role": "admin",
        },
    )
    body = assert_error(resp, 422)
    assert error_fields(body) == {"role"}
    assert await count_users(services) == 0


# ------------------------------------------------------------------ login


async def test_login_sets_cookie_and_returns_token(
    client: httpx.AsyncClient, app: BookBazarApp, settings: Settings
) -> None:
    user = await register(client, email="login@example.com")
    async with new_client(app) as fresh:
        resp = await fresh.post(
            LOGIN, json={"email": "LOGIN@example.com", "password": user["password"]}
        )
        data = assert_ok(resp)
        assert data["user"]["id"] == user["user"]["id"]
        claims = jwt.decode(data["accessToken"], settings.secret, algorithms=["HS256"])
        assert claims["sub"] == user["user"]["id"]
        cookie = cookie_header(resp)
        assert cookie.startswith(f"accessToken={data['accessToken']};")
        assert "httponly" in cookie.lower()
        assert assert_ok(await fresh.get(ME))["user"]["email"] == "login@example.com"


@pytest.mark.parametrize("email", ["wrongpw@example.com", "nobody@example.com"])
async def test_wrong_credentials_are_401_without_saying_which(
    client: httpx.AsyncClient, email: str
) -> None:
    await register(client, email="wrongpw@example.com")
    resp = await client.post(LOGIN, json={"email": email, "password": "not-the-password"})
    body = assert_error(resp, 401)
    assert body["message"] == "Invalid email or password"
    assert "set-cookie" not in resp.headers
    assert resp.headers["www-authenticate"] == 'Bearer realm="bookbazar"'


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": ""}, "password"),
        ({"email": "bad", "password": "whatever1"}, "email"),
        ({"email": "a@example.com", "password": "whatever1", "remember": True}, "remember"),
    ],
)
async def test_login_rejects_bad_input(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    body = assert_error(await client.post(LOGIN, json=payload), 422)
    assert field in error_fields(body)


async def test_failed_logins_per_account_are_rate_limited(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register(client, email="locked@example.com")
    wrong = {"email": "locked@example.com", "password": "wrong-password"}
    for _ in range(settings.login_max_failures):
        assert_error(await client.post(LOGIN, json=wrong), 401)
    resp = await client.post(LOGIN, json=wrong)
    assert_error(resp, 429)
    retry_after = int(resp.headers["retry-after"])
    assert 0 < retry_after <= settings.login_window_seconds
    # While locked, even the right password is refused (no brute forcing through the lock),
    # and the lock is per account: another account from the same address still signs in.
    right = {"email": "LOCKED@example.com", "password": user["password"]}
    assert_error(await client.post(LOGIN, json=right), 429)
    other = await register(client, email="free@example.com")
    resp = await client.post(
        LOGIN, json={"email": "free@example.com", "password": other["password"]}
    )
    assert_ok(resp)


async def test_success_under_the_limit_is_not_blocked_and_resets_the_count(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register(client, email="almost@example.com")
    wrong = {"email": "almost@example.com", "password": "wrong-password"}
    right = {"email": "almost@example.com", "password": user["password"]}
    for _round in range(2):
        for _ in range(settings.login_max_failures - 1):
            assert_error(await client.post(LOGIN, json=wrong), 401)
        resp = await client.post(LOGIN, json=right)
        assert_ok(resp)
        assert "retry-after" not in resp.headers


@pytest.fixture
async def strict_app(infra: Infra, clean_state: None) -> AsyncIterator[BookBazarApp]:
    """The app with a login limit of 2 per account (so 8 per address)."""
    application = create_app(make_settings(infra, login_max_failures=2))
    async with application.api.router.lifespan_context(application.api):
        yield application


async def test_failed_logins_per_address_are_rate_limited_across_accounts(
    strict_app: BookBazarApp, raw_redis: Redis
) -> None:
    async with (
        new_client(strict_app, "198.51.100.1") as attacker,
        new_client(strict_app, "198.51.100.2") as neighbour,
    ):
        victim = await register(attacker, email="victim@example.com")
        # One failure on each of many accounts: no account reaches its own limit ...
        for i in range(8):
            resp = await attacker.post(
                LOGIN, json={"email": f"target{i}@example.com", "password": "guess-123"}
            )
            assert_error(resp, 401)
        # ... but the address did: it is refused, even with valid credentials.
        resp = await attacker.post(
            LOGIN, json={"email": "victim@example.com", "password": victim["password"]}
        )
        assert_error(resp, 429)
        assert int(resp.headers["retry-after"]) > 0
        # Another address is unaffected.
        resp = await neighbour.post(
            LOGIN, json={"email": "victim@example.com", "password": victim["password"]}
        )
        assert_ok(resp)


# ------------------------------------------------------------------ logout and me


async def test_logout_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await register(client)
    assert_ok(await client.get(ME))
    resp = await client.post(LOGOUT)
    assert_ok(resp)
    cookie = cookie_header(resp).lower()
    assert "max-age=0" in cookie or "expires=thu, 01 jan 1970" in cookie
    assert "httponly" in cookie
    assert "accessToken" not in client.cookies
    assert_error(await client.get(ME), 401)


async def test_me_with_bearer_header_only(client: httpx.AsyncClient, app: BookBazarApp) -> None:
    user = await register(client)
    async with new_client(app) as fresh:
        assert not fresh.cookies
        data = assert_ok(await fresh.get(ME, headers=user["headers"]))
        assert data["user"]["id"] == user["user"]["id"]
        assert data["user"]["email"] == user["user"]["email"]


async def test_me_with_cookie_only(client: httpx.AsyncClient, app: BookBazarApp) -> None:
    user = await register(client)
    async with new_client(app) as fresh:
        fresh.cookies.set("accessToken", user["accessToken"])
        assert assert_ok(await fresh.get(ME))["user"]["id"] == user["user"]["id"]


def _token(secret: str, **claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "role": "customer",
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm="HS256")


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    resp = await client.get(ME)
    body = assert_error(resp, 401)
    assert "token" in body["message"].lower()
    assert resp.headers["www-authenticate"] == 'Bearer realm="bookbazar"'


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token whatever",
    ],
)
async def test_malformed_token_is_401(client: httpx.AsyncClient, authorization: str) -> None:
    resp = await client.get(ME, headers={"Authorization": authorization})
    assert_error(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer ")


async def test_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    user = await register(client)
    past = int(time.time()) - 3600
    token = _token(settings.secret, sub=user["user"]["id"], iat=past - 600, exp=past)
    client.cookies.clear()
    body = assert_error(await client.get(ME, headers={"Authorization": f"Bearer {token}"}), 401)
    assert "expired" in body["message"].lower()


async def test_forged_tokens_are_401(client: httpx.AsyncClient, settings: Settings) -> None:
    user = await register(client)
    client.cookies.clear()
    forged = [
        _token("wrong-secret-" + "y" * 40, sub=user["user"]["id"]),
        _token("wrong-secret-" + "y" * 40, sub=user["user"]["id"], role="admin"),
        _none_alg_token(user["user"]["id"]),
        _token(settings.secret, sub="not-a-uuid"),
        _token(settings.secret, sub=user["user"]["id"], exp=None),
        _token(settings.secret, sub=user["user"]["id"], role=None),
    ]
    for token in forged:
        assert_error(await client.get(ME, headers={"Authorization": f"Bearer {token}"}), 401)
    # A forged admin token does not open admin routes either.
    resp = await client.post(
        "/api/v1/admin/books",
        json={"title": "T", "author": "A", "price": 100, "currency": "INR", "stock": 1},
        headers={"Authorization": f"Bearer {forged[1]}"},
    )
    assert_error(resp, 401)


def _none_alg_token(sub: str) -> str:
    """An unsigned token (alg=none), hand-built: PyJWT refuses to verify it."""
    import base64
    import json

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = b64({"alg": "none", "typ": "JWT"})
    return f"{header}.{b64({'sub': sub, 'role': 'admin', 'exp': 9_999_999_999})}."


async def test_token_of_a_deleted_user_is_401(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    async with services.sessionmaker() as session, session.begin():
        await session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user["user"]["id"]})
    assert_error(await client.get(ME, headers=user["headers"]), 401)


async def test_customer_calling_admin_routes_is_403(
    client: httpx.AsyncClient, services: Services
) -> None:
    user = await register(client)
    book = {"title": "Nope", "author": "A", "price": 100, "currency": "INR", "stock": 1}
    body = assert_error(
        await client.post("/api/v1/admin/books", json=book, headers=user["headers"]), 403
    )
    assert "admin" in body["message"].lower()
    resp = await client.post(
        f"/api/v1/admin/books/{uuid.uuid4()}/restock", json={"quantity": 1}, headers=user["headers"]
    )
    assert_error(resp, 403)
    async with services.sessionmaker() as session:
        assert (await session.execute(text("SELECT count(*) FROM books"))).scalar_one() == 0


def test_a_remembered_token_still_expires_and_a_forged_one_is_never_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """decode_token remembers tokens it verified; the expiry is checked on every use, and
    a token signed with another secret (or altered) is refused every time."""
    from bookbazar.auth import tokens
    from bookbazar.errors import Unauthorized

    secret = "s" * 8 + "-remembered-token-secret-0123456789"
    user = uuid.uuid4()
    token = tokens.issue_token(secret, user, "customer", 60)
    assert tokens.decode_token(secret, token).user_id == user
    assert (secret, token) in tokens._VERIFIED
    assert tokens.decode_token(secret, token).user_id == user  # from memory

    forged = tokens.issue_token("another-secret-that-is-long-enough-000", user, "admin", 60)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="Invalid token"):
            tokens.decode_token(secret, forged)
    with pytest.raises(Unauthorized, match="Invalid token"):
        tokens.decode_token(secret, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert (secret, forged) not in tokens._VERIFIED

    later = time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode_token(secret, token)
    assert (secret, token) not in tokens._VERIFIED
