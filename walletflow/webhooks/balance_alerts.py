"""Turn the balance alerts the database trigger recorded into ``balance.depleted`` events.

Runs inside webhook dispatch's fan-out transaction, just before the outbox is claimed, so an
alert becomes an event and its deliveries in one commit; each alert is promoted once (its event
key is the alert id).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.webhooks.models import BalanceAlert
from walletflow.webhooks.outbox import emit

balance_alerts = cast(Table, BalanceAlert.__table__)
EVENT_FOR_KIND = {"depleted": "balance.depleted"}


async def promote(conn: AsyncConnection, limit: int, now: dt.datetime) -> int:
    """Emit the oldest ``limit`` pending alerts as events; returns how many."""
    query = (select(balance_alerts).where(balance_alerts.c.promoted_at.is_(None))
             .order_by(balance_alerts.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # two dispatch runs never take the same alert
    alerts = (await conn.execute(query)).all()
    for alert in alerts:
        await emit(
            conn, EVENT_FOR_KIND[alert.kind], {"asset": alert.asset, "available": alert.available},
            f"{EVENT_FOR_KIND[alert.kind]}:{alert.id}", customer_id=alert.customer_id, now=now,
        )
    if alerts:
        await conn.execute(
            update(balance_alerts).where(balance_alerts.c.id.in_([a.id for a in alerts])).values(promoted_at=now)
        )
    return len(alerts)
