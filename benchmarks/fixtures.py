"""Benchmark data created through the API: books (as the admin), users, prepared carts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from benchmarks.rawhttp import Connection
from benchmarks.service import Service

PASSWORD = "bench-password-123"
REGISTER_CONCURRENCY = 4  # argon2 runs in the API's threads; two cores
SETUP_CONCURRENCY = 16


class SetupError(RuntimeError):
    pass


@dataclass
class User:
    id: str
    email: str
    token: str
    # True when the Redis cart may hold lines (cleared before preparing an order).
    cart_dirty: bool = True


@dataclass
class Book:
    id: str
    title: str
    price: int
    stocked: int  # units ever stocked (created with; the benchmark never restocks)


@dataclass
class Fixtures:
    service: Service
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    users: list[User] = field(default_factory=list)
    books: dict[str, Book] = field(default_factory=dict)
    admin_token: str | None = None

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.service.base_url,
            timeout=120,
            limits=httpx.Limits(max_connections=SETUP_CONCURRENCY),
        )

    async def login_admin(self) -> str:
        if self.admin_token is not None:
            return self.admin_token
        if not self.service.admin_email or not self.service.admin_password:
            raise SetupError(
                "admin credentials unknown: pass --admin-email/--admin-password "
                "or --demo-credentials with --url"
            )
        async with self.client() as client:
            r = await client.post(
                "/api/v1/auth/login",
                json={"email": self.service.admin_email, "password": self.service.admin_password},
            )
        if r.status_code != 200:
            raise SetupError(f"admin login failed: {r.status_code} {r.text[:300]}")
        self.admin_token = str(r.json()["data"]["accessToken"])
        return self.admin_token

    async def create_books(self, count: int, stock: int, label: str) -> list[Book]:
        """`count` new books with `stock` units each, through POST /api/v1/admin/books."""
        token = await self.login_admin()
        sem = asyncio.Semaphore(SETUP_CONCURRENCY)
        created: list[Book] = []

        async def one(client: httpx.AsyncClient, i: int) -> None:
            body = {
                "title": f"Bench {label} {self.run_id} #{i}",
                "author": "Book Bazar Benchmarks",
                "price": 19_900 + 100 * (i % 50),
                "currency": "INR",
                "stock": stock,
            }
            async with sem:
                r = await client.post(
                    "/api/v1/admin/books",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            if r.status_code != 201:
                raise SetupError(f"creating a book failed: {r.status_code} {r.text[:300]}")
            data = r.json()["data"]
            book = Book(str(data["id"]), data["title"], int(data["price"]), stock)
            self.books[book.id] = book
            created.append(book)

        async with self.client() as client:
            await asyncio.gather(*(one(client, i) for i in range(count)))
        return created

    async def ensure_users(self, count: int) -> list[User]:
        """Register users up to `count` (argon2 makes this slow: bounded concurrency,
        done once, the users are reused by every scenario)."""
        missing = count - len(self.users)
        if missing <= 0:
            return self.users[:count]
        print(f"[setup] registering {missing} users (argon2; {REGISTER_CONCURRENCY} at a time)")
        sem = asyncio.Semaphore(REGISTER_CONCURRENCY)
        start = len(self.users)
        t0 = time.monotonic()
        done = 0

        async def one(client: httpx.AsyncClient, i: int) -> User:
            nonlocal done
            email = f"bench-{self.run_id}-{i}@bookbazar.example"
            async with sem:
                r = await client.post(
                    "/api/v1/auth/register",
                    json={"email": email, "password": PASSWORD, "name": f"Bench User {i}"},
                )
            if r.status_code != 201:
                raise SetupError(f"registering {email} failed: {r.status_code} {r.text[:300]}")
            data = r.json()["data"]
            done += 1
            if done % 50 == 0:
                print(f"[setup]   {done}/{missing} users ({time.monotonic() - t0:.1f} s)")
            return User(str(data["user"]["id"]), email, str(data["accessToken"]))

        async with self.client() as client:
            new = await asyncio.gather(*(one(client, start + i) for i in range(missing)))
        self.users.extend(new)
        elapsed = time.monotonic() - t0
        print(f"[setup] {missing} users in {elapsed:.1f} s ({missing / elapsed:.1f}/s)")
        return self.users[:count]


async def prepare_carts(
    service: Service,
    users: Sequence[User],
    line_for: Callable[[int, User], tuple[str, int]],
    concurrency: int = SETUP_CONCURRENCY,
) -> list[str]:
    """Give each user a one-line cart (not timed): clear it if it may hold lines, then
    POST /cart/add. Returns a description of each failure (empty when all worked)."""
    host, port = service.host_port
    conns = [Connection(host, port) for _ in range(min(concurrency, len(users)))]
    failures: list[str] = []
    next_index = 0

    async def worker(conn: Connection) -> None:
        nonlocal next_index
        while next_index < len(users):
            k = next_index
            next_index += 1
            user = users[k]
            try:
                if user.cart_dirty:
                    r = await conn.request("DELETE", "/api/v1/cart", token=user.token)
                    if r.status != 200:
                        failures.append(f"DELETE /cart {r.status} {r.body[:200]!r}")
                        continue
                    user.cart_dirty = False
                book_id, quantity = line_for(k, user)
                r = await conn.request(
                    "POST",
                    "/api/v1/cart/add",
                    {"bookId": book_id, "quantity": quantity},
                    token=user.token,
                )
                user.cart_dirty = True
                if r.status != 200:
                    failures.append(f"POST /cart/add {r.status} {r.body[:200]!r}")
            except Exception as exc:
                user.cart_dirty = True
                failures.append(f"cart preparation: {exc!r}")

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return failures


async def clear_carts(
    service: Service, users: Sequence[User], concurrency: int = SETUP_CONCURRENCY
) -> list[str]:
    """DELETE /api/v1/cart for each user (not timed). Returns failures."""
    host, port = service.host_port
    conns = [Connection(host, port) for _ in range(min(concurrency, len(users)))]
    failures: list[str] = []
    pending = list(users)

    async def worker(conn: Connection) -> None:
        while pending:
            user = pending.pop()
            try:
                r = await conn.request("DELETE", "/api/v1/cart", token=user.token)
            except Exception as exc:
                failures.append(f"DELETE /cart: {exc!r}")
                continue
            if r.status == 200:
                user.cart_dirty = False
            else:
                failures.append(f"DELETE /cart {r.status} {r.body[:200]!r}")

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return failures
