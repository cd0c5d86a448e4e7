"""Stateful property test: random sequences of ledger operations checked against a small model.

Hypothesis drives the real :class:`Ledger` on the real database (PostgreSQL and SQLite) through
credits (immediate and scheduled; any source, priority and expiry), debits, holds (authorize;
full, partial and zero capture; void), the three sweeps (``expire_holds``, ``expire_grants``,
``activate_grants``), freeze and unfreeze, overdraft limits (per wallet and by customer policy),
a clock that jumps minutes to days, and retries of earlier requests: same key and same request
must replay and change nothing; same key and another amount (or a debit's key sent with a
credit, and the reverse) must be rejected and change nothing.

The model predicts every outcome, including which error each call must raise: per wallet
``posted``, ``held``, ``available``, overdraft limit and frozen flag; every hold's status; every
grant's ``remaining`` and status (it mirrors the consumption order: past-expiry grants first,
then priority, soonest expiry, oldest, id); the draws of each debit; what each sweep posts.
After every step the database must match the model and the books must hold: ``Ledger.audit``
reports nothing, and direct queries show balanced transactions, ``posted`` equal to the sum of
entries, ``held`` equal to the pending holds, ``available >= -overdraft_limit`` and grant
remainders adding up to ``max(posted, 0)``.

One outcome is left open on purpose: a debit or authorization refused for funds, on a wallet
with holds past expiry that no sweep has released yet. PostgreSQL's one-statement call keeps the
release of those holds, SQLite's transaction rolls it back; the model accepts either.

How it runs:

- The test is synchronous: hypothesis runs the machine, and each ledger coroutine runs on a
  private event loop in a background thread, against a private engine made from the session's
  ``database_url`` (disposed at the end). The session loop of pytest-asyncio is left alone.
- The sweeps are global: they act on every row of the shared database. So each example gets
  its own clock window far in the past (1990 and earlier), each new window *before* the earlier
  ones: a sweep here never reaches another example's rows, nor other tests' (their clocks sit
  around today). At the end of each example its window is drained (scheduled grants posted,
  holds and grants expired), so it leaves nothing due for the other tests' sweeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import sys
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import unique_code
from walletflow.db.engine import create_engine, dispose
from walletflow.errors import (
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    ValidationError,
    WalletflowError,
    WalletFrozen,
)
from walletflow.ledger import repository as repo
from walletflow.ledger.schemas import AuditReport, Draw
from walletflow.ledger.service import DEFAULT_HOLD_TTL_S, GRANT_SOURCES, Ledger

T = TypeVar("T")

#: Two wallets per example: enough to see that sweeps and holds touch the right one only.
N_CUSTOMERS = 2
#: Example n lives in [BASE - n * WINDOW, BASE - (n - 1) * WINDOW): windows never overlap.
BASE = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
WINDOW = dt.timedelta(days=120)
#: The clock stops here within a window, so every expiry set (at most 30 days of hold TTL, or 4
#: days of schedule plus 20 days of grant life) still falls in the window and the drain at the
#: end of the example reaches it.
MAX_ADVANCE = dt.timedelta(days=60)
#: Shrinking can run thousands of examples: after 5,000 windows (back to the year 345) start
#: over. Those old windows were drained when their example ended, so nothing in them is due.
N_WINDOWS = 5000
_windows = itertools.count(0)

#: Later than any sweep of any test will reach.
FAR_FUTURE = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
#: Bound on one ledger call (a hung call fails the test instead of hanging it).
CALL_TIMEOUT_S = 60

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

#: Wallet 0 gets most of the action (deeper states); wallet 1 is mostly a bystander.
customers = st.sampled_from([0, 0, 0, 1])
priorities = st.sampled_from([-5, 0, 0, 0, 10])
sources = st.sampled_from(GRANT_SOURCES)
grant_lifetimes = st.sampled_from([None, None, 30 * MINUTE, 2 * HOUR, DAY, 7 * DAY, 20 * DAY])
#: Zero: ``effective_at`` is exactly now, so the credit posts at once.
schedule_delays = st.sampled_from([dt.timedelta(0), 10 * MINUTE, 2 * HOUR, DAY, 4 * DAY])
hold_ttls = st.sampled_from([None, 60, 3600, 86400, 7 * 86400, 30 * 86400])
#: A wallet's start: (amount, life) of a paid grant, (amount, priority, life) of a promotional
#: one, an overdraft limit, and (amount, ttl) of a hold; zero amounts mean none.
wallet_setups = st.tuples(
    st.integers(0, 500),
    grant_lifetimes,
    st.sampled_from([0, 0, 50, 200]),
    priorities,
    grant_lifetimes,
    st.sampled_from([0, 0, 50, 200]),
    st.sampled_from([0, 0, 30, 120]),
    hold_ttls,
)
SWEEPS = ["sweep_scheduled", "sweep_holds", "sweep_grants"]
time_steps = st.one_of(
    st.sampled_from([MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, DAY, 3 * DAY]),
    st.integers(1, 3 * 86400).map(lambda s: dt.timedelta(seconds=s)),
)


class _LoopThread:
    """An event loop of our own in a background thread, so hypothesis can stay synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="stateful-ledger", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(CALL_TIMEOUT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CALL_TIMEOUT_S)
        self.loop.close()


