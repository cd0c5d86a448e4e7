"""Reconciliation: every usage event has its debit, every usage debit its event, every balance
equals its entries.

Leak kinds (``amount`` is what leaked, in minor units of the finding's asset):

- ``event_without_debit``: an event written in the period with a fee but no ledger transaction
  (the fee was never taken): the event's fee;
- ``debit_without_event``: a ``usage`` debit written in the period that no event points at
  (money taken for nothing on record): the debit;
- ``amount_mismatch``: an event whose debit took another amount than its priced fee: the
  difference;
- ``posted_mismatch`` / ``held_mismatch``: a wallet whose ``posted`` (``held``) differs from the
  sum of its entries (its pending holds): the difference;
- ``grant_mismatch``: a wallet whose grant remainders do not add up to ``max(posted, 0)``;
- ``unbalanced_transaction``: a transaction whose entries do not sum to zero in an asset;
- ``overdrawn_account``: a wallet below ``-overdraft_limit``: how far below;
- ``orphan_entry``: an entry whose transaction or account does not exist (PostgreSQL keeps no
  foreign keys on entries, migration 0020): the entry's amount.

The first three look at the period; the balance kinds come from the ledger audit
(``Ledger.audit``), which checks the whole ledger as it stands.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.schemas import AuditReport
from walletflow.settlement.contracts import Reconciliation
from walletflow.settlement.periods import Period
from walletflow.usage.repository import usage_events

PERIOD_KINDS = ("event_without_debit", "debit_without_event", "amount_mismatch")
BALANCE_KINDS = (
    "posted_mismatch", "held_mismatch", "grant_mismatch", "unbalanced_transaction", "overdrawn_account",
    "orphan_entry",
)
KINDS = PERIOD_KINDS + BALANCE_KINDS

t, e, a = ledger_repo.transactions, ledger_repo.entries, ledger_repo.accounts
ue = usage_events


class _Tally:
    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.summary: dict[str, dict[str, Any]] = {k: {"count": 0, "amount": 0, "by_asset": {}} for k in KINDS}
        self.examples: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, kind: str, asset: str, count: int, amount: int) -> None:
        entry = self.summary[kind]
        entry["count"] += int(count)
        entry["amount"] += int(amount)
        entry["by_asset"][asset] = entry["by_asset"].get(asset, 0) + int(amount)

    def example(self, kind: str, finding: dict[str, Any]) -> None:
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append({k: _json(v) for k, v in finding.items()})

    def result(self) -> Reconciliation:
        return Reconciliation(summary=self.summary, examples=dict(self.examples))


def _json(value: Any) -> Any:
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)  # PostgreSQL's sum() of BIGINTs is NUMERIC
    return str(value)


def _debits(transaction_ids: Any) -> Any:
    """Per transaction in ``transaction_ids`` (a subquery): the customer it took money from, the
    asset and the amount taken. Restricted first, so only the period's entries are summed."""
    return (
        select(e.c.transaction_id, a.c.customer_id, e.c.asset, (-func.sum(e.c.amount)).label("amount"))
        .join(a, a.c.id == e.c.account_id)
        .where(a.c.customer_id.is_not(None), e.c.transaction_id.in_(transaction_ids))
        .group_by(e.c.transaction_id, a.c.customer_id, e.c.asset)
        .subquery()
    )


async def reconcile(engine: AsyncEngine, period: Period, audit: AuditReport, max_examples: int) -> Reconciliation:
    """Find every leak of the period (and every broken balance now). Reads only."""
    tally = _Tally(max_examples)
    async with engine.connect() as conn:
        await _events_without_debit(conn, period, tally)
        await _debits_without_event(conn, period, tally)
        await _amount_mismatches(conn, period, tally)
        await _balances(conn, audit, tally)
    return tally.result()


def _in_period(column: Any, period: Period) -> Any:
    return and_(column >= period.start, column < period.end)


async def _events_without_debit(conn: AsyncConnection, period: Period, tally: _Tally) -> None:
    missing = and_(
        _in_period(ue.c.received_at, period), ue.c.amount > 0,
        ~exists().where(t.c.id == ue.c.transaction_id),
    )
    totals = select(ue.c.asset, func.count(), func.sum(ue.c.amount)).where(missing).group_by(ue.c.asset)
    for asset, count, amount in await conn.execute(totals):
        tally.add("event_without_debit", asset, count, amount)
    examples = (
        select(ue.c.customer_id, ue.c.event_id, ue.c.asset, ue.c.amount, ue.c.transaction_id, ue.c.received_at)
        .where(missing).order_by(ue.c.received_at, ue.c.id).limit(tally.max_examples)
    )
    for row in await conn.execute(examples):
        tally.example("event_without_debit", dict(row._mapping))


