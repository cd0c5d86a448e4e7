"""Labelled synthetic usage periods: normal customers and leaked-key abuse, reproducible by seed.

Each row is what :func:`walletflow.risk.usage.usage_features` would read for one customer's
settlement period, its label (``normal`` or the attack) and its *scenario* (the kind of normal
customer, or the attack again), so the evaluation can say which honest customers it bothers.
Amounts are minor units per period; a period may be an hour or a day, so only ratios against the
customer's own baseline carry meaning, never absolute sizes.

As with top-ups, these shapes are written-down assumptions, not measurements. Normal traffic
deliberately includes what looks alarming at a glance: customers growing week on week, a busy
launch or batch day at several times the usual spend (now and then at night, now and then on a
model they had not used), a new customer's first busy day (no baseline at all), and heavy
auto-recharge spenders whose wallet is topped up several times in the period.

Attacks (all on an established customer's key; a brand-new customer's leaked key is
indistinguishable from its first busy day and is left to the ledger spend rules, which flag a
large spend without history):

``leaked_key_spike``       the blatant case: spend and events many times the baseline, often on
                           models the customer never used, often at night. A careful share stays
                           at 3-5x, under the rules' review ratio.
``leaked_key_subtle``      moderate spend (1.8-4.5x, under every rule) but many cheap events, on
                           never-used models, at hours the customer is never active.
``leaked_key_new_models``  few calls but expensive ones: spend 2-5x, event count near normal, the
                           cost per event up because the key is used for the priciest models.
"""

from __future__ import annotations

import csv
import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path

import numpy as np

from walletflow.risk.usage import UsageFeatures

NORMAL = "normal"
USAGE_ATTACKS: tuple[str, ...] = ("leaked_key_spike", "leaked_key_subtle", "leaked_key_new_models")
#: The kinds of honest customer generated, and their share of normal periods.
NORMAL_SCENARIOS: dict[str, float] = {
    "steady": 0.45,
    "growing": 0.15,
    "busy_day": 0.15,
    "new_customer": 0.12,
    "auto_recharge_heavy": 0.13,
}
#: Share of each attack in generated periods (the rest is normal).
ATTACK_SHARE = 0.04
#: Share of the spike attack that is careful (3-5x: under the rules' review ratio).
STEALTH = 0.15

#: (features, label, scenario).
UsageRow = tuple[UsageFeatures, str, str]
#: Columns of the CSV: the features the model sees (not the ids and period bounds).
CSV_FEATURES: tuple[str, ...] = tuple(
    f.name for f in fields(UsageFeatures) if f.name not in ("customer_id", "asset", "period_start", "period_end")
)
_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_DAY_HOURS = np.array([2, 1.5, 1, 1, 1, 1.5, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4.5, 4, 3.5, 3], dtype=float)
_DAY_HOURS /= _DAY_HOURS.sum()
_DAY_CDF = np.cumsum(_DAY_HOURS)


def _row(
    spend: float, baseline_spend: float, events: float, baseline_events: float, event_types: int,
    new_models: int, history_days: float, topups: int, hour: int, odd_hour_share: float,
) -> UsageFeatures:
    return UsageFeatures(
        customer_id=uuid.UUID(int=0), asset="USD", period_start=_START, period_end=_START + dt.timedelta(days=1),
        spend=max(0, int(spend)), baseline_spend=round(max(0.0, baseline_spend), 2),
        events=max(1, int(events)), baseline_events=round(max(0.0, baseline_events), 2),
        event_types=max(1, event_types), new_models=max(0, new_models), history_days=round(history_days, 3),
        topups=max(0, topups), hour_of_day=hour % 24, odd_hour_share=round(float(min(1.0, max(0.0, odd_hour_share))), 4),
    )


def _customer(rng: np.random.Generator) -> tuple[float, float, float]:
    """An established customer's baseline: (spend per period, events per period, history days)."""
    baseline_spend = float(rng.lognormal(np.log(3_000), 1.1))
    cost_per_event = float(rng.lognormal(np.log(20), 1.0))
    return baseline_spend, max(0.5, baseline_spend / cost_per_event), float(rng.uniform(3, 365))


