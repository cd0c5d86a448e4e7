"""The trained usage model inside a real settlement run (``UsageSettlementWorkflow`` on the
stack's worker, which loads the model once at start): a subtle leaked-key spike that the rules
alone approve freezes the wallet pending review; an honest customer in the same period passes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.services import Stack
from tests.settlement.helpers import events_with_key, ledger_at, private_hour
from tests.settlement.test_settlement_workflow import settle
from walletflow.risk.usage import UsageThresholds, score_usage, usage_features
from walletflow.settlement.models import UsageReview
from walletflow.settlement.periods import Period
from walletflow.usage.repository import usage_events

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = dt.timedelta(days=1)


async def _events(engine: AsyncEngine, customer: uuid.UUID, asset: str, rows: list[tuple[dt.datetime, int, str]],
                  transaction_id: uuid.UUID | None = None) -> None:
    """Usage events (at, amount, model) in one statement."""
    values: list[dict[str, Any]] = [
        {"customer_id": customer, "event_id": f"evt-{uuid.uuid4().hex}", "event_type": "llm.tokens", "occurred_at": at,
         "received_at": at, "product_code": None, "version": None, "asset": asset, "amount": amount,
         "transaction_id": transaction_id, "data": {"model": model}}
        for at, amount, model in rows
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(usage_events), values)


async def _customer_with_history(stack: Stack, usd: str, period: Period, hour_offsets: range) -> uuid.UUID:
    """Ten days of usage on model ``small``: two 1,000-cent calls in each of twelve hours a day
    (the hours ``period``'s hour plus each offset): about 1,000 per hour on average."""
    ledger = ledger_at(stack.engine, period.start - 11 * DAY)
    customer = (await ledger.create_customer(f"usage-model-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, usd, 10_000_000, f"fund-{customer}")
    rows = [(period.start - day * DAY + dt.timedelta(hours=offset, minutes=minute), 1_000, "small")
            for day in range(1, 11) for offset in hour_offsets for minute in (10, 40)]
    await _events(stack.engine, customer, usd, rows)
    return customer


async def _spend_in_period(stack: Stack, customer: uuid.UUID, usd: str, at: dt.datetime, amount: int,
                           rows: list[tuple[dt.datetime, int, str]]) -> None:
    posting = await ledger_at(stack.engine, at).debit(customer, usd, amount, f"usage-{customer}-{at.isoformat()}")
    await _events(stack.engine, customer, usd, rows, transaction_id=posting.transaction_id)


async def test_a_spike_only_the_usage_model_catches_freezes_the_wallet_in_a_settlement_run(stack: Stack) -> None:
    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=5)
    await ledger_at(stack.engine, period.start - 12 * DAY).create_asset(usd, "Test dollars", 2, "fiat")
    # The leaked key: usually active in the twelve hours after this one, never in it.
    leaked = await _customer_with_history(stack, usd, period, range(6, 18))
    # An honest customer whose usual hours include this one.
    honest = await _customer_with_history(stack, usd, period, range(0, 12))

    # 3x the usual spend (under the 5x review ratio and the 10,000 spend-rule floor) in 150
    # cheap calls on a model never used before, at an hour the customer is never active.
    await _spend_in_period(stack, leaked, usd, at, 3_000,
                           [(at + dt.timedelta(seconds=20 * i), 20, "large") for i in range(150)])
    # The honest customer: a slightly busy hour on its usual model.
    await _spend_in_period(stack, honest, usd, at, 1_500,
                           [(at + dt.timedelta(minutes=10 * i), 500, "small") for i in range(3)])

    async with stack.engine.connect() as conn:
        spike = await usage_features(conn, leaked, usd, period.start, period.end)
        calm = await usage_features(conn, honest, usd, period.start, period.end)
    assert (spike.spend, spike.events, spike.new_models, spike.odd_hour_share) == (3_000, 150, 1, 1.0)
    assert 2.5 <= spike.spend_ratio < 5, spike
    assert (calm.new_models, calm.odd_hour_share) == (0, 0.0) and calm.spend_ratio < 2.5
    # The rules alone (the worker's settings) approve the spike: 40 points, review needs 60.
    rules_only = score_usage(spike, UsageThresholds.from_settings(stack.settings))
    assert rules_only.decision == "approve" and set(rules_only.reasons) == {"event_rate_spike", "new_models"}

    outcome = await settle(stack, period)
    assert outcome.replayed is False
    assert (await stack.ledger.get_customer(leaked)).status == "frozen"
    assert (await stack.ledger.get_customer(honest)).status == "active"

    reviews = UsageReview.__table__
    async with stack.engine.connect() as conn:
        rows = (await conn.execute(select(reviews).where(reviews.c.period == period.key))).all()  # type: ignore[attr-defined]
    assert [r.customer_id for r in rows] == [leaked]
    reasons = rows[0].reasons
    assert any("the usage model puts the chance of abuse" in r for r in reasons), reasons
    assert any("never used before" in r for r in reasons), reasons  # the rules' reasons are kept too
    assert all(r.startswith(f"{usd}: ") for r in reasons)
    review_events = await events_with_key(stack.engine, f"review.required:usage:{period.key}:{leaked}")
    assert len(review_events) == 1 and review_events[0].data["kind"] == "usage_spike"
