"""Webhook records as the webhooks service returns them (never with the secret, except
:class:`EndpointCreated`, which is shown once)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EndpointInfo:
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


@dataclass(frozen=True)
class EndpointCreated:
    """An endpoint and its secret: the one moment the secret is handed out."""

    endpoint: EndpointInfo
    secret: str


@dataclass(frozen=True)
class AttemptInfo:
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: dt.datetime


@dataclass(frozen=True)
class DeliveryInfo:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    workflow_started_at: dt.datetime | None
    finished_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    attempts: list[AttemptInfo] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return delivery_workflow_id(self.id)


@dataclass(frozen=True)
class DeliveryJob:
    """Everything one delivery attempt needs, loaded inside the activity (secret included)."""

    delivery_id: uuid.UUID
    status: str
    endpoint_enabled: bool
    url: str
    secret: str
    event_id: uuid.UUID
    event_type: str
    body: bytes

    def __repr__(self) -> str:  # never print the secret by accident
        return f"DeliveryJob(delivery_id={self.delivery_id}, event_type={self.event_type!r}, url={self.url!r})"


@dataclass(frozen=True)
class UnstartedDelivery:
    id: uuid.UUID
    customer_id: uuid.UUID | None


def delivery_workflow_id(delivery_id: uuid.UUID | str) -> str:
    """The Temporal workflow id of a delivery: the business id, unique and findable."""
    return f"webhook-delivery-{delivery_id}"


def event_payload(event_id: uuid.UUID, event_type: str, created_at: dt.datetime,
                  customer_id: uuid.UUID | None, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON object POSTed to endpoints: ``{id, type, created_at, customer_id, data}``."""
    return {
        "id": str(event_id),
        "type": event_type,
        "created_at": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "customer_id": str(customer_id) if customer_id is not None else None,
        "data": data,
    }
