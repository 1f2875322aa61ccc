from __future__ import annotations

import httpx

from bookbazar.services import Services
from tests.conftest import create_book, make_admin, register


async def test_register_me_and_catalog(client: httpx.AsyncClient, services: Services) -> None:
    user = await register(client)
    me = await client.get("/api/v1/auth/me", headers=user["headers"])
    assert me.status_code == 200, me.text
    book_id = await create_book(services, stock=3)
    resp = await client.get(f"/api/v1/books/{book_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["available"] == 3
    admin = await make_admin(client, services)
    resp = await client.post(
        f"/api/v1/admin/books/{book_id}/restock", json={"quantity": 2}, headers=admin["headers"]
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["available"] == 5


def test_request_session_commits_before_the_response_is_sent() -> None:
    """FastAPI ends yield dependencies after the response by default; the request's
    transaction must commit before it, or a client could get 201 for a write it cannot
    read yet (or that then fails to commit)."""
    from typing import get_args

    from bookbazar.db import SessionDep

    depends = get_args(SessionDep)[1]
    assert depends.scope == "function"
