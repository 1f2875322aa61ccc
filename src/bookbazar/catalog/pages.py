"""Catalog pages kept in each API process, invalidated by the change itself.

The catalog page (`GET /books`) is the request a store serves most, and its books change
rarely; their availability changes all the time. So a process keeps each page's books
(ids, facts, the total) under the catalog version it read them at, and reads the live
availability counters from Redis for every request.

The version is a row in PostgreSQL that a trigger on `books` bumps in the transaction
that adds, removes or edits a book (migration 0004), whoever writes it: the admin API,
the seed, a migration or a hand-written statement. A request asks for the version (one
small query); a page cached under another version is read again, together with the
version, in one statement (one snapshot), so a page is never cached under a version
newer than what it shows.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from bookbazar.catalog.repository import like_pattern
from bookbazar.pg import Pg

_MAX_PAGES = 512

# The catalog's orders (the `sort` query parameter), each ending on the id: a total order,
# so pages never overlap or skip a book.
SORTS: dict[str, str] = {
    "title": "title, id",
    "price": "price, title, id",
    "price_desc": "price DESC, title, id",
    "newest": "created_at DESC, id",
}
DEFAULT_SORT = "title"

# The version, and the page under it, read in one snapshot ({order} is one of SORTS).
_SEARCH = """
SELECT v.version, b.id, b.title, b.author, b.price, b.currency, b.isbn, b.description,
       b.total
FROM catalog_version v
LEFT JOIN LATERAL (
  SELECT id, title, author, price, currency, isbn, description, count(*) OVER () AS total
  FROM books
  WHERE $1::text IS NULL OR title ILIKE $1 OR author ILIKE $1
  ORDER BY {order}
  OFFSET $2 LIMIT $3
) b ON true
WHERE v.id = 1
"""
_COUNT = "SELECT count(*) FROM books WHERE $1::text IS NULL OR title ILIKE $1 OR author ILIKE $1"


@dataclass(frozen=True, slots=True)
class Page:
    version: int
    # Each book as the API shows it, without `available` (JSON-ready values).
    books: tuple[dict[str, Any], ...]
    ids: tuple[uuid.UUID, ...]
    total: int


class CatalogPages:
    def __init__(self, pg: Pg, *, max_pages: int = _MAX_PAGES) -> None:
        self.pg = pg
        self.max_pages = max_pages
        self._pages: OrderedDict[tuple[str | None, str, int, int], Page] = OrderedDict()

    async def get(
        self, q: str | None, *, offset: int, limit: int, sort: str = DEFAULT_SORT
    ) -> Page:
        """The books of one page of the catalog in `sort` order (a key of SORTS), searched
        by title or author when `q` is given."""
        key = (q, sort, offset, limit)
        cached = self._pages.get(key)
        if cached is not None:
            version = await self.pg.fetchval("SELECT version FROM catalog_version WHERE id = 1")
            if version == cached.version:
                self._pages.move_to_end(key)
                return cached
        page = await self._read(q, sort, offset, limit)
        self._pages[key] = page
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)
        return page

    async def _read(self, q: str | None, sort: str, offset: int, limit: int) -> Page:
        pattern = like_pattern(q) if q else None
        rows = await self.pg.fetch(_SEARCH.format(order=SORTS[sort]), pattern, offset, limit)
        version = int(rows[0].version)
        found = [r for r in rows if r.id is not None]
        if found:
            total = int(found[0].total)
        elif offset == 0:
            total = 0
        else:  # past the last page: still report the true total
            total = int(await self.pg.fetchval(_COUNT, pattern))
        books = tuple(
            {
                "id": str(r.id),
                "title": r.title,
                "author": r.author,
                "price": int(r.price),
                "currency": r.currency,
                "isbn": r.isbn,
                "description": r.description,
            }
            for r in found
        )
        return Page(version, books, tuple(r.id for r in found), total)
