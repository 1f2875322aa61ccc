"""Tiny local stand-ins for the Stripe and Razorpay HTTP APIs (the tests never reach the
internet): they record each request and answer like the real API would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    json: Any = None


@dataclass
class Stub:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)

    def posts(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]


async def _record(stub: Stub, request: web.Request) -> Recorded:
    raw = await request.read()
    form: dict[str, str] = {}
    body: Any = None
    if request.content_type == "application/x-www-form-urlencoded":
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    elif raw:
        body = json.loads(raw)
    recorded = Recorded(request.method, request.path, dict(request.headers), form, body)
    stub.requests.append(recorded)
    return recorded


def _stripe_app(stub: Stub) -> web.Application:
    def idempotent(recorded: Recorded, make: Any) -> web.Response:
        key = recorded.headers.get("Idempotency-Key", "")
        if key and key in stub.by_key:
            return web.json_response(stub.objects[stub.by_key[key]])
        obj = make()
        stub.objects[obj["id"]] = obj
        if key:
            stub.by_key[key] = obj["id"]
        return web.json_response(obj)

    async def create_intent(request: web.Request) -> web.Response:
        recorded = await _record(stub, request)
        form = recorded.form

        def make() -> dict[str, Any]:
            intent_id = f"pi_stub_{len(stub.objects) + 1}"
            return {
                "id": intent_id,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "amount_received": 0,
                "currency": form["currency"],
                "client_secret": f"{intent_id}_secret_stub",
                "status": "requires_payment_method",
                "metadata": {"orderId": form.get("metadata[orderId]")},
            }

        return idempotent(recorded, make)

    async def get_intent(request: web.Request) -> web.Response:
        await _record(stub, request)
        obj = stub.objects.get(request.match_info["intent"])
        if obj is None:
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": "No such intent"}},
                status=404,
            )
        return web.json_response(obj)

    async def create_refund(request: web.Request) -> web.Response:
        recorded = await _record(stub, request)

        def make() -> dict[str, Any]:
            return {
                "id": f"re_stub_{len(stub.objects) + 1}",
                "object": "refund",
                "amount": int(recorded.form["amount"]),
                "payment_intent": recorded.form["payment_intent"],
                "status": "succeeded",
            }

        return idempotent(recorded, make)

    app = web.Application()
    app.router.add_post("/v1/payment_intents", create_intent)
    app.router.add_get("/v1/payment_intents/{intent}", get_intent)
    app.router.add_post("/v1/refunds", create_refund)
    return app


def _razorpay_app(stub: Stub) -> web.Application:
    async def create_order(request: web.Request) -> web.Response:
        recorded = await _record(stub, request)
        order_id = f"order_stub{len(stub.objects) + 1}"
        obj = {
            "id": order_id,
            "entity": "order",
            "amount": recorded.json["amount"],
            "amount_paid": 0,
            "currency": recorded.json["currency"],
            "receipt": recorded.json["receipt"],
            "status": "created",
            "notes": recorded.json.get("notes", []),
        }
        stub.objects[order_id] = obj
        return web.json_response(obj)

    async def get_order(request: web.Request) -> web.Response:
        await _record(stub, request)
        return web.json_response(stub.objects[request.match_info["order"]])

    async def order_payments(request: web.Request) -> web.Response:
        await _record(stub, request)
        order = stub.objects[request.match_info["order"]]
        items = [{"id": "pay_stub1", "status": "captured"}] if order["status"] == "paid" else []
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def refunds(request: web.Request) -> web.Response:
        await _record(stub, request)
        items = [o for o in stub.objects.values() if o.get("entity") == "refund"]
        return web.json_response({"entity": "collection", "count": len(items), "items": items})

    async def refund(request: web.Request) -> web.Response:
        recorded = await _record(stub, request)
        obj = {"id": "rfnd_stub1", "entity": "refund", "amount": recorded.json["amount"]}
        stub.objects[obj["id"]] = obj
        return web.json_response(obj)

    app = web.Application()
    app.router.add_post("/v1/orders", create_order)
    app.router.add_get("/v1/orders/{order}", get_order)
    app.router.add_get("/v1/orders/{order}/payments", order_payments)
    app.router.add_get("/v1/payments/{payment}/refunds", refunds)
    app.router.add_post("/v1/payments/{payment}/refund", refund)
    return app


@asynccontextmanager
async def serve(kind: str) -> AsyncIterator[Stub]:
    stub = Stub()
    app = _stripe_app(stub) if kind == "stripe" else _razorpay_app(stub)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()
