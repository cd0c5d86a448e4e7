"""Many clients on one wallet at once: nothing lost, nothing doubled, never overdrawn.

On PostgreSQL the operations run on a pool of separate connections; on SQLite on concurrent
writer connections, where "database is locked" must never reach the caller.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.db.engine import create_engine, dispose
from walletflow.errors import HoldNotPending, InsufficientFunds, WalletflowError
from walletflow.ledger.service import Ledger

#: Separate PostgreSQL connections the 200 operations share, per pool (SQLAlchemy and hot path;
#: the server allows 100 in all).
PG_CONNECTIONS = 25


@pytest_asyncio.fixture(loop_scope="session")
async def busy_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    if database_url.startswith("postgresql"):
        engine = create_engine(database_url, pool_size=PG_CONNECTIONS, max_overflow=0)
    else:
        engine = create_engine(database_url, pool_size=20, max_overflow=0)
    yield engine
    await dispose(engine)


async def _outcome(call: asyncio.Future | object) -> str:
    try:
        await call  # type: ignore[misc]
    except WalletflowError as exc:
        return exc.code
    return "ok"


async def test_200_concurrent_debits_and_holds_on_one_wallet(
    busy_engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    ledger = Ledger(busy_engine)
    await ledger.credit(customer, usd, 10_000, f"c-{uuid.uuid4()}")
    calls = [ledger.debit(customer, usd, 100, f"d-{uuid.uuid4()}") for _ in range(150)]
    calls += [ledger.authorize(customer, usd, 100, f"h-{uuid.uuid4()}") for _ in range(50)]
    outcomes = await asyncio.gather(*(_outcome(c) for c in calls))
    # Demand is twice the balance: exactly half the operations fit, the rest are refused cleanly.
    assert Counter(outcomes) == {"ok": 100, InsufficientFunds.code: 100}
    debited, held = outcomes[:150].count("ok"), outcomes[150:].count("ok")
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held, balance.available) == (10_000 - 100 * debited, 100 * held, 0)
    assert (await ledger.audit()).ok


async def test_concurrent_retries_of_one_key_post_once(
    busy_engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    ledger = Ledger(busy_engine)
    await ledger.credit(customer, usd, 1_000, f"c-{uuid.uuid4()}")
    key = f"d-{uuid.uuid4()}"
    postings = await asyncio.gather(*(ledger.debit(customer, usd, 10, key) for _ in range(60)))
    assert len({p.transaction_id for p in postings}) == 1
    assert sum(not p.replayed for p in postings) == 1
    assert (await ledger.balance(customer, usd)).posted == 990
    credit_key = f"c-{uuid.uuid4()}"
    credits = await asyncio.gather(*(ledger.credit(customer, usd, 5, credit_key) for _ in range(60)))
    assert len({p.grant_id for p in credits}) == 1
    assert (await ledger.balance(customer, usd)).posted == 995
    assert (await ledger.audit()).ok


async def test_captures_racing_voids_resolve_each_hold_once(
    busy_engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    ledger = Ledger(busy_engine)
    await ledger.credit(customer, usd, 10_000, f"c-{uuid.uuid4()}")
    holds = [await ledger.authorize(customer, usd, 100, f"h-{uuid.uuid4()}") for _ in range(40)]
    calls = []
    for hold in holds:
        calls += [ledger.capture(hold.id, 60), ledger.void(hold.id), ledger.capture(hold.id, 60)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, HoldNotPending)]
    assert not unexpected
    final = [await ledger.get_hold(h.id) for h in holds]
    captured = sum(h.status == "captured" for h in final)
    assert all(h.status in ("captured", "voided") for h in final)
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (10_000 - 60 * captured, 0)
    assert (await ledger.audit()).ok


async def test_debits_see_grants_credited_concurrently(
    busy_engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    """The stale-snapshot bug: a debit must never draw from grant balances it read before
    taking the wallet lock, or usage could exceed the grants."""
    ledger = Ledger(busy_engine)
    credits = [ledger.credit(customer, usd, 10, f"c-{uuid.uuid4()}", priority=i % 3) for i in range(100)]
    debits = [ledger.debit(customer, usd, 7, f"d-{uuid.uuid4()}") for _ in range(100)]
    interleaved = [c for pair in zip(credits, debits, strict=True) for c in pair]
    outcomes = await asyncio.gather(*(_outcome(c) for c in interleaved))
    debited = sum(o == "ok" for o in outcomes[1::2])
    assert set(outcomes[0::2]) == {"ok"}
    assert set(outcomes[1::2]) <= {"ok", InsufficientFunds.code}
    balance = await ledger.balance(customer, usd)
    assert balance.posted == 1_000 - 7 * debited >= 0
    remaining = sum(g.remaining for g in await ledger.grants(customer))
    assert remaining == balance.posted
    assert (await ledger.audit()).ok
