"""Migration 0020 on PostgreSQL: the hot append-only tables keep no foreign keys, so the ledger
audit (and through it the scheduled reconciliation) must find an entry that points nowhere.

Planting an orphan entry cannot be undone (entries are append-only), so this module runs on a
PostgreSQL database of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.db import private_postgres
from tests.settlement.helpers import private_hour
from walletflow.ledger.service import Ledger
from walletflow.settlement.reconcile import reconcile

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    async with private_postgres(pool_size=2) as engine:
        yield engine


async def test_the_hot_append_only_tables_have_no_foreign_keys_and_brin_time_indexes(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as conn:
        keys = {
            (row.table, row.name) for row in await conn.execute(text(
                "SELECT conrelid::regclass::text AS table, conname AS name FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid::regclass::text IN "
                "('ledger_entries', 'usage_events')"
            ))
        }
        methods = dict((await conn.execute(text(
            "SELECT i.relname, am.amname FROM pg_class i JOIN pg_am am ON am.oid = i.relam "
            "WHERE i.relname IN ('ix_ledger_transactions_created_at', 'ix_usage_events_occurred_at', "
            "'ix_usage_events_received_at')"
        ))).all())
    assert keys == set()
    assert methods == {"ix_ledger_transactions_created_at": "brin", "ix_usage_events_occurred_at": "brin",
                       "ix_usage_events_received_at": "brin"}


async def test_the_audit_and_the_reconciliation_find_an_entry_pointing_nowhere(pg_engine: AsyncEngine) -> None:
    ledger = Ledger(pg_engine)
    usd = unique_code("O")
    await ledger.create_asset(usd, "Orphan test dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"orphan-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, usd, 500, f"fund-{customer}")
    assert (await ledger.audit()).ok

    missing_tx, missing_account = uuid.uuid4(), uuid.uuid4()
    async with pg_engine.begin() as conn:
        account = (await conn.execute(
            text("SELECT id FROM accounts WHERE customer_id = :c"), {"c": customer})).scalar_one()
        # One entry whose transaction does not exist, one whose account does not exist.
        for tx, acc, amount in ((missing_tx, account, -30), (missing_tx, missing_account, 30)):
            await conn.execute(text(
                "INSERT INTO ledger_entries (transaction_id, account_id, asset, amount, created_at) "
                "VALUES (:t, :a, :s, :m, now())"), {"t": tx, "a": acc, "s": usd, "m": amount})

    audit = await ledger.audit()
    assert not audit.ok
    assert sorted((row[1], row[2], row[3], row[4]) for row in audit.orphan_entries) == sorted(
        [(missing_tx, account, usd, -30), (missing_tx, missing_account, usd, 30)]
    )
    found = await reconcile(pg_engine, private_hour(), audit, 10)
    assert (found.summary["orphan_entry"]["count"], found.summary["orphan_entry"]["amount"]) == (2, 60)
    assert {e["amount"] for e in found.examples["orphan_entry"]} == {-30, 30}
    assert {e["transaction_id"] for e in found.examples["orphan_entry"]} == {str(missing_tx)}
