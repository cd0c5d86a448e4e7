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
    """One priced usage event. On PostgreSQL its foreign key is not enforced row by row and the
    time indexes are BRIN (migration 0020)."""

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
    #: The vendors' costs behind the event (e.g. the model provider's charge), for margins:
    #: ``[{"vendor", "asset", "amount" (minor units of asset)}]``, or ``None``. A column rather
    #: than rows of their own since migration 0023: one row fewer per event on the hot path.
    costs: Mapped[list[dict[str, Any]] | None] = mapped_column(Json, nullable=True)

    __table_args__ = (
        UniqueConstraint("customer_id", "event_id", name="uq_usage_events_customer_event"),
        Index("ix_usage_events_occurred_at", "occurred_at"),
    )

