"""All ledger SQL. Functions take an open connection; the caller owns the transaction.

Lock order, everywhere: the customer's account row first, then its holds and grants. Taking the
account lock before reading grants is what keeps grant balances fresh under concurrency.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Row, and_, bindparam, case, func, insert, nulls_last, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.db.hotpath import HotPath
from walletflow.ledger.models import (
    Account,
    Asset,
    CreditGrant,
    Customer,
    Hold,
    LedgerEntry,
    LedgerTransaction,
)
from walletflow.ledger.schemas import Draw

accounts = Account.__table__
assets = Asset.__table__
customers = Customer.__table__
entries = LedgerEntry.__table__
grants = CreditGrant.__table__
holds = Hold.__table__
transactions = LedgerTransaction.__table__


def _insert_ignore(conn: AsyncConnection, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(table).on_conflict_do_nothing()


# --- assets and customers ---------------------------------------------------------------------


async def get_asset(conn: AsyncConnection, code: str) -> Row[Any] | None:
    return (await conn.execute(select(assets).where(assets.c.code == code))).first()


async def insert_asset(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    result = await conn.execute(_insert_ignore(conn, assets).values(**values))
    return result.rowcount == 1


async def get_customer(conn: AsyncConnection, customer_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(customers).where(customers.c.id == customer_id))).first()


async def get_customer_by_external_id(conn: AsyncConnection, external_id: str) -> Row[Any] | None:
    query = select(customers).where(customers.c.external_id == external_id)
    return (await conn.execute(query)).first()


async def insert_customer(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    result = await conn.execute(_insert_ignore(conn, customers).values(**values))
    return result.rowcount == 1


async def update_customer(conn: AsyncConnection, customer_id: uuid.UUID, values: dict[str, Any]) -> bool:
    result = await conn.execute(update(customers).where(customers.c.id == customer_id).values(**values))
    return result.rowcount == 1


async def set_customer_overdraft(conn: AsyncConnection, customer_id: uuid.UUID, limit: int) -> None:
    """Apply the customer's overdraft policy to every wallet it has."""
    await conn.execute(update(accounts).where(accounts.c.customer_id == customer_id).values(overdraft_limit=limit))


async def set_customer_status(conn: AsyncConnection, customer_id: uuid.UUID, status: str, now: dt.datetime) -> bool:
    result = await conn.execute(
        update(customers).where(customers.c.id == customer_id).values(status=status, updated_at=now)
    )
    return result.rowcount == 1


# --- accounts ---------------------------------------------------------------------------------


async def get_or_create_customer_account(
    conn: AsyncConnection, customer_id: uuid.UUID, asset: str, overdraft_limit: int, now: dt.datetime
) -> uuid.UUID:
    query = select(accounts.c.id).where(accounts.c.customer_id == customer_id, accounts.c.asset == asset)
    account_id = (await conn.execute(query)).scalar()
    if account_id is None:
        await conn.execute(
            _insert_ignore(conn, accounts).values(
                id=uuid.uuid4(), customer_id=customer_id, asset=asset, posted=0, held=0,
                overdraft_limit=overdraft_limit, tracks_balance=True, created_at=now,
            )
        )
        account_id = (await conn.execute(query)).scalar_one()
    return account_id


async def find_system_account(conn: AsyncConnection, system_code: str, asset: str) -> uuid.UUID | None:
    query = select(accounts.c.id).where(accounts.c.system_code == system_code, accounts.c.asset == asset)
    return (await conn.execute(query)).scalar()


async def get_or_create_system_account(
    conn: AsyncConnection, system_code: str, asset: str, now: dt.datetime
) -> uuid.UUID:
    query = select(accounts.c.id).where(accounts.c.system_code == system_code, accounts.c.asset == asset)
    account_id = (await conn.execute(query)).scalar()
    if account_id is None:
        await conn.execute(
            _insert_ignore(conn, accounts).values(
                id=uuid.uuid4(), system_code=system_code, asset=asset, posted=0, held=0,
                overdraft_limit=0, tracks_balance=False, created_at=now,
            )
        )
        account_id = (await conn.execute(query)).scalar_one()
    return account_id


async def find_customer_account(conn: AsyncConnection, customer_id: uuid.UUID, asset: str) -> Row[Any] | None:
    query = select(accounts).where(accounts.c.customer_id == customer_id, accounts.c.asset == asset)
    return (await conn.execute(query)).first()


async def list_customer_accounts(conn: AsyncConnection, customer_id: uuid.UUID) -> Sequence[Row[Any]]:
    query = select(accounts).where(accounts.c.customer_id == customer_id).order_by(accounts.c.asset)
    return (await conn.execute(query)).all()


async def lock_account(conn: AsyncConnection, account_id: uuid.UUID) -> Row[Any]:
    """Lock a customer account row (PostgreSQL ``FOR UPDATE``; SQLite already holds the write lock)
    and return it with its customer's status."""
    query = (
        select(accounts, customers.c.status.label("customer_status"))
        .join(customers, customers.c.id == accounts.c.customer_id)
        .where(accounts.c.id == account_id)
        .with_for_update(of=accounts)
    )
    return (await conn.execute(query)).one()


