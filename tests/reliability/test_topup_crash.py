"""A worker killed (SIGKILL) at each step where money and our records can part: after Stripe
created the PaymentIntent but before we stored it, between the charge and the credit, between the
credit and its report to Temporal, and after Stripe refunded but before we recorded it. A new
worker process finishes the top-up: one PaymentIntent, credited once or refunded once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.services import Stack, start
from tests.workers import crash_test
from workflows.topup import TopUpWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("point", ["before_credit", "after_credit"])
async def test_a_worker_killed_around_the_credit_credits_exactly_once(stack: Stack, point: str) -> None:
    customer = await stack.new_customer()
    async with crash_test(stack, point) as run:
        async with run.app() as http:
            top_up = await start(stack, customer, 4200, http=http)
        await stack.pay(top_up["payment_intent_id"])
        await run.crash()
        if point == "before_credit":
            assert (await stack.topups.get(uuid.UUID(top_up["id"]))).status == "scoring"
            assert await stack.credits_for(top_up["id"]) == 0
        else:  # the credit committed; Temporal never heard that the activity finished
            assert await stack.credits_for(top_up["id"]) == 1
        handle = stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"])
        progress = await asyncio.wait_for(handle.result(), 60)

    assert progress.status == "succeeded"
    assert (await stack.topups.get(uuid.UUID(top_up["id"]))).status == "succeeded"
    assert await stack.balance(customer) == 4200
    assert await stack.credits_for(top_up["id"]) == 1
    assert [(g.source, g.amount) for g in await stack.ledger.grants(customer)] == [("paid", 4200)]
    assert (await stack.ledger.audit()).ok


async def test_a_worker_killed_after_stripe_created_the_payment_makes_no_second_one(stack: Stack) -> None:
    customer = await stack.new_customer()
    async with crash_test(stack, "after_payment_intent") as run:
        # The API answers without the client secret once its short wait is over (the worker is paused).
        async with run.app(topup_create_wait_s=1) as http:
            top_up = await start(stack, customer, 3300, http=http)
        await run.crash()
        # The killed attempt is retried only after its call timeout (8 s here): until then Stripe
        # has the PaymentIntent and our database does not.
        assert (await stack.topups.get(uuid.UUID(top_up["id"]))).stripe_payment_intent_id is None
        assert len(await stack.intents_for(top_up["id"])) == 1
        waiting = await stack.wait_for(top_up["id"], "awaiting_payment", timeout_s=90)
        assert waiting.stripe_payment_intent_id is not None
        assert len(await stack.intents_for(top_up["id"])) == 1  # the retry found it instead of making another
        await stack.pay(waiting.stripe_payment_intent_id)
        handle = stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"])
        progress = await asyncio.wait_for(handle.result(), 90)

    assert progress.status == "succeeded"
    assert await stack.balance(customer) == 3300
    assert await stack.credits_for(top_up["id"]) == 1


async def test_a_worker_killed_after_stripe_refunded_refunds_once(stack: Stack) -> None:
    customer = await stack.new_customer()
    async with crash_test(stack, "after_stripe_refund") as run:
        async with run.app() as http:
            top_up = await start(stack, customer, 950_000, http=http)  # over the reject amount: refunded
        await stack.pay(top_up["payment_intent_id"])
        await run.crash()
        assert await stack.gateway.find_refund(top_up["payment_intent_id"]) is not None  # Stripe refunded
        assert (await stack.topups.get(uuid.UUID(top_up["id"]))).status != "refunded"  # we have not recorded it
        handle = stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"])
        progress = await asyncio.wait_for(handle.result(), 90)

    assert progress.status == "refunded"
    done = await stack.topups.get(uuid.UUID(top_up["id"]))
    assert done.status == "refunded" and done.credit_transaction_id is None
    refunds = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": top_up["payment_intent_id"]})
    assert [r.amount for r in refunds.data] == [950_000]  # once
    assert await stack.balance(customer) == 0
