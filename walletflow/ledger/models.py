"""Ledger tables: assets, customers, accounts, transactions, entries, grants and holds.

Amounts are integers in the asset's minor unit (``Money``). Transactions and entries are
append-only; the migration installs triggers that refuse UPDATE and DELETE on them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import BigId, Money, UTCDateTime, utcnow
from walletflow.ledger.ids import time_ordered_id

Json = JSON().with_variant(JSONB(), "postgresql")


class Asset(Base):
    """A unit of value: fiat (``USD``, scale 2) or custom (``CREDITS``)."""

    __tablename__ = "assets"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: Digits after the decimal point: 1 whole unit = 10**scale minor units. Fixed forever.
    scale: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # fiat | custom
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("scale >= 0 AND scale <= 18", name="scale_range"),
        CheckConstraint("kind IN ('fiat', 'custom')", name="kind_valid"),
    )


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: The platform's own id for this customer.
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | frozen
    billing_mode: Mapped[str] = mapped_column(String(16), default="prepaid")  # prepaid | postpaid
    #: What a debit beyond the balance does: ``reject`` or ``overdraft`` (down to the limit).
    insufficient_balance: Mapped[str] = mapped_column(String(16), default="reject")
    #: Overdraft allowed on each of the customer's wallets under the ``overdraft`` policy, minor units.
    overdraft_limit: Mapped[int] = mapped_column(Money, default=0)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('active', 'frozen')", name="status_valid"),
        CheckConstraint("billing_mode IN ('prepaid', 'postpaid')", name="billing_mode_valid"),
        CheckConstraint("insufficient_balance IN ('reject', 'overdraft')", name="insufficient_balance_valid"),
        CheckConstraint("overdraft_limit >= 0", name="overdraft_limit_non_negative"),
    )


class Account(Base):
    """One per (owner, asset): a customer's wallet, or a system account.

    Customer wallets keep ``posted`` and ``held`` in the row, updated in the same transaction as
    the entries. System accounts (revenue, breakage, clearing...) take part in every usage debit,
    so they keep **no** running balance (``tracks_balance`` false): their balance is the sum of
    their entries, and no debit ever locks their row.
    """

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    system_code: Mapped[str | None] = mapped_column(String(32))
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    #: Sum of the account's entries, in minor units.
    posted: Mapped[int] = mapped_column(Money, default=0)
    #: Reserved by pending holds, in minor units.
    held: Mapped[int] = mapped_column(Money, default=0)
    #: How far below zero ``available`` may go, in minor units (0: no overdraft).
    overdraft_limit: Mapped[int] = mapped_column(Money, default=0)
    tracks_balance: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The enabled auto-recharge policy's threshold, minor units (None: no enabled policy). A copy
    #: kept by walletflow.recharge so the threshold trigger's WHEN clause needs no lookup.
    recharge_threshold: Mapped[int | None] = mapped_column(Money)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("customer_id", "asset", name="uq_accounts_customer_asset"),
        UniqueConstraint("system_code", "asset", name="uq_accounts_system_asset"),
        CheckConstraint(
            "(customer_id IS NULL) <> (system_code IS NULL)", name="exactly_one_owner"
        ),
        CheckConstraint("held >= 0", name="held_non_negative"),
        CheckConstraint("overdraft_limit >= 0", name="overdraft_non_negative"),
    )


class LedgerTransaction(Base):
    """A balanced, immutable set of entries. Corrections are new transactions."""

    __tablename__ = "ledger_transactions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_id)
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    #: SHA-256 of the canonical request, to tell a retry from a reused key.
    request_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class LedgerEntry(Base):
    """One signed movement on one account. Never updated or deleted.

    On PostgreSQL the two foreign keys are not enforced row by row (migration 0020, for the
    usage hot path); ``Ledger.audit()`` reports entries that point nowhere."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    asset: Mapped[str] = mapped_column(String(16))
    #: Signed effect on the account, in minor units (credit > 0, debit < 0).
    amount: Mapped[int] = mapped_column(Money)
    #: The credit grant this entry created or drew from, if any.
    grant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # not indexed: no query looks entries up by grant (0020)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CreditGrant(Base):
    """A bucket of a customer account's balance.

    Debits draw from grants in order: priority (lower first), soonest expiry, oldest. Over every
    customer account, the sum of ``remaining`` equals ``max(posted, 0)``.
    """

    __tablename__ = "credit_grants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    source: Mapped[str] = mapped_column(String(16))  # paid | promotional | migrated | bundled
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: Granted amount, in minor units.
    amount: Mapped[int] = mapped_column(Money)
    #: Still spendable from this grant, in minor units.
    remaining: Mapped[int] = mapped_column(Money)
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: scheduled (not yet effective, not yet posted) | active | expired
    status: Mapped[str] = mapped_column(String(16))
    #: The key of the credit that created the grant; scheduled grants are idempotent on it too.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_range"),
        CheckConstraint("source IN ('paid', 'promotional', 'migrated', 'bundled')", name="source_valid"),
        Index("ix_credit_grants_spendable", "account_id", "priority", "expires_at", "created_at"),
        Index("ix_credit_grants_status_expires", "status", "expires_at"),
    )


class Hold(Base):
    """An authorization: reserves ``amount`` of a wallet until captured, voided or expired."""

    __tablename__ = "holds"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    #: Reserved amount, in minor units.
    amount: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))  # pending | captured | voided | expired
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: What the capture took, in minor units (the rest was released).
    captured_amount: Mapped[int | None] = mapped_column(Money)
    capture_transaction_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index(
            "ix_holds_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )
