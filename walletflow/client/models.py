"""Typed answers of the walletflow API (``/work/shared/API.md``; the routers in
``walletflow/api/routers/`` are the source of truth for every field).

Amounts are integers in the asset's minor unit (2000 = 20.00 USD); rates and unit prices are
decimal strings. Models accept fields they do not know yet (``extra="allow"``) so an older
client keeps working against a newer server.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Page(Model, Generic[T]):
    """One page of a cursor-paginated list; pass ``next_cursor`` back as ``cursor`` for the next."""

    data: list[T]
    next_cursor: str | None = None


class Asset(Model):
    code: str
    name: str
    scale: int
    kind: str


class Rate(Model):
    asset: str
    currency: str
    rate: str
    valid_from: dt.datetime


class Customer(Model):
    id: uuid.UUID
    external_id: str
    name: str | None
    email: str | None
    metadata: dict[str, Any]
    status: str
    billing_mode: str
    insufficient_balance: str
    overdraft_limit: int
    created_at: dt.datetime


class Account(Model):
    asset: str
    posted: int
    held: int
    available: int
    overdraft_limit: int


class Wallet(Model):
    customer_id: uuid.UUID
    accounts: list[Account]

    def account(self, asset: str) -> Account:
        """The wallet's account in ``asset`` (all zero if the customer never held any)."""
        for account in self.accounts:
            if account.asset == asset:
                return account
        return Account(asset=asset, posted=0, held=0, available=0, overdraft_limit=0)


class Transaction(Model):
    id: uuid.UUID
    kind: str
    asset: str
    amount: int
    created_at: dt.datetime
    idempotency_key: str
    metadata: dict[str, Any]


class Grant(Model):
    id: uuid.UUID
    asset: str
    source: str
    priority: int
    amount: int
    remaining: int
    effective_at: dt.datetime
    expires_at: dt.datetime | None
    status: str


class Adjustment(Model):
    transaction_id: uuid.UUID | None
    customer_id: uuid.UUID
    asset: str
    amount: int
    reason: str
    grant_id: uuid.UUID | None
    idempotency_key: str
    replayed: bool


class Subscription(Model):
    customer_id: uuid.UUID
    product_code: str
    version: int | None


class Product(Model):
    code: str
    name: str
    created_at: dt.datetime


class PriceVersion(Model):
    product_code: str
    version: int
    status: str
    prices: list[dict[str, Any]]
    created_at: dt.datetime
    published_at: dt.datetime | None


class FeeComponent(Model):
    price_index: int
    quantity: str
    exact_amount: str
    charged_amount: str


class Fee(Model):
    """The price of one simulated event: ``amount`` in minor units of ``asset``."""

    status: str
    asset: str | None
    amount: int
    components: list[FeeComponent]
    error: str | None


class EventResult(Model):
    id: str
    status: str
    asset: str | None = None
    amount: int = 0
    transaction_id: uuid.UUID | None = None
    error: str | None = None


class Authorization(Model):
    id: uuid.UUID
    status: str
    customer_id: uuid.UUID | None
    asset: str | None
    amount: int
    captured_amount: int | None
    transaction_id: uuid.UUID | None
    expires_at: dt.datetime
    created_at: dt.datetime | None
    idempotency_key: str


class Risk(Model):
    score: int
    decision: str
    reasons: list[Any]


class TopUp(Model):
    id: uuid.UUID
    status: str
    customer_id: uuid.UUID
    amount: int
    currency: str
    asset: str
    credit_amount: int
    credit_rate: str | None = None
    mode: str
    workflow_id: str
    idempotency_key: str
    client_secret: str | None = None
    checkout_url: str | None = None
    checkout_session_id: str | None = None
    payment_intent_id: str | None = None
    credit_transaction_id: uuid.UUID | None = None
    refund_id: str | None = None
    risk: Risk | None = None
    reason: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class Refund(Model):
    id: uuid.UUID
    top_up_id: uuid.UUID
    customer_id: uuid.UUID
    asset: str
    amount: int
    wallet_amount: int
    status: str
    reason: str | None
    idempotency_key: str
    workflow_id: str
    debit_transaction_id: uuid.UUID | None
    stripe_refund_id: str | None
    reversal_transaction_id: uuid.UUID | None
    failure_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookEndpoint(Model):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    secret: str | None = Field(default=None, description="Only in the answer to create and rotate-secret.")


class DeliveryAttempt(Model):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: dt.datetime


class WebhookDelivery(Model):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    workflow_id: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    attempts: list[DeliveryAttempt]


class MarginRow(Model):
    key: str
    revenue: int
    cost: int
    margin: int
    margin_pct: str | None


class MarginReport(Model):
    currency: str
    group_by: str
    from_: dt.datetime = Field(alias="from")
    to: dt.datetime
    data: list[MarginRow]
    unconverted: dict[str, int]
