"""Build the worker's scorer from settings, once per process.

* ``WALLETFLOW_RISK_MODEL_PATH`` set: that artifact, verified (signature or pinned hash) before
  it is unpickled. A refused artifact stops the worker: scoring money with a model an attacker
  may have swapped, or silently without one, is worse than not starting.
* unset (the default, and ``walletflow dev``): the **built-in model**, trained when the worker
  starts from simulated traffic with fixed seeds. Deterministic, visible in the source, no binary
  blob shipped; a warning says to train one on real data.
* unset and ``WALLETFLOW_RISK_BUILTIN_MODEL=false``: rules alone, with an error-level log line.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from walletflow.risk.model import CombinedScorer, ModelThresholds, RiskModel, TrainParams, train
from walletflow.risk.rules import RiskThresholds, RulesScorer
from walletflow.risk.simulate import simulate
from walletflow.settings import Settings

log = logging.getLogger("walletflow.risk")

#: The built-in model's training data: these seeds, this many rows each (evaluation uses others).
BUILTIN_SEEDS = (1, 2)
BUILTIN_ROWS = 6_000
BUILTIN_VERSION = "builtin-sim-1"


@lru_cache(maxsize=1)
def builtin_model() -> RiskModel:
    """The model trained from simulated traffic (same seeds, same model, every time)."""
    started = time.perf_counter()
    rows = [row for seed in BUILTIN_SEEDS for row in simulate(seed, BUILTIN_ROWS)]
    model = train(rows, TrainParams(max_iter=80))
    model.training["source"] = f"simulation seeds {list(BUILTIN_SEEDS)}"
    log.info("built-in risk model trained on %d simulated rows in %.1f s", len(rows), time.perf_counter() - started)
    return model


def rules_from(settings: Settings) -> RulesScorer:
    return RulesScorer(
        RiskThresholds(
            review_amount=settings.risk_review_amount,
            reject_amount=settings.risk_reject_amount,
            history_multiple=settings.risk_history_multiple,
            max_topups_per_hour=settings.risk_max_topups_per_hour,
            max_failed_24h=settings.risk_max_failed_24h,
            review_score=settings.risk_review_score,
            reject_score=settings.risk_reject_score,
        )
    )


def scorer_from(settings: Settings) -> CombinedScorer:
    """The combined model-plus-rules scorer the settings ask for (see the module docstring)."""
    from walletflow.risk.artifact import load

    thresholds = ModelThresholds(settings.risk_model_review_score, settings.risk_model_reject_score)
    rules = rules_from(settings)
    if settings.risk_model_path:
        key = settings.risk_model_signing_key.get_secret_value() if settings.risk_model_signing_key else None
        model, manifest = load(settings.risk_model_path, key, settings.risk_model_sha256)
        log.info("risk model %s loaded from %s", manifest["version"], settings.risk_model_path)
        return CombinedScorer(model, rules, thresholds, manifest["version"])
    if settings.risk_builtin_model:
        log.warning(
            "no trained risk model configured (WALLETFLOW_RISK_MODEL_PATH): using the built-in model "
            "trained from simulated traffic; train one on your own data with `walletflow risk train`"
        )
        return CombinedScorer(builtin_model(), rules, thresholds, BUILTIN_VERSION)
    log.error("RISK MODEL DISABLED: no WALLETFLOW_RISK_MODEL_PATH and the built-in model is off; top-ups are scored by rules alone")
    return CombinedScorer(None, rules, thresholds, None)
