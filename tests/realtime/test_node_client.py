"""The stock Node socket.io-client running the seed's testClient.js (token in the
accessToken cookie): it receives a cart:update the server emits, and reads the reason
when its token is refused, whichever carrier brings it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookbazar.auth.tokens import issue_token
from bookbazar.config import Settings
from bookbazar.realtime.emitter import Emitter
from tests.conftest import LiveServer
from tests.realtime.conftest import new_user

NODE_TIMEOUT_MS = 15_000


async def start_node(
    node_dir: Path, url: str, token: str, *, carrier: str = "cookie", expect: int = 0
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BB_CARRIER": carrier,
        "BB_EXPECT": str(expect),
        "BB_TIMEOUT_MS": str(NODE_TIMEOUT_MS),
    }
    return await asyncio.create_subprocess_exec(
        "node",
        "testClient.js",
        url,
        token,
        cwd=node_dir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def next_record(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), NODE_TIMEOUT_MS / 1000 + 5)
    if not line:
        stderr = await process.stderr.read() if process.stderr else b""
        raise AssertionError(f"node exited without output: {stderr.decode()[-2000:]}")
    record: dict[str, Any] = json.loads(line)
    return record


async def test_seed_test_client_receives_cart_update(
    live_server: LiveServer,
    node_client_dir: Path,
    emitter: Emitter,
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        user = await new_user(http)
    process = await start_node(node_client_dir, live_server.url, user["accessToken"], expect=1)
    try:
        connected = await next_record(process)
        assert connected["type"] == "connect", connected
        # The stock client's handshake is an HTTP long-polling request (it upgrades to
        # WebSocket afterwards): the cookie in extraHeaders is read from that request.
        assert connected["transport"] in {"polling", "websocket"}
        payload = {
            "event": "cart:item_updated",
            "userId": user["user"]["id"],
            "bookId": str(uuid.uuid4()),
            "quantity": 2,
            "version": 3,
            "updatedAt": 1_700_000_000_000,
        }
        event_id = await emitter.emit_to_user(user["user"]["id"], "cart:update", payload)
        received = await next_record(process)
        assert received == {"type": "cart:update", "data": {**payload, "id": event_id}}
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("carrier", ["cookie", "auth", "header"])
async def test_node_client_reads_why_a_bad_token_is_refused(
    live_server: LiveServer, node_client_dir: Path, settings: Settings, carrier: str
) -> None:
    forged = issue_token("not-the-server-secret-" + "z" * 30, uuid.uuid4(), "customer", 600)
    expired = issue_token(settings.secret, uuid.uuid4(), "customer", -5)
    cases = [
        (forged, "unauthorized: Invalid token"),
        (expired, "unauthorized: Token expired, please sign in again"),
    ]
    for token, reason in cases:
        process = await start_node(node_client_dir, live_server.url, token, carrier=carrier)
        try:
            record = await next_record(process)
            assert record == {"type": "connect_error", "message": reason}
            assert await asyncio.wait_for(process.wait(), 10) == 1
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_node_client_without_a_token_is_refused(
    live_server: LiveServer, node_client_dir: Path
) -> None:
    process = await start_node(node_client_dir, live_server.url, "", carrier="auth")
    try:
        record = await next_record(process)
        assert record["type"] == "connect_error"
        assert record["message"].startswith("unauthorized: no token")
        assert await asyncio.wait_for(process.wait(), 10) == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