def _day_hour(rng: np.random.Generator) -> int:
    return min(23, int(np.searchsorted(_DAY_CDF, rng.random(), side="right")))


def _usual_odd(rng: np.random.Generator) -> float:
    """Honest customers mostly use the hours they always use; now and then a little outside."""
    return float(rng.beta(0.3, 12)) if rng.random() < 0.3 else 0.0


def steady(rng: np.random.Generator) -> UsageFeatures:
    spend, events, history = _customer(rng)
    ratio = float(rng.lognormal(0, 0.35))
    return _row(spend * ratio, spend, events * ratio * rng.lognormal(0, 0.15), events, int(rng.integers(1, 4)),
                int(rng.random() < 0.04), history, int(rng.random() < 0.3), _day_hour(rng), _usual_odd(rng))


def growing(rng: np.random.Generator) -> UsageFeatures:
    """Usage up week on week: 1.5-3.5x the trailing average, the same mix, sometimes a new model."""
    spend, events, history = _customer(rng)
    ratio = float(rng.uniform(1.5, 3.5))
    return _row(spend * ratio, spend, events * ratio * rng.lognormal(0, 0.2), events, int(rng.integers(1, 5)),
                int(rng.random() < 0.25), history, int(rng.integers(0, 3)), _day_hour(rng),
                float(rng.beta(0.5, 6)) if rng.random() < 0.3 else 0.0)


def busy_day(rng: np.random.Generator) -> UsageFeatures:
    """A launch or a batch job: several times the usual spend with the events to match; batch
    jobs now and then run at night, and now and then on a model tried for the occasion."""
    spend, events, history = _customer(rng)
    ratio = float(rng.uniform(2, 4.5)) if rng.random() < 0.9 else float(rng.uniform(4.5, 7))
    night = rng.random() < 0.15
    return _row(spend * ratio, spend, events * ratio * rng.lognormal(0, 0.25), events, int(rng.integers(1, 4)),
                int(rng.random() < 0.1), history, int(rng.integers(0, 3)),
                int(rng.integers(0, 6)) if night else _day_hour(rng),
                float(rng.uniform(0.1, 0.5)) if night else _usual_odd(rng))


def new_customer(rng: np.random.Generator) -> UsageFeatures:
    """The first days: no baseline, or one from a day or two of trying things out."""
    spend = float(rng.lognormal(np.log(5_000), 1.3))
    events = max(1.0, spend / float(rng.lognormal(np.log(20), 1.0)))
    history = float(rng.uniform(0, 3)) if rng.random() < 0.5 else 0.0
    has_base = history >= 0.5
    base_ratio = float(rng.uniform(1, 15))  # ramping up from a trial
    return _row(spend, spend / base_ratio if has_base else 0.0, events, events / base_ratio if has_base else 0.0,
                int(rng.integers(1, 4)), int(rng.integers(0, 3)) if has_base else 0, history,
                int(rng.integers(0, 4)), _day_hour(rng), float(rng.uniform(0, 0.5)) if has_base else 0.0)


def auto_recharge_heavy(rng: np.random.Generator) -> UsageFeatures:
    """A heavy spender on auto-recharge: usual spend, several recharges in the period."""
    spend, events, history = _customer(rng)
    spend *= 5
    ratio = float(rng.lognormal(0.1, 0.35))
    return _row(spend * ratio, spend, events * ratio * rng.lognormal(0, 0.15), events, int(rng.integers(1, 4)),
                int(rng.random() < 0.05), history, int(rng.integers(2, 10)), _day_hour(rng), _usual_odd(rng))


def leaked_key_spike(rng: np.random.Generator) -> UsageFeatures:
    spend, events, history = _customer(rng)
    ratio = float(rng.uniform(3, 5)) if rng.random() < STEALTH else float(np.exp(rng.uniform(np.log(5), np.log(200))))
    night = rng.random() < 0.5
    return _row(spend * ratio, spend, events * ratio * rng.lognormal(0, 0.5), events, int(rng.integers(1, 5)),
                int(rng.integers(0, 4)) if rng.random() < 0.7 else 0, history, int(rng.integers(0, 8)),
                int(rng.integers(0, 6)) if night else _day_hour(rng),
                float(rng.uniform(0.3, 1.0)) if night else float(rng.uniform(0, 0.4)))


