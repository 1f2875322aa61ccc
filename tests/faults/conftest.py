from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bookbazar.config import Settings
from bookbazar.realtime.server import gateway_of
from tests.conftest import LiveServer
from tests.faults.harness import Launcher
from tests.notify.smtp import MailServer, mail_server


@pytest.fixture
async def launch(settings: Settings, tmp_path: Path) -> AsyncIterator[Launcher]:
    launcher = Launcher(settings, tmp_path)
    try:
        yield launcher
    finally:
        await launcher.close()


@pytest.fixture
def smtp() -> Iterator[MailServer]:
    with mail_server() as server:
        yield server


@pytest.fixture
async def live_server(live_server: LiveServer) -> AsyncIterator[LiveServer]:
    """The in-process API (for worker crashes): its gateway closed at the end."""
    yield live_server
    await gateway_of(live_server.app.sio).close()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        yield client
