"""What the billing portal shows a customer: read-only views over the ledger.

Every function takes the customer id from a verified portal session, never from the request.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.errors import ValidationError
from walletflow.ledger import repository as repo
from walletflow.ledger.schemas import MAX_AMOUNT, GrantInfo
from walletflow.ledger.service import Ledger

#: Ledger transaction kinds that are the customer spending: usage debits and hold captures.
#: Refunds, claw-backs, expiry and manual adjustments are not spend.
SPEND_KINDS = ("usage", "capture")
SPEND_DAYS = 30


def format_amount(amount: int, scale: int) -> str:
    """Minor units as a decimal string with the asset's scale: 123456, 2 -> '1,234.56'."""
    value = Decimal(amount).scaleb(-scale)
    return f"{value:,.{scale}f}"


def plain_amount(amount: int, scale: int) -> str:
    """Minor units as a form field shows them: 123456, 2 -> '1234.56' (no separators)."""
    return f"{Decimal(amount).scaleb(-scale):.{scale}f}"


def minor_units(amount: str, scale: int, field: str, *, allow_zero: bool = False) -> int:
    """What the customer typed ('20.00', whole units) in minor units, exactly, or a 422."""
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise ValidationError(f"{field} must be a decimal number like 20.00", field=field) from exc
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(f"{field} must be {'zero or more' if allow_zero else 'positive'}", field=field)
    minor = value.scaleb(scale)
    if minor != minor.to_integral_value():
        raise ValidationError(f"{field} has more than {scale} decimals", field=field)
    if minor > MAX_AMOUNT:
        raise ValidationError(f"{field} is too large", field=field)
    return int(minor)


@dataclass(frozen=True)
class AssetBalance:
    asset: str
    scale: int
    posted: int
    held: int
    available: int


@dataclass(frozen=True)
class PortalGrant:
    id: uuid.UUID
    asset: str
    scale: int
    source: str
    amount: int
    remaining: int
    effective_at: dt.datetime
    expires_at: dt.datetime | None
    status: str


@dataclass(frozen=True)
class DailySpend:
    day: dt.date
    amount: int  # positive: what was spent that day, minor units


async def scales(ledger: Ledger, codes: set[str]) -> dict[str, int]:
    return {code: (await ledger.get_asset(code)).scale for code in sorted(codes)}


async def balances(ledger: Ledger, customer_id: uuid.UUID) -> list[AssetBalance]:
    wallet = await ledger.wallet(customer_id)
    scale_of = await scales(ledger, {b.asset for b in wallet})
    return [AssetBalance(b.asset, scale_of[b.asset], b.posted, b.held, b.available) for b in wallet]


async def grants(ledger: Ledger, customer_id: uuid.UUID) -> list[PortalGrant]:
    """Grants still holding money (active or not yet effective), in consumption order."""
    asset_of = {b.account_id: b.asset for b in await ledger.wallet(customer_id)}
    found: list[GrantInfo] = [g for g in await ledger.grants(customer_id) if g.remaining > 0]
    scale_of = await scales(ledger, {asset_of[g.account_id] for g in found})
    return [
        PortalGrant(g.id, asset_of[g.account_id], scale_of[asset_of[g.account_id]], g.source, g.amount, g.remaining,
                    g.effective_at, g.expires_at, g.status)
        for g in found
    ]


async def daily_spend(
    engine: AsyncEngine, customer_id: uuid.UUID, asset: str, now: dt.datetime, days: int = SPEND_DAYS
) -> list[DailySpend]:
    """Spend per UTC day over the last ``days`` days (today included), oldest first, zeros kept."""
    e, t, a = repo.entries, repo.transactions, repo.accounts
    first_day = now.astimezone(dt.UTC).date() - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first_day, dt.time(), dt.UTC)
    async with engine.connect() as conn:
        # SQLite stores naive UTC text ('YYYY-MM-DD HH:MM:SS'): its date() is the UTC day.
        # PostgreSQL's timestamptz is cut to a date in UTC explicitly, whatever the session zone.
        day: ColumnElement[Any]
        if conn.dialect.name == "postgresql":
            day = cast(func.timezone("UTC", e.c.created_at), Date)
        else:
            day = func.date(e.c.created_at)
        query = (
            select(day.label("day"), func.sum(e.c.amount).label("amount"))
            .join(t, t.c.id == e.c.transaction_id)
            .join(a, a.c.id == e.c.account_id)
            .where(a.c.customer_id == customer_id, e.c.asset == asset, e.c.amount < 0,
                   e.c.created_at >= since, t.c.kind.in_(SPEND_KINDS))
            .group_by(day)
        )
        rows = (await conn.execute(query)).all()
    by_day = {(r.day if isinstance(r.day, dt.date) else dt.date.fromisoformat(str(r.day))): -int(r.amount)
              for r in rows}
    return [DailySpend(first_day + dt.timedelta(days=i), by_day.get(first_day + dt.timedelta(days=i), 0))
            for i in range(days)]
