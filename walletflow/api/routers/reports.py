"""Reports."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from walletflow.api.deps import ServicesDep, require
from walletflow.reports.margins import GroupBy, margins

router = APIRouter(tags=["reports"])


class MarginRowOut(BaseModel):
    key: str
    revenue: int
    cost: int
    margin: int
    margin_pct: str | None


class MarginsOut(BaseModel):
    currency: str
    group_by: str
    from_: dt.datetime = Field(serialization_alias="from")
    to: dt.datetime
    data: list[MarginRowOut]
    unconverted: dict[str, int]


@router.get("/reports/margins", dependencies=[require("read")])
async def margin_report(
    services: ServicesDep,
    group_by: GroupBy = "customer",
    from_: AwareDatetime = Query(alias="from"),
    to: AwareDatetime = Query(),
    currency: str = Query("USD", min_length=2, max_length=16),
) -> MarginsOut:
    """Revenue, vendor cost and margin in ``currency`` minor units, per group, for [from, to)."""
    report = await margins(services.engine, group_by, from_, to, currency)
    return MarginsOut(
        currency=report.currency, group_by=report.group_by, from_=report.start, to=report.end,
        unconverted=report.unconverted,
        data=[MarginRowOut(key=r.key, revenue=r.revenue, cost=r.cost, margin=r.margin, margin_pct=r.margin_pct)
              for r in report.rows],
    )
