"""Usage risk: is a customer's usage in a settlement period a leaked-key-style spike?

Called by the settlement workflow once per (customer, asset, period)::

    async with engine.connect() as conn:
        features = await usage_features(conn, customer_id, "USD", period_start, period_end)
    result = score_usage(features, UsageThresholds.from_settings(settings))
    if result.decision != "approve":
        ...  # freeze the wallet pending review (the caller's job), with result.reasons

Features (from ``usage_events``, by ``occurred_at``; amounts in minor units of ``asset``):

======================  =========================================================================
``spend``               fees of the period's usage events
``baseline_spend``      average spend per period of the same length over the trailing
                        ``baseline_days`` before the period (0 without history)
``events``              usage events in the period
``baseline_events``     average events per period of the same length over the trailing window
``event_types``         distinct event types in the period
``new_models``          distinct ``data.model`` values used in the period but never in the
                        trailing window (a leaked key is often used for other models)
``history_days``        days between the customer's first usage event and the period start
``topups``              paid top-ups (all kinds, auto-recharge included) created in the period
``hour_of_day``         UTC hour of the period's busiest hour of spend
``odd_hour_share``      share (0-1) of the period's spend made in UTC hours of the day in which
                        the customer had no usage at all in the trailing window (the latest
                        ``MAX_BASELINE_HOURS_EVENTS`` events of it): a leaked key is used when the
                        customer sleeps. 0 without a baseline (nothing is odd for a new customer)
======================  =========================================================================

:func:`score_usage` is the explicit rules check. The trained usage model
(:mod:`walletflow.risk.usage_model`) scores the same features; settlement takes the stricter of
the two. Rules: scoring is explicit and explainable (a spike is defined against the customer's own baseline):
spend at or over ``review_ratio`` times the baseline is review, at or over ``reject_ratio`` is
reject; event-rate spikes, never-seen models and repeated top-ups add weight. A customer with less
than ``min_history_days`` of usage has no baseline and is not scored on ratios (a new customer's
first busy day is not an attack); spend under ``min_spend`` is never a spike.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from walletflow.payments.models import TopUp
from walletflow.risk.rules import Decision, RiskResult
from walletflow.usage.models import UsageEvent

if TYPE_CHECKING:
    from walletflow.settings import Settings

usage_events = cast(Table, UsageEvent.__table__)
top_ups = cast(Table, TopUp.__table__)

#: Bound on the distinct models read per window (a customer never uses more in practice).
MAX_MODELS = 500
#: Bound on the trailing window's events read to learn the customer's usual hours.
MAX_BASELINE_HOURS_EVENTS = 5_000


@dataclass(frozen=True)
class UsageFeatures:
    customer_id: uuid.UUID
    asset: str
    period_start: dt.datetime
    period_end: dt.datetime
    spend: int
    baseline_spend: float
    events: int
    baseline_events: float
    event_types: int
    new_models: int
    history_days: float
    topups: int
    hour_of_day: int
    #: Share of the period's spend in hours the customer never used in the trailing window.
    odd_hour_share: float = 0.0

    @property
    def spend_ratio(self) -> float:
        return self.spend / self.baseline_spend if self.baseline_spend > 0 else float("inf") if self.spend else 0.0

    @property
    def event_ratio(self) -> float:
        return self.events / self.baseline_events if self.baseline_events > 0 else float("inf") if self.events else 0.0


@dataclass(frozen=True)
class UsageThresholds:
    review_ratio: float = 5.0
    reject_ratio: float = 20.0
    min_spend: int = 1_000
    min_history_days: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageThresholds:
        return cls(settings.risk_usage_review_ratio, settings.risk_usage_reject_ratio, settings.risk_usage_min_spend)


async def usage_features(
    conn: AsyncConnection,
    customer_id: uuid.UUID,
    asset: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    baseline_days: int = 14,
) -> UsageFeatures:
    """Read one customer's usage in ``[period_start, period_end)`` and its trailing baseline."""
    if period_end <= period_start:
        raise ValueError("period_end must be after period_start")
    baseline_start = period_start - dt.timedelta(days=baseline_days)
    mine = (usage_events.c.customer_id == customer_id) & (usage_events.c.asset == asset)
    in_period = (usage_events.c.occurred_at >= period_start) & (usage_events.c.occurred_at < period_end)
    in_baseline = (usage_events.c.occurred_at >= baseline_start) & (usage_events.c.occurred_at < period_start)

    spend, events, types, base_spend, base_events, first = (
        await conn.execute(
            select(
                func.coalesce(func.sum(usage_events.c.amount).filter(in_period), 0),
                func.count().filter(in_period),
                func.count(func.distinct(usage_events.c.event_type)).filter(in_period),
                func.coalesce(func.sum(usage_events.c.amount).filter(in_baseline), 0),
                func.count().filter(in_baseline),
                func.min(usage_events.c.occurred_at),
            ).where(mine)
        )
    ).one()

    model = usage_events.c.data["model"].as_string()
    period_models = set((await conn.execute(
        select(model).where(mine, in_period, model.is_not(None)).distinct().limit(MAX_MODELS)
    )).scalars())
    baseline_models = set((await conn.execute(
        select(model).where(mine, in_baseline, model.is_not(None)).distinct().limit(MAX_MODELS)
    )).scalars())

    busiest = Counter[int]()
    for occurred_at, amount in (await conn.execute(
        select(usage_events.c.occurred_at, usage_events.c.amount).where(mine, in_period)
        .order_by(usage_events.c.amount.desc()).limit(1000)
    )).all():
        busiest[occurred_at.hour] += int(amount)
    usual_hours = {at.hour for at in (await conn.execute(
        select(usage_events.c.occurred_at).where(mine, in_baseline)
        .order_by(usage_events.c.occurred_at.desc()).limit(MAX_BASELINE_HOURS_EVENTS)
    )).scalars()}
    period_total = sum(busiest.values())
    odd_hour_share = (
        sum(v for hour, v in busiest.items() if hour not in usual_hours) / period_total
        if usual_hours and period_total > 0 else 0.0
    )

    topups = (await conn.execute(
        select(func.count()).where(
            top_ups.c.customer_id == customer_id, top_ups.c.asset == asset,
            top_ups.c.created_at >= period_start, top_ups.c.created_at < period_end,
        )
    )).scalar_one()

    periods_in_baseline = dt.timedelta(days=baseline_days) / (period_end - period_start)
    history_days = max(0.0, (period_start - first).total_seconds() / 86_400) if first is not None else 0.0
    # The baseline covers only the days the customer existed: a week-old customer's average is
    # over that week, not diluted by the empty week before it.
    covered = min(periods_in_baseline, history_days * 86_400 / (period_end - period_start).total_seconds())
    return UsageFeatures(
        customer_id=customer_id,
        asset=asset,
        period_start=period_start,
        period_end=period_end,
        spend=int(spend),
        baseline_spend=float(base_spend) / covered if covered > 0 else 0.0,
        events=int(events),
        baseline_events=float(base_events) / covered if covered > 0 else 0.0,
        event_types=int(types),
        new_models=len(period_models - baseline_models) if baseline_models else 0,
        history_days=round(history_days, 3),
        topups=int(topups),
        hour_of_day=busiest.most_common(1)[0][0] if busiest else period_end.hour,
        odd_hour_share=round(odd_hour_share, 4),
    )


