"""Labelled synthetic top-up traffic: normal customers and each attack, reproducible by seed.

Each row is what :func:`walletflow.risk.features.topup_features` would read for one paid top-up,
plus its label. The shapes below are assumptions written down, not measurements: they encode
what each attack looks like *before* the money is lost, so the evaluation can tell whether the
features and the model can see it. Normal traffic deliberately includes the cases that look
risky at a glance (brand-new accounts paying at 3 a.m., a team sharing one company card, a
customer's one-off large top-up, an occasional refund or declined card) so that catching an
attack is never just "anything unusual".
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from walletflow.risk.features import RAW_FEATURES, as_dict, from_dict
from walletflow.risk.rules import RiskFeatures

NORMAL = "normal"
#: Every attack the simulator generates (and the evaluation reports on).
ATTACKS: tuple[str, ...] = (
    "fake_account",
    "card_testing",
    "stolen_card",
    "topup_then_dispute",
    "refund_abuse",
    "leaked_key",
)
LABELS: tuple[str, ...] = (NORMAL, *ATTACKS)
#: Share of each attack in generated traffic (the rest is normal).
ATTACK_SHARE = 0.04
#: Share of each attack that is careful: its tell-tale signal is weak and close to normal
#: traffic, so a good evaluation cannot reach perfect recall.
STEALTH = 0.12

Row = tuple[RiskFeatures, str]
_TYPICAL_AMOUNTS = np.array([500, 1000, 2000, 2500, 5000, 10_000, 20_000])


def _hour(rng: np.random.Generator, night_bias: float = 0.0) -> int:
    """Customers top up mostly by day (UTC here, so every hour happens); attackers lean to night."""
    if rng.random() < night_bias:
        return int(rng.integers(0, 6))
    # Inverse CDF: the same distribution as rng.choice(24, p=...), at a fraction of its cost.
    return min(23, int(np.searchsorted(_DAY_CDF, rng.random(), side="right")))


_DAY_WEIGHTS = np.array([2, 1.5, 1, 1, 1, 1.5, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4.5, 4, 3.5, 3], dtype=float)
_DAY_WEIGHTS /= _DAY_WEIGHTS.sum()
_DAY_CDF = np.cumsum(_DAY_WEIGHTS)


def _amount_near(rng: np.random.Generator, median: int, spread: float = 0.35) -> int:
    return max(100, int(round(median * rng.lognormal(0.0, spread), -2)))


def _history(rng: np.random.Generator, count: int, median: int) -> tuple[int, int]:
    """(median, largest) of ``count`` earlier top-ups around ``median``."""
    if count == 0:
        return 0, 0
    # One vectorised draw (as _amount_near, count times): the built-in model simulates at every
    # worker start, and a Python loop of draws per row was most of that time.
    amounts = np.maximum(100, np.round(median * rng.lognormal(0.0, 0.35, size=count), -2)).astype(np.int64)
    return int(np.median(amounts)), int(amounts.max())


#: Share of normal top-ups that are auto-recharge charges.
AUTO_RECHARGE_SHARE = 0.15


def auto_recharge(rng: np.random.Generator) -> RiskFeatures:
    """An honest auto-recharge: the policy charges the saved card off-session, sized to bring the
    balance back to its target, so each charge is about the customer's usual amount. A heavy
    spender triggers several a day, some within the hour, and spends what was loaded in between
    (usage can exceed the paid top-ups: a starting grant, a promotion). New customers too: a
    wallet set up this morning that runs a big job at once has no spend baseline yet."""
    new = rng.random() < 0.3
    usual = int(rng.choice(_TYPICAL_AMOUNTS))
    count = int(rng.integers(0, 6)) if new else int(rng.integers(2, 200))
    med, largest = _history(rng, count, usual)
    amount = _amount_near(rng, med or usual, 0.15)
    recent = int(rng.integers(0, min(count, 8) + 1)) if count else 0
    spent = int(amount * (recent + 1) * rng.uniform(0.7, 1.4))
    baseline = 0 if new else max(1, int(spent / rng.lognormal(0.4, 0.6)))
    return RiskFeatures(
        amount=amount,
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=min(recent, int(rng.choice([0, 1, 1, 2]))),
        failed_last_24h=int(rng.random() < 0.05),
        median_succeeded_amount=med,
        started_last_24h=recent,
        account_age_h=float(rng.uniform(0.05, 24)) if new else float(24 * rng.uniform(2, 1000)),
        card_customers=int(rng.random() < 0.03),
        refunds=int(rng.random() < 0.05),
        disputes=0,
        spend_24h=spent,
        spend_daily_baseline=baseline,
        usage_to_topup=round(float(rng.uniform(0.8, 2.5) if new else rng.uniform(0.8, 1.2)), 3),
        hour_of_day=_hour(rng),
        auto_recharge=1,
    )


def normal(rng: np.random.Generator) -> RiskFeatures:
    """An honest customer: new (first top-ups, minutes after signing up), established, or an
    auto-recharge charge (:func:`auto_recharge`)."""
    if rng.random() < AUTO_RECHARGE_SHARE:
        return auto_recharge(rng)
    if rng.random() < 0.3:
        count = int(rng.choice([0, 0, 0, 1, 2]))
        median_hint = int(rng.choice(_TYPICAL_AMOUNTS[:5]))
        med, largest = _history(rng, count, median_hint)
        spend = int(rng.integers(0, max(1, med // 2) + 1)) if count else 0
        return RiskFeatures(
            amount=_amount_near(rng, median_hint, 0.5),
            succeeded_count=count,
            largest_succeeded_amount=largest,
            started_last_hour=int(rng.random() < 0.15),
            failed_last_24h=int(rng.random() < 0.06),
            median_succeeded_amount=med,
            started_last_24h=count + int(rng.random() < 0.2),
            account_age_h=float(rng.lognormal(-1.0, 1.5)),
            # Mostly their own card; now and then a colleague's company card that a few team
            # members signed up with (not every platform allowlists its customers' team cards).
            card_customers=int(rng.choice(4, p=[0.97, 0.024, 0.005, 0.001])),
            refunds=0,
            disputes=0,
            spend_24h=spend,
            spend_daily_baseline=0,
            usage_to_topup=round(spend / (med * count), 3) if count else 0.0,
            hour_of_day=_hour(rng),
        )
    count = int(rng.integers(1, 80))
    median_hint = int(rng.choice(_TYPICAL_AMOUNTS))
    med, largest = _history(rng, count, median_hint)
    one_off = rng.random() < 0.05
    baseline = max(0, int(med / rng.uniform(3, 30)))
    return RiskFeatures(
        amount=_amount_near(rng, med * (rng.uniform(2, 4) if one_off else 1.0)),
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=int(rng.random() < 0.08),
        failed_last_24h=int(rng.poisson(0.08)),
        median_succeeded_amount=med,
        started_last_24h=int(rng.poisson(0.4)),
        account_age_h=float(24 * rng.uniform(1, 1000)),
        card_customers=int(rng.choice([0, 1, 2], p=[0.93, 0.05, 0.02])),
        refunds=int(rng.random() < 0.1),
        disputes=int(rng.random() < 0.01),
        spend_24h=int(baseline * rng.lognormal(0, 0.6)),
        spend_daily_baseline=baseline,
        usage_to_topup=round(float(rng.beta(8, 2)), 3),
        hour_of_day=_hour(rng),
    )


def fake_account(rng: np.random.Generator) -> RiskFeatures:
    """One of many accounts one actor signs up (to farm promotions or to spread stolen cards):
    minutes old, no history, and usually paying with a card other new accounts used too."""
    ring = rng.random() < 0.8
    if rng.random() < STEALTH:  # its own card, one account at a time: a new customer like any other
        return RiskFeatures(
            amount=int(rng.choice([500, 1000, 2000])), succeeded_count=0, largest_succeeded_amount=0,
            started_last_hour=int(rng.integers(0, 2)), failed_last_24h=int(rng.integers(0, 2)),
            started_last_24h=int(rng.integers(0, 3)), account_age_h=float(rng.uniform(0.01, 2.0)),
            card_customers=int(rng.integers(0, 2)), hour_of_day=_hour(rng, 0.3),
        )
    return RiskFeatures(
        amount=int(rng.choice([500, 1000, 1000, 2000, 2500])),
        succeeded_count=int(rng.random() < 0.2),
        largest_succeeded_amount=0,
        started_last_hour=int(rng.integers(0, 3)) if ring else int(rng.integers(2, 5)),
        failed_last_24h=int(rng.integers(0, 2)) if ring else int(rng.integers(1, 4)),
        median_succeeded_amount=0,
        started_last_24h=int(rng.integers(1, 5)),
        account_age_h=float(rng.uniform(0.01, 2.0)),
        card_customers=int(rng.integers(2, 25)) if ring else int(rng.integers(0, 2)),
        refunds=0,
        disputes=0,
        spend_24h=0,
        spend_daily_baseline=0,
        usage_to_topup=0.0,
        hour_of_day=_hour(rng, 0.3),
    )


def card_testing(rng: np.random.Generator) -> RiskFeatures:
    """Checking which stolen card numbers work: many small top-ups in minutes, most declined."""
    tries = int(rng.integers(3, 30))
    if rng.random() < STEALTH:  # slow and careful: a few tries spread over the day
        tries = int(rng.integers(1, 4))
        return RiskFeatures(
            amount=int(rng.choice([100, 200, 500, 1000])), succeeded_count=0, largest_succeeded_amount=0,
            started_last_hour=tries, failed_last_24h=int(rng.integers(1, 3)),
            started_last_24h=tries + int(rng.integers(0, 4)), account_age_h=float(rng.uniform(0.01, 48)),
            card_customers=int(rng.integers(0, 2)), hour_of_day=_hour(rng, 0.4),
        )
    return RiskFeatures(
        amount=int(rng.choice([100, 100, 200, 300, 500])),
        succeeded_count=int(rng.integers(0, 3)),
        largest_succeeded_amount=int(rng.choice([0, 100, 200])),
        started_last_hour=tries,
        failed_last_24h=int(rng.integers(max(1, tries // 3), tries + 1)),
        median_succeeded_amount=int(rng.choice([0, 100, 200])),
        started_last_24h=tries + int(rng.integers(0, 10)),
        account_age_h=float(rng.uniform(0.01, 48)),
        card_customers=int(rng.integers(0, 3)),
        refunds=0,
        disputes=0,
        spend_24h=0,
        spend_daily_baseline=0,
        usage_to_topup=0.0,
        hour_of_day=_hour(rng, 0.4),
    )


def stolen_card(rng: np.random.Generator) -> RiskFeatures:
    """A stolen card cashed out: a large first top-up on a fresh account, or an account taken
    over and topped up far beyond its habits (and then spent at once)."""
    if rng.random() < 0.5:
        return RiskFeatures(
            amount=int(rng.choice([20_000, 30_000, 50_000, 75_000, 90_000])),
            succeeded_count=0,
            largest_succeeded_amount=0,
            started_last_hour=int(rng.integers(0, 3)),
            failed_last_24h=int(rng.integers(0, 4)),
            median_succeeded_amount=0,
            started_last_24h=int(rng.integers(0, 4)),
            account_age_h=float(rng.uniform(0.01, 6)),
            card_customers=int(rng.integers(0, 2)),
            refunds=0,
            disputes=0,
            spend_24h=0,
            spend_daily_baseline=0,
            usage_to_topup=0.0,
            hour_of_day=_hour(rng, 0.4),
        )
    count = int(rng.integers(2, 40))
    med, largest = _history(rng, count, int(rng.choice(_TYPICAL_AMOUNTS[:5])))
    baseline = max(0, int(med / rng.uniform(3, 30)))
    return RiskFeatures(
        amount=_amount_near(rng, int(med * (rng.uniform(2, 5) if rng.random() < 2 * STEALTH else rng.uniform(5, 30)))),
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=int(rng.integers(0, 3)),
        failed_last_24h=int(rng.integers(0, 3)),
        median_succeeded_amount=med,
        started_last_24h=int(rng.integers(0, 4)),
        account_age_h=float(24 * rng.uniform(10, 1000)),
        card_customers=int(rng.integers(0, 3)),
        refunds=0,
        disputes=0,
        spend_24h=int(baseline * rng.uniform(0, 5)),
        spend_daily_baseline=baseline,
        usage_to_topup=round(float(rng.beta(8, 2)), 3),
        hour_of_day=_hour(rng, 0.4),
    )


def topup_then_dispute(rng: np.random.Generator) -> RiskFeatures:
    """Friendly fraud: pay, spend it all at once, then dispute the charge. Repeat offenders carry
    earlier disputes; first-timers top up well above their habit and burn through credit."""
    count = int(rng.integers(1, 15))
    med, largest = _history(rng, count, int(rng.choice(_TYPICAL_AMOUNTS[:5])))
    repeat = rng.random() < 0.6
    careful = not repeat and rng.random() < 3 * STEALTH  # first time, and not greedy
    baseline = max(1, int(med / rng.uniform(3, 20)))
    return RiskFeatures(
        amount=_amount_near(rng, int(med * (rng.uniform(1, 3) if repeat else rng.uniform(3, 10)))),
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=int(rng.integers(0, 2)),
        failed_last_24h=int(rng.integers(0, 2)),
        median_succeeded_amount=med,
        started_last_24h=int(rng.integers(0, 4)),
        account_age_h=float(rng.uniform(2, 24 * 120)),
        card_customers=int(rng.integers(0, 2)),
        refunds=int(rng.integers(0, 2)),
        disputes=int(rng.integers(1, 4)) if repeat else 0,
        spend_24h=int(baseline * (rng.uniform(1, 4) if repeat else rng.uniform(2, 6) if careful else rng.uniform(8, 40))),
        spend_daily_baseline=baseline,
        usage_to_topup=round(float(rng.uniform(0.95, 1.0)), 3),
        hour_of_day=_hour(rng, 0.2),
    )


def refund_abuse(rng: np.random.Generator) -> RiskFeatures:
    """Top up, use little or nothing, ask for the money back, again and again."""
    count = int(rng.integers(2, 20))
    med, largest = _history(rng, count, int(rng.choice(_TYPICAL_AMOUNTS[:6])))
    careful = rng.random() < STEALTH  # one refund so far, and some real use
    return RiskFeatures(
        amount=_amount_near(rng, med),
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=int(rng.integers(0, 2)),
        failed_last_24h=int(rng.integers(0, 2)),
        median_succeeded_amount=med,
        started_last_24h=int(rng.integers(0, 3)),
        account_age_h=float(24 * rng.uniform(3, 365)),
        card_customers=int(rng.integers(0, 2)),
        refunds=1 if careful else int(rng.integers(max(2, count // 3), count + 1)),
        disputes=int(rng.random() < 0.2),
        spend_24h=int(rng.integers(0, 200)),
        spend_daily_baseline=int(rng.integers(0, 100)),
        usage_to_topup=round(float(rng.uniform(0.2, 0.6) if careful else rng.uniform(0.0, 0.25)), 3),
        hour_of_day=_hour(rng),
    )


def leaked_key(rng: np.random.Generator) -> RiskFeatures:
    """A leaked API key: usage explodes against the customer's baseline and auto-recharge keeps
    topping up (each recharge looks like the customer's usual amount)."""
    count = int(rng.integers(3, 80))
    med, largest = _history(rng, count, int(rng.choice(_TYPICAL_AMOUNTS)))
    baseline = max(1, int(med / rng.uniform(3, 30)))
    return RiskFeatures(
        amount=_amount_near(rng, med, 0.2),
        succeeded_count=count,
        largest_succeeded_amount=largest,
        started_last_hour=int(rng.integers(0, 4)),
        failed_last_24h=int(rng.integers(0, 2)),
        median_succeeded_amount=med,
        started_last_24h=int(rng.integers(2, 12)),
        account_age_h=float(24 * rng.uniform(10, 1000)),
        card_customers=int(rng.choice([0, 1], p=[0.95, 0.05])),
        refunds=int(rng.random() < 0.1),
        disputes=0,
        # Caught early (the first hours of abuse) the spike is still small.
        spend_24h=int(baseline * (rng.uniform(2.5, 6) if rng.random() < STEALTH else rng.uniform(8, 200))),
        spend_daily_baseline=baseline,
        usage_to_topup=round(float(rng.uniform(0.9, 1.0)), 3),
        hour_of_day=_hour(rng),
        auto_recharge=int(rng.random() < 0.8),  # mostly the policy's own charges
    )


GENERATORS: dict[str, Callable[[np.random.Generator], RiskFeatures]] = {
    NORMAL: normal,
    "fake_account": fake_account,
    "card_testing": card_testing,
    "stolen_card": stolen_card,
    "topup_then_dispute": topup_then_dispute,
    "refund_abuse": refund_abuse,
    "leaked_key": leaked_key,
}


def simulate(seed: int, rows: int = 10_000, attack_share: float = ATTACK_SHARE) -> list[Row]:
    """``rows`` labelled top-ups: each attack is ``attack_share`` of them, the rest normal."""
    if rows <= 0:
        raise ValueError("rows must be positive")
    rng = np.random.default_rng(seed)
    per_attack = max(1, int(rows * attack_share))
    labels = [a for a in ATTACKS for _ in range(per_attack)]
    labels += [NORMAL] * max(0, rows - len(labels))
    order = rng.permutation(len(labels))
    return [(GENERATORS[labels[i]](rng), labels[i]) for i in order]


def write_csv(rows: Iterable[Row], path: Path) -> int:
    """Write rows as CSV (raw feature columns plus ``label``); returns how many."""
    count = 0
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[*RAW_FEATURES, "label"])
        writer.writeheader()
        for features, label in rows:
            writer.writerow({**as_dict(features), "label": label})
            count += 1
    return count


def read_csv(path: Path) -> list[Row]:
    """Rows back from :func:`write_csv` (or any CSV with those columns and a ``label``)."""
    with open(path, newline="") as source:
        reader = csv.DictReader(source)
        if reader.fieldnames is None or "label" not in reader.fieldnames or "amount" not in reader.fieldnames:
            raise ValueError(f"{path} needs at least the columns amount and label")
        return [(from_dict(row), row["label"]) for row in reader]