async def set_overdraft_limit(conn: AsyncConnection, account_id: uuid.UUID, limit: int) -> None:
    await conn.execute(update(accounts).where(accounts.c.id == account_id).values(overdraft_limit=limit))


async def change_balance(conn: AsyncConnection, account_id: uuid.UUID, posted_delta: int, held_delta: int) -> None:
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(posted=accounts.c.posted + posted_delta, held=accounts.c.held + held_delta)
    )


# --- transactions and entries -----------------------------------------------------------------


async def get_transaction_by_key(conn: AsyncConnection, key: str) -> Row[Any] | None:
    query = select(transactions).where(transactions.c.idempotency_key == key)
    return (await conn.execute(query)).first()


async def insert_transaction(
    conn: AsyncConnection,
    *,
    tx_id: uuid.UUID,
    kind: str,
    key: str,
    request_hash: str,
    metadata: dict[str, Any],
    now: dt.datetime,
    lines: Sequence[tuple[uuid.UUID, str, int, uuid.UUID | None]],
) -> None:
    """Insert a transaction and its entries (account, asset, signed amount, grant)."""
    await conn.execute(
        insert(transactions).values(
            id=tx_id, kind=kind, idempotency_key=key, request_hash=request_hash,
            metadata=metadata, created_at=now,
        )
    )
    await conn.execute(
        insert(entries),
        [
            {"transaction_id": tx_id, "account_id": account_id, "asset": asset, "amount": amount,
             "grant_id": grant_id, "created_at": now}
            for account_id, asset, amount, grant_id in lines
        ],
    )


async def debit_function(hot: HotPath, *args: Any) -> asyncpg.Record:
    """Call the PostgreSQL ``wf_debit`` function (migration 0002): one round trip per debit.

    Args are ``wf_debit``'s, in order: customer id, asset, amount, key, hash, kind, counter
    system code, metadata, now, transaction id.
    """
    return await hot.fetchrow(
        "SELECT outcome, transaction_id, draws, available FROM wf_debit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        *args,
    )


async def authorize_function(hot: HotPath, *args: Any) -> asyncpg.Record:
    """Call the PostgreSQL ``wf_authorize`` function (migration 0005): one round trip per hold.

    Args are ``wf_authorize``'s, in order: customer id, asset, amount, key, hash, expires at,
    metadata, now, hold id.
    """
    return await hot.fetchrow(
        "SELECT outcome, hold_id, account_id, available FROM wf_authorize($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        *args,
    )


async def list_entries_for_transaction(conn: AsyncConnection, tx_id: uuid.UUID) -> Sequence[Row[Any]]:
    query = select(entries).where(entries.c.transaction_id == tx_id).order_by(entries.c.id)
    return (await conn.execute(query)).all()


# --- grants -----------------------------------------------------------------------------------


async def get_grant_by_key(conn: AsyncConnection, key: str) -> Row[Any] | None:
    return (await conn.execute(select(grants).where(grants.c.idempotency_key == key))).first()


async def get_grant(conn: AsyncConnection, grant_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(grants).where(grants.c.id == grant_id))).first()


async def insert_grant(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(grants).values(**values))


async def spendable_grants(
    conn: AsyncConnection, account_id: uuid.UUID, now: dt.datetime
) -> Sequence[Row[Any]]:
    """Grants with money left, in consumption order.

    Grants already past their expiry come first (they hold money kept back for holds, or the
    expiry sweep has not reached them yet: using them is the customer's best outcome). Then
    priority, soonest expiry, oldest.
    """
    past_expiry = and_(grants.c.expires_at.is_not(None), grants.c.expires_at <= now)
    query = (
        select(grants.c.id, grants.c.remaining)
        .where(
            grants.c.account_id == account_id,
            grants.c.remaining > 0,
            grants.c.status.in_(("active", "expired")),
        )
        .order_by(
            case((past_expiry, 0), else_=1),
            grants.c.priority,
            nulls_last(grants.c.expires_at),
            grants.c.created_at,
            grants.c.id,
        )
    )
    return (await conn.execute(query)).all()


async def take_from_grants(conn: AsyncConnection, draws: Sequence[Draw]) -> None:
    params = [{"gid": d.grant_id, "take": d.amount} for d in draws if d.grant_id is not None]
    if params:
        await conn.execute(
            update(grants)
            .where(grants.c.id == bindparam("gid"))
            .values(remaining=grants.c.remaining - bindparam("take")),
            params,
        )


async def update_grant(conn: AsyncConnection, grant_id: uuid.UUID, **values: Any) -> None:
    await conn.execute(update(grants).where(grants.c.id == grant_id).values(**values))


