"""Stripe through its official SDK: PaymentIntents, signed webhooks, refunds.

Every POST carries a deterministic idempotency key (the SDK would otherwise add a random
one to each call, so a retried create would make a second intent).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import stripe

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

SIGNATURE_HEADER = "stripe-signature"
TOLERANCE_SECONDS = 300
_EVENT_KINDS = {
    "payment_intent.succeeded": EventKind.SUCCEEDED,
    "payment_intent.payment_failed": EventKind.FAILED,
}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (Starlette's Headers or a plain dict)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def verify_stripe_signature(raw_body: bytes, signature: str | None, secret: str) -> str:
    """Stripe's own check, `stripe.Webhook.construct_event` (HMAC-SHA256 over
    "<t>.<body>", 300 s tolerance); returns the body as text. Raises SignatureError."""
    try:
        payload = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError("webhook body is not UTF-8") from exc
    try:
        # The SDK's Event object is not kept: the plain dict is all settlement needs.
        stripe.Webhook.construct_event(payload, signature, secret, TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise SignatureError(str(exc).split(".")[0]) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        # Correctly signed but not a JSON event object.
        raise SignatureError("webhook body is not a valid event") from exc
    return payload


def parse_intent_event(payload: str) -> WebhookEvent:
    """A Stripe-shaped event {id, type, created, data: {object: payment_intent}}."""
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise SignatureError("webhook body is not JSON") from exc
    if not isinstance(event, dict):
        raise SignatureError("webhook body is not an event object")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise SignatureError("webhook event has no id or type")
    kind = _EVENT_KINDS.get(event_type, EventKind.OTHER)
    if kind is EventKind.OTHER:
        return WebhookEvent(event_id[:255], event_type[:100], kind)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise SignatureError("webhook event has no payment intent")
    amount = obj.get("amount_received") if kind is EventKind.SUCCEEDED else None
    if not _is_int(amount):
        amount = obj.get("amount")
    currency = obj.get("currency")
    metadata = obj.get("metadata")
    error = obj.get("last_payment_error")
    reason = error.get("message") if isinstance(error, dict) else None
    if kind is EventKind.SUCCEEDED and (not _is_int(amount) or not isinstance(currency, str)):
        raise SignatureError("payment event has no amount or currency")
    return WebhookEvent(
        event_id=event_id[:255],
        event_type=event_type[:100],
        kind=kind,
        intent_id=obj["id"],
        order_id=parse_order_id(metadata.get("orderId")) if isinstance(metadata, dict) else None,
        amount=amount if _is_int(amount) else None,
        currency=currency.upper() if isinstance(currency, str) else None,
        failure_reason=reason if isinstance(reason, str) else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._api_base = api_base
        self._http: stripe.HTTPXClient | None = None
        self._stripe: stripe.StripeClient | None = None

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[stripe.StripeClient]:
        # One client for the process's life (made on first use, in the process's loop):
        # its connections and TLS sessions are reused by every call.
        if self._stripe is None:
            self._http = stripe.HTTPXClient(timeout=20)
            base = {"api": self._api_base} if self._api_base else None
            self._stripe = stripe.StripeClient(
                self._api_key,
                base_addresses=base,  # type: ignore[arg-type]
                http_client=self._http,
                max_network_retries=2,
            )
        yield self._stripe

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]
            self._http = self._stripe = None

    async def create_intent(self, request: PaymentRequest) -> Intent:
        try:
            async with self._client() as client:
                intent = await client.v1.payment_intents.create_async(
                    {
                        "amount": request.amount,
                        "currency": request.currency.lower(),
                        "description": request.description[:1000] or f"Order {request.order_id}",
                        "metadata": {"orderId": str(request.order_id)},
                        "automatic_payment_methods": {"enabled": True},
                    },
                    {"idempotency_key": f"bookbazar-intent-{request.order_id}"},
                )
        except stripe.StripeError as exc:
            raise ProviderError(f"stripe refused the payment intent: {_reason(exc)}") from exc
        return Intent(intent.id, intent.client_secret, None)

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        payload = verify_stripe_signature(
            raw_body, header(headers, SIGNATURE_HEADER), self._webhook_secret
        )
        return parse_intent_event(payload)

    async def retrieve(self, intent_id: str) -> IntentState:
        try:
            async with self._client() as client:
                intent = await client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.StripeError as exc:
            raise ProviderError(f"stripe did not return the intent: {_reason(exc)}") from exc
        status = {
            "succeeded": IntentStatus.SUCCEEDED,
            "canceled": IntentStatus.CANCELED,
        }.get(intent.status, IntentStatus.PENDING)
        received: Any = getattr(intent, "amount_received", None)
        amount = received if _is_int(received) and received else intent.amount
        return IntentState(status, amount, intent.currency.upper())

    async def refund(self, intent_id: str, amount: int, *, idempotency_key: str) -> str:
        try:
            async with self._client() as client:
                refund = await client.v1.refunds.create_async(
                    {"payment_intent": intent_id, "amount": amount},
                    {"idempotency_key": f"bookbazar-{idempotency_key}"},
                )
        except stripe.StripeError as exc:
            raise ProviderError(f"stripe refused the refund: {_reason(exc)}") from exc
        return refund.id


def _reason(exc: stripe.StripeError) -> str:
    # user_message is Stripe's safe, secret-free summary; fall back to the class name.
    return str(exc.user_message or type(exc).__name__)[:200]
