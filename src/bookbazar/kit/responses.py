"""The success envelope of DESIGN.md §3."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse


def envelope(data: Any, message: str = "OK", status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "data": data, "message": message, "success": True}


def ok(
    data: Any,
    message: str = "OK",
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        envelope(jsonable_encoder(data, by_alias=True), message, status),
        status_code=status,
        headers=headers,
    )
