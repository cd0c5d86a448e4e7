"""Auto-recharge tables: the policy per (customer, asset) and the trigger outbox.

``recharge_triggers`` is written by a database trigger on ``accounts`` (migration 0010) in the
same transaction as the balance change that crossed the threshold, whichever path made it
(``wf_debit``, ``wf_ingest``, ``wf_authorize`` on PostgreSQL, the Python ledger on SQLite). A
crash right after the debit's commit therefore cannot lose the trigger: the row is there, and the
relay (or the scheduled sweep) turns it into a signal to ``auto-recharge-{customer}-{asset}``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import BigId, Money, UTCDateTime, utcnow
from walletflow.payments.models import TopUp


class AutoRechargePolicy(Base):
    """When and how far to refill one wallet from the customer's saved card, within caps."""

    __tablename__ = "auto_recharge_policies"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"), primary_key=True)
    #: Recharge when available balance drops below this, minor units.
    threshold: Mapped[int] = mapped_column(Money)
    #: Each recharge charges what brings available balance back to this, minor units.
    target: Mapped[int] = mapped_column(Money)
    #: The saved Stripe PaymentMethod (``pm_...``), attached to the customer's Stripe customer.
    payment_method_id: Mapped[str] = mapped_column(String(255))
    #: At most this much charged per UTC day / calendar month (UTC), minor units, in-flight included.
    daily_cap: Mapped[int] = mapped_column(Money)
    monthly_cap: Mapped[int] = mapped_column(Money)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Why walletflow turned the policy off (``consecutive_declines``, ``requires_action``), if it did.
    disabled_reason: Mapped[str | None] = mapped_column(String(64))
    #: The customer's consent to off-session charges: when, how, and the words shown.
    consent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    consent_method: Mapped[str] = mapped_column(String(64))
    consent_text: Mapped[str | None] = mapped_column(Text)
    #: Declines in a row since the last successful charge.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_failure_reason: Mapped[str | None] = mapped_column(String(64))
    #: When the last charge that took money was started (the cooldown runs from here).
    last_charge_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Charges started so far; the next charge's key is ``auto-recharge-{customer}-{asset}:{seq}``.
    charge_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("threshold >= 0", name="threshold_non_negative"),
        CheckConstraint("target > threshold", name="target_above_threshold"),
        CheckConstraint("daily_cap > 0 AND monthly_cap > 0", name="caps_positive"),
        CheckConstraint("consecutive_failures >= 0", name="failures_non_negative"),
    )


class RechargeTrigger(Base):
    """One wallet that needs its recharge workflow told (the outbox row)."""

    __tablename__ = "recharge_triggers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    asset: Mapped[str] = mapped_column(String(16))
    #: Available balance right after the change that wrote the row, minor units.
    available: Mapped[int] = mapped_column(Money)
    #: ``threshold`` (a balance change crossed it), ``sweep`` or ``policy`` (set or re-enabled).
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set once the recharge workflow was signalled; pending rows have none.
    relayed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # At most one pending row per wallet: 100 debits crossing the threshold together leave
        # one row, and the relay signals once.
        Index(
            "uq_recharge_triggers_pending", "customer_id", "asset", unique=True,
            postgresql_where=text("relayed_at IS NULL"), sqlite_where=text("relayed_at IS NULL"),
        ),
    )


# At most one auto-recharge charge in flight per wallet, enforced by the database: a charge is a
# top-up whose ``workflow_id`` is the wallet's recharge workflow. Declared here (not in
# payments/models.py) because it belongs to auto-recharge; Index() attaches it to ``top_ups``.
_IN_FLIGHT = (
    "status IN ('initiated', 'awaiting_payment', 'scoring', 'in_review') AND workflow_id LIKE 'auto-recharge-%'"
)
Index(
    "uq_top_ups_auto_recharge_in_flight", TopUp.__table__.c.workflow_id, unique=True,  # type: ignore[attr-defined]
    postgresql_where=text(_IN_FLIGHT), sqlite_where=text(_IN_FLIGHT),
)
