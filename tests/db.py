"""Test databases: a fresh PostgreSQL database and a fresh SQLite file per test session.

A missing PostgreSQL is an error, never a skip: the suite must prove both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async

#: Server used to create the throw-away test database (trust auth in CI).
POSTGRES_ADMIN_URL = os.environ.get(
    "WALLETFLOW_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [b.strip() for b in os.environ.get("WALLETFLOW_TEST_BACKENDS", "postgresql,sqlite").split(",") if b.strip()]


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_postgres_database() -> str:
    """Create an empty database and return its SQLAlchemy URL."""
    name = f"walletflow_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'walletflow-test.db'}"


@asynccontextmanager
async def database_at(revision: str, backend: str, directory: Path | None = None) -> AsyncIterator[str]:
    """A new database of ``backend`` migrated up to ``revision`` (``"head"`` or a migration's):
    its URL. A PostgreSQL one is dropped afterwards; a SQLite one is a file in ``directory``."""
    if backend == "postgresql":
        url = await create_postgres_database()
    elif backend == "sqlite" and directory is not None:
        url = sqlite_url(directory)
    else:
        raise ValueError(f"unknown test backend {backend!r} (or a SQLite one without a directory)")
    try:
        await upgrade_async(url, revision)
        yield url
    finally:
        if backend == "postgresql":
            await drop_postgres_database(url)


@asynccontextmanager
async def private_postgres(pool_size: int = 2) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated PostgreSQL database of its own, dropped afterwards: for tests that
    leave what the shared database must not keep (an orphan entry, tables under a lock race)."""
    async with database_at("head", "postgresql") as url:
        engine = create_engine(url, pool_size=pool_size, max_overflow=0)
        try:
            yield engine
        finally:
            await dispose(engine)
