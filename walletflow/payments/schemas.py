"""Top-up records as returned by the payments service."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

TopUpStatus = Literal[
    "initiated", "awaiting_payment", "scoring", "in_review", "succeeded", "failed", "rejected", "refunded"
]
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "refunded"})


@dataclass(frozen=True)
class TopUpInfo:
    id: uuid.UUID
    customer_id: uuid.UUID
    amount: int
    currency: str
    asset: str
    mode: str
    status: str
    idempotency_key: str
    workflow_id: str
    stripe_payment_intent_id: str | None
    credit_transaction_id: uuid.UUID | None
    stripe_refund_id: str | None
    risk_score: int | None
    risk_decision: str | None
    risk_reasons: list[Any] | None
    reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    stripe_checkout_session_id: str | None = None
    return_url: str | None = None
    credit_amount: int | None = None
    credit_rate: str | None = None

    @property
    def credited_units(self) -> int:
        """What the wallet receives, in minor units of ``asset``."""
        return self.amount if self.credit_amount is None else self.credit_amount


def workflow_id_for(top_up_id: uuid.UUID) -> str:
    """The Temporal workflow id of a top-up: the business id, so it is findable and unique."""
    return f"topup-{top_up_id}"