class _Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# --- the model ----------------------------------------------------------------------------------


@dataclass
class MWallet:
    posted: int = 0
    held: int = 0
    #: The wallet's limit, or the one it will get when it is created (customer policy).
    overdraft_limit: int = 0
    frozen: bool = False

    @property
    def available(self) -> int:
        return self.posted - self.held


@dataclass
class MGrant:
    id: uuid.UUID
    customer: int
    priority: int
    amount: int
    remaining: int
    expires_at: dt.datetime | None
    effective_at: dt.datetime
    created_at: dt.datetime
    status: str  # scheduled | active | expired


@dataclass
class MHold:
    id: uuid.UUID
    customer: int
    amount: int
    expires_at: dt.datetime
    status: str = "pending"  # pending | captured | voided | expired
    captured_amount: int | None = None


@dataclass(frozen=True)
class Op:
    """A request that succeeded, kept to be re-issued later."""

    kind: str  # credit | debit | authorize | capture | void
    amount: int
    customer: int | None = None
    key: str | None = None
    hold_id: uuid.UUID | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    result_id: uuid.UUID | None = None  # grant id, debit transaction id, or hold id
    draws: tuple[Draw, ...] = ()
    scheduled: bool = False


@dataclass(frozen=True)
class DbState:
    """What the database holds for this example's asset and wallets."""

    accounts: dict[int, tuple[uuid.UUID, int, int, int]]  # customer -> (id, posted, held, limit)
    entry_sums: dict[uuid.UUID, int]
    pending_sums: dict[uuid.UUID, int]
    grants: dict[uuid.UUID, tuple[int, str]]  # id -> (remaining, status)
    holds: dict[uuid.UUID, tuple[str, int | None]]  # id -> (status, captured_amount)
    frozen: tuple[bool, ...]
    unbalanced: list[tuple[Any, ...]]
    transactions: int


