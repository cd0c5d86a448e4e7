"""The command line against a real database file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from walletflow.cli import app
from walletflow.db.engine import create_engine
from walletflow.ledger.service import Ledger
from walletflow.settings import get_settings


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("WALLETFLOW_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _seed_and_break(url: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        ledger = Ledger(engine)
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
        customer = await ledger.create_customer("acme")
        await ledger.credit(customer.id, "USD", 500, "seed")
        async with engine.begin() as conn:  # a balance that disagrees with its entries
            await conn.execute(text("UPDATE accounts SET posted = posted + 1 WHERE customer_id IS NOT NULL"))
        await engine.dispose()

    asyncio.run(run())


def test_db_upgrade_then_audit_finds_a_tampered_balance(sqlite_env: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    clean = runner.invoke(app, ["ledger", "audit"])
    assert clean.exit_code == 0 and "ledger ok" in clean.output

    _seed_and_break(sqlite_env)
    broken = runner.invoke(app, ["ledger", "audit", "--json"])
    assert broken.exit_code == 1
    report = json.loads(broken.output)
    assert report["ok"] is False
    assert len(report["posted_mismatches"]) == 1
    assert report["posted_mismatches"][0][1:] == ["501", "500"]
