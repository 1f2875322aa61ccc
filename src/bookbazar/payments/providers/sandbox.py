"""The built-in sandbox provider: works offline, signs its webhooks exactly like Stripe.

Intents are the `payments` rows themselves (the intent id is derived from the order id,
so concurrent initialisations agree on one). What the buyer did on the hosted checkout
page (paid, declined, refunded) is the sandbox's own ledger, a Redis hash per intent: it
is what `retrieve` reports to the watchdog, as a real provider's API would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from bookbazar.config import Settings
from bookbazar.lua import Scripts
from bookbazar.payments.providers.base import (
    Intent,
    IntentState,
    IntentStatus,
    PaymentProvider,
    PaymentRequest,
    WebhookEvent,
)
from bookbazar.payments.providers.stripe import (
    SIGNATURE_HEADER,
    header,
    parse_intent_event,
    verify_stripe_signature,
)

SUCCEEDED_EVENT = "payment_intent.succeeded"
FAILED_EVENT = "payment_intent.payment_failed"
LEDGER_TTL_MS = 30 * 24 * 3600 * 1000
DECLINE_MESSAGE = "Your card was declined (sandbox)."


# Record the buyer's action unless the intent is already paid (a paid intent cannot be
# declined or paid twice). Returns {status, eventId} as now recorded.
def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header value: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def build_event(
    *,
    event_id: str,
    outcome: str,
    intent_id: str,
    order_id: uuid.UUID | str,
    amount: int,
    currency: str,
    created: int,
) -> str:
    """The event body (DESIGN.md §3), serialised once so every retry sends the same bytes
    apart from the signature's timestamp."""
    obj: dict[str, object] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "currency": currency.lower(),
        "metadata": {"orderId": str(order_id)},
    }
    if outcome == "failed":
        obj["last_payment_error"] = {"message": DECLINE_MESSAGE}
    event = {
        "id": event_id,
        "type": SUCCEEDED_EVENT if outcome == "succeeded" else FAILED_EVENT,
        "created": created,
        "data": {"object": obj},
    }
    return json.dumps(event, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Charge:
    """What the ledger holds after the buyer's action: `recorded` is False when the intent
    was already paid (then `event_id` is the event of that payment)."""

    status: str
    event_id: str
    recorded: bool


def ledger_key(intent_id: str) -> str:
    return f"sandbox:intent:{intent_id}"


class SandboxProvider(PaymentProvider):
    name = "sandbox"

    def __init__(self, settings: Settings, redis: Redis) -> None:
        assert settings.sandbox_webhook_secret is not None  # the validator sets a default
        self._secret = settings.sandbox_webhook_secret
        self._base_url = settings.base_url
        self._redis = redis
        self._scripts = Scripts(redis)

    def intent_id_for(self, order_id: uuid.UUID) -> str:
        """One intent per order (concurrent inits agree), but not guessable from the order
        id: the hosted checkout page is public, so its id must act as a capability."""
        digest = hmac.new(self._secret.encode(), order_id.bytes, hashlib.sha256).hexdigest()
        return f"pi_sb_{digest[:32]}"

    def checkout_url(self, intent_id: str) -> str:
        return f"{self._base_url}/sandbox/checkout/{intent_id}"

    async def create_intent(self, request: PaymentRequest) -> Intent:
        intent_id = self.intent_id_for(request.order_id)
        secret = hmac.new(self._secret.encode(), intent_id.encode(), hashlib.sha256).hexdigest()
        return Intent(intent_id, f"{intent_id}_secret_{secret[:24]}", self.checkout_url(intent_id))

    def verify_webhook(self, raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        payload = verify_stripe_signature(raw_body, header(headers, SIGNATURE_HEADER), self._secret)
        return parse_intent_event(payload)

    def sign(self, payload: str, timestamp: int | None = None) -> str:
        return sign_payload(payload, self._secret, timestamp)

    async def charge(self, intent_id: str, outcome: str, amount: int, currency: str) -> Charge:
        """The buyer pressed Pay (`succeeded`) or Decline (`failed`) on the hosted page."""
        event_id = f"evt_sb_{uuid.uuid4().hex}"
        status, recorded_event = await self._scripts.run(
            "sandbox_charge",
            [ledger_key(intent_id)],
            [outcome, event_id, str(amount), currency, str(LEDGER_TTL_MS)],
        )
        return Charge(str(status), str(recorded_event), recorded=recorded_event == event_id)

    async def retrieve(self, intent_id: str) -> IntentState:
        entry = await self._redis.hgetall(ledger_key(intent_id))  # type: ignore[misc]
        status = entry.get("status")
        if status not in ("succeeded", "refunded"):
            return IntentState(IntentStatus.PENDING)
        return IntentState(IntentStatus.SUCCEEDED, int(entry["amount"]), str(entry["currency"]))

    async def refund(self, intent_id: str, amount: int, *, idempotency_key: str) -> str:
        # Also refunds events a test or a user signed by hand (nothing in the ledger then).
        refund_id = "re_sb_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        key = ledger_key(intent_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": "refunded", "refund": refund_id})
            pipe.pexpire(key, LEDGER_TTL_MS)
            await pipe.execute()
        return refund_id
