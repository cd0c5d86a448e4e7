"""Group commit for PostgreSQL debits: the debits that arrive while others are being written go
to the database together, as one ``wf_debit_many`` statement (migration 0018) and one commit.

Why: a debit holds its wallet's row lock until its commit is on disk, so one hot wallet takes
one debit per (server work + WAL flush) however many clients wait. Posting the waiting debits
together takes that lock, and pays that flush, once per group. Nobody waits for a timer: a debit
that finds a free slot goes at once (a group of one at low load); the group grows only while
earlier groups are in flight.

Each debit still gets its own result, exactly as ``wf_debit`` would give it (the same rules run
per debit in the function). When a group's statement fails as a whole (a concurrent request
with the same idempotency key, a lost connection, a deadlock with some other writer), every
debit of it answers ``None``: the caller then runs that debit alone through ``wf_debit``, which
settles each case as before (a replay, a typed error, or the database error itself).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.db.hotpath import HotPath, hot_path

log = logging.getLogger(__name__)

#: At most this many debits per statement; one group's locks and results stay small.
MAX_GROUP = 64
#: Groups written at the same time. Two keep the database busy: while one group commits, the
#: next is already waiting at the lock (or working on other wallets).
MAX_IN_FLIGHT = 2

Clock = Callable[[], dt.datetime]


@dataclass
class PendingDebit:
    customer_id: uuid.UUID
    asset: str
    amount: int
    key: str
    digest: str
    kind: str
    counter: str
    metadata: dict[str, Any]
    tx_id: uuid.UUID
    done: asyncio.Future[asyncpg.Record | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def as_json(self, idx: int) -> dict[str, Any]:
        return {
            "idx": idx, "customer_id": str(self.customer_id), "asset": self.asset, "amount": self.amount,
            "key": self.key, "hash": self.digest, "kind": self.kind, "counter": self.counter,
            "metadata": self.metadata, "tx_id": str(self.tx_id),
        }


class DebitBatcher:
    def __init__(self, hot: HotPath, clock: Clock, max_group: int = MAX_GROUP, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._hot = hot
        self._clock = clock
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        self._queue: list[PendingDebit] = []
        self._in_flight = 0
        self._writers: set[asyncio.Task[None]] = set()
        #: The most debits one statement has carried (for tests and the curious).
        self.largest_group = 0

    async def debit(self, pending: PendingDebit) -> asyncpg.Record | None:
        """The debit's ``wf_debit``-shaped row, or ``None``: run it alone."""
        if not self._queue and self._in_flight < self._max_in_flight:
            # Nobody is waiting: write it at once from the caller's own task (no hand-off).
            self._in_flight += 1
            try:
                return (await self._write([pending]))[0]
            finally:
                self._in_flight -= 1
                self._start_writers()
        self._queue.append(pending)
        self._start_writers()
        # Shielded: a cancelled caller must not cancel the group it shares with others.
        return await asyncio.shield(pending.done)

    def _start_writers(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            self._in_flight += 1
            writer = asyncio.get_running_loop().create_task(self._write_queue())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)

    def _next_group(self) -> list[PendingDebit]:
        """Up to ``max_group`` queued debits in arrival order, never two with one key (the
        function looks keys up before writing, so the second would fail the whole group)."""
        group: list[PendingDebit] = []
        keys: set[str] = set()
        rest: list[PendingDebit] = []
        for pending in self._queue:
            if len(group) < self._max_group and pending.key not in keys:
                group.append(pending)
                keys.add(pending.key)
            else:
                rest.append(pending)
        self._queue = rest
        return group

    async def _write_queue(self) -> None:
        try:
            while self._queue:
                group = self._next_group()
                try:
                    rows = await self._write(group)
                except BaseException:  # cancelled (the loop is closing): nobody may wait forever
                    for pending in group + self._queue:
                        _answer(pending, None)
                    self._queue = []
                    raise
                for pending, row in zip(group, rows, strict=True):
                    _answer(pending, row)
        finally:
            self._in_flight -= 1

    async def _write(self, group: list[PendingDebit]) -> list[asyncpg.Record | None]:
        """Each debit's row, in the group's order; all ``None`` when the statement failed."""
        self.largest_group = max(self.largest_group, len(group))
        try:
            rows = await self._hot.fetch(
                "SELECT idx, outcome, transaction_id, draws, available FROM wf_debit_many($1, $2)",
                [p.as_json(i) for i, p in enumerate(group)], self._clock(),
            )
        except Exception as exc:  # noqa: BLE001 - each debit is retried alone, which reports it
            log.info("debit group of %d failed (%s); running each alone", len(group), type(exc).__name__)
            return [None] * len(group)
        by_idx = {row["idx"]: row for row in rows}
        return [by_idx.get(i) for i in range(len(group))]


def _answer(pending: PendingDebit, row: asyncpg.Record | None) -> None:
    if not pending.done.done():
        pending.done.set_result(row)


def debit_batcher(engine: AsyncEngine, clock: Clock) -> DebitBatcher:
    """The batcher of an engine (PostgreSQL only) and a clock (a group is written with one "now"
    read from its ledger's clock); kept on the engine's hot-path pool."""
    hot = hot_path(engine)
    if clock not in hot.batchers:
        hot.batchers[clock] = DebitBatcher(hot, clock)
    batcher: DebitBatcher = hot.batchers[clock]
    return batcher
