"""Artifacts round-trip, and nothing is unpickled unless signature and hashes check out."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from walletflow.risk.artifact import MANIFEST_FILE, MODEL_FILE, ArtifactRefused, load, save, sign
from walletflow.risk.model import RiskModel
from walletflow.risk.scoring import scorer_from
from walletflow.risk.simulate import simulate
from walletflow.settings import Settings

KEY = "test-signing-key"


def _same_scores(a: RiskModel, b: RiskModel) -> None:
    from walletflow.risk.features import vector

    for features, _ in simulate(5, 200):
        x = vector(features)
        assert a.fraud_probabilities(x) == b.fraud_probabilities(x)
        assert a.novelty_score(x) == b.novelty_score(x)


def test_a_signed_artifact_round_trips(small_model: RiskModel, tmp_path: Path) -> None:
    path = save(small_model, tmp_path, KEY)
    assert path.parent == tmp_path and path.name.startswith("risk-model-")
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert manifest["version"] in path.name and manifest["signature"] == sign(manifest, KEY)
    assert manifest["feature_names"][0] == "log_amount" and "normal" in manifest["labels"]
    loaded, read = load(path, signing_key=KEY)
    assert read["version"] == manifest["version"]
    _same_scores(small_model, loaded)


def test_a_pinned_hash_loads_an_unsigned_artifact(small_model: RiskModel, tmp_path: Path) -> None:
    path = save(small_model, tmp_path, None)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert "signature" not in manifest
    loaded, _ = load(path, pinned_sha256=manifest["sha256"])
    _same_scores(small_model, loaded)
    with pytest.raises(ArtifactRefused, match="pinned"):
        load(path, pinned_sha256="0" * 64)
    with pytest.raises(ArtifactRefused, match="nobody vouched"):
        load(path)


def test_one_tampered_byte_is_refused(small_model: RiskModel, tmp_path: Path) -> None:
    path = save(small_model, tmp_path, KEY)
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactRefused, match="SHA-256"):
        load(path, signing_key=KEY)


class _Payload:
    """A pickle that, if ever loaded, leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.makedirs, (str(self.marker),))


def test_a_swapped_model_is_never_unpickled_even_with_a_matching_manifest_hash(small_model: RiskModel, tmp_path: Path) -> None:
    import hashlib

    path = save(small_model, tmp_path, KEY)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    (path / MODEL_FILE).write_bytes(evil)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["sha256"] = hashlib.sha256(evil).hexdigest()  # the attacker fixes the hash too...
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRefused, match="signature"):  # ...but cannot sign without the key
        load(path, signing_key=KEY)
    with pytest.raises(ArtifactRefused, match="signature"):
        load(path, signing_key="another-key")
    assert not marker.exists()


def test_a_changed_manifest_or_another_sklearn_is_refused(small_model: RiskModel, tmp_path: Path) -> None:
    path = save(small_model, tmp_path, KEY)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["thresholds"] = {"model_review_score": 99}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRefused, match="signature"):
        load(path, signing_key=KEY)
    manifest["sklearn_version"] = "0.1.0"
    manifest["signature"] = sign(manifest, KEY)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRefused, match="scikit-learn 0.1.0"):
        load(path, signing_key=KEY)


def test_the_worker_scorer_loads_a_signed_artifact_and_refuses_a_tampered_one(small_model: RiskModel, tmp_path: Path) -> None:
    path = save(small_model, tmp_path, KEY)
    settings = Settings(risk_model_path=str(path), risk_model_signing_key=KEY)
    scorer = scorer_from(settings)
    assert scorer.model is not None and scorer.model_version is not None and scorer.model_version in path.name
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactRefused):
        scorer_from(settings)


def test_without_an_artifact_the_worker_uses_the_builtin_model_or_the_rules() -> None:
    builtin = scorer_from(Settings(risk_model_path=None))
    assert builtin.model is not None and builtin.model_version == "builtin-sim-2"
    rules_only = scorer_from(Settings(risk_model_path=None, risk_builtin_model=False))
    assert rules_only.model is None
