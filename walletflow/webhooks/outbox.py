"""Write platform events to the outbox, inside the caller's database transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.db.types import utcnow
from walletflow.errors import ValidationError
from walletflow.ledger.repository import _insert_ignore
from walletflow.webhooks.models import OutboundEvent

outbound_events = cast(Table, OutboundEvent.__table__)

#: Every event type walletflow emits; webhook endpoints subscribe to a subset (or ``*``).
EVENT_TYPES = frozenset({
    "top_up.succeeded", "top_up.failed", "top_up.refunded",
    "balance.low", "balance.depleted",
    "auto_recharge.succeeded", "auto_recharge.failed", "auto_recharge.disabled",
    "auto_recharge.requires_action",
    "grant.expired", "hold.expired",
    "wallet.frozen", "review.required", "dispute.created",
    "settlement.completed",
})


async def emit(
    conn: AsyncConnection,
    event_type: str,
    data: dict[str, Any],
    idempotency_key: str,
    *,
    customer_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Record one event; True if this call recorded it, False if its key was already there.

    ``data`` must be JSON-safe and must never hold secrets: it is sent to the platform as is.
    """
    if event_type not in EVENT_TYPES:
        raise ValidationError(f"unknown event type {event_type!r}")
    result = await conn.execute(
        _insert_ignore(conn, outbound_events).values(
            id=uuid.uuid4(), event_type=event_type, customer_id=customer_id, data=data,
            idempotency_key=idempotency_key, created_at=now or utcnow(),
        )
    )
    return result.rowcount == 1
