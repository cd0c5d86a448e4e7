"""Usage events: priced and debited in real time, one result per event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from walletflow.api.deps import ServicesDep, require
from walletflow.observability import metrics
from walletflow.usage.schemas import MAX_BATCH, EventIn, EventResult

router = APIRouter(tags=["usage"])


class EventBatchIn(BaseModel):
    # An event that fails validation is reported as `rejected` in its own result rather than
    # failing the whole batch, hence the dict fallback.
    events: list[EventIn | dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class EventBatchOut(BaseModel):
    results: list[EventResult]


@router.post("/events", dependencies=[require("ingest")])
async def ingest(body: EventBatchIn, services: ServicesDep) -> EventBatchOut:
    """Record usage. The event `id` is its idempotency key forever: a retried batch debits
    nothing twice and reports the already stored events as `duplicate`."""
    results = await services.usage.ingest(body.events)
    metrics.count_ingested(results)
    return EventBatchOut(results=results)
