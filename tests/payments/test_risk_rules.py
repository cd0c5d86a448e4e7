"""The rules scorer: each rule, its weight, and the decision the total picks."""

from __future__ import annotations

from walletflow.risk.rules import RiskFeatures, RiskThresholds, RulesScorer

scorer = RulesScorer(RiskThresholds(review_amount=100, reject_amount=1000, max_topups_per_hour=5, max_failed_24h=3))


def features(amount: int, succeeded: int = 0, largest: int = 0, last_hour: int = 0, failed: int = 0) -> RiskFeatures:
    return RiskFeatures(amount, succeeded, largest, last_hour, failed)


def test_an_ordinary_top_up_is_approved_with_no_reasons() -> None:
    result = scorer.score(features(50, succeeded=2, largest=40))
    assert (result.score, result.decision, result.reasons) == (0, "approve", [])


def test_amount_limits_send_to_review_or_reject() -> None:
    assert scorer.score(features(99)).decision == "approve"
    assert scorer.score(features(100)).reasons == ["amount_over_review_limit"]
    assert scorer.score(features(100)).decision == "review"
    rejected = scorer.score(features(1000))
    assert (rejected.score, rejected.decision, rejected.reasons) == (100, "reject", ["amount_over_reject_limit"])


def test_far_above_history_needs_history() -> None:
    assert scorer.score(features(90)).decision == "approve"  # first top-up: no history to compare
    far = scorer.score(features(90, succeeded=3, largest=5))
    assert (far.decision, far.reasons) == ("review", ["amount_far_above_history"])
    assert scorer.score(features(50, succeeded=3, largest=5)).decision == "approve"  # exactly 10x


def test_velocity_and_failures_add_up_to_reject() -> None:
    assert scorer.score(features(10, last_hour=4)).decision == "approve"
    assert scorer.score(features(10, last_hour=5)).reasons == ["topup_velocity"]
    both = scorer.score(features(10, last_hour=5, failed=3))
    assert (both.score, both.decision) == (80, "review")
    all_three = scorer.score(features(100, last_hour=5, failed=3))
    assert (all_three.score, all_three.decision) == (100, "reject")
    assert all_three.reasons[0] == "amount_over_review_limit"  # most severe first
