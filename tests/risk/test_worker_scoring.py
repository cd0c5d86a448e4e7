"""The scoring activity inside a real worker: top-ups through the API, Temporal, localstripe and
the ledger, scored by the model (the built-in one: the stack configures no artifact)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import select

from tests.services import Stack, start
from walletflow.risk.features import top_ups

pytestmark = pytest.mark.asyncio(loop_scope="session")


def fingerprint(number: str) -> str:
    """localstripe's card fingerprint, like Stripe's: the same for every use of one card number."""
    return hashlib.sha1(number.encode()).hexdigest()[:16]


async def _stored(stack: Stack, top_up_id: str) -> tuple[str | None, dict]:  # type: ignore[type-arg]
    async with stack.engine.connect() as conn:
        row = (await conn.execute(
            select(top_ups.c.card_fingerprint, top_ups.c.risk_features).where(top_ups.c.id == uuid.UUID(top_up_id))
        )).one()
    return row.card_fingerprint, row.risk_features


async def _paid_top_up(stack: Stack, amount: int, card_number: str) -> dict:  # type: ignore[type-arg]
    customer = await stack.new_customer()
    top_up = await start(stack, customer, amount)
    await stack.pay(top_up["payment_intent_id"], await stack.card(card_number))
    return top_up


async def test_a_paid_top_up_is_scored_by_the_model_with_its_features_recorded(stack: Stack) -> None:
    number = "5555555555554444"
    top_up = await _paid_top_up(stack, 1500, number)
    done = await stack.wait_for(top_up["id"], "succeeded", "in_review", "refunded", "failed")
    assert done.status == "succeeded" and done.risk_decision == "approve"
    card, stored = await _stored(stack, top_up["id"])
    assert card == fingerprint(number)  # asked from Stripe when the payment was scored
    assert stored["model_version"] == "builtin-sim-2"
    assert stored["features"]["amount"] == 1500 and stored["features"]["succeeded_count"] == 0
    assert stored["features"]["card_customers"] == 0


async def test_one_card_paying_for_many_new_accounts_goes_to_review_with_reasons(stack: Stack) -> None:
    number = "4000056655665556"  # a card no other test uses
    for _ in range(3):  # three fresh accounts pay with it and are credited...
        earlier = await _paid_top_up(stack, 1000, number)
        await stack.wait_for(earlier["id"], "succeeded", "in_review", "refunded", "failed")
    top_up = await _paid_top_up(stack, 1000, number)  # ...the fourth is a ring, not a customer
    done = await stack.wait_for(top_up["id"], "succeeded", "in_review", "refunded", "failed")
    assert done.status == "in_review" and done.risk_decision == "review"
    assert done.risk_reasons == ["model_fake_account"]  # no rule fired: the model alone saw it
    assert await stack.balance(done.customer_id) == 0

    queue = (await stack.http.get("/v1/reviews", params={"limit": 500})).json()["data"]
    listed = next(t for t in queue if t["id"] == top_up["id"])
    risk = listed["risk"]
    assert risk["score"] >= stack.settings.risk_model_review_score
    assert risk["features"]["card_customers"] == 3 and risk["model_version"] == "builtin-sim-2"
    assert any("fake account" in text for text in risk["explanations"])
    assert any(text.startswith("card_customers = 3") for text in risk["explanations"])
    rejected = await stack.http.post(f"/v1/reviews/{top_up['id']}/reject")
    assert rejected.status_code == 202
    await stack.wait_for(top_up["id"], "refunded")
