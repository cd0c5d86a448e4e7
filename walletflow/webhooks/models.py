"""The outbox of platform events (``top_up.succeeded``, ``balance.low``, ...), the platform's
webhook endpoints, and one delivery (with its attempt log) per event and endpoint.

An event is written in the same database transaction as the change it reports, so a crash
can never keep the change and lose the event; delivery to the platform's webhook endpoints
reads this table afterwards and may retry as often as it needs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import BigId, Money, UTCDateTime, utcnow
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
    #: When the dispatcher fanned the event out to its endpoints' deliveries (NULL: not yet).
    #: Set in the same transaction that inserts the deliveries, so an event is never marked
    #: without them (a marker, not a cursor: events commit out of ``created_at`` order).
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_outbound_events_created_at", "created_at"),
        # Only the undispatched tail is ever scanned; the index stays as small as that tail.
        Index(
            "ix_outbound_events_pending", "created_at", "id",
            postgresql_where=text("dispatched_at IS NULL"), sqlite_where=text("dispatched_at IS NULL"),
        ),
    )


class WebhookEndpoint(Base):
    """A receiver of the platform's: where events are POSTed, and which ones."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2000))
    #: Subscribed event types, or ``["*"]`` for all of them.
    events: Mapped[list[str]] = mapped_column(Json)
    #: ``whsec_...``: signs every delivery. Read only by the delivery activity and shown once
    #: (at creation or rotation); it never goes to a log or a workflow's history.
    secret: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_webhook_endpoints_created_at", "created_at", "id"),)


DELIVERY_STATUSES = ("pending", "delivered", "failed", "canceled")


class WebhookDelivery(Base):
    """One event to one endpoint; its workflow is ``webhook-delivery-{id}``."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbound_events.id"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_type: Mapped[str] = mapped_column(String(64))
    #: ``pending`` -> ``delivered`` (a 2xx), ``failed`` (out of attempts) or ``canceled``
    #: (the endpoint was disabled before it got the event).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: When its workflow was started (NULL: the next dispatch run starts it).
    workflow_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATUSES) + ")", name="status_valid"
        ),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        Index(
            "ix_webhook_deliveries_unstarted", "created_at",
            postgresql_where=text("workflow_started_at IS NULL"), sqlite_where=text("workflow_started_at IS NULL"),
        ),
    )


class WebhookDeliveryAttempt(Base):
    """One HTTP attempt of a delivery. Append-only (database triggers refuse UPDATE/DELETE)."""

    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    #: Temporal's attempt number of the delivery activity (1, 2, ...).
    attempt: Mapped[int] = mapped_column(Integer)
    #: The receiver's HTTP status; NULL when no answer came (``error`` says why).
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BalanceAlert(Base):
    """A wallet whose available balance just reached zero (``balance.depleted``), written by a
    database trigger on ``accounts`` in the same transaction as the debit, on every debit path
    (the PostgreSQL functions and the Python ledger alike). Webhook dispatch turns pending alerts
    into outbox events; the row is the durable trigger, so a crash after the debit loses nothing."""

    __tablename__ = "balance_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    asset: Mapped[str] = mapped_column(String(16))
    #: ``depleted``: available went from above zero to zero or below.
    kind: Mapped[str] = mapped_column(String(16))
    #: Available balance right after the change, in minor units.
    available: Mapped[int] = mapped_column(Money)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set once the alert became an outbox event.
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_balance_alerts_pending", "id", postgresql_where=text("promoted_at IS NULL"),
              sqlite_where=text("promoted_at IS NULL")),
    )
