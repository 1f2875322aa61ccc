from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_PRICE = 100_000_000  # 10 lakh rupees in paise: far above any book


class BookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    author: str = Field(min_length=1, max_length=200)
    price: int = Field(ge=0, le=MAX_PRICE, description="minor units (paise/cents)", strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. INR")
    stock: int = Field(ge=0, le=1_000_000, strict=True)
    isbn: str | None = Field(default=None, pattern=r"^[0-9Xx-]{10,17}$")
    description: str | None = Field(default=None, max_length=5000)

    @field_validator("title", "author")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class RestockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: int = Field(ge=1, le=1_000_000, strict=True)


class BookOut(BaseModel):
    id: uuid.UUID
    title: str
    author: str
    price: int
    currency: str
    available: int
    isbn: str | None = None
    description: str | None = None


class AdminBookOut(BookOut):
    stock: int = Field(description="units on hand (PostgreSQL)")
