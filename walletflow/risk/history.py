"""Labelled training rows from walletflow's own history: every scored top-up, with the features
stored when it was scored (so nothing is recomputed with hindsight) and what happened after.

Labels:
* ``topup_then_dispute``: a dispute (chargeback) was opened on it;
* ``review_rejected``: an operator rejected it in review (they judged it fraud);
* ``normal``: credited, never disputed, and at least ``settle_days`` old (disputes arrive late,
  so younger top-ups are left out rather than guessed).
Anything else (still open, refunded by rule, failed) is left out.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.payments.models import TopUp, TopUpDispute
from walletflow.risk.features import from_dict
from walletflow.risk.simulate import NORMAL, Row

top_ups = cast(Table, TopUp.__table__)
disputes = cast(Table, TopUpDispute.__table__)


async def labelled_rows(conn: AsyncConnection, now: dt.datetime, settle_days: int = 30) -> list[Row]:
    disputed = select(disputes.c.top_up_id)
    query = select(
        top_ups.c.risk_features, top_ups.c.status, top_ups.c.reason, top_ups.c.created_at,
        top_ups.c.id.in_(disputed).label("disputed"),
    ).where(top_ups.c.risk_features.is_not(None))
    rows: list[Row] = []
    settled_before = now - dt.timedelta(days=settle_days)
    for stored, status, reason, created_at, was_disputed in (await conn.execute(query)).all():
        values = (stored or {}).get("features")
        if not isinstance(values, dict):
            continue
        if was_disputed:
            label = "topup_then_dispute"
        elif reason == "review_rejected":
            label = "review_rejected"
        elif status == "succeeded" and created_at <= settled_before:
            label = NORMAL
        else:
            continue
        rows.append((from_dict(values), label))
    return rows
