from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookbazar.models.base import Base, created_at, uuid_pk


class Restock(Base):
    """Units added on hand by an operator. An Idempotency-Key makes a retried restock
    add nothing twice (unique per admin and key)."""

    __tablename__ = "restocks"
    __table_args__ = (
        UniqueConstraint("admin_id", "idempotency_key", name="uq_restocks_admin_key"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    book_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("books.id", ondelete="CASCADE"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    admin_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at()


class StockAudit(Base):
    """One run of the stock audit: every counter and hold compared with PostgreSQL and
    repaired online; `corrections` lists what was wrong."""

    __tablename__ = "stock_audits"

    id: Mapped[uuid.UUID] = uuid_pk()
    trigger: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = created_at()
    books_checked: Mapped[int] = mapped_column(Integer)
    holds_checked: Mapped[int] = mapped_column(Integer)
    drift_units: Mapped[int] = mapped_column(Integer)
    # [{bookId, before, after}] for each counter corrected, plus the holds repaired.
    corrections: Mapped[dict[str, Any]] = mapped_column(JSONB)
