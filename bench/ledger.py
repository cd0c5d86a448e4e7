"""Debit throughput of the ledger on PostgreSQL, next to a raw-SQL baseline from the same run.

What is measured: successful ``Ledger.debit`` calls per second (amount 1, a fresh idempotency key
each, wallets credited beforehand) with N concurrent clients (asyncio tasks) sharing one
``Ledger`` and its engine, as the requests of one API process do:

- one hot wallet with 1, 8 and 32 clients: every debit locks the same account row until its
  commit is on disk, so this is the serialised path;
- 1,000 wallets with 32 clients, each debit to a random wallet: the spread-out path.

On PostgreSQL, debits that arrive while others are being written go to the database together,
one ``wf_debit_many`` statement and one commit per group (group commit,
:mod:`walletflow.ledger.batching`): that is what lets the hot wallet beat one lock and one WAL
flush per debit. With 1 client every debit is a group of one.

Why a baseline: absolute rates depend on the machine and on whatever else it is running, so
each scenario is repeated with the cheapest correct debit PostgreSQL can do, one autocommitted
guarded ``UPDATE ... WHERE balance >= amount`` per debit over raw asyncpg, on the same database
with the same concurrency, each client on its own connection. The ratio walletflow / baseline depends far less on the machine: it
is what the hot-wallet target judges. The 1,000-wallet target is an absolute floor.

Each scenario warms up briefly, then runs for a fixed time; its rate is the successful debits
over the elapsed time. Afterwards the hot wallet's balance must equal its credit minus every
successful debit, and ``Ledger.audit()`` must find no broken invariant (else exit status 1).

Run: ``python -m bench.ledger [--json] [--quick] [--database-url URL]``. Without a URL a fresh
database is created, migrated, and dropped at the end; a given database is migrated to head and
gets its own bench customers and a ``bench_raw`` table, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import asyncpg
from sqlalchemy.engine import make_url

from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.ledger.schemas import AuditReport
from walletflow.ledger.service import Ledger

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ASSET = "BENCH"
WALLETS = 1_000
HOT_CREDIT = 10**14  # more than any run can spend
WALLET_CREDIT = 10**12
SETUP_CONCURRENCY = 16
RAW_DEBIT = "UPDATE bench_raw SET balance = balance - $1 WHERE id = $2 AND balance >= $1"

#: One debit attempt by one client; True when it took the money.
Debit = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Target:
    metric: Literal["ratio", "walletflow_per_s"]
    minimum: float

    def __str__(self) -> str:
        if self.metric == "ratio":
            return f"ratio >= {self.minimum:g}"
        return f">= {self.minimum:,.0f} debits/s"


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    spread: bool  # True: each debit to a random wallet of WALLETS; False: all to the hot one
    target: Target | None = None


SCENARIOS = (
    Scenario("hot wallet, 1 client", 1, spread=False),
    Scenario("hot wallet, 8 clients", 8, spread=False, target=Target("ratio", 0.5)),
    Scenario("hot wallet, 32 clients", 32, spread=False),
    Scenario(f"{WALLETS:,} wallets, 32 clients", 32, spread=True,
             target=Target("walletflow_per_s", 3_000)),
)


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    run_s: float


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    walletflow_per_s: float
    baseline_per_s: float

    @property
    def ratio(self) -> float:
        return self.walletflow_per_s / self.baseline_per_s

    @property
    def target_met(self) -> bool | None:
        target = self.scenario.target
        return None if target is None else getattr(self, target.metric) >= target.minimum


@dataclass(frozen=True)
class Report:
    timing: Timing
    results: list[Result]
    hot_balance: int
    hot_balance_expected: int
    audit: AuditReport

    @property
    def correct(self) -> bool:
        return self.hot_balance == self.hot_balance_expected and self.audit.ok

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self.timing),
            "results": [
                {
                    "scenario": r.scenario.name,
                    "clients": r.scenario.clients,
                    "walletflow_debits_per_s": round(r.walletflow_per_s, 1),
                    "baseline_ops_per_s": round(r.baseline_per_s, 1),
                    "ratio": round(r.ratio, 3),
                    "target": None if r.scenario.target is None else str(r.scenario.target),
                    "target_met": r.target_met,
                }
                for r in self.results
            ],
            "hot_balance": self.hot_balance,
            "hot_balance_expected": self.hot_balance_expected,
            "audit_ok": self.audit.ok,
            "audit": asdict(self.audit),
        }


@dataclass(frozen=True)
class Wallets:
    hot: uuid.UUID
    spread: list[uuid.UUID]


# --- measuring --------------------------------------------------------------------------------


async def run_clients(debits: Sequence[Debit], seconds: float) -> tuple[int, float]:
    """Run one client per debit function until ``seconds`` have passed.

    Returns the successful debits and the elapsed time; debits started before the deadline
    finish after it, and elapsed covers them.
    """
    start = time.perf_counter()
    deadline = start + seconds

    async def client(debit: Debit) -> int:
        done = 0
        while time.perf_counter() < deadline:
            if await debit():
                done += 1
        return done

    async with asyncio.TaskGroup() as group:  # one failing client cancels the others
        clients = [group.create_task(client(d)) for d in debits]
    return sum(c.result() for c in clients), time.perf_counter() - start


async def measure(debits: Sequence[Debit], timing: Timing) -> tuple[float, int]:
    """Warm up, then run: the measured rate, and every successful debit (warm-up included)."""
    warmed, _ = await run_clients(debits, timing.warmup_s)
    done, elapsed = await run_clients(debits, timing.run_s)
    return done / elapsed, warmed + done


def ledger_debit(ledger: Ledger, wallets: Sequence[uuid.UUID]) -> Debit:
    """A walletflow client: each call is one ``Ledger.debit`` (on PostgreSQL it joins the group
    being formed, if any, and the group checks a connection out of the engine's hot-path pool)."""

    async def debit() -> bool:
        await ledger.debit(random.choice(wallets), ASSET, 1, f"bench-{uuid.uuid4().hex}")
        return True

    return debit


def raw_debit(conn: asyncpg.Connection, rows: Sequence[int]) -> Debit:
    """A baseline client on its own connection."""

    async def debit() -> bool:
        status: str = await conn.execute(RAW_DEBIT, 1, random.choice(rows))
        return status == "UPDATE 1"

    return debit


# --- database ---------------------------------------------------------------------------------


def with_driver(url: str, driver: str) -> str:
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database for this run (its SQLAlchemy URL), dropped on the way out."""
    name = f"walletflow_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def raw_table(dsn: str) -> AsyncIterator[None]:
    """The baseline's ``bench_raw``: row 0 is the hot row, rows 1..WALLETS the spread ones."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_raw")
        await conn.execute(
            "CREATE TABLE bench_raw (id integer PRIMARY KEY, balance bigint NOT NULL)"
        )
        await conn.execute(
            "INSERT INTO bench_raw SELECT i, CASE WHEN i = 0 THEN $1::bigint ELSE $2::bigint END"
            " FROM generate_series(0, $3::integer) AS i",
            HOT_CREDIT, WALLET_CREDIT, WALLETS,
        )
        yield
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_raw")
        await conn.close()


async def open_wallet(ledger: Ledger, external_id: str, amount: int) -> uuid.UUID:
    customer = await ledger.create_customer(external_id)
    await ledger.credit(customer.id, ASSET, amount, f"{external_id}:credit")
    return customer.id


async def create_wallets(ledger: Ledger) -> Wallets:
    """The hot wallet and the spread ones, credited (customer ids are unique to this run)."""
    await ledger.create_asset(ASSET, "Benchmark credits", 0, "custom")
    run = uuid.uuid4().hex[:8]
    hot = await open_wallet(ledger, f"bench-{run}-hot", HOT_CREDIT)
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def spread_wallet(i: int) -> uuid.UUID:
        async with gate:
            return await open_wallet(ledger, f"bench-{run}-{i}", WALLET_CREDIT)

    return Wallets(hot, list(await asyncio.gather(*(spread_wallet(i) for i in range(WALLETS)))))


# --- the run ----------------------------------------------------------------------------------


async def run_scenario(
    scenario: Scenario, ledger: Ledger, wallets: Wallets, dsn: str, timing: Timing
) -> tuple[Result, int]:
    """Walletflow, then the baseline; also returns walletflow's successful debits."""
    targets = wallets.spread if scenario.spread else [wallets.hot]
    clients = [ledger_debit(ledger, targets)] * scenario.clients
    walletflow_per_s, debited = await measure(clients, timing)
    await dispose(ledger.engine)  # close the pools' connections before the baseline opens its own

    rows = range(1, WALLETS + 1) if scenario.spread else [0]
    conns = await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(scenario.clients)))
    try:
        baseline_per_s, _ = await measure([raw_debit(c, rows) for c in conns], timing)
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return Result(scenario, walletflow_per_s, baseline_per_s), debited


