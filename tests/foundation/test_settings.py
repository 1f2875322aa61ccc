"""Settings: a missing or invalid value stops start-up with a message naming it."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bookbazar.cli import app as cli
from bookbazar.config import (
    DEV_JWT_SECRET,
    DEV_WEBHOOK_SECRET,
    ConfigError,
    Settings,
    load_settings,
    setting_names,
)

SETTINGS_ENV = (
    "BOOKBAZAR_ENV",
    "ENVIRONMENT",
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET",
    "PORT",
    "HOST",
    "PUBLIC_URL",
    "PAYMENT_PROVIDER",
    "SANDBOX_WEBHOOK_SECRET",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "RAZORPAY_KEY_ID",
    "RAZORPAY_KEY_SECRET",
    "RAZORPAY_WEBHOOK_SECRET",
    "RESERVATION_TTL_SECONDS",
    "SMTP_URL",
    "CORS_ORIGINS",
    "FAULT_POINTS",
)
STRONG = secrets.token_urlsafe(40)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's shell or a .env in the working directory."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "_env_file": None,
        "environment": "production",
        "jwt_secret": STRONG,
        "sandbox_webhook_secret": "whsec_" + secrets.token_hex(16),
    }
    values.update(overrides)
    return load_settings(**values)


def refused(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        production(**overrides)
    return str(info.value)


def test_valid_production_settings_load() -> None:
    settings = production(database_url="postgresql://u:p@db:5432/bb", redis_url="redis://r:6379/0")
    assert settings.environment == "production"
    assert not settings.is_development
    assert settings.port == 8000
    assert settings.reservation_ttl_seconds == 900
    assert settings.payment_provider == "sandbox"
    assert settings.require_urls() == ("postgresql://u:p@db:5432/bb", "redis://r:6379/0")


def test_production_is_the_default_environment() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(_env_file=None)


def test_missing_jwt_secret_in_production_is_named() -> None:
    message = refused(jwt_secret=None)
    assert "JWT_SECRET" in message
    assert "required" in message


@pytest.mark.parametrize(
    "weak",
    [
        "secret",
        "changeme",
        "your_jwt_secret",
        "short-but-random-Zx9",
        DEV_JWT_SECRET,
        "a" * 64,
        "ab" * 32,
    ],
)
def test_weak_jwt_secret_is_refused_in_production(weak: str) -> None:
    message = refused(jwt_secret=weak)
    assert "JWT_SECRET" in message and "weak" in message


@pytest.mark.parametrize("environment", ["development", "test"])
def test_weak_or_missing_secret_is_accepted_in_development(environment: str) -> None:
    settings = load_settings(_env_file=None, environment=environment, jwt_secret="secret")
    assert settings.secret == "secret"
    settings = load_settings(_env_file=None, environment=environment)
    assert settings.secret == DEV_JWT_SECRET
    assert settings.sandbox_webhook_secret == DEV_WEBHOOK_SECRET
    assert settings.is_development


def test_environment_comes_from_bookbazar_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKBAZAR_ENV", "development")
    assert load_settings(_env_file=None).environment == "development"
    monkeypatch.setenv("BOOKBAZAR_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "changeme")
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings(_env_file=None)
    monkeypatch.setenv("BOOKBAZAR_ENV", "staging")
    with pytest.raises(ConfigError, match="BOOKBAZAR_ENV"):
        load_settings(_env_file=None)


def test_development_webhook_secret_is_refused_in_production() -> None:
    assert "SANDBOX_WEBHOOK_SECRET" in refused(sandbox_webhook_secret=DEV_WEBHOOK_SECRET)
    assert "SANDBOX_WEBHOOK_SECRET" in refused(sandbox_webhook_secret=None)


def test_every_problem_is_reported_at_once() -> None:
    message = refused(jwt_secret=None, sandbox_webhook_secret=None)
    assert "JWT_SECRET" in message and "SANDBOX_WEBHOOK_SECRET" in message


def test_cors_wildcard_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "*")
    message = refused()
    assert "CORS_ORIGINS" in message
    monkeypatch.setenv("CORS_ORIGINS", "https://shop.example, *")
    assert "CORS_ORIGINS" in refused()
    monkeypatch.setenv("CORS_ORIGINS", "https://shop.example, https://admin.example")
    assert production().cors_origins == ["https://shop.example", "https://admin.example"]


@pytest.mark.parametrize("port", ["abc", "0", "70000", "-1", "80.5"])
def test_invalid_port_is_named(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("PORT", port)
    assert "PORT" in refused()


def test_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    assert production().port == 9123


def test_stripe_without_keys_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER", "stripe")
    message = refused()
    assert "STRIPE_API_KEY" in message and "STRIPE_WEBHOOK_SECRET" in message
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_123")
    message = refused()
    assert "STRIPE_WEBHOOK_SECRET" in message and "STRIPE_API_KEY" not in message
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_123")
    assert production().payment_provider == "stripe"


def test_razorpay_without_keys_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER", "razorpay")
    monkeypatch.setenv("RAZORPAY_KEY_ID", "rzp_test_1")
    message = refused()
    assert "RAZORPAY_KEY_SECRET" in message and "RAZORPAY_WEBHOOK_SECRET" in message
    assert "RAZORPAY_KEY_ID" not in message


def test_unknown_payment_provider_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER", "paypal")
    assert "PAYMENT_PROVIDER" in refused()


@pytest.mark.parametrize(
    "name, value",
    [
        ("DATABASE_URL", "mysql://root@localhost/bb"),
        ("DATABASE_URL", "localhost:5432"),
        ("REDIS_URL", "http://localhost:6379"),
        ("SMTP_URL", "mail.example.com:25"),
        ("RESERVATION_TTL_SECONDS", "0"),
        ("RESERVATION_TTL_SECONDS", "fifteen minutes"),
    ],
)
def test_invalid_values_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert name in refused()


def test_fault_points_are_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_POINTS", "after_reserve")
    assert "FAULT_POINTS" in refused()


def test_empty_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    settings = production()
    assert settings.database_url is None
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        settings.require_urls()
    settings = production(database_url="postgresql://db/bb")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        settings.require_urls()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"BOOKBAZAR_ENV=production\nJWT_SECRET={STRONG}\nSANDBOX_WEBHOOK_SECRET=whsec_x\n"
        "PORT=8123\nRESERVATION_TTL_SECONDS=60\nREDIS_URL=redis://cache:6379/1\n"
    )
    settings = load_settings()  # reads ./.env (the test runs in tmp_path)
    assert settings.environment == "production"
    assert settings.secret == STRONG
    assert settings.port == 8123
    assert settings.reservation_ttl_seconds == 60
    assert settings.redis_url == "redis://cache:6379/1"


def test_the_cli_stops_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKBAZAR_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "changeme")
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert "JWT_SECRET" in result.output

    monkeypatch.setenv("BOOKBAZAR_ENV", "development")
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output


def test_every_setting_is_documented_and_named_in_help() -> None:
    names = setting_names()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    undocumented = [name for name in names if f"`{name}`" not in readme]
    assert undocumented == [], f"settings missing from the README's table: {undocumented}"
    shown = CliRunner().invoke(cli, ["--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0
    missing = [name for name in names if name not in shown.output]
    assert missing == [], f"settings missing from `bookbazar --help`: {missing}"
