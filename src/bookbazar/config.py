"""One validated settings object, read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Secrets that appear in tutorials and .env examples; never acceptable outside development.
_KNOWN_WEAK_SECRETS = {
    "secret",
    "changeme",
    "change-me",
    "your_jwt_secret",
    "jwt_secret",
    "password",
    "dev",
    "development",
}
MIN_SECRET_LENGTH = 32
DEV_JWT_SECRET = "bookbazar-development-only-secret-not-for-production"
DEV_WEBHOOK_SECRET = "whsec_bookbazar_development_only"
_POSTGRES_SCHEMES = ("postgres://", "postgresql://", "postgresql+")


class ConfigError(RuntimeError):
    """Start-up configuration is missing or invalid; the message names the setting."""


# The payment providers this build knows (each has its module in payments/providers).
ProviderName = Literal["sandbox", "stripe", "razorpay"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # `environment` is read from BOOKBAZAR_ENV, and may be passed by name in code.
        validate_by_name=True,
        validate_by_alias=True,
    )

    environment: Literal["development", "test", "production"] = Field(
        default="production", validation_alias="BOOKBAZAR_ENV"
    )
    database_url: str | None = None
    redis_url: str | None = None
    # REDIS_URL is one node of a Redis Cluster: carts, stock, idempotency records, event
    # streams and queues use a cluster client (the Socket.IO manager subscribes on that
    # node: a cluster delivers every PUBLISH to every node).
    redis_cluster: bool = False
    jwt_secret: str | None = None
    jwt_ttl_seconds: int = Field(default=86_400, ge=60)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
    public_url: str | None = None
    data_dir: Path = Path(".bookbazar")

    payment_provider: ProviderName = "sandbox"
    sandbox_webhook_secret: str | None = None
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = None
    razorpay_webhook_secret: str | None = None
    # Razorpay events older than this (by their signed created_at) are refused.
    razorpay_webhook_tolerance_seconds: int = Field(default=26 * 3600, ge=300)

    reservation_ttl_seconds: int = Field(default=900, ge=5, le=86_400)
    # payments/init extends the reservation when fewer than this many seconds are left.
    payment_min_window_seconds: int = Field(default=300, ge=0)
    payment_verify_after_seconds: int = Field(default=120, ge=1)
    smtp_url: str | None = None
    # A claimed email not marked sent after this long is presumed lost with its sender
    # and is sent by the job's retry (longer than an SMTP send may take).
    notify_claim_lease_seconds: int = Field(default=60, ge=1)
    # How often the email outbox is checked for emails to send (once per deployment).
    notify_interval_seconds: float = Field(default=1.0, ge=0.1, le=3600)
    mail_from: str = "Book Bazar <orders@bookbazar.local>"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # A Redis call that gets no answer this long fails (503) instead of hanging.
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    idempotency_ttl_seconds: int = Field(default=86_400, ge=86_400)

    sweeper_interval_seconds: float = Field(default=30.0, gt=0)
    # The cart's write-behind to PostgreSQL stores a cart this long after the first change
    # of a burst (every change until then rides along), checking every interval.
    cart_persist_delay_ms: int = Field(default=1000, ge=0, le=60_000)
    cart_persist_interval_seconds: float = Field(default=1.0, ge=0.1, le=3600)
    # How often orders whose deadline passed are expired (once per deployment).
    expiry_interval_seconds: float = Field(default=1.0, ge=0.1, le=3600)
    # Every worker re-asserts the job schedulers this often: a Redis that lost them
    # (restarted empty, failed over) gets them back. Idempotent, and it never delays a
    # tick (BullMQ aligns `every` ticks to fixed slots).
    schedule_refresh_seconds: float = Field(default=15.0, ge=1)
    # How often every counter and hold is compared with PostgreSQL and repaired.
    audit_interval_seconds: float = Field(default=60.0, ge=1)
    # A worker holds each running job's lock this long (renewed at half of it); a job
    # whose worker died is run again by another worker once its lock has lapsed.
    job_lock_seconds: float = Field(default=30.0, ge=1, le=600)
    # Holds younger than this that no order owns (a placement or late payment in flight),
    # and holds of orders that ended within it, are left to their own path.
    pending_grace_seconds: int = Field(default=60, ge=1)
    outbox_poll_seconds: float = Field(default=0.2, gt=0)
    # /metrics requires this Bearer token when set; in production it must be set or
    # /metrics is off.
    metrics_token: str | None = None
    # The worker serves its own Prometheus metrics (jobs, expiry lag) here when set.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65_535)
    # How often paid orders are moved along (once per deployment).
    fulfillment_interval_seconds: float = Field(default=1.0, ge=0.1, le=3600)
    fulfillment_ship_delay_seconds: int = Field(default=2, ge=0)
    fulfillment_deliver_delay_seconds: int = Field(default=5, ge=0)
    # Named crash points and gates for fault-injection tests; never set in production.
    fault_points: Annotated[list[str], NoDecode] = Field(default_factory=list)
    gate_points: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", "fault_points", "gate_points", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "redis_url", "smtp_url", "public_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `DATABASE_URL=` in a .env means "not set", not "an empty URL".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_POSTGRES_SCHEMES):
            raise ValueError("must be a PostgreSQL URL (postgresql://user:pass@host:5432/db)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "unix://", "redis+sentinel://")
        if value is not None and not value.startswith(schemes):
            raise ValueError(
                "must be a Redis URL (redis://host:6379/0, or "
                "redis+sentinel://host:26379,host:26379/0/service to follow a Sentinel)"
            )
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("smtp://", "smtps://")):
            raise ValueError("must be an smtp:// or smtps:// URL")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("'*' is not allowed: credentials are sent, list the origins")
        return value

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        """Every missing or unsafe secret, reported together (one fix-and-retry cycle)."""
        dev = self.environment != "production"
        problems: list[str] = []
        if self.jwt_secret is None:
            if not dev:
                problems.append(
                    f"JWT_SECRET is required (at least {MIN_SECRET_LENGTH} random characters)"
                )
            self.jwt_secret = DEV_JWT_SECRET
        elif not dev and (
            len(self.jwt_secret) < MIN_SECRET_LENGTH
            or self.jwt_secret.lower() in _KNOWN_WEAK_SECRETS
            or self.jwt_secret == DEV_JWT_SECRET
            or len(set(self.jwt_secret)) < 8
        ):
            problems.append(
                f"JWT_SECRET is too weak: use at least {MIN_SECRET_LENGTH} random characters"
            )
        if self.sandbox_webhook_secret is None:
            if self.payment_provider == "sandbox" and not dev:
                problems.append("SANDBOX_WEBHOOK_SECRET is required with PAYMENT_PROVIDER=sandbox")
            self.sandbox_webhook_secret = DEV_WEBHOOK_SECRET
        elif not dev and self.sandbox_webhook_secret == DEV_WEBHOOK_SECRET:
            problems.append("SANDBOX_WEBHOOK_SECRET must not be the development default")
        required = {
            "stripe": ("stripe_api_key", "stripe_webhook_secret"),
            "razorpay": ("razorpay_key_id", "razorpay_key_secret", "razorpay_webhook_secret"),
        }.get(self.payment_provider, ())
        missing = [name.upper() for name in required if not getattr(self, name)]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            problems.append(
                f"{' and '.join(missing)} {verb} required with "
                f"PAYMENT_PROVIDER={self.payment_provider}"
            )
        if self.fault_points and not dev:
            problems.append("FAULT_POINTS is for tests only and refused in production")
        if self.gate_points and not dev:
            problems.append("GATE_POINTS is for tests only and refused in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.environment != "production"

    @property
    def secret(self) -> str:
        assert self.jwt_secret is not None  # set by the validator
        return self.jwt_secret

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def require_urls(self) -> tuple[str, str]:
        """The database and Redis URLs, or a ConfigError naming the missing one."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (or run `bookbazar up` for embedded ones)")
        if not self.redis_url:
            raise ConfigError("REDIS_URL is not set (or run `bookbazar up` for embedded ones)")
        return self.database_url, self.redis_url


def setting_names() -> list[str]:
    """Every setting's environment variable, in declaration order."""
    return [
        str(field.validation_alias or name).upper() for name, field in Settings.model_fields.items()
    ]


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into one ConfigError that names each setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if name != "settings" else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
