"""Migration 0023 folds ``usage_costs`` into ``usage_events.costs`` and back, on both databases,
without losing or reordering a cost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import Uuid, bindparam, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.db import BACKENDS, database_at
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import alembic_config, upgrade_async
from walletflow.usage.repository import usage_events

#: (event row id, vendor, asset, amount), in usage_costs id order
COSTS = [(1, "openai", "USD", 70), (1, "pinecone", "USD", 5), (3, "anthropic", "EUR", 12)]


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def url_at_0022(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_at("0022", request.param, tmp_path) as url:
        yield url


async def _columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns(table)} if inspect(c).has_table(table) else set()
        )


async def test_costs_move_onto_their_events_and_back(url_at_0022: str) -> None:
    engine = create_engine(url_at_0022)
    try:
        customer = uuid.uuid4()
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO customers (id, external_id, metadata, status, created_at, updated_at) "
                "VALUES (:id, 'c-0023', '{}', 'active', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ).bindparams(bindparam("id", type_=Uuid())), {"id": customer})
            for row_id in (1, 2, 3):
                await conn.execute(text(
                    "INSERT INTO usage_events (id, customer_id, event_id, event_type, occurred_at, received_at, "
                    "asset, amount, data) VALUES (:id, :customer, :event_id, 'llm', CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP, 'USD', 100, '{}')"
                ).bindparams(bindparam("customer", type_=Uuid())), {"id": row_id, "customer": customer, "event_id": f"e{row_id}"})
            for event_row, vendor, asset, amount in COSTS:
                await conn.execute(text(
                    "INSERT INTO usage_costs (usage_event_id, vendor, asset, amount) VALUES (:e, :v, :a, :m)"
                ), {"e": event_row, "v": vendor, "a": asset, "m": amount})

        await upgrade_async(url_at_0022, "0023")
        assert "usage_costs" not in await _tables(engine)
        async with engine.connect() as conn:
            # the model's JSON type reads it back on both databases
            stored = dict((await conn.execute(
                usage_events.select().with_only_columns(usage_events.c.id, usage_events.c.costs)
            )).all())
        assert stored == {
            1: [{"vendor": "openai", "asset": "USD", "amount": 70}, {"vendor": "pinecone", "asset": "USD", "amount": 5}],
            2: None,
            3: [{"vendor": "anthropic", "asset": "EUR", "amount": 12}],
        }

        await asyncio.to_thread(command.downgrade, alembic_config(url_at_0022), "0022")
        assert "costs" not in await _columns(engine, "usage_events")
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT usage_event_id, vendor, asset, amount FROM usage_costs ORDER BY id"
            ))).all()
            keys = await conn.run_sync(lambda c: inspect(c).get_foreign_keys("usage_costs"))
        assert [tuple(r) for r in rows] == COSTS
        # as before 0023: checked by SQLite, dropped on PostgreSQL by 0020
        assert [k["referred_table"] for k in keys] == (["usage_events"] if "sqlite" in url_at_0022 else [])

        await upgrade_async(url_at_0022)  # and up again to head
        assert "costs" in await _columns(engine, "usage_events")
    finally:
        await dispose(engine)


async def _tables(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: inspect(c).get_table_names())
