from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bookbazar.kit.queues import PAYMENT, JobPayload, job_id
from bookbazar.kit.responses import OutModel


class PaymentStatus(enum.StrEnum):
    """Our view of one intent (the order's status is the source of truth for the sale)."""

    CREATED = "created"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # declined; the buyer may pay again
    # Paid but not applied (wrong amount/currency, or the order was paid already): an
    # earlier release held these for review; now they are refunded (REFUND_PENDING).
    MISMATCH = "mismatch"
    REFUND_PENDING = "refund_pending"  # the money goes back: a refund job is queued
    REFUNDED = "refunded"


# Which statuses each status may be reached from: updates are guarded, so a late or
# out-of-order event (failed after succeeded) never moves a payment backwards.
PAYMENT_SOURCES: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.SUCCEEDED: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.MISMATCH: frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED}),
    PaymentStatus.REFUND_PENDING: frozenset(
        {PaymentStatus.CREATED, PaymentStatus.FAILED, PaymentStatus.MISMATCH}
    ),
    PaymentStatus.REFUNDED: frozenset(
        {
            PaymentStatus.CREATED,
            PaymentStatus.FAILED,
            PaymentStatus.MISMATCH,
            PaymentStatus.REFUND_PENDING,
        }
    ),
}
OPEN_PAYMENT = frozenset({PaymentStatus.CREATED, PaymentStatus.FAILED})


class InitPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orderId: uuid.UUID


# ---------------------------------------------------------------- job payloads


class RefundJob(JobPayload):
    """Give one payment's money back (payment:refund)."""

    queue = PAYMENT
    name = "payment:refund"

    payment_id: uuid.UUID = Field(alias="paymentId")
    order_id: uuid.UUID = Field(alias="orderId")
    # A fresh id for a re-enqueue by the watchdog (the first job may be kept as failed).
    attempt_window: str = Field(default="", alias="attemptWindow")

    def job_id(self) -> str:
        window = [self.attempt_window] if self.attempt_window else []
        return job_id("refund", self.payment_id, *window)


class VerifyJob(JobPayload):
    """Ask the provider whether an open intent was paid (payment:verify)."""

    queue = PAYMENT
    name = "payment:verify"

    payment_id: uuid.UUID = Field(alias="paymentId")
    # "final" for the check after an order ended, else the watchdog's time window.
    window: str

    def job_id(self) -> str:
        return job_id("verify", self.payment_id, self.window)


class SandboxDeliveryJob(JobPayload):
    """The sandbox provider posting its signed webhook to the service (sandbox:deliver)."""

    queue = PAYMENT
    name = "sandbox:deliver"

    event_id: str = Field(alias="eventId")
    outcome: str
    intent_id: str = Field(alias="intentId")
    order_id: uuid.UUID = Field(alias="orderId")
    amount: int
    currency: str
    created: int

    def job_id(self) -> str:
        return self.event_id


# ---------------------------------------------------------------- responses


class PaymentIntentOut(OutModel):
    """What the buyer needs to pay: the sandbox and Stripe give a client secret and a
    page to complete it on; Razorpay an order id for its Checkout."""

    order_id: uuid.UUID
    provider: str
    payment_intent_id: str
    client_secret: str | None
    redirect_url: str | None
    amount: int = Field(description="minor units")
    currency: str
    status: PaymentStatus
    expires_at: datetime | None = Field(description="pay before this; the order expires then")


class WebhookAckOut(OutModel):
    received: Literal[True]
    result: str = Field(
        description="what the event did: paid, already_paid, refund, mismatch, "
        "payment_failed, stale, duplicate, ignored, unknown_intent"
    )


class PaymentReviewOut(OutModel):
    """A payment whose money is (being) given back, and why."""

    payment_id: uuid.UUID
    order_id: uuid.UUID
    customer: str | None
    provider: str
    payment_intent_id: str
    amount: int
    currency: str
    status: PaymentStatus
    reason: str | None
    refund_id: str | None
    updated_at: datetime | None
