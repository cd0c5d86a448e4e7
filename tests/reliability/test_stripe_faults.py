"""Stripe failing in every way that matters, through a fault-injecting proxy in front of
localstripe (tests/reliability/stripe_faults.py): server errors, rate limits, answers lost after
Stripe acted, and calls that hang past the client's timeout. The top-up still takes exactly one
payment and credits it once; refunds pay back once; an auto-recharge charges the saved card once
and credits it once, or refunds a rejected charge once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from tests.payments.test_refunds_disputes import settled_refund
from tests.recharge.helpers import (
    charges,
    funded_customer,
    put_policy,
    recharge_on,
    settled_charges,
)
from tests.reliability.stripe_faults import StripeFaults
from tests.services import Stack, free_port, start
from worker.main import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAYMENT_INTENTS = r"^/v1/payment_intents$"
ONE_PAYMENT_INTENT = r"^/v1/payment_intents/pi_[^/]+$"
REFUNDS = r"^/v1/refunds$"


@dataclass
class Faulty:
    proxy: StripeFaults
    http: httpx.AsyncClient
    task_queue: str


@pytest_asyncio.fixture(loop_scope="session")
async def faulty(stack: Stack) -> AsyncIterator[Faulty]:
    """The API and a worker of their own whose Stripe is the proxy; Stripe's webhooks still reach
    the stack's endpoint (they wake workflows by id, whichever worker runs them)."""
    proxy = StripeFaults(stack.settings.stripe_api_base or "", hang_s=3.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(proxy, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    overrides: dict[str, Any] = {"stripe_api_base": f"http://127.0.0.1:{port}", "stripe_timeout_s": 1.5,
                 "task_queue": f"walletflow-faults-{uuid.uuid4().hex[:6]}", "topup_poll_interval_s": 1}
    settings = stack.settings.model_copy(update=overrides)
    async with build_worker(stack.client, stack.engine, settings), stack.http_for(stack.app_with(**overrides)) as http:
        yield Faulty(proxy, http, overrides["task_queue"])
    server.should_exit = True
    await serving


@pytest.mark.parametrize("fault", ["500", "429", "lost", "timeout"])
async def test_creating_the_payment_survives_errors_lost_answers_and_timeouts(
    stack: Stack, faulty: Faulty, fault: str
) -> None:
    customer = await stack.new_customer()
    # The create fails outright (500, 429), or Stripe does it and the answer is lost or comes too
    # late: only idempotency keys and our lookups keep this to one PaymentIntent. Then the
    # reads of it fail too (the API's hand-out of the client secret, the workflow's checks).
    faulty.proxy.inject("POST", PAYMENT_INTENTS, fault)
    faulty.proxy.inject("GET", ONE_PAYMENT_INTENT, "429", "500", "lost")
    top_up = await start(stack, customer, 4200, http=faulty.http)

    [intent] = await stack.intents_for(top_up["id"])
    assert intent.id == top_up["payment_intent_id"]
    await stack.pay(intent.id)
    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded", timeout_s=60)
    assert done.status == "succeeded"
    assert await stack.balance(customer) == 4200
    assert await stack.credits_for(top_up["id"]) == 1
    assert len(await stack.intents_for(top_up["id"])) == 1
    assert faulty.proxy.used(fault) >= 1 and faulty.proxy.used("429") >= 1 and faulty.proxy.used("lost") >= 1
    if fault in ("lost", "timeout"):  # Stripe had acted: the SDK's retry met Stripe's idempotency
        assert faulty.proxy.used("replayed") >= 1


async def test_a_refund_whose_answer_is_lost_pays_back_once(stack: Stack, faulty: Faulty) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 3000, http=faulty.http)
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "succeeded", timeout_s=60)

    faulty.proxy.inject("POST", REFUNDS, "lost", "timeout", "500")
    response = await faulty.http.post(f"/v1/top-ups/{top_up['id']}/refund",
                                      json={"idempotency_key": f"r-{uuid.uuid4().hex}", "amount": 1200})
    assert response.status_code == 202, response.text
    done = await settled_refund(stack, response.json()["id"], timeout_s=60)
    assert done["status"] == "succeeded"
    paid_back = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": top_up["payment_intent_id"]})
    assert [r.amount for r in paid_back.data] == [1200]
    assert await stack.balance(customer) == 1800


