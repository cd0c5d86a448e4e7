"""``TopUpRefundWorkflow`` (``topup-refund-{refund_id}``) and ``DisputeWorkflow`` (``dispute-{id}``).

The refund's wallet debit is already committed when the workflow starts (with the refund record,
in one transaction); the workflow only has Stripe pay it back. Stripe is retried until it answers;
if it refuses for good, the saga's compensation credits the wallet back. The dispute workflow
claws the disputed amount back and freezes the wallet, in one activity and one transaction.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.refunds import RefundActivities
    from walletflow.payments.contracts import DisputeInput, DisputeOutcome, RefundFailure, RefundProgress, RefundRef

_CALL_TIMEOUT = timedelta(seconds=30)
#: Money already left the wallet: keep asking Stripe (an operator sees the failing attempts).
_NEVER_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


@workflow.defn(name="TopUpRefundWorkflow")
class TopUpRefundWorkflow:
    def __init__(self) -> None:
        self._progress = RefundProgress(status="pending")

    @workflow.query
    def status(self) -> RefundProgress:
        return self._progress

    @workflow.run
    async def run(self, ref: RefundRef) -> RefundProgress:
        try:
            self._progress = await workflow.execute_activity_method(
                RefundActivities.send, ref, start_to_close_timeout=_CALL_TIMEOUT, retry_policy=_NEVER_GIVE_UP
            )
        except ActivityError as exc:
            cause = exc.cause
            reason = cause.message if isinstance(cause, ApplicationError) else "stripe_refused"
            self._progress = await workflow.execute_activity_method(
                RefundActivities.reverse, RefundFailure(refund_id=ref.refund_id, reason=reason or "stripe_refused"),
                start_to_close_timeout=_CALL_TIMEOUT, retry_policy=_NEVER_GIVE_UP,
            )
        return self._progress


@workflow.defn(name="DisputeWorkflow")
class DisputeWorkflow:
    @workflow.run
    async def run(self, dispute: DisputeInput) -> DisputeOutcome:
        return await workflow.execute_activity_method(
            RefundActivities.apply_dispute, dispute, start_to_close_timeout=_CALL_TIMEOUT, retry_policy=_NEVER_GIVE_UP
        )
