"""Customers, their wallets, history, grants, adjustments and subscriptions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, EmailStr, Field

from walletflow.api.deps import IdempotencyHeader, ServicesDep, idempotency_key, require
from walletflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from walletflow.errors import ValidationError
from walletflow.ledger import reads
from walletflow.ledger.postings import ADJUSTMENTS, CLEARING, PROMOTIONS
from walletflow.ledger.schemas import MAX_AMOUNT, CustomerInfo
from walletflow.ledger.service import customer_info

router = APIRouter(tags=["customers"])
Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class CustomerIn(BaseModel):
    external_id: str = Field(min_length=1, max_length=255, description="Your own id for the customer.")
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CustomerPatch(BaseModel):
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    metadata: dict[str, Any] | None = None
    billing_mode: Literal["prepaid", "postpaid"] | None = None
    insufficient_balance: Literal["reject", "overdraft"] | None = None
    overdraft_limit: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True)


class CustomerOut(BaseModel):
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

    @classmethod
    def of(cls, c: CustomerInfo) -> CustomerOut:
        return cls(
            id=c.id, external_id=c.external_id, name=c.name, email=c.email, metadata=c.metadata,  # type: ignore[arg-type]
            status=c.status, billing_mode=c.billing_mode, insufficient_balance=c.insufficient_balance,
            overdraft_limit=c.overdraft_limit, created_at=c.created_at,
        )


class AccountOut(BaseModel):
    asset: str
    posted: int
    held: int
    available: int
    overdraft_limit: int


class WalletOut(BaseModel):
    customer_id: uuid.UUID
    accounts: list[AccountOut]


class TransactionOut(BaseModel):
    id: uuid.UUID
    kind: str
    asset: str
    amount: int = Field(description="Signed effect on this customer's account, minor units.")
    created_at: dt.datetime
    idempotency_key: str
    metadata: dict[str, Any]


class GrantOut(BaseModel):
    id: uuid.UUID
    asset: str
    source: str
    priority: int
    amount: int
    remaining: int
    effective_at: dt.datetime
    expires_at: dt.datetime | None
    status: str


class AdjustmentIn(BaseModel):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    asset: str = Field(min_length=2, max_length=16)
    amount: int = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, strict=True, description="Signed, minor units; not 0.")
    reason: Literal["external_topup", "external_refund", "gift", "other"]
    expires_at: AwareDatetime | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict)


class AdjustmentOut(BaseModel):
    transaction_id: uuid.UUID | None
    customer_id: uuid.UUID
    asset: str
    amount: int
    reason: str
    grant_id: uuid.UUID | None
    idempotency_key: str
    replayed: bool


class SubscriptionIn(BaseModel):
    product_code: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, strict=True, description="Pin a version; omit to follow the default.")


class SubscriptionOut(BaseModel):
    customer_id: uuid.UUID
    product_code: str
    version: int | None


class Page(BaseModel):
    next_cursor: str | None


class CustomerPage(Page):
    data: list[CustomerOut]


class TransactionPage(Page):
    data: list[TransactionOut]


@router.post("/customers", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_customer(body: CustomerIn, services: ServicesDep) -> CustomerOut:
    customer = await services.ledger.create_customer(
        body.external_id, name=body.name, email=body.email, metadata=body.metadata
    )
    return CustomerOut.of(customer)


@router.get("/customers", dependencies=[require("read")])
async def list_customers(
    services: ServicesDep, external_id: str | None = Query(None, max_length=255), limit: int = Limit,
    cursor: str | None = None,
) -> CustomerPage:
    after = _time_id_cursor(cursor)
    rows = await reads.list_customers(services.engine, limit, after, external_id)
    data = [CustomerOut.of(customer_info(r)) for r in rows]
    next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if len(rows) == limit else None
    return CustomerPage(data=data, next_cursor=next_cursor)


@router.get("/customers/{customer_id}", dependencies=[require("read")])
async def get_customer(customer_id: uuid.UUID, services: ServicesDep) -> CustomerOut:
    return CustomerOut.of(await services.ledger.get_customer(customer_id))


@router.patch("/customers/{customer_id}", dependencies=[require("admin")])
async def update_customer(customer_id: uuid.UUID, body: CustomerPatch, services: ServicesDep) -> CustomerOut:
    changes = body.model_dump(exclude_unset=True)
    if any(changes.get(k, 0) is None for k in ("metadata", "billing_mode", "insufficient_balance", "overdraft_limit")):
        raise ValidationError("metadata, billing_mode, insufficient_balance and overdraft_limit cannot be null")
    return CustomerOut.of(await services.ledger.update_customer(customer_id, **changes))


@router.post("/customers/{customer_id}/freeze", dependencies=[require("admin")])
async def freeze(customer_id: uuid.UUID, services: ServicesDep) -> CustomerOut:
    return CustomerOut.of(await services.ledger.freeze(customer_id))


@router.post("/customers/{customer_id}/unfreeze", dependencies=[require("admin")])
async def unfreeze(customer_id: uuid.UUID, services: ServicesDep) -> CustomerOut:
    return CustomerOut.of(await services.ledger.unfreeze(customer_id))


@router.get("/customers/{customer_id}/wallet", dependencies=[require("read")])
async def wallet(customer_id: uuid.UUID, services: ServicesDep) -> WalletOut:
    balances = await services.ledger.wallet(customer_id)
    accounts = [AccountOut(asset=b.asset, posted=b.posted, held=b.held, available=b.available,
                           overdraft_limit=b.overdraft_limit) for b in balances]
    return WalletOut(customer_id=customer_id, accounts=accounts)


@router.get("/customers/{customer_id}/transactions", dependencies=[require("read")])
async def transactions(
    customer_id: uuid.UUID, services: ServicesDep, limit: int = Limit, cursor: str | None = None
) -> TransactionPage:
    await services.ledger.get_customer(customer_id)
    rows = await reads.customer_transactions(services.engine, customer_id, limit, _time_id_cursor(cursor))
    data = [TransactionOut(**vars(r)) for r in rows]
    next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if len(rows) == limit else None
    return TransactionPage(data=data, next_cursor=next_cursor)


@router.get("/customers/{customer_id}/grants", dependencies=[require("read")])
async def grants(customer_id: uuid.UUID, services: ServicesDep) -> dict[str, list[GrantOut] | None]:
    """All of the customer's grants in consumption order, in one page (``next_cursor`` is null)."""
    await services.ledger.get_customer(customer_id)
    assets = {b.account_id: b.asset for b in await services.ledger.wallet(customer_id)}
    return {
        "data": [
            GrantOut(id=g.id, asset=assets[g.account_id], source=g.source, priority=g.priority, amount=g.amount,
                     remaining=g.remaining, effective_at=g.effective_at, expires_at=g.expires_at, status=g.status)
            for g in await services.ledger.grants(customer_id)
        ],
        "next_cursor": None,
    }


