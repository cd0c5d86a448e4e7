"""Authorizations (holds): reserve before the expensive call, capture the actual amount after."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from walletflow.api.deps import IdempotencyHeader, ServicesDep, idempotency_key, require
from walletflow.db.types import utcnow
from walletflow.ledger.schemas import MAX_AMOUNT, HoldInfo
from walletflow.ledger.service import MAX_HOLD_TTL_S
from walletflow.usage.schemas import CaptureEventIn
from walletflow.usage.service import capture_recorder

router = APIRouter(tags=["authorizations"])


class AuthorizationIn(BaseModel):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    customer_id: uuid.UUID
    asset: str = Field(min_length=2, max_length=16)
    amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True)
    expires_in_s: int | None = Field(default=None, ge=1, le=MAX_HOLD_TTL_S, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict)


class CaptureIn(BaseModel):
    amount: int = Field(ge=0, le=MAX_AMOUNT, strict=True, description="Final amount; the rest is released.")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)
    event: CaptureEventIn | None = Field(
        default=None, description="The usage this authorization paid for, recorded with the capture."
    )


class AuthorizationOut(BaseModel):
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

    @classmethod
    def of(cls, h: HoldInfo) -> AuthorizationOut:
        return cls(
            id=h.id, status=h.status, customer_id=h.customer_id, asset=h.asset, amount=h.amount,
            captured_amount=h.captured_amount, transaction_id=h.capture_transaction_id, expires_at=h.expires_at,
            created_at=h.created_at, idempotency_key=h.idempotency_key,
        )


# Well-formed requests to this route are answered by walletflow.api.fast_paths (same models,
# key check, ledger call and errors, without FastAPI's routing); the rest reach it here.
@router.post("/authorizations", status_code=status.HTTP_201_CREATED, dependencies=[require("ingest")])
async def authorize(body: AuthorizationIn, services: ServicesDep, header_key: IdempotencyHeader = None) -> AuthorizationOut:
    key = idempotency_key(body.idempotency_key, header_key)
    hold = await services.ledger.authorize(
        body.customer_id, body.asset, body.amount, key, expires_in_s=body.expires_in_s, metadata=body.metadata
    )
    return AuthorizationOut.of(hold)


@router.get("/authorizations/{hold_id}", dependencies=[require("ingest")])
async def get_authorization(hold_id: uuid.UUID, services: ServicesDep) -> AuthorizationOut:
    return AuthorizationOut.of(await services.ledger.get_hold(hold_id))


@router.post("/authorizations/{hold_id}/capture", dependencies=[require("ingest")])
async def capture(hold_id: uuid.UUID, body: CaptureIn, services: ServicesDep, header_key: IdempotencyHeader = None) -> AuthorizationOut:
    key = body.idempotency_key or header_key
    metadata = body.metadata
    also = None
    if body.event is not None:
        # The event id is part of the request: a retry with another event is a different request.
        metadata = {**metadata, "event_id": body.event.id}
        also = capture_recorder(body.event, utcnow())
    hold = await services.ledger.capture(hold_id, body.amount, idempotency_key=key, metadata=metadata, also=also)
    return AuthorizationOut.of(hold)


@router.post("/authorizations/{hold_id}/void", dependencies=[require("ingest")])
async def void(hold_id: uuid.UUID, services: ServicesDep) -> AuthorizationOut:
    return AuthorizationOut.of(await services.ledger.void(hold_id))
