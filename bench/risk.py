"""Risk scoring latency per decision, and training time on 100,000 rows.

What is measured, in process (``python -m bench.risk``):

- training: ``walletflow.risk.model.train`` (the default ``TrainParams``, as ``walletflow risk
  train`` uses) on 100,000 simulated rows (seeds 1-5, 20,000 each), wall time; simulation time is
  printed apart and not counted;
- scoring: ``CombinedScorer.score`` (model plus rules, exactly what the top-up activity calls) on
  30,000 fresh rows (seeds 901-903, not used for training), one call per row, timed with
  ``perf_counter_ns``; p50 / p99 per decision (approve / review / reject) and over all. The
  thread CPU time of each call (``thread_time_ns``) is printed beside it: on a shared machine a
  call can be preempted, and the wall time then counts another process's work.

Targets (issue 5): scoring p99 at most 2 ms in process; training at most 30 s on 100,000 rows.
The load average is printed: the figures are only comparable at similar load.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict

from walletflow.risk.model import CombinedScorer, train
from walletflow.risk.simulate import simulate

TRAIN_SEEDS = (1, 2, 3, 4, 5)
TRAIN_ROWS_PER_SEED = 20_000
SCORE_SEEDS = (901, 902, 903)
SCORE_ROWS_PER_SEED = 10_000


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared with other work)")
    started = time.perf_counter()
    rows = [row for seed in TRAIN_SEEDS for row in simulate(seed, TRAIN_ROWS_PER_SEED)]
    print(f"simulated {len(rows):,} training rows in {time.perf_counter() - started:.1f} s (not counted)")

    started = time.perf_counter()
    model = train(rows)
    train_s = time.perf_counter() - started
    print(f"training on {len(rows):,} rows: {train_s:.1f} s (target <= 30 s)")

    scorer = CombinedScorer(model, model_version="bench")
    fresh = [row for seed in SCORE_SEEDS for row in simulate(seed, SCORE_ROWS_PER_SEED)]
    for features, _ in fresh[:500]:  # warm up caches and lazy imports
        scorer.score(features)
    wall: dict[str, list[int]] = defaultdict(list)
    cpu: dict[str, list[int]] = defaultdict(list)
    for features, _ in fresh:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        result = scorer.score(features)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        for key in (result.decision, "all"):
            wall[key].append(t1 - t0)
            cpu[key].append(c1 - c0)

    print(f"scoring {len(fresh):,} fresh rows, one call each (target p99 <= 2 ms):")
    print(f"  {'decision':<8} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p99':>8} {'mean ms':>8}")
    for key in ("approve", "review", "reject", "all"):
        if not wall[key]:
            continue
        print(f"  {key:<8} {len(wall[key]):>7} {_pct(wall[key], 0.5):>8.3f} {_pct(wall[key], 0.99):>8.3f} "
              f"{_pct(cpu[key], 0.5):>8.3f} {_pct(cpu[key], 0.99):>8.3f} {statistics.fmean(wall[key]) / 1e6:>8.3f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
