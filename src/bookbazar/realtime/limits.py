"""Per-socket limits, kept in the process that holds the socket (a socket lives on one
instance, so nothing needs sharing)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    calls: int
    per_seconds: float

    def describe(self) -> str:
        return f"{self.calls} per {self.per_seconds:g} s"


class SlidingWindow:
    """At most `rate.calls` allowed calls in any `rate.per_seconds` window; refused calls
    do not count. Memory is bounded by `rate.calls` timestamps."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._calls: deque[float] = deque()

    def allow(self) -> bool:
        now = self._clock()
        while self._calls and now - self._calls[0] >= self.rate.per_seconds:
            self._calls.popleft()
        if len(self._calls) >= self.rate.calls:
            return False
        self._calls.append(now)
        return True

    def retry_after(self) -> float:
        """Seconds until the next call would be allowed (0 when it would be now)."""
        if len(self._calls) < self.rate.calls:
            return 0.0
        return max(0.0, self.rate.per_seconds - (self._clock() - self._calls[0]))
