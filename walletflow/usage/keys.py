"""How a usage event's debit is keyed and described in the ledger (shared by both write paths)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from walletflow.usage.schemas import PricedEvent


def event_key(customer_id: uuid.UUID, event_id: str) -> str:
    """The ledger idempotency key of an event's debit: the event id, per customer, forever."""
    return f"event:{customer_id}:{event_id}"


def usage_hash(p: PricedEvent) -> str:
    """The debit's request hash; ``wf_ingest`` computes the same digest in SQL."""
    key = event_key(p.customer_id, p.event.id)
    return hashlib.sha256(f"{key}:{p.asset}:{p.amount}".encode()).hexdigest()


def usage_metadata(p: PricedEvent) -> dict[str, Any]:
    return {"event_id": p.event.id, "event_type": p.event.event_type, "product": p.product_code, "version": p.version}
