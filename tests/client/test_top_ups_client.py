"""Top-ups, refunds and reviews through the client, on the real stack (Temporal, worker,
localstripe)."""

from __future__ import annotations

import uuid

import pytest

from tests.services import Stack
from walletflow.client import AsyncWalletflow, Conflict, NotFound


def client_for(stack: Stack) -> AsyncWalletflow:
    return AsyncWalletflow("http://walletflow.test", stack.admin_key, http=stack.http_for(stack.app))


async def test_a_top_up_is_paid_credited_and_partly_refunded(stack: Stack) -> None:
    customer = await stack.new_customer()
    wf = client_for(stack)
    key = f"order-{uuid.uuid4().hex}"
    top_up = await wf.create_top_up(customer, 2500, "usd", idempotency_key=key)
    assert top_up.status == "awaiting_payment" and top_up.client_secret and top_up.payment_intent_id
    assert top_up.idempotency_key == key and top_up.credit_amount == 2500
    same = await wf.create_top_up(customer, 2500, "usd", idempotency_key=key)
    assert same.id == top_up.id

    await stack.pay(top_up.payment_intent_id)
    await stack.wait_for(top_up.id, "succeeded")
    credited = await wf.get_top_up(top_up.id)
    assert credited.status == "succeeded" and credited.risk is not None and credited.risk.decision == "approve"
    assert (await wf.get_wallet(customer)).account("USD").posted == 2500

    refund = await wf.refund_top_up(top_up.id, amount=1000, reason="customer_request")
    assert (refund.amount, refund.wallet_amount, refund.top_up_id) == (1000, 1000, top_up.id)
    assert refund.status in ("pending", "succeeded")
    assert [r.id for r in await wf.list_refunds(top_up.id)] == [refund.id]
    assert (await wf.get_refund(refund.id)).reason == "customer_request"
    assert (await wf.get_wallet(customer)).account("USD").posted == 1500

    page = await wf.list_reviews(limit=5)
    assert all(t.status == "in_review" for t in page.data)
    with pytest.raises(Conflict) as not_in_review:
        await wf.approve_review(top_up.id)
    assert (not_in_review.value.status, not_in_review.value.code) == (409, "top_up_not_in_review")
    with pytest.raises(NotFound):
        await wf.get_top_up(uuid.uuid4())


async def test_a_checkout_top_up_answers_a_payment_link(stack: Stack) -> None:
    customer = await stack.new_customer()
    wf = client_for(stack)
    top_up = await wf.create_top_up(customer, 1200, "usd", mode="checkout", return_url="https://platform.example/w")
    assert top_up.mode == "checkout" and top_up.checkout_url and top_up.checkout_url.startswith("http")
    assert top_up.client_secret is None and top_up.idempotency_key.startswith("wf-")