# --- the machine --------------------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, runner: _LoopThread, engine: AsyncEngine) -> None:
        super().__init__()
        self.runner = runner
        self.engine = engine
        self.start = BASE - (next(_windows) % N_WINDOWS + 1) * WINDOW
        self.clock = _Clock(self.start)
        self.ledger = Ledger(engine, clock=self.clock)
        #: Whether the rest of the database audits clean now. If not (another test, or a failed
        #: example of this one, left findings), only this example's findings are judged: a
        #: failure must come from this example's own steps, or shrinking could not replay it.
        self.others_audit_clean = self.run(self.ledger.audit()).ok
        self.asset = unique_code("S")
        self.run(self.ledger.create_asset(self.asset, "Stateful test units", 2, "custom"))
        self.customer_ids = [
            self.run(self.ledger.create_customer(f"stateful-{uuid.uuid4().hex}")).id
            for _ in range(N_CUSTOMERS)
        ]
        self.wallets = [MWallet() for _ in range(N_CUSTOMERS)]
        self.grants: dict[uuid.UUID, MGrant] = {}
        self.holds: dict[uuid.UUID, MHold] = {}
        self.ops: list[Op] = []
        #: Captures that wrote a transaction: capture key -> (hold, amount).
        self.capture_keys: dict[str, tuple[uuid.UUID, int]] = {}
        self.transactions = 0  # ledger transactions in this example's asset
        self.seq = 0
        #: The database as the last check read it (or as the last step left it).
        self.known_state: DbState | None = None

    # --- plumbing -------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def expect(self, error: type[WalletflowError], coro: Coroutine[Any, Any, Any]) -> None:
        try:
            result = self.run(coro)
        except WalletflowError as exc:
            assert type(exc) is error, f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
            return
        except Exception as exc:  # an untyped error (a raw database error) is a failure too
            raise AssertionError(
                f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        raise AssertionError(f"expected {error.__name__}, the call succeeded with {result!r}")

    def key(self, kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex}"

    def next_micro(self) -> dt.timedelta:
        """A distinct sub-second offset per credit. The clock moves in whole seconds, so no two
        grants of an example share an expiry or an effective time: sweep order is determined."""
        self.seq += 1
        return dt.timedelta(microseconds=self.seq)

    def amounts(self, c: int, top: int) -> st.SearchStrategy[int]:
        """Small or large amounts, and the edges: exactly what the wallet can spend or one more,
        before and after its stale holds (past expiry, not swept yet) are released."""
        w = self.wallets[c]
        edge = w.available + w.overdraft_limit
        stale = sum(h.amount for h in self.stale_holds(c))
        edges = {edge, edge + 1, edge + stale, edge + stale + 1}
        return st.one_of(
            st.integers(1, max(1, edge)),
            st.integers(1, 60),
            st.integers(1, top),
            st.sampled_from(sorted({max(1, e) for e in edges})),
        )

    def stale_holds(self, c: int) -> list[MHold]:
        return [
            h
            for h in self.holds.values()
            if h.customer == c and h.status == "pending" and h.expires_at <= self.clock.now
        ]

    # --- the model's rules ----------------------------------------------------------------------

    def model_post_credit(self, g: MGrant) -> None:
        """A posted credit repays the overdraft first; the grant keeps the rest."""
        w = self.wallets[g.customer]
        g.remaining = g.amount - min(g.amount, max(0, -w.posted))
        g.status = "active"
        w.posted += g.amount
        self.transactions += 1

    def model_spend(self, c: int, amount: int) -> tuple[Draw, ...]:
        """Draw grants in consumption order; the overdraft covers what they cannot."""
        now = self.clock.now

        def order(g: MGrant) -> tuple[Any, ...]:
            past_expiry = g.expires_at is not None and g.expires_at <= now
            return (
                0 if past_expiry else 1,
                g.priority,
                g.expires_at is None,
                g.expires_at or now,
                g.created_at,
                g.id.int,
            )

        candidates = sorted(
            (
                g
                for g in self.grants.values()
                if g.customer == c and g.remaining > 0 and g.status in ("active", "expired")
            ),
            key=order,
        )
        draws: list[Draw] = []
        left = amount
        for g in candidates:
            if left == 0:
                break
            take = min(left, g.remaining)
            g.remaining -= take
            left -= take
            draws.append(Draw(g.id, take))
        if left:
            draws.append(Draw(None, left))
        self.wallets[c].posted -= amount
        self.transactions += 1
        return tuple(draws)

    def spend_allowed(self, c: int, amount: int, call: Coroutine[Any, Any, Any]) -> bool:
        """The checks of debit and authorize. True: the call must succeed (not made yet).
        False: the call was made here and refused as predicted.

        A frozen wallet refuses first. A short balance first releases the wallet's holds that are
        past expiry but not swept yet, then checks again.
        """
        w = self.wallets[c]
        if w.frozen:
            self.expect(WalletFrozen, call)
            return False
        if w.available - amount >= -w.overdraft_limit:
            return True
        stale = self.stale_holds(c)
        released = sum(h.amount for h in stale)
        if w.available + released - amount >= -w.overdraft_limit:
            for h in stale:
                h.status = "expired"
            w.held -= released
            return True
        self.expect(InsufficientFunds, call)
        if stale:
            # Refused anyway. Whether the release of the stale holds is kept differs by backend
            # (PostgreSQL's one-statement call commits it, SQLite's transaction rolls it back);
            # both leave the books consistent, so either is accepted, but all or nothing.
            statuses = {self.db_state().holds[h.id][0] for h in stale}
            assert statuses in ({"pending"}, {"expired"}), (
                f"stale holds partly released: {statuses}"
            )
            if statuses == {"expired"}:
                for h in stale:
                    h.status = "expired"
                w.held -= released
        return False

    # --- credits --------------------------------------------------------------------------------

    def do_credit(
        self,
        c: int,
        amount: int,
        source: str,
        priority: int,
        delay: dt.timedelta | None,
        lifetime: dt.timedelta | None,
    ) -> None:
        now = self.clock.now
        micro = self.next_micro()
        effective_at = (
            None if delay is None else now + delay + (micro if delay else dt.timedelta(0))
        )
        starts = effective_at or now
        scheduled = starts > now
        expires_at = (
            None
            if lifetime is None
            else starts + lifetime + (dt.timedelta(0) if scheduled else micro)
        )
        key = self.key("credit")
        kwargs = {
            "source": source,
            "priority": priority,
            "effective_at": effective_at,
            "expires_at": expires_at,
        }
        posting = self.run(
            self.ledger.credit(self.customer_ids[c], self.asset, amount, key, **kwargs)
        )
        assert (posting.replayed, posting.amount) == (
            False,
            amount,
        ) and posting.grant_id is not None
        g = MGrant(
            posting.grant_id, c, priority, amount, amount, expires_at, starts, now, "scheduled"
        )
        self.grants[g.id] = g
        if scheduled:
            assert posting.transaction_id is None, "a scheduled credit must not post yet"
        else:
            assert posting.transaction_id is not None
            self.model_post_credit(g)
        self.ops.append(
            Op("credit", amount, c, key, kwargs=kwargs, result_id=g.id, scheduled=scheduled)
        )

    @initialize(setups=st.lists(wallet_setups, min_size=N_CUSTOMERS, max_size=N_CUSTOMERS))
    def fund_wallets(self, setups: list[tuple[Any, ...]]) -> None:
        """Most interesting sequences start from a funded wallet: two grants of different
        priority and life, maybe an overdraft, maybe a hold."""
        for c, (amount, lifetime, amount2, priority2, lifetime2, limit, hold, ttl) in enumerate(
            setups
        ):
            if amount:
                self.do_credit(c, amount, "paid", 0, None, lifetime)
            if amount2:
                self.do_credit(c, amount2, "promotional", priority2, None, lifetime2)
            if limit:
                self.run(self.ledger.set_overdraft_limit(self.customer_ids[c], self.asset, limit))
                self.wallets[c].overdraft_limit = limit
            if hold:
                self.do_authorize(c, hold, ttl)

    @rule(
        c=customers,
        amount=st.integers(1, 500),
        source=sources,
        priority=priorities,
        delay=st.none() | schedule_delays,
        lifetime=grant_lifetimes,
    )
    def credit(
        self,
        c: int,
        amount: int,
        source: str,
        priority: int,
        delay: dt.timedelta | None,
        lifetime: dt.timedelta | None,
    ) -> None:
        """A credit, posted at once or scheduled (``effective_at`` now or later)."""
        self.do_credit(c, amount, source, priority, delay, lifetime)

    # --- debits ---------------------------------------------------------------------------------

    @rule(c=customers, data=st.data())
    def debit(self, c: int, data: st.DataObject) -> None:
        amount = data.draw(self.amounts(c, 400), label="amount")
        key = self.key("debit")
        call = self.ledger.debit(self.customer_ids[c], self.asset, amount, key)
        if not self.spend_allowed(c, amount, call):
            return
        posting = self.run(call)
        draws = self.model_spend(c, amount)
        assert (posting.replayed, posting.amount) == (False, amount)
        assert posting.draws == draws, f"draws {posting.draws} != model {draws}"
        self.ops.append(Op("debit", amount, c, key, result_id=posting.transaction_id, draws=draws))

    # --- holds ----------------------------------------------------------------------------------

    @rule(c=customers, ttl=hold_ttls, data=st.data())
    def authorize(self, c: int, ttl: int | None, data: st.DataObject) -> None:
        self.do_authorize(c, data.draw(self.amounts(c, 300), label="amount"), ttl)

    def do_authorize(self, c: int, amount: int, ttl: int | None) -> None:
        key = self.key("hold")
        kwargs = {"expires_in_s": ttl}
        call = self.ledger.authorize(self.customer_ids[c], self.asset, amount, key, **kwargs)
        if not self.spend_allowed(c, amount, call):
            return
        info = self.run(call)
        expires_at = self.clock.now + dt.timedelta(
            seconds=DEFAULT_HOLD_TTL_S if ttl is None else ttl
        )
        assert (info.status, info.amount, info.expires_at, info.replayed) == (
            "pending",
            amount,
            expires_at,
            False,
        )
        self.holds[info.id] = MHold(info.id, c, amount, expires_at)
        self.wallets[c].held += amount
        self.ops.append(Op("authorize", amount, c, key, kwargs=kwargs, result_id=info.id))

    def pick_hold(self, data: st.DataObject) -> MHold:
        return self.holds[data.draw(st.sampled_from(list(self.holds)), label="hold")]

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), explicit_key=st.booleans())
    def capture(self, data: st.DataObject, explicit_key: bool) -> None:
        h = self.pick_hold(data)
        amount = data.draw(
            st.one_of(
                st.just(0),
                st.just(h.amount),
                st.integers(0, h.amount),
                st.integers(h.amount + 1, h.amount + 20),
            ),
            label="capture amount",
        )
        kwargs = {"idempotency_key": self.key("capture")} if explicit_key else {}
        key = kwargs.get("idempotency_key") or f"hold:{h.id}:capture"
        call = self.ledger.capture(h.id, amount, **kwargs)
        w = self.wallets[h.customer]
        if key in self.capture_keys:  # the default key, after a capture that wrote a transaction
            if self.capture_keys[key] == (h.id, amount):
                self.check_replay(Op("capture", amount, hold_id=h.id, kwargs=kwargs), call)
            else:
                self.expect(IdempotencyConflict, call)
        elif h.status == "captured" and h.captured_amount == 0 and amount == 0:
            info = self.run(call)
            assert (info.status, info.replayed) == ("captured", True)
        elif h.status != "pending":
            self.expect(HoldNotPending, call)
        elif h.expires_at <= self.clock.now:
            # Found past expiry: the capture expires it (and keeps that) and reports it is gone.
            self.expect(HoldNotPending, call)
            h.status = "expired"
            w.held -= h.amount
        elif amount > h.amount:
            self.expect(ValidationError, call)
        else:
            info = self.run(call)
            if amount:
                self.model_spend(h.customer, amount)
                self.capture_keys[key] = (h.id, amount)
            w.held -= h.amount
            h.status, h.captured_amount = "captured", amount
            assert (info.status, info.captured_amount, info.replayed) == ("captured", amount, False)
            assert (info.capture_transaction_id is None) == (amount == 0)
            self.ops.append(
                Op("capture", amount, h.customer, hold_id=h.id, kwargs=kwargs, result_id=h.id)
            )

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        h = self.pick_hold(data)
        call = self.ledger.void(h.id)
        if h.status == "voided":
            info = self.run(call)
            assert (info.status, info.replayed) == ("voided", True)
        elif h.status != "pending":
            self.expect(HoldNotPending, call)
        else:
            # A pending hold past its expiry that no sweep has reached yet can still be voided.
            info = self.run(call)
            assert (info.status, info.replayed) == ("voided", False)
            h.status = "voided"
            self.wallets[h.customer].held -= h.amount
            self.ops.append(Op("void", 0, h.customer, hold_id=h.id, result_id=h.id))

    # --- wallet settings ------------------------------------------------------------------------

    @rule(
        c=customers,
        change=st.sampled_from(["freeze", "unfreeze", "wallet limit", "policy limit"]),
        data=st.data(),
    )
    def change_wallet_settings(self, c: int, change: str, data: st.DataObject) -> None:
        """Freeze, unfreeze, or set the overdraft limit: per wallet, or through the customer's
        policy (every wallet of the customer)."""
        if change in ("freeze", "unfreeze"):
            info = self.run(
                (self.ledger.freeze if change == "freeze" else self.ledger.unfreeze)(
                    self.customer_ids[c]
                )
            )
            assert info.status == ("frozen" if change == "freeze" else "active")
            self.wallets[c].frozen = change == "freeze"
            return
        by_policy = change == "policy limit"
        w = self.wallets[c]
        debt = max(0, -w.available)
        limit = data.draw(
            st.one_of(st.integers(0, 300), st.sampled_from([debt, max(0, debt - 1), 0])),
            label="limit",
        )
        customer = self.customer_ids[c]
        if by_policy:
            policy = "overdraft" if limit else "reject"
            call = self.ledger.update_customer(
                customer, insufficient_balance=policy, overdraft_limit=limit
            )
        else:
            call = self.ledger.set_overdraft_limit(customer, self.asset, limit)
        if limit >= debt:
            self.run(call)
            w.overdraft_limit = limit
            return
        # Below the current debt: available would be < -overdraft_limit. Refusing (any typed
        # error, nothing changed) is fine; accepting breaks the wallet invariant.
        try:
            self.run(call)
        except WalletflowError:
            return
        w.overdraft_limit = limit
        raise AssertionError(
            f"{'update_customer' if by_policy else 'set_overdraft_limit'} accepted overdraft limit {limit} "
            f"for a wallet with available {w.available}: now available < -overdraft_limit"
        )

    @rule(c=customers)
    def read_views(self, c: int) -> None:
        """``balance`` and ``grants`` report what the model holds."""
        w = self.wallets[c]
        balance = self.run(self.ledger.balance(self.customer_ids[c], self.asset))
        assert (balance.posted, balance.held, balance.available) == (w.posted, w.held, w.available)
        if balance.account_id is not None:
            assert balance.overdraft_limit == w.overdraft_limit
        grants = self.run(self.ledger.grants(self.customer_ids[c]))
        assert {
            g.id: (g.amount, g.remaining, g.status, g.priority, g.expires_at) for g in grants
        } == {
            g.id: (g.amount, g.remaining, g.status, g.priority, g.expires_at)
            for g in self.grants.values()
            if g.customer == c
        }

    # --- time and sweeps -------------------------------------------------------------------------

    @rule(step=time_steps)
    def time_passes(self, step: dt.timedelta) -> None:
        self.advance_time(step)

    def advance_time(self, step: dt.timedelta) -> None:
        self.clock.now = min(self.clock.now + step, self.start + MAX_ADVANCE)

    @rule(step=st.just(dt.timedelta(0)) | time_steps, order=st.permutations(SWEEPS))
    def tick(self, step: dt.timedelta, order: list[str]) -> None:
        """What the scheduled runs do: time passes (or not), then ``activate_grants``,
        ``expire_holds`` and ``expire_grants`` run, in some order."""
        self.advance_time(step)
        for sweep in order:
            getattr(self, sweep)()

    def sweep_holds(self) -> None:
        """``expire_holds``: pending holds past their expiry are released."""
        now = self.clock.now
        due = [h for h in self.holds.values() if h.status == "pending" and h.expires_at <= now]
        expired = self.run(self.ledger.expire_holds())
        assert expired >= len(due)  # a global sweep: the exact holds are checked by the invariant
        for h in due:
            h.status = "expired"
            self.wallets[h.customer].held -= h.amount

    def sweep_grants(self) -> None:
        """``expire_grants``: remainders past expiry go to breakage, except what pending holds
        still need (kept back for a later sweep)."""
        now = self.clock.now
        due = sorted(
            (
                g
                for g in self.grants.values()
                if g.status in ("active", "expired")
                and g.expires_at is not None
                and g.expires_at <= now
                and g.remaining > 0
            ),
            key=lambda g: g.expires_at,  # type: ignore[arg-type, return-value]
        )
        expected: dict[uuid.UUID, int] = {}
        for g in due:
            w = self.wallets[g.customer]
            amount = max(0, min(g.remaining, w.posted - w.held))
            g.status = "expired"
            if amount:
                g.remaining -= amount
                w.posted -= amount
                self.transactions += 1
                expected[g.id] = amount
        postings = self.run(self.ledger.expire_grants())
        assert {p.grant_id: p.amount for p in postings if p.grant_id in self.grants} == expected

    def sweep_scheduled(self) -> None:
        """``activate_grants``: scheduled grants whose time has come are posted."""
        now = self.clock.now
        due = sorted(
            (g for g in self.grants.values() if g.status == "scheduled" and g.effective_at <= now),
            key=lambda g: g.effective_at,
        )
        postings = self.run(self.ledger.activate_grants())
        for g in due:
            self.model_post_credit(g)
        assert {p.grant_id: p.amount for p in postings if p.grant_id in self.grants} == {
            g.id: g.amount for g in due
        }

    # --- retries --------------------------------------------------------------------------------

    def call_op(self, op: Op, amount: int) -> Coroutine[Any, Any, Any]:
        if op.kind == "credit":
            return self.ledger.credit(
                self.customer_ids[op.customer], self.asset, amount, op.key, **op.kwargs
            )
        if op.kind == "debit":
            return self.ledger.debit(self.customer_ids[op.customer], self.asset, amount, op.key)
        if op.kind == "authorize":
            return self.ledger.authorize(
                self.customer_ids[op.customer], self.asset, amount, op.key, **op.kwargs
            )
        if op.kind == "capture":
            return self.ledger.capture(op.hold_id, amount, **op.kwargs)
        if op.kind == "void":
            return self.ledger.void(op.hold_id)
        raise AssertionError(op.kind)

    def unchanged_by(self, what: str) -> None:
        """Nothing moved since the last read of the database (a replay or a rejected request)."""
        before = self.known_state
        assert self.db_state() == before, f"{what} changed the database"

    def check_replay(self, op: Op, call: Coroutine[Any, Any, Any]) -> None:
        try:
            result = self.run(call)
        except Exception as exc:
            raise AssertionError(
                f"retry of {op.kind} {op} raised {type(exc).__name__}: {exc}"
            ) from exc
        assert result.replayed, f"retry of {op.kind} was not replayed: {result!r}"
        if op.kind == "credit":
            assert (result.grant_id, result.amount) == (op.result_id, op.amount)
        elif op.kind == "debit":
            assert (result.transaction_id, result.draws) == (op.result_id, op.draws)
        else:
            assert result.id == (op.result_id or op.hold_id)
        self.unchanged_by(f"the retry of {op}")

    @precondition(lambda self: self.ops)
    @rule(data=st.data(), other_operation=st.booleans(), delta=st.integers(1, 100))
    def retry(self, data: st.DataObject, other_operation: bool, delta: int) -> None:
        """Re-issue earlier requests under their keys. The same request replays and changes
        nothing. Another amount, or another operation, is rejected and changes nothing."""
        op = data.draw(st.sampled_from(self.ops), label="replayed op")
        self.check_replay(op, self.call_op(op, op.amount))

        if other_operation:
            # A debit's key sent with a credit, or a credit's key with a debit. The credit is
            # posted, or scheduled so far ahead that no sweep of any test will ever be due to
            # post it: were the debit to take its key, that grant could never be posted (its
            # transaction's key would be taken) and every activate_grants after it would fail.
            if data.draw(st.booleans(), label="key of a credit scheduled far ahead"):
                self.do_credit(0, 100, "paid", 0, FAR_FUTURE - self.clock.now, None)
                self.db_state()  # the state the rejected debit must leave unchanged
                ops = [self.ops[-1]]
            else:
                ops = [
                    o
                    for o in self.ops
                    if o.kind == "debit" or (o.kind == "credit" and not o.scheduled)
                ]
        else:
            ops = [o for o in self.ops if o.kind != "void"]
        if not ops:
            return
        op = data.draw(st.sampled_from(ops), label="rejected op")
        if not other_operation:
            call = self.call_op(op, op.amount + delta)
            # A zero capture wrote no transaction, so it claimed no key: the hold is simply no
            # longer pending (as Ledger.capture documents).
            zero_capture = op.kind == "capture" and op.amount == 0
            error: type[WalletflowError] = HoldNotPending if zero_capture else IdempotencyConflict
        else:
            customer = self.customer_ids[op.customer]
            if op.kind == "debit":
                call = self.ledger.credit(customer, self.asset, op.amount, op.key)
            else:
                call = self.ledger.debit(customer, self.asset, op.amount, op.key)
            error = IdempotencyConflict
        self.expect(error, call)
        self.unchanged_by(f"the rejected reuse of the key of {op}")

    # --- invariants -----------------------------------------------------------------------------

    def db_state(self) -> DbState:
        self.known_state = self.run(self._read_db_state())
        return self.known_state

    async def _read_db_state(self) -> DbState:
        """Three queries (this runs after every step): wallets with their owners, entries of
        the asset's accounts, holds and grants of the wallets."""
        a, c, e, h, g = repo.accounts, repo.customers, repo.entries, repo.holds, repo.grants
        # The asset is fresh: all its accounts (wallets and system accounts) are this example's.
        asset_accounts = select(a.c.id).where(a.c.asset == self.asset).scalar_subquery()
        wallet_ids = (
            select(a.c.id)
            .where(a.c.asset == self.asset, a.c.customer_id.is_not(None))
            .scalar_subquery()
        )
        owners = (
            select(c.c.id.label("customer_id"), c.c.status, a.c.id, a.c.posted, a.c.held)
            .add_columns(a.c.overdraft_limit)
            .outerjoin(a, (a.c.customer_id == c.c.id) & (a.c.asset == self.asset))
            .where(c.c.id.in_(self.customer_ids))
        )
        sums = (
            select(e.c.transaction_id, e.c.account_id, e.c.asset, func.sum(e.c.amount))
            .where(e.c.account_id.in_(asset_accounts))
            .group_by(e.c.transaction_id, e.c.account_id, e.c.asset)
        )
        buckets = union_all(
            select(literal("hold"), h.c.id, h.c.account_id, h.c.amount, h.c.status)
            .add_columns(h.c.captured_amount)
            .where(h.c.account_id.in_(wallet_ids)),
            select(literal("grant"), g.c.id, g.c.account_id, g.c.amount, g.c.status)
            .add_columns(g.c.remaining)
            .where(g.c.account_id.in_(wallet_ids)),
        )
        async with self.engine.connect() as conn:
            owner_rows = (await conn.execute(owners)).all()
            sum_rows = (await conn.execute(sums)).all()
            bucket_rows = (await conn.execute(buckets)).all()
        index = {cid: i for i, cid in enumerate(self.customer_ids)}
        statuses = {r.customer_id: r.status for r in owner_rows}
        entry_sums: dict[uuid.UUID, int] = {}
        tx_sums: dict[tuple[uuid.UUID, str], int] = {}
        for tx_id, account_id, asset, amount in sum_rows:
            entry_sums[account_id] = entry_sums.get(account_id, 0) + int(amount)
            tx_sums[tx_id, asset] = tx_sums.get((tx_id, asset), 0) + int(amount)
        pending_sums: dict[uuid.UUID, int] = {}
        holds: dict[uuid.UUID, tuple[str, int | None]] = {}
        grants: dict[uuid.UUID, tuple[int, str]] = {}
        for kind, bucket_id, account_id, amount, status, extra in bucket_rows:
            if kind == "grant":
                grants[bucket_id] = (extra, status)
                continue
            holds[bucket_id] = (status, extra)
            if status == "pending":
                pending_sums[account_id] = pending_sums.get(account_id, 0) + amount
        return DbState(
            accounts={
                index[r.customer_id]: (r.id, r.posted, r.held, r.overdraft_limit)
                for r in owner_rows
                if r.id is not None
            },
            entry_sums=entry_sums,
            pending_sums=pending_sums,
            grants=grants,
            holds=holds,
            frozen=tuple(statuses[cid] == "frozen" for cid in self.customer_ids),
            unbalanced=[
                (tx_id, asset, total) for (tx_id, asset), total in tx_sums.items() if total
            ],
            transactions=len({tx_id for tx_id, _ in tx_sums}),
        )

    def our_audit_findings(
        self, report: AuditReport, account_ids: set[uuid.UUID]
    ) -> dict[str, list[Any]]:
        findings = {
            "unbalanced_transactions": [
                r for r in report.unbalanced_transactions if r[1] == self.asset
            ],
            "posted_mismatches": [r for r in report.posted_mismatches if r[0] in account_ids],
            "held_mismatches": [r for r in report.held_mismatches if r[0] in account_ids],
            "grant_mismatches": [r for r in report.grant_mismatches if r[0] in account_ids],
            "overdrawn_accounts": [r for r in report.overdrawn_accounts if r[0] in account_ids],
        }
        return {name: rows for name, rows in findings.items() if rows}

    @invariant()
    def books_hold_and_match_the_model(self) -> None:
        db = self.db_state()
        report = self.run(self.ledger.audit())
        ours = self.our_audit_findings(report, {account[0] for account in db.accounts.values()})
        assert not ours, f"audit findings on this example's wallets: {ours}"
        if self.others_audit_clean:
            assert report.ok, f"audit findings elsewhere in the database: {report}"

        assert not db.unbalanced, f"unbalanced transactions: {db.unbalanced}"
        for c, (account_id, posted, held, limit) in db.accounts.items():
            assert posted == db.entry_sums.get(account_id, 0), (
                f"wallet {c}: posted {posted} != sum of its entries"
            )
            assert held == db.pending_sums.get(account_id, 0), (
                f"wallet {c}: held {held} != its pending holds"
            )
            assert posted - held >= -limit, (
                f"wallet {c}: available {posted - held} < -overdraft_limit {limit}"
            )
            remaining = sum(
                r
                for gid, (r, status) in db.grants.items()
                if status in ("active", "expired") and self.grants[gid].customer == c
            )
            assert remaining == max(posted, 0), (
                f"wallet {c}: grants keep {remaining}, posted is {posted}"
            )

        for c, w in enumerate(self.wallets):
            if c in db.accounts:
                _, posted, held, limit = db.accounts[c]
                assert (posted, held, limit) == (w.posted, w.held, w.overdraft_limit), (
                    f"wallet {c}: (posted, held, overdraft_limit) is {(posted, held, limit)} in the database, "
                    f"{(w.posted, w.held, w.overdraft_limit)} in the model"
                )
            else:  # not created yet (a wallet is created by its first use)
                assert (w.posted, w.held) == (0, 0), (
                    f"wallet {c} has no account but the model holds {w}"
                )
        assert db.frozen == tuple(w.frozen for w in self.wallets)
        assert db.holds == {h.id: (h.status, h.captured_amount) for h in self.holds.values()}, (
            "holds differ"
        )
        assert db.grants == {g.id: (g.remaining, g.status) for g in self.grants.values()}, (
            "grants differ"
        )
        assert db.transactions == self.transactions, (
            f"{db.transactions} transactions, the model has {self.transactions}"
        )

    # --- end of an example ----------------------------------------------------------------------

    def teardown(self) -> None:
        """Drain the example's window: leave nothing due for the other tests' sweeps and
        nothing for their audits to report.

        If the example has passed so far, the drain is checked like any step. If it is failing
        (an exception is on its way out), the drain is best effort and silent, so it cannot
        hide that failure.
        """
        self.clock.now = self.start + WINDOW - dt.timedelta(seconds=1)
        if sys.exc_info()[0] is None:
            self.sweep_scheduled()
            self.sweep_holds()
            self.sweep_grants()
            self.books_hold_and_match_the_model()
            return
        for sweep in (
            self.ledger.activate_grants,
            self.ledger.expire_holds,
            self.ledger.expire_grants,
        ):
            with contextlib.suppress(Exception):
                self.run(sweep())
        for customer in self.customer_ids:
            with contextlib.suppress(Exception):
                balance = self.run(self.ledger.balance(customer, self.asset))
                if balance.available < -balance.overdraft_limit:
                    self.run(
                        self.ledger.set_overdraft_limit(customer, self.asset, -balance.available)
                    )


def test_ledger_matches_its_model_under_random_operations(database_url: str) -> None:
    runner = _LoopThread()
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url)
    else:
        # One call at a time: a small pool. No pre-ping: these connections live only as long as
        # the test, and a ping per checkout would double the round trips of the per-step checks.
        engine = create_engine(database_url, pool_size=2, pool_pre_ping=False)
    try:
        run_state_machine_as_test(
            lambda: LedgerMachine(runner, engine),
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        runner.run(dispose(engine))
        runner.close()
