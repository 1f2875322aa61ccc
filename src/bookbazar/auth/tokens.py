"""JWT access tokens (HS256) and argon2 password hashing."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import jwt
from pwdlib import PasswordHash

from bookbazar.errors import Unauthorized

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    role: str
    expires_at: int


def issue_token(secret: str, user_id: uuid.UUID, role: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "role": role, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens already verified, by (secret, token): the same bytes always verify the same way,
# so a buyer's next request skips the signature check (PyJWT's decode is a tenth of a
# cart request's CPU). Only the expiry is checked again. Bounded; oldest dropped first.
_VERIFIED: OrderedDict[tuple[str, str], TokenClaims] = OrderedDict()
_VERIFIED_MAX = 10_000


def decode_token(secret: str, token: str) -> TokenClaims:
    """Verify signature and expiry; raises Unauthorized with the reason."""
    key = (secret, token)
    known = _VERIFIED.get(key)
    if known is not None:
        if known.expires_at > time.time():
            return known
        _VERIFIED.pop(key, None)
        raise Unauthorized("Token expired, please sign in again")
    claims = _verify(secret, token)
    _VERIFIED[key] = claims
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return claims


def _verify(secret: str, token: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token expired, please sign in again") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    try:
        return TokenClaims(uuid.UUID(str(claims["sub"])), str(claims["role"]), int(claims["exp"]))
    except (ValueError, TypeError):
        raise Unauthorized("Invalid token") from None


@lru_cache(maxsize=1)
def password_hasher() -> PasswordHash:
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return password_hasher().verify(password, password_hash)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A real hash to verify against when the user does not exist (equal timing)."""
    return hash_password("timing-equaliser-password")
