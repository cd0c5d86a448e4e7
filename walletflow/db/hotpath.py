"""A raw asyncpg pool for the PostgreSQL hot paths (``wf_debit``, ``wf_authorize``, ``wf_ingest``).

Each hot-path call is one statement that is its own transaction, so it needs nothing SQLAlchemy
adds (unit of work, typing, events) while SQLAlchemy's per-call overhead was several times the
driver's own (measured with bench/ledger.py). One pool per engine, created on first use, closed
by :func:`walletflow.db.engine.dispose`.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

_pools: weakref.WeakKeyDictionary[Any, HotPath] = weakref.WeakKeyDictionary()


class HotPath:
    def __init__(self, engine: AsyncEngine) -> None:
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._max_size = max(2, engine.pool.size())  # type: ignore[attr-defined]
        self._pool: asyncpg.Pool | None = None
        # Without it, every caller that arrives before the first pool exists makes its own.
        self._creating = asyncio.Lock()
        #: Group writers on this pool, per statement and ledger clock (walletflow.ledger.batching);
        #: they live and die with it, so a disposed engine leaves none writing to a closed pool.
        self.batchers: dict[Any, Any] = {}

    async def _connection_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._creating:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._max_size, init=_init_connection,
                        reset=_keep_session,
                    )
        return self._pool

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record:
        pool = await self._connection_pool()
        async with pool.acquire() as conn:
            try:
                return await conn.fetchrow(query, *args)
            except BaseException as exc:
                _discard_unless_answered(conn, exc)
                raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self._connection_pool()
        async with pool.acquire() as conn:
            try:
                return await conn.fetch(query, *args)
            except BaseException as exc:
                _discard_unless_answered(conn, exc)
                raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _discard_unless_answered(conn: asyncpg.Connection, exc: BaseException) -> None:
    """A server error (a constraint, a lock timeout) leaves the connection usable. Anything else
    (lost mid-call by a database restart, or the call cancelled) leaves it in an unknown state:
    with no reset query on release (below), the pool would hand it out again, so close it here
    and let the pool open a fresh one."""
    if not isinstance(exc, asyncpg.PostgresError):
        conn.terminate()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release (a round trip per call): hot-path statements never
    change session state (no SET, LISTEN, advisory locks or open cursors) to undo."""


def hot_path(engine: AsyncEngine) -> HotPath:
    """The engine's hot-path pool (PostgreSQL engines only)."""
    key = engine.sync_engine
    if key not in _pools:
        _pools[key] = HotPath(engine)
    return _pools[key]


async def close_hot_path(engine: AsyncEngine) -> None:
    pool = _pools.pop(engine.sync_engine, None)
    if pool is not None:
        await pool.close()


def is_unique_violation_on_key(exc: BaseException) -> bool:
    """A lost race on an idempotency key (retry: the rerun replays the winner)."""
    return isinstance(exc, asyncpg.UniqueViolationError) and "idempotency_key" in (exc.constraint_name or "")
