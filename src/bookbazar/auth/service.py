"""Registration and sign-in rules."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from bookbazar.auth import repository
from bookbazar.auth.ratelimit import LoginLimiter
from bookbazar.auth.tokens import dummy_hash, hash_password, verify_password
from bookbazar.errors import Conflict, Unauthorized
from bookbazar.models import Role, User

log = structlog.get_logger(__name__)


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def register(
    session: AsyncSession, *, email: str, password: str, name: str, role: Role = Role.CUSTOMER
) -> User:
    """Create a user. Raises Conflict if the email is already registered."""
    email = normalise_email(email)
    # argon2 is CPU-heavy: keep it off the event loop.
    password_hash = await asyncio.to_thread(hash_password, password)
    user = await repository.insert_user(
        session, email=email, name=name, password_hash=password_hash, role=role.value
    )
    if user is None:
        raise Conflict("An account with this email already exists")
    log.info("user_registered", user_id=str(user.id))
    return user


async def authenticate(
    session: AsyncSession, limiter: LoginLimiter, *, email: str, password: str, client_ip: str
) -> User:
    """Check credentials. Raises TooManyRequests when this account or address used up its
    attempts (checked before the password, so parallel guesses count too), Unauthorized
    when wrong. A success is never delayed and clears the account's failure count."""
    email = normalise_email(email)
    await limiter.acquire(email, client_ip)
    user = await repository.get_by_email(session, email)
    # Verify against a real hash even for unknown emails: equal timing, no enumeration.
    hashed = user.password_hash if user else dummy_hash()
    valid = await asyncio.to_thread(verify_password, password, hashed)
    if user is None or not valid:
        log.info("login_failed", client_ip=client_ip)
        raise Unauthorized("Invalid email or password")
    await limiter.succeeded(email, client_ip)
    return user
