"""Each user's recent events, kept in a capped Redis stream so a client that reconnects can
`resume` from the last event id it saw (python-socketio has no connection-state recovery).

One stream per user (`bb:events:{<userId>}`; the hash tag keeps it one Cluster slot). Every
append trims the stream twice: to the newest STREAM_MAXLEN entries and to entries younger
than STREAM_RETENTION_MS; the key itself expires after that long without events. With the
retention at twice the promised 15 minutes, clock skew between this process and Redis
(stream ids carry Redis's clock) of up to 15 minutes cannot cut the promise short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

# At least 15 minutes of events are promised; a user sees far fewer than this many in that
# time (a cart edit or an order transition each), so the cap only bounds a runaway emitter.
STREAM_MAXLEN = 1000
STREAM_RETENTION_MS = 30 * 60 * 1000
_SCAN_BATCH = 200


def stream_key(user_id: object) -> str:
    return f"bb:events:{{{user_id}}}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as it was sent: the Socket.IO event name and its payload (with `id`)."""

    id: str
    event: str
    payload: dict[str, Any]


def queue_append(
    pipe: Pipeline,
    user_id: object,
    event_id: str,
    event: str,
    encoded_payload: str,
    *,
    clock: Callable[[], int] = now_ms,
) -> None:
    """Queue the append and both trims on `pipe` (one round trip with the caller's other
    commands). Exact trims: a user's stream is small, so each removes a few entries."""
    key = stream_key(user_id)
    pipe.xadd(
        key,
        {"id": event_id, "event": event, "payload": encoded_payload},
        maxlen=STREAM_MAXLEN,
        approximate=False,
    )
    pipe.xtrim(key, minid=max(0, clock() - STREAM_RETENTION_MS), approximate=False)
    pipe.pexpire(key, STREAM_RETENTION_MS)


def _decode(fields: dict[Any, Any]) -> StoredEvent | None:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        payload = json.loads(text(fields[_key(fields, "payload")]))
        return StoredEvent(
            id=text(fields[_key(fields, "id")]),
            event=text(fields[_key(fields, "event")]),
            payload=payload if isinstance(payload, dict) else {"value": payload},
        )
    except (KeyError, ValueError):
        return None


def _key(fields: dict[Any, Any], name: str) -> Any:
    # The client may or may not decode responses; accept both key types.
    return name if name in fields else name.encode()


async def read_after(
    redis: Redis, user_id: object, last_event_id: str | None
) -> tuple[list[StoredEvent], bool]:
    """The user's retained events after the one whose id is `last_event_id`, oldest first,
    and whether that id was found. Without an id, or with one no longer retained (or never
    sent to this user), every retained event: the client deduplicates by id.

    Reads newest to oldest in batches and stops at the id, so a recent resume is cheap."""
    key = stream_key(user_id)
    newer_first: list[StoredEvent] = []
    upper = "+"
    while True:
        batch = await redis.xrevrange(key, max=upper, min="-", count=_SCAN_BATCH)
        if not batch:
            break
        for _entry_id, fields in batch:
            stored = _decode(fields)
            if stored is None:
                continue
            if last_event_id is not None and stored.id == last_event_id:
                newer_first.reverse()
                return newer_first, True
            newer_first.append(stored)
        last_entry = batch[-1][0]
        upper = "(" + (last_entry.decode() if isinstance(last_entry, bytes) else str(last_entry))
        if len(batch) < _SCAN_BATCH:
            break
    newer_first.reverse()
    return newer_first, False
