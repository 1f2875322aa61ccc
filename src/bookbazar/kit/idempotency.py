"""Idempotency-Key handling (IETF draft "The Idempotency-Key HTTP Header Field").

Fast path in Redis: a short "running" claim per (user, key), then the stored response for
at least 24 h. PostgreSQL is the durable copy and the last guard: orders are unique per
(user_id, idempotency_key) and `idempotency_records` keeps the first response.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from bookbazar.errors import BadRequest, Conflict, Unprocessable

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# A request still "running" after this long is presumed dead; the database guard remains
# (a placement takes well under a second; a claim its request could not take back, Redis
# being unreachable, blocks retries with that key only this long).
RUNNING_TTL_SECONDS = 15


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def validate_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise BadRequest(f"The {HEADER} header is required for this request")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"The {HEADER} header must be 1-{MAX_KEY_LENGTH} characters")
    return key


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def redis_key(user_id: UUID, key: str) -> str:
    """Where Redis keeps (user, key)'s record: the user id is the hash tag, so a script
    can touch it together with the user's cart."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"bb:idem:{{{user_id}}}:{digest}"


def running_value(fingerprint: str) -> str:
    return json.dumps({"state": "running", "hash": fingerprint})


def done_value(fingerprint: str, response: StoredResponse) -> str:
    return json.dumps(
        {"state": "done", "hash": fingerprint, "status": response.status, "body": response.body},
        default=str,
    )


def stored_answer(raw: str, fingerprint: str) -> StoredResponse:
    """What a key's record means for a request with this fingerprint: the answer to
    replay. Raises Unprocessable when the key was used with a different body, Conflict
    while the first request with this key is still running."""
    stored = json.loads(raw)
    check_fingerprint(stored["hash"], fingerprint)
    if stored["state"] == "running":
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly"
        )
    return StoredResponse(int(stored["status"]), stored["body"])


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds

    async def claim(self, user_id: UUID, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim the key for a new request, or return the stored response to replay.

        Raises Unprocessable when the key was used with a different body, Conflict while
        the first request with this key is still running.
        """
        rkey = redis_key(user_id, key)
        claim = running_value(fingerprint)
        if await self.redis.set(rkey, claim, nx=True, ex=RUNNING_TTL_SECONDS):
            return None
        raw = await self.redis.get(rkey)
        if raw is None:  # expired between SET and GET: try once more
            if await self.redis.set(rkey, claim, nx=True, ex=RUNNING_TTL_SECONDS):
                return None
            raw = await self.redis.get(rkey) or claim
        return stored_answer(raw, fingerprint)

    async def complete(
        self, user_id: UUID, key: str, fingerprint: str, response: StoredResponse
    ) -> None:
        await self.redis.set(
            redis_key(user_id, key), done_value(fingerprint, response), ex=self.ttl
        )

    async def abandon(self, user_id: UUID, key: str) -> None:
        """Forget a claim whose request changed nothing, so the client may retry it."""
        await self.redis.delete(redis_key(user_id, key))


def check_fingerprint(stored: str, incoming: str) -> None:
    if stored != incoming:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body; "
            "use a new key for a new request"
        )
