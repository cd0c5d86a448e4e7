"""Auto-recharge end to end: debit -> database trigger -> outbox -> relay -> AutoRechargeWorkflow
-> off-session PaymentIntent at localstripe -> risk gate -> ledger credit; on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from prometheus_client import REGISTRY

from tests.recharge.helpers import (
    DECLINES_WHEN_CHARGED,
    THREE_D_SECURE,
    charges,
    events,
    funded_customer,
    put_policy,
    settled_charges,
    triggers,
    wait_until,
)
from tests.payments.test_topup_flows import _decoded
from tests.services import Stack
from walletflow.recharge.contracts import recharge_workflow_id
from walletflow.temporal_client import CUSTOMER_ID
from workflows.recharge import AutoRechargeWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_100_concurrent_debits_crossing_the_threshold_start_exactly_one_charge(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer)  # threshold 1000, target 5000

    # 100 debits of 45 at once: 4500 in all, so exactly one of them takes the wallet below 1000,
    # and whenever the recharge lands, the rest cannot cross again.
    results = await asyncio.gather(
        *(stack.ledger.debit(customer, "USD", 45, f"use-{customer}-{i}") for i in range(100))
    )
    assert len({r.transaction_id for r in results}) == 100

    [charge] = await settled_charges(stack, customer, 1)
    assert charge.status == "succeeded"
    assert await stack.credits_for(charge.id) == 1
    await asyncio.sleep(1.0)  # time for any second (wrong) charge to show up
    assert len(await charges(stack, customer)) == 1
    assert [t.source for t in await triggers(stack, customer)] == ["threshold"]
    # One charge sized to the target at the time it was planned, and the balance says so.
    balance = await stack.ledger.balance(customer, "USD")
    assert balance.posted == 5000 - 4500 + charge.amount
    assert 4000 < charge.amount <= 4500
    assert len(await events(stack, customer, "balance.low")) == 1
    [succeeded] = await events(stack, customer, "auto_recharge.succeeded")
    assert succeeded.data["amount"] == charge.amount
    # The workflow carries the business id and the customer search attribute.
    description = await stack.client.get_workflow_handle(recharge_workflow_id(str(customer), "USD")).describe()
    assert description.typed_search_attributes.get(CUSTOMER_ID) == str(customer)
    assert (await stack.ledger.audit()).ok


def recharges_counted(outcome: str) -> float:
    """``walletflow_auto_recharges_total{outcome}`` in this process (the stack's worker runs here)."""
    return REGISTRY.get_sample_value("walletflow_auto_recharges_total", {"outcome": outcome}) or 0.0


async def test_a_large_drop_is_refilled_to_the_target_in_one_charge(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer)
    succeeded_before = recharges_counted("succeeded")
    await stack.ledger.debit(customer, "USD", 4900, f"big-{customer}")

    [charge] = await settled_charges(stack, customer, 1)
    assert (charge.status, charge.amount) == ("succeeded", 4900)
    assert recharges_counted("succeeded") >= succeeded_before + 1  # the metric moves
    assert (await stack.ledger.balance(customer, "USD")).available == 5000
    intent = await stack.gateway.retrieve_payment_intent(charge.stripe_payment_intent_id)
    assert (intent.stripe_status, intent.amount) == ("succeeded", 4900)
    assert charge.idempotency_key == f"{recharge_workflow_id(str(customer), 'USD')}:1"
    # No secret in the workflow's history: not the PaymentIntent's client secret, nor the keys.
    history = await stack.client.get_workflow_handle(recharge_workflow_id(str(customer), "USD")).fetch_history()
    recorded = _decoded(json.loads(history.to_json()))
    assert intent.id in recorded and intent.client_secret
    for secret in (intent.client_secret, stack.settings.stripe_api_key, stack.admin_key):
        assert secret not in recorded


async def test_cooldown_holds_a_second_drop_until_it_ends(stack: Stack) -> None:
    cooldown_s = stack.settings.recharge_cooldown_s
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer)
    await stack.ledger.debit(customer, "USD", 4500, f"first-{customer}")
    [first] = await settled_charges(stack, customer, 1)
    policy = (await stack.http.get(f"/v1/customers/{customer}/auto-recharge/USD")).json()
    handle = stack.client.get_workflow_handle(recharge_workflow_id(str(customer), "USD"))
    first_run = (await handle.describe()).run_id

    await stack.ledger.debit(customer, "USD", 4500, f"second-{customer}")
    await asyncio.sleep(cooldown_s / 2)
    assert len(await charges(stack, customer)) == 1, "charged again inside the cooldown"

    # A heavy spender's second quick auto-recharge is credited without review: the risk model
    # knows auto-recharges (it once sent this one to review as top-up-then-dispute).
    first_again, second = await settled_charges(stack, customer, 2, timeout_s=cooldown_s + 60)
    assert first_again.id == first.id and second.status == "succeeded" and second.amount == 4500
    assert (second.risk_decision, second.risk_reasons) == ("approve", []), second.risk_reasons
    last_charge_at = dt.datetime.fromisoformat(policy["last_charge_at"])
    assert second.created_at >= last_charge_at + dt.timedelta(seconds=cooldown_s) - dt.timedelta(milliseconds=50)
    # Two charges is this test stack's charges_per_run: the workflow continued as new.
    await wait_until(lambda: _run_changed(handle, first_run), "continue-as-new")
    assert (await stack.ledger.balance(customer, "USD")).available == 5000


