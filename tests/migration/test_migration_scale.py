"""The migration at scale and under failure: 1,000 customers (several workflow runs chained by
continue-as-new), and a worker killed (SIGKILL) mid-page: a new worker finishes the job and
nothing is imported twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.migration.helpers import Account, fresh_localstripe, migration_stack
from tests.services import Stack
from tests.workers import drain, kill, spawn_worker, wait_for_line
from walletflow.ledger import repository as ledger_repo
from walletflow.migration.service import customer_links

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def seed(account: Account, count: int, concurrency: int = 25) -> dict[str, int]:
    """``count`` customers, customer i with a credit balance of 100 + i cents and every tenth
    with a paid grant of 1,000 cents too. Returns the expected credit per customer."""
    semaphore = asyncio.Semaphore(concurrency)
    expected: dict[str, int] = {}

    async def one(i: int) -> None:
        async with semaphore:
            cus = await account.customer(balance=-(100 + i))
            credit = 100 + i
            if i % 10 == 0:
                await account.grant(cus, 1000, priority=20)
                credit += 1000
            expected[cus] = credit

    await asyncio.gather(*(one(i) for i in range(count)))
    return expected


async def migrated_grants(stack: Stack) -> dict[str, int]:
    """Ledger grants made by migrations in this database, by key: each key exactly once."""
    g = ledger_repo.grants
    async with stack.engine.connect() as conn:
        rows = (await conn.execute(select(g.c.idempotency_key, func.count()).where(
            g.c.idempotency_key.like("migration:stripe:%")).group_by(g.c.idempotency_key))).all()
    return {r[0]: int(r[1]) for r in rows}


async def test_a_thousand_customers(stack: Stack, tmp_path: Path) -> None:
    with fresh_localstripe(tmp_path) as url:
        async with migration_stack(stack, url, migration_page_size=100, migration_pages_per_run=3,
                                   migration_stripe_rps=5000.0) as ms:
            expected = await seed(ms.account, 1000)
            keys_before = await migrated_grants(stack)
            started = time.monotonic()
            run = await ms.run(dry_run=False, timeout_s=300)
            elapsed = time.monotonic() - started
            report = run["report"]
            c = report["counts"]
            assert (c["customers"], c["created"], c["grants_imported"], c["differences"]) == (1000, 1000, 1100, 0)
            assert report["amounts"]["USD"]["imported"] == sum(expected.values())
            assert report["amounts"]["USD"]["walletflow_credit"] == report["amounts"]["USD"]["stripe_credit"]
            assert run["pages_done"] == 10
            # Ten pages at three per run: the workflow continued as new (bounded history).
            handle = stack.client.get_workflow_handle(run["workflow_id"])
            history = [e async for e in handle.fetch_history_events()]
            assert len(history) < 100
            started_event = history[0].workflow_execution_started_event_attributes
            assert started_event.continued_execution_run_id  # this run continued an earlier one
            new_keys = set(await migrated_grants(stack)) - set(keys_before)
            assert len(new_keys) == 1100
            async with stack.engine.connect() as conn:
                links = {r.stripe_customer_id: r.customer_id for r in await conn.execute(
                    select(customer_links).where(customer_links.c.stripe_customer_id.in_(list(expected))))}
            for stripe_id in list(expected)[::97]:  # spot checks, to the cent
                assert (await stack.ledger.balance(links[stripe_id], "USD")).posted == expected[stripe_id]
            print(f"\n1000 customers migrated in {elapsed:.1f} s ({1000 / elapsed:.0f}/s) on {stack.backend}")


async def test_a_worker_killed_mid_page_and_a_new_one_finishes_importing_nothing_twice(
    stack: Stack, tmp_path: Path
) -> None:
    with fresh_localstripe(tmp_path) as url:
        task_queue = f"walletflow-migration-crash-{uuid.uuid4().hex[:8]}"
        env = {"WALLETFLOW_STRIPE_API_BASE": url, "WALLETFLOW_MIGRATION_PAGE_SIZE": "20",
               "WALLETFLOW_MIGRATION_STRIPE_RPS": "1000", "WALLETFLOW_MIGRATION_PAGES_PER_RUN": "2"}
        async with migration_stack(stack, url, worker=False, task_queue=task_queue, migration_page_size=20) as ms:
            expected = await seed(ms.account, 60)
            first = await spawn_worker(stack, task_queue, **env, WALLETFLOW_CRASH_MIGRATION_AFTER="25")
            second = draining = None
            try:
                started = await ms.http.post("/v1/migrations/stripe", json={"dry_run": False})
                assert started.status_code == 202, started.text
                migration_id = started.json()["id"]
                await wait_for_line(first, "crash test: pausing mid-page", timeout_s=60)
                # Page two is half imported: the first page and some of the second are in.
                half = await ms.migrations.get(uuid.UUID(migration_id))
                assert half.status == "running" and half.pages_done == 1
                second = await spawn_worker(stack, task_queue, **env)
                await wait_for_line(second, "worker running")
                draining = asyncio.create_task(drain(second))
                await kill(first)
                run = await ms.wait(migration_id, timeout_s=120)
            finally:
                for proc in (first, second):
                    if proc is not None and proc.returncode is None:
                        await kill(proc)
            if draining is not None:
                await draining

            c = run["report"]["counts"]
            assert (c["customers"], c["created"], c["grants_imported"], c["differences"]) == (60, 60, 66, 0)
            assert run["report"]["amounts"]["USD"]["imported"] == sum(expected.values())
            async with stack.engine.connect() as conn:
                links = {r.stripe_customer_id: r.customer_id for r in await conn.execute(
                    select(customer_links).where(customer_links.c.stripe_customer_id.in_(list(expected))))}
            assert len(links) == 60
            for stripe_id, credit in expected.items():  # a grant imported twice would show here
                assert (await stack.ledger.balance(links[stripe_id], "USD")).posted == credit
                assert len(await stack.ledger.grants(links[stripe_id])) == (2 if credit >= 1000 else 1)
            assert (await stack.ledger.audit()).ok
