"""How a usage event's debit is keyed and described in the ledger (shared by both write paths)."""

from __future__ import annotations

import uuid
from typing import Any

from walletflow.ledger.rules import request_hash
from walletflow.usage.schemas import PricedEvent


def event_key(customer_id: uuid.UUID, event_id: str) -> str:
    """The ledger idempotency key of an event's debit: the event id, per customer, forever."""
    return f"event:{customer_id}:{event_id}"


def usage_hash(p: PricedEvent) -> str:
    return request_hash("usage_event", customer_id=p.customer_id, event_id=p.event.id, asset=p.asset, amount=p.amount)


def usage_metadata(p: PricedEvent) -> dict[str, Any]:
    return {"event_id": p.event.id, "event_type": p.event.event_type, "product": p.product_code, "version": p.version}
