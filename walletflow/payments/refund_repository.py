"""SQL for refunds of credited top-ups and for disputes. The caller owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import Row, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.ledger.repository import _insert_ignore
from walletflow.observability.metrics import REFUNDS
from walletflow.payments.models import TopUpDispute, TopUpRefund

refunds = cast(Table, TopUpRefund.__table__)
disputes = cast(Table, TopUpDispute.__table__)


async def get(conn: AsyncConnection, refund_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()


async def list_for_top_up(conn: AsyncConnection, top_up_id: uuid.UUID) -> list[Row[Any]]:
    query = select(refunds).where(refunds.c.top_up_id == top_up_id).order_by(refunds.c.created_at, refunds.c.id)
    return list((await conn.execute(query)).all())


async def committed_amount(conn: AsyncConnection, top_up_id: uuid.UUID) -> int:
    """What refunds of this top-up have taken or may still take (all but the failed ones)."""
    query = select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
        refunds.c.top_up_id == top_up_id, refunds.c.status != "failed"
    )
    return int((await conn.execute(query)).scalar_one())


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(refunds.insert().values(**values))
    REFUNDS.labels("requested").inc()


async def mark_succeeded(conn: AsyncConnection, refund_id: uuid.UUID, stripe_refund_id: str, now: dt.datetime) -> bool:
    result = await conn.execute(
        update(refunds)
        .where(refunds.c.id == refund_id, refunds.c.status == "pending")
        .values(status="succeeded", stripe_refund_id=stripe_refund_id, updated_at=now)
    )
    if result.rowcount == 1:
        REFUNDS.labels("succeeded").inc()
    return result.rowcount == 1


async def mark_failed(
    conn: AsyncConnection, refund_id: uuid.UUID, reversal_tx: uuid.UUID | None, reason: str, now: dt.datetime
) -> bool:
    result = await conn.execute(
        update(refunds)
        .where(refunds.c.id == refund_id, refunds.c.status == "pending")
        .values(status="failed", reversal_transaction_id=reversal_tx, failure_reason=reason[:255], updated_at=now)
    )
    if result.rowcount == 1:
        REFUNDS.labels("failed").inc()
    return result.rowcount == 1


async def get_dispute(conn: AsyncConnection, dispute_id: str) -> Row[Any] | None:
    return (await conn.execute(select(disputes).where(disputes.c.id == dispute_id))).first()


async def insert_dispute(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    result = await conn.execute(_insert_ignore(conn, disputes).values(**values))
    return result.rowcount == 1


async def disputed_amount(conn: AsyncConnection, top_up_id: uuid.UUID) -> int:
    query = select(func.coalesce(func.sum(disputes.c.amount), 0)).where(disputes.c.top_up_id == top_up_id)
    return int((await conn.execute(query)).scalar_one())


async def list_pending_before(conn: AsyncConnection, before: dt.datetime, limit: int) -> list[Row[Any]]:
    query = (
        select(refunds).where(refunds.c.status == "pending", refunds.c.created_at < before)
        .order_by(refunds.c.created_at).limit(limit)
    )
    return list((await conn.execute(query)).all())
