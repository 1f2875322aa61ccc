"""Stock holds and availability counters: the only code that changes them.

Redis admits or refuses a reservation (Lua, atomic); PostgreSQL records what was sold.
Every hold is fenced: it is named by its order and a token, and every release or
conversion names the token it observed (DESIGN.md §7.8). `reconcile` rebuilds counters
exactly from PostgreSQL, online.
"""

from __future__ import annotations

import asyncio
import enum
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookbazar.inventory import keys
from bookbazar.inventory import repository as repo
from bookbazar.kit import faults
from bookbazar.kit.clock import now_ms
from bookbazar.lua import Scripts

log = structlog.get_logger(__name__)
_REBUILD_ROUNDS = 3


def new_token() -> str:
    """A fresh hold token (unique per reservation attempt of an order)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Hold:
    """One reservation: an order's units held under a fencing token."""

    order_id: UUID
    token: str

    @property
    def member(self) -> str:
        return keys.member(self.order_id, self.token)

    def script_keys(self) -> list[str]:
        return [
            keys.hold(self.order_id, self.token),
            keys.INDEX,
            keys.ended(self.order_id, self.token),
        ]

    @classmethod
    def parse(cls, member: str) -> Hold:
        order, _, token = member.partition(":")
        return cls(UUID(order), token)


@dataclass(frozen=True, slots=True)
class Shortfall:
    book_id: UUID
    requested: int
    available: int


class Reserve(enum.StrEnum):
    OK = "OK"  # reserved now
    EXISTS = "EXISTS"  # this hold was in place already
    ENDED = "ENDED"  # this hold ended already: a token is never reused
    SHORT = "SHORT"  # not enough units for some line: nothing reserved


@dataclass(frozen=True, slots=True)
class ReserveResult:
    status: Reserve
    levels: dict[UUID, int] = field(default_factory=dict)
    shortfalls: tuple[Shortfall, ...] = ()
    ended_as: str | None = None

    @property
    def held(self) -> bool:
        return self.status in (Reserve.OK, Reserve.EXISTS)


class Finish(enum.StrEnum):
    DONE = "DONE"  # this call ended the hold
    RELEASED = "RELEASED"  # it had been released already
    CONVERTED = "CONVERTED"  # it had been converted already
    NONE = "NONE"  # there was no such hold (lost, or never made); it is marked ended now


@dataclass(frozen=True, slots=True)
class FinishResult:
    outcome: Finish
    levels: dict[UUID, int] = field(default_factory=dict)

    @property
    def sold(self) -> bool:
        """For a conversion: whether the hold's units may be recorded as sold. False only
        when the hold had been released (its units are available to others again)."""
        return self.outcome is not Finish.RELEASED


def _levels(reply: Sequence[Any], start: int = 1) -> dict[UUID, int]:
    return {UUID(str(reply[i])): int(reply[i + 1]) for i in range(start, len(reply), 2)}


def _reserve_result(reply: Sequence[Any]) -> ReserveResult | list[UUID]:
    """The typed reply of stock_reserve.lua; a list of book ids when counters are missing."""
    tag = str(reply[0])
    if tag == "OK":
        return ReserveResult(Reserve.OK, levels=_levels(reply))
    if tag == "EXISTS":
        return ReserveResult(Reserve.EXISTS)
    if tag == "ENDED":
        return ReserveResult(Reserve.ENDED, ended_as=str(reply[1]))
    if tag == "SHORT":
        shortfalls = tuple(
            Shortfall(UUID(str(reply[i])), int(reply[i + 1]), max(0, int(reply[i + 2])))
            for i in range(1, len(reply), 3)
        )
        return ReserveResult(Reserve.SHORT, shortfalls=shortfalls)
    if tag == "MISSING":
        return [UUID(str(b)) for b in reply[1:]]
    raise RuntimeError(f"unexpected stock_reserve reply {tag!r}")


def _finish_result(reply: Sequence[Any]) -> FinishResult:
    tag = str(reply[0])
    if tag == "DONE":
        return FinishResult(Finish.DONE, _levels(reply))
    if tag == "ENDED":
        return FinishResult(Finish.RELEASED if reply[1] == "released" else Finish.CONVERTED)
    if tag == "NONE":
        return FinishResult(Finish.NONE)
    raise RuntimeError(f"unexpected stock_finish reply {tag!r}")