async def test_a_rejected_payment_is_refunded_once_whatever_stripe_does(stack: Stack, faulty: Faulty) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 950_000, http=faulty.http)  # over the reject amount
    faulty.proxy.inject("POST", REFUNDS, "timeout", "lost", "429")
    await stack.pay(top_up["payment_intent_id"])
    done = await stack.wait_for(top_up["id"], "succeeded", "refunded", "failed", timeout_s=90)
    assert done.status == "refunded" and done.credit_transaction_id is None
    paid_back = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": top_up["payment_intent_id"]})
    assert [r.amount for r in paid_back.data] == [950_000]
    assert await stack.balance(customer) == 0


@pytest.mark.parametrize("fault", ["500", "429", "lost", "timeout"])
async def test_an_auto_recharge_charges_the_card_once_whatever_stripe_does(
    stack: Stack, faulty: Faulty, fault: str
) -> None:
    customer = await funded_customer(stack, 5000)
    await put_policy(stack, customer)  # threshold 1000, target 5000
    # The off-session charge fails outright, or Stripe takes the money and the answer is lost or
    # late; then the workflow's reads of the PaymentIntent fail too.
    faulty.proxy.inject("POST", PAYMENT_INTENTS, fault)
    faulty.proxy.inject("GET", ONE_PAYMENT_INTENT, "429", "500", "lost")
    async with recharge_on(stack, faulty.task_queue, customer):
        await stack.ledger.debit(customer, "USD", 4900, f"use-{customer}")
        [charge] = await settled_charges(stack, customer, 1, timeout_s=90)

    assert (charge.status, charge.amount) == ("succeeded", 4900)
    [intent] = await stack.intents_for(charge.id)
    assert (intent.id, intent.status, intent.amount) == (charge.stripe_payment_intent_id, "succeeded", 4900)
    assert await stack.credits_for(charge.id) == 1
    assert (await stack.ledger.balance(customer, "USD")).posted == 5000
    assert faulty.proxy.used(fault) >= 1
    if fault in ("lost", "timeout"):  # Stripe had charged: the SDK's retry met Stripe's idempotency
        assert faulty.proxy.used("replayed") >= 1


async def test_a_rejected_auto_recharge_is_refunded_once_whatever_stripe_does(stack: Stack, faulty: Faulty) -> None:
    customer = await funded_customer(stack, 5000)
    # Over the stack's reject amount (900,000): refunded, then retried after the backoff.
    await put_policy(stack, customer, target=950_000, daily_cap=5_000_000, monthly_cap=10_000_000)
    # Refused twice, then Stripe refunds and the answer is lost: the retry must not refund again.
    faulty.proxy.inject("POST", REFUNDS, "500", "429", "lost")
    async with recharge_on(stack, faulty.task_queue, customer):
        await stack.ledger.debit(customer, "USD", 4900, f"use-{customer}")
        [first, *_] = await settled_charges(stack, customer, 1, timeout_s=90)

    assert (first.status, first.reason, first.credit_transaction_id) == ("refunded", "risk_rejected", None)
    paid_back = await stack.gateway.client.v1.refunds.list_async(params={"payment_intent": first.stripe_payment_intent_id})
    assert [r.amount for r in paid_back.data] == [949_900]
    assert all(faulty.proxy.used(fault) >= 1 for fault in ("500", "429", "lost"))  # each fault was met
    for attempt in await charges(stack, customer):
        assert await stack.credits_for(attempt.id) == 0
    assert (await stack.ledger.balance(customer, "USD")).posted == 100
