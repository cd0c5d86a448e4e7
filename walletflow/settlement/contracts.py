"""What the settlement and grant-expiry workflows and their activities exchange (pydantic,
through Temporal's pydantic data converter). No I/O, so the workflow sandbox can import it.

Workflow inputs have a default for every field: a Temporal Schedule starts them with ``{}``.
Models only ever gain optional fields, so a running workflow's history still decodes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class SettlementInput(BaseModel):
    """``UsageSettlementWorkflow``'s input. No period (the schedule's run): settle every closed
    period not settled yet, each as a child workflow ``settlement-{period}``."""

    period: str | None = None


class DuePeriodsInput(BaseModel):
    now: dt.datetime


class PeriodRef(BaseModel):
    period: str


class HoldSweep(BaseModel):
    """Holds past their expiry released by this run, and ``hold.expired`` events recorded."""

    expired: int = 0
    events: int = 0


class Reconciliation(BaseModel):
    """Leaks found for one period.

    ``summary``: ``{kind: {"count", "amount", "by_asset": {asset: amount}}}``, every kind listed
    (zeros included); ``examples``: up to N findings per kind.
    """

    summary: dict[str, dict[str, Any]]
    examples: dict[str, list[dict[str, Any]]]

    @property
    def leak_count(self) -> int:
        return sum(int(k["count"]) for k in self.summary.values())


class UsageFlag(BaseModel):
    customer_id: str
    score: int
    reasons: list[str]
    #: ``frozen`` (frozen by this settlement) or ``already_frozen`` (was frozen before).
    action: str


class UsageScoring(BaseModel):
    customers_scored: int = 0
    flagged: list[UsageFlag] = Field(default_factory=list)


class InvoiceBatchInput(BaseModel):
    period: str
    #: Continue after this customer id (keyset pagination); None starts from the first.
    after: str | None = None


class InvoiceInfo(BaseModel):
    customer_id: str
    currency: str
    amount: int
    stripe_invoice_id: str | None
    status: str


class InvoiceBatch(BaseModel):
    invoices: list[InvoiceInfo] = Field(default_factory=list)
    #: The last customer handled; None when there are no more.
    next_after: str | None = None


class ReportInput(BaseModel):
    period: str
    reconciliation: Reconciliation
    holds: HoldSweep
    scoring: UsageScoring
    invoices: list[InvoiceInfo] = Field(default_factory=list)


class SettlementOutcome(BaseModel):
    """A settled period: the stored report's figures (a rerun returns the first report)."""

    period: str
    leak_count: int = 0
    leak_amount: int = 0
    summary: dict[str, dict[str, Any]] = Field(default_factory=dict)
    replayed: bool = False
    #: Driver runs (no period given): the periods they settled.
    settled: list[str] = Field(default_factory=list)


class GrantExpiryInput(BaseModel):
    """``GrantExpiryWorkflow``'s input. ``horizon_s``: after sweeping, keep sleeping until each
    grant that expires within this many seconds of the start, so it expires on time rather
    than at the next scheduled run (the schedule passes its interval)."""

    horizon_s: int = 0


class ExpireGrantsInput(BaseModel):
    #: The workflow's clock: grants with ``expires_at <= as_of`` are expired.
    as_of: dt.datetime


class GrantSweep(BaseModel):
    expired: int = 0
    #: Amount moved to breakage, per asset, minor units.
    breakage: dict[str, int] = Field(default_factory=dict)
    events: int = 0
    #: True when the run stopped at its batch limit with grants still due.
    more: bool = False
    #: The soonest expiry still ahead of ``as_of`` (None: no grant is waiting to expire).
    next_expiry: dt.datetime | None = None
