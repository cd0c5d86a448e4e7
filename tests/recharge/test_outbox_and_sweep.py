"""The trigger outbox end to end: every debit path writes it, a crash after the debit's commit
loses nothing (the sweep relays what nobody relayed), and the API contract of the policy."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import update

from tests.api.conftest import publish_product
from tests.recharge.helpers import charges, events, funded_customer, put_policy, settled_charges, triggers
from tests.services import Stack
from walletflow.recharge import repository as recharge_repo
from walletflow.recharge.contracts import AutoRechargeSweepInput, SweepResult
from activities.recharge import timings_from
from walletflow.recharge.service import Recharges
from walletflow.recharge.stripe_charges import charge_off_session
from workflows.recharge import AutoRechargeSweepWorkflow, ensure_relay, relay_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_crash_after_the_debit_commit_still_triggers_through_the_sweep(stack: Stack) -> None:
    # "The process died right after the commit": nobody relays (the relay is stopped), so the
    # trigger row is all that is left of the crossing; the scheduled sweep must find it.
    await stack.client.get_workflow_handle(relay_workflow_id(stack.settings)).terminate("crash test")
    await asyncio.sleep(stack.settings.recharge_relay_run_s + 1)  # its last relay activity has ended
    try:
        pending = await funded_customer(stack, 5000)
        await put_policy(stack, pending)
        await stack.ledger.debit(pending, "USD", 4500, f"use-{pending}")
        # A second wallet whose trigger was relayed but whose signal was lost (say, the recharge
        # workflow was terminated by hand): only the sweep's own look at balances finds it.
        lost = await funded_customer(stack, 5000)
        await put_policy(stack, lost)
        await stack.ledger.debit(lost, "USD", 4500, f"use-{lost}")
        async with stack.engine.begin() as conn:
            await conn.execute(
                update(recharge_repo.triggers).where(recharge_repo.triggers.c.customer_id == lost)
                .values(relayed_at=recharge_repo.triggers.c.created_at)
            )
        await asyncio.sleep(1.0)
        [row] = await triggers(stack, pending)
        assert (row.source, row.relayed_at, row.available) == ("threshold", None, 500)
        assert await charges(stack, pending) == [] and await charges(stack, lost) == []

        result: SweepResult = await stack.client.execute_workflow(
            AutoRechargeSweepWorkflow.run, AutoRechargeSweepInput(), id=f"sweep-test-{uuid.uuid4().hex[:8]}",
            task_queue=stack.settings.task_queue,
        )
        assert result.enqueued >= 1 and result.relayed >= 2
        for customer in (pending, lost):
            [charge] = await settled_charges(stack, customer, 1)
            assert (charge.status, charge.amount) == ("succeeded", 4500)
        assert [t.source for t in await triggers(stack, lost)] == ["threshold", "sweep"]
        assert all(t.relayed_at is not None for t in await triggers(stack, pending))
    finally:
        await ensure_relay(stack.client, stack.settings)


async def test_a_worker_that_died_after_stripe_took_the_money_is_resumed_without_a_second_charge(
    stack: Stack,
) -> None:
    await stack.client.get_workflow_handle(relay_workflow_id(stack.settings)).terminate("crash test")
    await asyncio.sleep(stack.settings.recharge_relay_run_s + 1)
    try:
        customer = await funded_customer(stack, 5000)
        await put_policy(stack, customer)
        await stack.ledger.debit(customer, "USD", 4500, f"use-{customer}")
        # What a worker did before it died: the plan committed the charge (a top-up in flight),
        # and Stripe took the money, but the PaymentIntent's id never reached our database.
        plan = await Recharges(stack.engine).plan(customer, "USD", timings_from(stack.settings))
        assert (plan.action, plan.amount) == ("charge", 4500)
        [charge] = await charges(stack, customer)
        stripe_customer = await stack.topups.stripe_customer_id(customer)
        policy = await Recharges(stack.engine).get_policy(customer, "USD")
        taken = await charge_off_session(
            stack.gateway, amount=4500, currency="USD", stripe_customer=stripe_customer,
            payment_method_id=policy.payment_method_id, top_up_id=str(charge.id), workflow_id=charge.workflow_id,
            idempotency_key=f"{charge.idempotency_key}:payment_intent",
        )
        assert taken is not None and taken.stripe_status == "succeeded"
    finally:
        await ensure_relay(stack.client, stack.settings)  # the worker is back: the trigger is relayed

    [done] = await settled_charges(stack, customer, 1)
    assert (done.id, done.status, done.stripe_payment_intent_id) == (charge.id, "succeeded", taken.id)
    assert await stack.credits_for(done.id) == 1
    intents = await stack.gateway.client.v1.payment_intents.list_async(params={"customer": stripe_customer})
    assert [i.id for i in intents.data] == [taken.id]  # found again, never charged twice
    assert (await stack.ledger.balance(customer, "USD")).available == 5000


async def test_usage_events_and_authorizations_trigger_too(stack: Stack) -> None:
    # wf_ingest (a batch of events) and wf_authorize (a hold) on PostgreSQL; the Python paths on SQLite.
    event_type = f"call-{uuid.uuid4().hex[:8]}"
    await publish_product(stack.http, [{"event_type": event_type, "asset": "USD", "model": "per_unit",
                                        "quantity_field": "n", "unit_price": "1"}])
    by_events = await funded_customer(stack, 5000)
    await put_policy(stack, by_events)
    batch = [{"id": f"e{i}", "customer_id": str(by_events), "event_type": event_type,
              "occurred_at": "2026-11-27T10:00:00Z", "data": {"n": 900}} for i in range(5)]
    response = await stack.http.post("/v1/events", json={"events": batch})
    assert [r["status"] for r in response.json()["results"]] == ["debited"] * 5, response.text

    by_hold = await funded_customer(stack, 5000)
    await put_policy(stack, by_hold)
    hold = await stack.http.post("/v1/authorizations", json={
        "idempotency_key": f"hold-{by_hold}", "customer_id": str(by_hold), "asset": "USD", "amount": 4200})
    assert hold.status_code == 201, hold.text

    [charge] = await settled_charges(stack, by_events, 1)
    assert (charge.status, charge.amount) == ("succeeded", 4500)  # 5000 - 4500 = 500 -> target 5000
    [charge] = await settled_charges(stack, by_hold, 1)
    assert (charge.status, charge.amount) == ("succeeded", 4200)  # available 800 -> 5000
    assert [t.source for t in await triggers(stack, by_hold)] == ["threshold"]


async def test_policy_api_validates_and_records_consent(stack: Stack) -> None:
    customer = await funded_customer(stack, 5000)
    card = await stack.card("4242424242424242")
    base = {"asset": "USD", "threshold": 1000, "target": 5000, "payment_method_id": card, "daily_cap": 10_000,
            "monthly_cap": 50_000, "enabled": True,
            "consent": {"at": "2026-11-01T09:30:00Z", "method": "checkbox", "text": "Refill from my card."}}
    url = f"/v1/customers/{customer}/auto-recharge"
    bad = [
        {**base, "target": 1000},                     # target must be above threshold
        {**base, "daily_cap": 60_000},                # daily above monthly
        {**base, "consent": None},                    # no consent, no off-session charges
        {**base, "threshold": -1},
        {**base, "threshold": 10.5},
        {**base, "consent": {"at": "2026-11-01T09:30:00", "method": "checkbox"}},  # naive time
        {**base, "asset": "CREDITS_X"},
    ]
    for body in bad:
        response = await stack.http.put(url, json=body)
        assert response.status_code in (404, 422), (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await stack.http.get(url)).json()["data"] == []  # nothing was written
    missing = await stack.http.put(f"/v1/customers/{uuid.uuid4()}/auto-recharge", json=base)
    assert missing.status_code == 404

    saved = (await stack.http.put(url, json=base)).json()
    assert saved["consent"] == {"at": "2026-11-01T09:30:00Z", "method": "checkbox", "text": "Refill from my card."}
    assert saved["workflow_id"] == f"auto-recharge-{customer}-USD"
    assert (saved["enabled"], saved["disabled_reason"], saved["consecutive_failures"]) == (True, None, 0)
    listed = (await stack.http.get(url)).json()["data"]
    assert [p["asset"] for p in listed] == ["USD"]
    # The card is now saved on the customer's Stripe customer, ready for off-session charges.
    method = await stack.gateway.client.v1.payment_methods.retrieve_async(card)
    assert method.customer == await stack.topups.stripe_customer_id(customer)
    # A read key may read, not write.
    _, read_key = await stack.app.state.services.keys.create("recharge-read", "read")
    headers = {"Authorization": f"Bearer {read_key}"}
    assert (await stack.http.get(url, headers=headers)).status_code == 200
    assert (await stack.http.put(url, json=base, headers=headers)).status_code == 403
    assert not await events(stack, customer)