def _finish_call(hold: Hold, state: str, books: Sequence[str]) -> tuple[list[str], list[Any]]:
    """stock_finish's keys and args: every key it touches is declared (a release names
    the counters of the hold's books, read first; a conversion changes no counter)."""
    books = books if state == "released" else ()
    return (
        [*hold.script_keys(), *(keys.AVAIL_PREFIX + b for b in books)],
        [hold.member, state, keys.ENDED_TTL_SECONDS, *books],
    )


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    # book id -> (counter before, or None when missing; counter after)
    counters: dict[UUID, tuple[int | None, int]]
    holds_checked: int = 0
    # (order id, token, action): holds ended, recreated or resurrected
    repaired: tuple[tuple[UUID, str, str], ...] = ()
    # books restocked within the grace period: a correction there is the restock's own
    restocked: frozenset[UUID] = frozenset()

    @property
    def corrected(self) -> dict[UUID, tuple[int | None, int]]:
        return {b: (old, new) for b, (old, new) in self.counters.items() if old != new}

    @property
    def drift(self) -> dict[UUID, tuple[int, int]]:
        """Counters that were wrong: corrected, not missing (a lost counter is rebuilt,
        not drift), and not on a book whose restock is still applying itself."""
        return {
            b: (old, new)
            for b, (old, new) in self.corrected.items()
            if old is not None and b not in self.restocked
        }

    @property
    def drift_units(self) -> int:
        return sum(abs(new - old) for old, new in self.drift.values())


def _reconcile_report(raw: str, restocked: frozenset[UUID] = frozenset()) -> ReconcileReport:
    decoded = json.loads(raw)
    counters = decoded.get("counters") or {}
    repaired = decoded.get("repaired") or []
    return ReconcileReport(
        counters={
            UUID(b): (None if old is None else int(old), int(new))
            for b, (old, new) in counters.items()
        },
        holds_checked=int(decoded.get("holds") or 0),
        repaired=tuple((UUID(o), str(t), str(a)) for o, t, a in repaired),
        restocked=restocked,
    )


