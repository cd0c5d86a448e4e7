"""An auto-recharge worker killed (SIGKILL) at each step where money and our records can part:
after Stripe took the off-session charge but before we stored its PaymentIntent, between the
charge and the credit, between the credit and its report to Temporal, and after Stripe refunded a
charge the risk gate rejected but before we recorded the refund. A new worker process finishes the
charge: one PaymentIntent, credited once or refunded once, and the workflow is not stuck."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowHandle

from tests.recharge.helpers import (
    charges,
    funded_customer,
    put_policy,
    recharge_on,
    settled_charges,
    wait_until,
)
from tests.services import Stack
from tests.workers import crash_test
from walletflow.recharge.contracts import RechargeProgress
from workflows.recharge import AutoRechargeWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A killed worker's step is retried after its call timeout: 8 s here instead of 30.
FAST_RETRY = {"WALLETFLOW_TOPUP_CALL_TIMEOUT_S": "8"}
SETTLED_WITHIN_S = 120


async def status(handle: WorkflowHandle) -> str:
    progress: RechargeProgress = await handle.query(AutoRechargeWorkflow.status)
    return progress.status


@pytest.mark.parametrize("point", ["recharge_after_payment_intent", "recharge_before_credit", "recharge_after_credit"])
async def test_a_recharge_worker_killed_at_any_step_credits_the_charge_exactly_once(stack: Stack, point: str) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer)  # threshold 1000, target 5000: over it, nothing to do yet
    async with crash_test(stack, point, **FAST_RETRY) as run, recharge_on(stack, run.task_queue, customer) as handle:
        await stack.ledger.debit(customer, "USD", 4900, f"use-{customer}")  # crosses the threshold
        await run.crash()
        [charge] = await charges(stack, customer)
        if point == "recharge_after_payment_intent":  # charged at Stripe, not yet in our database
            assert charge.stripe_payment_intent_id is None
            assert len(await stack.intents_for(charge.id)) == 1
        else:
            assert await stack.credits_for(charge.id) == (1 if point == "recharge_after_credit" else 0)

        [done] = await settled_charges(stack, customer, 1, timeout_s=SETTLED_WITHIN_S)
        assert (done.status, done.amount) == ("succeeded", 4900)
        assert await wait_until(lambda: _is(handle, "idle"), "the workflow back to idle", timeout_s=30)

    assert await stack.credits_for(done.id) == 1
    assert len(await stack.intents_for(done.id)) == 1  # the retry found the charge instead of making another
    assert len(await charges(stack, customer)) == 1
    assert (await stack.ledger.balance(customer, "USD")).posted == 5000
    assert (await stack.ledger.audit()).ok


async def test_a_recharge_worker_killed_after_stripe_refunded_a_rejected_charge_refunds_once(stack: Stack) -> None:
    # The stack rejects anything from 900,000: the charge is refunded; with one failure allowed,
    # the policy is then disabled and the workflow ends.
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer, target=950_000, daily_cap=5_000_000, monthly_cap=10_000_000)
    async with (
        crash_test(stack, "after_stripe_refund", WALLETFLOW_RECHARGE_MAX_CONSECUTIVE_FAILURES="1", **FAST_RETRY) as run,
        recharge_on(stack, run.task_queue, customer) as handle,
    ):
        await stack.ledger.debit(customer, "USD", 4900, f"use-{customer}")
        await run.crash()
        [charge] = await charges(stack, customer)
        assert await stack.gateway.find_refund(charge.stripe_payment_intent_id) is not None  # Stripe refunded
        assert charge.status != "refunded"  # we have not recorded it
        progress: RechargeProgress = await asyncio.wait_for(handle.result(), SETTLED_WITHIN_S)

    assert progress.status == "disabled"
    [done] = await charges(stack, customer)
    assert (done.status, done.reason, done.credit_transaction_id) == ("refunded", "risk_rejected", None)
    refunds = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": done.stripe_payment_intent_id})
    assert [r.amount for r in refunds.data] == [949_900]  # once
    assert await stack.credits_for(done.id) == 0
    assert (await stack.ledger.balance(customer, "USD")).posted == 100
    assert (await stack.ledger.audit()).ok


async def _is(handle: WorkflowHandle, expected: str) -> bool:
    return await status(handle) == expected
