"""The success envelope of DESIGN.md §3."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


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
