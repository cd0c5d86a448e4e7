"""The ledger: every money movement in walletflow goes through this class.

Each public method is one unit of work (one database transaction) and is idempotent on its
key: the same key with the same request returns the original result and changes nothing; the
same key with a different request raises :class:`IdempotencyConflict`.

System accounts, by code. They keep no running balance (see ``Account``):

- ``clearing``: money that came in from outside (card payments, external top-ups);
- ``revenue``: usage debits and captures;
- ``breakage``: expired grant remainders;
- ``promotions``: gifts and promotional grants;
- ``adjustments``: manual corrections pushed by the platform.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from asyncpg import Record
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.db.hotpath import hot_path, is_unique_violation_on_key
from walletflow.db.types import utcnow
from walletflow.errors import (
    AlreadyExists,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    ValidationError,
    WalletFrozen,
)
from walletflow.ledger import postings
from walletflow.ledger import repository as repo
from walletflow.ledger.batching import (
    DEBIT_GROUPS,
    HOLD_GROUPS,
    Pending,
    PendingDebit,
    PendingHold,
    group_writer,
)
from walletflow.ledger.ids import time_ordered_id
from walletflow.ledger.postings import (
    ADJUSTMENTS,
    BREAKAGE,
    CLEARING,
    PROMOTIONS,
    REVENUE,
    SYSTEM_ACCOUNTS,
)
from walletflow.ledger.rules import (
    check_amount,
    check_key,
    expirable_amount,
    request_hash,
)
from walletflow.ledger.schemas import (
    AssetInfo,
    AuditReport,
    Balance,
    CustomerInfo,
    Draw,
    GrantInfo,
    HoldInfo,
    Posting,
)
from walletflow.observability.metrics import DEBITS, HOLDS

T = TypeVar("T")


GRANT_SOURCES = ("paid", "promotional", "migrated", "bundled")
ASSET_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")
#: Holds that say nothing expire after an hour; none may outlive 30 days.
DEFAULT_HOLD_TTL_S = 3600
MAX_HOLD_TTL_S = 30 * 24 * 3600
#: How many due holds or grants one sweep call handles (bounded work per call).
SWEEP_BATCH = 500


class Ledger:
    """Double-entry wallet ledger over one database (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._system_ids: dict[tuple[str, str], uuid.UUID] = {}
        # PostgreSQL: debits and holds are one server-side statement each, on a raw driver pool.
        self._server_side = engine.dialect.name == "postgresql"

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """One transaction; a lost race on an idempotency key re-runs ``work``, which then
        finds the winner's row and replays it (or reports the conflict)."""
        for attempt in range(3):
            try:
                return await in_transaction(self.engine, work)
            except IntegrityError as exc:
                if "idempotency_key" not in str(exc.orig) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- assets and customers -----------------------------------------------------------------

    async def create_asset(self, code: str, name: str, scale: int, kind: str) -> AssetInfo:
        """Create an asset and its system accounts; re-creating an identical one is a no-op."""
        if not isinstance(code, str) or not ASSET_CODE.match(code):
            raise ValidationError("code must be 2-16 upper-case letters, digits or _", field="code")
        if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 18:
            raise ValidationError("scale must be an integer from 0 to 18", field="scale")
        if kind not in ("fiat", "custom"):
            raise ValidationError("kind must be fiat or custom", field="kind")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ValidationError("name must be 1 to 100 characters", field="name")

        async def work(conn: AsyncConnection) -> AssetInfo:
            now = self.clock()
            inserted = await repo.insert_asset(
                conn, {"code": code, "name": name, "scale": scale, "kind": kind, "created_at": now}
            )
            row = await repo.get_asset(conn, code)
            assert row is not None
            if not inserted and (row.name, row.scale, row.kind) != (name, scale, kind):
                raise AlreadyExists(f"asset {code} exists with a different definition")
            for system_code in SYSTEM_ACCOUNTS:
                await repo.get_or_create_system_account(conn, system_code, code, now)
            return AssetInfo(row.code, row.name, row.scale, row.kind)

        return await self._run(work)

    async def get_asset(self, code: str) -> AssetInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_asset(conn, code)
        if row is None:
            raise NotFound(f"asset {code} not found")
        return AssetInfo(row.code, row.name, row.scale, row.kind)

    async def create_customer(
        self,
        external_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CustomerInfo:
        """Create a customer; the same external id with the same fields returns the existing one."""
        if not isinstance(external_id, str) or not 1 <= len(external_id) <= 255:
            raise ValidationError("external_id must be 1 to 255 characters", field="external_id")
        metadata = metadata or {}

        async def work(conn: AsyncConnection) -> CustomerInfo:
            now = self.clock()
            inserted = await repo.insert_customer(
                conn,
                {"id": uuid.uuid4(), "external_id": external_id, "name": name, "email": email,
                 "metadata": metadata, "status": "active", "created_at": now, "updated_at": now},
            )
            row = await repo.get_customer_by_external_id(conn, external_id)
            assert row is not None
            if not inserted and (row.name, row.email, row.metadata) != (name, email, metadata):
                raise AlreadyExists(f"customer with external_id {external_id!r} already exists")
            return customer_info(row)

        return await self._run(work)

    async def update_customer(self, customer_id: uuid.UUID, **changes: Any) -> CustomerInfo:
        """Change a customer's profile or billing policy.

        ``insufficient_balance``: ``reject`` (default) refuses a debit beyond the balance;
        ``overdraft`` lets every wallet of the customer go down to ``-overdraft_limit``.
        """
        allowed = {"name", "email", "metadata", "billing_mode", "insufficient_balance", "overdraft_limit"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValidationError(f"cannot change {', '.join(sorted(unknown))}")
        if "billing_mode" in changes and changes["billing_mode"] not in ("prepaid", "postpaid"):
            raise ValidationError("billing_mode must be prepaid or postpaid", field="billing_mode")
        if "insufficient_balance" in changes and changes["insufficient_balance"] not in ("reject", "overdraft"):
            raise ValidationError("insufficient_balance must be reject or overdraft", field="insufficient_balance")
        if "overdraft_limit" in changes:
            check_amount(changes["overdraft_limit"], allow_zero=True, name="overdraft_limit")

        async def work(conn: AsyncConnection) -> CustomerInfo:
            customer = await repo.get_customer(conn, customer_id)
            if customer is None:
                raise NotFound(f"customer {customer_id} not found")
            # Lock the wallets before changing their limits (same lock order as every posting).
            wallets = [await repo.lock_account(conn, a.id) for a in await repo.list_customer_accounts(conn, customer_id)]
            await repo.update_customer(conn, customer_id, {**changes, "updated_at": self.clock()})
            updated = await repo.get_customer(conn, customer_id)
            limit = postings.effective_overdraft(updated)
            for wallet in wallets:
                _ensure_limit_covers_debt(wallet, limit)
            await repo.set_customer_overdraft(conn, customer_id, limit)
            return customer_info(updated)

        return await self._run(work)

    async def find_customer(self, external_id: str) -> CustomerInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_customer_by_external_id(conn, external_id)
        if row is None:
            raise NotFound(f"customer with external_id {external_id!r} not found")
        return customer_info(row)

    async def get_customer(self, customer_id: uuid.UUID) -> CustomerInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_customer(conn, customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id} not found")
        return customer_info(row)

    async def freeze(self, customer_id: uuid.UUID) -> CustomerInfo:
        """Freeze a wallet: debits and new holds are refused until :meth:`unfreeze`."""
        return await self._set_status(customer_id, "frozen")

    async def unfreeze(self, customer_id: uuid.UUID) -> CustomerInfo:
        return await self._set_status(customer_id, "active")

    async def _set_status(self, customer_id: uuid.UUID, status: str) -> CustomerInfo:
        async def work(conn: AsyncConnection) -> CustomerInfo:
            if not await repo.set_customer_status(conn, customer_id, status, self.clock()):
                raise NotFound(f"customer {customer_id} not found")
            row = await repo.get_customer(conn, customer_id)
            return customer_info(row)

        return await self._run(work)

    # --- accounts -----------------------------------------------------------------------------

    async def _customer_account(
        self, conn: AsyncConnection, customer_id: uuid.UUID, asset: str, *, create: bool = True
    ) -> uuid.UUID | None:
        """The customer's account in ``asset``, created on first use (never by a read)."""
        row = await repo.find_customer_account(conn, customer_id, asset)
        if row is not None:
            return row.id
        customer = await repo.get_customer(conn, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} not found", field="customer_id")
        if await repo.get_asset(conn, asset) is None:
            raise NotFound(f"asset {asset} not found", field="asset")
        if not create:
            return None
        return await repo.get_or_create_customer_account(
            conn, customer_id, asset, postings.effective_overdraft(customer), self.clock()
        )

    async def _system_account(self, conn: AsyncConnection, system_code: str, asset: str) -> uuid.UUID:
        cached = self._system_ids.get((system_code, asset))
        if cached is not None:
            return cached
        account_id = await repo.find_system_account(conn, system_code, asset)
        if account_id is not None:
            # Found before this transaction wrote anything for it: committed, safe to cache.
            self._system_ids[(system_code, asset)] = account_id
            return account_id
        # Not cached: this transaction's insert could still roll back.
        return await repo.get_or_create_system_account(conn, system_code, asset, self.clock())

    async def set_overdraft_limit(self, customer_id: uuid.UUID, asset: str, limit: int) -> Balance:
        """Allow ``available`` to go down to ``-limit`` (0 turns overdraft off)."""
        check_amount(limit, allow_zero=True, name="overdraft_limit")

        async def work(conn: AsyncConnection) -> Balance:
            account_id = await self._customer_account(conn, customer_id, asset)
            _ensure_limit_covers_debt(await repo.lock_account(conn, account_id), limit)
            await repo.set_overdraft_limit(conn, account_id, limit)
            return _balance(await repo.lock_account(conn, account_id))

        return await self._run(work)

    async def balance(self, customer_id: uuid.UUID, asset: str) -> Balance:
        async with self.engine.connect() as conn:
            row = await repo.find_customer_account(conn, customer_id, asset)
            if row is None:
                await self._customer_account(conn, customer_id, asset, create=False)
                return Balance(None, asset, 0, 0, 0)
        return _balance(row)

    async def wallet(self, customer_id: uuid.UUID) -> list[Balance]:
        async with self.engine.connect() as conn:
            if await repo.get_customer(conn, customer_id) is None:
                raise NotFound(f"customer {customer_id} not found")
            return [_balance(r) for r in await repo.list_customer_accounts(conn, customer_id)]

    async def grants(self, customer_id: uuid.UUID) -> list[GrantInfo]:
        async with self.engine.connect() as conn:
            account_ids = [r.id for r in await repo.list_customer_accounts(conn, customer_id)]
            return [_grant_info(r) for r in await repo.list_grants(conn, account_ids)]

    # --- credits ------------------------------------------------------------------------------

    async def credit(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        idempotency_key: str,
        *,
        source: str = "paid",
        priority: int = 0,
        effective_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
        kind: str = "credit",
        counter: str = CLEARING,
        metadata: dict[str, Any] | None = None,
        also: Callable[[AsyncConnection, Posting], Awaitable[None]] | None = None,
    ) -> Posting:
        """Credit a customer's wallet as a new grant.

        A grant that becomes effective in the future is stored as ``scheduled`` and posted by
        :meth:`activate_grants` at its time. A credit to a wallet in overdraft repays the
        overdraft first; the grant keeps only what is left.

        ``also`` runs in the credit's own transaction, after it, only when the credit is
        performed (not on a replay): the caller's record of the credit (a top-up marked as
        credited) commits or fails with it, and raising from it undoes the credit.
        """
        check_amount(amount)
        check_key(idempotency_key)
        if source not in GRANT_SOURCES:
            raise ValidationError(f"source must be one of {', '.join(GRANT_SOURCES)}", field="source")
        if isinstance(priority, bool) or not isinstance(priority, int) or not -1000 <= priority <= 1000:
            raise ValidationError("priority must be an integer from -1000 to 1000", field="priority")
        for name, value in (("effective_at", effective_at), ("expires_at", expires_at)):
            if value is not None and value.tzinfo is None:
                raise ValidationError(f"{name} must carry a time zone", field=name)
        metadata = metadata or {}
        digest = request_hash(
            "credit", customer_id=customer_id, asset=asset, amount=amount, source=source,
            priority=priority, effective_at=effective_at, expires_at=expires_at, kind=kind,
            counter=counter, metadata=metadata,
        )

        async def work(conn: AsyncConnection) -> Posting:
            now = self.clock()
            starts = effective_at or now
            account_id = await self._customer_account(conn, customer_id, asset)
            counter_id = await self._system_account(conn, counter, asset)
            account = await repo.lock_account(conn, account_id)
            # A retry replays the original even if time has since passed its expiry: the
            # idempotency check comes before any check against the clock.
            existing = await repo.get_grant_by_key(conn, idempotency_key)
            if existing is not None:
                return await _replay_credit(conn, existing, digest)
            if await repo.get_transaction_by_key(conn, idempotency_key) is not None:
                raise _conflict(idempotency_key)  # the key was used by a debit or a capture
            if expires_at is not None and expires_at <= starts:
                raise ValidationError("expires_at must be after the grant becomes effective", field="expires_at")
            grant = {
                "id": uuid.uuid4(), "account_id": account_id, "source": source, "priority": priority,
                "amount": amount, "remaining": amount, "effective_at": starts, "expires_at": expires_at,
                "status": "scheduled", "idempotency_key": idempotency_key, "request_hash": digest,
                "metadata": metadata, "created_at": now,
            }
            if starts > now:
                await repo.insert_grant(conn, grant)
                posting = Posting(None, idempotency_key, amount, False, grant_id=grant["id"])
            else:
                tx_id = await postings.post_credit(conn, account, grant, kind, counter_id, now, insert=True)
                posting = Posting(tx_id, idempotency_key, amount, False, grant_id=grant["id"])
            if also is not None:
                await also(conn, posting)
            return posting

        return await self._run(work)

    async def activate_grants(self, limit: int = SWEEP_BATCH) -> list[Posting]:
        """Post scheduled grants whose effective time has come. Safe to run any number of times."""
        async with self.engine.connect() as conn:
            due = await repo.scheduled_grants_due(conn, self.clock(), limit)
        return [p for p in [await self._activate_one(g.id) for g in due] if p is not None]

    async def _activate_one(self, grant_id: uuid.UUID) -> Posting | None:
        async def work(conn: AsyncConnection) -> Posting | None:
            now = self.clock()
            scheduled = await repo.get_grant(conn, grant_id)
            account = await repo.lock_account(conn, scheduled.account_id)
            grant = await repo.get_grant(conn, grant_id)  # fresh, now that we hold the lock
            if grant.status != "scheduled":
                return None
            counter_id = await self._system_account(conn, postings.counter_for(grant), account.asset)
            grant_values = dict(grant._mapping)
            tx_id = await postings.post_credit(conn, account, grant_values, "credit", counter_id, now, insert=False)
            return Posting(tx_id, grant.idempotency_key, grant.amount, False, grant_id=grant.id)

        return await self._run(work)

    # --- debits -------------------------------------------------------------------------------

    async def debit(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        idempotency_key: str,
        *,
        kind: str = "usage",
        counter: str = REVENUE,
        metadata: dict[str, Any] | None = None,
        also: Callable[[AsyncConnection, Posting], Awaitable[None]] | None = None,
    ) -> Posting:
        """Take ``amount`` from a wallet, drawing grants in consumption order.

        ``also`` runs in the debit's own transaction, after it, only when the debit is performed
        (as in :meth:`credit`). A debit with ``also`` takes the SQLAlchemy path on PostgreSQL too:
        the one-statement server-side debit has no place to run the caller's writes.

        Raises:
            InsufficientFunds: available balance (plus any overdraft limit) is short.
            WalletFrozen: the customer is frozen.
        """
        check_amount(amount)
        check_key(idempotency_key)
        metadata = metadata or {}
        digest = request_hash(
            "debit", customer_id=customer_id, asset=asset, amount=amount, kind=kind,
            counter=counter, metadata=metadata,
        )
        if self._server_side and also is None:
            return _counted_debit(kind, await self._debit_server_side(
                customer_id, asset, amount, idempotency_key, digest, kind, counter, metadata
            ))

        async def work(conn: AsyncConnection) -> Posting:
            now = self.clock()
            account_id = await self._customer_account(conn, customer_id, asset)
            counter_id = await self._system_account(conn, counter, asset)
            account = await repo.lock_account(conn, account_id)
            existing = await repo.get_transaction_by_key(conn, idempotency_key)
            if existing is not None:
                return await _replay_debit(conn, existing, digest, amount)
            if await repo.get_grant_by_key(conn, idempotency_key) is not None:
                raise _conflict(idempotency_key)  # a credit's key, possibly still scheduled
            if account.customer_status == "frozen":
                raise WalletFrozen(f"wallet of customer {customer_id} is frozen")
            account = await postings.ensure_spendable_now(conn, account, amount, now)
            tx_id, draws = await postings.post_spend(
                conn, account, amount, idempotency_key, digest, kind, counter_id, metadata, now
            )
            posting = Posting(tx_id, idempotency_key, amount, False, draws=draws)
            if also is not None:
                await also(conn, posting)
            return posting

        return _counted_debit(kind, await self._run(work))

    async def claw_back(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        idempotency_key: str,
        *,
        metadata: dict[str, Any] | None = None,
        also: Callable[[AsyncConnection, Posting], Awaitable[None]] | None = None,
    ) -> Posting:
        """Take back up to ``amount`` of money a payment dispute (chargeback) took from us.

        Unlike :meth:`debit` it works on a frozen wallet (a dispute freezes it) and never fails
        for a short balance: it takes what the wallet can spend (available plus any overdraft
        limit) up to ``amount``, so the wallet still never goes below its limit. The returned
        posting's ``amount`` is what was taken (0 without a transaction when nothing was there);
        the rest is the platform's loss, for the caller to record. ``also`` runs in the same
        transaction, only when the claw-back is performed.
        """
        check_amount(amount)
        check_key(idempotency_key)
        metadata = metadata or {}
        digest = request_hash("claw_back", customer_id=customer_id, asset=asset, amount=amount, metadata=metadata)

        async def work(conn: AsyncConnection) -> Posting:
            now = self.clock()
            account_id = await self._customer_account(conn, customer_id, asset)
            counter_id = await self._system_account(conn, CLEARING, asset)
            account = await repo.lock_account(conn, account_id)
            existing = await repo.get_transaction_by_key(conn, idempotency_key)
            if existing is not None:
                replay = await _replay_debit(conn, existing, digest, 0)
                return dataclasses.replace(replay, amount=sum(d.amount for d in replay.draws))
            if await repo.get_grant_by_key(conn, idempotency_key) is not None:
                raise _conflict(idempotency_key)
            # Expired holds must not shield money from the claw-back.
            account = await postings.release_expired_holds(conn, account, now)
            spendable = account.posted - account.held + account.overdraft_limit
            taken = max(0, min(amount, spendable))
            posting = Posting(None, idempotency_key, 0, False)
            if taken > 0:
                tx_id, draws = await postings.post_spend(
                    conn, account, taken, idempotency_key, digest, "clawback", counter_id, metadata, now
                )
                posting = Posting(tx_id, idempotency_key, taken, False, draws=draws)
            if also is not None:
                await also(conn, posting)
            return posting

        return await self._run(work)

    async def _debit_server_side(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        key: str,
        digest: str,
        kind: str,
        counter: str,
        metadata: dict[str, Any],
    ) -> Posting:
        """The PostgreSQL debit: ``wf_debit`` does the Python path's work in one statement.

        It goes with the debits that arrive alongside it, in one ``wf_debit_many`` statement and
        commit (:mod:`walletflow.ledger.batching`); it runs alone through ``wf_debit`` when that
        group could not settle it (a wallet used for the first time, a failed group).
        """

        def call() -> Awaitable[Record]:
            return repo.debit_function(
                hot_path(self.engine), customer_id, asset, amount, key, digest, kind, counter, metadata,
                self.clock(), time_ordered_id(),
            )

        pending = PendingDebit(customer_id, asset, amount, key, digest, kind, counter, metadata, time_ordered_id())
        row = await self._grouped(DEBIT_GROUPS, pending, call, counter=counter)
        draws = tuple(Draw(uuid.UUID(g) if g else None, n) for g, n in row["draws"])
        return Posting(row["transaction_id"], key, amount, row["outcome"] == "replayed", draws=draws)

    async def _grouped(
        self, statement: str, pending: Pending, call: Callable[[], Awaitable[Record]], counter: str | None = None
    ) -> Record:
        """``pending`` posted in its group (:mod:`walletflow.ledger.batching`), or alone through
        ``call`` when the group could not settle it (a wallet used for the first time, a failed
        group): a row (``ok`` or ``replayed``) or the typed error of a refusal."""
        row = await group_writer(self.engine, self.clock, statement).submit(pending)
        if row is not None and _settled(row, pending.customer_id, pending.amount, pending.key):
            return row
        return await self._call_server_side(
            call, pending.customer_id, pending.asset, pending.amount, pending.key, counter=counter
        )

    async def _call_server_side(
        self,
        call: Callable[[], Awaitable[Record]],
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        key: str,
        counter: str | None = None,
    ) -> Record:
        """Run one of the PostgreSQL functions (``wf_debit``, ``wf_authorize``) in its own
        statement and turn its outcome into a row (``ok`` or ``replayed``) or a typed error.

        A wallet (or system account) used for the first time is created, then the call is made
        again; so is a call that lost a race on its idempotency key (the rerun replays the winner).
        """
        for _ in range(3):
            try:
                row = await call()
            except Exception as exc:
                if is_unique_violation_on_key(exc):
                    continue
                raise
            if _settled(row, customer_id, amount, key):
                return row
            await self._run(lambda conn: self._customer_account(conn, customer_id, asset))
            if counter is not None:
                await self._run(lambda conn: self._system_account(conn, counter, asset))
        raise AssertionError(f"{key} did not settle after retries")

    # --- holds --------------------------------------------------------------------------------

    async def authorize(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        idempotency_key: str,
        *,
        expires_in_s: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> HoldInfo:
        """Reserve ``amount`` before the work runs; settle it later with capture or void."""
        try:
            hold = await self._authorize(
                customer_id, asset, amount, idempotency_key, expires_in_s=expires_in_s, metadata=metadata
            )
        except (InsufficientFunds, WalletFrozen) as exc:
            HOLDS.labels(exc.code).inc()
            raise
        if not hold.replayed:
            HOLDS.labels("authorized").inc()
        return hold

    async def _authorize(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        idempotency_key: str,
        *,
        expires_in_s: int | None,
        metadata: dict[str, Any] | None,
    ) -> HoldInfo:
        check_amount(amount)
        check_key(idempotency_key)
        ttl_s = DEFAULT_HOLD_TTL_S if expires_in_s is None else expires_in_s
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_HOLD_TTL_S:
            raise ValidationError(f"expires_in_s must be from 1 to {MAX_HOLD_TTL_S}", field="expires_in_s")
        metadata = metadata or {}
        digest = request_hash(
            "authorize", customer_id=customer_id, asset=asset, amount=amount,
            expires_in_s=expires_in_s, metadata=metadata,
        )
        if self._server_side:
            return await self._authorize_server_side(customer_id, asset, amount, idempotency_key, digest, ttl_s, metadata)

        async def work(conn: AsyncConnection) -> HoldInfo:
            now = self.clock()
            account_id = await self._customer_account(conn, customer_id, asset)
            account = await repo.lock_account(conn, account_id)
            existing = await repo.get_hold_by_key(conn, idempotency_key)
            if existing is not None:
                if existing.request_hash != digest:
                    raise _conflict(idempotency_key)
                return hold_info(existing, replayed=True)
            if account.customer_status == "frozen":
                raise WalletFrozen(f"wallet of customer {customer_id} is frozen")
            account = await postings.ensure_spendable_now(conn, account, amount, now)
            hold = {
                "id": time_ordered_id(), "account_id": account_id, "amount": amount, "status": "pending",
                "idempotency_key": idempotency_key, "request_hash": digest,
                "expires_at": now + dt.timedelta(seconds=ttl_s), "metadata": metadata, "created_at": now,
            }
            await repo.insert_hold(conn, hold)
            await repo.change_balance(conn, account_id, 0, amount)
            return hold_info(await repo.get_hold(conn, hold["id"]))

        return await self._run(work)

    async def _authorize_server_side(
        self,
        customer_id: uuid.UUID,
        asset: str,
        amount: int,
        key: str,
        digest: str,
        ttl_s: int,
        metadata: dict[str, Any],
    ) -> HoldInfo:
        """The PostgreSQL authorization: ``wf_authorize`` does the Python path's work in one
        statement. Like a debit, it goes with the holds that arrive alongside it
        (``wf_authorize_many``, :mod:`walletflow.ledger.batching`), alone when that group could
        not settle it."""
        hold_id, now = time_ordered_id(), self.clock()
        expires_at = now + dt.timedelta(seconds=ttl_s)

        def call() -> Awaitable[Record]:
            return repo.authorize_function(
                hot_path(self.engine), customer_id, asset, amount, key, digest, expires_at, metadata, now, hold_id
            )

        pending = PendingHold(customer_id, asset, amount, key, digest, expires_at, metadata, now, hold_id)
        row = await self._grouped(HOLD_GROUPS, pending, call)
        if row["outcome"] == "replayed":
            return dataclasses.replace(await self.get_hold(row["hold_id"]), replayed=True)
        return HoldInfo(hold_id, row["account_id"], amount, "pending", expires_at, None, None, key,
                        False, customer_id, asset, now)

    async def get_hold(self, hold_id: uuid.UUID) -> HoldInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_hold(conn, hold_id)
        if row is None:
            raise NotFound(f"authorization {hold_id} not found")
        return hold_info(row)

    async def capture(
        self,
        hold_id: uuid.UUID,
        amount: int,
        *,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        also: Callable[[AsyncConnection, HoldInfo], Awaitable[None]] | None = None,
    ) -> HoldInfo:
        """Settle a pending hold for ``amount`` (at most the hold); the rest is released.

        ``also`` runs in the capture's own transaction, after it, only when the capture is
        performed (not on a replay): the caller's record of the capture (a usage event) commits
        or fails with it.

        A capture is allowed on a frozen wallet: the hold was granted before the freeze and the
        work it paid for has been done.

        Raises:
            HoldNotPending: the hold was already voided, expired, or captured for another amount.
        """
        check_amount(amount, allow_zero=True)
        key = check_key(idempotency_key or f"hold:{hold_id}:capture")
        metadata = metadata or {}
        digest = request_hash("capture", hold_id=hold_id, amount=amount, metadata=metadata)

        async def work(conn: AsyncConnection) -> HoldInfo | HoldNotPending:
            now = self.clock()
            hold = await self._pending_hold_locked(conn, hold_id)
            existing = await repo.get_transaction_by_key(conn, key)
            if existing is not None:
                if existing.request_hash != digest:
                    raise _conflict(key)
                return hold_info(hold, replayed=True)
            if await repo.get_grant_by_key(conn, key) is not None:
                raise _conflict(key)  # a credit's key, possibly still scheduled
            if hold.status == "captured" and hold.captured_amount == amount == 0:
                return hold_info(hold, replayed=True)
            if hold.status != "pending":
                raise HoldNotPending(f"authorization {hold_id} is {hold.status}", status_now=hold.status)
            if hold.expires_at <= now:
                await postings.expire_hold(conn, hold, now)
                return HoldNotPending(f"authorization {hold_id} expired", status_now="expired")
            if amount > hold.amount:
                raise ValidationError(
                    f"capture amount {amount} exceeds the authorized {hold.amount}", field="amount"
                )
            tx_id = None
            if amount:
                account = await repo.lock_account(conn, hold.account_id)
                revenue_id = await self._system_account(conn, REVENUE, account.asset)
                tx_id, _ = await postings.post_spend(
                    conn, account, amount, key, digest, "capture", revenue_id,
                    {"hold_id": str(hold_id), **metadata}, now, held_delta=-hold.amount,
                )
            else:
                await repo.change_balance(conn, hold.account_id, 0, -hold.amount)
            await repo.resolve_hold(
                conn, hold_id, status="captured", captured_amount=amount,
                capture_transaction_id=tx_id, resolved_at=now,
            )
            captured = hold_info(await repo.get_hold(conn, hold_id))
            if also is not None:
                await also(conn, captured)
            return captured

        result = await self._run(work)
        if isinstance(result, HoldNotPending):
            HOLDS.labels("expired").inc()
            raise result  # raised after commit, so the expiry we found is kept
        if not result.replayed:
            HOLDS.labels("captured").inc()
            if amount:
                DEBITS.labels("capture").inc()
        return result

    async def void(self, hold_id: uuid.UUID) -> HoldInfo:
        """Release a pending hold in full. Voiding a voided hold returns it unchanged."""

        async def work(conn: AsyncConnection) -> HoldInfo:
            hold = await self._pending_hold_locked(conn, hold_id)
            if hold.status == "voided":
                return hold_info(hold, replayed=True)
            if hold.status != "pending":
                raise HoldNotPending(f"authorization {hold_id} is {hold.status}", status_now=hold.status)
            await repo.resolve_hold(conn, hold_id, status="voided", resolved_at=self.clock())
            await repo.change_balance(conn, hold.account_id, 0, -hold.amount)
            return hold_info(await repo.get_hold(conn, hold_id))

        hold = await self._run(work)
        if not hold.replayed:
            HOLDS.labels("voided").inc()
        return hold

    async def _pending_hold_locked(self, conn: AsyncConnection, hold_id: uuid.UUID) -> Row[Any]:
        """Lock the hold's account, then read the hold fresh (lock order: account, then hold)."""
        hold = await repo.get_hold(conn, hold_id)
        if hold is None:
            raise NotFound(f"authorization {hold_id} not found")
        await repo.lock_account(conn, hold.account_id)
        return await repo.get_hold(conn, hold_id)

    async def expire_holds(self, limit: int = SWEEP_BATCH) -> int:
        """Release pending holds past their expiry; returns how many this call expired."""
        async with self.engine.connect() as conn:
            due = await repo.expired_pending_holds(conn, self.clock(), limit)
        expired = 0
        for row in due:

            async def work(conn: AsyncConnection, hold_id: uuid.UUID = row.id) -> bool:
                hold = await self._pending_hold_locked(conn, hold_id)
                if hold.status != "pending":
                    return False  # captured or voided since we looked
                await postings.expire_hold(conn, hold, self.clock())
                return True

            expired += await self._run(work)
        HOLDS.labels("expired").inc(expired)
        return expired

    # --- grant expiry -------------------------------------------------------------------------

    async def expire_grants(self, limit: int = SWEEP_BATCH) -> list[Posting]:
        """Move the remainders of grants past their expiry to breakage.

        Money that pending holds still need is kept back and expired by a later run.
        """
        async with self.engine.connect() as conn:
            due = await repo.due_grants(conn, self.clock(), limit)
        postings = [await self._expire_grant(row.id) for row in due]
        return [p for p in postings if p is not None]

    async def _expire_grant(self, grant_id: uuid.UUID) -> Posting | None:
        async def work(conn: AsyncConnection) -> Posting | None:
            now = self.clock()
            first = await repo.get_grant(conn, grant_id)
            account = await repo.lock_account(conn, first.account_id)
            grant = await repo.get_grant(conn, grant_id)
            if grant.remaining == 0 or grant.expires_at is None or grant.expires_at > now:
                return None
            amount = expirable_amount(grant.remaining, account.posted, account.held)
            await repo.update_grant(conn, grant_id, status="expired")
            if amount == 0:
                return None
            # The remainder is part of the key: each partial expiry of a grant is its own posting.
            key = f"grant:{grant_id}:expire:{grant.remaining}"
            breakage_id = await self._system_account(conn, BREAKAGE, account.asset)
            digest = request_hash("expire_grant", grant_id=grant_id, amount=amount)
            await repo.update_grant(conn, grant_id, remaining=grant.remaining - amount)
            tx_id = time_ordered_id()
            await repo.insert_transaction(
                conn, tx_id=tx_id, kind="grant_expiry", key=key, request_hash=digest,
                metadata={"grant_id": str(grant_id)}, now=now,
                lines=[(account.id, account.asset, -amount, grant_id), (breakage_id, account.asset, amount, None)],
            )
            await repo.change_balance(conn, account.id, -amount, 0)
            return Posting(tx_id, key, amount, False, grant_id=grant_id)

        return await self._run(work)

    # --- audit --------------------------------------------------------------------------------

    async def audit(self) -> AuditReport:
        """Recompute every invariant from the stored entries."""
        async with self.engine.connect() as conn:
            return AuditReport(
                unbalanced_transactions=await repo.unbalanced_transactions(conn),
                posted_mismatches=await repo.posted_mismatches(conn),
                held_mismatches=await repo.held_mismatches(conn),
                grant_mismatches=await repo.grant_mismatches(conn),
                overdrawn_accounts=await repo.overdrawn_accounts(conn),
                orphan_entries=await repo.orphan_entries(conn),
            )


# --- module helpers (no state of their own) ---------------------------------------------------


def _ensure_limit_covers_debt(account: Row[Any], limit: int) -> None:
    """A wallet already deeper in overdraft than ``limit`` keeps its limit until it is repaid:
    lowering it would leave ``available`` below ``-overdraft_limit``."""
    debt = -(account.posted - account.held)
    if debt > limit:
        raise ValidationError(
            f"the {account.asset} wallet is {debt} into its overdraft; the limit cannot go below that until it is repaid",
            field="overdraft_limit",
        )


def _conflict(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(f"idempotency key {key!r} was already used for a different request")


async def _replay_credit(conn: AsyncConnection, grant: Row[Any], digest: str) -> Posting:
    if grant.request_hash != digest:
        raise _conflict(grant.idempotency_key)
    tx = await repo.get_transaction_by_key(conn, grant.idempotency_key)
    return Posting(tx.id if tx else None, grant.idempotency_key, grant.amount, True, grant_id=grant.id)


async def _replay_debit(conn: AsyncConnection, tx: Row[Any], digest: str, amount: int) -> Posting:
    if tx.request_hash != digest:
        raise _conflict(tx.idempotency_key)
    lines = await repo.list_entries_for_transaction(conn, tx.id)
    draws = tuple(Draw(e.grant_id, -e.amount) for e in lines if e.amount < 0)
    return Posting(tx.id, tx.idempotency_key, amount, True, draws=draws)


def customer_info(row: Row[Any]) -> CustomerInfo:
    return CustomerInfo(
        row.id, row.external_id, row.name, row.email, row.status, row.metadata, row.created_at,
        row.billing_mode, row.insufficient_balance, row.overdraft_limit, row.stripe_customer_id,
    )


def _balance(row: Row[Any]) -> Balance:
    return Balance(row.id, row.asset, row.posted, row.held, row.overdraft_limit)


def _settled(row: Record, customer_id: uuid.UUID, amount: int, key: str) -> bool:
    """Whether a server-side debit or hold row is final (``ok`` or ``replayed``); raises the
    typed error of a refusal; False when an account is missing (create it and call again)."""
    outcome = row["outcome"]
    if outcome in ("ok", "replayed"):
        return True
    if outcome == "conflict":
        raise _conflict(key)
    if outcome == "frozen":
        raise WalletFrozen(f"wallet of customer {customer_id} is frozen")
    if outcome == "insufficient_funds":
        available = row["available"]
        raise InsufficientFunds(f"available {available} is short of {amount}", available=available, requested=amount)
    return False


def _counted_debit(kind: str, posting: Posting) -> Posting:
    if not posting.replayed:
        DEBITS.labels(kind).inc()
    return posting


def hold_info(row: Row[Any], replayed: bool = False) -> HoldInfo:
    return HoldInfo(
        row.id, row.account_id, row.amount, row.status, row.expires_at, row.captured_amount,
        row.capture_transaction_id, row.idempotency_key, replayed, row.customer_id, row.asset,
        row.created_at,
    )


def _grant_info(row: Row[Any]) -> GrantInfo:
    return GrantInfo(
        row.id, row.account_id, row.source, row.priority, row.amount, row.remaining,
        row.effective_at, row.expires_at, row.status, row.created_at,
    )


__all__: Sequence[str] = ["Ledger", "ADJUSTMENTS", "BREAKAGE", "CLEARING", "PROMOTIONS", "REVENUE"]
