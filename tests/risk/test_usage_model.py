"""The usage model plus the usage rules on fresh simulated periods: every leaked-key scenario is
caught, honest customers (growing, busy, new, auto-recharging) pass, a subtle spike the rules
alone approve is caught, and the usage section travels in the same checked artifact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from walletflow.risk.artifact import MANIFEST_FILE, MODEL_FILE, ArtifactRefused, load, save
from walletflow.risk.evaluate import usage_report
from walletflow.risk.model import RiskModel
from walletflow.risk.scoring import BUILTIN_USAGE_VERSION, scorers_from
from walletflow.risk.usage import UsageThresholds, score_usage
from walletflow.risk.usage_model import UsageModel, UsageRiskScorer, usage_vector
from walletflow.risk.usage_simulate import USAGE_ATTACKS, _row, simulate_usage
from walletflow.settings import Settings

FRESH_SEED = 404  # not a training seed (tests/risk/conftest.py)
KEY = "usage-test-key"


@pytest.fixture(scope="module")
def fresh() -> list:  # type: ignore[type-arg]
    return simulate_usage(FRESH_SEED, 8_000)


def _subtle_spike():  # type: ignore[no-untyped-def]
    """3x the spend (under every rule), 25x the events, a never-used model, at 3 a.m."""
    return _row(spend=9_000, baseline_spend=3_000, events=2_500, baseline_events=100, event_types=2, new_models=1,
                history_days=60, topups=1, hour=3, odd_hour_share=1.0)


def test_each_usage_attack_is_caught_and_the_target_holds_on_a_fresh_seed(small_usage_model: UsageModel, fresh: list) -> None:  # type: ignore[type-arg]
    scorer = UsageRiskScorer(small_usage_model)
    result = usage_report(fresh, [scorer.score(f) for f, _, _ in fresh])
    by_kind = {m.kind: m for m in result.per_attack}
    assert set(by_kind) == set(USAGE_ATTACKS)
    for kind, m in by_kind.items():
        assert m.attacks >= 300 and m.recall >= 0.7 and m.roc_auc >= 0.9, (kind, m)
    assert result.overall.recall >= 0.9 and result.overall.precision >= 0.8, result.overall
    assert result.meets_target
    # The rules alone miss the subtle scenarios entirely: the model is what catches them.
    rules = UsageRiskScorer(None)
    subtle = [f for f, label, _ in fresh if label == "leaked_key_subtle"]
    assert sum(rules.score(f).decision != "approve" for f in subtle) == 0
    assert sum(scorer.score(f).decision != "approve" for f in subtle) >= 0.7 * len(subtle)


def test_honest_customers_pass_in_every_normal_scenario(small_usage_model: UsageModel, fresh: list) -> None:  # type: ignore[type-arg]
    scorer = UsageRiskScorer(small_usage_model)
    result = usage_report(fresh, [scorer.score(f) for f, _, _ in fresh])
    frozen = {name: frozen / periods for name, (periods, frozen) in result.per_normal.items()}
    assert set(frozen) == {"steady", "growing", "busy_day", "new_customer", "auto_recharge_heavy"}
    assert frozen["steady"] <= 0.002 and frozen["auto_recharge_heavy"] <= 0.01, frozen
    assert frozen["growing"] <= 0.02 and frozen["new_customer"] <= 0.03, frozen
    # Busy days past the rules' 5x review ratio are frozen by the rules, by design; that is all.
    assert frozen["busy_day"] <= 0.12, frozen
    # A new customer's first busy day, with no baseline at all, is never a spike.
    first_day = _row(spend=40_000, baseline_spend=0, events=2_000, baseline_events=0, event_types=3, new_models=0,
                     history_days=0, topups=3, hour=2, odd_hour_share=0)
    assert scorer.score(first_day).decision == "approve"


def test_a_subtle_spike_only_the_model_catches_gives_reasons_from_both(small_usage_model: UsageModel) -> None:
    spike = _subtle_spike()
    ruled = score_usage(spike)
    assert ruled.decision == "approve" and set(ruled.reasons) == {"event_rate_spike", "new_models"}  # 40 points
    result = UsageRiskScorer(small_usage_model, model_version="v1").score(spike)
    assert result.decision != "approve"
    assert result.reasons[:2] == ruled.reasons and result.reasons[2].startswith("model_leaked_key"), result.reasons
    assert any("usage model puts the chance of abuse" in text for text in result.explanations)
    assert any("100% of the spend at hours the customer was never active" in text for text in result.explanations)
    assert result.model_version == "usage-rules-1+v1" and result.features["odd_hour_share"] == 1.0
    # Under the spend floor the model does not freeze anyone either.
    tiny = dataclasses.replace(spike, spend=900, baseline_spend=300)
    assert UsageRiskScorer(small_usage_model).score(tiny).decision == "approve"


def test_the_fast_paths_equal_sklearn(small_usage_model: UsageModel, fresh: list) -> None:  # type: ignore[type-arg]
    x = np.asarray([usage_vector(f) for f, _, _ in fresh[:300]])
    expected = small_usage_model.classifier.predict_proba(x)
    got = np.asarray([list(small_usage_model.probabilities(row).values()) for row in x])
    assert np.allclose(got, expected, atol=1e-9)
    novelty = -small_usage_model.novelty.score_samples(x)
    assert np.allclose([small_usage_model.novelty_score(row) for row in x], novelty, atol=1e-9)


def test_usage_simulation_is_reproducible_by_seed() -> None:
    assert simulate_usage(7, 500) == simulate_usage(7, 500)
    assert simulate_usage(7, 500) != simulate_usage(8, 500)


def test_the_usage_section_round_trips_in_the_signed_artifact_and_tampering_is_refused(
    small_model: RiskModel, small_usage_model: UsageModel, tmp_path: Path
) -> None:
    model = dataclasses.replace(small_model, usage=small_usage_model)
    path = save(model, tmp_path, KEY)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest["usage_feature_names"][0] == "has_baseline" and "leaked_key_subtle" in manifest["usage_labels"]
    loaded, _ = load(path, signing_key=KEY)
    assert loaded.usage is not None
    for features, _, _ in simulate_usage(9, 200):
        x = usage_vector(features)
        assert loaded.usage.probabilities(x) == small_usage_model.probabilities(x)
    # The worker builds both scorers from this one load.
    credit, usage = scorers_from(Settings(risk_model_path=str(path), risk_model_signing_key=KEY))
    assert usage.model is not None and usage.model_version == credit.model_version == manifest["version"]
    assert usage.score(_subtle_spike()).decision != "approve"
    # The usage section is inside the hashed file: one flipped byte and nothing loads.
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[-10] ^= 0x01
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactRefused, match="SHA-256"):
        scorers_from(Settings(risk_model_path=str(path), risk_model_signing_key=KEY))
    # And a manifest claiming other usage features is refused too (re-signed, so only that differs).
    from walletflow.risk.artifact import sign

    path2 = save(model, tmp_path / "again", KEY)
    manifest = json.loads((path2 / MANIFEST_FILE).read_text())
    manifest["usage_feature_names"] = ["spend"]
    manifest["signature"] = sign(manifest, KEY)
    (path2 / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRefused, match="usage model's features"):
        load(path2, signing_key=KEY)


def test_an_artifact_without_a_usage_section_falls_back_to_the_builtin_usage_model(
    small_model: RiskModel, tmp_path: Path
) -> None:
    assert small_model.usage is None  # as artifacts made before usage models
    path = save(small_model, tmp_path, KEY)
    assert "usage_feature_names" not in json.loads((path / MANIFEST_FILE).read_text())
    credit, usage = scorers_from(Settings(risk_model_path=str(path), risk_model_signing_key=KEY))
    assert credit.model is not None and usage.model is not None and usage.model_version == BUILTIN_USAGE_VERSION
    assert usage.with_thresholds(UsageThresholds()).score(_subtle_spike()).decision != "approve"
