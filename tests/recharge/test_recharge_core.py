"""The database trigger and the recharge decisions, on both databases, without Temporal or Stripe
(a test clock moves the caps' days and months)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import AlreadyExists, NotFound, ValidationError
from walletflow.ledger.repository import accounts
from walletflow.ledger.service import Ledger
from walletflow.payments.repository import top_ups
from walletflow.recharge import repository as repo
from walletflow.recharge.rules import backoff_s, size_charge
from walletflow.recharge.schemas import Consent
from walletflow.recharge.service import Recharges, Timings

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONSENT = Consent(dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "checkbox", "Refill my wallet.")
TIMINGS = Timings(cooldown_s=600, backoff_initial_s=60, backoff_max_s=3600, max_consecutive_failures=3,
                  payment_deadline_s=600, poll_interval_s=10, review_deadline_s=3600, charges_per_run=50)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def wallet(ledger: Ledger, funded: int) -> uuid.UUID:
    try:
        await ledger.create_asset("USD", "US dollar", 2, "fiat")
    except AlreadyExists:
        pass
    customer = (await ledger.create_customer(f"rc-{uuid.uuid4().hex}")).id
    if funded:
        await ledger.credit(customer, "USD", funded, f"seed-{customer}")
    return customer


async def policy(recharges: Recharges, customer: uuid.UUID, **overrides: object) -> None:
    values: dict = {"asset": "USD", "threshold": 1000, "target": 5000, "payment_method_id": "pm_card_visa",
                    "daily_cap": 100_000, "monthly_cap": 500_000, "enabled": True, "consent": CONSENT, **overrides}
    await recharges.set_policy(customer, **values)


async def pending(engine: AsyncEngine, customer: uuid.UUID) -> list:
    async with engine.connect() as conn:
        query = select(repo.triggers).where(repo.triggers.c.customer_id == customer).order_by(repo.triggers.c.id)
        return list((await conn.execute(query)).all())


async def test_the_trigger_fires_once_per_crossing_and_only_for_enabled_policies(engine: AsyncEngine, ledger: Ledger) -> None:
    recharges = Recharges(engine)
    customer = await wallet(ledger, 5000)
    await policy(recharges, customer)
    await ledger.debit(customer, "USD", 3000, f"a-{customer}")  # 2000: still above
    assert await pending(engine, customer) == []
    await ledger.debit(customer, "USD", 1500, f"b-{customer}")  # 500: crossed
    await ledger.debit(customer, "USD", 100, f"c-{customer}")   # 400: already below, no new row
    [row] = await pending(engine, customer)
    assert (row.source, row.available, row.relayed_at) == ("threshold", 500, None)

    # Refilled above and crossed again while the first row is still pending: one pending row.
    await ledger.credit(customer, "USD", 4600, f"refill-{customer}")
    await ledger.debit(customer, "USD", 4500, f"d-{customer}")
    assert len(await pending(engine, customer)) == 1
    # Once relayed, the next crossing writes a new row.
    async with engine.begin() as conn:
        await repo.mark_relayed(conn, row.id, dt.datetime.now(dt.UTC))
    await ledger.credit(customer, "USD", 4500, f"refill2-{customer}")
    await ledger.debit(customer, "USD", 4500, f"e-{customer}")
    assert [r.relayed_at is None for r in await pending(engine, customer)] == [False, True]

    # A policy set before the wallet was ever used (the wallet is made for it) triggers too.
    fresh = await wallet(ledger, 0)
    await policy(recharges, fresh)
    [at_setup] = await pending(engine, fresh)  # empty wallet, under the threshold: recharge now
    assert (at_setup.source, at_setup.available) == ("policy", 0)
    async with engine.begin() as conn:
        await repo.mark_relayed(conn, at_setup.id, dt.datetime.now(dt.UTC))
    await ledger.credit(fresh, "USD", 5000, f"seed-{fresh}")
    await ledger.debit(fresh, "USD", 4500, f"a-{fresh}")
    assert [(r.source, r.available) for r in await pending(engine, fresh)][1:] == [("threshold", 500)]

    # A disabled policy, and a wallet without one, write nothing.
    off = await wallet(ledger, 5000)
    await policy(recharges, off, enabled=False)
    none = await wallet(ledger, 5000)
    for customer_id in (off, none):
        await ledger.debit(customer_id, "USD", 4900, f"x-{customer_id}")
        assert await pending(engine, customer_id) == []


async def test_a_rolled_back_balance_change_leaves_no_trigger(engine: AsyncEngine, ledger: Ledger) -> None:
    customer = await wallet(ledger, 5000)
    await policy(Recharges(engine), customer)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("UPDATE accounts SET posted = posted - 4900 WHERE customer_id = :c AND asset = 'USD'"),
                           {"c": customer.hex if engine.dialect.name == "sqlite" else customer})
        assert len((await conn.execute(select(repo.triggers).where(repo.triggers.c.customer_id == customer))).all()) == 1
        await transaction.rollback()
    assert await pending(engine, customer) == []  # the row lives and dies with the balance change


async def test_plan_sizes_one_charge_within_the_daily_and_monthly_caps(engine: AsyncEngine, ledger: Ledger) -> None:
    clock = Clock(dt.datetime(2030, 3, 30, 12, tzinfo=dt.UTC))
    recharges = Recharges(engine, clock)
    customer = await wallet(ledger, 5000)
    await policy(recharges, customer, daily_cap=3000, monthly_cap=4000)
    assert (await recharges.plan(customer, "USD", TIMINGS)).action == "idle"  # above threshold

    await ledger.debit(customer, "USD", 4500, f"a-{customer}")
    first = await recharges.plan(customer, "USD", TIMINGS)
    assert (first.action, first.amount, first.reason) == ("charge", 3000, "daily_cap_reached")
    # Planning again while it is in flight resumes the same charge (the in-flight guard).
    again = await recharges.plan(customer, "USD", TIMINGS)
    assert (again.action, again.top_up_id) == ("charge", first.top_up_id)
    async with engine.begin() as conn:  # the charge succeeded (what the workflow's credit does)
        await conn.execute(update(top_ups).where(top_ups.c.id == uuid.UUID(first.top_up_id)).values(status="succeeded"))

    capped = await recharges.plan(customer, "USD", TIMINGS)
    assert (capped.action, capped.reason) == ("idle", "daily_cap_reached")  # 3000 of 3000 today
    clock.now += dt.timedelta(days=1)  # a new day, the same month: 1000 of the month is left
    second = await recharges.plan(customer, "USD", TIMINGS)
    assert (second.action, second.amount, second.reason) == ("charge", 1000, "monthly_cap_reached")
    async with engine.begin() as conn:  # declined this time: money not taken, caps free again
        await conn.execute(update(top_ups).where(top_ups.c.id == uuid.UUID(second.top_up_id)).values(status="failed"))
    third = await recharges.plan(customer, "USD", TIMINGS)
    assert (third.action, third.amount) == ("charge", 1000)
    clock.now += dt.timedelta(days=2)  # April: a new month
    async with engine.begin() as conn:
        await conn.execute(update(top_ups).where(top_ups.c.id == uuid.UUID(third.top_up_id)).values(status="succeeded"))
    april = await recharges.plan(customer, "USD", TIMINGS)
    assert (april.action, april.amount, april.reason) == ("charge", 3000, "daily_cap_reached")
    keys = [f"auto-recharge-{customer}-USD:{n}" for n in (1, 2, 3, 4)]
    async with engine.connect() as conn:
        stored = (await conn.execute(select(top_ups.c.idempotency_key).where(
            top_ups.c.customer_id == customer).order_by(top_ups.c.created_at))).scalars().all()
    assert sorted(stored) == keys  # one top-up per charge, numbered in order (created_at ties under load)


async def test_failures_back_off_and_disable_after_n(engine: AsyncEngine, ledger: Ledger) -> None:
    clock = Clock(dt.datetime(2030, 5, 10, 12, tzinfo=dt.UTC))
    recharges = Recharges(engine, clock)
    customer = await wallet(ledger, 500)
    await policy(recharges, customer)
    for n in (1, 2, 3):
        plan = await recharges.plan(customer, "USD", TIMINGS)
        assert plan.action == "charge", (n, plan)
        outcome = await recharges.record_failure(uuid.UUID(plan.top_up_id), "card_declined", requires_action=False,
                                                 max_failures=3)
        # A retried activity does not count the same decline twice.
        again = await recharges.record_failure(uuid.UUID(plan.top_up_id), "card_declined", requires_action=False,
                                               max_failures=3)
        assert outcome.consecutive_failures == again.consecutive_failures == n
        if n < 3:
            wait = await recharges.plan(customer, "USD", TIMINGS)
            assert (wait.action, wait.reason, wait.wait_s) == ("wait", "backoff", backoff_s(n, 60, 3600))
            clock.now += dt.timedelta(seconds=wait.wait_s or 0)
    assert outcome.disabled
    disabled = await recharges.get_policy(customer, "USD")
    assert (disabled.enabled, disabled.disabled_reason) == (False, "consecutive_declines")
    assert (await recharges.plan(customer, "USD", TIMINGS)).action == "disabled"
    assert await account_threshold(engine, customer) is None  # the trigger no longer fires
    # Re-enabling (the customer fixed their card) starts afresh.
    await policy(recharges, customer)
    fresh = await recharges.get_policy(customer, "USD")
    assert (fresh.enabled, fresh.disabled_reason, fresh.consecutive_failures) == (True, None, 0)
    assert await account_threshold(engine, customer) == 1000


async def account_threshold(engine: AsyncEngine, customer: uuid.UUID) -> int | None:
    async with engine.connect() as conn:
        query = select(accounts.c.recharge_threshold).where(accounts.c.customer_id == customer)
        return (await conn.execute(query)).scalar_one()


async def test_bad_policies_are_refused_and_write_nothing(engine: AsyncEngine, ledger: Ledger) -> None:
    recharges = Recharges(engine)
    customer = await wallet(ledger, 0)
    for bad in ({"target": 1000}, {"daily_cap": 0}, {"threshold": True}, {"consent": None},
                {"payment_method_id": "pm bad"}, {"daily_cap": 600_000},
                {"consent": Consent(dt.datetime(2099, 1, 1, tzinfo=dt.UTC), "checkbox")}):
        with pytest.raises(ValidationError):
            await policy(recharges, customer, **bad)
    with pytest.raises(NotFound):
        await policy(recharges, uuid.uuid4())
    assert await recharges.list_policies(customer) == []


def test_size_charge_reaches_the_target_in_one_charge_within_caps() -> None:
    common = {"threshold": 1000, "target": 5000, "daily_cap": 10_000, "monthly_cap": 50_000}
    assert size_charge(available=999, charged_today=0, charged_this_month=0, **common).amount == 4001
    assert size_charge(available=-300, charged_today=0, charged_this_month=0, **common).amount == 5300  # overdraft
    assert size_charge(available=1000, charged_today=0, charged_this_month=0, **common).amount == 0
    limited = size_charge(available=0, charged_today=8000, charged_this_month=8000, **common)
    assert (limited.amount, limited.limited_by) == (2000, "daily_cap_reached")
    limited = size_charge(available=0, charged_today=0, charged_this_month=48_500, **common)
    assert (limited.amount, limited.limited_by) == (1500, "monthly_cap_reached")
    assert backoff_s(0, 60, 3600) == 0 and backoff_s(1, 60, 3600) == 60 and backoff_s(3, 60, 3600) == 240
    assert backoff_s(40, 60, 3600) == 3600
