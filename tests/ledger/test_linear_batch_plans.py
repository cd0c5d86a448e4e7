"""``wf_optimistic_ingest`` plans a batch in one statement of chained CTEs, and PostgreSQL cannot
estimate their sizes. When its guesses go low (they did as ``usage_events`` grew), it joined the
batch's steps with nested loops: every debit against every wallet's grants, every event against
every debit. Migration 0026 switches nested loops off for that statement, except for the key
lookups that need them; since 0027 ``wf_ingest`` runs the same statement under its locks.

The test makes the planner guess one row for the batch (``jsonb_to_recordset``'s ``prorows``, in a
database of its own), runs batches past the point where PostgreSQL switches to a generic plan, and
reads every plan of the statement (``auto_explain``, sent to the client as notices): no join may
compare rows with a filter (a nested loop between two steps), and the results must be right.
PostgreSQL only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.db import private_postgres
from walletflow.ledger.service import Ledger

pytestmark = pytest.mark.asyncio(loop_scope="session")
CUSTOMERS, EVENTS, BATCHES = 20, 200, 7  # plpgsql plans generically from the 6th call on


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    async with private_postgres() as engine:
        yield engine


@pytest.mark.parametrize("function", ["wf_optimistic_ingest", "wf_ingest"])
async def test_the_planning_statement_never_joins_its_steps_with_nested_loops(pg_engine: AsyncEngine, function: str) -> None:
    """Both batch functions: ``wf_ingest`` locks first, then runs the same statement (0027)."""
    ledger, asset = Ledger(pg_engine), unique_code("N")
    await ledger.create_asset(asset, "Plan credits", 0, "custom")
    customers = []
    for _ in range(CUSTOMERS):
        customer = (await ledger.create_customer(f"plan-{uuid.uuid4().hex}")).id
        await ledger.credit(customer, asset, 1_000_000, f"c-{uuid.uuid4()}")
        customers.append(customer)

    url = make_url(pg_engine.url.render_as_string(hide_password=False)).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    notices: list[str] = []
    conn.add_log_listener(lambda _conn, message: notices.append(message.message))
    try:
        # This database's catalog only: the planner now guesses one row for every batch.
        await conn.execute("UPDATE pg_proc SET prorows = 1 WHERE proname = 'jsonb_to_recordset'")
        await conn.execute("LOAD 'auto_explain'")
        for setting, value in (("log_min_duration", "0"), ("log_nested_statements", "on"), ("log_analyze", "on"),
                               ("log_timing", "off"), ("log_level", "notice")):
            await conn.execute(f"SET auto_explain.{setting} = '{value}'")

        debited = 0
        for batch in range(BATCHES):
            now = dt.datetime.now(dt.UTC)
            payload = orjson.dumps([
                {"idx": i, "customer_id": str(customers[i % CUSTOMERS]), "event_id": f"plan-{function}-{batch}-{i}",
                 "event_type": "plan.tokens", "occurred_at": now, "asset": asset, "amount": 1 + i % 7,
                 "product_code": None, "version": None, "data": {}, "costs": None}
                for i in range(EVENTS)]).decode()
            rows = await conn.fetch(
                f"SELECT idx, outcome, amount FROM {function}($1::text::jsonb, $2) ORDER BY idx", payload, now)
            assert [(r["idx"], r["outcome"], r["amount"]) for r in rows] == [
                (i, "debited", 1 + i % 7) for i in range(EVENTS)]
            debited += sum(r["amount"] for r in rows)
    finally:
        await conn.close()

    plans = [n for n in notices if "WITH RECURSIVE ev AS" in n]
    assert len(plans) == BATCHES
    for plan in plans:
        assert "Join Filter" not in plan, plan
        assert "Nested Loop Left Join" not in plan, plan
    balances = [(await ledger.balance(c, asset)).posted for c in customers]
    assert sum(balances) == CUSTOMERS * 1_000_000 - debited
    assert (await ledger.audit()).ok
