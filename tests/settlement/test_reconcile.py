"""Reconciliation finds a planted leak of each kind, with the right count and amount, only in its
period; a clean period reports zero. Leaks are planted straight into the database."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from tests.settlement.helpers import insert_event, ledger_at, private_hour, shift_balance
from walletflow.ledger.schemas import AuditReport
from walletflow.ledger.service import Ledger
from walletflow.settlement.contracts import HoldSweep, ReportInput, UsageScoring
from walletflow.settlement.reconcile import KINDS, reconcile
from walletflow.settlement.service import get_report, record_report

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _funded(engine: AsyncEngine, at: dt.datetime, asset: str, amount: int = 10_000) -> uuid.UUID:
    ledger = ledger_at(engine, at)
    customer = (await ledger.create_customer(f"settle-{uuid.uuid4().hex}")).id
    await ledger.credit(customer, asset, amount, f"fund-{customer}")
    return customer


async def _clean_usage(engine: AsyncEngine, customer: uuid.UUID, asset: str, amount: int, at: dt.datetime) -> None:
    """What ingestion writes: a usage debit and its event pointing at it, for the same amount."""
    key = f"event:{customer}:{uuid.uuid4().hex}"
    posting = await ledger_at(engine, at).debit(customer, asset, amount, key)
    await insert_event(engine, customer, asset, amount, at, transaction_id=posting.transaction_id)


def _zero(summary: dict, kinds: tuple[str, ...] = KINDS) -> None:
    for kind in kinds:
        assert summary[kind]["count"] == 0 and summary[kind]["amount"] == 0, (kind, summary[kind])


async def test_a_clean_period_reports_zero(engine: AsyncEngine) -> None:
    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=10)
    await ledger_at(engine, at).create_asset(usd, "Test dollars", 2, "fiat")
    customer = await _funded(engine, at, usd)
    for amount in (120, 80, 1):
        await _clean_usage(engine, customer, usd, amount, at)
    found = await reconcile(engine, period, await Ledger(engine).audit(), 10)
    _zero(found.summary)
    assert found.leak_count == 0 and found.examples == {}


async def test_each_kind_of_leak_is_found_with_its_count_and_amount(engine: AsyncEngine) -> None:
    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=20)
    ledger = ledger_at(engine, at)
    await ledger.create_asset(usd, "Test dollars", 2, "fiat")
    customer = await _funded(engine, at, usd)
    await _clean_usage(engine, customer, usd, 99, at)  # not a leak

    # An event stored without its debit, twice (250 + 5), and one in the next period (not this one's).
    lost = [await insert_event(engine, customer, usd, amount, at) for amount in (250, 5)]
    await insert_event(engine, customer, usd, 777, period.end + dt.timedelta(minutes=1))
    # An event that priced at nothing has no debit, rightly.
    await insert_event(engine, customer, usd, 0, at)
    # A usage debit that no event points at.
    orphan = await ledger.debit(customer, usd, 300, f"event:{customer}:orphan-{uuid.uuid4().hex}")
    # An event whose debit took 400 while the event says it was priced 450.
    short = await ledger.debit(customer, usd, 400, f"event:{customer}:short-{uuid.uuid4().hex}")
    await insert_event(engine, customer, usd, 450, at, transaction_id=short.transaction_id)

    # A wallet whose stored balance disagrees with its entries (posted +7, held +3).
    other = await _funded(engine, at, usd, 1_000)
    account = (await Ledger(engine).balance(other, usd)).account_id
    assert account is not None
    await shift_balance(engine, account, posted=7, held=3)
    try:
        found = await reconcile(engine, period, await Ledger(engine).audit(), 10)
    finally:
        await shift_balance(engine, account, posted=-7, held=-3)

    s = found.summary
    assert (s["event_without_debit"]["count"], s["event_without_debit"]["amount"]) == (2, 255)
    assert s["event_without_debit"]["by_asset"] == {usd: 255}
    assert {x["event_id"] for x in found.examples["event_without_debit"]} == set(lost)
    assert (s["debit_without_event"]["count"], s["debit_without_event"]["amount"]) == (1, 300)
    assert found.examples["debit_without_event"][0]["transaction_id"] == str(orphan.transaction_id)
    assert (s["amount_mismatch"]["count"], s["amount_mismatch"]["amount"]) == (1, 50)
    assert found.examples["amount_mismatch"][0]["priced"] == 450
    assert found.examples["amount_mismatch"][0]["debited"] == 400
    assert (s["posted_mismatch"]["count"], s["posted_mismatch"]["amount"]) == (1, 7)
    assert found.examples["posted_mismatch"][0]["customer_id"] == str(other)
    assert (s["held_mismatch"]["count"], s["held_mismatch"]["amount"]) == (1, 3)
    # Grant remainders add up to the true posted, so the corrupted posted disagrees with them too.
    assert (s["grant_mismatch"]["count"], s["grant_mismatch"]["amount"]) == (1, 7)
    _zero(s, ("unbalanced_transaction", "overdrawn_account"))
    assert found.leak_count == 7

    # Restored: the balance kinds are clean again, the period's leaks are still there.
    again = await reconcile(engine, period, await Ledger(engine).audit(), 10)
    _zero(again.summary, ("posted_mismatch", "held_mismatch", "grant_mismatch"))
    assert again.summary["event_without_debit"]["count"] == 2


async def test_audit_findings_that_cannot_be_planted_still_map_to_leaks(engine: AsyncEngine) -> None:
    """Unbalanced transactions and overdrawn wallets cannot be planted in the shared database
    (entries are append-only: the damage could not be undone), so the audit's rows are given."""
    period = private_hour()
    tx, account = uuid.uuid4(), uuid.uuid4()
    audit = AuditReport(unbalanced_transactions=[(tx, "USD", -12)], overdrawn_accounts=[(account, -150, 100)])
    found = await reconcile(engine, period, audit, 10)
    assert (found.summary["unbalanced_transaction"]["count"], found.summary["unbalanced_transaction"]["amount"]) == (1, 12)
    assert (found.summary["overdrawn_account"]["count"], found.summary["overdrawn_account"]["amount"]) == (1, 50)
    assert found.examples["unbalanced_transaction"][0]["transaction_id"] == str(tx)


async def test_the_first_report_of_a_period_stands(engine: AsyncEngine) -> None:
    period, usd = private_hour(), unique_code("U")
    at = period.start + dt.timedelta(minutes=1)
    await ledger_at(engine, at).create_asset(usd, "Test dollars", 2, "fiat")
    customer = await _funded(engine, at, usd)
    await insert_event(engine, customer, usd, 40, at)
    found = await reconcile(engine, period, await Ledger(engine).audit(), 10)
    report = ReportInput(period=period.key, reconciliation=found, holds=HoldSweep(), scoring=UsageScoring())
    first = await record_report(engine, report, at)
    assert (first.leak_count, first.leak_amount, first.replayed) == (1, 40, False)

    await insert_event(engine, customer, usd, 60, at)  # found later: the stored report is kept
    later = await reconcile(engine, period, await Ledger(engine).audit(), 10)
    second = await record_report(engine, report.model_copy(update={"reconciliation": later}), at)
    assert (second.leak_count, second.leak_amount, second.replayed) == (1, 40, True)
    stored = await get_report(engine, period.key)
    assert stored is not None and stored["summary"]["event_without_debit"]["amount"] == 40
