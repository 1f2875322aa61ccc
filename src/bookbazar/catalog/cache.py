"""A small in-process cache of what carts and orders need about a book (title, price,
currency).

Cart reads and writes and order placement are the hottest routes; the book facts they
need change rarely, so each process keeps them for a short while instead of asking
PostgreSQL on every request. An entry lives BOOK_FACTS_TTL seconds; `forget` drops one
at once (a process that changes a book calls it).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookbazar.models import Book


@dataclass(frozen=True, slots=True)
class BookFacts:
    id: uuid.UUID
    title: str
    price: int
    currency: str


class BookCache:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl_seconds: float = 30.0,
        max_entries: int = 50_000,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, BookFacts]] = OrderedDict()

    async def get_many(self, book_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, BookFacts]:
        """Facts for the known books among `book_ids` (unknown ids are left out)."""
        now = time.monotonic()
        found: dict[uuid.UUID, BookFacts] = {}
        missing: list[uuid.UUID] = []
        for book_id in book_ids:
            entry = self._entries.get(book_id)
            if entry is not None and entry[0] > now:
                found[book_id] = entry[1]
            else:
                missing.append(book_id)
        if missing:
            async with self.sessionmaker() as session:
                rows = await session.execute(
                    select(Book.id, Book.title, Book.price, Book.currency).where(
                        Book.id.in_(missing)
                    )
                )
                for row in rows:
                    facts = BookFacts(row.id, row.title, row.price, row.currency)
                    found[row.id] = facts
                    self._remember(now, facts)
        return found

    async def get(self, book_id: uuid.UUID) -> BookFacts | None:
        return (await self.get_many([book_id])).get(book_id)

    def forget(self, book_id: uuid.UUID) -> None:
        self._entries.pop(book_id, None)

    def _remember(self, now: float, facts: BookFacts) -> None:
        self._entries[facts.id] = (now + self.ttl, facts)
        self._entries.move_to_end(facts.id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
