"""The success envelope of DESIGN.md §3."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import pydantic_core
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


def envelope(data: Any, message: str = "OK", status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "data": data, "message": message, "success": True}


class EnvelopeResponse(JSONResponse):
    """JSON rendered by pydantic-core in one pass: dicts, lists, models (by alias),
    dataclasses, UUIDs and datetimes (ISO 8601, UTC as `Z`) alike, without FastAPI's
    `jsonable_encoder` walk first."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content, by_alias=True)


def ok(
    data: Any,
    message: str = "OK",
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return EnvelopeResponse(envelope(data, message, status), status_code=status, headers=headers)


# ---------------------------------------------------------------- the contract's models
# Routes return `ok(...)` (rendered once by pydantic-core); these models are what the
# OpenAPI document says those bodies are, and the fuzz tests hold every response to them.


class OutModel(BaseModel):
    """A response body's shape: snake_case here, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Envelope(BaseModel, Generic[T]):
    """Every success: `data` is the resource."""

    model_config = ConfigDict(populate_by_name=True)

    status_code: int = Field(alias="statusCode", examples=[200])
    data: T
    message: str = Field(examples=["OK"])
    success: Literal[True] = True


class ErrorItem(BaseModel):
    """One problem: `field` and `message` for invalid input; refusals that concern a
    resource name it instead (e.g. a short cart line: `bookId`, `requested`,
    `available`)."""

    model_config = ConfigDict(extra="allow")

    field: str | None = None
    message: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error (4xx and 5xx)."""

    model_config = ConfigDict(populate_by_name=True)

    status_code: int = Field(alias="statusCode", examples=[404])
    message: str = Field(examples=["Order not found"])
    success: Literal[False] = False
    errors: list[ErrorItem]


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    model_config = ConfigDict(populate_by_name=True)

    items: list[T]
    page: int = Field(description="1-based")
    page_size: int = Field(alias="pageSize")
    total: int = Field(description="items over all pages")


_ERROR_MEANINGS = {
    400: "The request cannot be carried out as sent (the message says why)",
    401: "No valid token: sign in (Bearer token or the accessToken cookie)",
    403: "Signed in, but not allowed (e.g. an administrator's operation)",
    404: "No such resource (or not the caller's)",
    409: "Conflicts with the resource's current state (the message says which)",
    413: "Request body too large",
    422: "Invalid input: `errors` names each field",
    429: "Too many attempts: retry after `Retry-After` seconds",
    502: "The payment provider failed",
    503: "PostgreSQL or Redis is unavailable: retry shortly",
}
# One real answer per status, shown in the documents (messages as the server sends them).
_ERROR_EXAMPLES: dict[int, tuple[str, list[dict[str, Any]]]] = {
    400: ("The Idempotency-Key header is required for this request", []),
    401: ("Authentication required: send a Bearer token or the accessToken cookie", []),
    403: ("Administrator role required", []),
    404: ("Order not found", []),
    409: ("Only an order awaiting payment can be cancelled; this one is PAID", []),
    413: ("Request body larger than 65536 bytes", []),
    422: (
        "Invalid request: check quantity",
        [{"field": "quantity", "message": "Input should be greater than or equal to 1"}],
    ),
    429: ("Too many failed sign-in attempts, try again later", []),
    502: ("The payment provider did not answer, please retry", []),
    503: ("Service temporarily unavailable, please retry", []),
}
ALWAYS = (413, 503)


def error_example(code: int) -> dict[str, Any]:
    message, items = _ERROR_EXAMPLES[code]
    return {"statusCode": code, "message": message, "success": False, "errors": items}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error it can answer, in the error envelope,
    with an example (413 and 503 can happen to any request)."""
    return {
        code: {
            "model": ErrorEnvelope,
            "description": _ERROR_MEANINGS[code],
            "content": {"application/json": {"example": error_example(code)}},
        }
        for code in sorted({*codes, *ALWAYS})
    }
