"""``wf_optimistic_ingest`` (migrations 0021, 0022): a usage batch planned and written before its wallets
are locked is kept only if its plan still holds once they are; otherwise it is rolled back and
planned again under the locks (``wf_ingest``), and the caller sees the answer a locked run gives.

Each test makes the race happen on purpose: another transaction writes to the batch's wallet
with ``wf_ingest`` and keeps the wallet locked until the optimistic batch has planned, written
and started waiting for the lock; then it commits. PostgreSQL only, on a database of its own
(the races leave wallets other tests must not share).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.db import private_postgres
from walletflow.catalog.service import Catalog
from walletflow.db.hotpath import hot_path
from walletflow.ledger.service import Ledger
from walletflow.usage import repository as usage_repo
from walletflow.usage.service import Usage

pytestmark = pytest.mark.asyncio(loop_scope="session")
EVENT_TYPE = "tokens"
#: What the competing transaction does while it holds the wallet's lock.
Compete = Callable[[asyncpg.Connection], Awaitable[None]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    async with private_postgres(pool_size=4) as engine:
        yield engine


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def priced(pg_engine: AsyncEngine) -> tuple[Usage, str]:
    """Usage with one price: ``data.n`` units of a fresh asset, at 1 each."""
    asset, catalog = unique_code("L"), Catalog(pg_engine)
    await Ledger(pg_engine).create_asset(asset, "Late-lock credits", 0, "custom")
    product = unique_code("p").lower()
    await catalog.create_product(product, "Late locks")
    version = await catalog.create_version(product, [
        {"event_type": EVENT_TYPE, "asset": asset, "model": "per_unit", "quantity_field": "n", "unit_price": "1"}])
    await catalog.publish(product, version.version)
    usage = Usage(pg_engine, catalog)
    # One batch first, so the races below do not include opening the hot path's connections.
    customer = await wallet(Ledger(pg_engine), asset, [(10, 0)])
    assert [r.status for r in await usage.ingest(events(customer, 1))] == ["debited"]
    return usage, asset


async def wallet(ledger: Ledger, asset: str, grants: list[tuple[int, int]]) -> uuid.UUID:
    customer = (await ledger.create_customer(f"late-{uuid.uuid4().hex}")).id
    for amount, priority in grants:
        await ledger.credit(customer, asset, amount, f"c-{uuid.uuid4()}", priority=priority)
    return customer


def events(customer: uuid.UUID, *amounts: int) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [{"id": f"ev-{uuid.uuid4().hex}", "customer_id": str(customer), "event_type": EVENT_TYPE,
             "occurred_at": now, "data": {"n": n}} for n in amounts]


def priced_payload(customer: uuid.UUID, asset: str, *amounts: int) -> str:
    """A batch as ``wf_ingest`` takes it (already priced), for the competing transaction."""
    return json.dumps([
        {"idx": i, "customer_id": str(customer), "event_id": f"other-{uuid.uuid4().hex}", "event_type": EVENT_TYPE,
         "occurred_at": dt.datetime.now(dt.UTC).isoformat(), "asset": asset, "amount": n,
         "product_code": "other", "version": 1, "data": {}, "costs": None}
        for i, n in enumerate(amounts)
    ])


def ingesting(payload: str) -> Compete:
    """A competitor that ingests ``payload`` with ``wf_ingest`` (which locks its wallets)."""

    async def compete(conn: asyncpg.Connection) -> None:
        outcomes = await conn.fetch("SELECT outcome FROM wf_ingest($1::text::jsonb, now())", payload)
        assert {r["outcome"] for r in outcomes} == {"debited"}

    return compete


def expiring(hold_id: uuid.UUID) -> Compete:
    """A competitor that expires a hold, as the settlement sweep does: the wallet's available
    amount goes up."""

    async def compete(conn: asyncpg.Connection) -> None:
        amount, account = await conn.fetchrow(
            "UPDATE holds SET status = 'expired', resolved_at = now() WHERE id = $1 AND status = 'pending' "
            "RETURNING amount, account_id", hold_id)
        await conn.execute("UPDATE accounts SET held = held - $1 WHERE id = $2", amount, account)

    return compete


async def race(engine: AsyncEngine, compete: Compete, batch: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``batch`` while another transaction does ``compete`` and keeps the wallet locked
    until ``batch`` has written and waits for it; then commit the competitor."""
    dsn = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
    other = await asyncpg.connect(dsn)
    try:
        async with other.transaction():
            await compete(other)
            task = asyncio.ensure_future(batch())
            for _ in range(500):
                # Whoever waits for a lock now waits for the competitor: only the batch can.
                # (Not matched by query text: for a prepared statement run again, PostgreSQL may
                # still show the connection's previous query.)
                waiting = await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                if waiting or task.done():
                    break
                await asyncio.sleep(0.01)
            if task.done():
                task.result()  # raises what the batch raised
            assert waiting == 1, "the batch never waited for the wallet lock"
        return await task  # the competitor committed when its transaction block closed
    finally:
        await other.close()


