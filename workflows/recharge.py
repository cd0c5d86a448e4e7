"""Auto-recharge workflows.

``AutoRechargeWorkflow`` (id ``auto-recharge-{customer_id}-{asset}``, one per wallet): woken by
a ``trigger`` signal (signal-with-start by the relay or the sweep), it asks the database what to
do (``recharge.plan``: charge, wait for the cooldown or a decline's backoff, or nothing) and
does it, one charge at a time: signals that arrive meanwhile are coalesced into one more look.
A charge: off-session PaymentIntent on the saved card -> (pending: poll until the deadline,
then cancel) -> succeeded: risk gate -> credit / review / refund; declined: cancel, count it
(backoff, disable after N); 3-D Secure: cancel, pause the policy and notify, no retry loop.
Long-lived: continues as new after ``charges_per_run`` charges or when Temporal suggests it.

``AutoRechargeRelayWorkflow`` relays the trigger outbox (rows written by the database trigger on
``accounts`` with each threshold crossing) to the recharge workflows, in a loop of activities.
``AutoRechargeSweepWorkflow`` (scheduled) enqueues every enabled wallet under its threshold and
relays, catching anything missed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.recharge import RechargeActivities
    from activities.topups import TopUpActivities
    from walletflow.payments.contracts import (
        MarkStatus,
        PaymentCheck,
        PaymentSignal,
        RefundOutcome,
        RefundRequest,
        RiskOutcome,
        TopUpRef,
    )
    from walletflow.recharge.contracts import (
        AutoRechargeInput,
        AutoRechargeRelayInput,
        AutoRechargeSweepInput,
        ChargeRef,
        ChargeResult,
        FailureRecord,
        RechargeCredit,
        RechargePlan,
        RechargeProgress,
        RechargeSignal,
        SweepResult,
        WalletRef,
    )
    from walletflow.settings import Settings

_CALL_TIMEOUT = timedelta(seconds=30)
#: Database and Stripe calls that must eventually happen (a charge in flight must end in a
#: credit, a refund or a recorded failure): retried without a limit, visible in the UI meanwhile.
_NEVER_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
_GIVE_UP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=8)


@workflow.defn(name="AutoRechargeWorkflow")
class AutoRechargeWorkflow:
    def __init__(self) -> None:
        self._pending = False
        self._payment_news = False
        self._review: bool | None = None
        self._progress = RechargeProgress()
        self._wallet: WalletRef | None = None
        #: Each call's start-to-close timeout, from the worker's settings via the last plan.
        self._call_timeout = _CALL_TIMEOUT

    @workflow.signal
    def trigger(self, signal: RechargeSignal) -> None:
        """Look at the wallet (again). Many signals before the next look count as one."""
        self._pending = True
        self._progress.signals += 1

    @workflow.signal
    def payment_result(self, signal: PaymentSignal) -> None:
        """Sent by the Stripe webhook endpoint (the charge is a top-up whose workflow_id is this
        workflow): a hint to ask Stripe now about a charge still processing, never the result."""
        self._payment_news = True

    # Same names as TopUpWorkflow's, so the review queue (API and CLI) decides a recharge charge
    # in review exactly as it decides a top-up.
    @workflow.signal
    def approve_review(self, note: str | None = None) -> None:
        if self._review is None:
            self._review = True

    @workflow.signal
    def reject_review(self, note: str | None = None) -> None:
        if self._review is None:
            self._review = False

    @workflow.query
    def status(self) -> RechargeProgress:
        return self._progress

    @workflow.run
    async def run(self, params: AutoRechargeInput) -> RechargeProgress:
        self._wallet = WalletRef(customer_id=params.customer_id, asset=params.asset)
        self._pending = self._pending or params.pending
        self._progress.charges = params.charges_before
        charges_this_run = 0
        while True:
            self._progress.status = "idle"
            await workflow.wait_condition(lambda: self._pending)
            while True:
                self._pending = False
                plan = await self._plan()
                if plan.action == "charge":
                    await self._charge(plan)
                    charges_this_run += 1
                    continue
                if plan.action == "wait":
                    self._progress.status = f"waiting ({plan.reason})"
                    await workflow.sleep(timedelta(seconds=max(plan.wait_s or 0.0, 0.001)))
                    continue
                break
            if plan.action == "disabled":
                self._progress.status = "disabled"
                return self._progress
            if charges_this_run >= plan.charges_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    AutoRechargeInput(customer_id=params.customer_id, asset=params.asset, pending=self._pending,
                                      charges_before=self._progress.charges)
                )

    async def _plan(self) -> RechargePlan:
        self._progress.status = "planning"
        plan: RechargePlan = await workflow.execute_activity_method(
            RechargeActivities.plan, self._wallet, start_to_close_timeout=_CALL_TIMEOUT, retry_policy=_NEVER_GIVE_UP
        )
        self._progress.last_plan = plan
        self._call_timeout = timedelta(seconds=plan.call_timeout_s)
        return plan

    async def _charge(self, plan: RechargePlan) -> None:
        assert plan.top_up_id is not None
        self._progress.status = "charging"
        self._progress.charges += 1
        self._progress.last_top_up_id = plan.top_up_id
        self._review = None
        ref = ChargeRef(top_up_id=plan.top_up_id)
        result: ChargeResult = await workflow.execute_activity_method(
            RechargeActivities.charge, ref, start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP
        )
        if result.state == "pending":
            result = await self._wait_for_payment(plan, result)
        if result.state in ("failed", "canceled", "requires_action"):
            if result.payment_intent_id is not None:
                # No later attempt (the customer finishing 3-D Secure, a retried confirmation)
                # may take money this workflow has stopped watching.
                final = await self._cancel(plan.top_up_id)
                if final.state == "succeeded":
                    await self._settle(plan, ChargeResult(payment_intent_id=final.payment_intent_id,
                                                          state="succeeded", reason=final.reason))
                    return
            await self._fail(plan.top_up_id, result.reason or result.state, result.state == "requires_action",
                             result.payment_intent_id)
            return
        await self._settle(plan, result)

    async def _wait_for_payment(self, plan: RechargePlan, result: ChargeResult) -> ChargeResult:
        """A charge Stripe is still processing: ask again when a webhook says so, or every poll
        interval, until the deadline (then the caller cancels it)."""
        deadline = workflow.now() + timedelta(seconds=plan.payment_deadline_s)
        ref = TopUpRef(top_up_id=plan.top_up_id or "")
        while (remaining_s := (deadline - workflow.now()).total_seconds()) > 0:
            try:
                await workflow.wait_condition(lambda: self._payment_news,
                                              timeout=min(plan.poll_interval_s, remaining_s))
            except TimeoutError:
                pass
            self._payment_news = False
            check: PaymentCheck = await workflow.execute_activity_method(
                TopUpActivities.check_payment, ref, start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP
            )
            if check.state == "succeeded":
                return ChargeResult(payment_intent_id=check.payment_intent_id, state="succeeded", reason=check.reason)
            if check.state in ("failed", "canceled"):
                return ChargeResult(payment_intent_id=check.payment_intent_id, state=check.state, reason=check.reason)
        return ChargeResult(payment_intent_id=result.payment_intent_id, state="canceled", reason="payment_deadline")

    async def _cancel(self, top_up_id: str) -> PaymentCheck:
        return await workflow.execute_activity_method(
            TopUpActivities.cancel_payment, TopUpRef(top_up_id=top_up_id),
            start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP,
        )

    async def _settle(self, plan: RechargePlan, result: ChargeResult) -> None:
        """Money was taken: the same risk gate as a top-up, then credit it exactly once or refund."""
        top_up_id = plan.top_up_id or ""
        ref = TopUpRef(top_up_id=top_up_id)
        try:
            await self._mark(top_up_id, "scoring")
            if result.reason == "amount_mismatch":
                await self._refund(top_up_id, "amount_mismatch", mark=True)
                return
            risk: RiskOutcome = await workflow.execute_activity_method(
                TopUpActivities.score, ref, start_to_close_timeout=self._call_timeout, retry_policy=_GIVE_UP
            )
            if risk.decision == "reject":
                await self._refund(top_up_id, "risk_rejected", mark=True)
                return
            if risk.decision == "review":
                await self._mark(top_up_id, "in_review")
                self._progress.status = "in_review"
                try:
                    await workflow.wait_condition(lambda: self._review is not None, timeout=plan.review_deadline_s)
                except TimeoutError:
                    self._review = False
                if not self._review:
                    await self._refund(top_up_id, "review_rejected", mark=True)
                    return
            credit: RechargeCredit = await workflow.execute_activity_method(
                RechargeActivities.credit, ChargeRef(top_up_id=top_up_id),
                start_to_close_timeout=2 * self._call_timeout, retry_policy=_NEVER_GIVE_UP,
            )
            self._progress.last_outcome = "succeeded" if credit.outcome == "credited" else "refunded"
        except ActivityError:
            # A step failed for good after the charge (the saga's compensation). The workflow
            # lives on: the failure is counted, so the next try waits for its backoff.
            workflow.logger.warning("charge %s could not be settled; refunding it", top_up_id)
            await self._refund(top_up_id, "failure_after_payment", mark=False)

    async def _refund(self, top_up_id: str, reason: str, *, mark: bool) -> None:
        if mark:
            await self._mark(top_up_id, "rejected", reason)
        outcome: RefundOutcome = await workflow.execute_activity_method(
            TopUpActivities.refund, RefundRequest(top_up_id=top_up_id, reason=reason),
            start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP,
        )
        if outcome.outcome == "refunded":
            # Counted like a decline: backoff, then the policy is disabled after N in a row, so a
            # refused recharge is never retried in a tight loop.
            await self._fail(top_up_id, reason, False, None)
        else:
            self._progress.last_outcome = "succeeded"

    async def _fail(self, top_up_id: str, reason: str, requires_action: bool, payment_intent_id: str | None) -> None:
        await workflow.execute_activity_method(
            RechargeActivities.record_failure,
            FailureRecord(top_up_id=top_up_id, reason=reason, requires_action=requires_action,
                          payment_intent_id=payment_intent_id),
            start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP,
        )
        self._progress.last_outcome = "requires_action" if requires_action else f"failed: {reason}"

    async def _mark(self, top_up_id: str, status: str, reason: str | None = None) -> None:
        await workflow.execute_activity_method(
            TopUpActivities.mark_status, MarkStatus(top_up_id=top_up_id, status=status, reason=reason),  # type: ignore[arg-type]
            start_to_close_timeout=self._call_timeout, retry_policy=_NEVER_GIVE_UP,
        )


@workflow.defn(name="AutoRechargeRelayWorkflow")
class AutoRechargeRelayWorkflow:
    """Runs the relay activity back to back; one per task queue (see :func:`relay_workflow_id`)."""

    @workflow.run
    async def run(self, params: AutoRechargeRelayInput) -> None:
        for _ in range(max(1, params.runs_per_workflow)):
            await workflow.execute_activity_method(
                RechargeActivities.relay,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)),
            )
        workflow.continue_as_new(params)


@workflow.defn(name="AutoRechargeSweepWorkflow")
class AutoRechargeSweepWorkflow:
    """Scheduled: every enabled wallet under its threshold gets its recharge workflow signalled."""

    @workflow.run
    async def run(self, params: AutoRechargeSweepInput | None = None) -> SweepResult:
        return await workflow.execute_activity_method(
            RechargeActivities.sweep, params or AutoRechargeSweepInput(),
            start_to_close_timeout=timedelta(minutes=5), retry_policy=_GIVE_UP,
        )


def relay_workflow_id(settings: Settings) -> str:
    """One relay per task queue (so two deployments on one Temporal namespace do not share one)."""
    return f"auto-recharge-relay-{settings.task_queue}"


async def ensure_relay(client: Client, settings: Settings) -> WorkflowHandle:
    """Start the relay unless it runs already (the worker calls this at start-up)."""
    return await client.start_workflow(
        AutoRechargeRelayWorkflow.run, AutoRechargeRelayInput(), id=relay_workflow_id(settings),
        task_queue=settings.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
