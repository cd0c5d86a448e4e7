"""The hot-path migrations that change only PostgreSQL objects go up and back down to exactly what
the revision before left; on SQLite they change nothing.

- 0024: time-ordered transaction ids in the usage batch functions, wallets locked with a join;
- 0025: ``fillfactor`` on the hot-updated tables, no bitmap scans in the usage batch functions;
- 0026: no nested loops between the steps of ``wf_optimistic_ingest``'s planning statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import text

from tests.db import BACKENDS, create_postgres_database, drop_postgres_database, sqlite_url
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import alembic_config, upgrade_async

FUNCTIONS = ("wf_ingest", "wf_optimistic_ingest", "wf_lock_wallets")


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def url_at_0023(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    url = await create_postgres_database() if request.param == "postgresql" else sqlite_url(tmp_path)
    try:
        await upgrade_async(url, "0023")
        yield url
    finally:
        if request.param == "postgresql":
            await drop_postgres_database(url)


async def _state(url: str) -> tuple[str, dict[str, str]]:
    """The revision, and on PostgreSQL the definitions of the functions these revisions touch (with
    their settings) and the storage options of the hot tables."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
            if engine.dialect.name != "postgresql":
                return revision, {}
            rows = await conn.execute(text(
                "SELECT proname, pg_get_functiondef(oid) FROM pg_proc "
                "WHERE proname IN ('wf_ingest', 'wf_optimistic_ingest', 'wf_lock_wallets', 'wf_time_ordered_id_prefix')"
            ))
            state = {name: definition for name, definition in rows}
            tables = await conn.execute(text(
                "SELECT relname, coalesce(array_to_string(reloptions, ','), '') FROM pg_class "
                "WHERE relname IN ('accounts', 'credit_grants') AND relkind = 'r'"
            ))
            return revision, state | {f"table {name}": options for name, options in tables}
    finally:
        await dispose(engine)


async def test_0024_round_trip(url_at_0023: str) -> None:
    revision, before = await _state(url_at_0023)
    assert revision == "0023"

    await upgrade_async(url_at_0023, "0024")
    revision, after = await _state(url_at_0023)
    assert revision == "0024"
    if before:
        assert set(after) == {*FUNCTIONS, "wf_time_ordered_id_prefix", "table accounts", "table credit_grants"}
        for name in ("wf_ingest", "wf_optimistic_ingest"):
            assert "gen_random_uuid() AS tx_id" in before[name]
            assert "gen_random_uuid() AS tx_id" not in after[name]
            assert "wf_time_ordered_id_prefix()" in after[name]
        for name in ("wf_optimistic_ingest", "wf_lock_wallets"):
            assert "WHERE a.id = ANY(" in before[name] and "WHERE a.id = ANY(" not in after[name]
            assert "JOIN accounts a ON a.id = w.id" in after[name]

    await asyncio.to_thread(command.downgrade, alembic_config(url_at_0023), "0023")
    assert await _state(url_at_0023) == ("0023", before)

    await upgrade_async(url_at_0023, "0024")
    assert await _state(url_at_0023) == ("0024", after)


async def test_0025_round_trip(url_at_0023: str) -> None:
    await upgrade_async(url_at_0023, "0024")
    revision, before = await _state(url_at_0023)

    await upgrade_async(url_at_0023, "0025")
    revision, after = await _state(url_at_0023)
    assert revision == "0025"
    if before:
        assert (before["table accounts"], before["table credit_grants"]) == ("", "")
        assert (after["table accounts"], after["table credit_grants"]) == ("fillfactor=50", "fillfactor=50")
        for name in ("wf_ingest", "wf_optimistic_ingest"):
            assert "enable_bitmapscan" not in before[name]
            assert "SET enable_bitmapscan TO 'off'" in after[name]
            assert after[name].replace(" SET enable_bitmapscan TO 'off'\n", "") == before[name]
        assert after["wf_lock_wallets"] == before["wf_lock_wallets"]

    await asyncio.to_thread(command.downgrade, alembic_config(url_at_0023), "0024")
    assert await _state(url_at_0023) == ("0024", before)


async def test_0026_round_trip(url_at_0023: str) -> None:
    await upgrade_async(url_at_0023, "0025")
    revision, before = await _state(url_at_0023)

    await upgrade_async(url_at_0023, "0026")
    revision, after = await _state(url_at_0023)
    assert revision == "0026"
    if before:
        changed = {name for name in after if after[name] != before[name]}
        assert changed == {"wf_optimistic_ingest"}
        new = after["wf_optimistic_ingest"]
        for setting in ("enable_bitmapscan TO 'off'", "enable_nestloop TO 'on'", "jit TO 'off'"):
            assert f"SET {setting}" in new
        assert new.count("set_config('enable_nestloop'") == 2
        assert "JOIN usage_events u ON" in before["wf_optimistic_ingest"] and "JOIN usage_events u ON" not in new

    await asyncio.to_thread(command.downgrade, alembic_config(url_at_0023), "0025")
    assert await _state(url_at_0023) == ("0025", before)
