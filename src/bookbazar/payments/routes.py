from __future__ import annotations

from fastapi import APIRouter, Request, Response

from bookbazar.auth.deps import CurrentUser
from bookbazar.config import ProviderName
from bookbazar.kit.responses import Envelope, ErrorEnvelope, errors, ok
from bookbazar.payments import service
from bookbazar.payments.schemas import InitPaymentIn, PaymentIntentOut, WebhookAckOut
from bookbazar.services import Services, ServicesDep

router = APIRouter(prefix="/payments", tags=["payments"])


@router.post(
    "/init",
    summary="Create (once) the payment intent for one of the caller's orders",
    response_model=Envelope[PaymentIntentOut],
    responses=errors(401, 404, 409, 422, 502),
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
    response_model=Envelope[WebhookAckOut],
    responses={
        **errors(),
        400: {"model": ErrorEnvelope, "description": "Bad, stale or missing signature"},
    },
)
async def webhook(request: Request, services: ServicesDep) -> Response:
    return await _webhook(services, services.settings.payment_provider, request)


@router.post(
    "/webhook/{provider}",
    summary="Provider webhook (sandbox, stripe, razorpay)",
    response_model=Envelope[WebhookAckOut],
    responses={
        **errors(),
        400: {"model": ErrorEnvelope, "description": "Bad, stale or missing signature"},
        404: {"model": ErrorEnvelope, "description": "A provider this deployment does not use"},
        422: {"model": ErrorEnvelope, "description": "Not a provider this build knows"},
    },
)
async def provider_webhook(
    provider: ProviderName, request: Request, services: ServicesDep
) -> Response:
    return await _webhook(services, provider, request)
