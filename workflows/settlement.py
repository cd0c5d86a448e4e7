"""``UsageSettlementWorkflow``: settle one period (id ``settlement-{period}``), or, started by the
schedule with no period, every closed period not settled yet, each as its own child workflow.

Settling a period: release expired holds -> reconcile (leaks) -> score usage (may freeze wallets)
-> invoice postpaid customers (pages of customers) -> store the report and emit
``settlement.completed``. Every step is idempotent on the period, so a retried activity, a rerun
of the same period or a schedule racing an operator doubles nothing.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.settlement import SettlementActivities
    from walletflow.settlement.contracts import (
        DuePeriodsInput,
        InvoiceBatchInput,
        InvoiceInfo,
        PeriodRef,
        ReportInput,
        SettlementInput,
        SettlementOutcome,
    )

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1), maximum_attempts=10)
_SHORT = timedelta(minutes=2)
#: Reconciliation and scoring read a whole period; the hold sweep and invoicing work in pages.
_LONG = timedelta(minutes=30)
#: Bound on invoice pages per period (``invoice_batch_size`` customers each).
MAX_INVOICE_PAGES = 10_000


@workflow.defn(name="UsageSettlementWorkflow")
class UsageSettlementWorkflow:
    @workflow.run
    async def run(self, params: SettlementInput) -> SettlementOutcome:
        if params.period is None:
            return await self._settle_due()
        return await self._settle(params.period)

    async def _settle_due(self) -> SettlementOutcome:
        periods: list[str] = await workflow.execute_activity_method(
            SettlementActivities.due_periods, DuePeriodsInput(now=workflow.now()),
            start_to_close_timeout=_SHORT, retry_policy=_RETRY,
        )
        settled = []
        for period in periods:
            try:
                await workflow.execute_child_workflow(
                    UsageSettlementWorkflow.run, SettlementInput(period=period), id=f"settlement-{period}",
                )
            except WorkflowAlreadyStartedError:
                continue  # an operator's run of the same period is under way: it settles it
            except ChildWorkflowError:
                # The period stays unsettled (no report), so the next scheduled run retries it.
                workflow.logger.warning("settlement of %s failed; the next run retries it", period)
                continue
            settled.append(period)
        return SettlementOutcome(period="", settled=settled)

    async def _settle(self, period: str) -> SettlementOutcome:
        ref: PeriodRef = await workflow.execute_activity_method(
            SettlementActivities.check_period, PeriodRef(period=period), start_to_close_timeout=_SHORT,
            retry_policy=_RETRY,
        )
        holds = await workflow.execute_activity_method(
            SettlementActivities.expire_holds, ref, start_to_close_timeout=_LONG, retry_policy=_RETRY,
        )
        reconciliation = await workflow.execute_activity_method(
            SettlementActivities.reconcile, ref, start_to_close_timeout=_LONG, retry_policy=_RETRY,
        )
        # The usage-scoring step: per-customer usage in, freeze decisions out (see
        # walletflow/settlement/scoring.py); a model can replace the rules behind the same hook.
        scoring = await workflow.execute_activity_method(
            SettlementActivities.score_usage, ref, start_to_close_timeout=_LONG, retry_policy=_RETRY,
        )
        invoices: list[InvoiceInfo] = []
        after: str | None = None
        for _ in range(MAX_INVOICE_PAGES):
            batch = await workflow.execute_activity_method(
                SettlementActivities.invoice_postpaid, InvoiceBatchInput(period=ref.period, after=after),
                start_to_close_timeout=_LONG, heartbeat_timeout=timedelta(minutes=2), retry_policy=_RETRY,
            )
            invoices += batch.invoices
            after = batch.next_after
            if after is None:
                break
        return await workflow.execute_activity_method(
            SettlementActivities.record_report,
            ReportInput(period=ref.period, reconciliation=reconciliation, holds=holds, scoring=scoring,
                        invoices=invoices),
            start_to_close_timeout=_SHORT, retry_policy=_RETRY,
        )
