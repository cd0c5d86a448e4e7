"""The trained risk model and the scorer that combines it with the rules.

Why this model (see the README's "Risk scoring"):

* **A supervised gradient-boosted classifier** (scikit-learn's ``HistGradientBoostingClassifier``)
  learns each labelled attack against normal traffic. Labels exist here — disputes, refunds and
  operators' review decisions in the database, every attack in the simulator — and with labels a
  supervised model beats an unsupervised one on the patterns we know: an IsolationForest alone
  only sees "unusual", and a customer's honest one-off large top-up is unusual too. It is
  multi-class, so it also says *which* attack a payment looks like, and it predicts one row in
  well under a millisecond.
* **An IsolationForest** trained on normal traffic only, as a novelty guard for what no label
  has shown yet: a payment stranger than 99.8 % of normal training traffic goes to review (never
  straight to reject). sklearn evaluates an IsolationForest tree by tree in Python (~2 ms for one
  row), so its trees are flattened into arrays once at load time and walked here directly
  (:class:`_FlatForest`); a test checks the result equals sklearn's ``score_samples``.
* **Explicit rules** (:mod:`walletflow.risk.rules`) still run: hard limits an operator sets
  (amount limits, velocity) force review or reject whatever the model says, and say why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest

from walletflow.risk.features import MODEL_FEATURES, RAW_FEATURES, as_dict, vector
from walletflow.risk.rules import Decision, RiskFeatures, RiskResult, RulesScorer
from walletflow.risk.simulate import NORMAL, Row

#: Share of normal training traffic the novelty guard lets through (the rest would be review).
NOVELTY_QUANTILE = 0.998
_SEVERITY = {"approve": 0, "review": 1, "reject": 2}


@dataclass(frozen=True)
class TrainParams:
    """Small by default: trains 100,000 rows in seconds on two cores."""

    max_iter: int = 150
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    novelty_trees: int = 60
    random_state: int = 0


@dataclass
class RiskModel:
    """What an artifact holds: the classifier, the novelty forest, and what normal looks like."""

    classifier: HistGradientBoostingClassifier
    novelty: IsolationForest
    #: IsolationForest anomaly score (higher: stranger) above which a payment is novel.
    novelty_threshold: float
    labels: list[str]
    #: Per raw feature, (median, 99th percentile) over normal training traffic, to explain scores.
    normal_ranges: dict[str, tuple[float, float]]
    feature_names: list[str] = field(default_factory=lambda: list(MODEL_FEATURES))
    training: dict[str, Any] = field(default_factory=dict)
    _flat: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_flat"] = None  # rebuilt after loading; never part of the artifact
        return state

    def prepare(self) -> RiskModel:
        """Flatten the novelty forest for fast single-row scoring (done once per process)."""
        if self._flat is None:
            self._flat = _FlatForest(self.novelty)
        return self

    def fraud_probabilities(self, x: Sequence[float]) -> dict[str, float]:
        proba = self.classifier.predict_proba(np.asarray([x], dtype=float))[0]
        return {str(label): float(p) for label, p in zip(self.classifier.classes_, proba, strict=True)}

    def novelty_score(self, x: Sequence[float]) -> float:
        return float(self.prepare()._flat.anomaly_score(x))


def train(rows: Sequence[Row], params: TrainParams | None = None) -> RiskModel:
    """Fit the classifier on all rows and the novelty forest on the normal ones."""
    params = params or TrainParams()
    labels = sorted({label for _, label in rows})
    if NORMAL not in labels or len(labels) < 2:
        raise ValueError("training needs normal rows and at least one kind of attack")
    x = np.asarray([vector(f) for f, _ in rows], dtype=float)
    y = np.asarray([label for _, label in rows])
    # Attacks are rare: weigh each class equally so the rare ones are not ignored.
    counts = {label: int((y == label).sum()) for label in labels}
    weights = np.asarray([len(y) / (len(labels) * counts[label]) for label in y])
    classifier = HistGradientBoostingClassifier(
        max_iter=params.max_iter, learning_rate=params.learning_rate, max_leaf_nodes=params.max_leaf_nodes,
        early_stopping=False, random_state=params.random_state,
    )
    classifier.fit(x, y, sample_weight=weights)

    normal_x = x[y == NORMAL]
    novelty = IsolationForest(
        n_estimators=params.novelty_trees, max_samples=min(256, len(normal_x)), random_state=params.random_state
    ).fit(normal_x)
    threshold = float(np.quantile(-novelty.score_samples(normal_x), NOVELTY_QUANTILE))

    raw = np.asarray([[float(v) for v in as_dict(f).values()] for f, label in rows if label == NORMAL])
    ranges = {
        name: (float(np.median(raw[:, i])), float(np.quantile(raw[:, i], 0.99))) for i, name in enumerate(RAW_FEATURES)
    }
    return RiskModel(
        classifier, novelty, threshold, labels, ranges,
        training={"rows": len(rows), "class_counts": counts, "params": vars(params) if hasattr(params, "__dict__") else {}},
    ).prepare()


@dataclass(frozen=True)
class ModelThresholds:
    """Model score (100 x probability of fraud) at or above which a payment is reviewed or rejected."""

    review_score: int = 50
    reject_score: int = 98


class CombinedScorer:
    """Model plus rules: the higher score and the more severe decision win; every reason is kept.

    Without a model it is the rules alone (the worker logs that loudly).
    """

    def __init__(
        self,
        model: RiskModel | None,
        rules: RulesScorer | None = None,
        thresholds: ModelThresholds | None = None,
        model_version: str | None = None,
    ) -> None:
        self.model = model.prepare() if model is not None else None
        self.rules = rules or RulesScorer()
        self.thresholds = thresholds or ModelThresholds()
        self.model_version = model_version

    def score(self, features: RiskFeatures) -> RiskResult:
        ruled = self.rules.score(features)
        score, decision = ruled.score, ruled.decision
        reasons, explanations = list(ruled.reasons), list(ruled.explanations)
        if self.model is not None:
            m_score, m_decision, m_reasons, m_explanations = self._model_verdict(features)
            score = max(score, m_score)
            if _SEVERITY[m_decision] > _SEVERITY[decision]:
                decision = m_decision
            reasons += m_reasons
            explanations += m_explanations
        return RiskResult(score, decision, reasons, explanations, as_dict(features), self.model_version)

    def _model_verdict(self, features: RiskFeatures) -> tuple[int, Decision, list[str], list[str]]:
        assert self.model is not None
        t = self.thresholds
        x = vector(features)
        proba = self.model.fraud_probabilities(x)
        p_fraud = 1.0 - proba.get(NORMAL, 0.0)
        score = min(100, int(math.floor(100 * p_fraud)))
        decision: Decision = "reject" if score >= t.reject_score else "review" if score >= t.review_score else "approve"
        reasons: list[str] = []
        explanations: list[str] = []
        if decision != "approve":
            attack = max((p, label) for label, p in proba.items() if label != NORMAL)[1]
            reasons.append(f"model_{attack}")
            explanations.append(
                f"the model puts the chance of fraud at {p_fraud:.2f}; it looks most like {attack.replace('_', ' ')}"
            )
        elif self.model.novelty_score(x) > self.model.novelty_threshold:
            # Nothing we have labels for, but unlike normal traffic: a human should look.
            decision = "review"
            score = max(score, t.review_score)
            reasons.append("unusual_pattern")
            explanations.append("this payment is unlike 99.8% of normal traffic the model was trained on")
        if decision != "approve":
            explanations += self._outliers(features)
        return score, decision, reasons, explanations

    def _outliers(self, features: RiskFeatures, limit: int = 3) -> list[str]:
        """The raw features furthest above what normal customers show, as sentences."""
        assert self.model is not None
        found: list[tuple[float, str]] = []
        for name, value in as_dict(features).items():
            if name == "hour_of_day" or name not in self.model.normal_ranges:
                continue
            median, p99 = self.model.normal_ranges[name]
            if value > p99:
                spread = max(p99 - median, 1e-9)
                found.append(((value - p99) / spread, f"{name} = {value:g} (99% of normal payments: at most {p99:g})"))
        found.sort(key=lambda item: -item[0])
        return [text for _, text in found[:limit]]


class _FlatForest:
    """An IsolationForest's trees as plain lists, walked in Python for one row at a time.

    Same arithmetic as ``IsolationForest.score_samples`` (depth of the leaf plus the average
    path length of the samples left there, averaged over trees, normalised by c(max_samples)),
    without sklearn's per-call validation and per-tree overhead.
    """

    def __init__(self, forest: IsolationForest) -> None:
        self.trees: list[tuple[list[int], list[int], list[int], list[float], list[float]]] = []
        # sklearn trains each tree on a column subset only when it draws fewer than all features.
        subset = forest._max_features != forest.n_features_in_
        for tree, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            depth_bonus = [_average_path_length(int(n)) for n in t.n_node_samples]
            mapped = [(int(features[f]) if subset else int(f)) if f >= 0 else -1 for f in t.feature]
            self.trees.append(
                (list(t.children_left), list(t.children_right), mapped, list(t.threshold), depth_bonus)
            )
        self.norm = _average_path_length(int(forest.max_samples_))

    def anomaly_score(self, x: Sequence[float]) -> float:
        """Higher is stranger (sklearn's ``-score_samples``), in (0, 1)."""
        x = [float(np.float32(v)) for v in x]  # sklearn's trees compare float32 inputs
        total = 0.0
        for left, right, feature, threshold, bonus in self.trees:
            node, depth = 0, 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
                depth += 1
            total += depth + bonus[node]
        return 2.0 ** (-(total / len(self.trees)) / self.norm)


def _average_path_length(n: int) -> float:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n