async def benchmark(url: str, timing: Timing) -> Report:
    """Migrate, set up the wallets, run every scenario, then check the hot wallet and the audit."""
    await upgrade_async(url)
    dsn = with_driver(url, "postgresql")
    engine = create_engine(url, pool_size=max(s.clients for s in SCENARIOS) + 4)
    ledger = Ledger(engine)
    try:
        started = time.perf_counter()
        wallets = await create_wallets(ledger)
        log(f"setup: {WALLETS + 1} wallets in {time.perf_counter() - started:.1f}s")
        results: list[Result] = []
        hot_debited = 0
        async with raw_table(dsn):
            for scenario in SCENARIOS:
                log(f"running: {scenario.name}")
                result, debited = await run_scenario(scenario, ledger, wallets, dsn, timing)
                results.append(result)
                if not scenario.spread:
                    hot_debited += debited
        hot_balance = (await ledger.balance(wallets.hot, ASSET)).posted
        return Report(timing, results, hot_balance, HOT_CREDIT - hot_debited, await ledger.audit())
    finally:
        await dispose(engine)


async def run(database_url: str | None, timing: Timing) -> Report:
    if database_url:
        return await benchmark(with_driver(database_url, "postgresql+asyncpg"), timing)
    async with fresh_database() as url:
        return await benchmark(url, timing)