async def _debits_without_event(conn: AsyncConnection, period: Period, tally: _Tally) -> None:
    debits = _debits(select(t.c.id).where(t.c.kind == "usage", _in_period(t.c.created_at, period)))
    orphan = and_(
        t.c.kind == "usage", _in_period(t.c.created_at, period),
        ~exists().where(ue.c.transaction_id == t.c.id),
    )
    base = select(t.c.id, t.c.idempotency_key, t.c.created_at, debits.c.customer_id, debits.c.asset, debits.c.amount)
    base = base.join(debits, debits.c.transaction_id == t.c.id).where(orphan)
    rows = base.subquery()
    totals = select(rows.c.asset, func.count(), func.sum(rows.c.amount)).group_by(rows.c.asset)
    for asset, count, amount in await conn.execute(totals):
        tally.add("debit_without_event", asset, count, amount)
    for row in await conn.execute(base.order_by(t.c.created_at, t.c.id).limit(tally.max_examples)):
        tally.example("debit_without_event", {
            "transaction_id": row.id, "idempotency_key": row.idempotency_key, "customer_id": row.customer_id,
            "asset": row.asset, "amount": row.amount, "created_at": row.created_at,
        })


async def _amount_mismatches(conn: AsyncConnection, period: Period, tally: _Tally) -> None:
    debits = _debits(select(ue.c.transaction_id).where(
        _in_period(ue.c.received_at, period), ue.c.transaction_id.is_not(None)))
    difference = ue.c.amount - debits.c.amount
    base = (
        select(ue.c.customer_id, ue.c.event_id, ue.c.asset, ue.c.amount.label("priced"),
               debits.c.amount.label("debited"), ue.c.transaction_id,
               case((difference < 0, -difference), else_=difference).label("difference"))
        .join(debits, debits.c.transaction_id == ue.c.transaction_id)
        .where(_in_period(ue.c.received_at, period), difference != 0)
    )
    rows = base.subquery()
    totals = select(rows.c.asset, func.count(), func.sum(rows.c.difference)).group_by(rows.c.asset)
    for asset, count, amount in await conn.execute(totals):
        tally.add("amount_mismatch", asset, count, amount)
    for row in await conn.execute(base.limit(tally.max_examples)):
        tally.example("amount_mismatch", dict(row._mapping))


async def _balances(conn: AsyncConnection, audit: AuditReport, tally: _Tally) -> None:
    """The ledger audit's findings, as leaks with an asset and an amount each."""
    account_ids = {row[0] for rows in (audit.posted_mismatches, audit.held_mismatches,
                                       audit.grant_mismatches, audit.overdrawn_accounts) for row in rows}
    owners = await _account_owners(conn, list(account_ids))
    checks: Sequence[tuple[str, list[tuple[Any, ...]], str, str]] = (
        ("posted_mismatch", audit.posted_mismatches, "posted", "entries"),
        ("held_mismatch", audit.held_mismatches, "held", "pending_holds"),
        ("grant_mismatch", audit.grant_mismatches, "posted", "grant_remainders"),
    )
    for kind, rows, stored, computed in checks:
        for account_id, stored_value, computed_value in rows:
            customer_id, asset = owners.get(account_id, (None, "?"))
            tally.add(kind, asset, 1, abs(int(stored_value) - int(computed_value)))
            tally.example(kind, {"account_id": account_id, "customer_id": customer_id, "asset": asset,
                                 stored: int(stored_value), computed: int(computed_value)})
    for tx_id, asset, total in audit.unbalanced_transactions:
        tally.add("unbalanced_transaction", asset, 1, abs(int(total)))
        tally.example("unbalanced_transaction", {"transaction_id": tx_id, "asset": asset, "sum": int(total)})
    for entry_id, tx_id, account_id, asset, amount in audit.orphan_entries:
        tally.add("orphan_entry", asset, 1, abs(int(amount)))
        tally.example("orphan_entry", {"entry_id": entry_id, "transaction_id": tx_id, "account_id": account_id,
                                       "asset": asset, "amount": int(amount)})
    for account_id, available, limit in audit.overdrawn_accounts:
        customer_id, asset = owners.get(account_id, (None, "?"))
        tally.add("overdrawn_account", asset, 1, -(int(available) + int(limit)))
        tally.example("overdrawn_account", {"account_id": account_id, "customer_id": customer_id, "asset": asset,
                                            "available": int(available), "overdraft_limit": int(limit)})


async def _account_owners(conn: AsyncConnection, account_ids: list[Any]) -> dict[Any, tuple[Any, str]]:
    if not account_ids:
        return {}
    rows = await conn.execute(select(a.c.id, a.c.customer_id, a.c.asset).where(a.c.id.in_(account_ids)))
    return {r.id: (r.customer_id, r.asset) for r in rows}
