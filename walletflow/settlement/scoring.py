"""Usage scoring: one step of settlement that looks at each customer's spend in the period and
may freeze the wallet pending review (a leaked API key burning through a wallet looks like a
sudden spike against the customer's own history).

The step is three separate parts so the scorer can be swapped without touching the rest:

1. :func:`collect_usage` reads per-customer usage from the ledger (the period's spend per asset
   and a trailing baseline);
2. a :class:`UsageScorer` (``score_usage(usage) -> decisions``) decides; :class:`SpikeRules` is
   the ledger-spend rules check, and :func:`risk_flags` adds the risk module's usage scorer
   (:class:`walletflow.risk.usage_model.UsageRiskScorer`: the trained usage model the worker
   loaded, plus the usage rules of ``walletflow.risk.usage``, on usage events against the
   customer's own baseline); either can freeze (:func:`combine`);
3. :func:`apply_decisions` freezes the flagged wallets (``Ledger.freeze``), records a
   :class:`~walletflow.settlement.models.UsageReview` and emits ``wallet.frozen`` and
   ``review.required``, once per customer and period however often it runs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, cast

from sqlalchemy import Table, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.repository import _insert_ignore
from walletflow.ledger.service import Ledger
from walletflow.risk.usage import UsageThresholds, usage_features
from walletflow.risk.usage_model import UsageRiskScorer
from walletflow.settlement.contracts import UsageFlag
from walletflow.settlement.models import UsageReview
from walletflow.settlement.periods import Period
from walletflow.webhooks.outbox import emit

usage_reviews = cast(Table, UsageReview.__table__)
t, e, a, c = ledger_repo.transactions, ledger_repo.entries, ledger_repo.accounts, ledger_repo.customers
#: Ledger transaction kinds that are a customer's usage: metered debits and captured holds.
USAGE_KINDS = ("usage", "capture")
_CHUNK = 500


@dataclass(frozen=True)
class AssetUsage:
    asset: str
    #: Spent in the period, minor units.
    spend: int
    #: Spent over the ``baseline_periods`` periods before it, minor units.
    baseline_total: int
    baseline_periods: int


@dataclass(frozen=True)
class CustomerUsage:
    customer_id: uuid.UUID
    period: str
    #: ``active`` or ``frozen`` (already frozen, by an operator or an earlier decision).
    status: str
    assets: tuple[AssetUsage, ...]


@dataclass(frozen=True)
class UsageDecision:
    customer_id: uuid.UUID
    action: Literal["ok", "freeze"]
    #: 0 (normal) to 100 (certainly abuse).
    score: int
    reasons: tuple[str, ...] = ()


class UsageScorer(Protocol):
    """Decides, per customer, whether the period's usage is abuse. Pure: no I/O."""

    def score_usage(self, usage: Sequence[CustomerUsage]) -> list[UsageDecision]: ...


