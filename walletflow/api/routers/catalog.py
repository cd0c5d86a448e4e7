"""Products, price versions (draft, published, archived) and simulation."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from walletflow.api.deps import ServicesDep, require
from walletflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from walletflow.catalog.service import VersionInfo
from walletflow.pricing.engine import PricedEventInput, VendorCost
from walletflow.pricing.schemas import Price
from walletflow.usage.schemas import CostIn

router = APIRouter(tags=["catalog"])
#: Versions are 32-bit integers in the database.
MAX_VERSION = 2**31 - 1
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]


class ProductIn(BaseModel):
    code: str = Field(min_length=1, max_length=64, examples=["chat"])
    name: str = Field(min_length=1, max_length=200)


class ProductOut(BaseModel):
    code: str
    name: str
    created_at: dt.datetime


class VersionIn(BaseModel):
    prices: list[Price] = Field(min_length=1, max_length=500)


class VersionOut(BaseModel):
    product_code: str
    version: int
    status: str
    prices: list[dict[str, Any]]
    created_at: dt.datetime
    published_at: dt.datetime | None

    @classmethod
    def of(cls, v: VersionInfo) -> VersionOut:
        return cls(**vars(v))


class SimulatedEvent(BaseModel):
    event_type: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)
    costs: list[CostIn] | None = Field(default=None, max_length=20)


class SimulateIn(BaseModel):
    events: list[SimulatedEvent] = Field(min_length=1, max_length=1000)


class FeeComponentOut(BaseModel):
    price_index: int
    quantity: str
    exact_amount: str
    charged_amount: str = Field(description="After the price's min/max, exact; the fee rounds their sum once.")


class FeeOut(BaseModel):
    status: str
    asset: str | None
    amount: int
    components: list[FeeComponentOut]
    error: str | None


@router.post("/products", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_product(body: ProductIn, services: ServicesDep) -> ProductOut:
    return ProductOut(**vars(await services.catalog.create_product(body.code, body.name)))


class ProductPage(BaseModel):
    data: list[ProductOut]
    next_cursor: str | None


@router.get("/products", dependencies=[require("read")])
async def list_products(
    services: ServicesDep, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None
) -> ProductPage:
    """Every product, by code."""
    key = decode_cursor(cursor, 1)
    rows = await services.catalog.list_products(limit + 1, key[0] if key else None)
    page, more = rows[:limit], len(rows) > limit
    return ProductPage(data=[ProductOut(**vars(p)) for p in page],
                       next_cursor=encode_cursor(page[-1].code) if more else None)


@router.get("/products/{code}", dependencies=[require("read")])
async def get_product(code: str, services: ServicesDep) -> ProductOut:
    return ProductOut(**vars(await services.catalog.get_product(code)))


@router.post("/products/{code}/versions", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_version(code: str, body: VersionIn, services: ServicesDep) -> VersionOut:
    raw = [p.model_dump(mode="json", exclude_none=True) for p in body.prices]
    return VersionOut.of(await services.catalog.create_version(code, raw))


@router.get("/products/{code}/versions", dependencies=[require("read")])
async def list_versions(code: str, services: ServicesDep) -> dict[str, list[VersionOut] | None]:
    """All of the product's versions in one page (``next_cursor`` is always null)."""
    return {"data": [VersionOut.of(v) for v in await services.catalog.list_versions(code)], "next_cursor": None}


@router.get("/products/{code}/versions/{version}", dependencies=[require("read")])
async def get_version(code: str, version: Version, services: ServicesDep) -> VersionOut:
    return VersionOut.of(await services.catalog.get_version(code, version))


@router.post("/products/{code}/versions/{version}/publish", dependencies=[require("admin")])
async def publish(code: str, version: Version, services: ServicesDep) -> VersionOut:
    return VersionOut.of(await services.catalog.publish(code, version))


@router.post("/products/{code}/versions/{version}/archive", dependencies=[require("admin")])
async def archive(code: str, version: Version, services: ServicesDep) -> VersionOut:
    return VersionOut.of(await services.catalog.archive(code, version))


@router.post("/products/{code}/versions/{version}/simulate", dependencies=[require("read")])
async def simulate(code: str, version: Version, body: SimulateIn, services: ServicesDep) -> dict[str, list[FeeOut]]:
    """Price sample events against any version, drafts included. Touches no wallet."""
    events = [
        PricedEventInput(e.event_type, e.data, [VendorCost(c.vendor, c.asset, c.amount) for c in e.costs or []] or None)
        for e in body.events
    ]
    fees = await services.catalog.simulate(code, version, events)
    return {
        "data": [
            FeeOut(status=f.status, asset=f.asset, amount=f.amount, error=f.error,
                   components=[FeeComponentOut.model_validate(c, from_attributes=True) for c in f.components])
            for f in fees
        ]
    }
