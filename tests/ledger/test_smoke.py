import uuid

from walletflow.ledger.service import Ledger


async def test_credit_then_debit(ledger: Ledger, usd: str, customer: uuid.UUID) -> None:
    await ledger.credit(customer, usd, 1000, "k1")
    posting = await ledger.debit(customer, usd, 300, "k2")
    assert posting.amount == 300
    bal = await ledger.balance(customer, usd)
    assert (bal.posted, bal.held, bal.available) == (700, 0, 700)
    assert (await ledger.audit()).ok
