"""The trained usage model and the settlement scorer that combines it with the usage rules.

Why this model:

* **A supervised gradient-boosted classifier** (``HistGradientBoostingClassifier``) on the usage
  features of :mod:`walletflow.risk.usage`, each taken *against the customer's own baseline*
  (spend ratio, event ratio, cost per event ratio) plus never-used models, the share of spend at
  hours the customer is never active, top-ups in the period and how long the customer has had
  usage. The dangerous cases are combinations no single threshold sees: a subtle leaked key
  spends only 2-4x the baseline (an honest growing customer or a busy day does that too) but on
  never-used models, in many cheap calls, at hours the customer sleeps. Trees learn such
  interactions from labels (operators' usage reviews, the simulator's attacks); an
  IsolationForest alone would call every honest busy day "unusual" and miss a subtle key that is
  unusual only in combination. Multi-class, so it names the scenario it matched, and it scores
  one period in well under a millisecond (flattened like the credit model's).
* **An IsolationForest** on normal periods' feature vectors (each already relative to the
  customer's own history) as a novelty guard for patterns no label covers yet: a period stranger
  than 99.9 % of normal training periods goes to review, never straight to reject.
* **The explicit usage rules** (:func:`walletflow.risk.usage.score_usage`) stay as guard rails
  an operator sets: :class:`UsageRiskScorer` takes the stricter decision and the higher score of
  model and rules, with the reasons of both.

Spend under ``min_spend`` is never a spike for the model either (freezing a wallet over cents
helps nobody), and neither looks at a customer without a baseline (see the simulator's notes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from walletflow.risk.model import (
    FastScoring,
    ModelThresholds,
    TrainParams,
    fit,
    normal_ranges,
    verdict,
)
from walletflow.risk.rules import Decision, RiskResult
from walletflow.risk.usage import UsageFeatures, UsageThresholds, score_usage
from walletflow.risk.usage_simulate import CSV_FEATURES, NORMAL, UsageRow

#: Share of normal training periods the novelty guard lets through (freezing is costly).
USAGE_NOVELTY_QUANTILE = 0.999
_SEVERITY = {"approve": 0, "review": 1, "reject": 2}

#: What the usage model sees, in this order (see :func:`usage_vector`).
USAGE_MODEL_FEATURES: tuple[str, ...] = (
    "has_baseline",
    "log_spend_ratio",
    "log_event_ratio",
    "log_cost_per_event_ratio",
    "log_spend",
    "log_events",
    "log_history_days",
    "new_models",
    "event_types",
    "topups",
    "odd_hour_share",
)


def usage_vector(f: UsageFeatures) -> list[float]:
    """The model's input for one period, in :data:`USAGE_MODEL_FEATURES` order.

    Ratios are logs (2x up and 2x down are the same distance) with +1 smoothing; without a
    baseline they are 0 and ``has_baseline`` says so.
    """
    base = f.baseline_spend > 0 and f.baseline_events > 0
    spend_ratio = math.log((f.spend + 1) / (f.baseline_spend + 1)) if base else 0.0
    event_ratio = math.log((f.events + 1) / (f.baseline_events + 1)) if base else 0.0
    cost_ratio = (
        math.log(((f.spend + 1) / (f.events + 1)) / ((f.baseline_spend + 1) / (f.baseline_events + 1))) if base else 0.0
    )
    return [
        1.0 if base else 0.0,
        spend_ratio,
        event_ratio,
        cost_ratio,
        math.log1p(f.spend),
        math.log1p(f.events),
        math.log1p(max(0.0, f.history_days)),
        float(f.new_models),
        float(f.event_types),
        float(f.topups),
        float(f.odd_hour_share),
    ]


@dataclass
class UsageModel(FastScoring):
    """The usage section of a risk artifact (pickled with the credit model, same hash and HMAC)."""

    classifier: HistGradientBoostingClassifier
    novelty: IsolationForest
    novelty_threshold: float
    labels: list[str]
    #: Per raw feature, (median, 99th percentile) over normal training periods, to explain scores.
    normal_ranges: dict[str, tuple[float, float]]
    feature_names: list[str] = field(default_factory=lambda: list(USAGE_MODEL_FEATURES))
    training: dict[str, Any] = field(default_factory=dict)
    _flat: Any = field(default=None, repr=False, compare=False)

    def prepare(self) -> UsageModel:
        self._flatten()
        return self


def train_usage(rows: Sequence[UsageRow], params: TrainParams | None = None) -> UsageModel:
    """Fit the classifier on all periods and the novelty forest on the normal ones."""
    params = params or TrainParams()
    x = np.asarray([usage_vector(f) for f, _, _ in rows], dtype=float)
    y = np.asarray([label for _, label, _ in rows])
    classifier, novelty, threshold, labels, counts = fit(x, y, params, USAGE_NOVELTY_QUANTILE)
    raw = np.asarray([[float(getattr(f, name)) for name in CSV_FEATURES] for f, label, _ in rows if label == NORMAL])
    return UsageModel(
        classifier, novelty, threshold, labels, normal_ranges(raw, CSV_FEATURES),
        training={"rows": len(rows), "class_counts": counts, "params": asdict(params)},
    ).prepare()


class UsageRiskScorer:
    """Usage model plus usage rules: the stricter decision and the higher score win, every reason
    is kept (rules' first). Without a model it is the rules alone."""

    def __init__(
        self,
        model: UsageModel | None,
        thresholds: UsageThresholds | None = None,
        model_thresholds: ModelThresholds | None = None,
        model_version: str | None = None,
    ) -> None:
        self.model = model.prepare() if model is not None else None
        self.thresholds = thresholds or UsageThresholds()
        self.model_thresholds = model_thresholds or ModelThresholds()
        self.model_version = model_version

    def with_thresholds(self, thresholds: UsageThresholds) -> UsageRiskScorer:
        """The same model with other rule thresholds (tests, the CLI)."""
        return UsageRiskScorer(self.model, thresholds, self.model_thresholds, self.model_version)

    def score(self, features: UsageFeatures) -> RiskResult:
        ruled = score_usage(features, self.thresholds)
        score, decision = ruled.score, ruled.decision
        reasons, explanations = list(ruled.reasons), list(ruled.explanations)
        if self.model is not None and features.spend >= self.thresholds.min_spend:
            m_score, m_decision, m_reasons, m_explanations = self._model_verdict(features)
            score = max(score, m_score)
            if _SEVERITY[m_decision] > _SEVERITY[decision]:
                decision = m_decision
            reasons += m_reasons
            explanations += m_explanations
        version = f"{ruled.model_version}+{self.model_version}" if self.model is not None else ruled.model_version
        return dataclasses.replace(
            ruled, score=score, decision=decision, reasons=reasons, explanations=explanations, model_version=version
        )

    def _model_verdict(self, features: UsageFeatures) -> tuple[int, Decision, list[str], list[str]]:
        assert self.model is not None
        score, decision, reasons, explanations = verdict(
            self.model, usage_vector(features), self.model_thresholds, subject="the usage model", harm="abuse",
            unusual=("unusual_usage", "this period's usage is unlike 99.9% of normal usage the model was trained on"),
        )
        if decision != "approve":
            explanations += self._context(features)
        return score, decision, reasons, explanations

    def _context(self, features: UsageFeatures) -> list[str]:
        """What the model saw, as one sentence an operator can check against the customer."""
        f = features
        parts = [f"spend {f.spend} vs baseline {f.baseline_spend:.0f} per period ({f.spend_ratio:.1f}x)",
                 f"{f.events} events vs {f.baseline_events:.1f} ({f.event_ratio:.1f}x)"]
        if f.new_models:
            parts.append(f"{f.new_models} never-used model(s)")
        if f.odd_hour_share > 0:
            parts.append(f"{f.odd_hour_share:.0%} of the spend at hours the customer was never active")
        return ["; ".join(parts)]
