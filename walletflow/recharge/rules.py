"""The pure rules of auto-recharge: how much to charge, and how long to wait. No I/O.

A recharge is sized to reach the target in **one** charge (a peer charged once per increment
until it caught up), then cut down so the day's and the month's charges, in-flight ones
included, never pass the caps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizing:
    #: What to charge now, minor units (0: nothing).
    amount: int
    #: Why less than needed (``daily_cap_reached``, ``monthly_cap_reached``), if so.
    limited_by: str | None = None


def size_charge(
    *, available: int, threshold: int, target: int, daily_cap: int, monthly_cap: int,
    charged_today: int, charged_this_month: int,
) -> Sizing:
    """The one charge that brings ``available`` back to ``target``, within the caps."""
    if available >= threshold:
        return Sizing(0)
    needed = target - available
    room_day = max(0, daily_cap - charged_today)
    room_month = max(0, monthly_cap - charged_this_month)
    amount = min(needed, room_day, room_month)
    if amount == needed:
        return Sizing(amount)
    return Sizing(amount, "daily_cap_reached" if room_day <= room_month else "monthly_cap_reached")


def backoff_s(failures: int, initial_s: float, max_s: float) -> float:
    """Wait after the ``failures``-th decline in a row: doubling from ``initial_s``, at most ``max_s``."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2 ** min(failures - 1, 30)))


def day_start(now: dt.datetime) -> dt.datetime:
    """Start of ``now``'s UTC day (the daily cap's period)."""
    now = now.astimezone(dt.UTC)
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)


def month_start(now: dt.datetime) -> dt.datetime:
    """Start of ``now``'s UTC calendar month (the monthly cap's period)."""
    now = now.astimezone(dt.UTC)
    return dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
