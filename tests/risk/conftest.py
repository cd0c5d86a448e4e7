"""A small model trained once per session on simulation seeds the tests never evaluate on."""

from __future__ import annotations

import pytest

from walletflow.risk.model import RiskModel, TrainParams, train
from walletflow.risk.simulate import simulate

TRAIN_SEEDS = (101, 102)


@pytest.fixture(scope="session")
def small_model() -> RiskModel:
    rows = [row for seed in TRAIN_SEEDS for row in simulate(seed, 4_000)]
    return train(rows, TrainParams(max_iter=60, novelty_trees=40))


@pytest.fixture(scope="session")
def small_usage_model():  # type: ignore[no-untyped-def]
    """A small usage model, trained on usage seeds the tests never evaluate on."""
    from walletflow.risk.usage_model import train_usage
    from walletflow.risk.usage_simulate import simulate_usage

    rows = [row for seed in TRAIN_SEEDS for row in simulate_usage(seed, 4_000)]
    return train_usage(rows, TrainParams(max_iter=60, novelty_trees=40))
