"""Usage SQL: the batch write on both databases, and event lookups."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.db.hotpath import HotPath
from walletflow.errors import InsufficientFunds
from walletflow.ledger import postings
from walletflow.ledger import repository as ledger_repo
from walletflow.usage.keys import event_key, usage_hash, usage_metadata
from walletflow.usage.models import UsageEvent
from walletflow.usage.schemas import CostIn, PricedEvent

usage_events = UsageEvent.__table__

Outcome = tuple[str, int, uuid.UUID | None]
#: ``wf_optimistic_ingest`` (migrations 0021, 0022) writes a batch before locking its wallets and then
#: checks its plan; ``wf_ingest`` (0027) locks them first and then runs the same plan under the locks.
OPTIMISTIC, LOCKED = "wf_optimistic_ingest", "wf_ingest"


async def ingest_function(hot: HotPath, payload: str, now: dt.datetime, function: str = OPTIMISTIC) -> list[Outcome]:
    """PostgreSQL: the whole batch in one statement. ``OPTIMISTIC`` raises
    ``asyncpg.SerializationError`` (and writes nothing) when a concurrent write invalidated its
    plan; ``LOCKED`` only if a customer was frozen or unfrozen meanwhile (a freeze does not lock
    the wallet)."""
    assert function in (OPTIMISTIC, LOCKED)
    rows = await hot.fetch(
        f"SELECT idx, outcome, amount, transaction_id FROM {function}($1::text::jsonb, $2) ORDER BY idx", payload, now
    )
    return [(r["outcome"], r["amount"], r["transaction_id"]) for r in rows]


async def ingest_in_python(conn: AsyncConnection, events: list[PricedEvent], now: dt.datetime) -> list[Outcome]:
    """SQLite: ``wf_ingest``'s rules, event by event, in the caller's (single-writer) transaction."""
    outcomes: list[Outcome] = []
    for p in events:
        existing = (
            await conn.execute(
                select(usage_events.c.amount, usage_events.c.transaction_id).where(
                    usage_events.c.customer_id == p.customer_id, usage_events.c.event_id == p.event.id
                )
            )
        ).first()
        if existing is not None:
            outcomes.append(("duplicate", existing.amount, existing.transaction_id))
            continue
        customer = await ledger_repo.get_customer(conn, p.customer_id)
        account_id = await ledger_repo.get_or_create_customer_account(
            conn, p.customer_id, p.asset, postings.effective_overdraft(customer), now
        )
        account = await ledger_repo.lock_account(conn, account_id)
        if account.customer_status == "frozen":
            outcomes.append(("wallet_frozen", p.amount, None))
            continue
        try:
            account = await postings.ensure_spendable_now(conn, account, p.amount, now)
        except InsufficientFunds:
            outcomes.append(("insufficient_funds", p.amount, None))
            continue
        tx_id = None
        if p.amount > 0:
            counter_id = await ledger_repo.find_system_account(conn, postings.REVENUE, p.asset)
            tx_id, _ = await postings.post_spend(
                conn, account, p.amount, event_key(p.customer_id, p.event.id), usage_hash(p), "usage",
                counter_id, usage_metadata(p), now,
            )
        await insert_event(
            conn,
            {"customer_id": p.customer_id, "event_id": p.event.id, "event_type": p.event.event_type,
             "occurred_at": p.occurred_at, "received_at": now, "product_code": p.product_code,
             "version": p.version, "asset": p.asset, "amount": p.amount, "transaction_id": tx_id,
             "data": p.event.data},
            p.event.costs or [],
        )
        outcomes.append(("debited", p.amount, tx_id))
    return outcomes


def stored_costs(costs: Sequence[CostIn] | None) -> list[dict[str, Any]] | None:
    """An event's vendor costs as ``usage_events.costs`` keeps them (``None``: no costs); the
    batch payload of ``wf_ingest`` carries them in this shape too."""
    return [{"vendor": c.vendor, "asset": c.asset, "amount": c.amount} for c in costs] if costs else None


async def insert_event(conn: AsyncConnection, values: dict[str, Any], costs: Sequence[CostIn]) -> None:
    """Store one usage event with its vendor costs."""
    await conn.execute(insert(usage_events).values(**values, costs=stored_costs(costs)))
