"""Top-up and Stripe event tables.

A top-up is credited **or** refunded, never both: ``credit_transaction_id`` and
``refund_requested_at`` exclude each other by a check constraint, and both are set by guarded
UPDATEs (``... WHERE the other IS NULL``), so two racing settlements cannot both win.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import Money, UTCDateTime, utcnow
from walletflow.ledger.models import Json

TOP_UP_STATUSES = (
    "initiated", "awaiting_payment", "scoring", "in_review", "succeeded", "failed", "rejected", "refunded",
)


class TopUp(Base):
    """Money a customer pays through Stripe into one of their wallets."""

    __tablename__ = "top_ups"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    #: Charged amount, in minor units of ``currency``.
    amount: Mapped[int] = mapped_column(Money)
    #: ISO currency charged through Stripe, upper case (``USD``).
    currency: Mapped[str] = mapped_column(String(3))
    #: Wallet asset credited.
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    mode: Mapped[str] = mapped_column(String(16))  # payment_intent | checkout
    status: Mapped[str] = mapped_column(String(16), default="initiated")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: SHA-256 of the canonical request, to tell a retry from a reused key.
    request_hash: Mapped[str] = mapped_column(String(64))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: Mode ``checkout``: the Checkout Session the customer pays on (its PaymentIntent is known
    #: only once the customer has paid).
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: Mode ``checkout``: where Stripe's hosted page sends the customer back.
    return_url: Mapped[str | None] = mapped_column(String(2000))
    #: When ``asset`` is not the currency: the asset minor units credited (fixed when recorded)
    #: and the catalog rate used (fiat price of one whole unit, a decimal string).
    credit_amount: Mapped[int | None] = mapped_column(Money)
    credit_rate: Mapped[str | None] = mapped_column(String(40))
    workflow_id: Mapped[str] = mapped_column(String(255))
    #: The ledger credit that paid this top-up into the wallet (set once, never with a refund).
    credit_transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    #: When a refund was claimed; from then on the top-up can never be credited.
    refund_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    #: 0-100 from the risk scorer.
    risk_score: Mapped[int | None] = mapped_column(Integer)
    risk_decision: Mapped[str | None] = mapped_column(String(16))  # approve | review | reject
    risk_reasons: Mapped[list[Any] | None] = mapped_column(Json)
    #: What the decision was made on: ``{"features": {...}, "explanations": [...], "model_version"}``
    #: (walletflow/risk/features.py), for the review queue and for training on real outcomes.
    risk_features: Mapped[dict[str, Any] | None] = mapped_column(Json)
    #: Stripe's fingerprint of the card that paid (same card number, same fingerprint), recorded
    #: when the payment is scored; tells when one card pays for several customers.
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: Why the top-up failed or was refunded (machine code), if it did.
    reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("mode IN ('payment_intent', 'checkout')", name="mode_valid"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in TOP_UP_STATUSES) + ")", name="status_valid"
        ),
        CheckConstraint(
            "credit_transaction_id IS NULL OR refund_requested_at IS NULL", name="credit_or_refund"
        ),
        Index("ix_top_ups_status_created", "status", "created_at"),
        Index("ix_top_ups_customer_created", "customer_id", "created_at"),
        Index("ix_top_ups_card_fingerprint", "card_fingerprint"),
    )


class StripeEvent(Base):
    """Every verified Stripe webhook event, stored once by its Stripe id (the inbox)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TopUpRefund(Base):
    """Money given back from a credited top-up: a Stripe refund plus the matching wallet debit.

    Created by ``POST /v1/top-ups/{id}/refund`` (all or part of the top-up). The wallet debit is
    taken first, under the refund's own idempotency key, and only then is Stripe asked to pay
    the money back, so a customer can never keep both the credit and the refund.
    """

    __tablename__ = "top_up_refunds"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    top_up_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("top_ups.id"))
    #: Paid back, in minor units of the top-up's currency.
    amount: Mapped[int] = mapped_column(Money)
    #: Taken from the wallet, in minor units of the top-up's asset (= ``amount`` when they agree).
    wallet_amount: Mapped[int] = mapped_column(Money)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    #: pending (wallet debited, Stripe not yet done) -> succeeded | failed (Stripe refused for
    #: good; the debit was reversed by ``reversal_transaction_id``).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    debit_transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255))
    reversal_transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status_valid"),
        Index("ix_top_up_refunds_top_up_id", "top_up_id"),
    )


class TopUpDispute(Base):
    """A Stripe dispute (chargeback) on a top-up's payment: the wallet is frozen and the
    disputed amount clawed back through the ledger, once per Stripe dispute id."""

    __tablename__ = "top_up_disputes"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's dispute id
    top_up_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("top_ups.id"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    stripe_reason: Mapped[str | None] = mapped_column(String(64))
    clawback_transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    #: Taken back from the wallet (at most ``amount``: never below the wallet's overdraft limit).
    clawed_back: Mapped[int] = mapped_column(Money, default=0)
    #: The part the wallet could not cover: the platform's loss, reported to the operator.
    unrecovered: Mapped[int] = mapped_column(Money, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_top_up_disputes_customer_id", "customer_id"),
    )
