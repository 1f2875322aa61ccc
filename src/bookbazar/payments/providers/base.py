"""What every payment provider offers, as small typed results.

A provider is an adapter over one payment service (the built-in sandbox, Stripe,
Razorpay). It never touches orders: the payments service turns its results into order
transitions through `orders.settlement`.
"""

from __future__ import annotations

import abc
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar


class SignatureError(Exception):
    """A webhook whose signature is missing, malformed, wrong or stale."""


class ProviderError(Exception):
    """The provider refused or did not answer; the caller may retry."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a provider needs to create an intent for an order."""

    order_id: uuid.UUID
    amount: int  # minor units
    currency: str  # ISO 4217, upper case
    description: str = ""


@dataclass(frozen=True, slots=True)
class Intent:
    intent_id: str
    client_secret: str | None
    redirect_url: str | None


class EventKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified provider event, reduced to what settlement needs."""

    event_id: str
    event_type: str  # the provider's own name, e.g. payment_intent.succeeded
    kind: EventKind
    intent_id: str | None = None
    order_id: uuid.UUID | None = None  # from the intent's metadata, when present
    amount: int | None = None
    currency: str | None = None
    failure_reason: str | None = None


class IntentStatus(enum.StrEnum):
    PENDING = "pending"  # not paid (yet): the buyer may still pay
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"  # can no longer be paid


@dataclass(frozen=True, slots=True)
class IntentState:
    status: IntentStatus
    amount: int | None = None
    currency: str | None = None


class PaymentProvider(abc.ABC):
    """One payment service. Implementations must be safe to call again with the same
    arguments (create_intent and refund are idempotent per order/intent)."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def create_intent(self, request: PaymentRequest) -> Intent:
        """Create (or find again) the intent for this order. Raises ProviderError."""

    @abc.abstractmethod
    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Check the signature over the raw body, then parse. Raises SignatureError."""

    @abc.abstractmethod
    async def retrieve(self, intent_id: str) -> IntentState:
        """Ask the provider what became of an intent. Raises ProviderError."""

    @abc.abstractmethod
    async def refund(self, intent_id: str, amount: int, *, idempotency_key: str) -> str:
        """Refund `amount` of a succeeded intent; returns the refund id. Calling it again
        with the same key returns the same refund. Raises ProviderError."""

    async def aclose(self) -> None:
        """Close what the provider keeps open (its HTTP client); it lives per process."""
        return None


def parse_order_id(value: object) -> uuid.UUID | None:
    """An order id from provider metadata, or None when absent or not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
