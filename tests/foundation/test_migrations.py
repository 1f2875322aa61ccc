"""Migrations on a fresh database: empty → head → base → head, the schema matches the
models, and the constraints that protect the invariants are really there."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from importlib.resources import files

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bookbazar.db import create_engine
from bookbazar.migrate import alembic_config, current, downgrade, upgrade
from bookbazar.models import Base
from tests.conftest import Infra

APP_TABLES = {
    "users",
    "books",
    "carts",
    "cart_items",
    "orders",
    "order_items",
    "payments",
    "processed_webhook_events",
    "outbox_events",
    "idempotency_records",
}


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    return head


@pytest.fixture
async def fresh_db(infra: Infra) -> AsyncIterator[str]:
    """A brand-new, empty database on the test server; dropped afterwards."""
    name = f"bb_migrate_{uuid.uuid4().hex[:12]}"
    admin = create_engine(infra.database_url, pool_size=1)
    autocommit = admin.execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with autocommit.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(infra.database_url).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        async with autocommit.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        )
        return {r[0] for r in rows}


async def test_upgrade_downgrade_upgrade_on_an_empty_database(fresh_db: str) -> None:
    engine = create_engine(fresh_db, pool_size=1)
    try:
        assert await tables(engine) == set()
        assert current(fresh_db) is None

        upgrade(fresh_db)
        assert current(fresh_db) == head_revision(fresh_db)
        assert await tables(engine) >= APP_TABLES

        # The migrated schema is exactly what the models describe (no drift).
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diff == []

        downgrade(fresh_db, "base")
        assert current(fresh_db) is None
        assert await tables(engine) - {"alembic_version"} == set()

        upgrade(fresh_db)
        assert current(fresh_db) == head_revision(fresh_db)
        assert await tables(engine) >= APP_TABLES
        upgrade(fresh_db)  # already at head: a no-op, not an error
        assert current(fresh_db) == head_revision(fresh_db)
    finally:
        await engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    """`bookbazar migrate` works from any working directory (no relative paths)."""
    versions = files("bookbazar") / "migrations" / "versions"
    assert any(p.name.endswith(".py") for p in versions.iterdir())
    assert (files("bookbazar") / "migrations" / "env.py").is_file()


# ------------------------------------------------------------------ constraints


@pytest.fixture
async def migrated(fresh_db: str) -> AsyncIterator[AsyncEngine]:
    upgrade(fresh_db)
    engine = create_engine(fresh_db, pool_size=2)
    yield engine
    await engine.dispose()


async def insert_user(conn: AsyncConnection, email: str | None = None) -> uuid.UUID:
    user_id = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO users (id, email, name, password_hash, role) "
            "VALUES (:id, :email, 'U', 'x', 'customer')"
        ),
        {"id": user_id, "email": email or f"{user_id.hex}@example.com"},
    )
    return user_id


async def insert_book(
    conn: AsyncConnection, *, stock: int = 1, price: int = 100, currency: str = "INR"
) -> uuid.UUID:
    book_id = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO books (id, title, author, price, currency, stock) "
            "VALUES (:id, 'T', 'A', :price, :currency, :stock)"
        ),
        {"id": book_id, "price": price, "currency": currency, "stock": stock},
    )
    return book_id


async def insert_order(
    conn: AsyncConnection, user_id: uuid.UUID, key: str, *, status: str = "PAYMENT_PENDING"
) -> uuid.UUID:
    order_id = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO orders (id, user_id, status, total, currency, idempotency_key) "
            "VALUES (:id, :user_id, :status, 100, 'INR', :key)"
        ),
        {"id": order_id, "user_id": user_id, "status": status, "key": key},
    )
    return order_id


async def expect_violation(engine: AsyncEngine, sql: str, params: dict[str, object]) -> str:
    with pytest.raises(IntegrityError) as info:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    return str(info.value.orig)


async def test_stock_and_money_constraints(migrated: AsyncEngine) -> None:
    async with migrated.begin() as conn:
        book_id = await insert_book(conn, stock=0)  # zero on hand is fine
    update = "UPDATE books SET stock = :v WHERE id = :id"
    assert "stock_non_negative" in await expect_violation(
        migrated, update, {"v": -1, "id": book_id}
    )
    insert = (
        "INSERT INTO books (id, title, author, price, currency, stock) "
        "VALUES (:id, 'T', 'A', :price, :currency, :stock)"
    )
    for values, constraint in (
        ({"price": 100, "currency": "INR", "stock": -1}, "stock_non_negative"),
        ({"price": -1, "currency": "INR", "stock": 1}, "price_non_negative"),
        ({"price": 100, "currency": "inr", "stock": 1}, "currency_iso"),
        ({"price": 100, "currency": "RS", "stock": 1}, "currency_iso"),
    ):
        message = await expect_violation(migrated, insert, {"id": uuid.uuid4(), **values})
        assert constraint in message, values
    async with migrated.connect() as conn:
        stock = (
            await conn.execute(text("SELECT stock FROM books WHERE id = :id"), {"id": book_id})
        ).scalar_one()
        types = dict(
            (
                await conn.execute(
                    text(
                        "SELECT table_name || '.' || column_name, data_type "
                        "FROM information_schema.columns WHERE column_name IN "
                        "('price', 'total', 'amount')"
                    )
                )
            ).all()
        )
    assert stock == 0
    # Money is integer minor units everywhere.
    assert types["books.price"] == "bigint"
    assert types["orders.total"] == "bigint"
    assert types["order_items.price"] == "bigint"
    assert types["payments.amount"] == "bigint"


async def test_cart_line_constraints(migrated: AsyncEngine) -> None:
    async with migrated.begin() as conn:
        user_id = await insert_user(conn)
        book_id = await insert_book(conn)
        cart_id = uuid.uuid4()
        await conn.execute(
            text("INSERT INTO carts (id, user_id, version) VALUES (:id, :u, 0)"),
            {"id": cart_id, "u": user_id},
        )
        await conn.execute(
            text("INSERT INTO cart_items (cart_id, book_id, quantity) VALUES (:c, :b, 1)"),
            {"c": cart_id, "b": book_id},
        )
    async with migrated.begin() as conn:
        other_book = await insert_book(conn)
    line = "INSERT INTO cart_items (cart_id, book_id, quantity) VALUES (:c, :b, :q)"
    for quantity in (0, -1, 11):
        message = await expect_violation(
            migrated, line, {"c": cart_id, "b": other_book, "q": quantity}
        )
        assert "quantity" in message
    # One line per book per cart.
    message = await expect_violation(migrated, line, {"c": cart_id, "b": book_id, "q": 2})
    assert "pk_cart_items" in message or "duplicate key" in message
    # One cart per user.
    message = await expect_violation(
        migrated,
        "INSERT INTO carts (id, user_id, version) VALUES (:id, :u, 0)",
        {"id": uuid.uuid4(), "u": user_id},
    )
    assert "duplicate key" in message


async def test_order_constraints(migrated: AsyncEngine) -> None:
    async with migrated.begin() as conn:
        alice = await insert_user(conn)
        bob = await insert_user(conn)
        book_id = await insert_book(conn)
        order_id = await insert_order(conn, alice, "key-1")
        # The same key for another user is a different order.
        await insert_order(conn, bob, "key-1")
    order_sql = (
        "INSERT INTO orders (id, user_id, status, total, currency, idempotency_key) "
        "VALUES (:id, :user_id, :status, :total, 'INR', :key)"
    )
    message = await expect_violation(
        migrated,
        order_sql,
        {"id": uuid.uuid4(), "user_id": alice, "status": "PENDING", "total": 1, "key": "key-1"},
    )
    assert "uq_orders_user_idempotency_key" in message
    for status, total in (("BOGUS", 1), ("PENDING", -5)):
        await expect_violation(
            migrated,
            order_sql,
            {"id": uuid.uuid4(), "user_id": alice, "status": status, "total": total, "key": "k2"},
        )
    item_sql = (
        "INSERT INTO order_items (order_id, book_id, title, price, quantity) "
        "VALUES (:o, :b, 'T', :price, :q)"
    )
    assert "quantity" in await expect_violation(
        migrated, item_sql, {"o": order_id, "b": book_id, "price": 100, "q": 0}
    )
    assert "price" in await expect_violation(
        migrated, item_sql, {"o": order_id, "b": book_id, "price": -1, "q": 1}
    )


async def test_uniqueness_guards(migrated: AsyncEngine) -> None:
    async with migrated.begin() as conn:
        await insert_user(conn, "same@example.com")
        await conn.execute(
            text(
                "INSERT INTO processed_webhook_events (provider, event_id, event_type) "
                "VALUES ('sandbox', 'evt_1', 'payment_intent.succeeded')"
            )
        )
    assert "duplicate key" in await expect_violation(
        migrated,
        "INSERT INTO users (id, email, name, password_hash, role) "
        "VALUES (:id, 'same@example.com', 'U', 'x', 'customer')",
        {"id": uuid.uuid4()},
    )
    assert "duplicate key" in await expect_violation(
        migrated,
        "INSERT INTO processed_webhook_events (provider, event_id, event_type) "
        "VALUES ('sandbox', 'evt_1', 'payment_intent.succeeded')",
        {},
    )
    assert "role" in await expect_violation(
        migrated,
        "INSERT INTO users (id, email, name, password_hash, role) "
        "VALUES (:id, 'x@example.com', 'U', 'x', 'superuser')",
        {"id": uuid.uuid4()},
    )


async def test_0005_keeps_existing_isbns_as_isbn_13(fresh_db: str) -> None:
    """ISBNs stored before 0005 (hyphens, ISBN-10) take the one form new ones have, so an
    ISBN search and the uniqueness guard see them; an invalid one is left alone."""
    upgrade(fresh_db, "0004")
    engine = create_engine(fresh_db, pool_size=1)
    try:
        books = {
            "0-14-044913-2": "9780140449136",
            "978-0-14-143951-8": "9780141439518",
            "not-an-isbn-12": "not-an-isbn-12",
        }
        async with engine.begin() as conn:
            for n, isbn in enumerate(books):
                await conn.execute(
                    text(
                        "INSERT INTO books (id, title, author, price, currency, stock, isbn) "
                        "VALUES (:id, :t, 'A', 100, 'INR', 1, :isbn)"
                    ),
                    {"id": uuid.uuid4(), "t": f"T{n}", "isbn": isbn},
                )
        upgrade(fresh_db)
        async with engine.connect() as conn:
            stored = set((await conn.execute(text("SELECT isbn FROM books"))).scalars())
        assert stored == set(books.values())
    finally:
        await engine.dispose()
