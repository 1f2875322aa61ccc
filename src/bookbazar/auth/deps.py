"""CurrentUser / AdminUser: the user always comes from the verified token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bookbazar.auth.tokens import decode_token
from bookbazar.config import Settings
from bookbazar.errors import Forbidden, Unauthorized
from bookbazar.models import Role

COOKIE_NAME = "accessToken"
_bearer = HTTPBearer(auto_error=False, description="JWT from /auth/login")


@dataclass(frozen=True, slots=True)
class AuthUser:
    """The authenticated caller, as proven by the token (no database read needed)."""

    id: UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


def token_from_request(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        return cookie
    raise Unauthorized("Authentication required: send a Bearer token or the accessToken cookie")


async def _current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AuthUser:
    settings: Settings = request.app.state.settings
    claims = decode_token(settings.secret, token_from_request(request, credentials))
    structlog.contextvars.bind_contextvars(user_id=str(claims.user_id))
    return AuthUser(id=claims.user_id, role=claims.role)


async def _admin_user(user: Annotated[AuthUser, Depends(_current_user)]) -> AuthUser:
    if not user.is_admin:
        raise Forbidden("Administrator role required")
    return user


CurrentUser = Annotated[AuthUser, Depends(_current_user)]
AdminUser = Annotated[AuthUser, Depends(_admin_user)]
