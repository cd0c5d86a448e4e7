"""Settlement tables: one report per period, usage reviews (wallets frozen by settlement), and
postpaid invoices (one Stripe invoice per customer, period and currency)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import Money, UTCDateTime, utcnow
from walletflow.ledger.models import Hold, Json
from walletflow.usage.models import UsageEvent


class SettlementReport(Base):
    """What settling one period found. Written once per period: a rerun returns this row."""

    __tablename__ = "settlement_reports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: The period's key, e.g. ``2026-11-27`` (a day) or ``2026-11-27T13:00Z`` (an hour).
    period: Mapped[str] = mapped_column(String(32), unique=True)
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Leaks found, all kinds together.
    leak_count: Mapped[int]
    #: Their amounts added up, in minor units (of mixed assets: a signal, not a sum of money;
    #: ``summary`` has them per kind and asset).
    leak_amount: Mapped[int] = mapped_column(Money)
    #: ``{kind: {"count": n, "amount": minor units, "by_asset": {asset: minor units}}}``.
    summary: Mapped[dict[str, Any]] = mapped_column(Json)
    #: Examples per kind (bounded), the holds released, the wallets frozen, the invoices made.
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageReview(Base):
    """A customer whose usage in a period looked like abuse: the wallet was frozen for review."""

    __tablename__ = "usage_reviews"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    period: Mapped[str] = mapped_column(String(32))
    score: Mapped[int]
    reasons: Mapped[list[str]] = mapped_column(Json)
    #: Per asset: the period's spend and the trailing baseline, in minor units.
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    #: Set once the wallet was frozen and ``wallet.frozen`` / ``review.required`` were emitted.
    frozen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("customer_id", "period", name="uq_usage_reviews_customer_period"),)


class PostpaidInvoice(Base):
    """The Stripe invoice billing a postpaid customer's usage of one period in one currency.

    Claimed (with its amount and lines) before anything is sent to Stripe, so every retry bills
    exactly what the first attempt decided, and stores the invoice id as soon as it exists:
    Stripe's idempotency keys expire (and localstripe ignores them), so this row is the guard.
    """

    __tablename__ = "postpaid_invoices"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    period: Mapped[str] = mapped_column(String(32))
    #: Lower-case ISO currency, as Stripe spells it.
    currency: Mapped[str] = mapped_column(String(3))
    #: Total of the lines, in minor units of ``currency``.
    amount: Mapped[int] = mapped_column(Money)
    #: ``[{"asset", "usage" (minor units of the asset), "amount" (minor units of currency), "rate"}]``.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255))
    #: claimed (nothing at Stripe yet) | draft (invoice made, lines being added) | finalized
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("customer_id", "period", "currency", name="uq_postpaid_invoices_customer_period_currency"),
    )


# Reconciliation reads usage events by when they were written and looks debits up by
# transaction: indexes on the usage table, declared here because settlement is their reader.
Index("ix_usage_events_received_at", UsageEvent.received_at)
Index("ix_usage_events_transaction_id", UsageEvent.transaction_id)
# Settlement records ``hold.expired`` for holds resolved as expired since a point in time.
Index("ix_holds_status_resolved_at", Hold.status, Hold.resolved_at)
