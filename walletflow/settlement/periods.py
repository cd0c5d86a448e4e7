"""Settlement periods: whole UTC hours or days, named by a stable key.

A day is ``2026-11-27``; an hour is ``2026-11-27T13:00Z`` (ISO 8601, so the two never collide).
The key is the period's business id: workflow ``settlement-{key}``, the report's ``period``, the
idempotency keys of what settlement writes. A period is ``[start, end)`` of ledger *write* time
(transactions' ``created_at``, events' ``received_at``): a late-arriving event belongs to the
period it was debited in, so a settled period never changes afterwards.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

PeriodLength = Literal["hour", "day"]
_STEP = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


@dataclass(frozen=True, order=True)
class Period:
    start: dt.datetime
    length: PeriodLength

    @property
    def end(self) -> dt.datetime:
        return self.start + _STEP[self.length]

    @property
    def key(self) -> str:
        if self.length == "day":
            return self.start.strftime("%Y-%m-%d")
        return self.start.strftime("%Y-%m-%dT%H:00Z")

    def shift(self, periods: int) -> Period:
        return Period(self.start + periods * _STEP[self.length], self.length)

    @classmethod
    def containing(cls, at: dt.datetime, length: PeriodLength) -> Period:
        at = at.astimezone(dt.UTC)
        start = at.replace(minute=0, second=0, microsecond=0)
        if length == "day":
            start = start.replace(hour=0)
        return cls(start, length)

    @classmethod
    def parse(cls, key: str) -> Period:
        """``2026-11-27`` (a day) or ``2026-11-27T13:00Z`` (an hour); ValueError otherwise."""
        try:
            if len(key) == 10:
                day = dt.datetime.strptime(key, "%Y-%m-%d")
                return cls(day.replace(tzinfo=dt.UTC), "day")
            if len(key) == 17 and key.endswith(":00Z"):
                hour = dt.datetime.strptime(key, "%Y-%m-%dT%H:00Z")
                return cls(hour.replace(tzinfo=dt.UTC), "hour")
        except ValueError:
            pass
        raise ValueError(f"period must look like 2026-11-27 (a day) or 2026-11-27T13:00Z (an hour), not {key!r}")


def last_closed(now: dt.datetime, length: PeriodLength, grace: dt.timedelta) -> Period:
    """The newest period that ended at least ``grace`` ago (writes in flight have landed)."""
    return Period.containing(now - grace, length).shift(-1)
