"""Usage event tables.

An event's client-chosen id is its idempotency key forever: the row is written in the same
database transaction as its debit, so a failed write leaves no claimed id behind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import BigId, Money, UTCDateTime, utcnow
from walletflow.ledger.models import Json


class UsageEvent(Base):
    """One priced usage event. On PostgreSQL the foreign keys of this table and of
    ``usage_costs`` are not enforced row by row and the time indexes are BRIN (migration 0020)."""

    __tablename__ = "usage_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    #: The client's id for the event, unique per customer.
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    product_code: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int | None]
    asset: Mapped[str] = mapped_column(String(16))
    #: Fee debited for the event, in minor units of ``asset`` (0: priced at nothing).
    amount: Mapped[int] = mapped_column(Money)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    data: Mapped[dict[str, Any]] = mapped_column(Json)

    __table_args__ = (
        UniqueConstraint("customer_id", "event_id", name="uq_usage_events_customer_event"),
        Index("ix_usage_events_occurred_at", "occurred_at"),
    )


class UsageCost(Base):
    """A vendor's cost behind one event (e.g. the model provider's charge), for margins."""

    __tablename__ = "usage_costs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    usage_event_id: Mapped[int] = mapped_column(ForeignKey("usage_events.id"), index=True)
    vendor: Mapped[str] = mapped_column(String(100))
    asset: Mapped[str] = mapped_column(String(16))
    #: Cost in minor units of ``asset``.
    amount: Mapped[int] = mapped_column(Money)
