"""The one error hierarchy services raise, and the handlers that render the envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookbazar import pg

log = structlog.get_logger(__name__)


class AppError(Exception):
    """A failure the client can act on: rendered as the error envelope with `status_code`."""

    status_code = 400
    default_message = "Bad request"
    default_headers: dict[str, str] = {}

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errors = errors or []
        self.headers = {**self.default_headers, **(headers or {})} or None
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    """401, naming the scheme to authenticate with (RFC 9110 §11.6.1: a 401 carries
    WWW-Authenticate). The accessToken cookie works too; Bearer is what a client sends."""

    status_code = 401
    default_message = "Authentication required"
    default_headers = {"WWW-Authenticate": 'Bearer realm="bookbazar"'}


class Forbidden(AppError):
    status_code = 403
    default_message = "You are not allowed to do this"


class NotFound(AppError):
    status_code = 404
    default_message = "Not found"


class Conflict(AppError):
    status_code = 409
    default_message = "Conflict"


class InsufficientStock(Conflict):
    default_message = "Not enough stock"


class PayloadTooLarge(AppError):
    status_code = 413
    default_message = "Request body too large"


class Unprocessable(AppError):
    status_code = 422
    default_message = "Unprocessable request"


class TooManyRequests(AppError):
    status_code = 429
    default_message = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class ServiceUnavailable(AppError):
    status_code = 503
    default_message = "Service temporarily unavailable, please retry"


class BadGateway(AppError):
    status_code = 502
    default_message = "The payment provider did not answer, please retry"


def error_body(status: int, message: str, errors: list[Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "success": False, "errors": errors or []}


def error_response(
    status: int,
    message: str,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, errors), status_code=status, headers=headers)


def _header_problem(exc: RequestValidationError) -> str | None:
    """A request whose only problems are its headers is a 400 naming the header (a
    missing Idempotency-Key is a 400 in DESIGN §3): headers are how the request is sent,
    not the entity that 422 is about."""
    problems = exc.errors()
    if not problems or any(tuple(p.get("loc", ()))[:1] != ("header",) for p in problems):
        return None
    first = problems[0]
    name = str(tuple(first["loc"])[-1])
    if first.get("type") == "missing":
        return f"The {name} header is required for this request"
    return f"The {name} header is invalid: {first.get('msg', 'not accepted')}"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """One {field, message} per problem; the rejected values are never echoed back
    (they may be passwords)."""
    out = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # loc is ("body", <character offset>): the field is the body itself.
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            out.append({"field": "body", "message": f"Malformed JSON: {reason}"})
            continue
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return out


PageFor404 = Callable[[Request], Response | None]


def install_error_handlers(app: FastAPI, *, page_not_found: PageFor404 | None = None) -> None:
    """The error envelope for every failure. `page_not_found`, when given, may answer a
    404 with a page instead (a browser that asked for an unknown storefront path)."""

    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return error_response(exc.status_code, exc.message, exc.errors, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        header_problem = _header_problem(exc)
        if header_problem is not None:
            return error_response(400, header_problem)
        errors = _validation_errors(exc)
        fields = ", ".join(e["field"] for e in errors)
        return error_response(422, f"Invalid request: check {fields}", errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404 and page_not_found is not None:
            page = page_not_found(request)
            if page is not None:
                return page
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        return error_response(exc.status_code, message, headers=dict(exc.headers or {}))

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency_unavailable", path=request.url.path, error=type(exc).__name__)
        return error_response(503, ServiceUnavailable.default_message, headers={"Retry-After": "1"})

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return error_response(500, "Internal server error")

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    unavailable: tuple[type[Exception], ...] = (
        RedisConnectionError,
        RedisTimeoutError,
        OperationalError,
        InterfaceError,
        *pg.UNAVAILABLE,
    )
    for exc_type in unavailable:
        app.add_exception_handler(exc_type, on_unavailable)
    app.add_exception_handler(IntegrityError, on_integrity_error)
    app.add_exception_handler(DBAPIError, on_db_error)
    app.add_exception_handler(asyncpg.PostgresError, on_pg_error)
    app.add_exception_handler(Exception, on_unexpected)


async def on_integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # A constraint caught what the service did not (typically two racing requests):
    # the change was refused and rolled back, so the client may retry; not a 500.
    assert isinstance(exc, IntegrityError)
    constraint = getattr(exc.orig, "constraint_name", None) or getattr(
        getattr(exc.orig, "__cause__", None), "constraint_name", None
    )
    log.warning("integrity_conflict", path=request.url.path, constraint=constraint)
    return error_response(409, "The request conflicts with the current state, please retry")


# SQLSTATEs of text PostgreSQL cannot store (the NUL character, U+0000, in text or JSON).
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


async def on_pg_error(request: Request, exc: Exception) -> JSONResponse:
    """The same answers as `on_integrity_error` and `on_db_error`, for statements run on
    the asyncpg pool (bookbazar/pg.py)."""
    assert isinstance(exc, asyncpg.PostgresError)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        log.warning("integrity_conflict", path=request.url.path, constraint=exc.constraint_name)
        return error_response(409, "The request conflicts with the current state, please retry")
    if exc.sqlstate in _UNSTORABLE_TEXT:
        log.info("unstorable_text_refused", path=request.url.path)
        return error_response(
            422, "Invalid request: text must not contain the NUL character (U+0000)"
        )
    log.exception("database_error", path=request.url.path)
    return error_response(500, "Internal server error")


async def on_db_error(request: Request, exc: Exception) -> JSONResponse:
    # asyncpg surfaces a lost server as DBAPIError wrapping a connection error.
    assert isinstance(exc, DBAPIError)
    if getattr(exc.orig, "sqlstate", None) in _UNSTORABLE_TEXT:
        # Bad input, not a fault: the statement failed, so nothing was stored.
        log.info("unstorable_text_refused", path=request.url.path)
        return error_response(
            422, "Invalid request: text must not contain the NUL character (U+0000)"
        )
    if exc.connection_invalidated or "connection" in str(exc.orig).lower():
        log.warning("database_unavailable", path=request.url.path)
        return error_response(503, ServiceUnavailable.default_message, headers={"Retry-After": "1"})
    log.exception("database_error", path=request.url.path)
    return error_response(500, "Internal server error")
