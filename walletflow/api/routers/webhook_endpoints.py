"""The platform's webhook endpoints and their delivery log.

``POST /v1/webhook-endpoints`` answers with the endpoint's signing secret, the only time it is
shown (``POST .../rotate-secret`` makes a new one and shows that once). Reads never include it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from walletflow.api.deps import ServicesDep, require
from walletflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from walletflow.errors import ValidationError
from walletflow.webhooks.outbox import EVENT_TYPES
from walletflow.webhooks.schemas import DeliveryInfo, EndpointInfo
from walletflow.webhooks.service import MAX_URL_LENGTH, Webhooks

router = APIRouter(tags=["webhooks"])


class EndpointIn(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, examples=["https://example.com/walletflow/webhooks"])
    events: list[str] = Field(
        min_length=1, max_length=len(EVENT_TYPES) + 1,
        description="Event types to receive (" + ", ".join(sorted(EVENT_TYPES)) + "), or [\"*\"] for all.",
    )
    description: str | None = Field(default=None, max_length=500)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, e: EndpointInfo) -> EndpointOut:
        return cls(id=e.id, url=e.url, events=e.events, description=e.description, enabled=e.enabled,
                   created_at=e.created_at, updated_at=e.updated_at)


class EndpointCreatedOut(EndpointOut):
    secret: str = Field(description="`whsec_...`: verifies `Walletflow-Signature`. Shown only in this answer.")


class EndpointPage(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    attempted_at: dt.datetime


class DeliveryOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str = Field(description="pending, delivered, failed or canceled")
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    workflow_id: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, d: DeliveryInfo) -> DeliveryOut:
        return cls(
            id=d.id, endpoint_id=d.endpoint_id, event_id=d.event_id, event_type=d.event_type, status=d.status,
            attempt_count=d.attempt_count, last_status_code=d.last_status_code, last_error=d.last_error,
            workflow_id=d.workflow_id, created_at=d.created_at, finished_at=d.finished_at,
            attempts=[AttemptOut(**vars(a)) for a in d.attempts],
        )


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


def webhooks(services: ServicesDep) -> Webhooks:
    return Webhooks(services.engine)


def _cursor_key(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        return dt.datetime.fromisoformat(key[0]), uuid.UUID(key[1])
    except ValueError as exc:
        raise ValidationError("cursor is not one this API returned", field="cursor") from exc


@router.post("/webhook-endpoints", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_endpoint(body: EndpointIn, services: ServicesDep) -> EndpointCreatedOut:
    """Register a receiver for the listed events; the answer holds its secret (shown once)."""
    created = await webhooks(services).create_endpoint(body.url, body.events, body.description)
    return EndpointCreatedOut(**EndpointOut.of(created.endpoint).model_dump(), secret=created.secret)


@router.get("/webhook-endpoints", dependencies=[require("read")])
async def list_endpoints(
    services: ServicesDep, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None
) -> EndpointPage:
    """Every endpoint, oldest first (disabled ones included)."""
    rows = await webhooks(services).list_endpoints(limit + 1, _cursor_key(cursor))
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].id) if more else None
    return EndpointPage(data=[EndpointOut.of(e) for e in page], next_cursor=next_cursor)


@router.get("/webhook-endpoints/{endpoint_id}", dependencies=[require("read")])
async def get_endpoint(endpoint_id: uuid.UUID, services: ServicesDep) -> EndpointOut:
    return EndpointOut.of(await webhooks(services).get_endpoint(endpoint_id))


@router.delete("/webhook-endpoints/{endpoint_id}", dependencies=[require("admin")])
async def disable_endpoint(endpoint_id: uuid.UUID, services: ServicesDep) -> EndpointOut:
    """Disable the endpoint: no new deliveries; pending ones are canceled at their next attempt.
    Its delivery log stays readable."""
    return EndpointOut.of(await webhooks(services).set_enabled(endpoint_id, False))


@router.post("/webhook-endpoints/{endpoint_id}/enable", dependencies=[require("admin")])
async def enable_endpoint(endpoint_id: uuid.UUID, services: ServicesDep) -> EndpointOut:
    """Enable a disabled endpoint again: it receives events created from now on."""
    return EndpointOut.of(await webhooks(services).set_enabled(endpoint_id, True))


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", dependencies=[require("admin")])
async def rotate_secret(endpoint_id: uuid.UUID, services: ServicesDep) -> EndpointCreatedOut:
    """Replace the signing secret (shown once, here); attempts from now on use the new one."""
    created = await webhooks(services).rotate_secret(endpoint_id)
    return EndpointCreatedOut(**EndpointOut.of(created.endpoint).model_dump(), secret=created.secret)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", dependencies=[require("read")])
async def list_deliveries(
    endpoint_id: uuid.UUID, services: ServicesDep,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None,
    status: str | None = Query(None, description="pending, delivered, failed or canceled"),
) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with its attempts (HTTP status or error,
    duration, time)."""
    rows = await webhooks(services).list_deliveries(endpoint_id, limit + 1, _cursor_key(cursor), status)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].id) if more else None
    return DeliveryPage(data=[DeliveryOut.of(d) for d in page], next_cursor=next_cursor)


@router.post("/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
             status_code=status.HTTP_202_ACCEPTED, dependencies=[require("admin")])
async def retry_delivery(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, services: ServicesDep) -> DeliveryOut:
    """Send a ``failed`` or ``canceled`` delivery again (409 otherwise): it is ``pending`` now and
    the next dispatch run starts its workflow, with a fresh set of attempts; the attempt log
    continues its numbering."""
    return DeliveryOut.of(await webhooks(services).reopen(endpoint_id, delivery_id))
