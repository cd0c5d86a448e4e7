"""Migration tables.

- ``stripe_migrations``: one row per run (dry or real): its cursor, counters and final report,
  so ``GET /v1/migrations/{id}`` shows progress while the workflow runs.
- ``stripe_migration_items``: what a run did (or would do) for each Stripe customer, written
  once per (run, customer) and overwritten by a retried page: the report is an aggregate of
  these rows, so a page processed twice after a crash is never counted twice.
- ``stripe_customer_links``: Stripe customer id -> walletflow customer (unique): re-runs link,
  never duplicate. Also keeps the default payment method found at Stripe.
- ``stripe_price_links``: Stripe price id -> walletflow product and version (unique).
- ``stripe_cutovers``: one row per Stripe subscription cut over (final invoice, cancel at
  period end), so the cut-over step is idempotent.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import UTCDateTime, utcnow
from walletflow.ledger.models import Json


class StripeMigration(Base):
    __tablename__ = "stripe_migrations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    dry_run: Mapped[bool]
    #: Import the default payment method into an enabled auto-recharge policy (else disabled).
    enable_auto_recharge: Mapped[bool] = mapped_column(default=False)
    #: ``running``, ``completed`` or ``failed``; cut-over has its own ``cutover_status``.
    status: Mapped[str] = mapped_column(String(16))
    #: The last Stripe customer id of the last page finished (Stripe's ``starting_after``).
    cursor: Mapped[str | None] = mapped_column(String(255))
    pages_done: Mapped[int] = mapped_column(Integer, default=0)
    customers_done: Mapped[int] = mapped_column(Integer, default=0)
    #: The report (see ``walletflow.migration.report``); partial while running.
    report: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    cutover_status: Mapped[str | None] = mapped_column(String(16))
    cutover_report: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeMigrationItem(Base):
    __tablename__ = "stripe_migration_items"

    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stripe_migrations.id"), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: ``{"action": created|linked|would_create|would_link, "customer_id", "grants": [...],
    #: "stripe_credit": {asset: minor}, "walletflow_credit": {asset: minor}, "debt": {...}, ...}``.
    result: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeCustomerLink(Base):
    __tablename__ = "stripe_customer_links"

    stripe_customer_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), unique=True)
    #: The Stripe customer's default payment method at import (for auto-recharge).
    default_payment_method: Mapped[str | None] = mapped_column(String(255))
    #: The run that made the link.
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stripe_migrations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripePriceLink(Base):
    __tablename__ = "stripe_price_links"

    stripe_price_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"))
    version: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(100))
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stripe_migrations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeCutover(Base):
    __tablename__ = "stripe_cutovers"

    stripe_subscription_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    migration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stripe_migrations.id"))
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    #: The final invoice made at cut-over, once it exists.
    invoice_id: Mapped[str | None] = mapped_column(String(255))
    #: ``claimed`` -> ``invoiced`` -> ``done`` (cancel_at_period_end set).
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
