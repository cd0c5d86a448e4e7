"""A rules-based risk scorer for money coming into a wallet.

The interface (:class:`RiskFeatures` in, :class:`RiskResult` out, :class:`Scorer`) is what the
top-up workflow depends on; a trained model (IsolationForest) can later implement the same
``score`` and be combined with these rules without touching the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Decision = Literal["approve", "review", "reject"]


@dataclass(frozen=True)
class RiskFeatures:
    """What the scorer knows about one incoming payment. Amounts in minor units of its currency."""

    amount: int
    #: Earlier top-ups of this customer that were paid and credited.
    succeeded_count: int
    #: The largest of those, in minor units of the same currency (0 without history).
    largest_succeeded_amount: int
    #: Top-ups this customer started in the last hour, this one excluded.
    started_last_hour: int
    #: Top-ups of this customer that failed (declined, abandoned) in the last 24 hours.
    failed_last_24h: int
    # The fields below feed the model (walletflow/risk/features.py documents each one); their
    # defaults describe "nothing known", so older callers keep working.
    #: Median of the earlier paid top-ups (last 100), same currency; 0 without history.
    median_succeeded_amount: int = 0
    #: Top-ups this customer started in the last 24 hours, this one excluded.
    started_last_24h: int = 0
    #: Hours since the customer was created.
    account_age_h: float = 0.0
    #: Other customers who paid a top-up with the same card (Stripe card fingerprint).
    card_customers: int = 0
    #: Earlier top-ups of this customer that were refunded (in full or in part).
    refunds: int = 0
    #: Disputes (chargebacks) on this customer's top-ups so far.
    disputes: int = 0
    #: Usage spend (ledger debits of usage and captures) in the last 24 hours, minor units.
    spend_24h: int = 0
    #: Average daily usage spend over the 30 days before that, minor units.
    spend_daily_baseline: int = 0
    #: Usage spend divided by paid top-ups, both over the last 90 days (0 without top-ups).
    usage_to_topup: float = 0.0
    #: Hour of day (UTC, 0-23) when the payment was scored.
    hour_of_day: int = 12
    #: 1 when the payment is an auto-recharge (an off-session charge of the saved card that the
    #: wallet's recharge policy made), 0 when the customer started it.
    auto_recharge: int = 0


@dataclass(frozen=True)
class RiskThresholds:
    review_amount: int = 100_000
    reject_amount: int = 1_000_000
    history_multiple: int = 10
    max_topups_per_hour: int = 5
    max_failed_24h: int = 3
    review_score: int = 40
    reject_score: int = 100


@dataclass(frozen=True)
class RiskResult:
    #: 0 (nothing unusual) to 100 (certainly refuse).
    score: int
    decision: Decision
    #: Machine codes of the rules that fired, most severe first.
    reasons: list[str] = field(default_factory=list)
    #: One human-readable sentence per reason, for the operator (same order).
    explanations: list[str] = field(default_factory=list)
    #: The feature values the decision was made on (stored with the decision).
    features: dict[str, float] = field(default_factory=dict)
    #: The model artifact version behind the score (None: rules only).
    model_version: str | None = None


class Scorer(Protocol):
    def score(self, features: RiskFeatures) -> RiskResult: ...


class RulesScorer:
    """Adds a fixed weight per rule that fires; the total (capped at 100) picks the decision."""

    def __init__(self, thresholds: RiskThresholds | None = None) -> None:
        self.thresholds = thresholds or RiskThresholds()

    def score(self, features: RiskFeatures) -> RiskResult:
        t = self.thresholds
        f = features
        fired: list[tuple[int, str, str]] = []
        if f.amount >= t.reject_amount:
            fired.append((100, "amount_over_reject_limit", f"amount {f.amount} is at or over the reject limit {t.reject_amount}"))
        elif f.amount >= t.review_amount:
            fired.append((50, "amount_over_review_limit", f"amount {f.amount} is at or over the review limit {t.review_amount}"))
        # A first top-up has no history to compare with; the absolute limits above cover it.
        if f.succeeded_count and f.amount > t.history_multiple * f.largest_succeeded_amount:
            fired.append((40, "amount_far_above_history",
                          f"amount {f.amount} is over {t.history_multiple}x the largest paid top-up ({f.largest_succeeded_amount})"))
        if f.started_last_hour >= t.max_topups_per_hour:
            fired.append((40, "topup_velocity", f"{f.started_last_hour} other top-ups started in the last hour (limit {t.max_topups_per_hour})"))
        if f.failed_last_24h >= t.max_failed_24h:
            fired.append((40, "recent_failed_attempts", f"{f.failed_last_24h} failed top-ups in the last 24 hours (limit {t.max_failed_24h})"))
        fired.sort(key=lambda item: -item[0])
        total = min(100, sum(weight for weight, _, _ in fired))
        return RiskResult(
            total, self.decide(total), [reason for _, reason, _ in fired], [text for _, _, text in fired]
        )

    def decide(self, score: int) -> Decision:
        t = self.thresholds
        return "reject" if score >= t.reject_score else "review" if score >= t.review_score else "approve"
