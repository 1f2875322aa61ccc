"""Razorpay through its official SDK: orders API, signed webhooks, refunds.

The SDK is synchronous (requests), so each call runs in a worker thread. The signature
covers the body only, not the `x-razorpay-event-id` header, so events are deduplicated on
signed fields (the event type and the payment's or order's id: a replayed body under a
new header id is still a duplicate), and an event whose signed `created_at` is older than
RAZORPAY_WEBHOOK_TOLERANCE_SECONDS is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import razorpay

from bookbazar.payments.providers.base import (
    EventKind,
    Intent,
    IntentState,
    IntentStatus,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    SignatureError,
    WebhookEvent,
    parse_order_id,
)
from bookbazar.payments.providers.stripe import header

SIGNATURE_HEADER = "x-razorpay-signature"
# Razorpay retries a webhook for up to 24 hours; older events are refused as replays.
DEFAULT_TOLERANCE_SECONDS = 26 * 3600
CLOCK_SKEW = 300
_EVENT_KINDS = {
    "payment.captured": EventKind.SUCCEEDED,
    "order.paid": EventKind.SUCCEEDED,
    "payment.failed": EventKind.FAILED,
}
T = TypeVar("T")


def _entity(payload: dict[str, Any], name: str) -> dict[str, Any]:
    wrapper = payload.get(name)
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def signed_event_id(event: dict[str, Any], raw_body: bytes) -> str:
    """The dedupe id from signed fields: the event type and the id of what it is about
    (the payment, else the order), or a digest of the whole signed body."""
    body = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    assert isinstance(body, dict)
    subject = _entity(body, "payment").get("id") or _entity(body, "order").get("id")
    if not isinstance(subject, str) or not subject:
        subject = hashlib.sha256(raw_body).hexdigest()[:32]
    return f"{event['event'][:60]}:{subject[:120]}"


class RazorpayProvider(PaymentProvider):
    name = "razorpay"

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        webhook_secret: str,
        base_url: str | None = None,
        *,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        options = {"base_url": base_url} if base_url else {}
        self._client: Any = razorpay.Client(auth=(key_id, key_secret), **options)
        self._webhook_secret = webhook_secret
        self._tolerance = tolerance_seconds

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except Exception as exc:  # the SDK raises its own errors and requests' errors
            raise ProviderError(f"razorpay {what} failed: {type(exc).__name__}") from exc

    async def create_intent(self, request: PaymentRequest) -> Intent:
        body = {
            "amount": request.amount,
            "currency": request.currency,
            "receipt": str(request.order_id),
            "notes": {"orderId": str(request.order_id)},
        }
        order = await self._call("order create", lambda: self._client.order.create(data=body))
        if not isinstance(order, dict) or not isinstance(order.get("id"), str):
            raise ProviderError("razorpay order create returned no id")
        # Checkout needs the key id (public) and this order id; there is no client secret.
        return Intent(order["id"], None, None)

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = header(headers, SIGNATURE_HEADER)
        if not signature:
            raise SignatureError("missing X-Razorpay-Signature header")
        try:
            payload = raw_body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("webhook body is not UTF-8") from exc
        try:
            self._client.utility.verify_webhook_signature(payload, signature, self._webhook_secret)
        except razorpay.errors.SignatureVerificationError as exc:
            raise SignatureError("Razorpay signature verification failed") from exc
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise SignatureError("webhook body is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise SignatureError("webhook body is not a Razorpay event")
        created = _int(event.get("created_at"))
        now = time.time()
        if created is None or created < now - self._tolerance or created > now + CLOCK_SKEW:
            raise SignatureError("webhook event is too old (or from the future)")
        return self._parse(signed_event_id(event, raw_body), event)

    @staticmethod
    def _parse(event_id: str, event: dict[str, Any]) -> WebhookEvent:
        event_type: str = event["event"][:100]
        kind = _EVENT_KINDS.get(event_type, EventKind.OTHER)
        if kind is EventKind.OTHER:
            return WebhookEvent(event_id, event_type, kind)
        body = event.get("payload") if isinstance(event.get("payload"), dict) else {}
        assert isinstance(body, dict)
        payment, order = _entity(body, "payment"), _entity(body, "order")
        intent_id = payment.get("order_id") or order.get("id")
        if not isinstance(intent_id, str):
            raise SignatureError("webhook event has no order id")
        notes = payment.get("notes") or order.get("notes")
        amount = _int(payment.get("amount"))
        if amount is None:
            amount = _int(order.get("amount_paid"))
        currency = payment.get("currency") or order.get("currency")
        reason = payment.get("error_description")
        if kind is EventKind.SUCCEEDED and (amount is None or not isinstance(currency, str)):
            raise SignatureError("payment event has no amount or currency")
        return WebhookEvent(
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            intent_id=intent_id,
            order_id=parse_order_id(notes.get("orderId")) if isinstance(notes, dict) else None,
            amount=amount,
            currency=currency.upper() if isinstance(currency, str) else None,
            failure_reason=reason if isinstance(reason, str) else None,
        )

    async def retrieve(self, intent_id: str) -> IntentState:
        order = await self._call("order fetch", lambda: self._client.order.fetch(intent_id))
        if not isinstance(order, dict):
            raise ProviderError("razorpay order fetch returned nothing")
        if order.get("status") != "paid":
            return IntentState(IntentStatus.PENDING)
        currency = order.get("currency")
        return IntentState(
            IntentStatus.SUCCEEDED,
            _int(order.get("amount_paid")) or _int(order.get("amount")),
            currency.upper() if isinstance(currency, str) else None,
        )

    async def refund(self, intent_id: str, amount: int, *, idempotency_key: str) -> str:
        payments = await self._call(
            "order payments", lambda: self._client.order.payments(intent_id)
        )
        items = payments.get("items", []) if isinstance(payments, dict) else []
        paid = [p for p in items if p.get("status") in ("captured", "refunded")]
        if not paid:
            raise ProviderError("razorpay order has no captured payment to refund")
        payment_id = str(paid[0]["id"])
        # Razorpay has no idempotency keys: an existing refund of this payment is ours.
        existing = await self._call(
            "refund lookup", lambda: self._client.payment.fetch_multiple_refund(payment_id)
        )
        refunds = existing.get("items", []) if isinstance(existing, dict) else []
        if refunds:
            return str(refunds[0]["id"])
        refund = await self._call(
            "refund",
            lambda: self._client.payment.refund(
                payment_id, {"amount": amount, "notes": {"reference": idempotency_key}}
            ),
        )
        if not isinstance(refund, dict) or "id" not in refund:
            raise ProviderError("razorpay refund returned no id")
        return str(refund["id"])
