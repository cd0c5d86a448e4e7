"""Build the worker's scorer from settings, once per process.

* ``WALLETFLOW_RISK_MODEL_PATH`` set: that artifact, verified (signature or pinned hash) before
  it is unpickled. A refused artifact stops the worker: scoring money with a model an attacker
  may have swapped, or silently without one, is worse than not starting.
* unset (the default, and ``walletflow dev``): the **built-in model**, trained when the worker
  starts from simulated traffic with fixed seeds. Deterministic, visible in the source, no binary
  blob shipped; a warning says to train one on real data.
* unset and ``WALLETFLOW_RISK_BUILTIN_MODEL=false``: rules alone, with an error-level log line.

The usage model (settlement) comes from the same place: the artifact's usage section, or the
built-in usage model. An artifact made before usage models existed has no usage section: the
worker then falls back to the built-in usage model (a warning says to retrain), rather than
refusing to start over a model that only adds checks on top of the usage rules.
:func:`scorers_from` builds both from one load; the worker calls it once.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from walletflow.risk.model import CombinedScorer, ModelThresholds, RiskModel, TrainParams, train
from walletflow.risk.rules import RiskThresholds, RulesScorer
from walletflow.risk.simulate import simulate
from walletflow.risk.usage import UsageThresholds
from walletflow.risk.usage_model import UsageModel, UsageRiskScorer, train_usage
from walletflow.risk.usage_simulate import simulate_usage
from walletflow.settings import Settings

log = logging.getLogger("walletflow.risk")

#: The built-in model's training data: these seeds, this many rows each (evaluation uses others).
BUILTIN_SEEDS = (1, 2)
BUILTIN_ROWS = 6_000
BUILTIN_VERSION = "builtin-sim-2"
#: The built-in usage model's training data (evaluation uses other seeds).
BUILTIN_USAGE_SEEDS = (1, 2)
BUILTIN_USAGE_ROWS = 3_000
#: Fewer rounds still for the usage model (four classes, well separated): it must not lengthen
#: worker start-up much (the crash tests start workers under a call timeout).
BUILTIN_USAGE_MAX_ITER = 40
BUILTIN_USAGE_VERSION = "builtin-usage-sim-1"
#: Boosting rounds of the built-in models: fewer than ``walletflow risk train`` (150), because
#: the built-in model is trained at every worker start (tests/risk checks the evaluation target
#: still holds for it).
BUILTIN_MAX_ITER = 60


@lru_cache(maxsize=1)
def builtin_model() -> RiskModel:
    """The model trained from simulated traffic (same seeds, same model, every time)."""
    started = time.perf_counter()
    rows = [row for seed in BUILTIN_SEEDS for row in simulate(seed, BUILTIN_ROWS)]
    model = train(rows, TrainParams(max_iter=BUILTIN_MAX_ITER))
    model.training["source"] = f"simulation seeds {list(BUILTIN_SEEDS)}"
    log.info("built-in risk model trained on %d simulated rows in %.1f s", len(rows), time.perf_counter() - started)
    return model


@lru_cache(maxsize=1)
def builtin_usage_model() -> UsageModel:
    """The usage model trained from simulated periods (same seeds, same model, every time)."""
    started = time.perf_counter()
    rows = [row for seed in BUILTIN_USAGE_SEEDS for row in simulate_usage(seed, BUILTIN_USAGE_ROWS)]
    model = train_usage(rows, TrainParams(max_iter=BUILTIN_USAGE_MAX_ITER))
    model.training["source"] = f"simulated usage seeds {list(BUILTIN_USAGE_SEEDS)}"
    log.info("built-in usage model trained on %d simulated periods in %.1f s", len(rows), time.perf_counter() - started)
    return model


def usage_thresholds_from(settings: Settings) -> UsageThresholds:
    return UsageThresholds.from_settings(settings)


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
    """The combined model-plus-rules top-up scorer the settings ask for (see the module docstring)."""
    return scorers_from(settings)[0]


def usage_scorer_from(settings: Settings) -> UsageRiskScorer:
    """The usage model-plus-rules scorer settlement uses (see the module docstring)."""
    return scorers_from(settings)[1]


def scorers_from(settings: Settings) -> tuple[CombinedScorer, UsageRiskScorer]:
    """Both scorers, from one artifact load (or the built-in models): what a worker runs."""
    from walletflow.risk.artifact import load

    thresholds = ModelThresholds(settings.risk_model_review_score, settings.risk_model_reject_score)
    rules = rules_from(settings)
    usage_rules = usage_thresholds_from(settings)
    if settings.risk_model_path:
        key = settings.risk_model_signing_key.get_secret_value() if settings.risk_model_signing_key else None
        model, manifest = load(settings.risk_model_path, key, settings.risk_model_sha256)
        log.info("risk model %s loaded from %s", manifest["version"], settings.risk_model_path)
        credit = CombinedScorer(model, rules, thresholds, manifest["version"])
        if model.usage is not None:
            return credit, UsageRiskScorer(model.usage, usage_rules, thresholds, manifest["version"])
        log.warning(
            "risk model %s has no usage section (made before usage models): scoring usage with the built-in "
            "usage model; retrain with `walletflow risk train` to include one", manifest["version"],
        )
        return credit, UsageRiskScorer(builtin_usage_model(), usage_rules, thresholds, BUILTIN_USAGE_VERSION)
    if settings.risk_builtin_model:
        log.warning(
            "no trained risk model configured (WALLETFLOW_RISK_MODEL_PATH): using the built-in model "
            "trained from simulated traffic; train one on your own data with `walletflow risk train`"
        )
        return (
            CombinedScorer(builtin_model(), rules, thresholds, BUILTIN_VERSION),
            UsageRiskScorer(builtin_usage_model(), usage_rules, thresholds, BUILTIN_USAGE_VERSION),
        )
    log.error("RISK MODEL DISABLED: no WALLETFLOW_RISK_MODEL_PATH and the built-in model is off; top-ups are scored by rules alone")
    return CombinedScorer(None, rules, thresholds, None), UsageRiskScorer(None, usage_rules, thresholds, None)
