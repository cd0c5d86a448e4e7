"""The hot-path migrations that change only PostgreSQL objects go up, back down to exactly what the
revision before left, and up again to the same result; on SQLite they change nothing.

- 0024: time-ordered transaction ids in the usage batch functions, wallets locked with a join;
- 0025: ``fillfactor`` on the hot-updated tables, no bitmap scans in the usage batch functions;
- 0026: no nested loops between the steps of ``wf_optimistic_ingest``'s planning statement;
- 0027: ``wf_ingest`` locks, then runs ``wf_optimistic_ingest``; ``wf_lock_wallets`` returns its ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import text

from tests.db import BACKENDS, database_at
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import alembic_config, upgrade_async

FUNCTIONS = ("wf_ingest", "wf_optimistic_ingest", "wf_lock_wallets")
#: What these revisions change, by name: the functions (their definitions, settings included)
#: and the hot tables (their storage options).
State = dict[str, str]


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def url_at_0023(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_at("0023", request.param, tmp_path) as url:
        yield url


async def _state(url: str) -> tuple[str, State]:
    """The revision, and on PostgreSQL the state these revisions change (empty on SQLite)."""
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


async def _round_trip(url: str, previous: str, revision: str) -> tuple[State, State]:
    """Up from ``previous`` to ``revision``, down and up again: the state before and after."""
    await upgrade_async(url, previous)
    before = await _state(url)
    await upgrade_async(url, revision)
    after = await _state(url)
    assert (before[0], after[0]) == (previous, revision)
    await asyncio.to_thread(command.downgrade, alembic_config(url), previous)
    assert await _state(url) == before
    await upgrade_async(url, revision)
    assert await _state(url) == after
    return before[1], after[1]


async def test_0024_round_trip(url_at_0023: str) -> None:
    before, after = await _round_trip(url_at_0023, "0023", "0024")
    if before:
        assert set(after) == {*FUNCTIONS, "wf_time_ordered_id_prefix", "table accounts", "table credit_grants"}
        for name in ("wf_ingest", "wf_optimistic_ingest"):
            assert "gen_random_uuid() AS tx_id" in before[name]
            assert "gen_random_uuid() AS tx_id" not in after[name]
            assert "wf_time_ordered_id_prefix()" in after[name]
        for name in ("wf_optimistic_ingest", "wf_lock_wallets"):
            assert "WHERE a.id = ANY(" in before[name] and "WHERE a.id = ANY(" not in after[name]
            assert "JOIN accounts a ON a.id = w.id" in after[name]


async def test_0025_round_trip(url_at_0023: str) -> None:
    before, after = await _round_trip(url_at_0023, "0024", "0025")
    if before:
        assert (before["table accounts"], before["table credit_grants"]) == ("", "")
        assert (after["table accounts"], after["table credit_grants"]) == ("fillfactor=50", "fillfactor=50")
        for name in ("wf_ingest", "wf_optimistic_ingest"):
            assert "enable_bitmapscan" not in before[name]
            assert after[name].replace(" SET enable_bitmapscan TO 'off'\n", "") == before[name]
        assert after["wf_lock_wallets"] == before["wf_lock_wallets"]


async def test_0026_round_trip(url_at_0023: str) -> None:
    before, after = await _round_trip(url_at_0023, "0025", "0026")
    if before:
        assert {name for name in after if after[name] != before[name]} == {"wf_optimistic_ingest"}
        new = after["wf_optimistic_ingest"]
        for setting in ("enable_bitmapscan TO 'off'", "enable_nestloop TO 'on'", "jit TO 'off'"):
            assert f"SET {setting}" in new
        assert new.count("set_config('enable_nestloop'") == 2
        assert "JOIN usage_events u ON" in before["wf_optimistic_ingest"] and "JOIN usage_events u ON" not in new


async def test_0027_round_trip(url_at_0023: str) -> None:
    before, after = await _round_trip(url_at_0023, "0026", "0027")
    if before:
        assert {name for name in after if after[name] != before[name]} == {"wf_ingest", "wf_lock_wallets"}
        assert "RETURNS void" in before["wf_lock_wallets"] and "RETURNS uuid[]" in after["wf_lock_wallets"]
        assert "WITH RECURSIVE ev AS" in before["wf_ingest"] and "WITH RECURSIVE ev AS" not in after["wf_ingest"]
        assert "wf_optimistic_ingest(p_events, p_now)" in after["wf_ingest"]
