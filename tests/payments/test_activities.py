"""Top-up activities called directly (real database and localstripe): what a retry finds."""

from __future__ import annotations

import uuid

import pytest

from activities.topups import TopUpActivities
from tests.services import Stack
from walletflow.payments.contracts import RefundRequest, TopUpRef
from worker.main import scorer_from

pytestmark = pytest.mark.asyncio(loop_scope="session")


def activities(stack: Stack) -> TopUpActivities:
    return TopUpActivities(stack.topups, stack.ledger, stack.gateway, scorer_from(stack.settings), stack.settings)


async def test_a_retry_finds_the_payment_intent_a_crashed_attempt_created(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up, _ = await stack.topups.create(f"k-{uuid.uuid4().hex}", customer, 1500, "USD")
    # The crashed attempt: Stripe customer linked, PaymentIntent created, its id never stored.
    stripe_customer = await stack.gateway.create_customer(str(customer), f"customer-{customer}:stripe")
    await stack.topups.link_stripe_customer(customer, stripe_customer)
    lost = await stack.gateway.create_payment_intent(
        amount=1500, currency="USD", customer=stripe_customer, top_up_id=str(top_up.id), idempotency_key="ignored"
    )

    acts = activities(stack)
    first = await acts.create_payment(TopUpRef(top_up_id=str(top_up.id)))
    again = await acts.create_payment(TopUpRef(top_up_id=str(top_up.id)))

    assert first.payment_intent_id == again.payment_intent_id == lost.id
    assert (await stack.topups.get(top_up.id)).stripe_payment_intent_id == lost.id
    listed = await stack.gateway.client.v1.payment_intents.list_async(params={"customer": stripe_customer, "limit": 100})
    assert [intent.id for intent in listed.data] == [lost.id]  # no second payment for the top-up


async def test_a_refund_retried_after_it_reached_stripe_refunds_once(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up, _ = await stack.topups.create(f"k-{uuid.uuid4().hex}", customer, 2100, "USD")
    acts = activities(stack)
    created = await acts.create_payment(TopUpRef(top_up_id=str(top_up.id)))
    await stack.pay(created.payment_intent_id)
    await stack.topups.transition(top_up.id, "scoring")

    # The first attempt refunded at Stripe and crashed before recording it.
    await stack.topups.claim_refund(top_up.id, "test")
    at_stripe = await stack.gateway.refund(created.payment_intent_id, idempotency_key="ignored")

    outcome = await acts.refund(RefundRequest(top_up_id=str(top_up.id), reason="test"))
    assert outcome.outcome == "refunded" and outcome.refund_id == at_stripe.id
    refunds = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": created.payment_intent_id})
    assert len(refunds.data) == 1
    assert (await stack.topups.get(top_up.id)).status == "refunded"

    credit = await acts.credit(TopUpRef(top_up_id=str(top_up.id)))
    assert credit.outcome == "already_refunded"
    assert await stack.balance(customer) == 0