async def due_grants(conn: AsyncConnection, now: dt.datetime, limit: int) -> Sequence[Row[Any]]:
    """Grants past expiry with money left (including kept-back remainders), oldest first."""
    query = (
        select(grants.c.id, grants.c.account_id)
        .where(
            grants.c.status.in_(("active", "expired")),
            grants.c.expires_at <= now,
            grants.c.remaining > 0,
        )
        .order_by(grants.c.expires_at)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def scheduled_grants_due(conn: AsyncConnection, now: dt.datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(grants.c.id, grants.c.account_id)
        .where(grants.c.status == "scheduled", grants.c.effective_at <= now)
        .order_by(grants.c.effective_at)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def list_grants(conn: AsyncConnection, account_ids: Sequence[uuid.UUID]) -> Sequence[Row[Any]]:
    query = (
        select(grants)
        .where(grants.c.account_id.in_(account_ids))
        .order_by(grants.c.priority, nulls_last(grants.c.expires_at), grants.c.created_at)
    )
    return (await conn.execute(query)).all()


# --- holds ------------------------------------------------------------------------------------


_HOLD_WITH_OWNER = select(holds, accounts.c.customer_id, accounts.c.asset).join(
    accounts, accounts.c.id == holds.c.account_id
)


async def get_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(_HOLD_WITH_OWNER.where(holds.c.id == hold_id))).first()


async def get_hold_by_key(conn: AsyncConnection, key: str) -> Row[Any] | None:
    return (await conn.execute(_HOLD_WITH_OWNER.where(holds.c.idempotency_key == key))).first()


async def insert_hold(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(holds).values(**values))


async def resolve_hold(conn: AsyncConnection, hold_id: uuid.UUID, **values: Any) -> bool:
    """Move a pending hold to its final state. False if it was not pending (it resolves once)."""
    result = await conn.execute(
        update(holds).where(holds.c.id == hold_id, holds.c.status == "pending").values(**values)
    )
    return result.rowcount == 1


async def expire_due_holds_of(conn: AsyncConnection, account_id: uuid.UUID, now: dt.datetime) -> int:
    """Expire one (locked) account's pending holds past expiry; returns the amount released."""
    due = (holds.c.account_id == account_id) & (holds.c.status == "pending") & (holds.c.expires_at <= now)
    result = await conn.execute(update(holds).where(due).values(status="expired", resolved_at=now).returning(holds.c.amount))
    return sum(row.amount for row in result)


async def expired_pending_holds(conn: AsyncConnection, now: dt.datetime, limit: int) -> Sequence[Row[Any]]:
    query = (
        select(holds.c.id, holds.c.account_id)
        .where(holds.c.status == "pending", holds.c.expires_at <= now)
        .order_by(holds.c.expires_at)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


# --- audit ------------------------------------------------------------------------------------


async def unbalanced_transactions(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    query = (
        select(entries.c.transaction_id, entries.c.asset, func.sum(entries.c.amount))
        .group_by(entries.c.transaction_id, entries.c.asset)
        .having(func.sum(entries.c.amount) != 0)
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def orphan_entries(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    """Entries whose transaction or account does not exist: (entry id, transaction id, account
    id, asset, amount). PostgreSQL has no foreign keys on entries (migration 0020), so the audit
    checks instead."""
    query = (
        select(entries.c.id, entries.c.transaction_id, entries.c.account_id, entries.c.asset, entries.c.amount)
        .where(or_(
            ~select(transactions.c.id).where(transactions.c.id == entries.c.transaction_id).exists(),
            ~select(accounts.c.id).where(accounts.c.id == entries.c.account_id).exists(),
        ))
        .order_by(entries.c.id)
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def posted_mismatches(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    sums = (
        select(entries.c.account_id, func.sum(entries.c.amount).label("total"))
        .group_by(entries.c.account_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    query = (
        select(accounts.c.id, accounts.c.posted, total)
        .outerjoin(sums, sums.c.account_id == accounts.c.id)
        .where(accounts.c.tracks_balance.is_(True), accounts.c.posted != total)
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def held_mismatches(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    sums = (
        select(holds.c.account_id, func.sum(holds.c.amount).label("total"))
        .where(holds.c.status == "pending")
        .group_by(holds.c.account_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    query = (
        select(accounts.c.id, accounts.c.held, total)
        .outerjoin(sums, sums.c.account_id == accounts.c.id)
        .where(accounts.c.tracks_balance.is_(True), accounts.c.held != total)
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def grant_mismatches(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    """Accounts whose posted grant remainders do not add up to ``max(posted, 0)``."""
    sums = (
        select(grants.c.account_id, func.sum(grants.c.remaining).label("total"))
        .where(grants.c.status.in_(("active", "expired")))
        .group_by(grants.c.account_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    positive_posted = case((accounts.c.posted > 0, accounts.c.posted), else_=0)
    query = (
        select(accounts.c.id, positive_posted, total)
        .outerjoin(sums, sums.c.account_id == accounts.c.id)
        .where(accounts.c.tracks_balance.is_(True), positive_posted != total)
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]


async def overdrawn_accounts(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    available = accounts.c.posted - accounts.c.held
    query = select(accounts.c.id, available, accounts.c.overdraft_limit).where(
        accounts.c.tracks_balance.is_(True), available < -accounts.c.overdraft_limit
    )
    return [tuple(r) for r in (await conn.execute(query)).all()]

