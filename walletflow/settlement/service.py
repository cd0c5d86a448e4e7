"""Settlement's bookkeeping: which periods are due, the hold sweep, and the period's report."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.ledger.repository import _insert_ignore
from walletflow.ledger.service import Ledger
from walletflow.settlement.contracts import HoldSweep, ReportInput, SettlementOutcome
from walletflow.settlement.models import SettlementReport
from walletflow.settlement.notify import notify_expired_holds
from walletflow.settlement.periods import Period, PeriodLength, last_closed
from walletflow.webhooks.outbox import emit

settlement_reports = cast(Table, SettlementReport.__table__)


async def due_periods(
    engine: AsyncEngine, now: dt.datetime, length: PeriodLength, grace: dt.timedelta, max_catch_up: int
) -> list[str]:
    """Closed periods with no report yet, oldest first: the newest closed period, and the ones
    missed since the newest report (at most ``max_catch_up`` in all)."""
    newest = last_closed(now, length, grace)
    async with engine.connect() as conn:
        latest = (await conn.execute(
            select(func.max(settlement_reports.c.period_start)).where(
                settlement_reports.c.period_start <= newest.start)
        )).scalar_one_or_none()
        candidates = [newest.shift(-i) for i in range(max(max_catch_up, 1))]
        if latest is None:
            candidates = [newest]
        else:
            if isinstance(latest, str):
                latest = dt.datetime.fromisoformat(latest)
            latest = latest if latest.tzinfo else latest.replace(tzinfo=dt.UTC)
            candidates = [p for p in candidates if p.start > latest]
        settled = set((await conn.execute(
            select(settlement_reports.c.period).where(settlement_reports.c.period.in_([p.key for p in candidates]))
        )).scalars())
    return [p.key for p in sorted(candidates) if p.key not in settled]


async def sweep_holds(engine: AsyncEngine, ledger: Ledger, period: Period, batch: int, max_batches: int) -> HoldSweep:
    """Release every pending hold past its expiry, then record ``hold.expired`` for every hold
    that expired since the period before ``period`` began (the sweep's and those the ledger
    expired on its own when a wallet needed the money)."""
    sweep = HoldSweep()
    for _ in range(max_batches):
        expired = await ledger.expire_holds(limit=batch)
        sweep.expired += expired
        if expired < batch:
            break
    sweep.events = await notify_expired_holds(engine, period.shift(-1).start)
    return sweep


async def record_report(engine: AsyncEngine, report: ReportInput, now: dt.datetime) -> SettlementOutcome:
    """Store the period's report and emit ``settlement.completed``, in one transaction, once.

    The first report of a period stands: a rerun (schedule and operator racing, a retry) gets
    the stored report back with ``replayed`` set, and nothing is emitted twice.
    """
    period = Period.parse(report.period)
    summary = report.reconciliation.summary
    leak_count = sum(int(k["count"]) for k in summary.values())
    leak_amount = sum(int(k["amount"]) for k in summary.values())
    details: dict[str, Any] = {
        "examples": report.reconciliation.examples,
        "holds": report.holds.model_dump(),
        "usage": report.scoring.model_dump(),
        "invoices": [i.model_dump() for i in report.invoices],
    }

    async def work(conn: AsyncConnection) -> SettlementOutcome:
        result = await conn.execute(_insert_ignore(conn, settlement_reports).values(
            id=uuid.uuid4(), period=period.key, period_start=period.start, period_end=period.end,
            leak_count=leak_count, leak_amount=leak_amount, summary=summary, details=details, created_at=now,
        ))
        stored = (await conn.execute(
            select(settlement_reports).where(settlement_reports.c.period == period.key)
        )).one()
        outcome = SettlementOutcome(period=stored.period, leak_count=stored.leak_count,
                                    leak_amount=stored.leak_amount, summary=stored.summary,
                                    replayed=result.rowcount != 1)
        if not outcome.replayed:
            await emit(conn, "settlement.completed", {
                "period": period.key, "period_start": period.start.isoformat(), "period_end": period.end.isoformat(),
                "leak_count": leak_count, "leak_amount": leak_amount, "summary": summary,
                "holds_expired": report.holds.expired, "wallets_frozen": len(report.scoring.flagged),
                "invoices": len(report.invoices),
            }, f"settlement.completed:{period.key}", now=now)
        return outcome

    return await in_transaction(engine, work)


async def get_report(engine: AsyncEngine, period: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(settlement_reports).where(settlement_reports.c.period == Period.parse(period).key)
        )).first()
    if row is None:
        return None
    return {
        "period": row.period, "period_start": row.period_start.isoformat(), "period_end": row.period_end.isoformat(),
        "leak_count": row.leak_count, "leak_amount": row.leak_amount, "summary": row.summary,
        "details": row.details, "created_at": row.created_at.isoformat(),
    }
