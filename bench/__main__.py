"""Every benchmark behind one command: ``python -m bench [--quick] [--json] [--only NAME ...]``.

Each benchmark runs in its own process (a fresh database, its own services) and reports JSON;
this prints one table: figure, walletflow, the baseline measured in the same run where there is
one, the ratio, the target and whether it was met. Absolute rates depend on the machine and on
what else it runs (the load average is printed); the ratios much less. ``--quick`` is a smoke
run for CI (shorter runs, smaller data), the full run is for people.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]


def _ledger(report: dict[str, Any]) -> list[Row]:
    return [
        {"figure": f"ledger debits/s, {r['scenario']}", "walletflow": r["walletflow_debits_per_s"],
         "baseline": r["baseline_ops_per_s"], "ratio": r["ratio"], "target": r["target"], "target_met": r["target_met"]}
        for r in report["results"]
    ] + [{"figure": "ledger hot balance exact and audit clean", "walletflow": report["audit_ok"]
          and report["hot_balance"] == report["hot_balance_expected"], "target": "true",
          "target_met": report["audit_ok"] and report["hot_balance"] == report["hot_balance_expected"]}]


def _ingest(report: dict[str, Any]) -> list[Row]:
    return [{**f, "figure": f"ingest {f['figure']}"} for f in report["figures"]]


def _risk(report: dict[str, Any]) -> list[Row]:
    every = report["scoring"]["all"]
    rows: list[Row] = [
        {"figure": f"risk scoring p99, {d} (ms)", "walletflow": round(s["p99_ms"], 3), "target": "<= 2 ms",
         "target_met": s["p99_ms"] <= 2.0}
        for d, s in report["scoring"].items()
    ]
    rows.append({"figure": "risk scoring p99 CPU time, all (ms)", "walletflow": round(every["cpu_p99_ms"], 3)})
    scale = 100_000 / report["training_rows"]
    rows.append({"figure": f"risk training on {report['training_rows']:,} rows (s)", "walletflow": round(report["training_s"], 1),
                 "target": "<= 30 s on 100,000" if scale == 1 else None,
                 "target_met": report["training_s"] <= 30 if scale == 1 else None})
    if "usage_scoring" in report:
        usage = report["usage_scoring"]["all"]
        rows.append({"figure": "usage risk scoring p99, all (ms)", "walletflow": round(usage["p99_ms"], 3),
                     "target": "<= 2 ms", "target_met": usage["p99_ms"] <= 2.0})
        rows.append({"figure": f"usage risk training on {report['usage_training_rows']:,} periods (s)",
                     "walletflow": round(report["usage_training_s"], 1),
                     "target": "<= 30 s on 100,000" if scale == 1 else None,
                     "target_met": report["usage_training_s"] <= 30 if scale == 1 else None})
    return rows


def _webhooks(report: dict[str, Any]) -> list[Row]:
    return [
        {"figure": "webhook deliveries/s end to end", "walletflow": round(report["deliveries_per_s"], 1)},
        {"figure": "webhook emit-to-arrival p99 (ms)", "walletflow": round(report["latency_p99_ms"], 1)},
        {"figure": "webhook deliveries verified exactly once", "walletflow": report["correct"], "target": "true",
         "target_met": report["correct"]},
    ]


def _topups(report: dict[str, Any]) -> list[Row]:
    return [
        {"figure": f"top-ups credited/s end to end ({report['top_ups']} at once)", "walletflow": report["top_ups_per_s"],
         "baseline": report["baseline_workflows_per_s"], "ratio": report["ratio"]},
        {"figure": "top-ups credited exactly once", "walletflow": report["credited_once"], "target": "true",
         "target_met": report["credited_once"]},
    ]


def _migration(report: dict[str, Any]) -> list[Row]:
    return [
        {"figure": f"Stripe migration customers/s ({report['customers']:,} customers)",
         "walletflow": report["customers_per_s"], "baseline": report["baseline_customers_per_s"],
         "ratio": round(report["customers_per_s"] / report["baseline_customers_per_s"], 3)},
        {"figure": "Stripe migration ceiling at Stripe's 25 requests/s (customers/s)",
         "walletflow": report["ceiling_at_25_rps"]},
        {"figure": "Stripe migration parity exact and audit clean", "walletflow": report["correct"], "target": "true",
         "target_met": report["correct"]},
    ]


#: name -> (module, how its JSON becomes rows)
BENCHES: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "ledger": ("bench.ledger", _ledger),
    "ingest": ("bench.ingest", _ingest),
    "risk": ("bench.risk", _risk),
    "webhooks": ("bench.webhooks", _webhooks),
    "migration": ("bench.migration", _migration),
    "topups": ("bench.topups", _topups),
}


def run(name: str, quick: bool) -> tuple[list[Row], float]:
    module, to_rows = BENCHES[name]
    args = [sys.executable, "-m", module, "--json", *(["--quick"] if quick else [])]
    print(f"running {module} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        return [{"figure": f"{name}: FAILED (exit {done.returncode})", "walletflow": done.stderr.strip()[-300:]}], seconds
    try:
        report = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        return [{"figure": f"{name}: no JSON", "walletflow": done.stdout[-300:]}], seconds
    return to_rows(report), seconds


def render(rows: list[Row]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = ("figure", "walletflow", "baseline", "ratio", "target", "met")
    table = [header] + [
        (r["figure"], cell(r.get("walletflow")), cell(r.get("baseline")), cell(r.get("ratio")),
         cell(r.get("target")), cell(r.get("target_met")))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (shorter, smaller)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run only these")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows: list[Row] = []
    for name in args.only or list(BENCHES):
        bench_rows, seconds = run(name, args.quick)
        rows += bench_rows
        print(f"  {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"load_average_at_start": load, "quick": args.quick, "rows": rows}, indent=2, default=str))
    else:
        print(f"load average at start: {load:.2f} ({os.cpu_count()} cores){' -- quick run' if args.quick else ''}")
        print(render(rows))


if __name__ == "__main__":
    main()
