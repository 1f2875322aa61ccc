"""A page reads the cart once when it loads and once per change made elsewhere: the
header's count and the page share that read (catalog, cart and checkout)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.browser.conftest import Store, open_page, signed_in_context, wait_live
from tests.conftest import create_book


async def test_one_cart_read_per_page_load_and_per_change_elsewhere(
    browser: Any, store: Store
) -> None:
    first = await create_book(store.services, title="Counting Crows", stock=9)
    second = await create_book(store.services, title="Counted Twice", stock=9)
    buyer = await store.register("Ira")
    headers = buyer["headers"]
    errors: list[str] = []
    context = await signed_in_context(browser, store, buyer, cart=(first, 1))

    reads: list[str] = []
    context.on(
        "request",
        lambda request: (
            reads.append(request.url)
            if request.method == "GET" and request.url.endswith("/api/v1/cart")
            else None
        ),
    )

    quantity = 1
    for path, book in (("/", second), ("/cart", first), ("/checkout", second)):
        reads.clear()
        page = await open_page(context, f"{store.url}{path}", errors)
        await wait_live(page)
        assert len(reads) == 1, (path, reads)
        # Another tab (here: the API) changes the cart: the page reads it once more.
        quantity += 1
        changed = await store.http.post(
            "/api/v1/cart/add", json={"bookId": str(book), "quantity": quantity}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        total = sum(item["quantity"] for item in changed.json()["data"]["items"])
        await expect(page.locator("#cart-count")).to_have_attribute("data-count", str(total))
        await page.wait_for_timeout(300)  # a second read would have gone out by now
        assert len(reads) == 2, (path, reads)
        await page.close()
    assert errors == [], errors
    await context.close()
