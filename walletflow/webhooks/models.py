"""The outbox of platform events (``top_up.succeeded``, ``balance.low``, ...).

An event is written in the same database transaction as the change it reports, so a crash
can never keep the change and lose the event; delivery to the platform's webhook endpoints
reads this table afterwards and may retry as often as it needs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import UTCDateTime, utcnow
from walletflow.ledger.models import Json


class OutboundEvent(Base):
    __tablename__ = "outbound_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: ``top_up.succeeded``, ``balance.low``, ... (see ``walletflow.webhooks.outbox.EVENT_TYPES``).
    event_type: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    #: One event per business fact: emitting the same key again is a no-op.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_outbound_events_created_at", "created_at"),)
