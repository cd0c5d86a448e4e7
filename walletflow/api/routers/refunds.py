"""Refunds of credited top-ups: the wallet is debited now, Stripe pays back in ``topup-refund-{id}``."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from walletflow import temporal_client as temporal
from walletflow.api.deps import IdempotencyHeader, ServicesDep, idempotency_key, require
from walletflow.api.routers.topups import TemporalUnavailable, temporal_client
from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.payments.refunds import REASON_MAX, RefundInfo

log = logging.getLogger(__name__)
router = APIRouter()


class RefundIn(BaseModel):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    amount: int | None = Field(
        default=None, gt=0, le=MAX_AMOUNT, strict=True,
        description="Minor units of the top-up's currency; default: all that is left to refund.",
    )
    reason: str | None = Field(default=None, min_length=1, max_length=REASON_MAX)


class RefundOut(BaseModel):
    id: uuid.UUID
    top_up_id: uuid.UUID
    customer_id: uuid.UUID
    asset: str
    amount: int = Field(description="Paid back, in minor units of the top-up's currency.")
    wallet_amount: int = Field(description="Taken from the wallet, in minor units of `asset`.")
    status: str = Field(description="pending (wallet debited, Stripe to pay back), succeeded, or failed "
                                    "(Stripe refused; the wallet was credited back)")
    reason: str | None
    idempotency_key: str
    workflow_id: str
    debit_transaction_id: uuid.UUID | None
    stripe_refund_id: str | None
    reversal_transaction_id: uuid.UUID | None
    failure_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, r: RefundInfo) -> RefundOut:
        return cls(
            id=r.id, top_up_id=r.top_up_id, customer_id=r.customer_id, asset=r.asset, amount=r.amount,
            wallet_amount=r.wallet_amount,
            status=r.status, reason=r.reason, idempotency_key=r.idempotency_key, workflow_id=r.workflow_id,
            debit_transaction_id=r.debit_transaction_id, stripe_refund_id=r.stripe_refund_id,
            reversal_transaction_id=r.reversal_transaction_id, failure_reason=r.failure_reason,
            created_at=r.created_at, updated_at=r.updated_at,
        )


class RefundList(BaseModel):
    data: list[RefundOut]
    next_cursor: str | None = None


@router.post("/top-ups/{top_up_id}/refund", status_code=status.HTTP_202_ACCEPTED, dependencies=[require("admin")],
             tags=["top-ups"])
async def refund_top_up(
    top_up_id: uuid.UUID, request: Request, services: ServicesDep, body: RefundIn | None = None,
    header_key: IdempotencyHeader = None,
) -> RefundOut:
    """Refund all or part of a credited top-up: debits the wallet at once, then Stripe pays
    it back (202: that happens next; watch ``status``). Same key and body answers the same refund.
    402 ``insufficient_funds``: the money was spent (beyond any overdraft limit)."""
    body = body or RefundIn()
    key = idempotency_key(body.idempotency_key, header_key)
    refund, _ = await services.refunds.create(top_up_id, key, body.amount, body.reason)
    try:
        client = await temporal_client(request)
        await temporal.start_refund(client, refund.id, refund.customer_id, services.settings)
    except (RuntimeError, RPCError) as exc:
        # The debit and the refund record are committed: the same request again (or the payments
        # sweep) starts the Stripe half. The money is never lost in between.
        log.warning("could not start %s: %s", refund.workflow_id, type(exc).__name__)
        raise TemporalUnavailable(
            "the refund is recorded but its workflow could not start; retry with the same idempotency key",
            refund_id=str(refund.id),
        ) from exc
    return RefundOut.of(await services.refunds.get(refund.id))


@router.get("/top-ups/{top_up_id}/refunds", dependencies=[require("read")], tags=["top-ups"])
async def list_refunds(top_up_id: uuid.UUID, services: ServicesDep) -> RefundList:
    """Every refund of a top-up, oldest first (a top-up has a bounded number of refunds)."""
    return RefundList(data=[RefundOut.of(r) for r in await services.refunds.list_for(top_up_id)])


@router.get("/refunds/{refund_id}", dependencies=[require("read")], tags=["top-ups"])
async def get_refund(refund_id: uuid.UUID, services: ServicesDep) -> RefundOut:
    return RefundOut.of(await services.refunds.get(refund_id))
