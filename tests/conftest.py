"""Fixtures shared by the whole suite. Every database test runs on PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.db import BACKENDS, database_at
from walletflow.db.engine import create_engine, dispose
from walletflow.ledger.service import Ledger

pytest_plugins = ["tests.services"]


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A migrated, empty database of each backend, shared by the session's tests."""
    async with database_at("head", request.param, tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # Each PostgreSQL engine may also open as many hot-path connections (walletflow.db.hotpath):
    # keep the session well under the server's 100 connections.
    engine = create_engine(database_url, pool_size=10) if "postgresql" in database_url else create_engine(database_url)
    yield engine
    await dispose(engine)


@pytest.fixture
def ledger(engine: AsyncEngine) -> Ledger:
    return Ledger(engine)


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


def unique_code(prefix: str = "T") -> str:
    """An asset code no other test uses (tests share one database and never clean it)."""
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


@pytest_asyncio.fixture(loop_scope="session")
async def usd(ledger: Ledger) -> str:
    """A fresh fiat asset (scale 2) for this test."""
    code = unique_code("U")
    await ledger.create_asset(code, "Test dollars", 2, "fiat")
    return code


@pytest_asyncio.fixture(loop_scope="session")
async def customer(ledger: Ledger) -> uuid.UUID:
    return (await ledger.create_customer(f"cust-{uuid.uuid4().hex}")).id
