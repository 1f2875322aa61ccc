from __future__ import annotations

from fastapi import APIRouter, Response

from bookbazar.auth.deps import CurrentUser
from bookbazar.cart import service
from bookbazar.cart.schemas import AddToCartIn, CartChangeOut, CartOut, RemoveFromCartIn
from bookbazar.kit.responses import Envelope, errors, ok
from bookbazar.services import ServicesDep

router = APIRouter(prefix="/cart", tags=["cart"])


@router.get(
    "", summary="The caller's cart", response_model=Envelope[CartOut], responses=errors(401)
)
async def get_cart(user: CurrentUser, services: ServicesDep) -> Response:
    return ok(await service.view(services, user.id), "Cart")


@router.post(
    "/add",
    summary="Set a line's quantity (1-10; capped at what is available)",
    response_model=Envelope[CartChangeOut],
    responses=errors(401, 404, 409, 422),
)
async def add_to_cart(body: AddToCartIn, user: CurrentUser, services: ServicesDep) -> Response:
    cart = await service.set_line(services, user.id, body.book_id, body.quantity)
    if cart.adjusted is not None:
        message = (
            f"Only {cart.adjusted.available} available: quantity set to "
            f"{cart.adjusted.quantity} instead of {cart.adjusted.requested}"
        )
    else:
        message = "Cart updated"
    return ok(cart, message)


@router.post(
    "/remove",
    summary="Remove a line",
    response_model=Envelope[CartOut],
    responses=errors(401, 404, 422),
)
async def remove_from_cart(
    body: RemoveFromCartIn, user: CurrentUser, services: ServicesDep
) -> Response:
    return ok(await service.remove_line(services, user.id, body.book_id), "Item removed")


@router.delete(
    "", summary="Remove every line", response_model=Envelope[CartOut], responses=errors(401)
)
async def clear_cart(user: CurrentUser, services: ServicesDep) -> Response:
    return ok(await service.clear(services, user.id), "Cart cleared")
