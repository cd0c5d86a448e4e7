"""Which periods a scheduled settlement run settles: the newest closed one, plus those missed
since the newest report (bounded), never one that already has a report."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.settlement.contracts import HoldSweep, Reconciliation, ReportInput, UsageScoring
from walletflow.settlement.service import due_periods, record_report

pytestmark = pytest.mark.asyncio(loop_scope="session")
GRACE = dt.timedelta(minutes=5)


async def _report(engine: AsyncEngine, period: str) -> None:
    empty = Reconciliation(summary={}, examples={})
    await record_report(engine, ReportInput(period=period, reconciliation=empty, holds=HoldSweep(),
                                            scoring=UsageScoring()), dt.datetime.now(dt.UTC))


async def test_missed_days_since_the_last_report_are_caught_up_oldest_first(engine: AsyncEngine) -> None:
    # 2015 belongs to this test alone (the other settlement tests use 2018-2020).
    await _report(engine, "2015-03-01")
    await _report(engine, "2015-03-02")
    now = dt.datetime(2015, 3, 5, 12, tzinfo=dt.UTC)
    assert await due_periods(engine, now, "day", GRACE, 24) == ["2015-03-03", "2015-03-04"]
    assert await due_periods(engine, now, "day", GRACE, 1) == ["2015-03-04"]
    await _report(engine, "2015-03-04")
    # The newest is settled, and nothing newer than the last report is missing.
    assert await due_periods(engine, now, "day", GRACE, 24) == []
    # Just after midnight (inside the grace) the 5th is not closed yet.
    assert await due_periods(engine, dt.datetime(2015, 3, 6, 0, 2, tzinfo=dt.UTC), "day", GRACE, 24) == []
    assert await due_periods(engine, dt.datetime(2015, 3, 6, 0, 6, tzinfo=dt.UTC), "day", GRACE, 24) == ["2015-03-05"]
