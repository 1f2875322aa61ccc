"""The operator page in a browser: orders by status, restock, dead-letter retry; and a
customer is kept out."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import expect
from sqlalchemy import text

from bookbazar.kit.queues import DEAD_LETTER, PAYMENT
from tests.browser.conftest import (
    Shots,
    Store,
    assert_accessible,
    new_context,
    open_page,
    wait_live,
)
from tests.browser.test_stock_and_expiry import api_order, signed_in_context
from tests.conftest import create_book


async def make_admin_user(store: Store) -> dict[str, Any]:
    admin = await store.register("Store Admin")
    async with store.services.sessionmaker() as session, session.begin():
        await session.execute(
            text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": admin["user"]["id"]}
        )
    return admin


async def test_admin_sees_orders_restocks_and_retries_a_dead_letter(
    browser: Any, store: Store, shots: Shots
) -> None:
    scarce = await create_book(store.services, title="Scarce Verses", stock=2)
    buyer = await store.register("Buyer One")
    await api_order(store, buyer, scarce, 2)
    payload = {"paymentId": str(uuid.uuid4()), "orderId": str(uuid.uuid4())}
    await store.services.queues.dead_letter(
        PAYMENT, "payment:refund", "refund-x", payload, "ProviderError('provider down')", 10
    )
    admin = await make_admin_user(store)
    errors: list[str] = []

    # -- a customer is told the page is not for them
    customer_ctx = await signed_in_context(browser, store, buyer)
    denied = await open_page(customer_ctx, f"{store.url}/admin", errors)
    await expect(denied.locator("#admin-denied")).to_be_visible()
    await expect(denied.locator("#admin-view")).to_be_hidden()
    await customer_ctx.close()

    context = await signed_in_context(browser, store, admin)
    page = await open_page(context, f"{store.url}/admin", errors)
    await wait_live(page, watching=1)
    await expect(page.locator("#nav-admin")).to_be_visible()

    # -- orders by status
    orders = page.locator("#admin-orders")
    await expect(orders.locator("tbody tr")).to_have_count(1)
    await expect(orders).to_contain_text(buyer["email"])
    await expect(page.locator("#order-counts")).to_contain_text("Awaiting payment: 1")
    await page.get_by_label("Status", exact=True).select_option("DELIVERED")
    await page.get_by_role("button", name="Show").click()
    await expect(orders).to_contain_text("No orders in this status.")
    await page.get_by_role("button", name="Awaiting payment: 1").click()
    await expect(orders.locator("tbody tr")).to_have_count(1)

    # -- stock: on hand 2, all held by the unpaid order; restock 5
    row = page.locator("#admin-stock tr", has_text="Scarce Verses")
    await expect(row.locator(".on-hand")).to_have_text("2")
    await expect(row.locator(".available")).to_have_text("0")
    await row.get_by_label("Units to add to Scarce Verses").fill("5")
    await row.get_by_role("button", name="Restock Scarce Verses").click()
    await expect(row.locator(".on-hand")).to_have_text("7")
    await expect(row.locator(".available")).to_have_text("5")
    await expect(page.locator("#status")).to_contain_text("Restocked “Scarce Verses”")

    # -- the stock audit (the worker may have run one already), run from the page: no drift
    await page.get_by_role("button", name="Audit now").click()
    await expect(page.locator("#audit-summary")).to_contain_text("no drift")
    await expect(page.locator("#status")).to_contain_text("Audit found no drift.")
    await expect(page.locator("#review-empty")).to_be_visible()

    # -- the dead letter, retried back onto its queue
    dlq = page.locator("#admin-dlq")
    await expect(dlq.locator("tbody tr")).to_have_count(1)
    await expect(dlq).to_contain_text("provider down")
    await assert_accessible(page)
    await shots.take(page, "admin-overview")
    await dlq.get_by_role("button", name="Retry payment:refund from payment").click()
    await expect(page.locator("#status")).to_contain_text("Re-queued payment:refund on payment")
    await expect(page.locator("#dlq-empty")).to_be_visible()
    assert await store.services.queues.get(DEAD_LETTER).getJobCounts("waiting") == {"waiting": 0}
    requeued = await store.services.queues.get(PAYMENT).getJobs(
        ["waiting", "active", "completed", "failed", "delayed"]
    )
    assert any(j.name == "payment:refund" and j.data == payload for j in requeued)
    await shots.take(page, "admin-after-retry")

    # -- readable on a phone too
    phone = await signed_in_context(browser, store, admin, phone=True)
    small = await open_page(phone, f"{store.url}/admin", errors)
    await expect(small.locator("#admin-stock tr", has_text="Scarce Verses")).to_be_visible()
    await shots.take(small, "admin-on-a-phone")
    await phone.close()

    assert errors == [], errors
    await context.close()


async def test_signed_out_visitor_browses_and_is_sent_to_sign_in(
    browser: Any, store: Store, shots: Shots
) -> None:
    await create_book(store.services, title="Open Shelves", stock=3)
    errors: list[str] = []
    context = await new_context(browser, phone=True)
    page = await open_page(context, f"{store.url}/?q=open", errors)
    await expect(page.locator("#search-q")).to_have_value("open")
    card = page.locator(".book-card", has_text="Open Shelves")
    await expect(card.locator(".stock")).to_have_text("Only 3 left")
    await expect(page.locator("#live-note")).to_be_visible()
    await shots.take(page, "signed-out-catalog")
    # Keyboard only: tab to the card's button and press Enter.
    await card.get_by_role("button", name=re.compile("^Add to cart.*Open Shelves")).focus()
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{store.url}/login?next=%2F%3Fq%3Dopen")
    await page.get_by_role("heading", name="Sign in", exact=True).wait_for()
    await shots.take(page, "sent-to-sign-in")
    # A mistyped order address gets a page, not an error document.
    await page.goto(f"{store.url}/orders/not-an-order")
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    await assert_accessible(page)
    assert errors == [], errors
    await context.close()
