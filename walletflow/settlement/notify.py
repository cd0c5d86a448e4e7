"""``hold.expired`` and ``grant.expired`` events, recorded after the fact and exactly once.

The ledger expires holds (in a sweep, or lazily when a wallet next needs the money) and grants
in its own transactions, with no hook for the caller. So instead of riding along with each
expiry, these functions look at what expired since a point in time and record one event per
expiry, keyed on it (``hold.expired:{hold_id}``, ``grant.expired:{expiry transaction key}``): a
crash between an expiry and its event is repaired by the next run, and a second run records
nothing twice. Bounded: at most ``limit`` rows per call, in write order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.ledger import repository as ledger_repo
from walletflow.webhooks.outbox import emit

h, a, t, e = ledger_repo.holds, ledger_repo.accounts, ledger_repo.transactions, ledger_repo.entries


async def notify_expired_holds(engine: AsyncEngine, since: dt.datetime, limit: int = 5000) -> int:
    """Record ``hold.expired`` for every hold that expired at or after ``since``; returns how many
    events this call recorded (0 for those already there)."""
    query = (
        select(h.c.id, h.c.amount, h.c.expires_at, h.c.resolved_at, a.c.customer_id, a.c.asset)
        .join(a, a.c.id == h.c.account_id)
        .where(h.c.status == "expired", h.c.resolved_at >= since)
        .order_by(h.c.resolved_at, h.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()

    async def work(conn: AsyncConnection) -> int:
        recorded = 0
        for row in rows:
            data: dict[str, Any] = {
                "hold_id": str(row.id), "customer_id": str(row.customer_id), "asset": row.asset,
                "amount": row.amount, "expires_at": row.expires_at.isoformat(),
            }
            recorded += await emit(conn, "hold.expired", data, f"hold.expired:{row.id}",
                                   customer_id=row.customer_id, now=row.resolved_at)
        return recorded

    return await in_transaction(engine, work) if rows else 0


async def notify_expired_grants(engine: AsyncEngine, since: dt.datetime, limit: int = 5000) -> int:
    """Record ``grant.expired`` for every grant expiry posted at or after ``since`` (one per
    posting: a remainder kept back for a pending hold expires, and is reported, later)."""
    query = (
        select(t.c.id, t.c.idempotency_key, t.c.metadata, t.c.created_at, a.c.customer_id, e.c.asset, e.c.amount)
        .join(e, e.c.transaction_id == t.c.id)
        .join(a, a.c.id == e.c.account_id)
        .where(t.c.kind == "grant_expiry", t.c.created_at >= since, a.c.customer_id.is_not(None))
        .order_by(t.c.created_at, t.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()

    async def work(conn: AsyncConnection) -> int:
        recorded = 0
        for row in rows:
            data: dict[str, Any] = {
                "grant_id": (row.metadata or {}).get("grant_id"), "customer_id": str(row.customer_id),
                "asset": row.asset, "amount": -row.amount, "transaction_id": str(row.id),
                "expired_at": row.created_at.isoformat(),
            }
            recorded += await emit(conn, "grant.expired", data, f"grant.expired:{row.idempotency_key}",
                                   customer_id=row.customer_id, now=row.created_at)
        return recorded

    return await in_transaction(engine, work) if rows else 0
