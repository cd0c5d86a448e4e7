"""The top-up records and their guards, on each database, without Temporal or Stripe."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import AlreadyExists, IdempotencyConflict, NotFound, ValidationError
from walletflow.ledger.service import Ledger
from walletflow.payments.repository import top_ups
from walletflow.payments.service import InvalidTransition, TopUps

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def paid_top_up(ledger: Ledger, engine: AsyncEngine, amount: int = 1000) -> tuple[TopUps, uuid.UUID, uuid.UUID]:
    """A top-up whose payment went through: ready to be credited or refunded."""
    try:
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
    except AlreadyExists:
        pass
    customer = (await ledger.create_customer(f"core-{uuid.uuid4().hex}")).id
    service = TopUps(engine)
    top_up, created = await service.create(f"k-{uuid.uuid4().hex}", customer, amount, "usd")
    assert created and top_up.status == "initiated" and top_up.currency == "USD" and top_up.asset == "USD"
    await service.set_payment_intent(top_up.id, f"pi_{uuid.uuid4().hex}")
    await service.transition(top_up.id, "awaiting_payment")
    await service.transition(top_up.id, "scoring")
    return service, customer, top_up.id


async def credit(ledger: Ledger, service: TopUps, customer: uuid.UUID, top_up_id: uuid.UUID, amount: int = 1000) -> None:
    await ledger.credit(customer, "USD", amount, f"topup-{top_up_id}:credit", source="paid", kind="topup",
                        also=service.credit_recorder(top_up_id))


async def test_same_key_same_body_is_the_same_top_up_and_another_body_conflicts(ledger: Ledger, engine: AsyncEngine) -> None:
    service, customer, top_up_id = await paid_top_up(ledger, engine)
    original = await service.get(top_up_id)
    again, created = await service.create(original.idempotency_key, customer, 1000, "USD")
    assert (again.id, created) == (top_up_id, False)
    with pytest.raises(IdempotencyConflict):
        await service.create(original.idempotency_key, customer, 1001, "USD")


async def test_bad_top_ups_are_refused_and_write_nothing(ledger: Ledger, engine: AsyncEngine) -> None:
    service = TopUps(engine)
    customer = (await ledger.create_customer(f"core-{uuid.uuid4().hex}")).id
    for kwargs, error in [
        ({"amount": 0, "currency": "USD"}, ValidationError),
        ({"amount": 10, "currency": "US"}, ValidationError),
        ({"amount": 10, "currency": "USD", "mode": "checkout"}, ValidationError),  # no return_url
        ({"amount": 10, "currency": "USD", "mode": "checkout", "return_url": "javascript:alert(1)"}, ValidationError),
        ({"amount": 10, "currency": "USD", "asset": "NOSUCHASSET"}, NotFound),
        ({"amount": 10, "currency": "XQZ"}, NotFound),
    ]:
        key = f"bad-{uuid.uuid4().hex}"
        with pytest.raises(error):
            await service.create(key, customer, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await service.create(f"bad-{uuid.uuid4().hex}", uuid.uuid4(), 10, "USD")


async def test_a_refund_claim_makes_the_credit_impossible(ledger: Ledger, engine: AsyncEngine) -> None:
    service, customer, top_up_id = await paid_top_up(ledger, engine)
    await service.claim_refund(top_up_id, "test")
    with pytest.raises(InvalidTransition):
        await credit(ledger, service, customer, top_up_id)
    # The refused credit rolled back with its guard: no money, no grant.
    assert (await ledger.balance(customer, "USD")).posted == 0
    assert await ledger.grants(customer) == []
    assert (await service.get(top_up_id)).credit_transaction_id is None


async def test_a_credited_top_up_cannot_be_claimed_for_a_refund(ledger: Ledger, engine: AsyncEngine) -> None:
    service, customer, top_up_id = await paid_top_up(ledger, engine)
    await credit(ledger, service, customer, top_up_id)
    await credit(ledger, service, customer, top_up_id)  # a retry replays: one credit
    claimed = await service.claim_refund(top_up_id, "test")
    assert claimed.status == "succeeded" and claimed.credit_transaction_id is not None
    assert not await service.refund_claimed(top_up_id)
    assert (await ledger.balance(customer, "USD")).posted == 1000


async def test_the_database_refuses_a_top_up_both_credited_and_refunded(ledger: Ledger, engine: AsyncEngine) -> None:
    service, customer, top_up_id = await paid_top_up(ledger, engine)
    await credit(ledger, service, customer, top_up_id)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                update(top_ups).where(top_ups.c.id == top_up_id).values(refund_requested_at=top_ups.c.created_at)
            )


async def test_status_moves_only_along_allowed_edges(ledger: Ledger, engine: AsyncEngine) -> None:
    service, _, top_up_id = await paid_top_up(ledger, engine)
    with pytest.raises(InvalidTransition):
        await service.transition(top_up_id, "awaiting_payment")  # backwards
    with pytest.raises(ValidationError):
        await service.transition(top_up_id, "succeeded")  # only the credit sets it
    assert (await service.transition(top_up_id, "in_review")).status == "in_review"
    assert (await service.transition(top_up_id, "in_review")).status == "in_review"  # a retry is a no-op

