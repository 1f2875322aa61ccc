from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bookbazar.catalog.isbn import normalize_isbn

MAX_PRICE = 100_000_000  # 10 lakh rupees in paise: far above any book


class BookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    author: str = Field(min_length=1, max_length=200)
    price: int = Field(ge=0, le=MAX_PRICE, description="minor units (paise/cents)", strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. INR")
    stock: int = Field(ge=0, le=1_000_000, strict=True)
    isbn: str | None = Field(
        default=None,
        max_length=20,
        description="ISBN-13 or ISBN-10 (hyphens allowed, check digit checked); kept as ISBN-13",
    )
    description: str | None = Field(default=None, max_length=5000)
    pages: int | None = Field(default=None, ge=1, le=50_000, strict=True)
    year: int | None = Field(
        default=None, ge=-3000, le=2100, strict=True, description="first published"
    )
    language: str | None = Field(default=None, min_length=2, max_length=40, examples=["English"])
    subject: str | None = Field(default=None, min_length=2, max_length=60, examples=["Poetry"])

    @field_validator("title", "author")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("isbn")
    @classmethod
    def _isbn(cls, value: str | None) -> str | None:
        return None if value is None else normalize_isbn(value)

    @field_validator("language", "subject")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


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
    pages: int | None = None
    year: int | None = Field(default=None, description="first published")
    language: str | None = Field(default=None, description="the language of this edition")
    subject: str | None = None


class AdminBookOut(BookOut):
    stock: int = Field(description="units on hand (PostgreSQL)")


class FacetOut(BaseModel):
    name: str
    books: int = Field(description="books with this value")


class FacetsOut(BaseModel):
    """The values the catalog's filters take, with how many books have each."""

    subjects: list[FacetOut]
    languages: list[FacetOut]
