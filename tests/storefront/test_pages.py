"""The storefront pages and assets, served by the API itself (no network, no browser)."""

from __future__ import annotations

import re
import uuid
from xml.etree import ElementTree  # parses our own SVG output only

import httpx
import pytest
from sqlalchemy import text

from bookbazar.services import Services
from bookbazar.storefront.routes import PAGES
from tests.conftest import create_book

PAGE_PATHS = {
    "/": "catalog.js",
    "/login": "login.js",
    "/cart": "cart.js",
    "/checkout": "checkout.js",
    "/orders": "orders.js",
    f"/orders/{uuid.uuid4()}": "order.js",
    "/admin": "admin.js",
}


@pytest.mark.parametrize("path", list(PAGE_PATHS))
async def test_each_page_is_html_with_its_script_and_no_foreign_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert html.startswith("<!doctype html>")
    assert f'src="/assets/{PAGE_PATHS[path]}"' in html
    assert '<script src="/assets/socket.io.min.js" defer></script>' in html
    assert 'role="alert"' in html and 'aria-live="polite"' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    # Nothing is loaded from anywhere but this server.
    assert not re.search(r"""(src|href)=["']https?://""", html)
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_every_referenced_script_and_asset_is_served(client: httpx.AsyncClient) -> None:
    names = {page.script for page in PAGES.values()}
    names |= {"common.js", "store.css", "socket.io.min.js", "favicon.svg"}
    for name in sorted(names):
        resp = await client.get(f"/assets/{name}")
        assert resp.status_code == 200, name
        expected = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
        assert resp.headers["content-type"].startswith(expected[name.rsplit(".", 1)[1]]), name
        assert resp.headers["etag"]


async def test_scripts_import_only_assets_that_exist(client: httpx.AsyncClient) -> None:
    for page in PAGES.values():
        text = (await client.get(f"/assets/{page.script}")).text
        for imported in re.findall(r'from "\./([a-z0-9_.-]+)"', text):
            served = await client.get(f"/assets/{imported}")
            assert served.status_code == 200, (page.script, imported)


async def test_the_vendored_socket_io_client_is_version_4(client: httpx.AsyncClient) -> None:
    resp = await client.get("/assets/socket.io.min.js")
    assert resp.status_code == 200
    assert re.search(r"Socket\.IO v4\.\d+\.\d+", resp.text[:200])
    assert len(resp.content) > 20_000


async def test_asset_etag_revalidates_with_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/assets/store.css")
    again = await client.get("/assets/store.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "name",
    ["missing.js", "..%2Fapp.py", "routes.py", "%2E%2E%2Froutes.py", "Common.js", "layout.html"],
)
async def test_unknown_or_unsafe_asset_names_are_404(client: httpx.AsyncClient, name: str) -> None:
    resp = await client.get(f"/assets/{name}")
    assert resp.status_code == 404
    assert resp.json()["success"] is False


async def test_malformed_order_id_gets_the_html_404_page(client: httpx.AsyncClient) -> None:
    resp = await client.get("/orders/not-an-id")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert "Page not found" in resp.text


async def test_an_unknown_storefront_path_gets_the_html_404_page_in_a_browser(
    client: httpx.AsyncClient,
) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/no-such-page", "/books/shelf/9", "/orders/1/extra"):
        resp = await client.get(path, headers=browser)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"].startswith("text/html"), path
        assert "Page not found" in resp.text
        assert "Content-Security-Policy" in resp.headers
    # A client that does not ask for HTML, and every API or asset path, gets the envelope.
    for path, headers in (
        ("/no-such-page", {"Accept": "application/json"}),
        ("/api/v1/no-such-thing", browser),
        ("/assets/no-such.js", browser),
    ):
        resp = await client.get(path, headers=headers)
        assert resp.status_code == 404, path
        body = resp.json()
        assert body["success"] is False and body["statusCode"] == 404, path


async def test_pages_do_not_shadow_the_api_or_operations(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.headers["content-type"].startswith("application/json")
    resp = await client.get("/api/v1/orders")
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/json")
    # The storefront stays out of the OpenAPI document.
    spec = (await client.get("/openapi.json")).json()
    assert "/" not in spec["paths"] and not any(p.startswith("/assets") for p in spec["paths"])


async def test_every_book_has_a_generated_cover(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, title='A <script>"Tale"</script> & more', stock=1)
    resp = await client.get(f"/covers/{book}.svg")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("image/svg+xml")
    assert resp.headers["x-content-type-options"] == "nosniff"
    svg = ElementTree.fromstring(resp.text)  # well-formed: the title is escaped
    assert svg.tag.endswith("svg") and svg.get("role") == "img"
    assert svg.get("aria-label", "").startswith('Cover of A <script>"Tale"</script> & more by ')
    assert "<script>" not in resp.text
    again = await client.get(f"/covers/{book}.svg")
    assert again.text == resp.text  # the same book, the same cover
    cached = await client.get(
        f"/covers/{book}.svg", headers={"If-None-Match": resp.headers["etag"]}
    )
    assert cached.status_code == 304
    for missing in (uuid.uuid4(), "not-a-book"):
        assert (await client.get(f"/covers/{missing}.svg")).status_code == 404


async def test_a_book_has_its_own_page_with_its_title_and_description(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, title="Tom & Jerry <Vol. 1>", author="O'Hara", price=34_900)
    resp = await client.get(f"/books/{book}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in resp.headers
    page = resp.text
    # Escaped, in the title, the heading and the meta description (a shared link shows it).
    assert "<title>Tom &amp; Jerry &lt;Vol. 1&gt; · Book Bazar</title>" in page
    assert '<h1 id="book-title">Tom &amp; Jerry &lt;Vol. 1&gt;</h1>' in page
    assert (
        '<meta name="description" content="“Tom &amp; Jerry &lt;Vol. 1&gt;” by O&#x27;Hara, '
        '₹349.00.">' in page
    )
    assert f'src="/covers/{book}.svg"' in page and 'src="/assets/book.js"' in page
    assert "$" not in page  # every placeholder filled
    assert '<dl class="facts"' not in page  # no details recorded, none shown


async def test_the_book_page_shows_the_description_and_details(
    client: httpx.AsyncClient, services: Services
) -> None:
    book = await create_book(services, title="Gitanjali", author="Rabindranath Tagore")
    async with services.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE books SET description = :d, pages = 112, year = 1910, "
                "language = 'English', subject = 'Poetry', isbn = '9798000000025' WHERE id = :id"
            ),
            {"d": "Song offerings <in English>", "id": book},
        )
    page = (await client.get(f"/books/{book}")).text
    assert '<p class="description">Song offerings &lt;in English&gt;</p>' in page
    assert '<meta name="description" content="Song offerings &lt;in English&gt;">' in page
    for name, value in (
        ("Subject", "Poetry"),
        ("Language", "English"),
        ("First published", "1910"),
        ("Pages", "112"),
        ("ISBN", "9798000000025"),
    ):
        assert f"<dt>{name}</dt><dd>{value}</dd>" in page, name


async def test_an_unknown_or_malformed_book_page_is_the_html_404(client: httpx.AsyncClient) -> None:
    for path in (f"/books/{uuid.uuid4()}", "/books/not-an-id"):
        resp = await client.get(path)
        assert resp.status_code == 404, path
        assert "Page not found" in resp.text
