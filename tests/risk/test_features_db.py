"""Top-up features read from a real database (PostgreSQL and SQLite), through the real services."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.db.types import utcnow
from walletflow.errors import AlreadyExists
from walletflow.ledger.service import Ledger
from walletflow.payments.service import TopUps
from walletflow.risk.features import disputes_table, refunds_table, top_ups, topup_features

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _customer(ledger: Ledger) -> uuid.UUID:
    try:
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
    except AlreadyExists:
        pass
    return (await ledger.create_customer(f"risk-{uuid.uuid4().hex}")).id


async def _paid(topups: TopUps, ledger: Ledger, customer: uuid.UUID, amount: int, card: str | None = None) -> uuid.UUID:
    """A top-up taken through its real status path and credited by the ledger."""
    top_up, _ = await topups.create(f"risk-{uuid.uuid4().hex}", customer, amount, "USD")
    await topups.transition(top_up.id, "awaiting_payment")
    await topups.transition(top_up.id, "scoring")
    await ledger.credit(customer, "USD", amount, f"topup-{top_up.id}:credit", also=topups.credit_recorder(top_up.id))
    if card is not None:
        await _set_card(topups.engine, top_up.id, card)
    return top_up.id


async def _set_card(engine: AsyncEngine, top_up_id: uuid.UUID, fingerprint: str) -> None:
    # What TopUpRisk.record_card stores after asking Stripe (tested with localstripe in test_worker_scoring).
    async with engine.begin() as conn:
        await conn.execute(update(top_ups).where(top_ups.c.id == top_up_id).values(card_fingerprint=fingerprint))


async def test_features_of_a_top_up_come_from_its_customer_history(engine: AsyncEngine, ledger: Ledger) -> None:
    topups = TopUps(engine)
    customer = await _customer(ledger)
    card = f"fp{uuid.uuid4().hex[:12]}"
    paid = [await _paid(topups, ledger, customer, amount, card) for amount in (1000, 3000, 2000)]
    failed, _ = await topups.create(f"risk-{uuid.uuid4().hex}", customer, 500, "USD")
    await topups.transition(failed.id, "failed", reason="card_declined")
    # Usage: 1200 spent now (the last 24 hours); the debit kind is what the features count.
    await ledger.debit(customer, "USD", 1200, f"risk-usage-{uuid.uuid4().hex}", kind="usage")
    # Two other customers paid with the same card; one of them through two top-ups.
    for _ in range(2):
        other = await _customer(ledger)
        await _paid(topups, ledger, other, 1000, card)
    await _paid(topups, ledger, other, 1000, card)
    # One refund and one dispute on this customer's top-ups.
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(insert(refunds_table).values(
            id=uuid.uuid4(), top_up_id=paid[0], amount=500, wallet_amount=500, idempotency_key=f"r-{uuid.uuid4().hex}",
            request_hash="0" * 64, status="succeeded", created_at=now, updated_at=now))
        await conn.execute(insert(disputes_table).values(
            id=f"dp_{uuid.uuid4().hex}", top_up_id=paid[1], customer_id=customer, amount=3000, currency="USD",
            created_at=now))

    scored, _ = await topups.create(f"risk-{uuid.uuid4().hex}", customer, 20_000, "USD")
    await _set_card(engine, scored.id, card)
    async with engine.connect() as conn:
        f = await topup_features(conn, scored.id, utcnow())

    assert f.amount == 20_000
    assert (f.succeeded_count, f.largest_succeeded_amount, f.median_succeeded_amount) == (3, 3000, 2000)
    assert (f.started_last_hour, f.started_last_24h, f.failed_last_24h) == (4, 4, 1)
    assert 0 <= f.account_age_h < 1
    assert f.card_customers == 2
    assert (f.refunds, f.disputes) == (1, 1)
    assert (f.spend_24h, f.spend_daily_baseline) == (1200, 0)
    assert f.usage_to_topup == pytest.approx(1200 / 6000)
    assert f.hour_of_day == utcnow().hour or f.hour_of_day == (utcnow() - dt.timedelta(minutes=1)).hour

    # Allowlisted cards are not "shared"; an hour later the burst is out of the 1-hour window.
    async with engine.connect() as conn:
        allowed = await topup_features(conn, scored.id, utcnow(), shared_card_allowlist=[card])
        later = await topup_features(conn, scored.id, utcnow() + dt.timedelta(hours=2))
    assert allowed.card_customers == 0
    assert (later.started_last_hour, later.started_last_24h) == (0, 4)
    assert later.account_age_h >= 2


async def test_a_first_top_up_has_no_history(engine: AsyncEngine, ledger: Ledger) -> None:
    topups = TopUps(engine)
    customer = await _customer(ledger)
    first, _ = await topups.create(f"risk-{uuid.uuid4().hex}", customer, 2500, "USD")
    async with engine.connect() as conn:
        f = await topup_features(conn, first.id, utcnow())
    assert (f.succeeded_count, f.median_succeeded_amount, f.started_last_hour, f.card_customers) == (0, 0, 0, 0)
    assert (f.refunds, f.disputes, f.spend_24h, f.usage_to_topup) == (0, 0, 0, 0.0)
