"""Fault injection for tests: kill this process at a named point, or pause it there.

Only active when FAULT_POINTS / GATE_POINTS list the point, which Settings refuses in
production. A crash point SIGKILLs the process. A gate makes the race tests' interleavings
happen across real processes, so a test can pause one path between its PostgreSQL commit
and its Redis step while another path runs:
- the test arms the gate: RPUSH `bb:test:gate:<name>:armed` (one entry pauses one
  arrival; an unarmed gate lets every caller through);
- the process that reaches it takes one entry, announces itself (RPUSH
  `bb:test:gate:<name>:arrived` <pid>) and waits;
- the test lets it go: RPUSH `bb:test:gate:<name>:open` (or GATE_TIMEOUT_SECONDS pass).
"""

from __future__ import annotations

import os
import signal

import structlog

from bookbazar.redis import create_redis

log = structlog.get_logger(__name__)
GATE_TIMEOUT_SECONDS = 30
_active: frozenset[str] = frozenset()
_gates: frozenset[str] = frozenset()
_redis_url: str | None = None


def configure(
    points: list[str], gates: list[str] | None = None, redis_url: str | None = None
) -> None:
    global _active, _gates, _redis_url
    _active = frozenset(points)
    _gates = frozenset(gates or ())
    _redis_url = redis_url


def crash_point(name: str) -> None:
    if name in _active:
        log.warning("fault_injected", point=name, pid=os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


def gate_key(name: str, what: str) -> str:
    return f"bb:test:gate:{name}:{what}"


async def gate(name: str) -> None:
    """Wait here while a test holds this gate (no-op unless GATE_POINTS lists it)."""
    if name not in _gates or _redis_url is None:
        return
    # Its own connection with no socket timeout: the wait may be long.
    client = create_redis(_redis_url, socket_timeout=None)
    try:
        if await client.lpop(gate_key(name, "armed")) is None:  # type: ignore[misc]
            return
        log.warning("gate_reached", point=name, pid=os.getpid())
        await client.rpush(gate_key(name, "arrived"), str(os.getpid()))  # type: ignore[misc]
        opened = await client.blpop(  # type: ignore[misc]
            [gate_key(name, "open")], timeout=GATE_TIMEOUT_SECONDS
        )
        log.warning("gate_passed", point=name, opened=opened is not None)
    finally:
        await client.aclose()
