"""Authorizations: a hold resolves exactly once; expired or voided holds cannot be captured."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import HoldNotPending, IdempotencyConflict, InsufficientFunds, NotFound, ValidationError
from walletflow.ledger.service import Ledger

from tests.ledger.helpers import FakeClock, count_rows


async def _funded(ledger: Ledger, customer: uuid.UUID, usd: str, amount: int = 1000) -> None:
    await ledger.credit(customer, usd, amount, f"c-{uuid.uuid4()}")


async def test_authorize_reserves_and_partial_capture_releases_the_rest(
    ledger: Ledger, usd: str, customer: uuid.UUID
) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 400, f"h-{uuid.uuid4()}")
    balance = await ledger.balance(customer, usd)
    assert (hold.status, balance.posted, balance.held, balance.available) == ("pending", 1000, 400, 600)
    with pytest.raises(InsufficientFunds):
        await ledger.debit(customer, usd, 601, f"d-{uuid.uuid4()}")
    captured = await ledger.capture(hold.id, 250)
    assert (captured.status, captured.captured_amount) == ("captured", 250)
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held, balance.available) == (750, 0, 750)
    assert (await ledger.audit()).ok


async def test_authorize_beyond_available_is_refused_and_writes_nothing(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    await _funded(ledger, customer, usd, 100)
    before = await count_rows(engine)
    with pytest.raises(InsufficientFunds):
        await ledger.authorize(customer, usd, 101, f"h-{uuid.uuid4()}")
    with pytest.raises(ValidationError):
        await ledger.authorize(customer, usd, 10, f"h-{uuid.uuid4()}", expires_in_s=0)
    assert await count_rows(engine) == before


async def test_capture_is_idempotent_and_resolves_once(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    first = await ledger.capture(hold.id, 300)
    again = await ledger.capture(hold.id, 300)
    assert again.replayed and again.capture_transaction_id == first.capture_transaction_id
    with pytest.raises(IdempotencyConflict):
        await ledger.capture(hold.id, 100)  # same (default) key, different amount
    with pytest.raises(HoldNotPending):
        await ledger.capture(hold.id, 100, idempotency_key=f"other-{uuid.uuid4()}")
    with pytest.raises(HoldNotPending):
        await ledger.void(hold.id)
    assert (await ledger.balance(customer, usd)).posted == 700


async def test_capture_above_the_hold_is_refused(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    with pytest.raises(ValidationError):
        await ledger.capture(hold.id, 301)
    assert (await ledger.get_hold(hold.id)).status == "pending"


async def test_zero_capture_releases_everything(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    captured = await ledger.capture(hold.id, 0)
    assert (captured.status, captured.capture_transaction_id) == ("captured", None)
    assert (await ledger.capture(hold.id, 0)).replayed
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (1000, 0)


async def test_voided_hold_cannot_be_captured(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    assert (await ledger.void(hold.id)).status == "voided"
    assert (await ledger.void(hold.id)).replayed
    with pytest.raises(HoldNotPending):
        await ledger.capture(hold.id, 300)
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (1000, 0)


async def test_expired_hold_cannot_be_captured_and_is_released(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    await _funded(ledger, customer, usd)
    late = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}", expires_in_s=60)
    swept = await ledger.authorize(customer, usd, 200, f"h-{uuid.uuid4()}", expires_in_s=60)
    clock.advance(seconds=60)
    with pytest.raises(HoldNotPending, match="expired"):
        await ledger.capture(late.id, 300)
    assert (await ledger.get_hold(late.id)).status == "expired"  # the refusal kept the expiry
    assert await ledger.expire_holds() == 1
    assert await ledger.expire_holds() == 0
    assert (await ledger.get_hold(swept.id)).status == "expired"
    with pytest.raises(HoldNotPending):
        await ledger.void(swept.id)
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held) == (1000, 0)
    assert (await ledger.audit()).ok


async def test_authorize_replays_and_conflicts_on_its_key(
    ledger: Ledger, engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    await _funded(ledger, customer, usd)
    key = f"h-{uuid.uuid4()}"
    hold = await ledger.authorize(customer, usd, 300, key)
    before = await count_rows(engine)
    again = await ledger.authorize(customer, usd, 300, key)
    assert again.replayed and again.id == hold.id
    with pytest.raises(IdempotencyConflict):
        await ledger.authorize(customer, usd, 301, key)
    assert await count_rows(engine) == before
    assert (await ledger.balance(customer, usd)).held == 300


async def test_capture_on_a_frozen_wallet_settles_the_earlier_hold(
    ledger: Ledger, usd: str, customer: uuid.UUID
) -> None:
    await _funded(ledger, customer, usd)
    hold = await ledger.authorize(customer, usd, 300, f"h-{uuid.uuid4()}")
    await ledger.freeze(customer)
    assert (await ledger.capture(hold.id, 300)).status == "captured"
    assert (await ledger.balance(customer, usd)).posted == 700


async def test_unknown_hold_is_not_found(ledger: Ledger) -> None:
    for call in (ledger.capture(uuid.uuid4(), 1), ledger.void(uuid.uuid4()), ledger.get_hold(uuid.uuid4())):
        with pytest.raises(NotFound):
            await call


async def test_a_short_balance_releases_the_wallets_expired_holds_first(
    engine: AsyncEngine, usd: str, customer: uuid.UUID
) -> None:
    """No sweep has run, yet an expired hold must not block spending."""
    clock = FakeClock()
    ledger = Ledger(engine, clock=clock)
    await _funded(ledger, customer, usd, 1000)
    stale = await ledger.authorize(customer, usd, 900, f"h-{uuid.uuid4()}", expires_in_s=60)
    with pytest.raises(InsufficientFunds):
        await ledger.debit(customer, usd, 500, f"d-{uuid.uuid4()}")
    clock.advance(seconds=61)
    await ledger.debit(customer, usd, 500, f"d-{uuid.uuid4()}")
    assert (await ledger.get_hold(stale.id)).status == "expired"
    hold = await ledger.authorize(customer, usd, 500, f"h-{uuid.uuid4()}")
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held, hold.status) == (500, 500, "pending")
    assert (await ledger.audit()).ok
