"""``TopUpWorkflow`` (id ``topup-{top_up_id}``): take a card payment and credit it exactly once.

create PaymentIntent (or Checkout Session) -> wait for the payment (webhook signal, Stripe polled as a fallback) until
the deadline -> score -> approve: credit / review: wait for an operator until the review
deadline / reject: refund. Once money is taken, every way out either credits or refunds it;
the database guard in the activities makes "both" impossible even if this code were wrong.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.topups import TopUpActivities
    from walletflow.payments.contracts import (
        CreditOutcome,
        MarkStatus,
        PaymentCheck,
        PaymentCreated,
        PaymentSignal,
        RefundOutcome,
        RefundRequest,
        RiskOutcome,
        TopUpProgress,
        TopUpRef,
        TopUpWorkflowInput,
    )

#: Stripe and the database are retried with backoff; these bound the calls that may give up.
_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=8)
#: Refunds must eventually happen: retried without a limit (an operator sees the failing attempts).
_NEVER_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


@workflow.defn(name="TopUpWorkflow")
class TopUpWorkflow:
    def __init__(self) -> None:
        self._progress = TopUpProgress(status="initiated")
        self._payment: PaymentCreated | None = None
        self._payment_failed_to_start = False
        self._wake = False
        self._review: bool | None = None
        self._top_up_id = ""
        #: How long one call (a Stripe request, a database write) may take before it is retried
        #: elsewhere: also how soon a worker's death is noticed mid-call.
        self._call_timeout = timedelta(seconds=30)

    # --- messages -------------------------------------------------------------------------------

    @workflow.signal
    def payment_result(self, signal: PaymentSignal) -> None:
        """A Stripe event about our PaymentIntent: check Stripe now instead of at the next poll."""
        self._progress.webhook_signals += 1
        self._wake = True

    # The API and CLI send a decision only for a top-up stored as in_review, and the database
    # says so a moment before this workflow does (the signal can be delivered together with the
    # result of the activity that stored it): so a decision is kept whatever the status here,
    # and only the first one counts.

    @workflow.signal
    def approve_review(self, note: str | None = None) -> None:
        self._decide(True, note)

    @workflow.signal
    def reject_review(self, note: str | None = None) -> None:
        self._decide(False, note)

    def _decide(self, approve: bool, note: str | None) -> None:
        if self._review is None:
            self._review = approve
            self._progress.review_note = note

    @workflow.query
    def status(self) -> TopUpProgress:
        return self._progress

    @workflow.update
    async def payment_details(self) -> PaymentCreated | None:
        """The PaymentIntent (with its client secret) once created; None if it never was."""
        await workflow.wait_condition(lambda: self._payment is not None or self._payment_failed_to_start)
        return self._payment

    # --- the flow -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, params: TopUpWorkflowInput) -> TopUpProgress:
        self._top_up_id = params.top_up_id
        self._call_timeout = timedelta(seconds=params.call_timeout_s)
        ref = TopUpRef(top_up_id=params.top_up_id)
        try:
            self._payment = await workflow.execute_activity_method(
                TopUpActivities.create_payment, ref, retry_policy=_GIVE_UP, start_to_close_timeout=self._call_timeout
            )
        except ActivityError:
            self._payment_failed_to_start = True
            await self._mark("failed", "payment_not_created")
            raise
        self._progress.payment_intent_id = self._payment.payment_intent_id
        self._progress.status = "awaiting_payment"

        check = await self._wait_for_payment(params, ref)
        self._progress.payment_state = check.state
        # A Checkout Session's PaymentIntent is known only once the customer has paid.
        self._progress.payment_intent_id = check.payment_intent_id or self._progress.payment_intent_id
        if check.state != "succeeded":
            await self._mark("failed", check.reason or check.state)
            return self._progress

        # Money has been taken: from here on it is credited exactly once or refunded.
        try:
            await self._settle(params, ref, check)
        except ActivityError:
            # A step failed for good after the charge (the saga's compensation). A bug in this
            # code is not caught: it fails the workflow task, which Temporal retries after a fix.
            await self._refund("failure_after_payment")
            raise
        return self._progress

    async def _wait_for_payment(self, params: TopUpWorkflowInput, ref: TopUpRef) -> PaymentCheck:
        deadline = workflow.now() + timedelta(seconds=params.payment_deadline_s)
        while (remaining_s := (deadline - workflow.now()).total_seconds()) > 0:
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=min(params.poll_interval_s, remaining_s))
                via = "webhook"
            except TimeoutError:
                via = "poll"
            self._wake = False
            try:
                check = await workflow.execute_activity_method(
                    TopUpActivities.check_payment, ref, retry_policy=_GIVE_UP, start_to_close_timeout=self._call_timeout
                )
            except ActivityError:
                workflow.logger.warning("could not check the payment; trying again at the next poll")
                continue
            if check.state == "succeeded":
                self._progress.learned_via = via
                return check
            if check.state in ("failed", "canceled"):
                self._progress.learned_via = via
                break
        else:
            self._progress.learned_via = "deadline"
            check = None
        # Declined, cancelled or out of time: cancel, so a late attempt cannot take money we ignore.
        # A payment that went through at the last moment is reported and then credited.
        final = await workflow.execute_activity_method(
            TopUpActivities.cancel_payment, ref, retry_policy=_NEVER_GIVE_UP, start_to_close_timeout=self._call_timeout
        )
        if final.state == "succeeded":
            return final
        reason = (check.reason if check is not None else None) or "payment_deadline"
        return PaymentCheck(payment_intent_id=final.payment_intent_id, state=final.state, reason=reason)

    async def _settle(self, params: TopUpWorkflowInput, ref: TopUpRef, check: PaymentCheck) -> None:
        await self._mark("scoring")
        if check.reason == "amount_mismatch":
            await self._mark("rejected", "amount_mismatch")
            await self._refund("amount_mismatch")
            return
        risk: RiskOutcome = await workflow.execute_activity_method(
            TopUpActivities.score, ref, start_to_close_timeout=self._call_timeout, retry_policy=_GIVE_UP
        )
        self._progress.risk = risk
        if risk.decision == "approve":
            await self._credit(ref)
            return
        if risk.decision == "reject":
            await self._mark("rejected", "risk_rejected")
            await self._refund("risk_rejected")
            return
        await self._mark("in_review")
        try:
            await workflow.wait_condition(lambda: self._review is not None, timeout=params.review_deadline_s)
        except TimeoutError:
            self._review = False
            self._progress.reason = "review_expired"
        if self._review:
            await self._credit(ref)
        else:
            reason = self._progress.reason or "review_rejected"
            await self._mark("rejected", reason)
            await self._refund(reason)

    async def _credit(self, ref: TopUpRef) -> None:
        outcome: CreditOutcome = await workflow.execute_activity_method(
            TopUpActivities.credit, ref,
            start_to_close_timeout=timedelta(seconds=60),
            # Heartbeats are only sent while paused (crash tests); a short credit never needs one.
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10),
        )
        self._progress.status = "succeeded" if outcome.outcome == "credited" else "refunded"

    async def _refund(self, reason: str) -> None:
        outcome: RefundOutcome = await workflow.execute_activity_method(
            TopUpActivities.refund, RefundRequest(top_up_id=self._top_up_id, reason=reason),
            retry_policy=_NEVER_GIVE_UP, start_to_close_timeout=self._call_timeout,
        )
        self._progress.status = "refunded" if outcome.outcome == "refunded" else "succeeded"
        if outcome.outcome == "refunded":
            self._progress.reason = reason

    async def _mark(self, status: str, reason: str | None = None) -> None:
        await workflow.execute_activity_method(
            TopUpActivities.mark_status, MarkStatus(top_up_id=self._top_up_id, status=status, reason=reason),  # type: ignore[arg-type]
            start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP,
        )
        self._progress.status = status
        if reason is not None:
            self._progress.reason = reason