async def _run_changed(handle, first_run: str) -> bool:  # type: ignore[no-untyped-def]
    return (await handle.describe()).run_id != first_run


async def test_daily_cap_limits_the_charge_and_then_stops_recharging(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer, daily_cap=3000, monthly_cap=10_000)
    await stack.ledger.debit(customer, "USD", 4500, f"first-{customer}")
    [first] = await settled_charges(stack, customer, 1)
    assert (first.status, first.amount) == ("succeeded", 3000)  # 4500 needed, 3000 allowed today

    await stack.ledger.debit(customer, "USD", 3000, f"second-{customer}")  # 3500 -> 500: below again
    capped = await wait_until(lambda: events(stack, customer, "auto_recharge.failed"), "the cap event",
                              timeout_s=stack.settings.recharge_cooldown_s + 60)
    assert capped[0].data["reason"] == "daily_cap_reached"
    assert len(await charges(stack, customer)) == 1
    assert (await stack.ledger.balance(customer, "USD")).available == 500


async def test_declines_back_off_then_disable_the_policy_and_tell_the_platform(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer, card=DECLINES_WHEN_CHARGED)
    failed_before, disabled_before = recharges_counted("failed"), recharges_counted("disabled")
    await stack.ledger.debit(customer, "USD", 4500, f"use-{customer}")

    attempts = await settled_charges(stack, customer, 3, timeout_s=40)
    assert recharges_counted("failed") >= failed_before + 3 and recharges_counted("disabled") >= disabled_before + 1
    assert [(a.status, a.reason) for a in attempts] == [("failed", "card_declined")] * 3
    # Backoff 1 s after the first decline, 2 s after the second (the test settings).
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps
    for attempt in attempts:  # nothing left at Stripe that could still take money
        assert (await stack.gateway.retrieve_payment_intent(attempt.stripe_payment_intent_id)).stripe_status == "canceled"

    policy = (await stack.http.get(f"/v1/customers/{customer}/auto-recharge/USD")).json()
    assert (policy["enabled"], policy["disabled_reason"], policy["consecutive_failures"]) == (
        False, "consecutive_declines", 3)
    assert len(await events(stack, customer, "auto_recharge.failed")) == 3
    [disabled] = await events(stack, customer, "auto_recharge.disabled")
    assert disabled.data["consecutive_failures"] == 3
    handle = stack.client.get_workflow_handle_for(AutoRechargeWorkflow.run, recharge_workflow_id(str(customer), "USD"))
    assert (await handle.result()).status == "disabled"
    await asyncio.sleep(2.5)
    assert len(await charges(stack, customer)) == 3  # disabled means no more charges
    assert (await stack.ledger.balance(customer, "USD")).available == 500


