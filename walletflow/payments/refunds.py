"""Refunds of credited top-ups (``POST /v1/top-ups/{id}/refund``) and dispute claw-backs.

A refund takes the money out of the wallet first and pays it back through Stripe second, so a
customer never holds both. The wallet debit and the refund record commit together; a workflow
(``topup-refund-{id}``) then asks Stripe and either marks the refund succeeded or, if Stripe
refuses for good, credits the wallet back. A dispute (chargeback) freezes the wallet and claws
the disputed amount back in one transaction, once per Stripe dispute id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.db.types import utcnow
from walletflow.errors import IdempotencyConflict, NotFound, ValidationError, WalletflowError
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.postings import CLEARING
from walletflow.ledger.rules import check_amount, check_key, request_hash
from walletflow.ledger.schemas import Posting
from walletflow.ledger.service import Ledger
from walletflow.payments import refund_repository as repo
from walletflow.payments.conversion import share_of_credit
from walletflow.payments import repository as top_up_repo
from walletflow.webhooks.outbox import emit

#: Refund ids are derived from (top-up, idempotency key), so a retried request names the same refund.
REFUND_ID_NAMESPACE = uuid.UUID("5b0f6c8e-2a4d-4f0b-9a51-7d3e1c2b9f10")
REASON_MAX = 64


class RefundRaced(WalletflowError):
    code = "concurrent_refund"
    status = 409
    title = "Another refund of this top-up committed first"


class TopUpNotRefundable(WalletflowError):
    code = "top_up_not_refundable"
    status = 409
    title = "Top-up cannot be refunded"


@dataclass(frozen=True)
class RefundInfo:
    id: uuid.UUID
    top_up_id: uuid.UUID
    customer_id: uuid.UUID
    asset: str
    #: Paid back, in minor units of the top-up's currency.
    amount: int
    #: Taken from the wallet, in minor units of ``asset``.
    wallet_amount: int
    status: str
    reason: str | None
    idempotency_key: str
    debit_transaction_id: uuid.UUID | None
    stripe_refund_id: str | None
    reversal_transaction_id: uuid.UUID | None
    failure_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def workflow_id(self) -> str:
        return refund_workflow_id(self.id)


@dataclass(frozen=True)
class DisputeInfo:
    id: str
    top_up_id: uuid.UUID
    customer_id: uuid.UUID
    amount: int
    clawed_back: int
    unrecovered: int
    clawback_transaction_id: uuid.UUID | None
    replayed: bool


def refund_workflow_id(refund_id: uuid.UUID) -> str:
    return f"topup-refund-{refund_id}"


class Refunds:
    """Refunds and disputes over one database; each public method is one transaction."""

    def __init__(self, engine: AsyncEngine, ledger: Ledger, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.ledger = ledger
        self.clock = clock

    async def create(
        self, top_up_id: uuid.UUID, idempotency_key: str, amount: int | None = None, reason: str | None = None
    ) -> tuple[RefundInfo, bool]:
        """Debit the wallet and record a pending refund of ``amount`` (default: all that is left).

        Returns the refund and whether this call created it; the same key and request returns
        the original.

        Raises:
            TopUpNotRefundable: the top-up was never credited (its own workflow refunds those).
            ValidationError: the amount is more than is left to refund.
            InsufficientFunds: the wallet no longer holds the money (already spent), beyond any
                overdraft limit.
            WalletFrozen: the wallet is frozen (for example by a dispute).
            IdempotencyConflict: the key was used for a different refund request.
        """
        check_key(idempotency_key)
        if amount is not None:
            check_amount(amount)
        reason = reason or "requested_by_platform"
        if not isinstance(reason, str) or not 1 <= len(reason) <= REASON_MAX:
            raise ValidationError(f"reason must be 1 to {REASON_MAX} characters", field="reason")
        refund_id = uuid.uuid5(REFUND_ID_NAMESPACE, f"{top_up_id}:{idempotency_key}")
        digest = request_hash("top_up_refund", top_up_id=top_up_id, amount=amount, reason=reason)
        existing = await self._get_row(refund_id)
        if existing is not None:
            if existing.request_hash != digest:
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was already used for a different refund of this top-up"
                )
            return await self._with_top_up(existing), False

        async with self.engine.connect() as conn:
            top_up = await top_up_repo.get(conn, top_up_id)
            if top_up is None:
                raise NotFound(f"top-up {top_up_id} not found")
            returned = await _returned(conn, top_up_id)
        left = top_up.amount - returned
        if top_up.status != "succeeded" or top_up.credit_transaction_id is None:
            raise TopUpNotRefundable(
                f"top-up {top_up_id} is {top_up.status}; only a credited top-up is refunded this way",
                status_now=top_up.status,
            )
        wanted = amount if amount is not None else left
        if wanted <= 0 or wanted > left:
            raise ValidationError(
                f"refund of {wanted} is more than the {max(left, 0)} left on top-up {top_up_id}",
                field="amount", refundable=max(left, 0),
            )

        credited = top_up.credit_amount if top_up.credit_amount is not None else top_up.amount
        # The wallet gives back its share of what the top-up credited (the same number when the
        # asset is the currency), computed on the running total so all refunds add up exactly.
        wallet_amount = share_of_credit(returned, wanted, top_up.amount, credited)

        async def record(conn: AsyncConnection, posting: Posting) -> None:
            # Under the wallet's lock, which every refund and dispute of this top-up takes: if
            # another one committed since we looked, the sum and the share are stale. Refuse
            # rather than let refunds pass the amount paid.
            if await _returned(conn, top_up_id) != returned:
                raise RefundRaced(f"another refund or dispute of top-up {top_up_id} just committed; send the request again")
            now = self.clock()
            await repo.insert(conn, {
                "id": refund_id, "top_up_id": top_up_id, "amount": wanted, "wallet_amount": wallet_amount,
                "idempotency_key": idempotency_key,
                "request_hash": digest, "status": "pending", "reason": reason,
                "debit_transaction_id": posting.transaction_id, "created_at": now, "updated_at": now,
            })

        key = f"{refund_workflow_id(refund_id)}:debit"
        if wallet_amount > 0:
            await self.ledger.debit(
                top_up.customer_id, top_up.asset, wallet_amount, key, kind="refund", counter=CLEARING,
                metadata={"top_up_id": str(top_up_id), "refund_id": str(refund_id)}, also=record,
            )
        else:  # a refund too small to be worth a whole unit of the asset
            await in_transaction(self.engine, lambda conn: record(conn, Posting(None, key, 0, False)))
        row = await self._get_row(refund_id)
        assert row is not None, "the refund commits with its debit"
        return self._info(row, top_up.customer_id, top_up.asset), True

    async def get(self, refund_id: uuid.UUID) -> RefundInfo:
        row = await self._get_row(refund_id)
        if row is None:
            raise NotFound(f"refund {refund_id} not found")
        return await self._with_top_up(row)

    async def list_for(self, top_up_id: uuid.UUID) -> list[RefundInfo]:
        async with self.engine.connect() as conn:
            top_up = await top_up_repo.get(conn, top_up_id)
            if top_up is None:
                raise NotFound(f"top-up {top_up_id} not found")
            return [self._info(r, top_up.customer_id, top_up.asset) for r in await repo.list_for_top_up(conn, top_up_id)]

    async def mark_succeeded(self, refund_id: uuid.UUID, stripe_refund_id: str) -> RefundInfo:
        """Stripe has the refund: record it and tell the platform (``top_up.refunded``)."""
        refund = await self.get(refund_id)

        async def work(conn: AsyncConnection) -> None:
            if await repo.mark_succeeded(conn, refund_id, stripe_refund_id, self.clock()):
                await emit(
                    conn, "top_up.refunded",
                    {"top_up_id": str(refund.top_up_id), "refund_id": str(refund_id), "amount": refund.amount,
                     "wallet_amount": refund.wallet_amount, "asset": refund.asset, "stripe_refund_id": stripe_refund_id},
                    f"top_up.refunded:{refund_id}", customer_id=refund.customer_id, now=self.clock(),
                )

        await in_transaction(self.engine, work)
        return await self.get(refund_id)

    async def reverse(self, refund_id: uuid.UUID, failure: str) -> RefundInfo:
        """Stripe refused the refund for good: give the wallet its money back, once."""
        refund = await self.get(refund_id)
        if refund.status != "pending":
            return refund

        async def mark(conn: AsyncConnection, posting: Posting) -> None:
            await repo.mark_failed(conn, refund_id, posting.transaction_id, failure, self.clock())

        key = f"{refund.workflow_id}:reversal"
        if refund.wallet_amount > 0:
            await self.ledger.credit(
                refund.customer_id, refund.asset, refund.wallet_amount, key,
                source="paid", kind="refund_reversal", counter=CLEARING,
                metadata={"top_up_id": str(refund.top_up_id), "refund_id": str(refund_id)}, also=mark,
            )
        else:
            await in_transaction(self.engine, lambda conn: mark(conn, Posting(None, key, 0, False)))
        return await self.get(refund_id)

    async def list_stale_pending(self, older_than: dt.datetime, limit: int) -> list[RefundInfo]:
        """Pending refunds created before ``older_than``: their workflow may never have started."""
        async with self.engine.connect() as conn:
            rows = await repo.list_pending_before(conn, older_than, limit)
        return [await self._with_top_up(r) for r in rows]

    async def apply_dispute(
        self, dispute_id: str, top_up_id: uuid.UUID, amount: int, currency: str, stripe_reason: str | None
    ) -> DisputeInfo:
        """Claw the disputed amount back and freeze the wallet, in one transaction, once.

        The claw-back takes what the wallet holds (never below its overdraft limit); what it
        cannot cover is recorded as ``unrecovered``, the platform's loss, for the operator.
        """
        check_amount(amount)
        async with self.engine.connect() as conn:
            done = await repo.get_dispute(conn, dispute_id)
            top_up = await top_up_repo.get(conn, top_up_id)
        if done is not None:
            return _dispute_info(done, replayed=True)
        if top_up is None:
            raise NotFound(f"top-up {top_up_id} not found")
        if currency.upper() != top_up.currency:
            raise ValidationError(f"dispute currency {currency} is not the top-up's {top_up.currency}", field="currency")
        # Only what was credited can be clawed back (a top-up refunded before crediting lost the
        # platform nothing), and only the credit's share of what was not refunded already.
        to_take = 0
        if top_up.credit_transaction_id is not None:
            async with self.engine.connect() as conn:
                returned = await _returned(conn, top_up_id)
            credited = top_up.credit_amount if top_up.credit_amount is not None else top_up.amount
            to_take = share_of_credit(returned, max(0, min(amount, top_up.amount - returned)), top_up.amount, credited)

        async def record(conn: AsyncConnection, posting: Posting) -> None:
            now = self.clock()
            await repo.insert_dispute(conn, {
                "id": dispute_id, "top_up_id": top_up_id, "customer_id": top_up.customer_id, "amount": amount,
                "currency": top_up.currency, "stripe_reason": (stripe_reason or None) and stripe_reason[:64],
                "clawback_transaction_id": posting.transaction_id, "clawed_back": posting.amount,
                "unrecovered": to_take - posting.amount, "created_at": now,
            })
            await ledger_repo.set_customer_status(conn, top_up.customer_id, "frozen", now)
            data = {"dispute_id": dispute_id, "top_up_id": str(top_up_id), "amount": amount,
                    "clawed_back": posting.amount, "unrecovered": to_take - posting.amount, "asset": top_up.asset}
            await emit(conn, "dispute.created", data, f"dispute.created:{dispute_id}", customer_id=top_up.customer_id, now=now)
            await emit(conn, "wallet.frozen", {"reason": "dispute", "dispute_id": dispute_id},
                       f"wallet.frozen:dispute:{dispute_id}", customer_id=top_up.customer_id, now=now)

        metadata = {"top_up_id": str(top_up_id), "dispute_id": dispute_id}
        key = f"dispute-{dispute_id}:clawback"
        if to_take > 0:
            await self.ledger.claw_back(top_up.customer_id, top_up.asset, to_take, key, metadata=metadata, also=record)
        else:
            await in_transaction(self.engine, lambda conn: record(conn, Posting(None, key, 0, False)))
        async with self.engine.connect() as conn:
            row = await repo.get_dispute(conn, dispute_id)
        assert row is not None
        return _dispute_info(row, replayed=False)

    # --- helpers --------------------------------------------------------------------------------

    async def _get_row(self, refund_id: uuid.UUID) -> Row[Any] | None:
        async with self.engine.connect() as conn:
            return await repo.get(conn, refund_id)

    async def _with_top_up(self, row: Row[Any]) -> RefundInfo:
        async with self.engine.connect() as conn:
            top_up = await top_up_repo.get(conn, row.top_up_id)
        assert top_up is not None
        return self._info(row, top_up.customer_id, top_up.asset)

    @staticmethod
    def _info(row: Row[Any], customer_id: uuid.UUID, asset: str) -> RefundInfo:
        return RefundInfo(
            row.id, row.top_up_id, customer_id, asset, row.amount, row.wallet_amount, row.status, row.reason,
            row.idempotency_key,
            row.debit_transaction_id, row.stripe_refund_id, row.reversal_transaction_id, row.failure_reason,
            row.created_at, row.updated_at,
        )


async def _returned(conn: AsyncConnection, top_up_id: uuid.UUID) -> int:
    """What refunds (but failed ones) and disputes of a top-up gave back, in its currency."""
    return await repo.committed_amount(conn, top_up_id) + await repo.disputed_amount(conn, top_up_id)


def _dispute_info(row: Row[Any], replayed: bool) -> DisputeInfo:
    return DisputeInfo(
        row.id, row.top_up_id, row.customer_id, row.amount, row.clawed_back, row.unrecovered,
        row.clawback_transaction_id, replayed,
    )
