"""Settlement and grant-expiry activities: adapters from the workflows to ``walletflow.settlement``.

Each activity is safe to run again after a crash at any line (every write it makes is keyed on
the period, the customer or the ledger object it concerns). Bad input (a malformed or unclosed
period) fails non-retryably; anything else (database, Stripe) is retried.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from walletflow.db.types import utcnow
from walletflow.errors import WalletflowError
from walletflow.ledger.service import Ledger
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.risk.usage import UsageThresholds
from walletflow.risk.usage_model import UsageRiskScorer
from walletflow.settings import Settings
from walletflow.settlement import expiry, postpaid, reconcile, scoring, service
from walletflow.settlement.contracts import (
    DuePeriodsInput,
    ExpireGrantsInput,
    GrantSweep,
    HoldSweep,
    InvoiceBatch,
    InvoiceBatchInput,
    PeriodRef,
    Reconciliation,
    ReportInput,
    SettlementOutcome,
    UsageScoring,
)
from walletflow.settlement.periods import Period, PeriodLength
from walletflow.settlement.scoring import SpikeRules, UsageScorer

#: Holds released per ledger call, and calls per activity (bounded work per attempt).
HOLD_BATCH, HOLD_MAX_BATCHES = 500, 200


def spike_rules_from(settings: Settings) -> SpikeRules:
    return SpikeRules(factor=settings.usage_spike_factor, min_amount=settings.usage_spike_min_amount)


class SettlementActivities:
    """The worker builds one instance with its dependencies and registers :meth:`all`.

    ``usage_scorer`` is the usage-scoring hook: anything with ``score_usage(usage) -> decisions``
    (``walletflow.settlement.scoring.UsageScorer``); the rules check by default. ``usage_risk`` is
    the risk module's usage scorer, the trained usage model plus the usage rules, which the worker
    loads once (``walletflow.risk.scoring.scorers_from``); without one, the usage rules alone.
    """

    def __init__(
        self, engine: AsyncEngine, ledger: Ledger, gateway: StripeGateway, settings: Settings,
        usage_scorer: UsageScorer | None = None, clock: Callable[[], dt.datetime] = utcnow,
        usage_risk: UsageRiskScorer | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.settings = settings
        self.usage_scorer = usage_scorer or spike_rules_from(settings)
        self.usage_risk = usage_risk or UsageRiskScorer(None, UsageThresholds.from_settings(settings))
        self.clock = clock
        self.billing = postpaid.PostpaidBilling(
            engine, gateway, invoice_currency=settings.invoice_currency,
            collection_method=settings.invoice_collection_method, days_until_due=settings.invoice_days_until_due,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.due_periods, self.check_period, self.expire_holds, self.reconcile, self.score_usage,
            self.invoice_postpaid, self.record_report, self.expire_grants,
        ]

    @property
    def _length(self) -> PeriodLength:
        return "hour" if self.settings.settlement_period == "hour" else "day"

    @property
    def _grace(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.settlement_grace_s)

    @activity.defn(name="settlement.due_periods")
    async def due_periods(self, params: DuePeriodsInput) -> list[str]:
        return await service.due_periods(
            self.engine, params.now, self._length, self._grace, self.settings.settlement_max_catch_up
        )

    @activity.defn(name="settlement.check_period")
    async def check_period(self, ref: PeriodRef) -> PeriodRef:
        """Normalise the period's key; refuse one that has not closed (ended ``grace`` ago)."""
        period = _period(ref.period)
        if period.end + self._grace > self.clock():
            raise ApplicationError(
                f"period {period.key} has not closed yet (it ends at {period.end.isoformat()}, "
                f"plus {self.settings.settlement_grace_s} s of grace)", type="PeriodNotClosed", non_retryable=True,
            )
        return PeriodRef(period=period.key)

    @activity.defn(name="settlement.expire_holds")
    async def expire_holds(self, ref: PeriodRef) -> HoldSweep:
        return await service.sweep_holds(self.engine, self.ledger, _period(ref.period), HOLD_BATCH, HOLD_MAX_BATCHES)

    @activity.defn(name="settlement.reconcile")
    async def reconcile(self, ref: PeriodRef) -> Reconciliation:
        period = _period(ref.period)
        audit = await self.ledger.audit()
        return await reconcile.reconcile(self.engine, period, audit, self.settings.settlement_report_max_details)

    @activity.defn(name="settlement.score_usage")
    async def score_usage(self, ref: PeriodRef) -> UsageScoring:
        """Collect per-customer usage, ask the scorer, freeze the flagged wallets."""
        period = _period(ref.period)
        usage = await scoring.collect_usage(self.engine, period, self.settings.usage_spike_baseline_periods)
        decisions = scoring.combine(
            self.usage_scorer.score_usage(usage),
            await scoring.risk_flags(self.engine, period, usage, self.usage_risk),
        )
        async with _business_errors():
            flags = await scoring.apply_decisions(self.engine, self.ledger, period, usage, decisions, self.clock())
        return UsageScoring(customers_scored=len(usage), flagged=flags)

    @activity.defn(name="settlement.invoice_postpaid")
    async def invoice_postpaid(self, params: InvoiceBatchInput) -> InvoiceBatch:
        """Invoice one page of the period's postpaid customers (heartbeats per customer)."""
        period = _period(params.period)
        after = uuid.UUID(params.after) if params.after else None
        customers = await postpaid.postpaid_customers_with_usage(
            self.engine, period, after, self.settings.invoice_batch_size
        )
        batch = InvoiceBatch()
        for customer_id in customers:
            activity.heartbeat(str(customer_id))
            async with _business_errors():
                batch.invoices += await self.billing.invoice(customer_id, period)
        if len(customers) == self.settings.invoice_batch_size:
            batch.next_after = str(customers[-1])
        return batch

    @activity.defn(name="settlement.record_report")
    async def record_report(self, report: ReportInput) -> SettlementOutcome:
        return await service.record_report(self.engine, report, self.clock())

    @activity.defn(name="grant_expiry.expire")
    async def expire_grants(self, params: ExpireGrantsInput) -> GrantSweep:
        return await expiry.expire_grants(
            self.engine, params.as_of, self.settings.grant_expiry_batch_size, self.settings.grant_expiry_max_batches
        )


def _period(key: str) -> Period:
    try:
        return Period.parse(key)
    except ValueError as exc:
        raise ApplicationError(str(exc), type="InvalidPeriod", non_retryable=True) from exc


@asynccontextmanager
async def _business_errors() -> AsyncIterator[None]:
    try:
        yield
    except WalletflowError as exc:
        raise ApplicationError(exc.detail, type=type(exc).__name__, non_retryable=True) from exc
