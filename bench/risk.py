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

- usage (settlement): ``walletflow.risk.usage_model.train_usage`` on 100,000 simulated usage
  periods (usage seeds 1-5), and ``UsageRiskScorer.score`` (usage model plus usage rules, what
  settlement calls per customer) on 30,000 fresh periods, timed the same way.

Targets (issue 5): scoring p99 at most 2 ms in process; training at most 30 s on 100,000 rows
(each model).
The load average is printed: the figures are only comparable at similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

from walletflow.risk.model import CombinedScorer, train
from walletflow.risk.simulate import simulate
from walletflow.risk.usage_model import UsageRiskScorer, train_usage
from walletflow.risk.usage_simulate import simulate_usage

TRAIN_SEEDS = (1, 2, 3, 4, 5)
TRAIN_ROWS_PER_SEED = 20_000
SCORE_SEEDS = (901, 902, 903)
SCORE_ROWS_PER_SEED = 10_000


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def measure(quick: bool = False) -> dict:
    """Train on the 100,000 rows (20,000 with ``quick``), then score fresh rows; the figures."""
    load_before = os.getloadavg()[0]
    per_seed = TRAIN_ROWS_PER_SEED // 5 if quick else TRAIN_ROWS_PER_SEED
    rows = [row for seed in TRAIN_SEEDS for row in simulate(seed, per_seed)]
    started = time.perf_counter()
    model = train(rows)
    train_s = time.perf_counter() - started
    scorer = CombinedScorer(model, model_version="bench")
    fresh = [row for seed in SCORE_SEEDS for row in simulate(seed, SCORE_ROWS_PER_SEED // (10 if quick else 1))]
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
    scoring = _percentiles(wall, cpu)

    usage_rows = [row for seed in TRAIN_SEEDS for row in simulate_usage(seed, per_seed)]
    started = time.perf_counter()
    usage_model = train_usage(usage_rows)
    usage_train_s = time.perf_counter() - started
    usage_scorer = UsageRiskScorer(usage_model, model_version="bench")
    usage_fresh = [row for seed in SCORE_SEEDS for row in simulate_usage(seed, SCORE_ROWS_PER_SEED // (10 if quick else 1))]
    for features, _, _ in usage_fresh[:500]:
        usage_scorer.score(features)
    wall, cpu = defaultdict(list), defaultdict(list)
    for features, _, _ in usage_fresh:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        result = usage_scorer.score(features)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        for key in (result.decision, "all"):
            wall[key].append(t1 - t0)
            cpu[key].append(c1 - c0)
    return {"training_rows": len(rows), "training_s": train_s, "scoring": scoring,
            "usage_training_rows": len(usage_rows), "usage_training_s": usage_train_s,
            "usage_scoring": _percentiles(wall, cpu),
            "load_before": load_before, "load_after": os.getloadavg()[0], "quick": quick}


def _percentiles(wall: dict[str, list[int]], cpu: dict[str, list[int]]) -> dict:
    return {
        key: {"calls": len(wall[key]), "p50_ms": _pct(wall[key], 0.5), "p99_ms": _pct(wall[key], 0.99),
              "cpu_p50_ms": _pct(cpu[key], 0.5), "cpu_p99_ms": _pct(cpu[key], 0.99),
              "mean_ms": statistics.fmean(wall[key]) / 1e6}
        for key in ("approve", "review", "reject", "all") if wall[key]
    }


def render(report: dict) -> str:
    lines = [f"load average before: {report['load_before']:.2f} (2 cores shared with other work)"]
    for name, prefix in (("top-ups", ""), ("usage periods", "usage_")):
        lines += [f"{name}: training on {report[prefix + 'training_rows']:,} rows: "
                  f"{report[prefix + 'training_s']:.1f} s (target <= 30 s on 100,000)",
                  f"{name}: scoring fresh rows, one call each (target p99 <= 2 ms):",
                  f"  {'decision':<8} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p99':>8} {'mean ms':>8}"]
        for key, s in report[prefix + "scoring"].items():
            lines.append(f"  {key:<8} {s['calls']:>7} {s['p50_ms']:>8.3f} {s['p99_ms']:>8.3f} "
                         f"{s['cpu_p50_ms']:>8.3f} {s['cpu_p99_ms']:>8.3f} {s['mean_ms']:>8.3f}")
    lines.append(f"load average after: {report['load_after']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="20,000 training rows and 3,000 scored: a smoke run")
    args = parser.parse_args()
    report = measure(args.quick)
    print(json.dumps(report, indent=2) if args.json else render(report))


if __name__ == "__main__":
    main()
