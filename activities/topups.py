"""Top-up activities: adapters from ``TopUpWorkflow`` to the payments core, the ledger and Stripe.

Every activity is safe to run again after a crash at any line: it first looks at what an earlier
attempt left (our database, then Stripe's records), and every money-moving write carries a key
made from the top-up id and the operation (``topup-{id}:credit``), never from a run id.
Business failures are raised non-retryable; anything else (network, database) is retried.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import stripe
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.crash_points import crash_pause
from walletflow.errors import WalletflowError
from walletflow.ledger.service import Ledger
from walletflow.observability import metrics
from walletflow.payments.contracts import (
    CreditOutcome,
    MarkStatus,
    PaymentCheck,
    PaymentCreated,
    RefundOutcome,
    RefundRequest,
    RiskOutcome,
    TopUpRef,
)
from walletflow.payments.schemas import TopUpInfo
from walletflow.payments.service import InvalidTransition, TopUps
from walletflow.payments.stripe_gateway import PaymentIntentInfo, StripeGateway
from walletflow.risk.rules import Scorer
from walletflow.risk.topups import TopUpRisk
from walletflow.settings import Settings

log = logging.getLogger(__name__)

#: Stripe errors that retrying cannot fix (bad request, bad key, missing permission).
_PERMANENT_STRIPE_ERRORS = (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError)


class TopUpActivities:
    """The worker builds one instance with its dependencies and registers its methods."""

    def __init__(
        self, top_ups: TopUps, ledger: Ledger, gateway: StripeGateway, scorer: Scorer, settings: Settings
    ) -> None:
        self.top_ups = top_ups
        self.ledger = ledger
        self.gateway = gateway
        self.scorer = scorer
        self.settings = settings
        self.risk = TopUpRisk(top_ups.engine, gateway, settings.risk_shared_card_allowlist)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.create_payment, self.check_payment, self.cancel_payment, self.mark_status,
            self.score, self.credit, self.refund,
        ]

    @activity.defn(name="topup.create_payment")
    async def create_payment(self, ref: TopUpRef) -> PaymentCreated:
        """Create the top-up's PaymentIntent (or Checkout Session), or find the one an earlier
        attempt created."""
        async with business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            if top_up.mode == "checkout":
                return await self._create_checkout(top_up)
            if top_up.stripe_payment_intent_id is not None:
                intent = await self.gateway.retrieve_payment_intent(top_up.stripe_payment_intent_id)
            else:
                customer = await self._stripe_customer(top_up)
                # Our database has no PaymentIntent: a crash may still have left one at Stripe.
                found = await self.gateway.find_payment_intent(customer, ref.top_up_id)
                intent = found or await self.gateway.create_payment_intent(
                    amount=top_up.amount, currency=top_up.currency, customer=customer,
                    top_up_id=ref.top_up_id, idempotency_key=f"topup-{ref.top_up_id}:payment_intent",
                )
                await self._crash_pause("after_payment_intent")  # at Stripe, not yet in our database
                await self.top_ups.set_payment_intent(top_up.id, intent.id)
            if top_up.status == "initiated":
                await self.top_ups.transition(top_up.id, "awaiting_payment")
            return PaymentCreated(payment_intent_id=intent.id)

    async def _create_checkout(self, top_up: TopUpInfo) -> PaymentCreated:
        if top_up.stripe_checkout_session_id is not None:
            session_id = top_up.stripe_checkout_session_id
        else:
            customer = await self._stripe_customer(top_up)
            found = await self.gateway.find_checkout_session(customer, str(top_up.id))
            session = found or await self.gateway.create_checkout_session(
                amount=top_up.amount, currency=top_up.currency, customer=customer, top_up_id=str(top_up.id),
                return_url=top_up.return_url or "", idempotency_key=f"topup-{top_up.id}:checkout_session",
            )
            session_id = session.id
            await self.top_ups.set_checkout_session(top_up.id, session_id)
        if top_up.status == "initiated":
            await self.top_ups.transition(top_up.id, "awaiting_payment")
        return PaymentCreated(checkout_session_id=session_id)

    async def _current_intent(self, top_up: TopUpInfo) -> PaymentIntentInfo | None:
        """The payment behind the top-up; for a Checkout Session, None until the customer paid
        (then it is remembered on the top-up)."""
        if top_up.stripe_payment_intent_id is not None:
            return await self.gateway.retrieve_payment_intent(top_up.stripe_payment_intent_id)
        if top_up.mode != "checkout" or top_up.stripe_checkout_session_id is None:
            return await self.gateway.retrieve_payment_intent(_intent_id(top_up))  # raises: nothing was created
        session = await self.gateway.retrieve_checkout_session(top_up.stripe_checkout_session_id)
        if session.payment_intent_id is None:
            return None
        await self.top_ups.set_payment_intent(top_up.id, session.payment_intent_id)
        return await self.gateway.retrieve_payment_intent(session.payment_intent_id)

    async def _stripe_customer(self, top_up: TopUpInfo) -> str:
        linked = await self.top_ups.stripe_customer_id(top_up.customer_id)
        if linked is not None:
            return linked
        # Two first top-ups racing may each create a Stripe customer; the first link wins and the
        # other stays unused (it holds no money), which Stripe's forgetful keys cannot prevent.
        created = await self.gateway.create_customer(
            str(top_up.customer_id), idempotency_key=f"customer-{top_up.customer_id}:stripe"
        )
        return await self.top_ups.link_stripe_customer(top_up.customer_id, created)

    @activity.defn(name="topup.check_payment")
    async def check_payment(self, ref: TopUpRef) -> PaymentCheck:
        """Ask Stripe how the payment stands (the webhook only tells us when to ask)."""
        async with business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            intent = await self._current_intent(top_up)
            if intent is None:
                session = await self.gateway.retrieve_checkout_session(_session_id(top_up))
                state = "canceled" if session.status == "expired" else "pending"
                return PaymentCheck(payment_intent_id=None, state=state)
            return _check(top_up, intent)

    @activity.defn(name="topup.cancel_payment")
    async def cancel_payment(self, ref: TopUpRef) -> PaymentCheck:
        """Cancel the PaymentIntent so it can take no money; reports a payment that won the race."""
        async with business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            if top_up.mode == "checkout":
                # Expire the hosted page first, so that no payment can start after we look.
                await self.gateway.expire_checkout_session(_session_id(top_up))
                intent = await self._current_intent(top_up)
                if intent is None:
                    return PaymentCheck(payment_intent_id=None, state="canceled")
                if intent.state != "succeeded":
                    intent = await self.gateway.cancel_payment_intent(intent.id)
                return _check(top_up, intent)
            intent = await self.gateway.cancel_payment_intent(_intent_id(top_up))
            return _check(top_up, intent)

    @activity.defn(name="topup.mark_status")
    async def mark_status(self, change: MarkStatus) -> None:
        async with business_errors():
            values = {"reason": change.reason} if change.reason is not None else {}
            await self.top_ups.transition(uuid.UUID(change.top_up_id), change.status, **values)

    @activity.defn(name="topup.score")
    async def score(self, ref: TopUpRef) -> RiskOutcome:
        async with business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            await self.risk.record_card(top_up.id, _intent_id(top_up))
            result = self.scorer.score(await self.risk.features(top_up.id))
            await self.risk.record(top_up.id, result)
            metrics.RISK_DECISIONS.labels(result.decision).inc()
            return RiskOutcome(score=result.score, decision=result.decision, reasons=result.reasons)

    @activity.defn(name="topup.credit")
    async def credit(self, ref: TopUpRef) -> CreditOutcome:
        """Credit the paid amount as a ``paid`` grant, once, unless a refund claimed it first."""
        await self._crash_pause("before_credit")
        async with business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            if top_up.credit_transaction_id is not None:
                return CreditOutcome(outcome="credited", transaction_id=str(top_up.credit_transaction_id))
            if await self.top_ups.refund_claimed(top_up.id):
                return CreditOutcome(outcome="already_refunded")
            try:
                posting = await self.ledger.credit(
                    top_up.customer_id, top_up.asset, top_up.credited_units, f"topup-{top_up.id}:credit",
                    source="paid", kind="topup",
                    metadata={"top_up_id": str(top_up.id), "payment_intent": top_up.stripe_payment_intent_id},
                    also=self.top_ups.credit_recorder(top_up.id),
                )
            except InvalidTransition:
                # The guard in the credit's own transaction refused: a refund claimed the top-up.
                return CreditOutcome(outcome="already_refunded")
        await self._crash_pause("after_credit")
        return CreditOutcome(outcome="credited", transaction_id=str(posting.transaction_id))

    @activity.defn(name="topup.refund")
    async def refund(self, request: RefundRequest) -> RefundOutcome:
        """Refund the payment in full through Stripe, unless the top-up was credited."""
        async with business_errors():
            top_up = await self.top_ups.claim_refund(uuid.UUID(request.top_up_id), request.reason)
            if top_up.credit_transaction_id is not None:
                return RefundOutcome(outcome="already_credited")
            if top_up.stripe_refund_id is not None:
                return RefundOutcome(outcome="refunded", refund_id=top_up.stripe_refund_id)
            refund = await self.gateway.refund(_intent_id(top_up), idempotency_key=f"topup-{top_up.id}:refund")
            await self._crash_pause("after_stripe_refund")  # refunded at Stripe, not yet in our database
            await self.top_ups.set_refunded(top_up.id, refund.id)
            return RefundOutcome(outcome="refunded", refund_id=refund.id)

    async def _crash_pause(self, point: str) -> None:
        await crash_pause(self.settings, point)


def _intent_id(top_up: TopUpInfo) -> str:
    if top_up.stripe_payment_intent_id is None:
        raise ApplicationError(f"top-up {top_up.id} has no PaymentIntent", type="NoPaymentIntent", non_retryable=True)
    return top_up.stripe_payment_intent_id


def _session_id(top_up: TopUpInfo) -> str:
    if top_up.stripe_checkout_session_id is None:
        raise ApplicationError(f"top-up {top_up.id} has no Checkout Session", type="NoCheckoutSession", non_retryable=True)
    return top_up.stripe_checkout_session_id


def _check(top_up: TopUpInfo, intent: PaymentIntentInfo) -> PaymentCheck:
    state = intent.state
    reason = intent.last_error_code if state == "failed" else None
    if state == "succeeded" and (intent.amount != top_up.amount or intent.currency.upper() != top_up.currency):
        # Money came in, but not what we asked for: the workflow refunds rather than credit it.
        reason = "amount_mismatch"
    return PaymentCheck(payment_intent_id=intent.id, state=state, reason=reason)


@asynccontextmanager
async def business_errors() -> AsyncIterator[None]:
    """Turn typed business failures into non-retryable activity errors; let the rest retry."""
    try:
        yield
    except WalletflowError as exc:
        raise ApplicationError(exc.detail, type=type(exc).__name__, non_retryable=True) from exc
    except _PERMANENT_STRIPE_ERRORS as exc:
        # Stripe's own message: it never contains the API key.
        raise ApplicationError(str(exc.user_message or exc), type=type(exc).__name__, non_retryable=True) from exc
