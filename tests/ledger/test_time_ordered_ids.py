"""Ledger transactions and holds get time-ordered ids (UUIDv7, :mod:`walletflow.ledger.ids`), so
the indexes keyed by them grow at their right-hand edge (migration 0024 for the usage batch
functions). On both databases, through every path that makes one: credit, debit, hold, capture,
a usage batch, and on PostgreSQL the batch function that locks first (``wf_ingest``)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from walletflow.catalog.service import Catalog
from walletflow.db.hotpath import hot_path
from walletflow.ledger.ids import time_ordered_id
from walletflow.ledger.service import Ledger
from walletflow.usage import repository as usage_repo
from walletflow.usage.service import Usage

#: The database tests share the session's event loop (the engines live there).
database_test = pytest.mark.asyncio(loop_scope="session")


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


class Window:
    """The ids made inside a ``with made_now()`` block."""

    def __init__(self) -> None:
        self.start = self.end = 0

    def check(self, *ids: uuid.UUID | None) -> None:
        assert ids
        for value in ids:
            assert value is not None
            assert (value.version, value.variant) == (7, uuid.RFC_4122), value
            assert self.start <= _millis(value) <= self.end, (value, self.start, self.end)


@contextmanager
def made_now() -> Iterator[Window]:
    window = Window()
    window.start = time.time_ns() // 1_000_000
    yield window
    window.end = time.time_ns() // 1_000_000


def test_ids_are_version_7_start_with_the_millisecond_and_sort_by_it() -> None:
    with made_now() as window:
        first = [time_ordered_id() for _ in range(1_000)]
    window.check(*first)
    assert len(set(first)) == len(first)
    time.sleep(0.002)
    later = time_ordered_id()
    assert all(later > earlier for earlier in first)
    # 74 random bits: across 1,000 ids every one of them varies
    varying = 0
    for value in first:
        varying |= value.int ^ first[0].int
    assert (varying & ((1 << 80) - 1)).bit_count() == 74


@database_test
async def test_credits_debits_holds_and_captures_get_time_ordered_ids(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    with made_now() as window:
        credit = await ledger.credit(customer, usd, 1_000, f"c-{uuid.uuid4()}")
        debit = await ledger.debit(customer, usd, 100, f"d-{uuid.uuid4()}")
        hold = await ledger.authorize(customer, usd, 200, f"h-{uuid.uuid4()}")
        captured = await ledger.capture(hold.id, 150)
    window.check(credit.transaction_id, debit.transaction_id, hold.id, captured.capture_transaction_id)


@database_test
async def test_usage_batches_give_their_transactions_time_ordered_ids(
    engine: AsyncEngine, ledger: Ledger, usd: str, customer: uuid.UUID, backend: str
) -> None:
    catalog = Catalog(engine)
    product = unique_code("ids").lower()
    await catalog.create_product(product, "Time-ordered ids")
    version = await catalog.create_version(product, [
        {"event_type": "ids.tokens", "asset": usd, "model": "per_unit", "quantity_field": "n", "unit_price": "1"}])
    await catalog.publish(product, version.version)
    await ledger.credit(customer, usd, 1_000, f"c-{uuid.uuid4()}")
    now = dt.datetime.now(dt.UTC)
    with made_now() as window:
        results = await Usage(engine, catalog).ingest([
            {"id": f"ev-{uuid.uuid4().hex}", "customer_id": str(customer), "event_type": "ids.tokens",
             "occurred_at": now.isoformat(), "data": {"n": n}} for n in (1, 2, 3)])
    assert [r.status for r in results] == ["debited"] * 3
    window.check(*(r.transaction_id for r in results))

    if backend == "postgresql":  # and the function a batch whose plan went stale runs (wf_ingest)
        payload = orjson.dumps([
            {"idx": i, "customer_id": str(customer), "event_id": f"locked-{uuid.uuid4().hex}",
             "event_type": "ids.tokens", "occurred_at": now, "asset": usd, "amount": n, "product_code": product,
             "version": version.version, "data": {"n": n}, "costs": None}
            for i, n in enumerate((4, 5))]).decode()
        with made_now() as window:
            outcomes = await usage_repo.ingest_function(hot_path(engine), payload, now, usage_repo.LOCKED)
        assert [o[0] for o in outcomes] == ["debited", "debited"]
        window.check(*(o[2] for o in outcomes))
