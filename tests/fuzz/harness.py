"""The app under fuzzing: bound late (the spec is read when the test modules are
collected, before the test's PostgreSQL and Redis exist) and served in process by
schemathesis' ASGI transport, which runs its lifespan in its own event loop."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import requests
from schemathesis.python import asgi

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
# The bounded run in `make test` is reproducible; a longer one (FUZZ_EXAMPLES set) explores.
REPRODUCIBLE = "FUZZ_EXAMPLES" not in os.environ
BASE = f"http://{asgi.HOST}"


class DeferredApp:
    """Forwards to the app the `app_under_test` fixture binds."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "the app_under_test fixture binds the app"
        await self.target(scope, receive, send)


APP = DeferredApp()


def client() -> requests.Session:
    """A requests session that reaches the bound app in process (use it as a context
    manager: entering it starts the app's lifespan once)."""
    session: requests.Session = asgi.get_client(APP)
    return session


@dataclass
class FuzzData:
    customer: str
    admin: str
    books: list[str]
    orders: list[str] = field(default_factory=list)

    @property
    def customer_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.customer}"}