async def test_a_plan_that_still_holds_is_kept_though_the_balance_moved(
    pg_engine: AsyncEngine, priced: tuple[Usage, str]
) -> None:
    usage, asset = priced
    ledger = Ledger(pg_engine)
    customer = await wallet(ledger, asset, [(1_000, 0)])
    replanned = usage.replanned

    results = await race(pg_engine, ingesting(priced_payload(customer, asset, 400)),
                         lambda: usage.ingest(events(customer, 100, 50)))

    assert [(r.status, r.amount) for r in results] == [("debited", 100), ("debited", 50)]
    assert usage.replanned == replanned  # written before the lock, kept after it
    assert (await ledger.balance(customer, asset)).posted == 1_000 - 400 - 150
    assert (await ledger.audit()).ok


async def test_a_batch_that_no_longer_fits_is_planned_again_under_the_locks(
    pg_engine: AsyncEngine, priced: tuple[Usage, str]
) -> None:
    usage, asset = priced
    ledger = Ledger(pg_engine)
    customer = await wallet(ledger, asset, [(500, 0)])
    replanned = usage.replanned

    # Planned on 500 both fit; after the competitor's 400, only the first does.
    results = await race(pg_engine, ingesting(priced_payload(customer, asset, 400)),
                         lambda: usage.ingest(events(customer, 60, 50)))

    assert [(r.status, r.amount) for r in results] == [("debited", 60), ("insufficient_funds", 50)]
    assert usage.replanned == replanned + 1
    assert (await ledger.balance(customer, asset)).posted == 500 - 400 - 60
    assert (await ledger.audit()).ok


async def test_a_stale_plan_writes_nothing_and_says_so(pg_engine: AsyncEngine, priced: tuple[Usage, str]) -> None:
    _, asset = priced
    ledger = Ledger(pg_engine)
    customer = await wallet(ledger, asset, [(500, 0)])
    mine = priced_payload(customer, asset, 60, 50)

    with pytest.raises(asyncpg.SerializationError):
        await race(pg_engine, ingesting(priced_payload(customer, asset, 400)),
                   lambda: usage_repo.ingest_function(hot_path(pg_engine), mine, dt.datetime.now(dt.UTC)))

    async with pg_engine.connect() as conn:
        mine_ids = [e["event_id"] for e in json.loads(mine)]
        stored = (await conn.exec_driver_sql(
            "SELECT count(*) FROM usage_events WHERE event_id = ANY($1)", (mine_ids,))).scalar_one()
    assert stored == 0
    assert (await ledger.balance(customer, asset)).posted == 100
    assert (await ledger.audit()).ok


async def test_draws_planned_on_grants_that_changed_are_planned_again(
    pg_engine: AsyncEngine, priced: tuple[Usage, str]
) -> None:
    """The balance has room either way; only the grants differ. Planned, the 50 came from the
    first grant (100 left); after the competitor's 80, it must take 20 from the first and 30
    from the second."""
    usage, asset = priced
    ledger = Ledger(pg_engine)
    customer = await wallet(ledger, asset, [(100, 0), (1_000, 1)])
    replanned = usage.replanned

    results = await race(pg_engine, ingesting(priced_payload(customer, asset, 80)), lambda: usage.ingest(events(customer, 50)))

    assert [(r.status, r.amount) for r in results] == [("debited", 50)]
    assert usage.replanned == replanned + 1
    grants = sorted((g.priority, g.remaining) for g in await ledger.grants(customer))
    assert grants == [(0, 0), (1, 970)]
    assert (await ledger.audit()).ok


async def test_a_refusal_planned_on_funds_that_grew_is_planned_again(
    pg_engine: AsyncEngine, priced: tuple[Usage, str]
) -> None:
    """Planned with 300 of 500 held, the 100 did not fit; once the hold has expired it does."""
    usage, asset = priced
    ledger = Ledger(pg_engine)
    customer = await wallet(ledger, asset, [(500, 0)])
    hold = await ledger.authorize(customer, asset, 300, f"h-{uuid.uuid4()}")
    replanned = usage.replanned

    results = await race(pg_engine, expiring(hold.id), lambda: usage.ingest(events(customer, 150, 100)))

    assert [(r.status, r.amount) for r in results] == [("debited", 150), ("debited", 100)]
    assert usage.replanned == replanned + 1
    assert (await ledger.balance(customer, asset)).available == 500 - 250
    assert (await ledger.audit()).ok
