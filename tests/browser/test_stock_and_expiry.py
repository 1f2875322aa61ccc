"""The unhappy paths a buyer must understand: quantity adjusted, sold out (live and at
checkout), a reservation that expires, and an order page that catches up after its
connection drops."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import PASSWORD, Shots, Store, new_context, open_page, wait_live
from tests.browser.test_buying import fill_address, orders_of
from tests.conftest import create_book

LAST_COPY = "The Last Copy"


async def api_order(store: Store, user: dict[str, Any], book_id: uuid.UUID, qty: int) -> str:
    resp = await store.http.post(
        "/api/v1/cart/add",
        json={"bookId": str(book_id), "quantity": qty},
        headers=user["headers"],
    )
    assert resp.status_code == 200, resp.text
    resp = await store.http.post(
        "/api/v1/orders",
        headers={**user["headers"], "Idempotency-Key": uuid.uuid4().hex},
    )
    assert resp.status_code == 201, resp.text
    order_id: str = resp.json()["data"]["orderId"]
    return order_id


async def signed_in_context(browser: Any, store: Store, user: dict[str, Any], **kw: Any) -> Any:
    """A browser context already holding the user's session cookie (logged in through the
    API with the context's own request client, which shares its cookie jar)."""
    context = await new_context(browser, **kw)
    resp = await context.request.post(
        f"{store.url}/api/v1/auth/login", data={"email": user["email"], "password": PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    return context


async def test_quantity_adjusted_and_sold_out_live_and_at_checkout(
    browser: Any, store: Store, shots: Shots
) -> None:
    last = await create_book(store.services, title=LAST_COPY, author="A. Sen", stock=1)
    errors: list[str] = []
    context = await new_context(browser, phone=True)

    # -- a new reader registers through the form
    page = await open_page(context, f"{store.url}/login?next=/", errors)
    await page.get_by_label("Name").fill("Kabir Das")
    await page.fill("#register-email", f"kabir-{uuid.uuid4().hex[:8]}@example.com")
    await page.fill("#register-password", PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(f"{store.url}/")
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    await wait_live(page, watching=1)
    card = page.locator(".book-card", has_text=LAST_COPY)
    await expect(card.locator(".stock")).to_have_text("Only 1 left")

    # -- asking for 3 of the last copy: the cart gets 1, and says so
    await card.get_by_label(re.compile("^Quantity")).fill("3")
    await card.get_by_role("button", name=re.compile("Add to cart")).click()
    alert = page.locator("#alert")
    await expect(alert).to_have_text(
        f"Quantity adjusted: only 1 of “{LAST_COPY}” available, so your cart has 1 instead of 3."
    )
    await expect(card.get_by_label(re.compile("^Quantity"))).to_have_value("1")
    await expect(page.locator("#cart-count")).to_have_text("1")
    await shots.take(page, "quantity-adjusted")

    # -- someone else buys the last copy: the card turns to sold out while we look
    rival = await store.register("Rival Reader")
    await api_order(store, rival, last, 1)
    await expect(card.locator(".stock")).to_have_text("Sold out")
    await expect(card.get_by_role("button", name=re.compile("cart"))).to_be_disabled()
    await expect(page.locator("#status")).to_contain_text(f"“{LAST_COPY}” just sold out.")
    await shots.take(page, "sold-out-live")

    # -- one more in the cart: refused, with a message, nothing changed
    await page.goto(f"{store.url}/cart")
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    line = page.locator(".cart-line", has_text=LAST_COPY)
    await line.get_by_role("button", name=re.compile("One more")).click()
    await expect(page.locator("#alert")).to_contain_text(f"Sold out: “{LAST_COPY}”")
    await expect(line.locator("input")).to_have_value("1")

    # -- checking out anyway: a clear sold-out message, nothing reserved
    await page.goto(f"{store.url}/checkout")
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    await fill_address(page)
    await page.locator("#place-order").click()
    await expect(page.locator("#alert")).to_have_text(
        f"Sold out: “{LAST_COPY}” is sold out. Nothing was reserved — update your cart and "
        "try again."
    )
    await expect(page.locator("#place-order")).to_be_enabled()
    await expect(page.locator("#reserved-step")).to_be_hidden()
    await shots.take(page, "checkout-sold-out")
    me = await context.request.get(f"{store.url}/api/v1/orders")
    body = await me.json()
    assert body["data"]["items"] == []  # a refused attempt is not an order

    assert errors == [], errors
    await context.close()


async def test_reservation_expires_while_the_buyer_watches(
    browser: Any, store: Store, shots: Shots
) -> None:
    store.live.app.api.state.settings.reservation_ttl_seconds = 6
    book = await create_book(store.services, title="Borrowed Time", stock=4)
    buyer = await store.register("Meena")
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer, phone=True)
    add = await context.request.post(
        f"{store.url}/api/v1/cart/add", data={"bookId": str(book), "quantity": 2}
    )
    assert add.status == 200

    page = await open_page(context, f"{store.url}/checkout", errors)
    await wait_live(page)
    await fill_address(page)
    await page.locator("#place-order").click()
    await expect(page.locator("#reserved-step")).to_be_visible()
    await expect(page.locator("#reservation-countdown")).to_have_text(re.compile(r"^0:0[0-6]$"))
    await shots.take(page, "reserved-short-ttl")

    # The worker's delayed job expires it; the page says so and stops offering to pay.
    await expect(page.locator("#alert")).to_contain_text("Reservation expired", timeout=20_000)
    await expect(page.locator("#pay-now")).to_be_disabled()
    await shots.take(page, "reservation-expired-at-checkout")

    [order] = await orders_of(store, buyer)
    page2 = await open_page(context, f"{store.url}/orders/{order['orderId']}", errors)
    await expect(page2.locator("#order-status")).to_have_attribute(
        "data-status", "EXPIRED", timeout=15_000
    )
    await expect(page2.locator("#order-outcome")).to_contain_text("Reservation expired")
    await expect(page2.locator("#pending-actions")).to_be_hidden()
    await shots.take(page2, "order-page-expired")
    assert errors == [], errors
    await context.close()


async def test_order_page_catches_up_after_its_connection_drops(
    browser: Any, store: Store, shots: Shots
) -> None:
    book = await create_book(store.services, title="Signal Lost", stock=3)
    buyer = await store.register("Ravi")
    order_id = await api_order(store, buyer, book, 1)
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer)
    page = await open_page(context, f"{store.url}/orders/{order_id}", errors)
    await wait_live(page)
    await expect(page.locator("#order-status")).to_have_attribute("data-status", "PAYMENT_PENDING")
    await expect(page.locator("#order-events li")).to_have_count(0)
    # A live event reaches the page (a cart change elsewhere): its id is the point to
    # resume from.
    other = await create_book(store.services, title="Spare", stock=5)
    resp = await store.http.post(
        "/api/v1/cart/add", json={"bookId": str(other), "quantity": 2}, headers=buyer["headers"]
    )
    assert resp.status_code == 200, resp.text
    await expect(page.locator("#cart-count")).to_have_text("2")

    # -- the network goes away: Chromium drops the page's socket
    await context.set_offline(True)
    await page.wait_for_selector("body:not([data-live='live'])", state="attached")

    # -- meanwhile the order is cancelled elsewhere, and its event is sent to nobody
    resp = await store.http.post(f"/api/v1/orders/{order_id}/cancel", headers=buyer["headers"])
    assert resp.status_code == 200, resp.text
    await asyncio.sleep(1.0)  # the relay publishes the event while the page is away
    await expect(page.locator("#order-status")).to_have_attribute("data-status", "PAYMENT_PENDING")
    await shots.take(page, "offline-missed-an-event")

    # -- back online: the client reconnects, resumes and re-reads the order
    await context.set_offline(False)
    await wait_live(page)
    await expect(page.locator("#order-status")).to_have_attribute("data-status", "CANCELLED")
    await expect(page.locator("#order-events")).to_contain_text("Order cancelled")
    # Exactly the one missed event was re-sent by `resume`.
    await page.wait_for_selector("body[data-resumed='1']", state="attached")
    await expect(page.locator("#order-events li")).to_have_count(1)
    await expect(page.locator("#order-outcome")).to_contain_text("cancelled")
    await shots.take(page, "caught-up-after-reconnect")
    assert errors == [], errors
    await context.close()
