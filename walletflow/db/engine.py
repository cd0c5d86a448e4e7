"""Engine construction and the transaction boundary used by every write.

PostgreSQL runs at READ COMMITTED: each statement sees rows committed before it started, so
code that locks a wallet row first and reads its grants in a *later* statement always sees
fresh grants (the stale-snapshot bug OpenMeter shipped comes from reading before locking).

SQLite has one writer at a time. Every transaction starts with ``BEGIN IMMEDIATE`` so a writer
takes the file lock up front (instead of upgrading a read lock later and failing with
"database is locked"), waits ``busy_timeout`` for it, and is retried here if it still loses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from walletflow.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bounded retries for lock timeouts (SQLite) and deadlocks / serialization failures (PostgreSQL).
MAX_TX_ATTEMPTS = 8
_PG_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_sqlite(engine: AsyncEngine | AsyncConnection) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str | None = None, settings: Settings | None = None, **kwargs: Any) -> AsyncEngine:
    """Build an async engine for ``url`` (default: the configured ``database_url``)."""
    settings = settings or get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings.sqlite_busy_timeout_s, **kwargs)
    kwargs.setdefault("pool_size", settings.database_pool_size)
    kwargs.setdefault("max_overflow", 0)
    return create_async_engine(url, **kwargs)


def _sqlite_engine(url: str, busy_timeout_s: float, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": busy_timeout_s}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN out of the driver's hands so we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _is_retryable(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return sqlstate in _PG_RETRYABLE_SQLSTATES


async def in_transaction(engine: AsyncEngine, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``fn`` in one database transaction, committing on success.

    The transaction is the unit of work: ``fn`` must not commit. Lock timeouts and deadlocks are
    retried from scratch a bounded number of times, so ``fn`` must be safe to re-run (every
    ledger operation is, through its idempotency key).
    """
    for attempt in range(1, MAX_TX_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                return await fn(conn)
        except DBAPIError as exc:
            if not _is_retryable(exc) or attempt == MAX_TX_ATTEMPTS:
                raise
            log.warning("retrying transaction after %s (attempt %d)", type(exc.orig).__name__, attempt)
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


async def dispose(engine: AsyncEngine) -> None:
    """Close everything the engine holds: its pool and the PostgreSQL hot-path pool."""
    from walletflow.db.hotpath import close_hot_path

    await close_hot_path(engine)
    await engine.dispose()


async def in_transaction_after_races(engine: AsyncEngine, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """:func:`in_transaction`, re-run (at most twice more) when it loses a race on a unique key:
    ``fn`` then finds the winner's row instead of inserting its own."""
    for attempt in range(3):
        try:
            return await in_transaction(engine, fn)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
