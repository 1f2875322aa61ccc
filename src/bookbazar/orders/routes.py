from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Header, Response

from bookbazar.auth.deps import CurrentUser
from bookbazar.db import SessionDep
from bookbazar.errors import error_response
from bookbazar.kit.idempotency import HEADER, MAX_KEY_LENGTH, validate_key
from bookbazar.kit.pagination import PageDep
from bookbazar.kit.responses import Envelope, ErrorEnvelope, Page, errors, ok
from bookbazar.models import OrderStatus
from bookbazar.orders import placement, service
from bookbazar.orders.schemas import OrderOut, PlaceOrderIn
from bookbazar.services import ServicesDep

router = APIRouter(prefix="/orders", tags=["orders"])


@router.post(
    "",
    status_code=201,
    summary="Place an order from the cart (requires Idempotency-Key)",
    response_model=Envelope[OrderOut],
    responses={
        **errors(400, 401, 422),
        409: {
            "model": ErrorEnvelope,
            "description": "Not enough stock (`errors` lists each short line: bookId, "
            "requested, available), or a request with this key is still in flight",
        },
    },
)
async def place_order(
    user: CurrentUser,
    services: ServicesDep,
    idempotency_key: Annotated[
        str,
        Header(
            alias=HEADER,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="1-255 characters, unique per order attempt (missing: 400)",
        ),
    ],
    body: Annotated[PlaceOrderIn | None, Body()] = None,
) -> Response:
    key = validate_key(idempotency_key)
    placed = await placement.place_order(services, user.id, key, body or PlaceOrderIn())
    headers = {"Idempotent-Replayed": "true"} if placed.replayed else None
    match placed.outcome:
        case placement.Outcome.PLACED:
            message = "Order placed: complete payment before it expires"
            return ok(placed.order, message, status=201, headers=headers)
        case placement.Outcome.SHORT:
            message = "Not enough stock for some items; nothing was reserved"
            return error_response(409, message, placed.shortfalls, headers)
        case placement.Outcome.FAILED:
            message = "This order could not be completed; use a new Idempotency-Key"
            return error_response(409, message, headers=headers)


@router.get(
    "",
    summary="The caller's orders, newest first",
    response_model=Envelope[Page[OrderOut]],
    responses=errors(401, 422),
)
async def list_orders(user: CurrentUser, session: SessionDep, page: PageDep) -> Response:
    return ok(await service.list_orders(session, user.id, page))


@router.get(
    "/{order_id}",
    summary="One of the caller's orders",
    response_model=Envelope[OrderOut],
    responses=errors(401, 404, 422),
)
async def get_order(order_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    return ok(await service.get_order(session, user.id, order_id))


@router.post(
    "/{order_id}/cancel",
    summary="Cancel an order awaiting payment",
    response_model=Envelope[OrderOut],
    responses=errors(401, 404, 409, 422),
)
async def cancel_order(order_id: uuid.UUID, user: CurrentUser, services: ServicesDep) -> Response:
    order = await service.cancel_order(services, user.id, order_id)
    message = (
        "Order cancelled"
        if order["status"] == OrderStatus.CANCELLED.value
        else f"Order cancelled, then paid: it is now {order['status']}"
    )
    return ok(order, message)
