"""Top-up workflow throughput, next to a bare one-activity workflow on the same Temporal server.

What is measured (``python -m bench.topups [--json] [--quick]``): N top-ups started at once
through the payments service and the real ``TopUpWorkflow`` (PaymentIntent at localstripe, paid
with the test card, webhook or poll, risk score, ledger credit), on a fresh PostgreSQL database,
a Temporal dev server (in memory) and one worker; the rate is top-ups credited per second from
the first start to the last credit. The baseline is a workflow that runs one empty activity,
started N at a time on the same server and worker: what Temporal alone allows here. Each top-up
must end credited exactly once (else exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.bare_workflow import BareWorkflow, nothing
from bench.ledger import fresh_database
from bench.webhooks import free_port, temporal_binary
from walletflow import temporal_client as temporal
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.ledger.service import Ledger
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.settings import Settings
from walletflow.temporal_client import CUSTOMER_ID, connect
from worker.main import build_worker

STRIPE_KEY = "sk_test_walletflow"
#: localstripe's fingerprint of the test Visa: every bench customer pays with it, which the risk
#: model would rightly call a fake-account ring, so it is allowlisted like a platform's own card.
VISA_FINGERPRINT = hashlib.sha1(b"4242424242424242").hexdigest()[:16]
AMOUNT = 2500


@dataclass
class Report:
    top_ups: int
    top_ups_per_s: float
    top_up_seconds: float
    baseline_workflows_per_s: float
    ratio: float
    credited_once: bool


async def _start_localstripe(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "walletflow.devtools.localstripe", "--port", str(port),
                             "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.get(f"http://127.0.0.1:{port}/v1/customers", headers={"Authorization": f"Bearer {STRIPE_KEY}"})
                return proc
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    proc.kill()
    raise SystemExit("localstripe did not start")


async def benchmark(url: str, count: int) -> Report:
    await upgrade_async(url)
    engine = create_engine(url, pool_size=10)
    stripe_port = free_port()
    stripe = await _start_localstripe(stripe_port)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=[CUSTOMER_ID],
        data_converter=pydantic_data_converter,
        dev_server_extra_args=["--headless", "--dynamic-config-value", "frontend.enableServerVersionCheck=false"],
    )
    try:
        settings = Settings(
            database_url=url, temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-topups-{uuid.uuid4().hex[:6]}", stripe_api_base=f"http://127.0.0.1:{stripe_port}",
            stripe_api_key=STRIPE_KEY, topup_poll_interval_s=1, risk_shared_card_allowlist=[VISA_FINGERPRINT],
        )
        client = await connect(settings)
        ledger, topups, gateway = Ledger(engine), TopUps(engine), StripeGateway.from_settings(settings)
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
        customers = [(await ledger.create_customer(f"bench-{uuid.uuid4().hex}")).id for _ in range(count)]

        async with build_worker(client, engine, settings):
            async def one(customer: uuid.UUID) -> uuid.UUID:
                top_up, _ = await topups.create(f"bench-{uuid.uuid4().hex}", customer, AMOUNT, "USD")
                handle = await temporal.start_top_up(client, top_up, settings)
                created = await temporal.payment_details(handle, 60)
                assert created is not None and created.payment_intent_id is not None
                intents = gateway.client.v1.payment_intents
                await intents.update_async(created.payment_intent_id, params={"payment_method": "pm_card_visa"})
                await intents.confirm_async(created.payment_intent_id)
                await handle.result()
                return top_up.id

            started = time.monotonic()
            ids = await asyncio.gather(*(one(c) for c in customers))
            top_up_seconds = time.monotonic() - started

        bare = Worker(client, task_queue=f"bench-bare-{uuid.uuid4().hex[:6]}", workflows=[BareWorkflow],
                      activities=[nothing])
        async with bare:
            started = time.monotonic()
            await asyncio.gather(*(
                client.execute_workflow(BareWorkflow.run, id=f"bench-bare-{uuid.uuid4().hex}", task_queue=bare.task_queue)
                for _ in range(count)
            ))
            bare_seconds = time.monotonic() - started

        statuses = [(await topups.get(i)).status for i in ids]
        balances = [(await ledger.balance(c, "USD")).posted for c in customers]
        credited_once = statuses == ["succeeded"] * count and balances == [AMOUNT] * count
        rate, baseline = count / top_up_seconds, count / bare_seconds
        return Report(count, round(rate, 2), round(top_up_seconds, 2), round(baseline, 2), round(rate / baseline, 3),
                      credited_once)
    finally:
        await env.shutdown()
        stripe.terminate()
        await dispose(engine)


async def run(count: int) -> Report:
    async with fresh_database() as url:
        return await benchmark(url, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="20 top-ups instead of 100")
    args = parser.parse_args()
    report = asyncio.run(run(20 if args.quick else 100))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(f"top-ups credited end to end: {report.top_ups} in {report.top_up_seconds} s = {report.top_ups_per_s}/s")
        print(f"baseline (one-activity workflow, same server and worker): {report.baseline_workflows_per_s}/s")
        print(f"ratio: {report.ratio}; every top-up credited exactly once: {report.credited_once}")
    sys.exit(0 if report.credited_once else 1)


if __name__ == "__main__":
    main()
