from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bookbazar.models.base import Base, created_at, updated_at, uuid_pk


class Payment(Base):
    """One payment intent at a provider for an order."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "intent_id", name="uq_payments_provider_intent"),
        # One intent per order and provider: concurrent initialisations converge on one row.
        UniqueConstraint("order_id", "provider", name="uq_payments_order_provider"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(20))
    intent_id: Mapped[str] = mapped_column(String(255))
    client_secret: Mapped[str | None] = mapped_column(String(500))
    redirect_url: Mapped[str | None] = mapped_column(String(1000))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # created | succeeded | failed | refund_pending | refunded (PaymentStatus)
    status: Mapped[str] = mapped_column(String(20), default="created")
    refund_id: Mapped[str | None] = mapped_column(String(255))
    # Why the money of this payment is (being) given back: a wrong amount or currency,
    # or a second payment for an order already paid. Shown to operators.
    review_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class ProcessedWebhookEvent(Base):
    """Each provider event id is processed once (the primary key is the guard)."""

    __tablename__ = "processed_webhook_events"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = created_at()
