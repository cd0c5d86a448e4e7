"""Assets and their exchange rates."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from walletflow.api.deps import ServicesDep, require
from walletflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from walletflow.ledger import reads

router = APIRouter(tags=["assets"])


class AssetIn(BaseModel):
    code: str = Field(min_length=2, max_length=16, examples=["USD"])
    name: str = Field(min_length=1, max_length=100)
    scale: int = Field(ge=0, le=18, strict=True, description="Digits after the point: USD 2, CREDITS 0.")
    kind: Literal["fiat", "custom"]


class AssetOut(BaseModel):
    code: str
    name: str
    scale: int
    kind: str


class RateIn(BaseModel):
    currency: str = Field(min_length=2, max_length=16)
    rate: str = Field(max_length=40, description="Fiat price of one whole unit, as a decimal string.")
    valid_from: AwareDatetime | None = None


class RateOut(BaseModel):
    asset: str
    currency: str
    rate: str
    valid_from: dt.datetime


@router.post("/assets", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_asset(body: AssetIn, services: ServicesDep) -> AssetOut:
    asset = await services.ledger.create_asset(body.code, body.name, body.scale, body.kind)
    return AssetOut(**vars(asset))


class AssetPage(BaseModel):
    data: list[AssetOut]
    next_cursor: str | None


@router.get("/assets", dependencies=[require("read")])
async def list_assets(
    services: ServicesDep, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None
) -> AssetPage:
    """Every asset, by code."""
    key = decode_cursor(cursor, 1)
    rows = await reads.list_assets(services.engine, limit + 1, key[0] if key else None)
    page, more = rows[:limit], len(rows) > limit
    return AssetPage(data=[AssetOut(code=r.code, name=r.name, scale=r.scale, kind=r.kind) for r in page],
                     next_cursor=encode_cursor(page[-1].code) if more else None)


@router.get("/assets/{code}", dependencies=[require("read")])
async def get_asset(code: str, services: ServicesDep) -> AssetOut:
    return AssetOut(**vars(await services.ledger.get_asset(code)))


@router.post("/assets/{code}/rates", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def add_rate(code: str, body: RateIn, services: ServicesDep) -> RateOut:
    rate = await services.catalog.add_rate(code, body.currency, body.rate, body.valid_from)
    return RateOut(**vars(rate))


@router.get("/assets/{code}/rates", dependencies=[require("read")])
async def list_rates(code: str, services: ServicesDep) -> dict[str, list[RateOut] | None]:
    """All of the asset's rates, oldest first, in one page (``next_cursor`` is always null)."""
    await services.ledger.get_asset(code)
    return {"data": [RateOut(**vars(r)) for r in await services.catalog.list_rates(code)], "next_cursor": None}
