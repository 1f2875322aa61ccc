"""Fault injection for crash-point tests: kill this process at a named point.

Only active when FAULT_POINTS lists the point, which Settings refuses in production.
"""

from __future__ import annotations

import os
import signal

import structlog

log = structlog.get_logger(__name__)
_active: frozenset[str] = frozenset()


def configure(points: list[str]) -> None:
    global _active
    _active = frozenset(points)


def crash_point(name: str) -> None:
    if name in _active:
        log.warning("fault_injected", point=name, pid=os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
