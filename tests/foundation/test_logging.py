"""Every line a process writes is in one format: in production JSON lines, for
structlog's events and for stdlib records (uvicorn, alembic, asyncio) alike; and no
personal data from an email reaches the log outside development."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from bookbazar.config import Settings
from bookbazar.logging import configure_logging
from bookbazar.notify import mailer
from bookbazar.notify.mailer import Mailer, masked_address
from bookbazar.notify.render import Email


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure_logging(json=True)
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    configure_logging(json=False, level="WARNING")  # what the suite runs with


def _lines(captured: str) -> list[dict[str, Any]]:
    lines = [line for line in captured.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    return parsed


def test_stdlib_and_structlog_lines_are_the_same_json(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1")
    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 4242)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade 0003 -> 0004")
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    structlog.get_logger("bookbazar.orders").info("order_placed", order_id="o-1")

    uvicorn, alembic, failure, ours = _lines(capsys.readouterr().err)
    assert uvicorn["event"] == "Started server process [4242]"
    assert (uvicorn["logger"], uvicorn["level"]) == ("uvicorn.error", "warning")
    assert alembic["logger"] == "alembic.runtime.migration" and alembic["level"] == "info"
    assert failure["level"] == "error" and "ValueError: broken" in failure["exception"]
    assert ours["event"] == "order_placed" and ours["order_id"] == "o-1"
    for line in (uvicorn, alembic, failure, ours):
        assert line["request_id"] == "req-1"
        assert line["timestamp"].endswith("Z")


def test_configuring_again_does_not_double_the_lines(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True)
    logging.getLogger("uvicorn.error").warning("once")
    assert len(_lines(capsys.readouterr().err)) == 1


@pytest.mark.parametrize("environment", ["production", "development"])
async def test_a_logged_email_shows_personal_data_only_in_development(
    json_logs: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    environment: str,
) -> None:
    settings = Settings(  # no SMTP_URL: emails are logged, not sent
        _env_file=None,
        environment=environment,
        jwt_secret="pR0d-Jwt-S3cret-9f8e7d6c5b4a3210-ZyXwVu",
        sandbox_webhook_secret="whsec_prod_8c1d2e3f4a5b6c7d",
    )
    # The module's logger may have been bound to an earlier configuration (structlog
    # caches a logger on first use): a fresh one renders with this test's JSON set-up.
    monkeypatch.setattr(mailer, "log", structlog.get_logger(mailer.__name__))
    email = Email(subject="Your order is paid", text="Dear Reader, 12 Baker Street", html="")
    assert await Mailer(settings).send("reader@bookbazar.example", email) is False
    [line] = _lines(capsys.readouterr().err)
    assert line["event"] == "email_logged" and line["subject"] == "Your order is paid"
    if environment == "production":
        assert line["to"] == masked_address("reader@bookbazar.example") == "r***@bookbazar.example"
        assert "Baker Street" not in json.dumps(line) and "reader@" not in json.dumps(line)
    else:
        assert line["to"] == "reader@bookbazar.example" and "Baker Street" in line["body"]
