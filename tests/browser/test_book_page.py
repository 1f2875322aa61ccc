"""A book's own page: reached from the catalog, with its cover, price and live
availability; quantity and add to cart; a shareable URL that works signed out."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import (
    Shots,
    Store,
    assert_accessible,
    new_context,
    open_page,
    signed_in_context,
    wait_live,
)
from tests.browser.test_stock_and_expiry import api_order
from tests.conftest import create_book

TITLE = "The Dispossessed"


async def test_the_book_page_shows_the_book_live_and_adds_it_to_the_cart(
    browser: Any, store: Store, shots: Shots
) -> None:
    book = await create_book(
        store.services, title=TITLE, author="Ursula K. Le Guin", stock=5, price=45_000
    )
    buyer = await store.register("Page Reader")
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer)

    # -- from the catalog, the title leads to the book's page
    page = await open_page(context, f"{store.url}/?q=Dispossessed", errors)
    await page.get_by_role("link", name=TITLE).click()
    await page.wait_for_url(f"{store.url}/books/{book}")
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    await expect(page).to_have_title(f"{TITLE} · Book Bazar")
    await expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    await expect(page.locator("#book-price")).to_have_text(re.compile(r"450\.00"))
    await expect(page.locator("#book-stock")).to_have_text("5 in stock")
    await page.wait_for_function(
        "() => { const img = document.querySelector('img.cover-large');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    await wait_live(page, watching=1)
    await assert_accessible(page)
    await shots.take(page, "book-page")

    # -- two copies into the cart
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.locator("#cart-count")).to_have_text("2")
    await expect(page.locator("#in-cart")).to_have_text("In your cart: 2")
    await expect(page.get_by_role("button", name="Update cart")).to_be_visible()

    # -- someone else orders three: the page follows without a reload
    rival = await store.register("Rival Reader")
    await api_order(store, rival, book, 3)
    await expect(page.locator("#book-stock")).to_have_text("Only 2 left")
    await shots.take(page, "book-page-live-stock")
    assert errors == []

    # -- the same URL works for someone signed out (a shared link)
    stranger = await new_context(browser)
    shared = await open_page(stranger, f"{store.url}/books/{book}", errors)
    await expect(shared.get_by_role("heading", level=1)).to_have_text(TITLE)
    await expect(shared.locator("#book-stock")).to_have_text("Only 2 left")
    await expect(shared.locator("#live-note")).to_be_visible()
    await shared.get_by_role("button", name="Add to cart").click()
    await shared.wait_for_url(re.compile(r"/login\?next="))
    assert errors == []
