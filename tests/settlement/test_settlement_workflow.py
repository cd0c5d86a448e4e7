"""``UsageSettlementWorkflow`` on the Temporal dev server with localstripe (the ``stack``): a
period with planted leaks, a spiking wallet, an expired hold and a postpaid customer, settled
twice; the report, the freeze, the events and the Stripe invoice each happen once."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest

from tests.conftest import unique_code
from tests.services import Stack
from tests.settlement.helpers import events_with_key, insert_event, ledger_at, private_hour
from walletflow.catalog.service import Catalog
from walletflow.settlement.contracts import SettlementInput, SettlementOutcome
from walletflow.settlement.invoicing import SETTLEMENT_KEY, StripeInvoicing
from walletflow.settlement.periods import Period
from walletflow.settlement.postpaid import PostpaidBilling
from workflows.settlement import UsageSettlementWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def settle(stack: Stack, period: Period) -> SettlementOutcome:
    return await stack.client.execute_workflow(
        UsageSettlementWorkflow.run, SettlementInput(period=period.key), id=f"settlement-{period.key}",
        task_queue=stack.settings.task_queue,
    )


async def stripe_invoices(stack: Stack, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    stripe_customer = await stack.topups.stripe_customer_id(customer_id)
    assert stripe_customer is not None
    page = await stack.gateway.client.v1.invoices.list_async(params={"customer": stripe_customer, "limit": 100})
    return [i.to_dict() for i in page.data]


async def test_a_period_is_settled_once_with_its_leaks_freezes_and_events(stack: Stack) -> None:
    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=30)
    ledger = ledger_at(stack.engine, at)
    await ledger.create_asset(usd, "Test dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"leaky-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, usd, 100_000, f"fund-{customer}")
    await insert_event(stack.engine, customer, usd, 250, at)  # an event without its debit
    await ledger.debit(customer, usd, 300, f"event:{customer}:orphan")  # a debit without its event
    # A wallet that burns 20,000 in the hour with no history: a leaked key.
    spender = (await ledger.create_customer(f"spender-{uuid.uuid4().hex}")).id
    await ledger.credit(spender, usd, 50_000, f"fund-{spender}")
    posting = await ledger.debit(spender, usd, 20_000, f"event:{spender}:big")
    await insert_event(stack.engine, spender, usd, 20_000, at, transaction_id=posting.transaction_id)
    # A hold that expired (a second ago, by the real clock) and nobody released.
    holder = (await stack.ledger.create_customer(f"holder-{uuid.uuid4().hex}")).id
    await stack.ledger.credit(holder, usd, 1_000, f"fund-{holder}")
    hold = await stack.ledger.authorize(holder, usd, 400, f"hold-{holder}", expires_in_s=1)
    await asyncio.sleep(1.2)

    first = await settle(stack, period)
    assert first.replayed is False
    assert (first.summary["event_without_debit"]["count"], first.summary["event_without_debit"]["amount"]) == (1, 250)
    assert (first.summary["debit_without_event"]["count"], first.summary["debit_without_event"]["amount"]) == (1, 300)
    assert first.leak_count == 2 and first.leak_amount == 550

    assert (await stack.ledger.get_hold(hold.id)).status == "expired"
    assert (await stack.ledger.balance(holder, usd)).held == 0
    assert len(await events_with_key(stack.engine, f"hold.expired:{hold.id}")) == 1
    assert (await stack.ledger.get_customer(spender)).status == "frozen"
    assert (await stack.ledger.get_customer(customer)).status == "active"

    second = await settle(stack, period)
    assert second.replayed is True
    assert (second.leak_count, second.leak_amount, second.summary) == (first.leak_count, first.leak_amount, first.summary)
    completed = await events_with_key(stack.engine, f"settlement.completed:{period.key}")
    assert len(completed) == 1 and completed[0].data["leak_count"] == 2
    assert completed[0].data["wallets_frozen"] == 1
    assert len(await events_with_key(stack.engine, f"wallet.frozen:usage:{period.key}:{spender}")) == 1
    assert len(await events_with_key(stack.engine, f"hold.expired:{hold.id}")) == 1


async def test_an_unclosed_or_malformed_period_is_refused(stack: Stack) -> None:
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import ApplicationError

    current = Period.containing(dt.datetime.now(dt.UTC), "day")
    for key in (current.key, "yesterday"):
        with pytest.raises(WorkflowFailureError) as info:
            await stack.client.execute_workflow(
                UsageSettlementWorkflow.run, SettlementInput(period=key), id=f"settlement-{key}-{uuid.uuid4().hex[:6]}",
                task_queue=stack.settings.task_queue,
            )
        failure = getattr(info.value.cause, "cause", None)  # ActivityError -> ApplicationError
        assert isinstance(failure, ApplicationError)
        assert failure.type in ("PeriodNotClosed", "InvalidPeriod")


async def test_a_postpaid_customer_gets_one_finalised_invoice_per_period(stack: Stack) -> None:
    period = private_hour()
    at = period.start + dt.timedelta(minutes=10)
    await stack.new_customer()  # makes sure USD exists
    credits = unique_code("C")
    ledger = ledger_at(stack.engine, at)
    await ledger.create_asset(credits, "Credits", 0, "custom")
    await Catalog(stack.engine).add_rate(credits, "USD", "0.015", valid_from=period.start - dt.timedelta(days=1))
    customer = (await ledger.create_customer(f"postpaid-{uuid.uuid4().hex}")).id
    await ledger.update_customer(customer, billing_mode="postpaid", insufficient_balance="overdraft",
                                 overdraft_limit=1_000_000)
    for amount in (1_200, 34):  # usage in USD on overdraft: 12.34
        posting = await ledger.debit(customer, "USD", amount, f"event:{customer}:{amount}")
        await insert_event(stack.engine, customer, "USD", amount, at, transaction_id=posting.transaction_id)
    posting = await ledger.debit(customer, credits, 333, f"event:{customer}:credits")  # 333 x 1.5 cents
    await insert_event(stack.engine, customer, credits, 333, at, transaction_id=posting.transaction_id)
    # A prepaid customer's usage is never invoiced.
    prepaid = (await ledger.create_customer(f"prepaid-{uuid.uuid4().hex}")).id
    await ledger.credit(prepaid, "USD", 5_000, f"fund-{prepaid}")
    posting = await ledger.debit(prepaid, "USD", 700, f"event:{prepaid}:x")
    await insert_event(stack.engine, prepaid, "USD", 700, at, transaction_id=posting.transaction_id)

    first = await settle(stack, period)
    await settle(stack, period)  # the same period again: no second invoice

    [invoice] = await stripe_invoices(stack, customer)
    assert invoice["status"] == "open" and invoice["currency"] == "usd"
    assert invoice["amount_due"] == 1_234 + 500  # 333 credits at 0.015 USD = 4.995 -> 500 cents, half up
    assert invoice["metadata"][SETTLEMENT_KEY] == f"{customer}:{period.key}:usd"
    lines = (await stack.gateway.client.v1.invoices.line_items.list_async(invoice["id"])).data
    assert {line.to_dict()["metadata"]["walletflow_line"]: line.amount for line in lines} == {
        "USD": 1_234, credits: 500}
    assert await stack.topups.stripe_customer_id(prepaid) is None
    assert first.leak_count == 0


async def test_a_retry_after_a_crash_at_stripe_bills_once(stack: Stack) -> None:
    """The first attempt created the Stripe invoice and died before storing its id (Stripe
    forgot the idempotency key): the retry finds it by metadata and completes it."""
    period = private_hour()
    at = period.start + dt.timedelta(minutes=10)
    await stack.new_customer()
    ledger = ledger_at(stack.engine, at)
    customer = (await ledger.create_customer(f"postpaid-{uuid.uuid4().hex}")).id
    await ledger.update_customer(customer, billing_mode="postpaid", insufficient_balance="overdraft",
                                 overdraft_limit=1_000_000)
    await ledger.debit(customer, "USD", 4_321, f"event:{customer}:one")
    billing = PostpaidBilling(stack.engine, stack.gateway, invoice_currency="USD", collection_method="send_invoice",
                              days_until_due=30)
    # The crashed attempt: the row claimed, the invoice made at Stripe, the id never stored.
    from walletflow.settlement.postpaid import bill_for

    bill = await bill_for(stack.engine, customer, period, "USD")
    await billing._claim(customer, period, "usd", bill.lines["usd"])
    lost = await StripeInvoicing(stack.gateway).create_invoice(
        customer=await billing._stripe_customer(customer), currency="usd", settlement_key=f"{customer}:{period.key}:usd",
        description="lost", collection_method="send_invoice", days_until_due=30,
    )
    [done] = await billing.invoice(customer, period)
    assert (done.stripe_invoice_id, done.status, done.amount) == (lost.id, "finalized", 4_321)
    [again] = await billing.invoice(customer, period)
    assert again == done
    [invoice] = await stripe_invoices(stack, customer)
    assert (invoice["id"], invoice["status"], invoice["amount_due"]) == (lost.id, "open", 4_321)


async def test_the_scheduled_run_settles_each_closed_period_once_as_its_own_child(stack: Stack) -> None:
    """Started with no period (as the schedule starts it): settles the newest closed periods not
    settled yet (here at most two), each as ``settlement-{period}``; the next run finds none."""
    from temporalio.worker import Worker

    from activities.settlement import SettlementActivities
    from walletflow.settlement.periods import last_closed
    from workflows.settlement import UsageSettlementWorkflow as Settlement

    settings = stack.settings.model_copy(update={"settlement_max_catch_up": 2, "settlement_period": "day"})
    queue = f"settle-driver-{uuid.uuid4().hex[:6]}"
    activities = SettlementActivities(stack.engine, stack.ledger, stack.gateway, settings)
    async with Worker(stack.client, task_queue=queue, workflows=[Settlement], activities=activities.all()):
        first = await stack.client.execute_workflow(
            Settlement.run, SettlementInput(), id=f"walletflow-settlement-{uuid.uuid4().hex[:6]}", task_queue=queue,
        )
        newest = last_closed(dt.datetime.now(dt.UTC), "day", dt.timedelta(seconds=settings.settlement_grace_s))
        assert first.settled[-1] == newest.key and len(first.settled) <= 2
        for key in first.settled:
            child = await stack.client.get_workflow_handle(f"settlement-{key}").describe()
            assert child.workflow_type == "UsageSettlementWorkflow" and child.status is not None
        second = await stack.client.execute_workflow(
            Settlement.run, SettlementInput(), id=f"walletflow-settlement-{uuid.uuid4().hex[:6]}", task_queue=queue,
        )
        assert second.settled == []


async def test_an_operator_settles_a_period_and_reads_its_report_from_the_cli(stack: Stack) -> None:
    from tests.settlement.test_schedules import walletflow_cli

    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=5)
    ledger = ledger_at(stack.engine, at)
    await ledger.create_asset(usd, "Test dollars", 2, "fiat")
    customer = (await ledger.create_customer(f"cli-{uuid.uuid4().hex}")).id
    await insert_event(stack.engine, customer, usd, 123, at)
    env = {"WALLETFLOW_TEMPORAL_ADDRESS": stack.settings.temporal_address,
           "WALLETFLOW_TASK_QUEUE": stack.settings.task_queue, "WALLETFLOW_DATABASE_URL": stack.settings.database_url}
    ran = await walletflow_cli(stack, env, "settle", "run", "--period", period.key)
    assert (ran["workflow_id"], ran["leak_count"], ran["leak_amount"]) == (f"settlement-{period.key}", 1, 123)
    shown = await walletflow_cli(stack, env, "settle", "show", period.key)
    assert shown["summary"]["event_without_debit"] == {"count": 1, "amount": 123, "by_asset": {usd: 123}}
    assert shown["details"]["examples"]["event_without_debit"][0]["customer_id"] == str(customer)
