"""``walletflow risk simulate | train | evaluate`` end to end, small."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from walletflow.cli import app
from walletflow.settings import get_settings


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALLETFLOW_RISK_MODEL_SIGNING_KEY", "cli-test-key")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_simulate_train_and_evaluate(tmp_path: Path, signed: None) -> None:
    runner = CliRunner()
    csv = tmp_path / "traffic.csv"
    usage_csv = tmp_path / "usage.csv"
    simulated = runner.invoke(app, ["risk", "simulate", "--seed", "21", "--rows", "3000", "--out", str(csv),
                                    "--usage-out", str(usage_csv), "--usage-rows", "3000"])
    assert simulated.exit_code == 0, simulated.output
    assert len(csv.read_text().splitlines()) == 3001 and len(usage_csv.read_text().splitlines()) == 3001

    trained = runner.invoke(app, ["risk", "train", "--csv", str(csv), "--usage-csv", str(usage_csv),
                                  "--simulate-seeds", "22", "--rows", "3000", "--usage-rows", "3000",
                                  "--max-iter", "40", "--out", str(tmp_path / "models")])
    assert trained.exit_code == 0, trained.output
    (artifact,) = (tmp_path / "models").iterdir()
    assert (artifact / "manifest.json").exists() and "trained on 6000 rows" in trained.output
    assert "usage model trained on 6000 periods" in trained.output

    evaluated = runner.invoke(app, ["risk", "evaluate", "--model", str(artifact), "--seeds", "23", "--rows", "3000",
                                    "--usage-rows", "3000"])
    assert evaluated.exit_code == 0, evaluated.output
    for kind in ("card_testing", "fake_account", "leaked_key", "refund_abuse", "stolen_card", "topup_then_dispute", "overall",
                 "leaked_key_spike", "leaked_key_subtle", "leaked_key_new_models", "busy_day", "new_customer"):
        assert kind in evaluated.output
    assert "top-up target" in evaluated.output and "usage target" in evaluated.output
    assert "NOT met" not in evaluated.output and ": met" in evaluated.output

    (artifact / "model.joblib").write_bytes(b"\x80" + (artifact / "model.joblib").read_bytes()[1:])
    refused = runner.invoke(app, ["risk", "evaluate", "--model", str(artifact), "--seeds", "23", "--rows", "300"])
    assert refused.exit_code != 0 and "SHA-256" in str(refused.exception)


def test_train_needs_a_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["risk", "train", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--from-db" in result.output