@dataclass(frozen=True)
class SpikeRules:
    """The rules check: freeze when, in any asset, the period's spend is at least
    ``min_amount`` and more than ``factor`` times the customer's average spend per period over
    the baseline window. A customer with no history and a spend of ``min_amount`` or more is
    flagged too (new accounts that burn money fast are the classic stolen-key pattern).

    Score: 50 at exactly ``factor`` times the baseline, rising with the ratio, capped at 100;
    100 with no baseline at all.
    """

    factor: int = 10
    min_amount: int = 10_000

    def score_usage(self, usage: Sequence[CustomerUsage]) -> list[UsageDecision]:
        decisions = []
        for customer in usage:
            score, reasons = 0, []
            for asset in customer.assets:
                asset_score = self._score(asset)
                score = max(score, asset_score)
                if self._spike(asset):
                    average = asset.baseline_total // max(asset.baseline_periods, 1)
                    reasons.append(
                        f"{asset.asset}: spent {asset.spend} in the period against an average of {average} "
                        f"per period over the {asset.baseline_periods} before (more than {self.factor}x)"
                    )
            action: Literal["ok", "freeze"] = "freeze" if reasons else "ok"
            decisions.append(UsageDecision(customer.customer_id, action, score, tuple(reasons)))
        return decisions

    def _spike(self, usage: AssetUsage) -> bool:
        # Integer arithmetic: spend / (total / periods) > factor  <=>  spend * periods > factor * total.
        return usage.spend >= self.min_amount and usage.spend * usage.baseline_periods > self.factor * usage.baseline_total

    def _score(self, usage: AssetUsage) -> int:
        if usage.baseline_total <= 0:
            return 100 if usage.spend >= self.min_amount else 0
        return min(100, 50 * usage.spend * usage.baseline_periods // (self.factor * usage.baseline_total))


async def risk_flags(
    engine: AsyncEngine, period: Period, usage: Sequence[CustomerUsage],
    scorer: UsageRiskScorer | UsageThresholds,
) -> dict[uuid.UUID, UsageDecision]:
    """The risk module's usage scorer (model plus rules: the period's usage events against the
    customer's own trailing baseline, event rate, never-used models, odd hours, repeated top-ups)
    for every customer who spent in the period; the ones it flags (review or reject). Given bare
    ``UsageThresholds``, the usage rules alone.

    One read per (customer, asset) that spent in the period: settlement runs once a period."""
    if isinstance(scorer, UsageThresholds):
        scorer = UsageRiskScorer(None, scorer)
    flagged: dict[uuid.UUID, UsageDecision] = {}
    async with engine.connect() as conn:
        for customer in usage:
            for asset in customer.assets:
                features = await usage_features(conn, customer.customer_id, asset.asset, period.start, period.end)
                result = scorer.score(features)
                prior = flagged.get(customer.customer_id)
                if result.decision != "approve" and (prior is None or result.score > prior.score):
                    reasons = tuple(f"{asset.asset}: {why}" for why in result.explanations)
                    flagged[customer.customer_id] = UsageDecision(customer.customer_id, "freeze", result.score, reasons)
    return flagged


def combine(decisions: Sequence[UsageDecision], flagged: dict[uuid.UUID, UsageDecision]) -> list[UsageDecision]:
    """Freeze when either scorer says so; keep every reason and the higher score."""
    combined = []
    for decision in decisions:
        risk = flagged.get(decision.customer_id)
        if risk is None:
            combined.append(decision)
        elif decision.action == "freeze":
            combined.append(replace(decision, score=max(decision.score, risk.score), reasons=decision.reasons + risk.reasons))
        else:
            combined.append(risk)
    return combined


async def collect_usage(engine: AsyncEngine, period: Period, baseline_periods: int) -> list[CustomerUsage]:
    """Every customer who spent something in ``period``, with their trailing baseline."""
    async with engine.connect() as conn:
        spend = await _spend(conn, period.start, period.end, None)
        customers = sorted({customer for customer, _ in spend})
        baseline: dict[tuple[uuid.UUID, str], int] = {}
        statuses: dict[uuid.UUID, str] = {}
        window_start = period.shift(-baseline_periods).start
        for i in range(0, len(customers), _CHUNK):
            chunk = customers[i:i + _CHUNK]
            baseline.update(await _spend(conn, window_start, period.start, chunk))
            rows = await conn.execute(select(c.c.id, c.c.status).where(c.c.id.in_(chunk)))
            statuses.update({r.id: r.status for r in rows})
    by_customer: dict[uuid.UUID, list[AssetUsage]] = {}
    for (customer, asset), amount in sorted(spend.items()):
        by_customer.setdefault(customer, []).append(
            AssetUsage(asset, amount, baseline.get((customer, asset), 0), baseline_periods)
        )
    return [CustomerUsage(cid, period.key, statuses.get(cid, "active"), tuple(assets))
            for cid, assets in by_customer.items()]


async def _spend(
    conn: AsyncConnection, start: dt.datetime, end: dt.datetime, customers: Sequence[uuid.UUID] | None
) -> dict[tuple[uuid.UUID, str], int]:
    total = (-func.sum(e.c.amount)).label("spend")
    query = (
        select(a.c.customer_id, e.c.asset, total)
        .join(e, e.c.account_id == a.c.id)
        .join(t, t.c.id == e.c.transaction_id)
        .where(a.c.customer_id.is_not(None), t.c.kind.in_(USAGE_KINDS), t.c.created_at >= start, t.c.created_at < end)
        .group_by(a.c.customer_id, e.c.asset)
    )
    if customers is not None:
        query = query.where(a.c.customer_id.in_(customers))
    return {(r.customer_id, r.asset): int(r.spend) for r in await conn.execute(query) if r.spend and r.spend > 0}


async def apply_decisions(
    engine: AsyncEngine, ledger: Ledger, period: Period, usage: Sequence[CustomerUsage],
    decisions: Sequence[UsageDecision], now: dt.datetime,
) -> list[UsageFlag]:
    """Freeze every wallet the scorer flagged, once per (customer, period).

    The review row is claimed first, recording whether the wallet was already frozen; the freeze
    and the events follow, and ``frozen_at`` marks them done. A retry after a crash in between
    repeats only what is not marked done; a customer an operator unfroze is never refrozen by a
    rerun of the same period.
    """
    by_customer = {u.customer_id: u for u in usage}
    flags = []
    for decision in decisions:
        if decision.action != "freeze":
            continue
        customer_usage = by_customer.get(decision.customer_id)
        details: dict[str, Any] = {
            "was_frozen": customer_usage is not None and customer_usage.status == "frozen",
            "assets": {u.asset: {"spend": u.spend, "baseline_total": u.baseline_total,
                                 "baseline_periods": u.baseline_periods}
                       for u in (customer_usage.assets if customer_usage else ())},
        }

        async def claim(conn: AsyncConnection, d: UsageDecision = decision, det: dict[str, Any] = details) -> Any:
            await conn.execute(_insert_ignore(conn, usage_reviews).values(
                id=uuid.uuid4(), customer_id=d.customer_id, period=period.key, score=d.score,
                reasons=list(d.reasons), details=det, frozen_at=None, created_at=now,
            ))
            return (await conn.execute(select(usage_reviews).where(
                usage_reviews.c.customer_id == d.customer_id, usage_reviews.c.period == period.key
            ))).one()

        review = await in_transaction(engine, claim)
        was_frozen = bool(review.details.get("was_frozen"))
        flags.append(UsageFlag(customer_id=str(review.customer_id), score=review.score, reasons=list(review.reasons),
                               action="already_frozen" if was_frozen else "frozen"))
        if review.frozen_at is not None:
            continue
        if not was_frozen:
            await ledger.freeze(review.customer_id)
        await in_transaction(engine, _announcer(review, was_frozen, period, now))
    return flags


def _announcer(
    review: Any, was_frozen: bool, period: Period, now: dt.datetime
) -> Callable[[AsyncConnection], Awaitable[None]]:
    return lambda conn: _announce(conn, review, was_frozen, period, now)


async def _announce(conn: AsyncConnection, review: Any, was_frozen: bool, period: Period, now: dt.datetime) -> None:
    data = {"customer_id": str(review.customer_id), "period": period.key, "score": review.score,
            "reasons": list(review.reasons), "review_id": str(review.id), "source": "usage_settlement"}
    if not was_frozen:
        await emit(conn, "wallet.frozen", data, f"wallet.frozen:usage:{period.key}:{review.customer_id}",
                   customer_id=review.customer_id, now=now)
    await emit(conn, "review.required", {**data, "kind": "usage_spike"},
               f"review.required:usage:{period.key}:{review.customer_id}", customer_id=review.customer_id, now=now)
    await conn.execute(
        update(usage_reviews)
        .where(and_(usage_reviews.c.id == review.id, usage_reviews.c.frozen_at.is_(None)))
        .values(frozen_at=now)
    )
