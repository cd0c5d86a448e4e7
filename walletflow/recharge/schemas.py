"""Auto-recharge records as the service returns them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Consent:
    at: dt.datetime
    #: How the customer agreed (``checkbox``, ``signed_terms``, ``api``...).
    method: str
    #: The words the customer agreed to, if the platform keeps them.
    text: str | None = None


@dataclass(frozen=True)
class PolicyInfo:
    customer_id: uuid.UUID
    asset: str
    threshold: int
    target: int
    payment_method_id: str
    daily_cap: int
    monthly_cap: int
    enabled: bool
    disabled_reason: str | None
    consent: Consent
    consecutive_failures: int
    last_failure_at: dt.datetime | None
    last_failure_reason: str | None
    last_charge_at: dt.datetime | None
    charge_seq: int
    workflow_id: str
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class PendingTrigger:
    id: int
    customer_id: uuid.UUID
    asset: str
    available: int
    source: str