def score_usage(features: UsageFeatures, thresholds: UsageThresholds | None = None) -> RiskResult:
    """Score one period's usage: approve, or review / reject (the caller freezes the wallet)."""
    t = thresholds or UsageThresholds()
    f = features
    fired: list[tuple[int, str, str]] = []
    scored = f.spend >= t.min_spend and f.history_days >= t.min_history_days and f.baseline_spend > 0
    if scored:
        ratio = f.spend_ratio
        if ratio >= t.reject_ratio:
            fired.append((100, "usage_spike", f"spend {f.spend} is {ratio:.1f}x the baseline {f.baseline_spend:.0f} per period (reject at {t.reject_ratio:g}x)"))
        elif ratio >= t.review_ratio:
            fired.append((60, "usage_spike", f"spend {f.spend} is {ratio:.1f}x the baseline {f.baseline_spend:.0f} per period (review at {t.review_ratio:g}x)"))
        if f.event_ratio >= t.review_ratio:
            fired.append((20, "event_rate_spike", f"{f.events} events is {f.event_ratio:.1f}x the baseline {f.baseline_events:.1f} per period"))
        if f.new_models and ratio >= t.review_ratio / 2:
            fired.append((20, "new_models", f"{f.new_models} model(s) never used before, with spend up {ratio:.1f}x"))
        if f.topups >= 3 and ratio >= t.review_ratio / 2:
            fired.append((10, "repeated_topups", f"{f.topups} top-ups in the period while spend is up {ratio:.1f}x"))
    fired.sort(key=lambda item: -item[0])
    score = min(100, sum(w for w, _, _ in fired))
    decision: Decision = "reject" if score >= 100 else "review" if score >= 60 else "approve"
    details = {k: (v.isoformat() if isinstance(v, dt.datetime) else str(v) if isinstance(v, uuid.UUID) else v)
               for k, v in asdict(f).items()}
    return RiskResult(score, decision, [r for _, r, _ in fired], [e for _, _, e in fired], details, "usage-rules-1")
