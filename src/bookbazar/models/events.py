from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bookbazar.models.base import Base, created_at, uuid_pk


class OutboxEvent(Base):
    """An order event written in the same transaction as the state change it reports."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_unsent",
            "next_attempt_at",
            "created_at",
            postgresql_where=text("sent_at IS NULL"),
        ),
        # The relay publishes an order's events in `seq` order and never one whose
        # predecessor is still unsent.
        Index(
            "ix_outbox_order_unsent",
            "order_id",
            "seq",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # Commit-independent creation order (created_at is the transaction's start time).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    type: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_at()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A failed relay is retried no earlier than this (exponential backoff, capped).
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    """An email owed for an order event, written in the same transaction as the event
    (a transactional outbox for emails). The notifier claims due rows under a lease,
    sends, and marks them sent; a claim whose sender died is taken again once its lease
    runs out. One row per (event, kind): never two emails for one event."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[uuid.UUID | None]
    # Whom it went to (set when sent).
    recipient: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = created_at()
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)
