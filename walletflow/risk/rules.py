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


class Scorer(Protocol):
    def score(self, features: RiskFeatures) -> RiskResult: ...


class RulesScorer:
    """Adds a fixed weight per rule that fires; the total (capped at 100) picks the decision."""

    def __init__(self, thresholds: RiskThresholds | None = None) -> None:
        self.thresholds = thresholds or RiskThresholds()

    def score(self, features: RiskFeatures) -> RiskResult:
        t = self.thresholds
        fired: list[tuple[int, str]] = []
        if features.amount >= t.reject_amount:
            fired.append((100, "amount_over_reject_limit"))
        elif features.amount >= t.review_amount:
            fired.append((50, "amount_over_review_limit"))
        # A first top-up has no history to compare with; the absolute limits above cover it.
        if features.succeeded_count and features.amount > t.history_multiple * features.largest_succeeded_amount:
            fired.append((40, "amount_far_above_history"))
        if features.started_last_hour >= t.max_topups_per_hour:
            fired.append((40, "topup_velocity"))
        if features.failed_last_24h >= t.max_failed_24h:
            fired.append((40, "recent_failed_attempts"))
        fired.sort(key=lambda item: -item[0])
        total = min(100, sum(weight for weight, _ in fired))
        decision: Decision = (
            "reject" if total >= t.reject_score else "review" if total >= t.review_score else "approve"
        )
        return RiskResult(total, decision, [reason for _, reason in fired])
