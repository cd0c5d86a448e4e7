"""Revenue, vendor cost and margin per customer, product or vendor over a period.

Everything is converted to one fiat ``currency`` with the asset rate valid when each event
occurred (a custom asset such as CREDITS needs a rate; amounts without one are listed under
``unconverted`` instead of being guessed). Sums stay exact Decimals and are rounded once per row
with the pricing rounding rule.

By vendor, an event's revenue is split between its vendors in proportion to their cost; revenue
of events without costs is reported under ``(none)``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.catalog.service import rates
from walletflow.errors import NotFound, ValidationError
from walletflow.ledger import repository as ledger_repo
from walletflow.pricing.engine import round_minor
from walletflow.usage.models import UsageEvent

GroupBy = Literal["customer", "product", "vendor"]
NO_VENDOR = "(none)"
events_t = UsageEvent.__table__


@dataclass
class MarginRow:
    key: str
    revenue: int
    cost: int

    @property
    def margin(self) -> int:
        return self.revenue - self.cost

    @property
    def margin_pct(self) -> str | None:
        if self.revenue == 0:
            return None
        return str((Decimal(self.margin) * 100 / Decimal(self.revenue)).quantize(Decimal("0.01")))


@dataclass
class MarginReport:
    currency: str
    group_by: str
    start: dt.datetime
    end: dt.datetime
    rows: list[MarginRow]
    unconverted: dict[str, int] = field(default_factory=dict)


class _Converter:
    """Converts minor units of any asset to minor units of ``currency`` at a point in time."""

    def __init__(self, currency: str, scales: dict[str, int], rate_rows: list[tuple[str, dt.datetime, Decimal]]) -> None:
        self.currency = currency
        self.scales = scales
        self.history: dict[str, tuple[list[dt.datetime], list[Decimal]]] = {}
        for asset, starts, rate in sorted(rate_rows, key=lambda r: (r[0], r[1])):
            times, values = self.history.setdefault(asset, ([], []))
            times.append(starts)
            values.append(rate)

    def __call__(self, asset: str, amount: int, at: dt.datetime) -> Decimal | None:
        if asset == self.currency:
            return Decimal(amount)
        times, values = self.history.get(asset, ([], []))
        position = bisect.bisect_right(times, at) - 1
        if position < 0 or asset not in self.scales:
            return None
        whole_units = Decimal(amount) / (Decimal(10) ** self.scales[asset])
        return whole_units * values[position] * (Decimal(10) ** self.scales[self.currency])


async def margins(
    engine: AsyncEngine, group_by: GroupBy, start: dt.datetime, end: dt.datetime, currency: str
) -> MarginReport:
    if end <= start:
        raise ValidationError("to must be after from", field="to")
    async with engine.connect() as conn:
        quote = await ledger_repo.get_asset(conn, currency)
        if quote is None or quote.kind != "fiat":
            raise NotFound(f"fiat currency {currency} not found", field="currency")
        scales = {r.code: r.scale for r in await conn.execute(select(ledger_repo.assets))}
        rate_rows = [
            (r.asset, r.valid_from, Decimal(r.rate))
            for r in await conn.execute(select(rates).where(rates.c.currency == currency))
        ]
        in_period = (events_t.c.occurred_at >= start) & (events_t.c.occurred_at < end)
        events = (
            await conn.execute(
                select(events_t.c.customer_id, events_t.c.product_code, events_t.c.asset,
                       events_t.c.amount, events_t.c.occurred_at, events_t.c.costs).where(in_period)
            )
        ).all()

    convert = _Converter(currency, scales, rate_rows)
    unconverted: dict[str, int] = defaultdict(int)
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for e in events:
        earned = convert(e.asset, e.amount, e.occurred_at)
        if earned is None:
            unconverted[e.asset] += e.amount
            earned = Decimal(0)
        event_costs: list[tuple[str, Decimal]] = []
        for c in e.costs or []:
            value = convert(c["asset"], c["amount"], e.occurred_at)
            if value is None:
                unconverted[c["asset"]] += c["amount"]
            else:
                event_costs.append((c["vendor"], value))
        if group_by == "vendor":
            total_cost = sum((v for _, v in event_costs), Decimal(0))
            if not event_costs or total_cost == 0:
                revenue[NO_VENDOR] += earned
            for vendor, value in event_costs:
                cost[vendor] += value
                if total_cost:
                    revenue[vendor] += earned * value / total_cost
            continue
        key = str(e.customer_id) if group_by == "customer" else (e.product_code or "")
        revenue[key] += earned
        cost[key] += sum((v for _, v in event_costs), Decimal(0))

    rows = [MarginRow(k, round_minor(revenue[k]), round_minor(cost[k])) for k in sorted(set(revenue) | set(cost))]
    return MarginReport(currency, group_by, start, end, rows, dict(unconverted))
