"""The admin API behind the operator page: who may call it, what it shows, and retrying
a dead letter moves the job back to its queue."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bookbazar.kit.queues import DEAD_LETTER, NOTIFY, PAYMENT
from bookbazar.services import Services
from tests.conftest import create_book, make_admin, register
from tests.orders.conftest import add_to_cart, place

ADMIN_GETS = ["/api/v1/admin/orders", "/api/v1/admin/inventory", "/api/v1/admin/dead-letter"]


@pytest.mark.parametrize("path", ADMIN_GETS)
async def test_admin_reads_need_a_token_and_the_admin_role(
    client: httpx.AsyncClient, services: Services, path: str
) -> None:
    assert (await client.get(path)).status_code == 401
    customer = await register(client)
    resp = await client.get(path, headers=customer["headers"])
    assert resp.status_code == 403
    assert resp.json()["success"] is False
    admin = await make_admin(client, services)
    resp = await client.get(path, headers=admin["headers"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"] is True


async def test_retry_needs_the_admin_role(client: httpx.AsyncClient, services: Services) -> None:
    path = "/api/v1/admin/dead-letter/1/retry"
    assert (await client.post(path)).status_code == 401
    customer = await register(client)
    assert (await client.post(path, headers=customer["headers"])).status_code == 403


async def _order(client: httpx.AsyncClient, services: Services, stock: int = 5) -> dict[str, Any]:
    user = await register(client)
    book = await create_book(services, stock=stock, title=f"Admin {uuid.uuid4().hex[:6]}")
    await add_to_cart(client, user, book, 2)
    resp = await place(client, user)
    assert resp.status_code == 201, resp.text
    return {"user": user, "book": book, "orderId": resp.json()["data"]["orderId"]}


async def test_orders_by_status_with_counts(client: httpx.AsyncClient, services: Services) -> None:
    admin = await make_admin(client, services)
    first = await _order(client, services)
    second = await _order(client, services)
    cancelled = await client.post(
        f"/api/v1/orders/{second['orderId']}/cancel", headers=second["user"]["headers"]
    )
    assert cancelled.status_code == 200

    resp = await client.get("/api/v1/admin/orders", headers=admin["headers"])
    data = resp.json()["data"]
    assert data["total"] == 2
    assert [o["orderId"] for o in data["items"]] == [second["orderId"], first["orderId"]]
    assert data["counts"]["PAYMENT_PENDING"] == 1 and data["counts"]["CANCELLED"] == 1
    assert data["counts"]["DELIVERED"] == 0

    resp = await client.get(
        "/api/v1/admin/orders", params={"status": "PAYMENT_PENDING"}, headers=admin["headers"]
    )
    data = resp.json()["data"]
    assert data["status"] == "PAYMENT_PENDING" and data["total"] == 1
    [row] = data["items"]
    assert row["orderId"] == first["orderId"]
    assert row["customer"]["email"] == first["user"]["user"]["email"]
    assert row["units"] == 2 and row["total"] == 2 * 49_900 and row["currency"] == "INR"

    bad = await client.get(
        "/api/v1/admin/orders", params={"status": "LOST"}, headers=admin["headers"]
    )
    assert bad.status_code == 422
    assert "status" in bad.json()["message"]


async def test_inventory_shows_on_hand_and_available(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    placed = await _order(client, services, stock=5)
    resp = await client.get("/api/v1/admin/inventory", headers=admin["headers"])
    assert resp.status_code == 200
    [book] = [b for b in resp.json()["data"]["items"] if b["id"] == str(placed["book"])]
    # Two units are held by the unpaid order: on hand is unchanged, available is not.
    assert book["stock"] == 5 and book["available"] == 3


async def _dead_letter(services: Services, queue: str, name: str, payload: Any) -> str:
    await services.queues.dead_letter(queue, name, "original-1", payload, "RuntimeError('x')", 10)
    jobs = await services.queues.get(DEAD_LETTER).getJobs(["waiting"])
    assert jobs
    return str(max(jobs, key=lambda j: int(j.timestamp)).id)


async def test_dead_letter_list_and_retry_moves_the_job_back(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    payload = {"paymentId": str(uuid.uuid4()), "orderId": str(uuid.uuid4())}
    dead_id = await _dead_letter(services, PAYMENT, "payment:refund", payload)

    listed = await client.get("/api/v1/admin/dead-letter", headers=admin["headers"])
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert data["total"] == 1
    [item] = data["items"]
    assert item["id"] == dead_id and item["originalQueue"] == PAYMENT
    assert item["name"] == "payment:refund" and item["payload"] == payload
    assert item["attemptsMade"] == 10 and "RuntimeError" in item["reason"]
    assert item["originalJobId"] == "original-1" and item["deadLetteredAt"] > 0

    payment_queue = services.queues.get(PAYMENT)
    before = await payment_queue.getJobCounts("waiting", "delayed", "prioritized")
    resp = await client.post(f"/api/v1/admin/dead-letter/{dead_id}/retry", headers=admin["headers"])
    assert resp.status_code == 200, resp.text
    result = resp.json()["data"]
    assert result["queue"] == PAYMENT and result["name"] == "payment:refund"

    requeued = await payment_queue.getJob(result["jobId"])
    assert requeued is not None
    assert requeued.name == "payment:refund" and requeued.data == payload
    assert int(requeued.opts["attempts"]) == 10  # the queue's normal options again
    after = await payment_queue.getJobCounts("waiting", "delayed", "prioritized")
    assert sum(after.values()) == sum(before.values()) + 1
    # Gone from the dead-letter queue, so a second retry is a 404 and adds nothing.
    assert await services.queues.get(DEAD_LETTER).getJob(dead_id) is None
    listed = await client.get("/api/v1/admin/dead-letter", headers=admin["headers"])
    assert listed.json()["data"] == {"items": [], "total": 0}
    again = await client.post(
        f"/api/v1/admin/dead-letter/{dead_id}/retry", headers=admin["headers"]
    )
    assert again.status_code == 404
    assert sum(
        (await payment_queue.getJobCounts("waiting", "delayed", "prioritized")).values()
    ) == (sum(after.values()))


async def test_a_dead_letter_naming_an_unknown_queue_is_not_retried(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = await make_admin(client, services)
    dead_id = await _dead_letter(services, "no-such-queue", "x", {"a": 1})
    resp = await client.post(f"/api/v1/admin/dead-letter/{dead_id}/retry", headers=admin["headers"])
    assert resp.status_code == 422
    assert "no-such-queue" in resp.json()["message"]
    assert await services.queues.get(DEAD_LETTER).getJob(dead_id) is not None

    ok_id = await _dead_letter(services, NOTIFY, "notify", {"orderId": str(uuid.uuid4())})
    resp = await client.post(f"/api/v1/admin/dead-letter/{ok_id}/retry", headers=admin["headers"])
    assert resp.status_code == 200
    assert resp.json()["data"]["queue"] == NOTIFY
