"""Group commit of PostgreSQL debits and holds (walletflow.ledger.batching, ``wf_debit_many``
and ``wf_authorize_many``).

Every PostgreSQL debit and hold goes through a group function (alone at low load), so the whole
ledger suite already holds them to ``wf_debit``'s and ``wf_authorize``'s rules one at a time.
These tests cover what only groups do: many items in one statement, on one wallet and on
several, each getting exactly what it would have got alone; concurrent callers actually sharing
statements; and a group that fails as a whole falling back to one item at a time without losing
or doubling anything.

The feature exists only on PostgreSQL (SQLite has no server-side debit), so this module runs on
a PostgreSQL database of its own rather than on both backends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.db import private_postgres
from tests.ledger.helpers import FakeClock
from walletflow.db.hotpath import hot_path
from walletflow.errors import IdempotencyConflict, InsufficientFunds
from walletflow.ledger import repository as repo
from walletflow.ledger.batching import (
    DEBIT_GROUPS,
    HOLD_GROUPS,
    PendingDebit,
    PendingHold,
    group_writer,
)
from walletflow.ledger.rules import request_hash
from walletflow.ledger.service import Ledger
from walletflow.usage import repository as usage_repo


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    async with private_postgres(pool_size=10) as engine:
        yield engine


@pytest.fixture
def ledger(pg_engine: AsyncEngine) -> Ledger:
    return Ledger(pg_engine)


@pytest_asyncio.fixture(loop_scope="session")
async def asset(ledger: Ledger) -> str:
    code = unique_code("G")
    await ledger.create_asset(code, "Group test credits", 0, "custom")
    return code


async def wallet(ledger: Ledger, asset: str, grants: list[tuple[int, int]]) -> uuid.UUID:
    """A customer credited with (amount, priority) grants, in that order."""
    customer = (await ledger.create_customer(f"g-{uuid.uuid4().hex}")).id
    for amount, priority in grants:
        await ledger.credit(customer, asset, amount, f"c-{uuid.uuid4()}", priority=priority)
    return customer


def debit(customer: uuid.UUID, asset: str, amount: int, key: str, **metadata: Any) -> PendingDebit:
    digest = request_hash(
        "debit", customer_id=customer, asset=asset, amount=amount, kind="usage", counter="revenue",
        metadata=metadata,
    )
    return PendingDebit(customer, asset, amount, key, digest, "usage", "revenue", metadata, uuid.uuid4())


def shape(row: asyncpg.Record, grant_order: dict[str, int]) -> tuple[Any, ...]:
    """A result with grant ids replaced by their place in the wallet's consumption order, so two
    wallets credited alike compare equal."""
    draws = None if row["draws"] is None else [(grant_order.get(g), n) for g, n in row["draws"]]
    return row["outcome"], draws, row["available"]


async def grant_order(ledger: Ledger, customer: uuid.UUID) -> dict[str, int]:
    grants = sorted(await ledger.grants(customer), key=lambda g: (g.priority, g.created_at))
    return {str(g.id): i for i, g in enumerate(grants)}


async def test_a_group_gives_each_debit_what_it_would_get_alone(ledger: Ledger, asset: str) -> None:
    """The same mix of debits, once as one group and once one at a time through ``wf_debit``,
    on twin wallets: the same outcomes, the same draws from the same grants, the same balances."""
    engine = ledger.engine
    results = {}
    for mode in ("group", "alone"):
        # Two grants (priority 0 drawn first), a second wallet, and a frozen one.
        main = await wallet(ledger, asset, [(100, 5), (50, 0)])
        other = await wallet(ledger, asset, [(30, 0)])
        frozen = await wallet(ledger, asset, [(10, 0)])
        await ledger.freeze(frozen)
        await ledger.debit(main, asset, 5, f"{mode}-earlier")  # posted before the group: replayed
        batch = [
            debit(main, asset, 48, f"{mode}-1"),          # takes the priority-0 grant's 45, then 3
            debit(other, asset, 20, f"{mode}-2"),
            debit(main, asset, 60, f"{mode}-3"),
            debit(main, asset, 5, f"{mode}-earlier"),     # a retry of a posted debit: replayed
            debit(main, asset, 6, f"{mode}-earlier"),     # that key with another request: conflict
            debit(frozen, asset, 1, f"{mode}-4"),
            debit(other, asset, 20, f"{mode}-5"),         # 10 left: refused, nothing drawn
            debit(main, asset, 37, f"{mode}-6"),          # exactly what is left
            debit(main, asset, 1, f"{mode}-7"),           # empty now
        ]
        if mode == "group":
            rows = await group_writer(engine, ledger.clock, DEBIT_GROUPS)._write(batch)
        else:
            rows = [
                await repo.debit_function(
                    hot_path(engine), p.customer_id, p.asset, p.amount, p.key, p.digest, p.kind,
                    p.counter, p.metadata, ledger.clock(), p.tx_id,
                )
                for p in batch
            ]
        order = await grant_order(ledger, main) | await grant_order(ledger, other)
        balances = [(await ledger.balance(c, asset)).posted for c in (main, other, frozen)]
        remaining = sorted((g.priority, g.remaining) for g in await ledger.grants(main))
        results[mode] = ([shape(r, order) for r in rows], balances, remaining)

    assert results["group"] == results["alone"]
    assert results["group"] == (
        [
            ("ok", [(0, 45), (1, 3)], 97),
            ("ok", [(0, 20)], 10),
            ("ok", [(1, 60)], 37),
            ("replayed", [(0, 5)], None),
            ("conflict", None, None),
            ("frozen", None, None),
            ("insufficient_funds", None, 10),
            ("ok", [(1, 37)], 0),
            ("insufficient_funds", None, 0),
        ],
        [0, 10, 10],
        [(0, 0), (5, 0)],
    )
    assert (await ledger.audit()).ok


async def test_expired_holds_are_released_for_a_group(pg_engine: AsyncEngine, asset: str) -> None:
    clock = FakeClock()
    ledger = Ledger(pg_engine, clock=clock)
    customer = await wallet(ledger, asset, [(100, 0)])
    hold = await ledger.authorize(customer, asset, 80, f"h-{uuid.uuid4()}", expires_in_s=60)
    clock.advance(seconds=120)  # the hold is past expiry, not yet swept

    rows = await group_writer(pg_engine, clock, DEBIT_GROUPS)._write(
        [debit(customer, asset, 50, f"d-{uuid.uuid4()}"), debit(customer, asset, 30, f"d-{uuid.uuid4()}")]
    )

    assert [(r["outcome"], r["available"]) for r in rows] == [("ok", 50), ("ok", 20)]
    balance = await ledger.balance(customer, asset)
    assert (balance.posted, balance.held) == (20, 0)
    assert (await ledger.get_hold(hold.id)).status == "expired"
    assert (await ledger.audit()).ok


async def test_concurrent_debits_share_statements_and_post_once(ledger: Ledger, asset: str) -> None:
    """64 callers at once on one wallet that holds enough for 40: groups form (the point of
    them), 40 debits post, 24 are refused, and every posted debit is in the ledger once."""
    customer = await wallet(ledger, asset, [(400, 0)])
    keys = [f"d-{uuid.uuid4()}" for _ in range(64)]

    async def attempt(key: str) -> str:
        try:
            posting = await ledger.debit(customer, asset, 10, key)
        except InsufficientFunds:
            return "refused"
        assert posting.amount == 10 and not posting.replayed
        return "ok"

    outcomes = Counter(await asyncio.gather(*(attempt(k) for k in keys)))

    assert outcomes == {"ok": 40, "refused": 24}
    writer = group_writer(ledger.engine, ledger.clock, DEBIT_GROUPS)  # the one Ledger.debit used
    assert writer.largest_group > 1 and writer.failed_groups == 0
    assert (await ledger.balance(customer, asset)).posted == 0
    async with ledger.engine.connect() as conn:
        posted = [await repo.get_transaction_by_key(conn, k) for k in keys]
    assert sum(tx is not None for tx in posted) == 40
    # Retries of all 64 change nothing: the 40 replay, the 24 are still refused.
    retried = Counter(await asyncio.gather(*(_replay_or_refusal(ledger, customer, asset, k) for k in keys)))
    assert retried == {"replayed": 40, "refused": 24}
    assert (await ledger.audit()).ok


async def _replay_or_refusal(ledger: Ledger, customer: uuid.UUID, asset: str, key: str) -> str:
    try:
        posting = await ledger.debit(customer, asset, 10, key)
    except InsufficientFunds:
        return "refused"
    return "replayed" if posting.replayed else "posted again"


async def test_a_failed_group_falls_back_to_one_debit_at_a_time(ledger: Ledger, asset: str) -> None:
    """A debit whose key another transaction takes after the group looked it up fails the whole
    statement (unique key): the group writes nothing, and each debit then runs alone: the others
    post, the one with the taken key gets its typed answer."""
    customer = await wallet(ledger, asset, [(100, 0)])
    taken = f"taken-{uuid.uuid4()}"
    others = [f"d-{uuid.uuid4()}" for _ in range(2)]
    url = ledger.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    blocker = await asyncpg.connect(url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            "INSERT INTO ledger_transactions (id, kind, idempotency_key, request_hash, metadata, created_at)"
            " VALUES ($1, 'credit', $2, 'another request', '{}', now())",
            uuid.uuid4(), taken,
        )
        group = [debit(customer, asset, 10, others[0]), debit(customer, asset, 10, taken),
                 debit(customer, asset, 10, others[1])]
        write = asyncio.create_task(group_writer(ledger.engine, ledger.clock, DEBIT_GROUPS)._write(group))
        await asyncio.sleep(0.5)
        assert not write.done()  # waiting on the uncommitted key
        await tx.commit()
        assert await write == [None, None, None]
    finally:
        await blocker.close()

    assert (await ledger.balance(customer, asset)).posted == 100  # the failed group wrote nothing
    # What the ledger does with such a group: each debit alone.
    assert [(await ledger.debit(customer, asset, 10, k)).replayed for k in others] == [False, False]
    with pytest.raises(IdempotencyConflict):
        await ledger.debit(customer, asset, 10, taken)
    assert (await ledger.balance(customer, asset)).posted == 80
    assert (await ledger.audit()).ok


def hold(ledger: Ledger, customer: uuid.UUID, asset: str, amount: int, key: str) -> PendingHold:
    now = ledger.clock()
    digest = request_hash("authorize", customer_id=customer, asset=asset, amount=amount, expires_in_s=None, metadata={})
    return PendingHold(customer, asset, amount, key, digest, now + dt.timedelta(hours=1), {}, now, uuid.uuid4())


async def test_a_group_of_holds_gives_each_what_it_would_get_alone(ledger: Ledger, asset: str) -> None:
    engine = ledger.engine
    results = {}
    for mode in ("group", "alone"):
        main = await wallet(ledger, asset, [(100, 0)])
        other = await wallet(ledger, asset, [(30, 0)])
        frozen = await wallet(ledger, asset, [(10, 0)])
        await ledger.freeze(frozen)
        earlier = await ledger.authorize(main, asset, 5, f"{mode}-earlier")
        batch = [
            hold(ledger, main, asset, 40, f"{mode}-1"),
            hold(ledger, other, asset, 20, f"{mode}-2"),
            hold(ledger, main, asset, 5, f"{mode}-earlier"),   # a retry of a placed hold: replayed
            hold(ledger, main, asset, 6, f"{mode}-earlier"),   # that key with another request
            hold(ledger, frozen, asset, 1, f"{mode}-3"),
            hold(ledger, other, asset, 20, f"{mode}-4"),       # 10 left: refused
            hold(ledger, main, asset, 55, f"{mode}-5"),        # exactly what is left
            hold(ledger, main, asset, 1, f"{mode}-6"),
        ]
        if mode == "group":
            rows = await group_writer(engine, ledger.clock, HOLD_GROUPS)._write(batch)
        else:
            rows = [
                await repo.authorize_function(
                    hot_path(engine), p.customer_id, p.asset, p.amount, p.key, p.digest, p.expires_at,
                    p.metadata, p.created_at, p.hold_id,
                )
                for p in batch
            ]
        answers = []
        for pending, row in zip(batch, rows, strict=True):
            placed = row["hold_id"] == pending.hold_id
            answers.append((row["outcome"], row["available"], placed, row["hold_id"] == earlier.id))
        balances = [await ledger.balance(c, asset) for c in (main, other, frozen)]
        results[mode] = (answers, [(b.posted, b.held) for b in balances])
        for pending, (outcome, *_rest) in zip(batch, answers, strict=True):
            if outcome == "ok":  # stored as the caller will describe it
                stored = await ledger.get_hold(pending.hold_id)
                assert (stored.amount, stored.status, stored.created_at, stored.expires_at) == (
                    pending.amount, "pending", pending.created_at, pending.expires_at)

    assert results["group"] == results["alone"]
    assert results["group"] == (
        [
            ("ok", 55, True, False),
            ("ok", 10, True, False),
            ("replayed", None, False, True),
            ("conflict", None, False, False),
            ("frozen", None, False, False),
            ("insufficient_funds", 10, False, False),
            ("ok", 0, True, False),
            ("insufficient_funds", 0, False, False),
        ],
        [(100, 100), (30, 20), (10, 0)],
    )
    assert (await ledger.audit()).ok


async def test_concurrent_holds_share_statements_and_reserve_once(ledger: Ledger, asset: str) -> None:
    customer = await wallet(ledger, asset, [(400, 0)])
    keys = [f"h-{uuid.uuid4()}" for _ in range(64)]

    async def attempt(key: str) -> str:
        try:
            placed = await ledger.authorize(customer, asset, 10, key)
        except InsufficientFunds:
            return "refused"
        assert (placed.amount, placed.status, placed.replayed) == (10, "pending", False)
        return "ok"

    outcomes = Counter(await asyncio.gather(*(attempt(k) for k in keys)))

    assert outcomes == {"ok": 40, "refused": 24}
    writer = group_writer(ledger.engine, ledger.clock, HOLD_GROUPS)  # the one Ledger.authorize used
    assert writer.largest_group > 1 and writer.failed_groups == 0
    balance = await ledger.balance(customer, asset)
    assert (balance.posted, balance.held, balance.available) == (400, 400, 0)
    assert (await ledger.audit()).ok


@pytest.mark.parametrize("ingest_function", [usage_repo.LOCKED, usage_repo.OPTIMISTIC])
async def test_groups_and_usage_batches_on_the_same_wallets_never_deadlock(
    ledger: Ledger, asset: str, ingest_function: str
) -> None:
    """A debit group and a usage batch (either function) that share wallets lock them in the same
    (account id) order. Locked in any other order, rounds of both over 20 shared wallets, each
    listing them in its own random order, deadlock and fail."""
    wallets = [await wallet(ledger, asset, [(10_000, 0)]) for _ in range(20)]
    ingest = hot_path(ledger.engine)
    writer = group_writer(ledger.engine, ledger.clock, DEBIT_GROUPS)
    rng = random.Random(7)
    posted = 0

    async def usage_batch(round_: int) -> int:
        order = rng.sample(wallets, len(wallets))
        events = [
            {"idx": i, "customer_id": str(c), "event_id": f"race-{round_}-{i}-{uuid.uuid4().hex[:6]}",
             "event_type": "tokens", "occurred_at": ledger.clock().isoformat(), "asset": asset,
             "amount": 3, "product_code": "race", "version": 1, "data": {}, "costs": None}
            for i, c in enumerate(order)
        ]
        rows = await usage_repo.ingest_function(ingest, json.dumps(events), ledger.clock(), ingest_function)
        assert {outcome for outcome, _, _ in rows} == {"debited"}
        return 3 * len(rows)

    async def debit_group(round_: int) -> int:
        order = rng.sample(wallets, len(wallets))
        rows = await writer._write([debit(c, asset, 2, f"race-{round_}-{uuid.uuid4()}") for c in order])
        assert [r is not None and r["outcome"] for r in rows] == ["ok"] * len(order)
        return 2 * len(rows)

    failed_before = writer.failed_groups
    for round_ in range(15):
        posted += sum(await asyncio.gather(usage_batch(round_), debit_group(round_), debit_group(round_ + 100)))

    assert writer.failed_groups == failed_before
    balances = [(await ledger.balance(c, asset)).posted for c in wallets]
    assert sum(balances) == 20 * 10_000 - posted
    assert (await ledger.audit()).ok