#: reason -> (grant source for a credit, system account on the other side)
_ADJUSTMENT_CREDIT = {"external_topup": ("paid", CLEARING), "gift": ("promotional", PROMOTIONS), "other": ("paid", ADJUSTMENTS)}
_ADJUSTMENT_DEBIT = {"external_refund": CLEARING, "other": ADJUSTMENTS}


@router.post("/customers/{customer_id}/adjustments", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def adjust(
    customer_id: uuid.UUID, body: AdjustmentIn, services: ServicesDep, header_key: IdempotencyHeader = None
) -> AdjustmentOut:
    """Push model: credit or debit a wallet for money the platform took or returned itself."""
    key = idempotency_key(body.idempotency_key, header_key)
    metadata = {**body.metadata, "reason": body.reason}
    if body.amount > 0:
        if body.reason not in _ADJUSTMENT_CREDIT:
            raise ValidationError(f"a {body.reason} adjustment must be negative", field="amount")
        source, counter = _ADJUSTMENT_CREDIT[body.reason]
        posting = await services.ledger.credit(
            customer_id, body.asset, body.amount, key, source=source, priority=body.priority or 0,
            expires_at=body.expires_at, kind="adjustment", counter=counter, metadata=metadata,
        )
    elif body.amount < 0:
        if body.reason not in _ADJUSTMENT_DEBIT:
            raise ValidationError(f"a {body.reason} adjustment must be positive", field="amount")
        if body.expires_at is not None or body.priority is not None:
            raise ValidationError("expires_at and priority only apply to positive adjustments")
        posting = await services.ledger.debit(
            customer_id, body.asset, -body.amount, key, kind="adjustment",
            counter=_ADJUSTMENT_DEBIT[body.reason], metadata=metadata,
        )
    else:
        raise ValidationError("amount must not be 0", field="amount")
    return AdjustmentOut(
        transaction_id=posting.transaction_id, customer_id=customer_id, asset=body.asset, amount=body.amount,
        reason=body.reason, grant_id=posting.grant_id, idempotency_key=key, replayed=posting.replayed,
    )


@router.post("/customers/{customer_id}/subscriptions", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def subscribe(customer_id: uuid.UUID, body: SubscriptionIn, services: ServicesDep) -> SubscriptionOut:
    return SubscriptionOut(**await services.catalog.subscribe(customer_id, body.product_code, body.version))


def _time_id_cursor(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        created_at, row_id = dt.datetime.fromisoformat(key[0]), uuid.UUID(key[1])
    except ValueError as exc:
        raise ValidationError("cursor is not one this API returned", field="cursor") from exc
    if created_at.tzinfo is None:
        raise ValidationError("cursor is not one this API returned", field="cursor")
    return created_at, row_id
