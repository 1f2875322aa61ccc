from __future__ import annotations

from fastapi import APIRouter, Request, Response

from bookbazar.auth.deps import CurrentUser
from bookbazar.kit.responses import ok
from bookbazar.payments import service
from bookbazar.payments.schemas import InitPaymentIn
from bookbazar.services import Services, ServicesDep

router = APIRouter(prefix="/payments", tags=["payments"])


@router.post(
    "/init",
    summary="Create (once) the payment intent for one of the caller's orders",
    responses={
        404: {"description": "No such order, or not the caller's"},
        409: {"description": "The order is not awaiting payment"},
        502: {"description": "The payment provider did not answer"},
    },
)
async def init_payment(body: InitPaymentIn, user: CurrentUser, services: ServicesDep) -> Response:
    data = await service.init_payment(services, user.id, body.orderId)
    return ok(data, "Payment initialised: complete it before the order expires")


async def _webhook(services: Services, provider: str, request: Request) -> Response:
    # The signature covers the exact bytes sent: read the raw body, never re-serialise.
    raw_body = await request.body()
    result = await service.handle_webhook(services, provider, raw_body, request.headers)
    return ok({"received": True, "result": result.value}, "Webhook received")


@router.post(
    "/webhook",
    summary="Provider webhook for the configured PAYMENT_PROVIDER",
    responses={400: {"description": "Bad, stale or missing signature"}},
)
async def webhook(request: Request, services: ServicesDep) -> Response:
    return await _webhook(services, services.settings.payment_provider, request)


@router.post(
    "/webhook/{provider}",
    summary="Provider webhook (sandbox, stripe, razorpay)",
    responses={
        400: {"description": "Bad, stale or missing signature"},
        404: {"description": "Unknown or unconfigured provider"},
    },
)
async def provider_webhook(provider: str, request: Request, services: ServicesDep) -> Response:
    return await _webhook(services, provider, request)
