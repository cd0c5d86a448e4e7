"""Precision, recall and ROC-AUC of a scorer per attack type, on labelled traffic.

A payment counts as *caught* when the scorer does not approve it (review or reject): both stop
the money before it is credited. For one attack type, precision and ROC-AUC are computed on that
attack's rows plus all the normal rows (so each type faces every false alarm); "overall" takes
every attack against the normal rows. The score used for ROC-AUC is the scorer's 0-100 score.

Usage periods (:func:`usage_report`) are measured the same way: a period is *caught* when the
usage scorer does not approve it (settlement then freezes the wallet pending review), per usage
attack scenario, plus how many honest periods of each normal scenario were frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sklearn.metrics import roc_auc_score

from walletflow.risk.rules import RiskResult, Scorer
from walletflow.risk.simulate import NORMAL, Row

#: The targets of issue 5: overall recall at this precision, and no attack type below this recall.
TARGET_PRECISION = 0.8
TARGET_RECALL = 0.9
TARGET_RECALL_PER_ATTACK = 0.7


@dataclass(frozen=True)
class Metrics:
    kind: str
    attacks: int
    normals: int
    caught: int
    false_alarms: int
    precision: float
    recall: float
    roc_auc: float


@dataclass(frozen=True)
class Report:
    per_attack: list[Metrics]
    overall: Metrics
    #: Share of normal payments approved outright.
    normal_approved: float

    @property
    def meets_target(self) -> bool:
        return (
            self.overall.precision >= TARGET_PRECISION
            and self.overall.recall >= TARGET_RECALL
            and all(m.recall >= TARGET_RECALL_PER_ATTACK for m in self.per_attack)
        )


@dataclass(frozen=True)
class UsageReport(Report):
    #: Per normal scenario: (periods, frozen).
    per_normal: dict[str, tuple[int, int]] = field(default_factory=dict)


def usage_report(rows: Sequence[tuple[object, str, str]], results: Sequence[RiskResult]) -> UsageReport:
    """Metrics of usage periods (features, label, scenario) and the usage scorer's results."""
    base = report([(f, label) for f, label, _ in rows], results)  # type: ignore[misc]
    per_normal: dict[str, tuple[int, int]] = {}
    for (_, label, scenario), result in zip(rows, results, strict=True):
        if label == NORMAL:
            periods, frozen = per_normal.get(scenario, (0, 0))
            per_normal[scenario] = (periods + 1, frozen + (result.decision != "approve"))
    return UsageReport(base.per_attack, base.overall, base.normal_approved, dict(sorted(per_normal.items())))


def score_all(scorer: Scorer, rows: Sequence[Row], progress: Callable[[int], None] | None = None) -> list[RiskResult]:
    results = []
    for i, (features, _) in enumerate(rows):
        results.append(scorer.score(features))
        if progress is not None and i % 500 == 499:
            progress(500)
    if progress is not None:
        progress(len(rows) % 500)
    return results


def report(rows: Sequence[Row], results: Sequence[RiskResult]) -> Report:
    """Metrics from rows and the scorer's results for them (same order)."""
    labels = [label for _, label in rows]
    kinds = sorted({label for label in labels if label != NORMAL})
    if not kinds or NORMAL not in labels:
        raise ValueError("evaluation needs normal rows and at least one attack")
    per_attack = [_metrics(kind, labels, results, {kind}) for kind in kinds]
    overall = _metrics("overall", labels, results, set(kinds))
    normals = [r for r, label in zip(results, labels, strict=True) if label == NORMAL]
    approved = sum(r.decision == "approve" for r in normals) / len(normals)
    return Report(per_attack, overall, approved)


def _metrics(kind: str, labels: Sequence[str], results: Sequence[RiskResult], positive: set[str]) -> Metrics:
    y_true, y_score, caught_flags = [], [], []
    for label, result in zip(labels, results, strict=True):
        if label == NORMAL or label in positive:
            y_true.append(label in positive)
            y_score.append(result.score)
            caught_flags.append(result.decision != "approve")
    attacks = sum(y_true)
    caught = sum(t and c for t, c in zip(y_true, caught_flags, strict=True))
    false_alarms = sum((not t) and c for t, c in zip(y_true, caught_flags, strict=True))
    flagged = caught + false_alarms
    return Metrics(
        kind=kind,
        attacks=attacks,
        normals=len(y_true) - attacks,
        caught=caught,
        false_alarms=false_alarms,
        precision=caught / flagged if flagged else 0.0,
        recall=caught / attacks if attacks else 0.0,
        roc_auc=float(roc_auc_score(y_true, y_score)),
    )
