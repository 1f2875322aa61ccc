"""The contract is real: a TypeScript client generated from the app's OpenAPI document
(openapi-typescript, with openapi-fetch) is type-checked by `tsc` against it and then
drives a buyer's journey against the real API and worker processes: register, catalog,
add to cart, order with an Idempotency-Key, payments/init, sandbox pay, and the order
read back PAID (or further along)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from bookbazar.app import openapi_document
from bookbazar.services import Services
from tests.conftest import create_book
from tests.e2e.conftest import Processes

CLIENT_DIR = Path(__file__).parent / "client"
PAID_OR_LATER = {"PAID", "FULFILLING", "SHIPPED", "DELIVERED"}


def _run(args: list[str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def built_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """npm ci from the lockfile, the client generated from the app's document now (not
    the committed copy), and the journey compiled: a field the document lacks or types
    otherwise fails `tsc`."""
    npm, npx = shutil.which("npm"), shutil.which("npx")
    if shutil.which("node") is None or npm is None or npx is None:
        pytest.fail("node and npm are required for the generated-client test (Node >= 18)")
    if not (CLIENT_DIR / "node_modules" / "openapi-typescript" / "package.json").exists():
        _run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            CLIENT_DIR,
        )
    spec = tmp_path_factory.mktemp("contract") / "openapi.json"
    spec.write_text(json.dumps(openapi_document()), encoding="utf-8")
    _run([npx, "openapi-typescript", str(spec), "-o", "generated/api.d.ts"], CLIENT_DIR)
    _run([npx, "tsc", "-p", "."], CLIENT_DIR)
    journey = CLIENT_DIR / "build" / "journey.js"
    assert journey.exists()
    return journey


async def test_a_generated_client_buys_a_book(
    built_client: Path, processes: Processes, services: Services
) -> None:
    book = await create_book(services, title="The Left Hand of Darkness", stock=3, price=39_900)
    node = shutil.which("node")
    assert node is not None
    journey = await asyncio.create_subprocess_exec(
        node,
        str(built_client),
        processes.url,
        str(book),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(journey.communicate(), timeout=120)
    assert journey.returncode == 0, f"{out.decode()}\n{err.decode()}\n{processes.tail()}"
    outcome = json.loads(out.decode().strip().splitlines()[-1])
    assert outcome["status"] in PAID_OR_LATER, outcome
    assert outcome["total"] == 39_900
    async with services.sessionmaker() as session:
        row = (
            await session.execute(
                text("SELECT status, total, user_id FROM orders WHERE id = :id"),
                {"id": outcome["orderId"]},
            )
        ).one()
        stock = (
            await session.execute(text("SELECT stock FROM books WHERE id = :id"), {"id": book})
        ).scalar_one()
    assert row.status in PAID_OR_LATER and row.total == 39_900
    assert stock == 2  # the sale took one copy off the shelf
