"""Results returned by the ledger. Plain frozen dataclasses: cheap, typed, easy to serialise."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Literal

AssetKind = Literal["fiat", "custom"]
GrantSource = Literal["paid", "promotional", "migrated", "bundled"]
HoldStatus = Literal["pending", "captured", "voided", "expired"]

#: Largest amount one operation may move: 10**15 minor units (10 trillion USD). Keeps every sum
#: of a few thousand amounts far inside a signed 64-bit integer.
MAX_AMOUNT = 10**15


@dataclass(frozen=True)
class AssetInfo:
    code: str
    name: str
    scale: int
    kind: str


@dataclass(frozen=True)
class CustomerInfo:
    id: uuid.UUID
    external_id: str
    name: str | None
    email: str | None
    status: str
    metadata: dict[str, object]
    created_at: dt.datetime
    billing_mode: str = "prepaid"
    insufficient_balance: str = "reject"
    overdraft_limit: int = 0
    stripe_customer_id: str | None = None


@dataclass(frozen=True)
class Balance:
    """A customer account's balances, all in minor units of ``asset``."""

    account_id: uuid.UUID | None  # None: the wallet has never been used in this asset
    asset: str
    posted: int
    held: int
    overdraft_limit: int

    @property
    def available(self) -> int:
        return self.posted - self.held


@dataclass(frozen=True)
class Draw:
    """How much a debit took from one grant (``grant_id`` None: from the overdraft)."""

    grant_id: uuid.UUID | None
    amount: int


@dataclass(frozen=True)
class Posting:
    """The outcome of a money-moving call. ``replayed``: this key was already done; nothing changed."""

    transaction_id: uuid.UUID | None
    idempotency_key: str
    amount: int
    replayed: bool
    grant_id: uuid.UUID | None = None
    draws: tuple[Draw, ...] = field(default=())


@dataclass(frozen=True)
class HoldInfo:
    id: uuid.UUID
    account_id: uuid.UUID
    amount: int
    status: str
    expires_at: dt.datetime
    captured_amount: int | None
    capture_transaction_id: uuid.UUID | None
    idempotency_key: str
    replayed: bool = False
    customer_id: uuid.UUID | None = None
    asset: str | None = None
    created_at: dt.datetime | None = None


@dataclass(frozen=True)
class GrantInfo:
    id: uuid.UUID
    account_id: uuid.UUID
    source: str
    priority: int
    amount: int
    remaining: int
    effective_at: dt.datetime
    expires_at: dt.datetime | None
    status: str
    created_at: dt.datetime


@dataclass
class AuditReport:
    """Every invariant of the ledger, checked against the stored entries. Empty lists: all good."""

    unbalanced_transactions: list[tuple[uuid.UUID, str, int]] = field(default_factory=list)
    posted_mismatches: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    held_mismatches: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    grant_mismatches: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    overdrawn_accounts: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    #: (entry id, transaction id, account id, asset, amount) of entries pointing at a missing row
    orphan_entries: list[tuple[int, uuid.UUID, uuid.UUID, str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_transactions
            or self.posted_mismatches
            or self.held_mismatches
            or self.grant_mismatches
            or self.overdrawn_accounts
            or self.orphan_entries
        )
