"""Activities for refunds of credited top-ups and for disputes (adapters to ``Refunds`` and Stripe).

Safe to re-run after a crash at any line: the refund looks for its own Stripe refund (by the
walletflow refund id in its metadata) before creating one, and the ledger writes carry keys made
from the refund or dispute id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.topups import business_errors
from walletflow.payments.contracts import DisputeInput, DisputeOutcome, RefundFailure, RefundProgress, RefundRef
from walletflow.payments.refunds import Refunds
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import StripeGateway


class RefundActivities:
    def __init__(self, refunds: Refunds, top_ups: TopUps, gateway: StripeGateway) -> None:
        self.refunds = refunds
        self.top_ups = top_ups
        self.gateway = gateway

    def all(self) -> list[Callable[..., Any]]:
        return [self.send, self.reverse, self.apply_dispute]

    @activity.defn(name="refund.send")
    async def send(self, ref: RefundRef) -> RefundProgress:
        """Ask Stripe to pay the refund back. A refusal (the charge is disputed, already refunded)
        is final and non-retryable: the workflow then reverses the wallet debit."""
        async with business_errors():
            refund = await self.refunds.get(uuid.UUID(ref.refund_id))
            if refund.status != "pending":
                return _progress(refund.status, refund.stripe_refund_id, refund.failure_reason)
            top_up = await self.top_ups.get(refund.top_up_id)
            if top_up.stripe_payment_intent_id is None:
                raise ApplicationError("the top-up has no payment to refund", type="NoPaymentIntent", non_retryable=True)
            try:
                stripe_refund = await self.gateway.refund_part(
                    top_up.stripe_payment_intent_id, refund.amount, str(refund.id), f"{refund.workflow_id}:stripe"
                )
            except stripe.InvalidRequestError as exc:
                raise ApplicationError(str(exc.user_message or exc), type="StripeRefusedRefund", non_retryable=True) from exc
            done = await self.refunds.mark_succeeded(refund.id, stripe_refund.id)
            return _progress(done.status, done.stripe_refund_id, done.failure_reason)

    @activity.defn(name="refund.reverse")
    async def reverse(self, failure: RefundFailure) -> RefundProgress:
        async with business_errors():
            done = await self.refunds.reverse(uuid.UUID(failure.refund_id), failure.reason)
            return _progress(done.status, done.stripe_refund_id, done.failure_reason)

    @activity.defn(name="dispute.apply")
    async def apply_dispute(self, dispute: DisputeInput) -> DisputeOutcome:
        async with business_errors():
            done = await self.refunds.apply_dispute(
                dispute.dispute_id, uuid.UUID(dispute.top_up_id), dispute.amount, dispute.currency, dispute.reason
            )
            tx = str(done.clawback_transaction_id) if done.clawback_transaction_id else None
            return DisputeOutcome(clawed_back=done.clawed_back, unrecovered=done.unrecovered, transaction_id=tx)


def _progress(status: str, stripe_refund_id: str | None, failure_reason: str | None) -> RefundProgress:
    return RefundProgress(status=status, stripe_refund_id=stripe_refund_id, failure_reason=failure_reason)  # type: ignore[arg-type]
