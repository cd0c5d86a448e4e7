"""Top-ups: their records and guarded status changes. Each public method is one transaction.

Status moves only along these edges (a guarded UPDATE; anything else is refused):

    initiated -> awaiting_payment -> scoring -> succeeded | in_review | rejected | refunded
    in_review -> succeeded | rejected | refunded;  rejected -> refunded
    initiated | awaiting_payment -> failed

``succeeded`` is set only together with the ledger credit (:meth:`TopUps.credit_recorder`),
``refunded`` only after a refund claim, and the database refuses a top-up with both.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction_after_races
from walletflow.db.types import utcnow
from walletflow.errors import IdempotencyConflict, NotFound, ValidationError, WalletflowError
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.rules import check_amount, check_key, request_hash
from walletflow.ledger.schemas import Posting
from walletflow.payments import repository as repo
from walletflow.payments.schemas import TopUpInfo, workflow_id_for
from walletflow.catalog.service import rate_in_force
from walletflow.payments.conversion import credit_for
from walletflow.webhooks.outbox import emit

CURRENCY = re.compile(r"^[A-Z]{3}$")
MODES = ("payment_intent", "checkout")
HTTP_URL = re.compile(r"^https?://[^\s]{1,1990}$")

#: Every allowed status edge, by target. ``succeeded`` and ``refunded`` have their own guarded
#: writers (credit and refund) and are not reachable through :meth:`TopUps.transition`.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "awaiting_payment": ("initiated",),
    "failed": ("initiated", "awaiting_payment"),
    "scoring": ("initiated", "awaiting_payment"),
    "in_review": ("scoring",),
    "rejected": ("scoring", "in_review"),
}


#: Status changes the platform hears about (``walletflow.webhooks``), besides credit and refund.
STATUS_EVENTS = {"failed": "top_up.failed", "in_review": "review.required"}


class TopUpNotInReview(WalletflowError):
    code = "top_up_not_in_review"
    status = 409
    title = "Top-up is not waiting for review"


class InvalidTransition(WalletflowError):
    code = "invalid_status_transition"
    status = 409
    title = "Top-up cannot move to that status"


class TopUps:
    """Top-up records over one database (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def create(
        self,
        idempotency_key: str,
        customer_id: uuid.UUID,
        amount: int,
        currency: str,
        asset: str | None = None,
        mode: str = "payment_intent",
        return_url: str | None = None,
    ) -> tuple[TopUpInfo, bool]:
        """Record a new top-up, or return the one made earlier with this key.

        Returns the top-up and whether this call created it.

        Raises:
            IdempotencyConflict: the key was used for a different request.
        """
        check_key(idempotency_key)
        check_amount(amount)
        currency = currency.upper() if isinstance(currency, str) else currency
        if not isinstance(currency, str) or not CURRENCY.match(currency):
            raise ValidationError("currency must be a three-letter ISO code", field="currency")
        asset = asset or currency
        if mode not in MODES:
            raise ValidationError("mode must be payment_intent or checkout", field="mode")
        if mode == "checkout" and not (isinstance(return_url, str) and HTTP_URL.match(return_url)):
            raise ValidationError("mode checkout needs a return_url (http or https) for Stripe's hosted page",
                                  field="return_url")
        if mode != "checkout":
            return_url = None  # only the hosted page sends the customer back somewhere
        if not isinstance(asset, str):
            raise ValidationError("asset must be an asset code", field="asset")
        digest = request_hash(
            "top_up", customer_id=customer_id, amount=amount, currency=currency, asset=asset, mode=mode,
            **({"return_url": return_url} if return_url is not None else {}),
        )

        async def work(conn: AsyncConnection) -> tuple[TopUpInfo, bool]:
            existing = await repo.get_by_key(conn, idempotency_key)
            if existing is None:
                if await ledger_repo.get_customer(conn, customer_id) is None:
                    raise NotFound(f"customer {customer_id} not found", field="customer_id")
                now = self.clock()
                credit_amount, credit_rate = await self._conversion(conn, amount, currency, asset, now)
                top_up_id = uuid.uuid4()
                inserted = await repo.insert_top_up(
                    conn,
                    {"id": top_up_id, "customer_id": customer_id, "amount": amount, "currency": currency,
                     "asset": asset, "mode": mode, "status": "initiated", "idempotency_key": idempotency_key,
                     "request_hash": digest, "workflow_id": workflow_id_for(top_up_id), "return_url": return_url,
                     "credit_amount": credit_amount, "credit_rate": credit_rate, "created_at": now, "updated_at": now},
                )
                existing = await repo.get_by_key(conn, idempotency_key)
                assert existing is not None
                if inserted:
                    return top_up_info(existing), True
            if existing.request_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for a different top-up"
                )
            return top_up_info(existing), False

        return await self._run(work)

    @staticmethod
    async def _conversion(
        conn: AsyncConnection, amount: int, currency: str, asset: str, now: dt.datetime
    ) -> tuple[int | None, str | None]:
        """What crediting ``asset`` for ``amount`` of ``currency`` gives (None, None: the same asset)."""
        paid_in = await ledger_repo.get_asset(conn, currency)
        if paid_in is None or paid_in.kind != "fiat":
            raise NotFound(f"currency {currency} is not a fiat asset here (create it first)", field="currency")
        if asset == currency:
            return None, None
        credited = await ledger_repo.get_asset(conn, asset)
        if credited is None:
            raise NotFound(f"asset {asset} not found", field="asset")
        rate = await rate_in_force(conn, asset, currency, now)
        if rate is None:
            raise ValidationError(f"no {asset} rate in {currency} is in force; add one first", field="asset")
        units = credit_for(amount, paid_in.scale, credited.scale, rate)
        if units <= 0:
            raise ValidationError(f"{amount} of {currency} buys no {asset} at {rate}", field="amount")
        return units, str(rate)

    async def get(self, top_up_id: uuid.UUID) -> TopUpInfo:
        async with self.engine.connect() as conn:
            row = await repo.get(conn, top_up_id)
        if row is None:
            raise NotFound(f"top-up {top_up_id} not found")
        return top_up_info(row)

    async def find_by_payment_intent(self, payment_intent_id: str) -> TopUpInfo | None:
        async with self.engine.connect() as conn:
            row = await repo.get_by_payment_intent(conn, payment_intent_id)
        return top_up_info(row) if row is not None else None

    async def list_in_review(
        self, limit: int, after: tuple[dt.datetime, uuid.UUID] | None = None
    ) -> list[TopUpInfo]:
        async with self.engine.connect() as conn:
            return [top_up_info(r) for r in await repo.list_by_status(conn, "in_review", limit, after)]

    async def list_stale_initiated(self, before: dt.datetime, limit: int) -> list[TopUpInfo]:
        """Top-ups recorded before ``before`` that never got past ``initiated``."""
        async with self.engine.connect() as conn:
            return [top_up_info(r) for r in await repo.list_initiated_before(conn, before, limit)]

    async def transition(self, top_up_id: uuid.UUID, to: str, **values: Any) -> TopUpInfo:
        """Move a top-up along an allowed edge. Already at ``to`` is a no-op (activity retries)."""
        allowed = ALLOWED_FROM.get(to)
        if allowed is None:
            raise ValidationError(f"status {to} is set by its own operation, not by a transition")

        async def work(conn: AsyncConnection) -> TopUpInfo:
            moved = await repo.transition(conn, top_up_id, to, allowed, self.clock(), **values)
            row = _found(await repo.get(conn, top_up_id), top_up_id)
            if not moved and row.status != to:
                raise InvalidTransition(f"top-up {top_up_id} is {row.status}; it cannot become {to}")
            if moved and to in STATUS_EVENTS:
                await self._emit(conn, STATUS_EVENTS[to], row, {"reason": row.reason, "risk_score": row.risk_score,
                                                                "risk_reasons": row.risk_reasons})
            return top_up_info(row)

        return await self._run(work)

    async def require_in_review(self, top_up_id: uuid.UUID) -> TopUpInfo:
        top_up = await self.get(top_up_id)
        if top_up.status != "in_review":
            raise TopUpNotInReview(f"top-up {top_up_id} is {top_up.status}", status_now=top_up.status)
        return top_up

    async def find_by_checkout_session(self, session_id: str) -> TopUpInfo | None:
        async with self.engine.connect() as conn:
            row = await repo.get_by_checkout_session(conn, session_id)
        return top_up_info(row) if row is not None else None

    async def set_checkout_session(self, top_up_id: uuid.UUID, session_id: str) -> TopUpInfo:
        async def work(conn: AsyncConnection) -> TopUpInfo:
            await repo.set_checkout_session(conn, top_up_id, session_id, self.clock())
            row = _found(await repo.get(conn, top_up_id), top_up_id)
            if row.stripe_checkout_session_id != session_id:
                raise AssertionError(f"top-up {top_up_id} already has another Checkout Session")
            return top_up_info(row)

        return await self._run(work)

    async def set_payment_intent(self, top_up_id: uuid.UUID, payment_intent_id: str) -> TopUpInfo:
        async def work(conn: AsyncConnection) -> TopUpInfo:
            await repo.set_payment_intent(conn, top_up_id, payment_intent_id, self.clock())
            row = _found(await repo.get(conn, top_up_id), top_up_id)
            if row.stripe_payment_intent_id != payment_intent_id:
                raise AssertionError(f"top-up {top_up_id} already has another PaymentIntent")
            return top_up_info(row)

        return await self._run(work)

    def credit_recorder(self, top_up_id: uuid.UUID) -> Callable[[AsyncConnection, Posting], Awaitable[None]]:
        """The ``also`` hook for ``Ledger.credit``: marks the top-up credited in the credit's own
        transaction, and undoes the credit if a refund has already claimed the top-up."""

        async def record(conn: AsyncConnection, posting: Posting) -> None:
            if not await repo.mark_credited(conn, top_up_id, posting.transaction_id, self.clock()):
                raise InvalidTransition(f"top-up {top_up_id} was refunded or is not ready to credit")
            row = _found(await repo.get(conn, top_up_id), top_up_id)
            await self._emit(conn, "top_up.succeeded", row, {"transaction_id": str(posting.transaction_id)})

        return record

    async def claim_refund(self, top_up_id: uuid.UUID, reason: str) -> TopUpInfo:
        """Claim the top-up for a refund. Returns it; ``refund_claimed`` tells whether the claim
        holds (a credited top-up is never refunded here)."""

        async def work(conn: AsyncConnection) -> TopUpInfo:
            await repo.claim_refund(conn, top_up_id, reason, self.clock())
            return top_up_info(_found(await repo.get(conn, top_up_id), top_up_id))

        return await self._run(work)

    async def refund_claimed(self, top_up_id: uuid.UUID) -> bool:
        async with self.engine.connect() as conn:
            row = await repo.get(conn, top_up_id)
        return row is not None and row.refund_requested_at is not None

    async def set_refunded(self, top_up_id: uuid.UUID, refund_id: str) -> TopUpInfo:
        async def work(conn: AsyncConnection) -> TopUpInfo:
            await repo.set_refunded(conn, top_up_id, refund_id, self.clock())
            row = _found(await repo.get(conn, top_up_id), top_up_id)
            if row.status == "refunded":
                # The whole payment went back before any credit (declined by risk, review, failure).
                await self._emit(conn, "top_up.refunded", row, {"reason": row.reason, "stripe_refund_id": refund_id,
                                                               "refund_amount": row.amount, "credited": False})
            return top_up_info(row)

        return await self._run(work)

    async def store_event(self, event_id: str, event_type: str, payload: dict[str, Any]) -> bool:
        """Store a verified Stripe event once; True if it was new."""

        async def work(conn: AsyncConnection) -> bool:
            return await repo.insert_event(conn, event_id, event_type, payload, self.clock())

        return await self._run(work)

    async def stripe_customer_id(self, customer_id: uuid.UUID) -> str | None:
        async with self.engine.connect() as conn:
            return await repo.get_stripe_customer_id(conn, customer_id)

    async def link_stripe_customer(self, customer_id: uuid.UUID, stripe_id: str) -> str:
        """Link ``stripe_id`` unless another Stripe customer won the race; returns the linked one."""

        async def work(conn: AsyncConnection) -> str:
            await repo.set_stripe_customer_id(conn, customer_id, stripe_id, self.clock())
            linked = await repo.get_stripe_customer_id(conn, customer_id)
            assert linked is not None
            return linked

        return await self._run(work)

    async def _emit(self, conn: AsyncConnection, event_type: str, row: Row[Any], extra: dict[str, Any]) -> None:
        """A platform event about this top-up, in the same transaction as the change (once per type)."""
        data = {"top_up_id": str(row.id), "status": row.status, "amount": row.amount, "currency": row.currency,
                "asset": row.asset, **extra}
        await emit(conn, event_type, data, f"{event_type}:{row.id}", customer_id=row.customer_id, now=self.clock())

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        # A lost race on a unique key (two requests with one idempotency key) re-runs ``work``,
        # which then finds the winner's row.
        return await in_transaction_after_races(self.engine, work)


def _found(row: Row[Any] | None, top_up_id: uuid.UUID) -> Row[Any]:
    if row is None:
        raise NotFound(f"top-up {top_up_id} not found")
    return row


def top_up_info(row: Row[Any]) -> TopUpInfo:
    return TopUpInfo(
        row.id, row.customer_id, row.amount, row.currency, row.asset, row.mode, row.status,
        row.idempotency_key, row.workflow_id, row.stripe_payment_intent_id, row.credit_transaction_id,
        row.stripe_refund_id, row.risk_score, row.risk_decision, row.risk_reasons, row.reason,
        row.created_at, row.updated_at, row.stripe_checkout_session_id, row.return_url,
        row.credit_amount, row.credit_rate,
    )
