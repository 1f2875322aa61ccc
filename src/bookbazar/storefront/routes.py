"""Serve the storefront pages and their static assets from package data.

Pages are one layout plus a fragment per page (string.Template, `$name` placeholders, so
CSS and JS braces need no escaping), read from the installed package with
importlib.resources on first use and kept in memory. Assets are Starlette's StaticFiles
over the package's `static` folder (ETag, Last-Modified, 304); covers carry a content
hash ETag.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import uuid
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from bookbazar.db import SessionDep
from bookbazar.errors import NotFound
from bookbazar.kit.money import format_money
from bookbazar.models import Book
from bookbazar.storefront.covers import cover_svg

router = APIRouter(include_in_schema=False)

ASSET_PREFIX = "/assets"
# The types assets are served with, whatever the host's /etc/mime.types says (Python 3.11
# and older Debian files call JavaScript application/javascript).
for _type, _suffix in (("text/javascript", ".js"), ("text/css", ".css"), ("image/svg+xml", ".svg")):
    mimetypes.add_type(_type, _suffix)
# Same-origin only: the page talks to its own API and Socket.IO, and loads nothing else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; "
    "object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Page:
    template: str
    title: str
    script: str
    nav: str
    head: str = ""  # extra <head> elements


# The book page is rendered once per book: these are filled in per request, escaped.
_BOOK_HEAD = '<meta name="description" content="$book_description">\n'


PAGES: dict[str, Page] = {
    "catalog": Page("catalog.html", "Books", "catalog.js", "catalog"),
    "book": Page("book.html", "$book_title", "book.js", "catalog", _BOOK_HEAD),
    "login": Page("login.html", "Sign in", "login.js", "login"),
    "cart": Page("cart.html", "Your cart", "cart.js", "cart"),
    "checkout": Page("checkout.html", "Checkout", "checkout.js", "cart"),
    "orders": Page("orders.html", "Your orders", "orders.js", "orders"),
    "order": Page("order.html", "Order", "order.js", "orders"),
    "admin": Page("admin.html", "Admin", "admin.js", "admin"),
    "notfound": Page("notfound.html", "Not found", "page.js", ""),
}


def _package_file(folder: str, name: str) -> bytes | None:
    item = resources.files("bookbazar.storefront").joinpath(folder, name)
    if not item.is_file():
        return None
    return item.read_bytes()


@lru_cache(maxsize=16)
def render_page(key: str) -> str:
    """The full HTML of one page (cached: templates do not change while running)."""
    page = PAGES[key]
    layout = _package_file("templates", "layout.html")
    body = _package_file("templates", page.template)
    if layout is None or body is None:
        raise RuntimeError(f"storefront template missing for page {key!r}")
    return Template(layout.decode()).substitute(
        title=page.title,
        main=body.decode(),
        script=f"{ASSET_PREFIX}/{page.script}",
        nav=page.nav,
        head=page.head,
    )


class Assets(StaticFiles):
    """The storefront's static files, always revalidated (a deploy changes them; the
    ETag makes that a 304) and never content-sniffed."""

    HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    def __init__(self) -> None:
        super().__init__(packages=[("bookbazar.storefront", "static")])

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self.HEADERS)
        return response


def _page(key: str, status: int = 200) -> Response:
    return Response(
        render_page(key), status_code=status, media_type="text/html", headers=PAGE_HEADERS
    )


# Paths that belong to the API, its documents and the operations: their 404s stay JSON.
_NOT_PAGES = ("/api/", "/socket.io", "/assets/", "/sandbox/", "/docs", "/redoc", "/openapi")


def not_found_page(request: Request) -> Response | None:
    """The HTML 404 page for a browser that asked for an unknown storefront path (GET,
    accepting HTML); None for anything else (the JSON error envelope answers)."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or path.startswith(_NOT_PAGES):
        return None
    if "text/html" not in request.headers.get("accept", ""):
        return None
    return _page("notfound", 404)


@router.get("/")
async def catalog_page() -> Response:
    return _page("catalog")


@router.get("/books/{book_id}")
async def book_page(book_id: str, session: SessionDep) -> Response:
    """One book's page: its title, author, price and cover in the HTML itself (a shared
    link previews and indexes well); availability and the cart come from its script."""
    book = await _book(session, book_id)
    if book is None:
        return _page("notfound", 404)
    price = format_money(book.price, book.currency)
    values = {
        "book_id": str(book.id),
        "book_title": html.escape(book.title),
        "book_author": html.escape(book.author),
        "book_price": html.escape(price),
        "book_description": html.escape(
            book.description or f"“{book.title}” by {book.author}, {price}."
        ),
        "book_about": _about(book),
        "book_facts": _facts(book),
    }
    body = Template(render_page("book")).safe_substitute(values)
    return Response(body, media_type="text/html", headers=PAGE_HEADERS)


def _about(book: Book) -> str:
    if not book.description:
        return ""
    return f'<p class="description">{html.escape(book.description)}</p>'


def _facts(book: Book) -> str:
    """The book's details as a description list (only those it has)."""
    facts = [
        ("Subject", book.subject),
        ("Language", book.language),
        ("First published", _year(book.year)),
        ("Pages", str(book.pages) if book.pages else None),
        ("ISBN", book.isbn),
    ]
    rows = "".join(
        f"<dt>{name}</dt><dd>{html.escape(value)}</dd>" for name, value in facts if value
    )
    return f'<dl class="facts" aria-label="Details">{rows}</dl>' if rows else ""


def _year(year: int | None) -> str | None:
    if year is None:
        return None
    return f"{-year} BCE" if year < 0 else str(year)


async def _book(session: AsyncSession, book_id: str) -> Book | None:
    try:
        return await session.get(Book, uuid.UUID(book_id))
    except ValueError:
        return None


@router.get("/login")
async def login_page() -> Response:
    return _page("login")


@router.get("/cart")
async def cart_page() -> Response:
    return _page("cart")


@router.get("/checkout")
async def checkout_page() -> Response:
    return _page("checkout")


@router.get("/orders")
async def orders_page() -> Response:
    return _page("orders")


@router.get("/orders/{order_id}")
async def order_page(order_id: str) -> Response:
    # The page's script reads the id from the URL; a malformed one gets the 404 page.
    try:
        uuid.UUID(order_id)
    except ValueError:
        return _page("notfound", 404)
    return _page("order")


@router.get("/admin")
async def admin_page() -> Response:
    return _page("admin")


@router.get("/covers/{book_id}.svg")
async def cover(book_id: str, request: Request, session: SessionDep) -> Response:
    """The book's generated cover (an SVG from its title and author)."""
    book = await _book(session, book_id)
    if book is None:
        raise NotFound("No such book")
    svg = cover_svg(book.id, book.title, book.author).encode()
    return _revalidated(request, svg, "image/svg+xml", _etag(svg))


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _revalidated(request: Request, body: bytes, content_type: str, etag: str) -> Response:
    """The body with its content hash as ETag, or 304 when the client has it already
    (always revalidated: an edited book changes it)."""
    headers = {"ETag": etag, **Assets.HEADERS}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=content_type, headers=headers)
