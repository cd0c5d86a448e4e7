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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from threadpoolctl import threadpool_limits

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
    #: OpenMP threads for fitting. One by default: measured on a busy 2-core machine, one thread
    #: trained 3-5x faster than two (OpenMP threads spin against each other for cores).
    threads: int | None = 1


class FastScoring:
    """Single-row scoring for a classifier plus a novelty forest (the credit model and the usage
    model): both are flattened once per process into plain arrays (``_flat``), never pickled."""

    classifier: HistGradientBoostingClassifier
    novelty: IsolationForest
    _flat: Any

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_flat"] = None  # rebuilt after loading; never part of the artifact
        return state

    def _flatten(self) -> tuple[_FlatBoosting, _FlatForest]:
        if self._flat is None:
            self._flat = (_FlatBoosting(self.classifier), _FlatForest(self.novelty))
        return self._flat  # type: ignore[no-any-return]

    def probabilities(self, x: Sequence[float]) -> dict[str, float]:
        """Class probabilities, equal to the classifier's ``predict_proba`` for this row."""
        boosting = self._flatten()[0]
        return dict(zip(boosting.classes, boosting.proba(x).tolist(), strict=True))

    def novelty_score(self, x: Sequence[float]) -> float:
        return float(self._flatten()[1].anomaly_score(x))


def fit(
    x: np.ndarray, y: np.ndarray, params: TrainParams, novelty_quantile: float
) -> tuple[HistGradientBoostingClassifier, IsolationForest, float, list[str], dict[str, int]]:
    """The classifier on all rows and the novelty forest on the normal ones; returns them, the
    novelty threshold (that quantile of normal rows' anomaly scores), the labels and their counts."""
    labels = sorted(set(y.tolist()))
    if NORMAL not in labels or len(labels) < 2:
        raise ValueError("training needs normal rows and at least one kind of attack")
    # Attacks are rare: weigh each class equally so the rare ones are not ignored.
    counts = {label: int((y == label).sum()) for label in labels}
    weights = np.asarray([len(y) / (len(labels) * counts[label]) for label in y])
    classifier = HistGradientBoostingClassifier(
        max_iter=params.max_iter, learning_rate=params.learning_rate, max_leaf_nodes=params.max_leaf_nodes,
        early_stopping=False, random_state=params.random_state,
    )
    with threadpool_limits(params.threads):
        classifier.fit(x, y, sample_weight=weights)

    normal_x = x[y == NORMAL]
    novelty = IsolationForest(
        n_estimators=params.novelty_trees, max_samples=min(256, len(normal_x)), random_state=params.random_state
    ).fit(normal_x)
    threshold = float(np.quantile(-novelty.score_samples(normal_x), novelty_quantile))
    return classifier, novelty, threshold, labels, counts


