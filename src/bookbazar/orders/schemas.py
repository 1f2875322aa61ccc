from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bookbazar.kit.responses import OutModel
from bookbazar.models import OrderStatus


class ShippingAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=300)
    line2: str | None = Field(default=None, max_length=300)
    city: str = Field(min_length=1, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    postalCode: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    phone: str | None = Field(default=None, max_length=30)


class PlaceOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shippingAddress: ShippingAddress | None = None

    def fingerprint_body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- responses


class OrderItemOut(OutModel):
    book_id: uuid.UUID
    title: str
    price: int = Field(description="unit price in minor units, as ordered")
    quantity: int
    line_total: int


class OrderPaymentOut(OutModel):
    """The order's latest payment intent."""

    provider: str
    payment_intent_id: str
    status: str
    amount: int
    currency: str


class OrderOut(OutModel):
    order_id: uuid.UUID
    status: OrderStatus
    total: int = Field(description="minor units")
    currency: str
    expires_at: datetime | None = Field(description="until then the stock is held for payment")
    created_at: datetime
    items: list[OrderItemOut]
    shipping_address: dict[str, str | None] | None
    payment: OrderPaymentOut | None
