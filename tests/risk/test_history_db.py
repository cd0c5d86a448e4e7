"""Training rows from the database: stored features, labelled by what happened afterwards."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.risk.test_features_db import _customer
from walletflow.db.types import utcnow
from walletflow.ledger.service import Ledger
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.risk.features import disputes_table
from walletflow.risk.history import labelled_rows
from walletflow.risk.rules import RiskResult
from walletflow.risk.topups import TopUpRisk, risk_details

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _scored(engine: AsyncEngine, ledger: Ledger, customer: uuid.UUID, amount: int, days_ago: int,
                  credit: bool) -> uuid.UUID:
    then = utcnow() - dt.timedelta(days=days_ago)
    topups = TopUps(engine, clock=lambda: then)
    top_up, _ = await topups.create(f"hist-{uuid.uuid4().hex}", customer, amount, "USD")
    await topups.transition(top_up.id, "awaiting_payment")
    await topups.transition(top_up.id, "scoring")
    result = RiskResult(10, "approve", [], [], {"amount": amount, "account_age_h": 1.5}, "test")
    # The gateway is never called here: record() only writes our own table.
    await TopUpRisk(engine, StripeGateway("sk_test_unused")).record(top_up.id, result)
    if credit:
        await ledger.credit(customer, "USD", amount, f"topup-{top_up.id}:credit", also=topups.credit_recorder(top_up.id))
    else:
        await topups.transition(top_up.id, "in_review")
        await topups.transition(top_up.id, "rejected", reason="review_rejected")
    return top_up.id


async def test_scored_top_ups_become_labelled_training_rows(engine: AsyncEngine, ledger: Ledger) -> None:
    customer = await _customer(ledger)
    settled = await _scored(engine, ledger, customer, 1111, days_ago=40, credit=True)
    too_recent = await _scored(engine, ledger, customer, 2222, days_ago=2, credit=True)
    disputed = await _scored(engine, ledger, customer, 3333, days_ago=40, credit=True)
    rejected = await _scored(engine, ledger, customer, 4444, days_ago=5, credit=False)
    async with engine.begin() as conn:
        await conn.execute(insert(disputes_table).values(
            id=f"dp_{uuid.uuid4().hex}", top_up_id=disputed, customer_id=customer, amount=3333, currency="USD",
            created_at=utcnow()))
    async with engine.connect() as conn:
        rows = await labelled_rows(conn, utcnow(), settle_days=30)
    mine = {features.amount: label for features, label in rows if features.amount in (1111, 2222, 3333, 4444)}
    assert mine == {1111: "normal", 3333: "topup_then_dispute", 4444: "review_rejected"}
    assert all(f.account_age_h == 1.5 for f, _ in rows if f.amount in mine)

    details = await risk_details(engine, [settled, too_recent, rejected])
    assert details[settled]["model_version"] == "test" and details[settled]["features"]["amount"] == 1111
