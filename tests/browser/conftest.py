"""Browser tests: Playwright for Python driving Debian's Chromium (never a downloaded
browser) against the real app on a loopback port, with a real worker running the queues.

Chromium comes from `apt-get install chromium` (/usr/bin/chromium, or BOOKBAZAR_CHROMIUM).
If it is missing these tests fail with a message saying so; they never skip silently.
Screenshots of every step go to test-artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookbazar.config import Settings
from bookbazar.services import Services
from bookbazar.worker import WorkerProcess
from tests.conftest import REPO_ROOT, Infra, LiveServer, make_settings

CHROMIUM = os.environ.get("BOOKBAZAR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PASSWORD = "correct-horse-battery"
# Generous: the first page of a session also waits for the worker and the relay.
STEP_TIMEOUT_MS = 20_000


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # a clear failure, not a skip: the dev extra must include it
        pytest.fail(
            "Playwright for Python is not installed: `.venv/bin/pip install -e '.[dev]'` "
            "(the dev extra pins playwright). Do not run `playwright install`: the tests "
            "use Debian's Chromium.",
            pytrace=False,
        )
    return async_playwright


def _require_chromium() -> None:
    # `make test` sets this only after trying to install Chromium and failing (no root or
    # no apt-get): the one case where the browser tests are skipped, saying why.
    reason = os.environ.get("BOOKBAZAR_SKIP_BROWSER")
    if reason and not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests skipped: {reason}")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install Debian's package as root: "
            "`apt-get update && apt-get install -y chromium` (or set BOOKBAZAR_CHROMIUM to "
            "a Chromium binary). The browser tests never download a browser.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    _require_chromium()
    async with _playwright()() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def settings(infra: Infra, clean_state: None) -> Settings:
    # A second between fulfilment steps, so the order page shows each one arrive live.
    return make_settings(
        infra,
        fulfillment_ship_delay_seconds=1,
        fulfillment_deliver_delay_seconds=1,
        sweeper_interval_seconds=3600,
    )


@pytest.fixture
async def worker(live_server: LiveServer) -> AsyncIterator[WorkerProcess]:
    """The real worker (every queue, the outbox relay) beside the live API."""
    process = WorkerProcess(live_server.app.api.state.settings, concurrency=4)
    task = asyncio.create_task(process.run())
    await asyncio.sleep(0.5)
    yield process
    process.stop.set()
    await asyncio.wait_for(task, timeout=30)


@dataclass
class Store:
    """The running store as a test sees it: its URL, services and an HTTP client."""

    url: str
    live: LiveServer
    services: Services
    http: httpx.AsyncClient

    async def register(self, name: str = "Reader") -> dict[str, Any]:
        email = f"{name.lower().replace(' ', '.')}-{uuid.uuid4().hex[:8]}@example.com"
        resp = await self.http.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": name}
        )
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()["data"]
        data["email"] = email
        data["headers"] = {"Authorization": f"Bearer {data['accessToken']}"}
        return data


@pytest.fixture
async def store(live_server: LiveServer, worker: WorkerProcess) -> AsyncIterator[Store]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        yield Store(live_server.url, live_server, live_server.app.api.state.services, http)


class Shots:
    """Numbered full-page screenshots for one test under test-artifacts/browser/<test>/."""

    def __init__(self, test_name: str) -> None:
        self.folder = ARTIFACTS / re.sub(r"[^a-z0-9_-]+", "-", test_name.lower())
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    async def take(self, page: Any, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


async def new_context(browser: Any, *, phone: bool = False, **kwargs: Any) -> Any:
    context = await browser.new_context(
        viewport=PHONE if phone else DESKTOP,
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
        locale="en-IN",
        timezone_id="Asia/Kolkata",
        **kwargs,
    )
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    return context


async def signed_in_context(
    browser: Any, store: Store, buyer: dict[str, Any], *, cart: tuple[uuid.UUID, int] | None = None
) -> Any:
    """A browser context signed in as `buyer` (the login's cookie), with one cart line
    put in through the API first when `cart` is given."""
    context = await new_context(browser)
    login = await context.request.post(
        f"{store.url}/api/v1/auth/login", data={"email": buyer["email"], "password": PASSWORD}
    )
    assert login.status == 200
    if cart is not None:
        book, quantity = cart
        added = await store.http.post(
            "/api/v1/cart/add",
            json={"bookId": str(book), "quantity": quantity},
            headers=buyer["headers"],
        )
        assert added.status_code == 200, added.text
    return context


async def open_page(context: Any, url: str, errors: list[str]) -> Any:
    """Open `url` and wait until its script has run; page errors are collected."""
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{url}: {exc}"))
    page.on("console", lambda msg: _console(msg, url, errors))
    await page.goto(url)
    await page.wait_for_selector("body[data-ready='true']", state="attached")
    return page


def _console(msg: Any, url: str, errors: list[str]) -> None:
    # Chromium logs every 4xx/5xx fetch ("Failed to load resource"); the pages handle
    # those (401 when signed out, 409 when sold out), so only script errors count.
    if msg.type == "error" and "Failed to load resource" not in msg.text:
        errors.append(f"{url}: console {msg.text}")


async def wait_live(page: Any, watching: int | None = None) -> None:
    """Wait for the page's live connection (and its stock-room subscriptions)."""
    await page.wait_for_selector("body[data-live='live']", state="attached")
    if watching is not None:
        await page.wait_for_selector(f"body[data-watching='{watching}']", state="attached")


_UNNAMED_CONTROLS_JS = """() => {
  const shown = (el) => !el.closest('[hidden]') && el.getClientRects().length > 0;
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (!shown(el) || el.type === 'hidden') continue;
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby');
    if (!named) problems.push('unlabelled ' + el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (shown(el) && !(el.textContent.trim() || el.getAttribute('aria-label'))) {
      problems.push('nameless ' + el.outerHTML.slice(0, 120));
    }
  }
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 elements');
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  if (!document.querySelector('[role=status][aria-live=polite]')) problems.push('no live region');
  return problems;
}"""


async def assert_accessible(page: Any) -> None:
    """A cheap check of the basics on what is shown now: every form control has a label,
    every button and link a name, one h1, a language, a polite live region."""
    problems = await page.evaluate(_UNNAMED_CONTROLS_JS)
    assert problems == [], f"{page.url}: {problems}"
