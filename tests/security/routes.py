"""Every route of the app, classified. A route added to the app and not listed here fails
tests/security/test_auth_required.py until someone decides who may call it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from bookbazar.app import BookBazarApp
from bookbazar.auth.deps import _admin_user, _current_user

Route = tuple[str, str]  # (method, path template)

# Anyone may call these (no token needed).
PUBLIC: frozenset[Route] = frozenset(
    {
        # API documentation
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        # operations
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        # signing in
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        # catalog reads
        ("GET", "/api/v1/books"),
        ("GET", "/api/v1/books/facets"),
        ("GET", "/api/v1/books/{book_id}"),
        # providers call these; the signature is the authentication
        ("POST", "/api/v1/payments/webhook"),
        ("POST", "/api/v1/payments/webhook/{provider}"),
        # the sandbox provider's hosted checkout (the intent id is the capability)
        ("GET", "/sandbox/checkout/{intent_id}"),
        ("POST", "/sandbox/checkout/{intent_id}/pay"),
        ("POST", "/sandbox/checkout/{intent_id}/decline"),
        # storefront pages and assets (static; they call the API with the user's token)
        ("GET", "/"),
        ("GET", "/login"),
        ("GET", "/cart"),
        ("GET", "/checkout"),
        ("GET", "/orders"),
        ("GET", "/orders/{order_id}"),
        ("GET", "/books/{book_id}"),
        ("GET", "/admin"),
        ("GET", "/assets/{path}"),  # a mount: Starlette's StaticFiles
        ("GET", "/covers/{book_id}.svg"),
    }
)

# A signed-in user (any role).
CUSTOMER: frozenset[Route] = frozenset(
    {
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/cart"),
        ("DELETE", "/api/v1/cart"),
        ("POST", "/api/v1/cart/add"),
        ("POST", "/api/v1/cart/remove"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/{order_id}"),
        ("POST", "/api/v1/orders/{order_id}/cancel"),
        ("POST", "/api/v1/payments/init"),
    }
)

# A signed-in administrator.
ADMIN: frozenset[Route] = frozenset(
    {
        ("POST", "/api/v1/admin/books"),
        ("POST", "/api/v1/admin/books/{book_id}/restock"),
        ("GET", "/api/v1/admin/orders"),
        ("GET", "/api/v1/admin/inventory"),
        ("GET", "/api/v1/admin/dead-letter"),
        ("POST", "/api/v1/admin/dead-letter/{job_id}/retry"),
        ("GET", "/api/v1/admin/stock-audit"),
        ("POST", "/api/v1/admin/stock-audit"),
        ("GET", "/api/v1/admin/payments/review"),
    }
)

AUTHENTICATED = CUSTOMER | ADMIN

# Values for path parameters, by name (a route with a new name needs one here).
PATH_VALUES: dict[str, str] = {
    "book_id": str(uuid.UUID(int=1)),
    "order_id": str(uuid.UUID(int=2)),
    "job_id": "1",
    "provider": "sandbox",
    "intent_id": "pi_sb_unknown",
    "path": "store.css",
}


def app_routes(app: BookBazarApp) -> dict[Route, Any]:
    """(method, path template) -> route object, for every route the app serves (HEAD is
    implied by GET)."""
    out: dict[Route, Any] = {}
    for context in iter_route_contexts(app.api.routes):
        path = context.path_format
        assert path is not None
        methods = getattr(context.original_route, "methods", None)
        if isinstance(context.original_route, Mount):
            methods = {"GET"}  # a mounted app (static files) answers GET and HEAD
        for method in methods or ():
            if method != "HEAD":
                out[(method, path)] = context.original_route
    return out


def depends_on(route: Any, dependency: Any) -> bool:
    """Whether the route's dependency tree calls `dependency`."""
    if not isinstance(route, APIRoute):
        return False
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is dependency:
            return True
        pending.extend(dependant.dependencies)
    return False


def requires(route: Any) -> str:
    if depends_on(route, _admin_user):
        return "admin"
    if depends_on(route, _current_user):
        return "user"
    return "nobody"


def concrete(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a path parameter of {path}"
    return path
