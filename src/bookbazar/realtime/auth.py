"""Who is connecting: the access token from the Socket.IO handshake, verified like the
REST API's. Every refusal carries a reason the client can read (Node's `connect_error`
`err.message`, python-socketio's `connect_error` data); the token itself is never logged."""

from __future__ import annotations

from typing import Any

from socketio.exceptions import ConnectionRefusedError as SocketRefused
from starlette.requests import cookie_parser

from bookbazar.auth.deps import COOKIE_NAME
from bookbazar.auth.tokens import TokenClaims, decode_token
from bookbazar.errors import Unauthorized

# A JWT we issue is a few hundred bytes; anything this long is not one of ours.
MAX_TOKEN_LENGTH = 4096
NO_TOKEN = (
    "unauthorized: no token (send auth.token, an 'Authorization: Bearer' header "
    f"or the {COOKIE_NAME} cookie)"
)


class HandshakeRefused(SocketRefused):  # type: ignore[misc]
    """Refuse the connection; `reason` is what the client receives as the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def token_from_handshake(environ: dict[str, Any], auth: Any) -> str:
    """The token from `auth: {token}`, else `Authorization: Bearer`, else the accessToken
    cookie (as the seed's testClient.js sends it). Raises HandshakeRefused when none is
    present or the one given is malformed."""
    if auth is not None and not isinstance(auth, dict):
        raise HandshakeRefused("unauthorized: auth must be an object like {token: '<jwt>'}")
    if isinstance(auth, dict) and auth.get("token") not in (None, ""):
        token = auth["token"]
        if not isinstance(token, str):
            raise HandshakeRefused("unauthorized: auth.token must be a string")
        return _checked(token.removeprefix("Bearer ").strip(), "auth.token")
    header = environ.get("HTTP_AUTHORIZATION")
    if isinstance(header, str) and header.strip():
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise HandshakeRefused(
                "unauthorized: the Authorization header must be 'Bearer <token>'"
            )
        return _checked(credentials.strip(), "Authorization header")
    raw_cookie = environ.get("HTTP_COOKIE")
    if isinstance(raw_cookie, str) and raw_cookie:
        token = cookie_parser(raw_cookie).get(COOKIE_NAME, "")
        if token:
            return _checked(token, f"{COOKIE_NAME} cookie")
    raise HandshakeRefused(NO_TOKEN)


def _checked(token: str, carrier: str) -> str:
    if not token:
        raise HandshakeRefused(f"unauthorized: the {carrier} is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise HandshakeRefused(f"unauthorized: the {carrier} is too long to be a token")
    return token


def authenticate(secret: str, environ: dict[str, Any], auth: Any) -> TokenClaims:
    """The verified claims of the handshake's token. Raises HandshakeRefused with the
    reason: no token, malformed, forged (bad signature) or expired."""
    token = token_from_handshake(environ, auth)
    try:
        return decode_token(secret, token)
    except Unauthorized as exc:
        raise HandshakeRefused(f"unauthorized: {exc.message}") from None
