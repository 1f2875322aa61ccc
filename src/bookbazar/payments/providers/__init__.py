"""Payment providers behind one interface, chosen by name."""

from __future__ import annotations

from bookbazar.config import Settings
from bookbazar.payments.providers.base import PaymentProvider
from bookbazar.payments.providers.razorpay import RazorpayProvider
from bookbazar.payments.providers.sandbox import SandboxProvider
from bookbazar.payments.providers.stripe import StripeProvider
from bookbazar.services import Services

PROVIDER_NAMES = ("sandbox", "stripe", "razorpay")


class ProviderUnavailable(LookupError):
    """No such provider, or it is not configured in this deployment."""


def is_enabled(settings: Settings, name: str) -> bool:
    """A provider is usable when its secrets are configured. The sandbox is refused in
    production unless it is THE provider: its secret may be the public development one."""
    if name == "sandbox":
        return settings.payment_provider == "sandbox" or settings.is_development
    if name == "stripe":
        return bool(settings.stripe_api_key and settings.stripe_webhook_secret)
    if name == "razorpay":
        return bool(
            settings.razorpay_key_id
            and settings.razorpay_key_secret
            and settings.razorpay_webhook_secret
        )
    return False


def get_provider(services: Services, name: str) -> PaymentProvider:
    """The provider `name`, built once per process (it keeps its HTTP client open: a new
    client per call costs milliseconds of TLS set-up). Raises ProviderUnavailable."""
    settings = services.settings
    if name not in PROVIDER_NAMES or not is_enabled(settings, name):
        raise ProviderUnavailable(name)
    provider = services.clients.get(f"provider:{name}")
    if provider is None:
        provider = _build(services, name)
        services.clients[f"provider:{name}"] = provider
    assert isinstance(provider, PaymentProvider)
    return provider


def _build(services: Services, name: str) -> PaymentProvider:
    settings = services.settings
    if name == "sandbox":
        return SandboxProvider(settings, services.redis)
    if name == "stripe":
        assert settings.stripe_api_key and settings.stripe_webhook_secret
        return StripeProvider(
            settings.stripe_api_key, settings.stripe_webhook_secret, settings.stripe_api_base
        )
    assert settings.razorpay_key_id and settings.razorpay_key_secret
    assert settings.razorpay_webhook_secret
    return RazorpayProvider(
        settings.razorpay_key_id,
        settings.razorpay_key_secret,
        settings.razorpay_webhook_secret,
        tolerance_seconds=settings.razorpay_webhook_tolerance_seconds,
    )


def configured_provider(services: Services) -> PaymentProvider:
    return get_provider(services, services.settings.payment_provider)


__all__ = [
    "PROVIDER_NAMES",
    "PaymentProvider",
    "ProviderUnavailable",
    "configured_provider",
    "get_provider",
    "is_enabled",
]
