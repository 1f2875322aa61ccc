"""Catalog rules: availability comes from the stock counters, never from on-hand stock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.catalog import repository
from bookbazar.catalog.pages import DEFAULT_SORT, NO_FILTERS, Filters
from bookbazar.catalog.schemas import AdminBookOut, BookIn, BookOut
from bookbazar.errors import Conflict, NotFound, Unprocessable
from bookbazar.inventory.service import Inventory
from bookbazar.kit.pagination import PageParams
from bookbazar.models import Book
from bookbazar.services import Services

log = structlog.get_logger(__name__)
MAX_STOCK = 10_000_000


def _out(book: Book, available: int) -> BookOut:
    return BookOut(
        id=book.id,
        title=book.title,
        author=book.author,
        price=book.price,
        currency=book.currency,
        available=max(0, available),
        isbn=book.isbn,
        description=book.description,
        pages=book.pages,
        year=book.year,
        language=book.language,
        subject=book.subject,
    )


def admin_book_out(book: Book, available: int) -> AdminBookOut:
    return AdminBookOut(**_out(book, available).model_dump(), stock=book.stock)


async def list_books(
    services: Services,
    q: str | None,
    page: PageParams,
    sort: str = DEFAULT_SORT,
    filters: Filters = NO_FILTERS,
) -> dict[str, Any]:
    """One page of the catalog in `sort` order, optionally of one subject and language:
    the books from the process's page cache (catalog/pages.py), their availability live
    from the stock counters."""
    found = await services.catalog.get(
        q.strip() or None if q else None,
        offset=page.offset,
        limit=page.page_size,
        sort=sort,
        filters=filters,
    )
    levels = await services.inventory.available(found.ids)
    items = [
        {**book, "available": max(0, levels.get(book_id, 0))}
        for book, book_id in zip(found.books, found.ids, strict=True)
    ]
    return page.wrap(items, found.total)


async def facets(services: Services) -> dict[str, Any]:
    found = await services.catalog.facets()
    return {"subjects": list(found.subjects), "languages": list(found.languages)}


async def get_book(session: AsyncSession, inventory: Inventory, book_id: uuid.UUID) -> BookOut:
    """Raises NotFound for an unknown id."""
    book = await repository.get(session, book_id)
    if book is None:
        raise NotFound("Book not found")
    levels = await inventory.available([book.id])
    return _out(book, levels[book.id])


async def create_book(session: AsyncSession, data: BookIn) -> AdminBookOut:
    """Create a book; Conflict if its ISBN exists. Nothing is reserved yet, so all of its
    stock is available (the Redis counter is built on first use)."""
    book = await repository.insert_book(session, data.model_dump())
    if book is None:
        raise Conflict("A book with this ISBN already exists")
    log.info("book_created", book_id=str(book.id))
    return admin_book_out(book, book.stock)


@dataclass(frozen=True, slots=True)
class Restocked:
    book: AdminBookOut
    replayed: bool
    # False when the availability counter could not be updated right away (Redis
    # unreachable): the stock was added, and the next audit brings the counter up.
    counter_updated: bool


async def restock(
    services: Services,
    session: AsyncSession,
    admin_id: uuid.UUID,
    book_id: uuid.UUID,
    quantity: int,
    key: str | None,
) -> Restocked:
    """Add units on hand, commit, then rebuild that book's counter exactly from
    PostgreSQL and announce the new level. With an Idempotency-Key a retry adds nothing
    twice (the same key for another book or quantity -> Unprocessable). Once committed
    the restock is reported as done even if Redis cannot be reached right then: the
    counter is only ever rebuilt from PostgreSQL, so nothing is counted twice. Raises
    NotFound for an unknown book."""
    book = await repository.get(session, book_id)
    if book is None:
        raise NotFound("Book not found")
    recorded = await repository.record_restock(session, book_id, quantity, admin_id, key)
    if recorded is None:
        assert key is not None
        first = await repository.restock_by_key(session, admin_id, key)
        if first is None or (first.book_id, first.quantity) != (book_id, quantity):
            raise Unprocessable(
                "This Idempotency-Key was already used for another restock; use a new key"
            )
        replayed = True
    else:
        stocked = await repository.add_stock(session, book_id, quantity)
        assert stocked is not None
        book = stocked
        if book.stock > MAX_STOCK:
            raise Unprocessable(f"Stock would exceed {MAX_STOCK:,} units")
        replayed = False
    await session.commit()
    try:
        report = await services.inventory.reconcile([book_id])
        available = report.counters.get(book_id, (None, book.stock))[1]
        await services.emitter.emit_stock({book_id: available})
        counter_updated = True
    except Exception as exc:  # committed: the audit will rebuild the counter
        log.warning("restock_counter_deferred", book_id=str(book_id), error=repr(exc))
        # What the counter will be once rebuilt: on hand - held by orders awaiting payment.
        available = book.stock - await repository.units_held(session, book_id)
        counter_updated = False
    if not replayed:
        log.info("book_restocked", book_id=str(book_id), quantity=quantity, stock=book.stock)
    return Restocked(admin_book_out(book, available), replayed, counter_updated)
