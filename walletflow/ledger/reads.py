"""Paginated reads for the API: assets, customers and a customer's transaction history."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.ledger import repository as repo


@dataclass(frozen=True)
class CustomerTransaction:
    """One ledger transaction as a customer sees it: the signed effect on their account."""

    id: uuid.UUID
    kind: str
    asset: str
    amount: int
    created_at: dt.datetime
    idempotency_key: str
    metadata: dict[str, Any]


async def customer_transactions(
    engine: AsyncEngine, customer_id: uuid.UUID, limit: int, after: tuple[dt.datetime, uuid.UUID] | None
) -> list[CustomerTransaction]:
    """Newest first; ``after`` is the (created_at, id) of the last row of the previous page."""
    t, e, a = repo.transactions, repo.entries, repo.accounts
    query = (
        select(t.c.id, t.c.kind, e.c.asset, func.sum(e.c.amount).label("amount"), t.c.created_at,
               t.c.idempotency_key, t.c.metadata)
        .join(e, e.c.transaction_id == t.c.id)
        .join(a, a.c.id == e.c.account_id)
        .where(a.c.customer_id == customer_id)
        .group_by(t.c.id, t.c.kind, e.c.asset, t.c.created_at, t.c.idempotency_key, t.c.metadata)
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        created_at, tx_id = after
        query = query.where(or_(t.c.created_at < created_at, and_(t.c.created_at == created_at, t.c.id < tx_id)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [CustomerTransaction(r.id, r.kind, r.asset, int(r.amount), r.created_at, r.idempotency_key, r.metadata) for r in rows]


async def list_customers(
    engine: AsyncEngine, limit: int, after: tuple[dt.datetime, uuid.UUID] | None, external_id: str | None
) -> list[Any]:
    c = repo.customers
    query = select(c).order_by(c.c.created_at, c.c.id).limit(limit)
    if external_id is not None:
        query = query.where(c.c.external_id == external_id)
    if after is not None:
        created_at, customer_id = after
        query = query.where(or_(c.c.created_at > created_at, and_(c.c.created_at == created_at, c.c.id > customer_id)))
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def list_assets(engine: AsyncEngine, limit: int, after_code: str | None) -> list[Any]:
    """Assets by code; ``after_code`` is the last code of the previous page."""
    a = repo.assets
    query = select(a.c.code, a.c.name, a.c.scale, a.c.kind).order_by(a.c.code).limit(limit)
    if after_code is not None:
        query = query.where(a.c.code > after_code)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())
