"""A worker killed (SIGKILL) between the charge and the credit, or between the credit and its
report to Temporal: a new worker process finishes the top-up and the wallet is credited once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

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


@pytest.mark.parametrize("point", ["before_credit", "after_credit"])
async def test_a_worker_killed_around_the_credit_credits_exactly_once(stack: Stack, point: str) -> None:
    task_queue = f"walletflow-crash-{uuid.uuid4().hex[:8]}"
    customer = await stack.new_customer()
    first = await spawn_worker(stack, task_queue, WALLETFLOW_CRASH_PAUSE_AT=point, WALLETFLOW_CRASH_PAUSE_S="60")
    second = None
    try:
        async with stack.http_for(stack.app_with(task_queue=task_queue)) as http:
            top_up = await start(stack, customer, 4200, http=http)
        await stack.pay(top_up["payment_intent_id"])
        await wait_for_line(first, f"crash test: pausing {point}")
        # The replacement is up before the crash, as in a real deployment with several workers.
        second = await spawn_worker(stack, task_queue)
        await wait_for_line(second, "worker running")
        draining = asyncio.create_task(drain(second))
        await kill(first)

        if point == "before_credit":
            assert (await stack.topups.get(uuid.UUID(top_up["id"]))).status == "scoring"
            assert await stack.credits_for(top_up["id"]) == 0
        else:  # the credit committed; Temporal never heard that the activity finished
            assert await stack.credits_for(top_up["id"]) == 1

        handle = stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"])
        progress = await asyncio.wait_for(handle.result(), 60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                await kill(proc)
    await draining

    assert progress.status == "succeeded"
    assert (await stack.topups.get(uuid.UUID(top_up["id"]))).status == "succeeded"
    assert await stack.balance(customer) == 4200
    assert await stack.credits_for(top_up["id"]) == 1
    assert [(g.source, g.amount) for g in await stack.ledger.grants(customer)] == [("paid", 4200)]
    assert (await stack.ledger.audit()).ok
