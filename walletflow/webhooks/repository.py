"""All SQL of the webhooks package: endpoints, the dispatcher's claim on the outbox,
deliveries and their attempt log."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.ledger.repository import _insert_ignore
from walletflow.webhooks.models import (
    OutboundEvent,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)

events = cast(Table, OutboundEvent.__table__)
endpoints = cast(Table, WebhookEndpoint.__table__)
deliveries = cast(Table, WebhookDelivery.__table__)
attempts = cast(Table, WebhookDeliveryAttempt.__table__)

#: Every endpoint column but the secret: what lists and reads select.
_PUBLIC_ENDPOINT_COLUMNS = [c for c in endpoints.c if c.name != "secret"]


# --- endpoints --------------------------------------------------------------------------------


async def insert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(endpoints.insert().values(**values))


async def get_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(*_PUBLIC_ENDPOINT_COLUMNS).where(endpoints.c.id == endpoint_id))).first()


async def list_endpoints(
    conn: AsyncConnection, limit: int, after: tuple[dt.datetime, uuid.UUID] | None
) -> list[Row[Any]]:
    query = select(*_PUBLIC_ENDPOINT_COLUMNS)
    if after is not None:
        created_at, endpoint_id = after
        query = query.where(
            (endpoints.c.created_at > created_at)
            | and_(endpoints.c.created_at == created_at, endpoints.c.id > endpoint_id)
        )
    query = query.order_by(endpoints.c.created_at, endpoints.c.id).limit(limit)
    return list((await conn.execute(query)).all())


async def update_endpoint(conn: AsyncConnection, endpoint_id: uuid.UUID, **values: Any) -> bool:
    result = await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(**values))
    return result.rowcount == 1


async def enabled_endpoints(conn: AsyncConnection) -> list[Any]:
    query = select(endpoints.c.id, endpoints.c.events, endpoints.c.created_at).where(endpoints.c.enabled.is_(True))
    return list((await conn.execute(query)).all())


# --- the dispatcher ---------------------------------------------------------------------------


async def claim_pending_events(conn: AsyncConnection, limit: int) -> list[Any]:
    """The oldest undispatched events, locked until the caller's transaction ends.

    PostgreSQL skips rows another dispatcher holds (``SKIP LOCKED``), so two runs never fan out
    the same event at once; SQLite's ``BEGIN IMMEDIATE`` already runs one writer at a time.
    """
    query = (
        select(events.c.id, events.c.event_type, events.c.created_at)
        .where(events.c.dispatched_at.is_(None))
        .order_by(events.c.created_at, events.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert deliveries, ignoring (event, endpoint) pairs that already have one."""
    if not rows:
        return 0
    result = await conn.execute(_insert_ignore(conn, deliveries), list(rows))
    return max(result.rowcount, 0)


async def mark_dispatched(conn: AsyncConnection, event_ids: Iterable[uuid.UUID], now: dt.datetime) -> None:
    await conn.execute(
        update(events).where(events.c.id.in_(list(event_ids)), events.c.dispatched_at.is_(None)).values(dispatched_at=now)
    )


async def unstarted_deliveries(conn: AsyncConnection, limit: int) -> list[Any]:
    query = (
        select(deliveries.c.id, events.c.customer_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.workflow_started_at.is_(None))
        .order_by(deliveries.c.created_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())


async def mark_started(conn: AsyncConnection, delivery_ids: Iterable[uuid.UUID], now: dt.datetime) -> None:
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(list(delivery_ids)), deliveries.c.workflow_started_at.is_(None))
        .values(workflow_started_at=now)
    )


# --- deliveries -------------------------------------------------------------------------------


async def delivery_job_row(conn: AsyncConnection, delivery_id: uuid.UUID) -> Any:
    query = (
        select(
            deliveries.c.id, deliveries.c.status, endpoints.c.enabled, endpoints.c.url, endpoints.c.secret,
            events.c.id.label("event_id"), events.c.event_type, events.c.created_at, events.c.customer_id,
            events.c.data,
        )
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.id == delivery_id)
    )
    return (await conn.execute(query)).first()


async def next_attempt(conn: AsyncConnection, delivery_id: uuid.UUID) -> int:
    """Count one more attempt on the delivery and return its number."""
    result = await conn.execute(
        update(deliveries).where(deliveries.c.id == delivery_id)
        .values(attempts=deliveries.c.attempts + 1).returning(deliveries.c.attempts)
    )
    return int(result.scalar_one())


async def reopen_delivery(conn: AsyncConnection, delivery_id: uuid.UUID, now: dt.datetime) -> None:
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status.in_(("failed", "canceled")))
        .values(status="pending", finished_at=None, workflow_started_at=None, updated_at=now)
    )


async def insert_attempt(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(attempts.insert().values(**values))


async def update_delivery(
    conn: AsyncConnection, delivery_id: uuid.UUID, only_if_status: str | None = None, **values: Any
) -> bool:
    query = update(deliveries).where(deliveries.c.id == delivery_id)
    if only_if_status is not None:
        query = query.where(deliveries.c.status == only_if_status)
    result = await conn.execute(query.values(**values))
    return result.rowcount == 1


async def get_delivery(conn: AsyncConnection, delivery_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).first()


async def list_deliveries(
    conn: AsyncConnection, endpoint_id: uuid.UUID, limit: int, before: tuple[dt.datetime, uuid.UUID] | None,
    status: str | None = None,
) -> list[Row[Any]]:
    """Newest first: the delivery log reads like a log."""
    query = select(deliveries).where(deliveries.c.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(deliveries.c.status == status)
    if before is not None:
        created_at, delivery_id = before
        query = query.where(
            or_(
                deliveries.c.created_at < created_at,
                and_(deliveries.c.created_at == created_at, deliveries.c.id < delivery_id),
            )
        )
    query = query.order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).all())


async def attempts_for(conn: AsyncConnection, delivery_ids: Sequence[uuid.UUID]) -> list[Row[Any]]:
    if not delivery_ids:
        return []
    query = (
        select(attempts)
        .where(attempts.c.delivery_id.in_(list(delivery_ids)))
        .order_by(attempts.c.delivery_id, attempts.c.attempt, attempts.c.id)
    )
    return list((await conn.execute(query)).all())


async def count_deliveries(conn: AsyncConnection, event_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(deliveries).where(deliveries.c.event_id == event_id)
    return int((await conn.execute(query)).scalar_one())
