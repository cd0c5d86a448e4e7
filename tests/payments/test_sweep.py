"""``PaymentsSweepWorkflow`` starts the flow of money that was recorded but never started."""

from __future__ import annotations

import uuid

import pytest

from tests.payments.test_refunds_disputes import credited_top_up, settled_refund
from tests.services import Stack
from walletflow.payments.contracts import PaymentsSweepInput, PaymentsSweepResult
from walletflow.payments.refunds import Refunds
from workflows.sweep import PaymentsSweepWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def sweep(stack: Stack, grace_s: int) -> PaymentsSweepResult:
    return await stack.client.execute_workflow(
        PaymentsSweepWorkflow.run, PaymentsSweepInput(grace_s=grace_s),
        id=f"payments-sweep-test-{uuid.uuid4().hex}", task_queue=stack.settings.task_queue,
    )


async def test_a_recorded_top_up_without_its_workflow_is_started_by_the_sweep(stack: Stack) -> None:
    customer = await stack.new_customer()
    # What the API leaves when Temporal is down and the client never retries.
    top_up, _ = await stack.topups.create(f"lost-{uuid.uuid4().hex}", customer, 1800, "usd")
    assert top_up.status == "initiated"

    await sweep(stack, grace_s=3600)
    assert (await stack.topups.get(top_up.id)).status == "initiated"  # still inside its grace period

    started = await sweep(stack, grace_s=0)
    assert started.top_ups_started >= 1
    waiting = await stack.wait_for(top_up.id, "awaiting_payment")
    assert waiting.stripe_payment_intent_id
    await stack.pay(waiting.stripe_payment_intent_id)
    await stack.wait_for(top_up.id, "succeeded")
    assert await stack.balance(customer) == 1800

    await sweep(stack, grace_s=0)  # a second sweep starts nothing new for it
    assert await stack.credits_for(top_up.id) == 1


async def test_a_refund_whose_workflow_never_started_is_paid_back_by_the_sweep(stack: Stack) -> None:
    customer, top_up = await credited_top_up(stack, 2400)
    refunds = Refunds(stack.engine, stack.ledger)
    refund, _ = await refunds.create(uuid.UUID(top_up["id"]), f"lost-refund-{uuid.uuid4().hex}", 400)
    assert refund.status == "pending" and await stack.balance(customer) == 2000

    assert (await sweep(stack, grace_s=0)).refunds_started >= 1
    done = await settled_refund(stack, str(refund.id))
    assert done["status"] == "succeeded"
    paid_back = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": top_up["payment_intent_id"]})
    assert [r.amount for r in paid_back.data] == [400]
