"""Credits, debits, grants, overdraft, freeze, idempotency and the append-only ledger."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import IdempotencyConflict, InsufficientFunds, NotFound, ValidationError, WalletFrozen
from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.ledger.service import Ledger

from tests.conftest import unique_code
from tests.ledger.helpers import FakeClock, count_rows, entries_of


async def test_credit_and_debit_move_posted_and_balance_the_entries(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    credit = await ledger.credit(customer, usd, 1000, f"c-{uuid.uuid4()}")
    debit = await ledger.debit(customer, usd, 300, f"d-{uuid.uuid4()}")
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held, balance.available) == (700, 0, 700)
    for posting in (credit, debit):
        lines = await entries_of(engine, posting.transaction_id)
        assert sum(amount for _, amount, _ in lines) == 0
    assert [amount for _, amount, _ in await entries_of(engine, debit.transaction_id)] == [-300, 300]
    assert (await ledger.audit()).ok


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10", None, MAX_AMOUNT + 1])
async def test_bad_amounts_are_refused_and_write_nothing(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID, amount: object
) -> None:
    before = await count_rows(engine)
    with pytest.raises(ValidationError):
        await ledger.credit(customer, usd, amount, f"c-{uuid.uuid4()}")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await ledger.debit(customer, usd, amount, f"d-{uuid.uuid4()}")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await ledger.authorize(customer, usd, amount, f"h-{uuid.uuid4()}")  # type: ignore[arg-type]
    assert await count_rows(engine) == before


async def test_unknown_customer_or_asset_is_not_found_and_writes_nothing(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    before = await count_rows(engine)
    with pytest.raises(NotFound):
        await ledger.credit(uuid.uuid4(), usd, 10, f"c-{uuid.uuid4()}")
    with pytest.raises(NotFound):
        await ledger.debit(customer, unique_code(), 10, f"d-{uuid.uuid4()}")
    with pytest.raises(ValidationError):
        await ledger.credit(customer, usd, 10, "")
    with pytest.raises(ValidationError):
        await ledger.credit(customer, usd, 10, f"c-{uuid.uuid4()}", source="stolen")
    assert await count_rows(engine) == before


async def test_insufficient_funds_is_typed_and_writes_nothing(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    await ledger.credit(customer, usd, 100, f"c-{uuid.uuid4()}")
    before = await count_rows(engine)
    with pytest.raises(InsufficientFunds) as info:
        await ledger.debit(customer, usd, 101, f"d-{uuid.uuid4()}")
    assert info.value.extra == {"available": 100, "requested": 101}
    assert await count_rows(engine) == before
    assert (await ledger.balance(customer, usd)).posted == 100


async def test_retries_replay_and_reused_keys_conflict(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    credit_key, debit_key = f"c-{uuid.uuid4()}", f"d-{uuid.uuid4()}"
    credit = await ledger.credit(customer, usd, 500, credit_key)
    debit = await ledger.debit(customer, usd, 200, debit_key)
    before = await count_rows(engine)

    credit_again = await ledger.credit(customer, usd, 500, credit_key)
    debit_again = await ledger.debit(customer, usd, 200, debit_key)
    assert credit_again.replayed and debit_again.replayed
    assert (credit_again.transaction_id, credit_again.grant_id) == (credit.transaction_id, credit.grant_id)
    assert (debit_again.transaction_id, debit_again.draws) == (debit.transaction_id, debit.draws)

    with pytest.raises(IdempotencyConflict):
        await ledger.credit(customer, usd, 501, credit_key)
    with pytest.raises(IdempotencyConflict):
        await ledger.debit(customer, usd, 201, debit_key)
    with pytest.raises(IdempotencyConflict):
        await ledger.debit(customer, usd, 200, credit_key)  # a credit's key reused for a debit
    assert await count_rows(engine) == before
    assert (await ledger.balance(customer, usd)).posted == 300


async def test_debits_draw_grants_by_priority_then_expiry_then_age(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    later = clock.now + dt.timedelta(days=30)
    sooner = clock.now + dt.timedelta(days=5)
    oldest = await ledger.credit(customer, usd, 100, f"g1-{uuid.uuid4()}", priority=5)
    clock.advance(seconds=1)
    newer = await ledger.credit(customer, usd, 100, f"g2-{uuid.uuid4()}", priority=5)
    no_expiry_high = await ledger.credit(customer, usd, 100, f"g3-{uuid.uuid4()}", priority=1)
    expires_later = await ledger.credit(customer, usd, 100, f"g4-{uuid.uuid4()}", priority=1, expires_at=later)
    expires_sooner = await ledger.credit(customer, usd, 100, f"g5-{uuid.uuid4()}", priority=1, expires_at=sooner)

    debit = await ledger.debit(customer, usd, 450, f"d-{uuid.uuid4()}")
    order = [d.grant_id for d in debit.draws]
    assert order == [
        expires_sooner.grant_id, expires_later.grant_id, no_expiry_high.grant_id,
        oldest.grant_id, newer.grant_id,
    ]
    assert [d.amount for d in debit.draws] == [100, 100, 100, 100, 50]
    # The draws are recorded on the entries themselves.
    lines = await entries_of(engine, debit.transaction_id)
    assert sorted((g, -a) for _, a, g in lines if a < 0) == sorted((d.grant_id, d.amount) for d in debit.draws)
    remaining = {g.id: g.remaining for g in await ledger.grants(customer)}
    assert remaining[newer.grant_id] == 50
    assert (await ledger.audit()).ok


async def test_grant_expiry_moves_the_remainder_to_breakage_once(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    await ledger.credit(customer, usd, 300, f"g-{uuid.uuid4()}", source="promotional", expires_at=clock.now + dt.timedelta(hours=1))
    await ledger.credit(customer, usd, 200, f"g-{uuid.uuid4()}")
    await ledger.debit(customer, usd, 100, f"d-{uuid.uuid4()}")  # drawn from the expiring grant first
    assert await ledger.expire_grants() == []  # not yet due
    clock.advance(hours=1)
    expired = await ledger.expire_grants()
    assert [p.amount for p in expired] == [200]
    assert await ledger.expire_grants() == []  # nothing twice
    balance = await ledger.balance(customer, usd)
    assert balance.posted == 200
    statuses = sorted(g.status for g in await ledger.grants(customer))
    assert statuses == ["active", "expired"]
    assert (await ledger.audit()).ok


async def test_grant_expiry_keeps_back_what_pending_holds_need(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    await ledger.credit(customer, usd, 300, f"g-{uuid.uuid4()}", expires_at=clock.now + dt.timedelta(hours=1))
    hold = await ledger.authorize(customer, usd, 250, f"h-{uuid.uuid4()}", expires_in_s=7200)
    clock.advance(hours=1)
    assert [p.amount for p in await ledger.expire_grants()] == [50]
    captured = await ledger.capture(hold.id, 200)
    assert captured.status == "captured"
    # The hold's released 50 is no longer needed: the next sweep expires it.
    assert [p.amount for p in await ledger.expire_grants()] == [50]
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (0, 0)
    assert (await ledger.audit()).ok


async def test_scheduled_grant_posts_at_its_effective_time_once(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    key = f"g-{uuid.uuid4()}"
    scheduled = await ledger.credit(customer, usd, 400, key, source="bundled", effective_at=clock.now + dt.timedelta(days=1))
    assert scheduled.transaction_id is None
    assert (await ledger.balance(customer, usd)).posted == 0
    with pytest.raises(InsufficientFunds):
        await ledger.debit(customer, usd, 1, f"d-{uuid.uuid4()}")
    assert await ledger.activate_grants() == []
    clock.advance(days=1)
    activated = await ledger.activate_grants()
    assert [(p.grant_id, p.amount) for p in activated] == [(scheduled.grant_id, 400)]
    assert await ledger.activate_grants() == []
    assert (await ledger.balance(customer, usd)).posted == 400
    # The same request (same absolute effective time) replays after activation too.
    replay = await ledger.credit(customer, usd, 400, key, source="bundled", effective_at=clock.now)
    assert replay.replayed and replay.grant_id == scheduled.grant_id
    assert replay.transaction_id == activated[0].transaction_id
    assert (await ledger.audit()).ok


async def test_scheduled_grant_key_reuse_with_other_terms_conflicts(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    key = f"g-{uuid.uuid4()}"
    starts = clock.now + dt.timedelta(days=1)
    first = await ledger.credit(customer, usd, 400, key, effective_at=starts)
    assert (await ledger.credit(customer, usd, 400, key, effective_at=starts)).grant_id == first.grant_id
    with pytest.raises(IdempotencyConflict):
        await ledger.credit(customer, usd, 400, key, effective_at=starts + dt.timedelta(hours=1))


async def test_overdraft_limit_allows_going_negative_and_credit_repays_it(
    ledger: Ledger, usd: str, customer: uuid.UUID
) -> None:
    await ledger.credit(customer, usd, 100, f"c-{uuid.uuid4()}")
    with pytest.raises(InsufficientFunds):
        await ledger.debit(customer, usd, 150, f"d-{uuid.uuid4()}")
    await ledger.set_overdraft_limit(customer, usd, 500)
    debit = await ledger.debit(customer, usd, 550, f"d-{uuid.uuid4()}")
    assert [d.amount for d in debit.draws] == [100, 450]
    assert debit.draws[-1].grant_id is None  # the part the grants could not cover
    with pytest.raises(InsufficientFunds):
        await ledger.debit(customer, usd, 51, f"d-{uuid.uuid4()}")
    assert (await ledger.balance(customer, usd)).available == -450
    repay = await ledger.credit(customer, usd, 1000, f"c-{uuid.uuid4()}")
    grant = next(g for g in await ledger.grants(customer) if g.id == repay.grant_id)
    assert (grant.amount, grant.remaining) == (1000, 550)
    assert (await ledger.balance(customer, usd)).posted == 550
    assert (await ledger.audit()).ok


async def test_frozen_wallet_refuses_debits_and_holds_but_takes_credits(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    await ledger.credit(customer, usd, 100, f"c-{uuid.uuid4()}")
    frozen = await ledger.freeze(customer)
    assert frozen.status == "frozen"
    before = await count_rows(engine)
    with pytest.raises(WalletFrozen):
        await ledger.debit(customer, usd, 10, f"d-{uuid.uuid4()}")
    with pytest.raises(WalletFrozen):
        await ledger.authorize(customer, usd, 10, f"h-{uuid.uuid4()}")
    assert await count_rows(engine) == before
    await ledger.credit(customer, usd, 50, f"c-{uuid.uuid4()}")
    await ledger.unfreeze(customer)
    await ledger.debit(customer, usd, 150, f"d-{uuid.uuid4()}")
    assert (await ledger.balance(customer, usd)).posted == 0


async def test_ledger_rows_cannot_be_updated_or_deleted(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    posting = await ledger.credit(customer, usd, 100, f"c-{uuid.uuid4()}")
    tx_id = posting.transaction_id.hex if engine.dialect.name == "sqlite" else str(posting.transaction_id)
    for statement in (
        "UPDATE ledger_entries SET amount = amount * 2 WHERE transaction_id = :tx",
        "DELETE FROM ledger_entries WHERE transaction_id = :tx",
        "UPDATE ledger_transactions SET kind = 'forged' WHERE id = :tx",
        "DELETE FROM ledger_transactions WHERE id = :tx",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"tx": tx_id})
    assert [a for _, a, _ in await entries_of(engine, posting.transaction_id)] == [100, -100]


async def test_a_credit_retried_after_its_expiry_replays_instead_of_failing(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    """Found by the state machine: the clock check used to run before the idempotency check."""
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    key = f"g-{uuid.uuid4()}"
    expires = clock.now + dt.timedelta(hours=1)
    first = await ledger.credit(customer, usd, 100, key, expires_at=expires)
    clock.advance(hours=2)
    again = await ledger.credit(customer, usd, 100, key, expires_at=expires)
    assert again.replayed and again.transaction_id == first.transaction_id
    with pytest.raises(ValidationError):  # a new credit that is already expired is still refused
        await ledger.credit(customer, usd, 100, f"g-{uuid.uuid4()}", expires_at=expires)


async def test_an_overdraft_limit_cannot_drop_below_the_current_debt(
    ledger: Ledger, usd: str, customer: uuid.UUID
) -> None:
    """Found by the state machine: lowering the limit under the debt broke available >= -limit."""
    await ledger.set_overdraft_limit(customer, usd, 100)
    await ledger.debit(customer, usd, 60, f"d-{uuid.uuid4()}")
    with pytest.raises(ValidationError):
        await ledger.set_overdraft_limit(customer, usd, 59)
    with pytest.raises(ValidationError):
        await ledger.update_customer(customer, insufficient_balance="reject")  # policy limit 0
    assert (await ledger.balance(customer, usd)).overdraft_limit == 100
    await ledger.set_overdraft_limit(customer, usd, 60)  # exactly the debt is fine
    assert (await ledger.audit()).ok


async def test_a_debit_cannot_take_the_key_of_a_scheduled_credit(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    """Found by the state machine: the debit took the key, and activating the credit later failed
    on every sweep, blocking every grant due after it."""
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    await ledger.credit(customer, usd, 100, f"seed-{uuid.uuid4()}")
    key = f"k-{uuid.uuid4()}"
    scheduled = await ledger.credit(customer, usd, 50, key, effective_at=clock.now + dt.timedelta(hours=1))
    with pytest.raises(IdempotencyConflict):
        await ledger.debit(customer, usd, 10, key)
    clock.advance(hours=2)
    assert [p.grant_id for p in await ledger.activate_grants()] == [scheduled.grant_id]
    assert (await ledger.balance(customer, usd)).posted == 150
