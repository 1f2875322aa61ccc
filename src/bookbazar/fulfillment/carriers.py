"""Shipping carriers behind one interface; the sandbox carrier works offline."""

from __future__ import annotations

import abc
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar


class CarrierError(Exception):
    """The carrier refused or did not answer; the job retries."""


@dataclass(frozen=True, slots=True)
class Label:
    carrier: str
    tracking_number: str


class Carrier(abc.ABC):
    name: ClassVar[str]

    @abc.abstractmethod
    async def create_shipment(
        self, order_id: uuid.UUID, address: dict[str, Any] | None, *, idempotency_key: str
    ) -> Label:
        """Book a shipment; the same key returns the same label. Raises CarrierError."""


class SandboxCarrier(Carrier):
    """Hands out a deterministic tracking number per order (so a retried booking gets
    the same one); the parcel "arrives" after FULFILLMENT_DELIVER_DELAY_SECONDS."""

    name = "sandbox-post"

    async def create_shipment(
        self, order_id: uuid.UUID, address: dict[str, Any] | None, *, idempotency_key: str
    ) -> Label:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return Label(self.name, f"SBX{int(digest[:15], 16) % 10**12:012d}")


def default_carrier() -> Carrier:
    return SandboxCarrier()
