"""The order history a page at a time, each order with its books (ten to a page; the
page kept in the URL)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import (
    Shots,
    Store,
    assert_accessible,
    open_page,
    signed_in_context,
)
from tests.browser.test_stock_and_expiry import api_order
from tests.conftest import create_book


async def test_the_order_history_pages_and_names_each_orders_books(
    browser: Any, store: Store, shots: Shots
) -> None:
    buyer = await store.register("History Reader")
    titles = [f"Volume {n:02d}" for n in range(1, 13)]
    for title in titles:
        book = await create_book(store.services, title=title, stock=3)
        await api_order(store, buyer, book, 2 if title.endswith("12") else 1)
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer)
    page = await open_page(context, f"{store.url}/orders", errors)
    rows = page.locator(".order-row")
    await expect(rows).to_have_count(10)
    # Newest first, each naming its books (and how many when more than one).
    await expect(rows.first.locator(".order-books")).to_have_text("Volume 12 \u00d7 2")
    await expect(page.locator("#orders-page-label")).to_have_text("Page 1 of 2")
    await assert_accessible(page)
    await shots.take(page, "history-page-1")

    await page.get_by_role("button", name="Next page").click()
    await expect(page).to_have_url(f"{store.url}/orders?page=2")
    await expect(rows).to_have_count(2)
    await expect(rows.locator(".order-books")).to_have_text(["Volume 02", "Volume 01"])
    await expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    await shots.take(page, "history-page-2")
    # The page is in the URL: opened afresh it shows the same orders.
    again = await open_page(context, page.url, errors)
    await expect(again.locator(".order-row")).to_have_count(2)
    assert errors == []
