"""Shared steps of the auto-recharge tests (real Temporal dev server, localstripe, both databases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from temporalio.client import WorkflowHandle

from activities.recharge import signal_recharge
from tests.services import Stack
from walletflow.payments.repository import top_ups
from walletflow.recharge import repository as recharge_repo
from walletflow.recharge.contracts import RechargeProgress, RechargeSignal, recharge_workflow_id
from walletflow.webhooks.outbox import outbound_events
from workflows.recharge import AutoRechargeWorkflow

VISA = "4242424242424242"
DECLINES_WHEN_CHARGED = "4000000000000341"
THREE_D_SECURE = "4000002500003155"


async def funded_customer(stack: Stack, amount: int) -> uuid.UUID:
    customer = await stack.new_customer()
    if amount:
        await stack.ledger.credit(customer, "USD", amount, f"seed-{customer}", source="paid")
    return customer


async def put_policy(stack: Stack, customer: uuid.UUID, card: str = VISA, **overrides: Any) -> dict[str, Any]:
    """``PUT /v1/customers/{id}/auto-recharge`` with a fresh card; asserts it was accepted."""
    body = {
        "asset": "USD", "threshold": 1000, "target": 5000, "payment_method_id": await stack.card(card),
        "daily_cap": 100_000, "monthly_cap": 500_000, "enabled": True,
        "consent": {"at": "2026-11-01T09:30:00Z", "method": "checkbox", "text": "Refill my wallet from my card."},
        **overrides,
    }
    response = await stack.http.put(f"/v1/customers/{customer}/auto-recharge", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def charges(stack: Stack, customer: uuid.UUID) -> list[Any]:
    """The wallet's recharge charges (top-ups made by its recharge workflow), oldest first."""
    async with stack.engine.connect() as conn:
        query = (
            select(top_ups).where(top_ups.c.workflow_id == recharge_workflow_id(str(customer), "USD"))
            .order_by(top_ups.c.created_at)
        )
        return list((await conn.execute(query)).all())


async def events(stack: Stack, customer: uuid.UUID, event_type: str | None = None) -> list[Any]:
    async with stack.engine.connect() as conn:
        query = select(outbound_events).where(outbound_events.c.customer_id == customer)
        if event_type is not None:
            query = query.where(outbound_events.c.event_type == event_type)
        return list((await conn.execute(query.order_by(outbound_events.c.created_at))).all())


async def triggers(stack: Stack, customer: uuid.UUID) -> list[Any]:
    async with stack.engine.connect() as conn:
        query = select(recharge_repo.triggers).where(recharge_repo.triggers.c.customer_id == customer)
        return list((await conn.execute(query.order_by(recharge_repo.triggers.c.id))).all())


async def wait_until(check: Any, what: str, timeout_s: float = 30) -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def settled_charges(stack: Stack, customer: uuid.UUID, count: int, timeout_s: float = 30) -> list[Any]:
    """Wait until ``count`` charges exist and none is in flight."""

    async def check() -> list[Any] | None:
        rows = await charges(stack, customer)
        done = [r for r in rows if r.status in ("succeeded", "failed", "refunded")]
        return rows if len(rows) >= count and len(done) == len(rows) else None

    return await wait_until(check, f"{count} settled charge(s)", timeout_s)


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


@asynccontextmanager
async def recharge_on(stack: Stack, task_queue: str, customer: uuid.UUID) -> AsyncIterator[WorkflowHandle[AutoRechargeWorkflow, RechargeProgress]]:
    """Start the wallet's recharge workflow on a test's own task queue (so its activities run on
    that test's worker, not the stack's), idle while the wallet is over its threshold: the
    threshold trigger of a later debit is relayed to this run, whichever relay takes it.
    Terminated at the end, as no worker serves that task queue after the test."""
    settings = stack.settings.model_copy(update={"task_queue": task_queue})
    await signal_recharge(stack.client, settings, str(customer), "USD", RechargeSignal(source="sweep"))
    handle = stack.client.get_workflow_handle_for(AutoRechargeWorkflow.run, recharge_workflow_id(str(customer), "USD"))
    try:
        yield handle
    finally:
        description = await handle.describe()
        if description.status is not None and description.status.name == "RUNNING":
            await handle.terminate("crash test over")
