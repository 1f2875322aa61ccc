"""create_app(): FastAPI (REST under /api/v1) and Socket.IO (/socket.io) in one ASGI app."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import socketio
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

from bookbazar import __version__
from bookbazar.admin.routes import router as admin_router
from bookbazar.auth.deps import COOKIE_NAME
from bookbazar.auth.routes import router as auth_router
from bookbazar.cart.routes import router as cart_router
from bookbazar.catalog.routes import admin_router as catalog_admin_router
from bookbazar.catalog.routes import router as catalog_router
from bookbazar.config import Settings, get_settings
from bookbazar.errors import error_response, install_error_handlers
from bookbazar.kit import faults
from bookbazar.kit.responses import Envelope, ErrorEnvelope, ok
from bookbazar.metrics import API as API_METRICS
from bookbazar.middleware import RequestContextMiddleware
from bookbazar.orders.routes import router as orders_router
from bookbazar.payments.routes import router as payments_router
from bookbazar.payments.sandbox_page import router as sandbox_checkout_router
from bookbazar.realtime.server import create_sio, gateway_of
from bookbazar.services import Services
from bookbazar.storefront.routes import ASSET_PREFIX, Assets, not_found_page
from bookbazar.storefront.routes import router as storefront_router

log = structlog.get_logger(__name__)

# Matched in this order, one route after another: the busiest first (no two overlap).
API_ROUTERS: tuple[APIRouter, ...] = (
    cart_router,
    catalog_router,
    orders_router,
    payments_router,
    auth_router,
    catalog_admin_router,
    admin_router,
)


class BookBazarApp:
    """The ASGI entry point: Socket.IO at /socket.io, everything else to FastAPI."""

    def __init__(self, api: FastAPI, sio: socketio.AsyncServer) -> None:
        self.api = api
        self.sio = sio
        self._asgi = socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._asgi(scope, receive, send)


def create_app(settings: Settings | None = None) -> BookBazarApp:
    settings = settings or get_settings()
    _, redis_url = settings.require_urls()
    sio = create_sio(settings, redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faults.configure(settings.fault_points, settings.gate_points, redis_url)
        services = Services.create(settings)
        gateway = gateway_of(sio)
        await gateway.start()
        app.state.services = services
        app.state.sessionmaker = services.sessionmaker
        app.state.redis = services.redis
        log.info("api_started", version=__version__, environment=settings.environment)
        try:
            yield
        finally:
            await gateway.close()
            await services.close()
            log.info("api_stopped")

    api = FastAPI(
        title="Book Bazar",
        version=__version__,
        description="Online bookstore backend: catalog, carts, orders, payments, live updates.",
        lifespan=lifespan,
        # Metrics are ours (Prometheus, /metrics); FastAPI's built-in OpenTelemetry hooks
        # would otherwise ask the OTel globals on every request whether they are on.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    api.state.settings = settings
    api.state.sio = sio
    install_error_handlers(api, page_not_found=not_found_page)
    if settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    api.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)

    _document_cookie_auth(api)
    _add_operations_routes(api)  # /healthz first: load balancers call it most
    v1 = APIRouter(prefix="/api/v1")
    for router in API_ROUTERS:
        v1.include_router(router)
    api.include_router(v1)
    api.include_router(sandbox_checkout_router)  # the sandbox provider's hosted page
    api.include_router(storefront_router)
    api.mount(ASSET_PREFIX, Assets(), name="assets")
    return BookBazarApp(api, sio)


def openapi_document() -> dict[str, Any]:
    """The HTTP contract as OpenAPI, generated from the routes alone: the app is built on
    placeholder settings (no .env, the sandbox provider) and nothing is connected."""
    placeholder = Settings(
        _env_file=None,
        environment="test",
        payment_provider="sandbox",
        database_url="postgresql://placeholder@127.0.0.1:9/none",
        redis_url="redis://127.0.0.1:9/0",
    )
    spec: dict[str, Any] = create_app(placeholder).api.openapi()
    return spec


COOKIE_SCHEME = "accessTokenCookie"


def _document_cookie_auth(api: FastAPI) -> None:
    """The OpenAPI document names the accessToken cookie beside Bearer, as the
    alternative it is (the browser storefront signs in with it), on every operation that
    takes a token. Documentation only: no extra dependency runs per request."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        spec = generate()
        schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[COOKIE_SCHEME] = {
            "type": "apiKey",
            "in": "cookie",
            "name": COOKIE_NAME,
            "description": "The HttpOnly cookie /auth/login sets (the same JWT)",
        }
        for item in spec.get("paths", {}).values():
            for operation in item.values():
                security = operation.get("security") if isinstance(operation, dict) else None
                if security and {COOKIE_SCHEME: []} not in security:
                    security.append({COOKIE_SCHEME: []})
        return spec

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="each dependency: ok")


def _add_operations_routes(api: FastAPI) -> None:
    @api.get(
        "/healthz",
        tags=["operations"],
        summary="The process is alive",
        response_model=Envelope[HealthOut],
    )
    async def healthz() -> Response:
        return ok({"status": "ok"}, "alive")

    @api.get(
        "/readyz",
        tags=["operations"],
        summary="PostgreSQL and Redis are reachable",
        response_model=Envelope[ReadyOut],
        responses={
            503: {
                "model": ErrorEnvelope,
                "description": "Not ready: `errors[0]` has each dependency's check",
            }
        },
    )
    async def readyz(request: Request) -> Response:
        services: Services = request.app.state.services
        checks: dict[str, str] = {}
        try:
            async with services.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["postgres"] = "ok"
        except Exception as exc:  # any failure means "not ready", with the reason
            checks["postgres"] = f"unavailable: {type(exc).__name__}"
        try:
            await services.redis.ping()  # type: ignore[misc]
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return ok({"status": "ready", "checks": checks}, "ready")
        return error_response(503, "Not ready", [checks])

    @api.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (text exposition format)",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            401: {"model": ErrorEnvelope, "description": "METRICS_TOKEN is set: send it"},
            404: {"model": ErrorEnvelope, "description": "Off (production without a token)"},
        },
    )
    async def metrics(request: Request) -> Response:
        """This process's metrics: no query runs per scrape (order and stock gauges are
        the worker's, on WORKER_METRICS_PORT). With METRICS_TOKEN set a scrape must send
        it as a Bearer token; in production it must be set, or /metrics is off."""
        settings: Settings = request.app.state.settings
        token = settings.metrics_token
        if token is None and not settings.is_development:
            return error_response(404, "Metrics are off: set METRICS_TOKEN to serve them")
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return error_response(
                    401,
                    "Metrics require the METRICS_TOKEN as a Bearer token",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(generate_latest(API_METRICS), media_type=CONTENT_TYPE_LATEST)
