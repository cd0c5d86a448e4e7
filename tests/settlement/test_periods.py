"""Settlement periods: keys, parsing and which period is the newest closed one."""

from __future__ import annotations

import datetime as dt

import pytest

from walletflow.settlement.periods import Period, last_closed

UTC = dt.UTC


def test_keys_round_trip_for_days_and_hours() -> None:
    day = Period.containing(dt.datetime(2026, 11, 27, 13, 45, tzinfo=UTC), "day")
    hour = Period.containing(dt.datetime(2026, 11, 27, 13, 45, tzinfo=UTC), "hour")
    assert (day.key, hour.key) == ("2026-11-27", "2026-11-27T13:00Z")
    assert Period.parse(day.key) == day and Period.parse(hour.key) == hour
    assert day.end == dt.datetime(2026, 11, 28, tzinfo=UTC)
    assert hour.end == dt.datetime(2026, 11, 27, 14, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "2026-11-27T13", "2026-13-01", "2026-11-27T13:30Z", "yesterday", "2026-11-27T25:00Z"])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="period must look like"):
        Period.parse(bad)


def test_the_newest_closed_period_waits_for_the_grace() -> None:
    grace = dt.timedelta(minutes=5)
    just_after_midnight = dt.datetime(2026, 11, 28, 0, 3, tzinfo=UTC)
    # Three minutes into the 28th, the 27th is not closed yet: writes may still be landing.
    assert last_closed(just_after_midnight, "day", grace).key == "2026-11-26"
    assert last_closed(just_after_midnight + dt.timedelta(minutes=3), "day", grace).key == "2026-11-27"
    assert last_closed(dt.datetime(2026, 11, 28, 10, 6, tzinfo=UTC), "hour", grace).key == "2026-11-28T09:00Z"