def normal_ranges(raw: np.ndarray, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per raw feature of the normal rows, (median, 99th percentile), to explain scores."""
    return {name: (float(np.median(raw[:, i])), float(np.quantile(raw[:, i], 0.99))) for i, name in enumerate(names)}


@dataclass
class RiskModel(FastScoring):
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
    #: The usage section (:class:`walletflow.risk.usage_model.UsageModel`), pickled with this
    #: model so one hash and one signature cover both. None in artifacts made before it existed
    #: (unpickling such an artifact finds this class default).
    usage: Any = None

    def prepare(self) -> RiskModel:
        self._flatten()
        if self.usage is not None:
            self.usage.prepare()
        return self

    def fraud_probabilities(self, x: Sequence[float]) -> dict[str, float]:
        return self.probabilities(x)


def train(rows: Sequence[Row], params: TrainParams | None = None) -> RiskModel:
    """Fit the classifier on all rows and the novelty forest on the normal ones."""
    params = params or TrainParams()
    x = np.asarray([vector(f) for f, _ in rows], dtype=float)
    y = np.asarray([label for _, label in rows])
    classifier, novelty, threshold, labels, counts = fit(x, y, params, NOVELTY_QUANTILE)
    # getattr, not dataclasses.asdict: asdict deep-copies every row and dominated training time.
    raw = np.asarray([[float(getattr(f, name)) for name in RAW_FEATURES] for f, label in rows if label == NORMAL])
    return RiskModel(
        classifier, novelty, threshold, labels, normal_ranges(raw, RAW_FEATURES),
        training={"rows": len(rows), "class_counts": counts, "params": asdict(params)},
    ).prepare()


@dataclass(frozen=True)
class ModelThresholds:
    """Model score (100 x probability of fraud) at or above which a payment is reviewed or rejected."""

    review_score: int = 50
    reject_score: int = 98


def verdict(
    model: RiskModel | Any, x: Sequence[float], t: ModelThresholds, *, subject: str, harm: str,
    unusual: tuple[str, str],
) -> tuple[int, Decision, list[str], list[str]]:
    """A model's score (100 x the probability of not normal), decision and reasons for one row:
    the likeliest attack when it is not approved, else ``unusual`` (reason, explanation) when the
    row is unlike the normal rows the model was trained on (nothing labelled, but a human should
    look)."""
    proba = model.probabilities(x)
    p_harm = 1.0 - proba.get(NORMAL, 0.0)
    score = min(100, int(math.floor(100 * p_harm)))
    decision: Decision = "reject" if score >= t.reject_score else "review" if score >= t.review_score else "approve"
    if decision != "approve":
        attack = max((p, label) for label, p in proba.items() if label != NORMAL)[1]
        return score, decision, [f"model_{attack}"], [
            f"{subject} puts the chance of {harm} at {p_harm:.2f}; it looks most like {attack.replace('_', ' ')}"
        ]
    if model.novelty_score(x) > model.novelty_threshold:
        return max(score, t.review_score), "review", [unusual[0]], [unusual[1]]
    return score, decision, [], []


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
        score, decision, reasons, explanations = verdict(
            self.model, vector(features), self.thresholds, subject="the model", harm="fraud",
            unusual=("unusual_pattern", "this payment is unlike 99.8% of normal traffic the model was trained on"),
        )
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


class _FlatBoosting:
    """A fitted HistGradientBoostingClassifier as flat numpy arrays, all trees walked at once.

    sklearn predicts tree by tree from Python (about 10 us each, so ~10 ms for 150 rounds of 7
    classes); here every tree advances one level per numpy step, so one row costs a few dozen
    vector operations. Same thresholds and leaf values, hence the same probabilities (a test
    compares them with ``predict_proba``). Our features are never missing, so the missing-value
    branch is not needed.
    """

    def __init__(self, classifier: HistGradientBoostingClassifier) -> None:
        feature, threshold, left, right, leaf, value, roots, tree_class = [], [], [], [], [], [], [], []
        offset, depth = 0, 0
        for per_class in classifier._predictors:
            for k, predictor in enumerate(per_class):
                nodes = predictor.nodes
                roots.append(offset)
                tree_class.append(k)
                feature.append(nodes["feature_idx"])
                threshold.append(nodes["num_threshold"])
                left.append(nodes["left"].astype(np.int64) + offset)
                right.append(nodes["right"].astype(np.int64) + offset)
                leaf.append(nodes["is_leaf"].astype(bool))
                value.append(nodes["value"])
                depth = max(depth, int(nodes["depth"].max()))
                offset += len(nodes)
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold)
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.leaf = np.concatenate(leaf)
        self.value = np.concatenate(value)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.tree_class = np.asarray(tree_class, dtype=np.int64)
        self.depth = depth
        self.baseline = np.asarray(classifier._baseline_prediction, dtype=float).ravel()
        self.outputs = len(self.baseline)
        self.classes = [str(c) for c in classifier.classes_]

    def proba(self, x: Sequence[float]) -> np.ndarray:
        row = np.asarray(x, dtype=float)
        nodes = self.roots
        for _ in range(self.depth):
            at_leaf = self.leaf[nodes]
            if at_leaf.all():
                break
            go_left = row[self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(at_leaf, nodes, np.where(go_left, self.left[nodes], self.right[nodes]))
        raw = self.baseline + np.bincount(self.tree_class, weights=self.value[nodes], minlength=self.outputs)
        if self.outputs == 1:  # two classes: one logit
            p = 1.0 / (1.0 + math.exp(-float(raw[0])))
            return np.asarray([1.0 - p, p])
        e = np.exp(raw - raw.max())
        return e / e.sum()


class _FlatForest:
    """An IsolationForest's trees as flat numpy arrays, all walked at once for one row.

    Same arithmetic as ``IsolationForest.score_samples`` (depth of the leaf plus the average
    path length of the samples left there, averaged over trees, normalised by c(max_samples)),
    without sklearn's per-call validation and per-tree Python loop (~2 ms for one row).
    """

    def __init__(self, forest: IsolationForest) -> None:
        feature, threshold, left, right, bonus, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        # sklearn trains each tree on a column subset only when it draws fewer than all features.
        subset = forest._max_features != forest.n_features_in_
        for tree, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
            t = tree.tree_
            roots.append(offset)
            mapped = np.asarray(features)[np.maximum(t.feature, 0)] if subset else np.maximum(t.feature, 0)
            feature.append(mapped)
            threshold.append(t.threshold)
            is_leaf = t.children_left == -1
            # A leaf points at itself, so walking on from it changes nothing.
            own = np.arange(offset, offset + t.node_count)
            left.append(np.where(is_leaf, own, t.children_left + offset))
            right.append(np.where(is_leaf, own, t.children_right + offset))
            bonus.append([_average_path_length(int(n)) for n in t.n_node_samples])
            depth = max(depth, int(t.max_depth))
            offset += t.node_count
        self.feature = np.concatenate(feature).astype(np.int64)
        self.threshold = np.concatenate(threshold)
        self.left = np.concatenate(left).astype(np.int64)
        self.right = np.concatenate(right).astype(np.int64)
        self.bonus = np.concatenate(bonus)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.depth = depth
        self.norm = _average_path_length(int(forest.max_samples_))

    def anomaly_score(self, x: Sequence[float]) -> float:
        """Higher is stranger (sklearn's ``-score_samples``), in (0, 1)."""
        row = np.asarray(x, dtype=np.float32).astype(float)  # sklearn's trees compare float32 inputs
        nodes = self.roots
        depths = np.zeros(len(nodes))
        for _ in range(self.depth):
            nxt = np.where(row[self.feature[nodes]] <= self.threshold[nodes], self.left[nodes], self.right[nodes])
            moved = nxt != nodes
            if not moved.any():
                break
            depths += moved
            nodes = nxt
        mean = float((depths + self.bonus[nodes]).mean())
        return float(2.0 ** (-mean / self.norm))


def _average_path_length(n: int) -> float:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n
