"""``balance.depleted``: a trigger records the wallet reaching zero on every debit path, and
webhook dispatch turns it into one platform event."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.ledger.service import Ledger
from walletflow.webhooks.balance_alerts import balance_alerts
from walletflow.webhooks.outbox import outbound_events
from walletflow.webhooks.service import Webhooks


async def depleted_events(engine: AsyncEngine, customer: uuid.UUID) -> list[dict]:
    async with engine.connect() as conn:
        query = (select(outbound_events.c.data).where(outbound_events.c.customer_id == customer,
                                                      outbound_events.c.event_type == "balance.depleted")
                 .order_by(outbound_events.c.created_at))
        return list((await conn.execute(query)).scalars())


async def pending_alerts(engine: AsyncEngine, customer: uuid.UUID) -> int:
    async with engine.connect() as conn:
        query = select(balance_alerts.c.id).where(balance_alerts.c.customer_id == customer,
                                                  balance_alerts.c.promoted_at.is_(None))
        return len((await conn.execute(query)).all())


async def test_reaching_zero_is_one_event_per_crossing(engine: AsyncEngine, ledger: Ledger, usd: str,
                                                       customer: uuid.UUID) -> None:
    hooks = Webhooks(engine)
    await ledger.credit(customer, usd, 500, f"c-{uuid.uuid4()}")
    await ledger.debit(customer, usd, 200, f"d-{uuid.uuid4()}")
    assert await pending_alerts(engine, customer) == 0  # still above zero

    await ledger.debit(customer, usd, 300, f"d-{uuid.uuid4()}")  # exactly zero
    assert await pending_alerts(engine, customer) == 1
    await hooks.fan_out(100)
    assert await depleted_events(engine, customer) == [{"asset": usd, "available": 0}]
    assert await pending_alerts(engine, customer) == 0

    # Deeper into an overdraft is not a new crossing; refilled and drained again is.
    await ledger.set_overdraft_limit(customer, usd, 1000)
    await ledger.debit(customer, usd, 400, f"d-{uuid.uuid4()}")
    await ledger.credit(customer, usd, 900, f"c-{uuid.uuid4()}")
    await ledger.debit(customer, usd, 600, f"d-{uuid.uuid4()}")
    await hooks.fan_out(100)
    await hooks.fan_out(100)  # a second run promotes nothing twice
    assert await depleted_events(engine, customer) == [{"asset": usd, "available": 0},
                                                       {"asset": usd, "available": -100}]


async def test_a_hold_that_takes_the_last_of_the_balance_counts(engine: AsyncEngine, ledger: Ledger, usd: str,
                                                               customer: uuid.UUID) -> None:
    await ledger.credit(customer, usd, 300, f"c-{uuid.uuid4()}")
    await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    await Webhooks(engine).fan_out(100)
    assert await depleted_events(engine, customer) == [{"asset": usd, "available": 0}]


async def test_a_rolled_back_debit_leaves_no_alert(engine: AsyncEngine, ledger: Ledger, usd: str,
                                                   customer: uuid.UUID) -> None:
    await ledger.credit(customer, usd, 100, f"c-{uuid.uuid4()}")

    async def fail(conn, posting) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("the caller's own write failed")

    try:
        await ledger.debit(customer, usd, 100, f"d-{uuid.uuid4()}", also=fail)
    except RuntimeError:
        pass
    assert await pending_alerts(engine, customer) == 0
    assert (await ledger.balance(customer, usd)).available == 100
