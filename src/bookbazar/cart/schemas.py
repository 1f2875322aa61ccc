from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bookbazar.models.commerce import MAX_LINE_QUANTITY


class AddToCartIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    book_id: uuid.UUID = Field(alias="bookId")
    # Strict: 2.0, "2" and true are refused with a 422 naming the field, never coerced.
    quantity: int = Field(
        ge=1,
        le=MAX_LINE_QUANTITY,
        strict=True,
        description=f"the line's new quantity, 1 to {MAX_LINE_QUANTITY}",
    )


class RemoveFromCartIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    book_id: uuid.UUID = Field(alias="bookId")


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CartItemOut(_Out):
    book_id: uuid.UUID
    title: str
    price: int = Field(description="unit price in minor units")
    quantity: int
    line_total: int


class AdjustedOut(_Out):
    """Present when the line got fewer units than asked for."""

    book_id: uuid.UUID
    requested: int
    available: int
    quantity: int


class CartOut(_Out):
    items: list[CartItemOut]
    total: int = Field(description="minor units")
    currency: str | None
    version: int
    updated_at: int | None = Field(description="epoch milliseconds of the last change")


class CartChangeOut(CartOut):
    adjusted: AdjustedOut | None = None