# --- output -----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Lines of an aligned table: the first row is the header, text left, figures right."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    rows = [rows[0], tuple("-" * w for w in widths), *rows[1:]]
    return [
        "  ".join(f"{cell:{align}{w}}" for cell, align, w in zip(row, "<>>><", widths, strict=True)).rstrip()
        for row in rows
    ]


def render(report: Report) -> str:
    rows: list[tuple[str, ...]] = [
        ("scenario", "walletflow debits/s", "baseline ops/s", "ratio", "target")
    ]
    for r in report.results:
        target = r.scenario.target
        verdict = "-" if target is None else f"{target}: {'met' if r.target_met else 'MISSED'}"
        rows.append((r.scenario.name, f"{r.walletflow_per_s:,.0f}", f"{r.baseline_per_s:,.0f}",
                     f"{r.ratio:.2f}", verdict))
    lines = table(rows)
    balance = f"{report.hot_balance:,} (expected {report.hot_balance_expected:,}): " + (
        "ok" if report.hot_balance == report.hot_balance_expected else "MISMATCH"
    )
    audit = "ok" if report.audit.ok else f"FAILED {report.audit}"
    return "\n".join([
        *lines,
        "",
        f"{report.timing.run_s:g} s per scenario after a {report.timing.warmup_s:g} s warm-up",
        f"hot wallet balance: {balance}",
        f"audit: {audit}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="1 s per scenario instead of 5 s")
    parser.add_argument("--database-url", help="use this PostgreSQL database, not a fresh one")
    args = parser.parse_args()
    timing = Timing(warmup_s=0.3, run_s=1.0) if args.quick else Timing(warmup_s=1.0, run_s=5.0)
    report = asyncio.run(run(args.database_url, timing))
    print(json.dumps(report.as_json(), indent=2, default=str) if args.json else render(report))
    sys.exit(0 if report.correct else 1)


if __name__ == "__main__":
    main()
