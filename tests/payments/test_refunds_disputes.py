"""Refunds of credited top-ups (``POST /v1/top-ups/{id}/refund``) and Stripe disputes, through the
real API, worker, Temporal dev server and localstripe, on both databases."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.payments.test_webhooks import signed
from tests.services import Stack, start
from walletflow.ledger import repository as ledger_repo
from walletflow.payments.refund_repository import disputes, refunds
from walletflow.webhooks.outbox import outbound_events

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def credited_top_up(stack: Stack, amount: int) -> tuple[uuid.UUID, dict[str, Any]]:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, amount)
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "succeeded")
    return customer, top_up


async def refund(stack: Stack, top_up_id: str, key: str, **body: Any) -> Any:
    return await stack.http.post(f"/v1/top-ups/{top_up_id}/refund", json={"idempotency_key": key, **body})


async def settled_refund(stack: Stack, refund_id: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = (await stack.http.get(f"/v1/refunds/{refund_id}")).json()
        if body["status"] != "pending":
            return body
        assert time.monotonic() < deadline, f"refund {refund_id} still pending"
        await asyncio.sleep(0.1)


async def stripe_refunds(stack: Stack, payment_intent_id: str) -> list[Any]:
    page = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": payment_intent_id, "limit": 100})
    return list(page.data)


async def count(stack: Stack, table: Any, *where: Any) -> int:
    async with stack.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def test_partial_refunds_debit_the_wallet_and_pay_back_through_stripe_once(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 5000)

    first = await refund(stack, top_up["id"], "r-1", amount=2000, reason="customer_request")
    assert first.status_code == 202, first.text
    assert first.json()["workflow_id"] == f"topup-refund-{first.json()['id']}"
    # The wallet is debited before Stripe is asked, in the same transaction as the record.
    assert await stack.balance(customer) == 3000
    done = await settled_refund(stack, first.json()["id"])
    assert done["status"] == "succeeded" and done["stripe_refund_id"]

    again = await refund(stack, top_up["id"], "r-1", amount=2000, reason="customer_request")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    conflict = await refund(stack, top_up["id"], "r-1", amount=1500, reason="customer_request")
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"

    rest = await refund(stack, top_up["id"], "r-2")  # no amount: all that is left
    assert rest.status_code == 202, rest.text
    assert rest.json()["amount"] == 3000
    assert (await settled_refund(stack, rest.json()["id"]))["status"] == "succeeded"
    assert await stack.balance(customer) == 0

    too_much = await refund(stack, top_up["id"], "r-3", amount=1)
    assert too_much.status_code == 422 and too_much.json()["code"] == "validation_error"

    paid_back = await stripe_refunds(stack, top_up["payment_intent_id"])
    assert sorted(r.amount for r in paid_back) == [2000, 3000]
    listed = (await stack.http.get(f"/v1/top-ups/{top_up['id']}/refunds")).json()["data"]
    assert [r["amount"] for r in listed] == [2000, 3000]
    assert await count(stack, outbound_events, outbound_events.c.event_type == "top_up.refunded",
                       outbound_events.c.customer_id == customer) == 2
    assert (await stack.ledger.audit()).ok


async def test_spent_money_is_not_refunded_unless_an_overdraft_allows_it(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 4000)
    await stack.ledger.debit(customer, "USD", 3000, f"usage-{uuid.uuid4()}")

    refused = await refund(stack, top_up["id"], "spent")
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds"
    assert await count(stack, refunds, refunds.c.top_up_id == uuid.UUID(top_up["id"])) == 0
    assert await stack.balance(customer) == 1000
    assert await stripe_refunds(stack, top_up["payment_intent_id"]) == []

    await stack.ledger.set_overdraft_limit(customer, "USD", 5000)
    allowed = await refund(stack, top_up["id"], "spent-with-overdraft")
    assert allowed.status_code == 202, allowed.text
    assert (await settled_refund(stack, allowed.json()["id"]))["status"] == "succeeded"
    assert await stack.balance(customer) == -3000


async def test_a_refund_stripe_refuses_gives_the_wallet_its_money_back(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 3000)
    # Somebody refunded the whole charge in Stripe's dashboard, behind walletflow's back.
    await stack.gateway.client.v1.refunds.create_async(params={"payment_intent": top_up["payment_intent_id"]})

    response = await refund(stack, top_up["id"], "after-dashboard-refund", amount=1000)
    assert response.status_code == 202, response.text
    done = await settled_refund(stack, response.json()["id"])
    assert done["status"] == "failed" and "already been refunded" in done["failure_reason"]
    assert done["reversal_transaction_id"] is not None
    assert await stack.balance(customer) == 3000
    assert len(await stripe_refunds(stack, top_up["payment_intent_id"])) == 1


async def test_a_top_up_that_was_never_credited_cannot_be_refunded_here(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 1200)  # not paid: awaiting_payment
    response = await refund(stack, top_up["id"], "early")
    assert response.status_code == 409 and response.json()["code"] == "top_up_not_refundable"
    missing = await refund(stack, str(uuid.uuid4()), "nope")
    assert missing.status_code == 404


def dispute_event(top_up: dict[str, Any], amount: int, dispute_id: str | None = None) -> bytes:
    """A ``charge.dispute.created`` event as Stripe sends it (localstripe has no disputes)."""
    dispute = {
        "id": dispute_id or f"dp_{uuid.uuid4().hex[:24]}", "object": "dispute", "amount": amount, "currency": "usd",
        "charge": f"ch_{uuid.uuid4().hex[:24]}", "payment_intent": top_up["payment_intent_id"],
        "reason": "fraudulent", "status": "needs_response", "livemode": False,
    }
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "charge.dispute.created",
             "api_version": "2024-06-20", "created": int(time.time()), "data": {"object": dispute}}
    return json.dumps(event).encode()


async def dispute_row(stack: Stack, dispute_id: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        async with stack.engine.connect() as conn:
            row = (await conn.execute(select(disputes).where(disputes.c.id == dispute_id))).first()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"dispute {dispute_id} not applied"
        await asyncio.sleep(0.1)


async def test_a_dispute_freezes_the_wallet_and_claws_the_amount_back_once(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 6000)
    dispute_id = f"dp_{uuid.uuid4().hex[:24]}"
    payload = dispute_event(top_up, 6000, dispute_id)
    for _ in range(2):  # Stripe delivers twice
        response = await stack.http.post("/v1/stripe/webhooks", content=payload, headers=signed(payload))
        assert response.status_code == 200, response.text
    # ... and once more as a new event about the same dispute.
    other = dispute_event(top_up, 6000, dispute_id)
    assert (await stack.http.post("/v1/stripe/webhooks", content=other, headers=signed(other))).status_code == 200

    row = await dispute_row(stack, dispute_id)
    assert (row.clawed_back, row.unrecovered) == (6000, 0)
    await stack.client.get_workflow_handle(f"dispute-{dispute_id}").result()
    assert await stack.balance(customer) == 0
    assert (await stack.ledger.get_customer(customer)).status == "frozen"
    async with stack.engine.connect() as conn:
        clawbacks = (await conn.execute(
            select(func.count()).select_from(ledger_repo.transactions)
            .where(ledger_repo.transactions.c.idempotency_key == f"dispute-{dispute_id}:clawback")
        )).scalar_one()
    assert clawbacks == 1
    kinds = {"dispute.created", "wallet.frozen"}
    assert await count(stack, outbound_events, outbound_events.c.customer_id == customer,
                       outbound_events.c.event_type.in_(kinds)) == 2
    # A frozen wallet is not refunded through the API.
    refused = await refund(stack, top_up["id"], "after-dispute", amount=1)
    assert refused.status_code == 422 and refused.json()["code"] == "validation_error"  # nothing left to refund
    assert (await stack.ledger.audit()).ok


async def test_a_dispute_takes_only_what_is_left_and_reports_the_loss(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 5000)
    await stack.ledger.debit(customer, "USD", 4200, f"usage-{uuid.uuid4()}")  # spent before the chargeback
    dispute_id = f"dp_{uuid.uuid4().hex[:24]}"
    payload = dispute_event(top_up, 5000, dispute_id)
    assert (await stack.http.post("/v1/stripe/webhooks", content=payload, headers=signed(payload))).status_code == 200
    row = await dispute_row(stack, dispute_id)
    assert (row.clawed_back, row.unrecovered) == (800, 4200)
    assert await stack.balance(customer) == 0
    assert (await stack.ledger.audit()).ok


async def test_a_dispute_on_a_payment_that_is_not_a_top_up_is_ignored(stack: Stack) -> None:
    payload = dispute_event({"payment_intent_id": "pi_not_ours"}, 100)
    response = await stack.http.post("/v1/stripe/webhooks", content=payload, headers=signed(payload))
    assert response.status_code == 200 and response.json()["duplicate"] is False


async def credits_asset(stack: Stack, rate: str) -> str:
    """A custom asset (whole credits) sold at ``rate`` dollars each."""
    code = f"CR{uuid.uuid4().hex[:8].upper()}"
    await stack.ledger.create_asset(code, "Credits", 0, "custom")
    response = await stack.http.post(f"/v1/assets/{code}/rates", json={
        "currency": "USD", "rate": rate, "valid_from": "2020-01-01T00:00:00Z"})
    assert response.status_code in (200, 201), response.text
    return code


async def test_a_top_up_in_dollars_credits_another_asset_at_the_rate_in_force(stack: Stack) -> None:
    customer = await stack.new_customer()
    credits = await credits_asset(stack, "0.03")
    response = await stack.http.post("/v1/top-ups", json={
        "idempotency_key": f"tu-{uuid.uuid4().hex}", "customer_id": str(customer), "amount": 1000,
        "currency": "usd", "asset": credits})
    assert response.status_code == 201, response.text
    top_up = response.json()
    # $10.00 at $0.03 a credit: 333 credits (rounded down, never more than was paid for).
    assert (top_up["asset"], top_up["credit_amount"], top_up["credit_rate"]) == (credits, 333, "0.03")
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "succeeded")
    assert (await stack.ledger.balance(customer, credits)).posted == 333
    assert await stack.balance(customer) == 0  # no dollars in the wallet

    half = await refund(stack, top_up["id"], "half", amount=500)
    assert half.status_code == 202, half.text
    assert (half.json()["amount"], half.json()["wallet_amount"]) == (500, 167)  # its share, rounded up
    rest = await refund(stack, top_up["id"], "rest")
    assert (rest.json()["amount"], rest.json()["wallet_amount"]) == (500, 166)  # all refunds: exactly 333
    for done in (half, rest):
        assert (await settled_refund(stack, done.json()["id"]))["status"] == "succeeded"
    assert (await stack.ledger.balance(customer, credits)).posted == 0
    assert sorted(r.amount for r in await stripe_refunds(stack, top_up["payment_intent_id"])) == [500, 500]


async def test_another_asset_needs_a_rate_in_force(stack: Stack) -> None:
    customer = await stack.new_customer()
    code = f"NR{uuid.uuid4().hex[:8].upper()}"
    await stack.ledger.create_asset(code, "No rate", 0, "custom")
    key = f"tu-{uuid.uuid4().hex}"
    response = await stack.http.post("/v1/top-ups", json={
        "idempotency_key": key, "customer_id": str(customer), "amount": 1000, "currency": "usd", "asset": code})
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    assert "rate" in response.json()["detail"]
