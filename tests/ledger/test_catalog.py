"""Assets, customers and accounts: validation and idempotent creation."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_code
from walletflow.errors import AlreadyExists, NotFound, ValidationError
from walletflow.ledger.service import Ledger


async def test_asset_created_once_and_identical_recreate_is_a_noop(ledger: Ledger) -> None:
    code = unique_code()
    first = await ledger.create_asset(code, "Credits", 0, "custom")
    again = await ledger.create_asset(code, "Credits", 0, "custom")
    assert first == again
    assert (await ledger.get_asset(code)).scale == 0


async def test_asset_recreated_differently_is_refused(ledger: Ledger) -> None:
    code = unique_code()
    await ledger.create_asset(code, "Credits", 0, "custom")
    with pytest.raises(AlreadyExists):
        await ledger.create_asset(code, "Credits", 2, "custom")


@pytest.mark.parametrize(
    ("code", "name", "scale", "kind"),
    [
        ("usd", "lower case", 2, "fiat"),
        ("X", "too short", 2, "fiat"),
        ("TOOLONGCODE123456789", "too long", 2, "fiat"),
        ("ABC", "negative scale", -1, "fiat"),
        ("ABC", "huge scale", 19, "fiat"),
        ("ABC", "bool scale", True, "fiat"),
        ("ABC", "bad kind", 2, "crypto"),
        ("ABC", "", 2, "fiat"),
    ],
)
async def test_asset_validation(ledger: Ledger, code: str, name: str, scale: int, kind: str) -> None:
    with pytest.raises(ValidationError):
        await ledger.create_asset(code, name, scale, kind)


async def test_unknown_asset_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        await ledger.get_asset(unique_code())


async def test_customer_identical_recreate_returns_the_same_customer(ledger: Ledger) -> None:
    external_id = f"ext-{uuid.uuid4()}"
    first = await ledger.create_customer(external_id, name="Ada", metadata={"plan": "pro"})
    again = await ledger.create_customer(external_id, name="Ada", metadata={"plan": "pro"})
    assert first.id == again.id
    assert first.status == "active"
    with pytest.raises(AlreadyExists):
        await ledger.create_customer(external_id, name="Someone else")


async def test_customer_validation_and_lookup(ledger: Ledger) -> None:
    with pytest.raises(ValidationError):
        await ledger.create_customer("")
    with pytest.raises(NotFound):
        await ledger.get_customer(uuid.uuid4())
    with pytest.raises(NotFound):
        await ledger.freeze(uuid.uuid4())


async def test_balance_of_an_unused_wallet_is_zero_and_creates_nothing(
    ledger: Ledger, usd: str, customer: uuid.UUID
) -> None:
    balance = await ledger.balance(customer, usd)
    assert (balance.posted, balance.held, balance.available) == (0, 0, 0)
    assert await ledger.wallet(customer) == []
    with pytest.raises(NotFound):
        await ledger.balance(customer, unique_code())
    with pytest.raises(NotFound):
        await ledger.balance(uuid.uuid4(), usd)
