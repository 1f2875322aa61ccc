"""Catalog rules: availability comes from the stock counters, never from on-hand stock."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.catalog import repository
from bookbazar.catalog.schemas import AdminBookOut, BookIn, BookOut
from bookbazar.errors import Conflict, NotFound, Unprocessable
from bookbazar.inventory.service import Inventory
from bookbazar.kit.pagination import PageParams
from bookbazar.models import Book
from bookbazar.realtime.emitter import Emitter

log = structlog.get_logger(__name__)


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
    )


def _admin_out(book: Book, available: int) -> AdminBookOut:
    return AdminBookOut(**_out(book, available).model_dump(), stock=book.stock)


async def list_books(
    session: AsyncSession, inventory: Inventory, q: str | None, page: PageParams
) -> dict[str, Any]:
    books, total = await repository.search(
        session, q.strip() if q else None, offset=page.offset, limit=page.page_size
    )
    levels = await inventory.available([b.id for b in books])
    return page.wrap([_out(b, levels.get(b.id, 0)) for b in books], total)


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
    return _admin_out(book, book.stock)


async def restock(
    session: AsyncSession,
    inventory: Inventory,
    emitter: Emitter,
    book_id: uuid.UUID,
    quantity: int,
) -> AdminBookOut:
    """Add units on hand, commit, then rebuild that book's counter exactly from PostgreSQL
    (so a crash between the two steps cannot double-count) and announce the new level."""
    book = await repository.add_stock(session, book_id, quantity)
    if book is None:
        raise NotFound("Book not found")
    if book.stock > 10_000_000:
        raise Unprocessable("Stock would exceed 10,000,000 units")
    await session.commit()
    report = await inventory.reconcile([book_id])
    available = report.counters.get(book_id, (None, book.stock))[1]
    await emitter.emit_stock({book_id: available})
    log.info("book_restocked", book_id=str(book_id), quantity=quantity, stock=book.stock)
    return _admin_out(book, available)
