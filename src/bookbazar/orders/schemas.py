from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
