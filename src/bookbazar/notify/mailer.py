"""Sending an email: SMTP through aiosmtplib when SMTP_URL is set, else a log line."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog

from bookbazar.config import Settings
from bookbazar.notify.render import Email

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None


def smtp_target(url: str) -> SmtpTarget:
    """smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps:// (implicit TLS)."""
    parts = urlsplit(url)
    use_tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname or "localhost",
        port=parts.port or (465 if use_tls else 25),
        use_tls=use_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def build_message(
    settings: Settings, to: str, email: Email, message_key: str | None = None
) -> EmailMessage:
    """The MIME message. With `message_key` its Message-ID is derived from it, so a
    message sent again (a retry after a crash) is recognisably the same one."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = email.subject
    message["Message-ID"] = (
        f"<{message_key}@bookbazar.local>" if message_key else make_msgid(domain="bookbazar.local")
    )
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def masked_address(address: str) -> str:
    """`r***@example.com`: enough to tell emails apart in a log, not to know the person."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}"


class Mailer:
    """Sends emails over one SMTP connection for the process's life (opened on first
    use, opened again if the server dropped it), or logs them when SMTP_URL is unset. A
    new connection per email costs a TCP and TLS handshake and a login each time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def send(self, to: str, email: Email, *, message_key: str | None = None) -> bool:
        """Send (True) or, with no SMTP_URL configured, log it (False). Raises the SMTP
        error if the server refuses or cannot be reached (the caller retries later)."""
        settings = self._settings
        if not settings.smtp_url:
            # The body and the address are personal data: only development logs them.
            if settings.is_development:
                log.info("email_logged", to=to, subject=email.subject, body=email.text)
            else:
                log.info("email_logged", to=masked_address(to), subject=email.subject)
            return False
        message = build_message(settings, to, email, message_key)
        async with self._lock:
            for attempt in range(2):
                smtp = await self._connected(settings.smtp_url)
                try:
                    await smtp.send_message(message)
                    return True
                except aiosmtplib.SMTPServerDisconnected:
                    self._smtp = None  # dropped while idle: once more on a fresh one
                    if attempt:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connected(self, url: str) -> aiosmtplib.SMTP:
        if self._smtp is None or not self._smtp.is_connected:
            target = smtp_target(url)
            smtp = aiosmtplib.SMTP(
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.use_tls,
                timeout=20,
            )
            await smtp.connect()
            self._smtp = smtp
        return self._smtp

    async def aclose(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            with contextlib.suppress(Exception):
                await self._smtp.quit()
        self._smtp = None
