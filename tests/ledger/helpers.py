"""Small helpers for ledger tests."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.ledger import repository as repo


class FakeClock:
    """A clock tests move by hand, so expiry is exact and instant."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


async def count_rows(engine: AsyncEngine) -> tuple[int, int, int, int]:
    """Transactions, entries, grants and holds in the database: to prove a failure wrote nothing."""
    async with engine.connect() as conn:
        counts = []
        for table in (repo.transactions, repo.entries, repo.grants, repo.holds):
            counts.append((await conn.execute(select(func.count()).select_from(table))).scalar_one())
    return tuple(counts)  # type: ignore[return-value]


async def entries_of(engine: AsyncEngine, tx_id: uuid.UUID) -> list[tuple[uuid.UUID, int, uuid.UUID | None]]:
    async with engine.connect() as conn:
        rows = await repo.list_entries_for_transaction(conn, tx_id)
    return [(r.account_id, r.amount, r.grant_id) for r in rows]
