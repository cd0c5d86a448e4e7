"""The event outbox: one row per business fact, written inside the caller's transaction."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import ValidationError
from walletflow.webhooks.outbox import emit, outbound_events


async def _count(engine: AsyncEngine, key: str) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(outbound_events).where(outbound_events.c.idempotency_key == key)
        return int((await conn.execute(query)).scalar_one())


async def test_same_key_is_recorded_once(engine: AsyncEngine, customer: uuid.UUID) -> None:
    key = f"balance.low:{uuid.uuid4()}"
    async with engine.begin() as conn:
        assert await emit(conn, "balance.low", {"available": 10}, key, customer_id=customer)
    async with engine.begin() as conn:
        assert not await emit(conn, "balance.low", {"available": 5}, key, customer_id=customer)
    assert await _count(engine, key) == 1
    async with engine.connect() as conn:
        data = (await conn.execute(select(outbound_events.c.data).where(outbound_events.c.idempotency_key == key))).scalar_one()
    assert data == {"available": 10}


async def test_event_rolls_back_with_its_transaction(engine: AsyncEngine) -> None:
    key = f"grant.expired:{uuid.uuid4()}"
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await emit(conn, "grant.expired", {"grant_id": "g"}, key)
            raise RuntimeError("the change this event reports failed")
    assert await _count(engine, key) == 0


async def test_unknown_event_type_is_refused(engine: AsyncEngine) -> None:
    key = f"nope:{uuid.uuid4()}"
    async with engine.begin() as conn:
        with pytest.raises(ValidationError):
            await emit(conn, "balance.lowish", {}, key)
    assert await _count(engine, key) == 0
