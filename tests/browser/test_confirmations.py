"""Emptying the cart and cancelling an order ask first: dismissing the question changes
nothing, accepting it does what the button says."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import Shots, Store, open_page, signed_in_context
from tests.conftest import create_book


async def _answer_next_dialog(page: Any, accept: bool, seen: list[str]) -> None:
    async def answer(dialog: Any) -> None:
        seen.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    page.once("dialog", answer)


async def test_emptying_the_cart_and_cancelling_an_order_ask_first(
    browser: Any, store: Store, shots: Shots
) -> None:
    book = await create_book(store.services, title="Second Thoughts", stock=5)
    buyer = await store.register("Kavya")
    headers = buyer["headers"]
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer, cart=(book, 2))

    async def cart_lines() -> int:
        resp = await store.http.get("/api/v1/cart", headers=headers)
        return len(resp.json()["data"]["items"])

    # -- the cart: "no" keeps it, "yes" empties it
    page = await open_page(context, f"{store.url}/cart", errors)
    asked: list[str] = []
    await _answer_next_dialog(page, False, asked)
    await page.locator("#clear-cart").click()
    assert asked == ["Remove every book from your cart?"]
    await page.wait_for_timeout(300)  # a request would have gone out by now
    assert await cart_lines() == 1
    await _answer_next_dialog(page, True, asked)
    await page.locator("#clear-cart").click()
    await expect(page.locator("#status")).to_have_text("Your cart is now empty.")
    assert await cart_lines() == 0
    await shots.take(page, "cart-emptied-after-confirming")

    # -- an order awaiting payment: "no" keeps it, "yes" cancels it
    await store.http.post(
        "/api/v1/cart/add", json={"bookId": str(book), "quantity": 1}, headers=headers
    )
    placed = await store.http.post(
        "/api/v1/orders", headers={**headers, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["data"]["orderId"]

    async def order_status() -> str:
        resp = await store.http.get(f"/api/v1/orders/{order_id}", headers=headers)
        status: str = resp.json()["data"]["status"]
        return status

    page = await open_page(context, f"{store.url}/orders/{order_id}", errors)
    await _answer_next_dialog(page, False, asked)
    await page.locator("#order-cancel").click()
    assert asked[-1] == "Cancel this order? Its books go back on the shelf."
    await page.wait_for_timeout(300)
    assert await order_status() == "PAYMENT_PENDING"
    await _answer_next_dialog(page, True, asked)
    await page.locator("#order-cancel").click()
    # Announced by the button's answer or by the live order.cancelled, whichever is last.
    await expect(page.locator("#status")).to_contain_text(
        re.compile(r"cancelled.* books (were )?released")
    )
    assert await order_status() == "CANCELLED"
    await shots.take(page, "order-cancelled-after-confirming")
    assert errors == [], errors
    await context.close()