async def test_3d_secure_notifies_and_does_not_retry(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer, card=THREE_D_SECURE)
    await stack.ledger.debit(customer, "USD", 4500, f"use-{customer}")

    [attempt] = await settled_charges(stack, customer, 1)
    assert (attempt.status, attempt.reason) == ("failed", "authentication_required")
    intent = await stack.gateway.retrieve_payment_intent(attempt.stripe_payment_intent_id)
    assert intent.stripe_status == "canceled"  # finishing 3-D Secure later cannot take money
    [action] = await events(stack, customer, "auto_recharge.requires_action")
    assert action.data["payment_intent_id"] == attempt.stripe_payment_intent_id
    assert len(await events(stack, customer, "auto_recharge.failed")) == 1
    policy = (await stack.http.get(f"/v1/customers/{customer}/auto-recharge/USD")).json()
    assert (policy["enabled"], policy["disabled_reason"]) == (False, "requires_action")
    await asyncio.sleep(stack.settings.recharge_backoff_max_s + 1)
    assert len(await charges(stack, customer)) == 1  # no retry loop


async def test_a_policy_set_below_the_threshold_recharges_at_once(stack: Stack) -> None:
    customer = await funded_customer(stack, 200)
    await put_policy(stack, customer)
    [charge] = await settled_charges(stack, customer, 1)
    assert (charge.status, charge.amount) == ("succeeded", 4800)
    assert [t.source for t in await triggers(stack, customer)] == ["policy"]
    assert not await events(stack, customer, "balance.low")  # no threshold was crossed


async def test_the_risk_gate_holds_a_large_recharge_for_review_like_a_top_up(stack: Stack) -> None:
    # The stack reviews anything from 50,000: a recharge to 60,000 waits for an operator, in the
    # same review queue as top-ups, and nothing is credited before the approval.
    customer = await funded_customer(stack, 100)
    await put_policy(stack, customer, target=60_000)

    async def in_review() -> list:
        return [c for c in await charges(stack, customer) if c.status == "in_review"]

    [charge] = await wait_until(in_review, "a charge in review")
    assert (await stack.ledger.balance(customer, "USD")).posted == 100
    queue = (await stack.http.get("/v1/reviews", params={"limit": 100})).json()["data"]
    assert str(charge.id) in [t["id"] for t in queue]
    response = await stack.http.post(f"/v1/reviews/{charge.id}/approve", json={"note": "known customer"})
    assert response.status_code == 202, response.text

    [done] = await settled_charges(stack, customer, 1)
    assert (done.status, done.amount, done.risk_decision) == ("succeeded", 59_900, "review")
    assert (await stack.ledger.balance(customer, "USD")).posted == 60_000
    assert await stack.credits_for(done.id) == 1


async def test_a_recharge_the_risk_gate_rejects_is_refunded_and_never_retried_in_a_loop(stack: Stack) -> None:
    # The stack rejects anything from 900,000: each charge is refunded, counted like a decline,
    # retried only after the backoff, and the policy is disabled after the third.
    customer = await funded_customer(stack, 100)
    await put_policy(stack, customer, target=950_000, daily_cap=5_000_000, monthly_cap=10_000_000)

    attempts = await settled_charges(stack, customer, 3, timeout_s=40)
    assert [(a.status, a.reason, a.risk_decision) for a in attempts] == [("refunded", "risk_rejected", "reject")] * 3
    for attempt in attempts:
        assert await stack.credits_for(attempt.id) == 0
        refund = await stack.gateway.find_refund(attempt.stripe_payment_intent_id)
        assert refund is not None and refund.amount == 949_900

    # A refunded charge is marked by the refund activity, its failure counted by the next one:
    # the third refund can be visible a moment before the policy is off (CI caught that read).
    async def turned_off() -> dict | None:
        policy = (await stack.http.get(f"/v1/customers/{customer}/auto-recharge/USD")).json()
        return None if policy["enabled"] else policy

    policy = await wait_until(turned_off, "the policy disabled after the third rejected charge", timeout_s=10)
    assert policy["disabled_reason"] == "consecutive_declines"
    assert [e.data["reason"] for e in await events(stack, customer, "auto_recharge.failed")] == ["risk_rejected"] * 3
    assert (await stack.ledger.balance(customer, "USD")).posted == 100