class Inventory:
    """Atomic stock operations over Redis, rebuilt exactly from PostgreSQL on demand."""

    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        orphan_grace_seconds: float = 60.0,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.sessionmaker = sessionmaker
        self.orphan_grace_ms = int(orphan_grace_seconds * 1000)
        # One rebuild of missing counters at a time per process (no stampede after a flush).
        self._rebuild_lock = asyncio.Lock()

    # ------------------------------------------------------------ availability

    async def available(self, book_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Units available per book; counters missing in Redis are rebuilt first (only
        pass ids of books that exist: an unknown id has no counter to rebuild)."""
        if not book_ids:
            return {}
        values = await self.redis.mget([keys.avail(b) for b in book_ids])
        out: dict[UUID, int] = {}
        missing: list[UUID] = []
        for book_id, value in zip(book_ids, values, strict=True):
            if value is None:
                missing.append(book_id)
            else:
                out[book_id] = int(value)
        if missing:
            out.update(await self._rebuild_missing(missing))
        return out

    async def _rebuild_missing(self, book_ids: list[UUID]) -> dict[UUID, int]:
        async with self._rebuild_lock:
            values = await self.redis.mget([keys.avail(b) for b in book_ids])
            out = {b: int(v) for b, v in zip(book_ids, values, strict=True) if v is not None}
            still_missing = [b for b in book_ids if b not in out]
            if still_missing:
                report = await self.reconcile(still_missing)
                for book_id in still_missing:
                    out[book_id] = report.counters.get(book_id, (None, 0))[1]
            return out

    # ------------------------------------------------------------ holds

    async def reserve(self, hold: Hold, lines: Iterable[tuple[UUID, int]]) -> ReserveResult:
        """Reserve every line under `hold`, or nothing (atomic; same-book lines summed).
        Idempotent for the same hold (EXISTS); a hold that ended is never revived."""
        line_list = [(UUID(str(b)), int(q)) for b, q in lines]
        script_keys = [*hold.script_keys(), *(keys.avail(b) for b, _ in line_list)]
        args: list[str | int] = [hold.member, now_ms()]
        for book_id, units in line_list:
            args += [str(book_id), units]
        for _ in range(_REBUILD_ROUNDS):
            result = _reserve_result(await self.scripts.run("stock_reserve", script_keys, args))
            if isinstance(result, list):
                await self._rebuild_missing(result)
                continue
            if result.status is Reserve.OK:
                log.debug("stock_reserved", order_id=str(hold.order_id), token=hold.token)
            return result
        raise RuntimeError("stock counters kept disappearing while reserving")

    async def release(self, hold: Hold) -> FinishResult:
        """Give the hold's units back. Idempotent. Ends only this hold: another hold of
        the same order (a late payment's) is untouched."""
        result = await self._finish(hold, "released")
        if result.outcome is Finish.DONE:
            log.info("stock_released", order_id=str(hold.order_id), token=hold.token)
        return result

    async def convert(self, hold: Hold) -> FinishResult:
        """Mark the hold's units as sold (availability is unchanged: on-hand stock falls
        in PostgreSQL in the same transaction). Call it while holding the order's and its
        books' rows FOR UPDATE, before committing the sale; `result.sold` False means the
        hold was released meanwhile and the sale must not be recorded with it."""
        faults.crash_point("stock:before-convert")
        return await self._finish(hold, "converted")

    async def _finish(self, hold: Hold, state: str) -> FinishResult:
        for _ in range(3):
            books = await self._books_held(hold) if state == "released" else []
            reply = await self.scripts.run("stock_finish", *_finish_call(hold, state, books))
            if reply[0] != "UNDECLARED":  # else the hold was (re)made meanwhile: read again
                return _finish_result(reply)
        raise RuntimeError(f"the books of hold {hold.member} kept changing")

    async def _books_held(self, hold: Hold) -> list[str]:
        books: list[str] = await self.redis.hkeys(keys.hold(hold.order_id, hold.token))  # type: ignore[misc]
        return books

    async def release_many(self, holds: Sequence[Hold]) -> dict[UUID, int]:
        """Release several holds in two round trips (their books, then the releases);
        returns the new availability levels."""
        levels: dict[UUID, int] = {}
        pending = list(holds)
        for _ in range(3):
            if not pending:
                return levels
            async with self.redis.pipeline(transaction=False) as pipe:
                for hold in pending:
                    pipe.hkeys(keys.hold(hold.order_id, hold.token))
                books = await pipe.execute()
            replies = await self.scripts.run_many(
                "stock_finish",
                [_finish_call(h, "released", b) for h, b in zip(pending, books, strict=True)],
            )
            retry = []
            for hold, reply in zip(pending, replies, strict=True):
                if reply[0] == "UNDECLARED":
                    retry.append(hold)
                else:
                    levels.update(_finish_result(reply).levels)
            pending = retry
        raise RuntimeError(f"the books of {len(pending)} holds kept changing")

    async def holds(self, older_than_ms: int | None = None) -> list[Hold]:
        """Live holds (optionally only those made before a time, epoch ms)."""
        upper = "+inf" if older_than_ms is None else older_than_ms
        members = await self.redis.zrangebyscore(keys.INDEX, "-inf", upper)
        return [Hold.parse(m) for m in members]

    async def holds_of(self, order_id: UUID) -> list[Hold]:
        """The live holds of one order (normally at most one)."""
        found = [h async for h in self._scan_index(f"{order_id}:*")]
        return found

    async def _scan_index(self, pattern: str) -> AsyncIterator[Hold]:
        async for member, _ in self.redis.zscan_iter(keys.INDEX, match=pattern):
            yield Hold.parse(member)

    async def held_units(self) -> int:
        """Units held by all live holds (for metrics)."""
        holds = await self.holds()
        if not holds:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for hold in holds:
                pipe.hvals(keys.hold(hold.order_id, hold.token))
            values = await pipe.execute()
        return sum(int(v) for row in values for v in row)

    # ------------------------------------------------------------ reconcile

    async def reconcile(
        self, book_ids: Sequence[UUID] | None = None, *, dry_run: bool = False
    ) -> ReconcileReport:
        """Make counters and holds agree with PostgreSQL, exactly, online.

        With `book_ids`, only those books' counters are rebuilt and only holds of orders
        touching them are examined; every hold it ends gives its units back to the
        counters outside the scope too, so nothing leaks. Holds made after the snapshot,
        and orphans younger than the grace period (a late payment in flight), are left
        alone. Lost holds of orders awaiting payment are recreated.

        With `dry_run`, the same report and nothing changed (the script skips its writes).
        """
        listed = list({h.order_id for h in await self.holds()})
        now = time.time()
        cutoff = int(now * 1000) - self.orphan_grace_ms
        recent = datetime.fromtimestamp(now - self.orphan_grace_ms / 1000, UTC)
        async with self.sessionmaker() as session, session.begin():
            snap = await repo.snapshot(session, book_ids, listed, recent)
            if book_ids is not None and not snap.books:
                return ReconcileReport({})
            await faults.gate("reconcile:after-snapshot")
            raw = await self.scripts.run(
                "stock_reconcile",
                [keys.INDEX],
                [
                    keys.PREFIX,
                    keys.ENDED_TTL_SECONDS,
                    now_ms(),
                    cutoff,
                    json.dumps(snap.as_json(), separators=(",", ":")),
                    "1" if dry_run else "0",
                ],
            )
        report = _reconcile_report(raw, frozenset(UUID(b) for b in snap.restocked))
        if dry_run:
            return report
        # A counter that was missing is set up (a new book, a fresh or emptied Redis): one
        # summary line. A counter that was wrong, or a hold repaired, is drift: named.
        created = [b for b, (old, _) in report.corrected.items() if old is None]
        wrong = {b: c for b, c in report.corrected.items() if c[0] is not None}
        if created:
            log.info("stock_counters_created", books=len(created))
        if wrong or report.repaired:
            log.warning(
                "stock_reconciled",
                corrected={str(b): f"{o}->{n}" for b, (o, n) in wrong.items()},
                repaired=[f"{o}:{t}:{a}" for o, t, a in report.repaired],
            )
        return report
