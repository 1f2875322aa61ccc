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

from bookbazar.catalog.isbn import looks_like_isbn
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

# Which books a page lists: the search (a LIKE pattern for title or author, or an ISBN)
# and the filters (subject, language), each NULL when not asked for.
_WHERE = """
({q}::text IS NULL OR title ILIKE {q} OR author ILIKE {q} OR isbn = {isbn}::text)
AND ({subject}::text IS NULL OR subject = {subject})
AND ({language}::text IS NULL OR language = {language})
"""
# The version, and the page under it, read in one snapshot ({order} is one of SORTS).
_SEARCH = f"""
SELECT v.version, b.id, b.title, b.author, b.price, b.currency, b.isbn, b.description,
       b.pages, b.year, b.language, b.subject, b.total
FROM catalog_version v
LEFT JOIN LATERAL (
  SELECT id, title, author, price, currency, isbn, description, pages, year, language,
         subject, count(*) OVER () AS total
  FROM books
  WHERE {_WHERE.format(q="$1", isbn="$4", subject="$5", language="$6")}
  ORDER BY {{order}}
  OFFSET $2 LIMIT $3
) b ON true
WHERE v.id = 1
"""
_COUNT = "SELECT count(*) FROM books WHERE " + _WHERE.format(
    q="$1", isbn="$2", subject="$3", language="$4"
)


# The values the filters can take, with how many books have each, under one version.
_FACETS = """
SELECT v.version, f.kind, f.value, f.books
FROM catalog_version v
LEFT JOIN LATERAL (
  SELECT 'subject' AS kind, subject AS value, count(*) AS books
  FROM books WHERE subject IS NOT NULL GROUP BY subject
  UNION ALL
  SELECT 'language', language, count(*) FROM books WHERE language IS NOT NULL GROUP BY language
) f ON true
WHERE v.id = 1
ORDER BY f.kind, f.value
"""


@dataclass(frozen=True, slots=True)
class Facets:
    version: int
    subjects: tuple[dict[str, Any], ...]  # {"name", "books"}, by name
    languages: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Filters:
    """Exact matches a catalog page can be narrowed to (None: any)."""

    subject: str | None = None
    language: str | None = None


NO_FILTERS = Filters()


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
        self._pages: OrderedDict[tuple[str | None, str, int, int, Filters], Page] = OrderedDict()
        self._facets: Facets | None = None

    async def facets(self) -> Facets:
        """Every subject and language in the catalog with its number of books (kept under
        the catalog version, like the pages)."""
        cached = self._facets
        if cached is not None:
            version = await self.pg.fetchval("SELECT version FROM catalog_version WHERE id = 1")
            if version == cached.version:
                return cached
        rows = await self.pg.fetch(_FACETS)
        found: dict[str, list[dict[str, Any]]] = {"subject": [], "language": []}
        for row in rows:
            if row.kind is not None:
                found[row.kind].append({"name": row.value, "books": int(row.books)})
        self._facets = Facets(
            int(rows[0].version), tuple(found["subject"]), tuple(found["language"])
        )
        return self._facets

    async def get(
        self,
        q: str | None,
        *,
        offset: int,
        limit: int,
        sort: str = DEFAULT_SORT,
        filters: Filters = NO_FILTERS,
    ) -> Page:
        """The books of one page of the catalog in `sort` order (a key of SORTS), searched
        by title or author (or ISBN) when `q` is given, narrowed by `filters`."""
        key = (q, sort, offset, limit, filters)
        cached = self._pages.get(key)
        if cached is not None:
            version = await self.pg.fetchval("SELECT version FROM catalog_version WHERE id = 1")
            if version == cached.version:
                self._pages.move_to_end(key)
                return cached
        page = await self._read(q, sort, offset, limit, filters)
        self._pages[key] = page
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)
        return page

    async def _read(
        self, q: str | None, sort: str, offset: int, limit: int, filters: Filters
    ) -> Page:
        pattern = like_pattern(q) if q else None
        isbn = looks_like_isbn(q) if q else None
        where = (pattern, isbn, filters.subject, filters.language)
        rows = await self.pg.fetch(
            _SEARCH.format(order=SORTS[sort]), pattern, offset, limit, *where[1:]
        )
        version = int(rows[0].version)
        found = [r for r in rows if r.id is not None]
        if found:
            total = int(found[0].total)
        elif offset == 0:
            total = 0
        else:  # past the last page: still report the true total
            total = int(await self.pg.fetchval(_COUNT, *where))
        books = tuple(
            {
                "id": str(r.id),
                "title": r.title,
                "author": r.author,
                "price": int(r.price),
                "currency": r.currency,
                "isbn": r.isbn,
                "description": r.description,
                "pages": r.pages,
                "year": r.year,
                "language": r.language,
                "subject": r.subject,
            }
            for r in found
        )
        return Page(version, books, tuple(r.id for r in found), total)
