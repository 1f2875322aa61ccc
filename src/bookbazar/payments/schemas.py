from __future__ import annotations

import enum
import uuid

from pydantic import BaseModel, ConfigDict


class PaymentStatus(enum.StrEnum):
    """Our view of one intent (the order's status is the source of truth for the sale)."""

    CREATED = "created"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # declined; the buyer may pay again
    MISMATCH = "mismatch"  # paid, but not the order's amount/currency: held for review
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


# Which statuses each status may be reached from: updates are guarded, so a late or
# out-of-order event (failed after succeeded) never moves a payment backwards.
PAYMENT_SOURCES: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.MISMATCH: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.REFUND_PENDING: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.REFUNDED: frozenset(
        {PaymentStatus.CREATED, PaymentStatus.FAILED, PaymentStatus.REFUND_PENDING}
    ),
}
OPEN_PAYMENT = frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED})


class InitPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orderId: uuid.UUID
