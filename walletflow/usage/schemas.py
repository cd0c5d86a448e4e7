"""Usage event input and per-event results (public contract: shared/API.md)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from walletflow.ledger.schemas import MAX_AMOUNT

MAX_BATCH = 1000
EventStatus = Literal["debited", "duplicate", "insufficient_funds", "unmatched", "rejected"]


class CostIn(BaseModel):
    """What a vendor charged for the work behind the event, in minor units of ``asset``."""

    model_config = ConfigDict(extra="forbid")

    vendor: str = Field(min_length=1, max_length=100)
    asset: str = Field(min_length=1, max_length=16)
    amount: int = Field(ge=0, le=MAX_AMOUNT, strict=True)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255, description="Client-chosen id: the idempotency key, forever.")
    customer_id: uuid.UUID | None = None
    external_customer_id: str | None = Field(default=None, min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)
    costs: list[CostIn] | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _one_customer_reference(self) -> EventIn:
        if (self.customer_id is None) == (self.external_customer_id is None):
            raise ValueError("give exactly one of customer_id and external_customer_id")
        return self


class CaptureEventIn(BaseModel):
    """The usage an authorization paid for, recorded with its capture (for history and margins)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    costs: list[CostIn] | None = Field(default=None, max_length=20)


class EventResult(BaseModel):
    id: str
    status: EventStatus
    asset: str | None = None
    amount: int = 0
    transaction_id: uuid.UUID | None = None
    error: str | None = None


class EventOutcome(NamedTuple):
    """An ``EventResult`` as a plain tuple: the hot path makes a thousand per batch, and a
    pydantic model costs about 6 µs each to build (``Usage.ingest`` still returns models)."""

    id: str
    status: EventStatus
    asset: str | None = None
    amount: int = 0
    transaction_id: uuid.UUID | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``EventResult`` serialises to, field for field."""
        tx = self.transaction_id
        return {"id": self.id, "status": self.status, "asset": self.asset, "amount": self.amount,
                "transaction_id": None if tx is None else str(tx), "error": self.error}


@dataclass(frozen=True, slots=True)
class PricedEvent:
    """An event ready to be written: customer resolved, fee computed (a dataclass: the hot path
    builds a thousand of these per batch)."""

    index: int
    customer_id: uuid.UUID
    event: EventIn
    asset: str
    amount: int
    product_code: str
    version: int
    occurred_at: dt.datetime
