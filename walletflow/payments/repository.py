"""All top-up and Stripe-event SQL. Functions take an open connection; the caller owns the
transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Row, Table, and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.ledger.repository import _insert_ignore
from walletflow.ledger.repository import customers as _customers
from walletflow.observability.metrics import TOPUPS
from walletflow.payments.models import StripeEvent, TopUp

top_ups = cast(Table, TopUp.__table__)
stripe_events = cast(Table, StripeEvent.__table__)
customers_table = cast(Table, _customers)


async def insert_top_up(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert unless the idempotency key is taken; True if this call inserted it."""
    result = await conn.execute(_insert_ignore(conn, top_ups).values(**values))
    return _counted(result.rowcount == 1, str(values.get("status", "initiated")))


async def get(conn: AsyncConnection, top_up_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(top_ups).where(top_ups.c.id == top_up_id))).first()


async def get_by_key(conn: AsyncConnection, key: str) -> Row[Any] | None:
    return (await conn.execute(select(top_ups).where(top_ups.c.idempotency_key == key))).first()


async def get_by_payment_intent(conn: AsyncConnection, payment_intent_id: str) -> Row[Any] | None:
    query = select(top_ups).where(top_ups.c.stripe_payment_intent_id == payment_intent_id)
    return (await conn.execute(query)).first()


async def list_by_status(
    conn: AsyncConnection, status: str, limit: int, after: tuple[dt.datetime, uuid.UUID] | None
) -> list[Row[Any]]:
    query = select(top_ups).where(top_ups.c.status == status)
    if after is not None:
        created_at, top_up_id = after
        query = query.where(
            (top_ups.c.created_at > created_at)
            | and_(top_ups.c.created_at == created_at, top_ups.c.id > top_up_id)
        )
    query = query.order_by(top_ups.c.created_at, top_ups.c.id).limit(limit)
    return list((await conn.execute(query)).all())


async def list_initiated_before(conn: AsyncConnection, before: dt.datetime, limit: int) -> list[Row[Any]]:
    query = (select(top_ups).where(top_ups.c.status == "initiated", top_ups.c.created_at < before)
             .order_by(top_ups.c.created_at).limit(limit))
    return list((await conn.execute(query)).all())


async def transition(
    conn: AsyncConnection, top_up_id: uuid.UUID, to: str, allowed_from: Iterable[str], now: dt.datetime,
    **values: Any,
) -> bool:
    """Move to ``to`` only from one of ``allowed_from``; True if this call moved it."""
    result = await conn.execute(
        update(top_ups)
        .where(top_ups.c.id == top_up_id, top_ups.c.status.in_(list(allowed_from)))
        .values(status=to, updated_at=now, **values)
    )
    return _counted(result.rowcount == 1, to)


async def get_by_checkout_session(conn: AsyncConnection, session_id: str) -> Row[Any] | None:
    query = select(top_ups).where(top_ups.c.stripe_checkout_session_id == session_id)
    return (await conn.execute(query)).first()


async def set_checkout_session(conn: AsyncConnection, top_up_id: uuid.UUID, session_id: str, now: dt.datetime) -> None:
    """Remember the Checkout Session once; a retry that found the same one changes nothing."""
    await conn.execute(
        update(top_ups)
        .where(top_ups.c.id == top_up_id, top_ups.c.stripe_checkout_session_id.is_(None))
        .values(stripe_checkout_session_id=session_id, updated_at=now)
    )


async def set_payment_intent(conn: AsyncConnection, top_up_id: uuid.UUID, pi_id: str, now: dt.datetime) -> None:
    """Remember the PaymentIntent once; a retry that found the same one changes nothing."""
    await conn.execute(
        update(top_ups)
        .where(top_ups.c.id == top_up_id, top_ups.c.stripe_payment_intent_id.is_(None))
        .values(stripe_payment_intent_id=pi_id, updated_at=now)
    )


async def mark_credited(conn: AsyncConnection, top_up_id: uuid.UUID, tx_id: uuid.UUID | None, now: dt.datetime) -> bool:
    """The credit's half of the credit-or-refund guard: only a top-up no refund has claimed."""
    result = await conn.execute(
        update(top_ups)
        .where(
            top_ups.c.id == top_up_id,
            top_ups.c.refund_requested_at.is_(None),
            top_ups.c.credit_transaction_id.is_(None),
            top_ups.c.status.in_(["scoring", "in_review"]),
        )
        .values(status="succeeded", credit_transaction_id=tx_id, reason=None, updated_at=now)
    )
    return _counted(result.rowcount == 1, "succeeded")


async def claim_refund(conn: AsyncConnection, top_up_id: uuid.UUID, reason: str, now: dt.datetime) -> bool:
    """The refund's half of the guard: only a top-up that was never credited."""
    result = await conn.execute(
        update(top_ups)
        .where(
            top_ups.c.id == top_up_id,
            top_ups.c.credit_transaction_id.is_(None),
            top_ups.c.refund_requested_at.is_(None),
        )
        .values(refund_requested_at=now, reason=reason, updated_at=now)
    )
    return result.rowcount == 1


async def set_refunded(conn: AsyncConnection, top_up_id: uuid.UUID, refund_id: str, now: dt.datetime) -> None:
    result = await conn.execute(
        update(top_ups)
        .where(top_ups.c.id == top_up_id, top_ups.c.refund_requested_at.is_not(None),
               top_ups.c.status != "refunded")
        .values(status="refunded", stripe_refund_id=refund_id, updated_at=now)
    )
    _counted(result.rowcount == 1, "refunded")


def _counted(moved: bool, status: str) -> bool:
    """Count a top-up entering ``status`` (metrics), when this write moved it."""
    if moved:
        TOPUPS.labels(status).inc()
    return moved


async def insert_event(conn: AsyncConnection, event_id: str, event_type: str, payload: dict[str, Any],
                       now: dt.datetime) -> bool:
    """Store a Stripe event unless its id is already stored; True if this call stored it."""
    result = await conn.execute(
        _insert_ignore(conn, stripe_events).values(id=event_id, type=event_type, payload=payload, received_at=now)
    )
    return result.rowcount == 1


async def get_stripe_customer_id(conn: AsyncConnection, customer_id: uuid.UUID) -> str | None:
    query = select(customers_table.c.stripe_customer_id).where(customers_table.c.id == customer_id)
    return (await conn.execute(query)).scalar_one_or_none()


async def set_stripe_customer_id(conn: AsyncConnection, customer_id: uuid.UUID, stripe_id: str, now: dt.datetime) -> None:
    """Link the Stripe customer unless one is linked already (the first writer wins)."""
    await conn.execute(
        update(customers_table)
        .where(customers_table.c.id == customer_id, customers_table.c.stripe_customer_id.is_(None))
        .values(stripe_customer_id=stripe_id, updated_at=now)
    )
