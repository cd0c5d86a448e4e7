"""A worker killed (SIGKILL) at each step where money and our records can part: after Stripe
created the PaymentIntent but before we stored it, between the charge and the credit, between the
credit and its report to Temporal, and after Stripe refunded but before we recorded it. A new
worker process finishes the top-up: one PaymentIntent, credited once or refunded once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services import Stack, start
from workflows.topup import TopUpWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPO = Path(__file__).resolve().parents[2]


async def spawn_worker(stack: Stack, task_queue: str, **extra_env: str) -> asyncio.subprocess.Process:
    """``python -m worker`` configured only through WALLETFLOW_* variables, as in production."""
    env = {
        **os.environ,
        "WALLETFLOW_DATABASE_URL": stack.settings.database_url,
        "WALLETFLOW_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "WALLETFLOW_TASK_QUEUE": task_queue,
        "WALLETFLOW_STRIPE_API_BASE": stack.settings.stripe_api_base or "",
        "WALLETFLOW_STRIPE_API_KEY": stack.settings.stripe_api_key,
        # Hand the dead worker's cached workflows to the live one after 1 s instead of 10.
        "WALLETFLOW_WORKER_STICKY_TIMEOUT_S": "1",
        # The same risk limits as the test stack (and its allowlisted shared test card).
        "WALLETFLOW_RISK_REVIEW_AMOUNT": str(stack.settings.risk_review_amount),
        "WALLETFLOW_RISK_REJECT_AMOUNT": str(stack.settings.risk_reject_amount),
        "WALLETFLOW_RISK_SHARED_CARD_ALLOWLIST": json.dumps(list(stack.settings.risk_shared_card_allowlist)),
        **extra_env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_line(proc: asyncio.subprocess.Process, marker: str, timeout_s: float = 90) -> None:
    assert proc.stderr is not None

    async def read() -> None:
        while True:
            line = await proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"worker exited before logging {marker!r}")
            if marker in line.decode(errors="replace"):
                return

    await asyncio.wait_for(read(), timeout_s)


async def drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading a worker's log so a full pipe never blocks it."""
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


@dataclass
class CrashRun:
    """A worker that pauses at ``point`` on a task queue of its own, and its replacement."""

    stack: Stack
    point: str
    task_queue: str
    first: asyncio.subprocess.Process
    second: asyncio.subprocess.Process | None = None
    draining: asyncio.Task[None] | None = None

    def app(self, **overrides: object) -> Any:
        # A killed worker's step is retried after the call timeout: 8 s here instead of 30.
        return self.stack.http_for(self.stack.app_with(task_queue=self.task_queue, topup_call_timeout_s=8, **overrides))

    async def crash(self) -> None:
        """Once the first worker pauses at its point: start the replacement (as in a deployment
        with several workers), then kill the first (SIGKILL)."""
        await wait_for_line(self.first, f"crash test: pausing {self.point}")
        self.second = await spawn_worker(self.stack, self.task_queue)
        await wait_for_line(self.second, "worker running")
        self.draining = asyncio.create_task(drain(self.second))
        await kill(self.first)


@asynccontextmanager
async def crash_test(stack: Stack, point: str) -> AsyncIterator[CrashRun]:
    task_queue = f"walletflow-crash-{uuid.uuid4().hex[:8]}"
    first = await spawn_worker(stack, task_queue, WALLETFLOW_CRASH_PAUSE_AT=point, WALLETFLOW_CRASH_PAUSE_S="60")
    run = CrashRun(stack, point, task_queue, first)
    try:
        yield run
    finally:
        for proc in (run.first, run.second):
            if proc is not None and proc.returncode is None:
                await kill(proc)
        if run.draining is not None:
            await run.draining


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


async def intents_of(stack: Stack, top_up_id: str) -> int:
    """PaymentIntents at Stripe carrying this top-up's id (looked up at localstripe directly)."""
    page = await stack.gateway.client.v1.payment_intents.list_async(params={"limit": 100})
    count = 0
    while True:
        count += sum(1 for pi in page.data if (pi.to_dict().get("metadata") or {}).get("walletflow_top_up_id") == top_up_id)
        if not page.has_more:
            return count
        page = await stack.gateway.client.v1.payment_intents.list_async(
            params={"limit": 100, "starting_after": page.data[-1].id})


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
        assert await intents_of(stack, top_up["id"]) == 1
        waiting = await stack.wait_for(top_up["id"], "awaiting_payment", timeout_s=90)
        assert waiting.stripe_payment_intent_id is not None
        assert await intents_of(stack, top_up["id"]) == 1  # the retry found it instead of making another
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
