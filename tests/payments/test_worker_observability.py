"""A standalone worker (``python -m worker``, as deployed) serves Prometheus metrics on
``WALLETFLOW_WORKER_METRICS_PORT`` and logs JSON lines with no secret in them: checked on a real
top-up carried by that worker through Temporal and localstripe."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import httpx
import pytest

from tests.services import Stack, free_port, start
from tests.workers import spawn_worker
from walletflow.observability.logs import SECRET

pytestmark = pytest.mark.asyncio(loop_scope="session")


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_worker_serves_its_metrics_and_logs_json_without_secrets(stack: Stack) -> None:
    task_queue = f"walletflow-obs-{uuid.uuid4().hex[:8]}"
    port = free_port()
    worker = await spawn_worker(stack, task_queue, WALLETFLOW_WORKER_METRICS_PORT=str(port),
                                WALLETFLOW_STRIPE_WEBHOOK_SECRET=stack.settings.stripe_webhook_secret)
    assert worker.stderr is not None
    err: list[str] = []
    running = asyncio.Event()

    async def collect() -> None:  # keep reading, so a full pipe never blocks the worker
        while line := await worker.stderr.readline():  # type: ignore[union-attr]
            err.append(line.decode())
            if "worker running" in err[-1]:
                running.set()

    collecting = asyncio.create_task(collect())
    try:
        await asyncio.wait_for(running.wait(), 30)
        customer = await stack.new_customer()
        async with stack.http_for(stack.app_with(task_queue=task_queue)) as http:
            top_up = await start(stack, customer, 2500, http=http)
        await stack.pay(top_up["payment_intent_id"])
        await stack.wait_for(top_up["id"], "succeeded")
        async with httpx.AsyncClient(timeout=10) as http:
            scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 60)
        await collecting
    assert worker.returncode == 0, "".join(err[-30:])  # how it ended, if it did not end cleanly

    # This process carried exactly one top-up: its counters say so.
    assert value(scraped, 'walletflow_activity_duration_seconds_count{activity="topup.credit",outcome="ok"}') == 1
    assert value(scraped, 'walletflow_activity_duration_seconds_count{activity="topup.score",outcome="ok"}') == 1
    assert value(scraped, 'walletflow_risk_decisions_total{decision="approve"}') == 1
    assert value(scraped, 'walletflow_topups_total{status="succeeded"}') == 1

    lines = [json.loads(line) for line in err if line.strip()]  # every line is JSON
    assert any(r["logger"] == "walletflow.worker" and r["message"].startswith("worker running on task queue")
               and r["level"] == "INFO" for r in lines)
    assert not SECRET.search("".join(err))
