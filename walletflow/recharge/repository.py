"""All auto-recharge SQL. Functions take an open connection; the caller owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, and_, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.postings import effective_overdraft
from walletflow.ledger.repository import _insert_ignore, accounts
from walletflow.payments.repository import top_ups
from walletflow.recharge.models import AutoRechargePolicy, RechargeTrigger

policies = cast(Table, AutoRechargePolicy.__table__)
triggers = cast(Table, RechargeTrigger.__table__)

IN_FLIGHT = ("initiated", "awaiting_payment", "scoring", "in_review")
#: Charges that count against the caps: money taken or possibly about to be.
COUNTS_AGAINST_CAPS = (*IN_FLIGHT, "succeeded")


async def get_policy(conn: AsyncConnection, customer_id: uuid.UUID, asset: str, *, lock: bool = False) -> Row[Any] | None:
    query = select(policies).where(policies.c.customer_id == customer_id, policies.c.asset == asset)
    if lock:
        query = query.with_for_update()  # SQLite: BEGIN IMMEDIATE already holds the write lock
    return (await conn.execute(query)).first()


async def list_policies(conn: AsyncConnection, customer_id: uuid.UUID) -> Sequence[Row[Any]]:
    query = select(policies).where(policies.c.customer_id == customer_id).order_by(policies.c.asset)
    return (await conn.execute(query)).all()


async def insert_policy(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    result = await conn.execute(_insert_ignore(conn, policies).values(**values))
    return result.rowcount == 1


async def update_policy(conn: AsyncConnection, customer_id: uuid.UUID, asset: str, **values: Any) -> None:
    await conn.execute(
        update(policies).where(policies.c.customer_id == customer_id, policies.c.asset == asset).values(**values)
    )


async def available(conn: AsyncConnection, customer_id: uuid.UUID, asset: str) -> int:
    """Available balance of the wallet (0 if it has never been used)."""
    query = select(accounts.c.posted - accounts.c.held).where(
        accounts.c.customer_id == customer_id, accounts.c.asset == asset
    )
    return int((await conn.execute(query)).scalar() or 0)


async def in_flight_charge(conn: AsyncConnection, workflow_id: str) -> Row[Any] | None:
    query = select(top_ups).where(top_ups.c.workflow_id == workflow_id, top_ups.c.status.in_(IN_FLIGHT))
    return (await conn.execute(query)).first()


async def charged_since(conn: AsyncConnection, workflow_id: str, since: dt.datetime) -> int:
    """What the wallet's recharges since ``since`` took or may still take (in-flight included)."""
    query = select(func.coalesce(func.sum(top_ups.c.amount), 0)).where(
        top_ups.c.workflow_id == workflow_id,
        top_ups.c.status.in_(COUNTS_AGAINST_CAPS),
        top_ups.c.created_at >= since,
    )
    return int((await conn.execute(query)).scalar_one())


async def insert_trigger(
    conn: AsyncConnection, customer_id: uuid.UUID, asset: str, available_now: int, source: str, now: dt.datetime
) -> bool:
    """Enqueue a trigger unless one is pending for the wallet already; True if this call did."""
    result = await conn.execute(
        _insert_ignore(conn, triggers).values(
            customer_id=customer_id, asset=asset, available=available_now, source=source, created_at=now
        )
    )
    return result.rowcount == 1


async def pending_triggers(conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
    query = select(triggers).where(triggers.c.relayed_at.is_(None)).order_by(triggers.c.id).limit(limit)
    return (await conn.execute(query)).all()


async def mark_relayed(conn: AsyncConnection, trigger_id: int, now: dt.datetime) -> bool:
    result = await conn.execute(
        update(triggers).where(triggers.c.id == trigger_id, triggers.c.relayed_at.is_(None)).values(relayed_at=now)
    )
    return result.rowcount == 1


async def enqueue_below_threshold(conn: AsyncConnection, now: dt.datetime, limit: int) -> int:
    """Write a ``sweep`` trigger for every enabled policy whose wallet is under its threshold
    (a wallet never used counts as 0) and has none pending; returns how many were written."""
    balance = func.coalesce(accounts.c.posted - accounts.c.held, 0)
    pending = select(literal(1)).where(
        triggers.c.customer_id == policies.c.customer_id, triggers.c.asset == policies.c.asset,
        triggers.c.relayed_at.is_(None),
    )
    due = (
        select(policies.c.customer_id, policies.c.asset, balance.label("available"))
        .select_from(
            policies.outerjoin(
                accounts, and_(accounts.c.customer_id == policies.c.customer_id, accounts.c.asset == policies.c.asset)
            )
        )
        .where(policies.c.enabled.is_(True), balance < policies.c.threshold, ~pending.exists())
        .order_by(policies.c.customer_id, policies.c.asset)
        .limit(limit)
    )
    written = 0
    for row in (await conn.execute(due)).all():
        written += await insert_trigger(conn, row.customer_id, row.asset, int(row.available), "sweep", now)
    return written


async def set_account_threshold(
    conn: AsyncConnection, customer_id: uuid.UUID, asset: str, threshold: int | None, now: dt.datetime
) -> None:
    """Copy the enabled policy's threshold onto the wallet's account row (None: no enabled
    policy), where the threshold trigger reads it. Creates the wallet if a policy needs it."""
    if threshold is not None:
        customer = await ledger_repo.get_customer(conn, customer_id)
        assert customer is not None
        await ledger_repo.get_or_create_customer_account(conn, customer_id, asset, effective_overdraft(customer), now)
    await conn.execute(
        update(accounts).where(accounts.c.customer_id == customer_id, accounts.c.asset == asset)
        .values(recharge_threshold=threshold)
    )


async def lock_wallet(conn: AsyncConnection, customer_id: uuid.UUID, asset: str) -> None:
    """Lock the wallet's account row (if it exists) before the policy row: the ledger locks the
    account first and the credit's hook then updates the policy, so everyone takes them in
    that order and no two transactions wait on each other."""
    query = (
        select(accounts.c.id).where(accounts.c.customer_id == customer_id, accounts.c.asset == asset)
        .with_for_update()
    )
    await conn.execute(query)
