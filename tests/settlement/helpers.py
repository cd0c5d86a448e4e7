"""Shared helpers: a settlement period of its own for each test, and ledger writes at its time.

Tests share one database per backend, so each test settles a period nobody else writes in: a
random hour (or day) long ago, with a ledger whose clock sits inside it.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.service import Ledger
from walletflow.settlement.periods import Period
from walletflow.usage.repository import usage_events
from walletflow.webhooks.outbox import outbound_events


def private_hour() -> Period:
    """A random hour in 2019-2020 (period keys are unique per test, almost surely)."""
    start = dt.datetime(2019, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=random.randrange(2 * 365 * 24))
    return Period(start, "hour")


def ledger_at(engine: AsyncEngine, at: dt.datetime) -> Ledger:
    return Ledger(engine, clock=lambda: at)


async def insert_event(
    engine: AsyncEngine, customer_id: uuid.UUID, asset: str, amount: int, at: dt.datetime,
    transaction_id: uuid.UUID | None = None, event_id: str | None = None,
) -> str:
    """A usage event row written directly (bypassing the usage service), as a leak would be."""
    event_id = event_id or f"evt-{uuid.uuid4().hex}"
    async with engine.begin() as conn:
        await conn.execute(insert(usage_events).values(  # type: ignore[arg-type]
            customer_id=customer_id, event_id=event_id, event_type="llm.tokens", occurred_at=at,
            received_at=at, product_code=None, version=None, asset=asset, amount=amount,
            transaction_id=transaction_id, data={},
        ))
    return event_id


async def shift_balance(engine: AsyncEngine, account_id: uuid.UUID, posted: int = 0, held: int = 0) -> None:
    """Corrupt (or restore) a wallet's stored balance: only a test ever does this."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE accounts SET posted = posted + :p, held = held + :h WHERE id = :id"),
            {"p": posted, "h": held, "id": account_id.hex if engine.dialect.name == "sqlite" else account_id},
        )


async def events_with_key(engine: AsyncEngine, key: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(
            select(outbound_events).where(outbound_events.c.idempotency_key == key)
        )).all())


async def breakage_of(engine: AsyncEngine, asset: str) -> int:
    a, e = ledger_repo.accounts, ledger_repo.entries
    async with engine.connect() as conn:
        total = (await conn.execute(
            select(func.coalesce(func.sum(e.c.amount), 0)).join(a, a.c.id == e.c.account_id)
            .where(a.c.system_code == "breakage", a.c.asset == asset)
        )).scalar_one()
    return int(total)
