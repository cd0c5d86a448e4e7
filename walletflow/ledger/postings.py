"""Posting primitives shared by the ledger service and the batch usage path.

Every function here expects the customer's account row to be locked already (see
``repository.lock_account``) and runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.errors import InsufficientFunds
from walletflow.ledger import repository as repo
from walletflow.ledger.ids import time_ordered_id
from walletflow.ledger.rules import allocate_draws
from walletflow.ledger.schemas import Draw

CLEARING = "clearing"
REVENUE = "revenue"
BREAKAGE = "breakage"
PROMOTIONS = "promotions"
ADJUSTMENTS = "adjustments"
SYSTEM_ACCOUNTS = (CLEARING, REVENUE, BREAKAGE, PROMOTIONS, ADJUSTMENTS)


async def ensure_spendable_now(conn: AsyncConnection, account: Row[Any], amount: int, now: dt.datetime) -> Row[Any]:
    """Check the locked ``account`` can spend ``amount``; returns the account row to post with.

    Holds past their expiry still count as held until a sweep releases them. When the check
    fails, this wallet's expired holds are released here first (same transaction, same lock) and
    the check is repeated, so a stale hold never blocks spending; the happy path costs nothing.
    """
    if account.posted - account.held - amount >= -account.overdraft_limit:
        return account
    account = await release_expired_holds(conn, account, now)
    ensure_spendable(account, amount)
    return account


async def release_expired_holds(conn: AsyncConnection, account: Row[Any], now: dt.datetime) -> Row[Any]:
    """Release the locked ``account``'s holds that are past their expiry; returns the account as it now is."""
    released = await repo.expire_due_holds_of(conn, account.id, now)
    if not released:
        return account
    await repo.change_balance(conn, account.id, 0, -released)
    return await repo.lock_account(conn, account.id)


def ensure_spendable(account: Row[Any], amount: int) -> None:
    available = account.posted - account.held
    if available - amount < -account.overdraft_limit:
        raise InsufficientFunds(
            f"available {available} (overdraft limit {account.overdraft_limit}) is short of {amount}",
            available=available,
            requested=amount,
        )


def counter_for(grant: Row[Any]) -> str:
    return PROMOTIONS if grant.source == "promotional" else CLEARING


async def post_credit(
    conn: AsyncConnection,
    account: Row[Any],
    grant: dict[str, Any],
    kind: str,
    counter_id: uuid.UUID,
    now: dt.datetime,
    *,
    insert: bool,
) -> uuid.UUID:
    """Post a grant's credit (``insert``: the grant row is new; else it was scheduled).

    The overdraft is repaid first; the grant keeps the rest.
    """
    amount = grant["amount"]
    repaid = min(amount, max(0, -account.posted))
    values = {"status": "active", "remaining": amount - repaid}
    if insert:
        await repo.insert_grant(conn, {**grant, **values})
    else:
        await repo.update_grant(conn, grant["id"], **values)
    tx_id = time_ordered_id()
    await repo.insert_transaction(
        conn, tx_id=tx_id, kind=kind, key=grant["idempotency_key"], request_hash=grant["request_hash"],
        metadata=grant["metadata"], now=now,
        lines=[(account.id, account.asset, amount, grant["id"]), (counter_id, account.asset, -amount, None)],
    )
    await repo.change_balance(conn, account.id, amount, 0)
    return tx_id


async def post_spend(
    conn: AsyncConnection,
    account: Row[Any],
    amount: int,
    key: str,
    digest: str,
    kind: str,
    counter_id: uuid.UUID,
    metadata: dict[str, Any],
    now: dt.datetime,
    held_delta: int = 0,
) -> tuple[uuid.UUID, tuple[Draw, ...]]:
    """Post a spend from a locked account: draw grants, write the entries, move the balance."""
    grants = await repo.spendable_grants(conn, account.id, now)
    draws = allocate_draws([(g.id, g.remaining) for g in grants], amount)
    await repo.take_from_grants(conn, draws)
    tx_id = time_ordered_id()
    lines = [(account.id, account.asset, -d.amount, d.grant_id) for d in draws]
    lines.append((counter_id, account.asset, amount, None))
    await repo.insert_transaction(
        conn, tx_id=tx_id, kind=kind, key=key, request_hash=digest, metadata=metadata, now=now, lines=lines
    )
    await repo.change_balance(conn, account.id, -amount, held_delta)
    return tx_id, draws


async def expire_hold(conn: AsyncConnection, hold: Row[Any], now: dt.datetime) -> None:
    await repo.resolve_hold(conn, hold.id, status="expired", resolved_at=now)
    await repo.change_balance(conn, hold.account_id, 0, -hold.amount)


def effective_overdraft(customer: Row[Any]) -> int:
    """The overdraft each wallet of ``customer`` gets under its insufficient-balance policy."""
    return customer.overdraft_limit if customer.insufficient_balance == "overdraft" else 0
