"""Sending an email: SMTP through aiosmtplib when SMTP_URL is set, else a log line."""

from __future__ import annotations

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


async def send_email(
    settings: Settings, to: str, email: Email, *, message_key: str | None = None
) -> bool:
    """Send (True) or, with no SMTP_URL configured, log it (False). Raises the SMTP
    error if the server refuses or cannot be reached (the job retries)."""
    if not settings.smtp_url:
        log.info("email_logged", to=to, subject=email.subject, body=email.text)
        return False
    target = smtp_target(settings.smtp_url)
    await aiosmtplib.send(
        build_message(settings, to, email, message_key),
        hostname=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        use_tls=target.use_tls,
        timeout=20,
    )
    return True