def leaked_key_subtle(rng: np.random.Generator) -> UsageFeatures:
    spend, events, history = _customer(rng)
    ratio = float(rng.uniform(1.8, 4.5))
    event_ratio = float(np.exp(rng.uniform(np.log(4), np.log(150))))
    return _row(spend * ratio, spend, events * event_ratio, events, int(rng.integers(1, 5)),
                int(rng.integers(1, 4)), history, int(rng.integers(0, 3)), int(rng.integers(0, 24)),
                float(rng.uniform(0.3, 1.0)))


def leaked_key_new_models(rng: np.random.Generator) -> UsageFeatures:
    spend, events, history = _customer(rng)
    ratio = float(rng.uniform(2, 5))
    return _row(spend * ratio, spend, events * rng.uniform(0.7, 2.0), events, int(rng.integers(1, 4)),
                int(rng.integers(1, 5)), history, int(rng.integers(0, 3)), _day_hour(rng),
                float(rng.uniform(0, 0.7)))


NORMAL_GENERATORS: dict[str, Callable[[np.random.Generator], UsageFeatures]] = {
    "steady": steady, "growing": growing, "busy_day": busy_day, "new_customer": new_customer,
    "auto_recharge_heavy": auto_recharge_heavy,
}
ATTACK_GENERATORS: dict[str, Callable[[np.random.Generator], UsageFeatures]] = {
    "leaked_key_spike": leaked_key_spike, "leaked_key_subtle": leaked_key_subtle,
    "leaked_key_new_models": leaked_key_new_models,
}


def simulate_usage(seed: int, rows: int = 10_000, attack_share: float = ATTACK_SHARE) -> list[UsageRow]:
    """``rows`` labelled usage periods: each attack is ``attack_share`` of them, the rest normal."""
    if rows <= 0:
        raise ValueError("rows must be positive")
    # Another stream than the top-up simulator's for the same seed.
    rng = np.random.default_rng([seed, 0x05A6E])
    per_attack = max(1, int(rows * attack_share))
    scenarios = [a for a in USAGE_ATTACKS for _ in range(per_attack)]
    normals = max(0, rows - len(scenarios))
    names, shares = list(NORMAL_SCENARIOS), np.asarray(list(NORMAL_SCENARIOS.values()))
    scenarios += [str(s) for s in rng.choice(names, size=normals, p=shares / shares.sum())]
    out: list[UsageRow] = []
    for i in rng.permutation(len(scenarios)):
        scenario = scenarios[i]
        if scenario in ATTACK_GENERATORS:
            out.append((ATTACK_GENERATORS[scenario](rng), scenario, scenario))
        else:
            out.append((NORMAL_GENERATORS[scenario](rng), NORMAL, scenario))
    return out


def write_usage_csv(rows: Iterable[UsageRow], path: Path) -> int:
    """Write usage rows as CSV (feature columns, ``label``, ``scenario``); returns how many."""
    count = 0
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[*CSV_FEATURES, "label", "scenario"])
        writer.writeheader()
        for features, label, scenario in rows:
            writer.writerow({**{name: getattr(features, name) for name in CSV_FEATURES}, "label": label,
                             "scenario": scenario})
            count += 1
    return count


def read_usage_csv(path: Path) -> list[UsageRow]:
    """Rows back from :func:`write_usage_csv` (``scenario`` defaults to the label)."""
    with open(path, newline="") as source:
        reader = csv.DictReader(source)
        if reader.fieldnames is None or "label" not in reader.fieldnames or "spend" not in reader.fieldnames:
            raise ValueError(f"{path} needs at least the columns spend and label")
        out: list[UsageRow] = []
        for row in reader:
            def num(name: str, default: float = 0.0) -> float:
                raw = row.get(name)
                return float(raw) if raw not in (None, "") else default

            out.append((_row(num("spend"), num("baseline_spend"), num("events", 1), num("baseline_events"),
                             int(num("event_types", 1)), int(num("new_models")), num("history_days"),
                             int(num("topups")), int(num("hour_of_day", 12)), num("odd_hour_share")),
                        row["label"], row.get("scenario") or row["label"]))
        return out
