from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bookbazar.models.base import Base, created_at, updated_at, uuid_pk


class Book(Base):
    __tablename__ = "books"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("pages > 0", name="pages_positive"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    title: Mapped[str] = mapped_column(String(300))
    author: Mapped[str] = mapped_column(String(200))
    isbn: Mapped[str | None] = mapped_column(String(20), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    pages: Mapped[int | None] = mapped_column(Integer)
    year: Mapped[int | None] = mapped_column(SmallInteger)  # first published
    language: Mapped[str | None] = mapped_column(String(40), index=True)  # of this edition
    subject: Mapped[str | None] = mapped_column(String(60), index=True)
    # Minor units (paise/cents) and an ISO 4217 code; never floats.
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Units on hand. Units available = stock - units held by PAYMENT_PENDING orders.
    stock: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class CatalogVersion(Base):
    """One row whose `version` goes up, in the same transaction, whenever a book is added,
    removed, or its listed facts change (a trigger on `books`, migration 0004), whoever
    writes. Each API process caches catalog pages under the version they were read at
    (catalog/pages.py); selling or restocking (the `stock` column) does not change it."""

    __tablename__ = "catalog_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
