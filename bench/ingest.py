"""Usage ingestion end to end over HTTP on PostgreSQL, next to a raw COPY baseline from the same run.

What is measured, against the real API server (uvicorn with uvloop and httptools, no access log,
``--workers`` processes, 2 by default as ``walletflow api --workers 2`` would run it on a 2-core
machine, each with the default pool of 20 connections) started as a subprocess on a fresh
database:

- events per second over HTTP: batches of 1,000 LLM usage events (``POST /v1/events``, each event
  for a random one of 1,000 funded customers, a unique id, ``{model, input_tokens,
  output_tokens}`` and a vendor cost) from 2 and then 4 concurrent clients, each on one keep-alive
  connection with one request in flight; the better of the two is the figure. Only ``debited``
  events count, and every event must be debited with the fee the price says;
- the baseline: the same rows (the columns of ``usage_events``) written with asyncpg's
  ``copy_records_to_table`` into ``bench_usage_copy`` (``LIKE usage_events INCLUDING DEFAULTS``:
  no index, no constraint, no wallet) in batches of 1,000, with as many concurrent connections as
  the better HTTP run. It is the cheapest way PostgreSQL can take the rows in, so the ratio says
  what share of the raw write rate survives pricing, debiting and the HTTP/JSON round trip;
- authorizations over HTTP: 32 concurrent clients, each looping ``POST /v1/authorizations`` (a
  fresh idempotency key, a small amount, a random funded customer) on its own keep-alive
  connection through :class:`RawHttp` (a minimal HTTP/1.1 client: httpx cost the load generator
  more CPU per request than the server used); p50 / p99 round-trip latency and requests per
  second.

The price is realistic for an LLM: per_unit on ``input_tokens`` and on ``output_tokens`` for
``{"model": "*"}`` plus a cheaper, more specific pair for ``gpt-4o-mini``. The asset is fiat
``USD`` with scale 6 (micro-dollars): at scale 2 a typical call costs a fraction of a cent and
would round to 0 (see the pricing engine's docstring), which would skip the debit entirely.

Events and authorizations use an ``ingest``-scope key; the setup (asset, customers, funding
adjustments, product) goes through the API with an admin key. Request bodies are serialised up
front (32 templates of 1,000 events; each batch only substitutes its number into the event ids),
responses are checked cheaply, and the load generator runs on uvloop, so that the client stays a
small share of the CPU. It still shares the machine: on the 2-core box this was written on, the
server, PostgreSQL and the load generator all compete for the same two cores (and with anything
else running, e.g. test suites), so absolute rates are noisy; the CPU line per phase says who used
the cores (the server's figure is all its worker processes together). Each phase warms up briefly, then runs for a fixed time (events 10 s, authorizations
5 s; ``--quick``: 2 s and 1 s).

Afterwards: the debited amounts reported by the API must add up to the drop of the bench
customers' total posted balance, and ``Ledger.audit()`` must find no broken invariant (else exit
status 1). Missed targets are reported, not failed.

Run: ``python -m bench.ingest [--json] [--quick] [--workers N]``. A fresh database is created, migrated, and
dropped at the end; the server subprocess is stopped on the way out, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import itertools
import json
import os
import random
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.ledger import fresh_database, table, with_driver
from walletflow.auth.service import ApiKeys
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.ledger.schemas import AuditReport
from walletflow.ledger.service import Ledger

ASSET = "USD"
SCALE = 6  # micro-dollars
CUSTOMERS = 1_000
FUNDING = 10**12  # $1M each: far more than any run spends
BATCH = 1_000
TEMPLATES = 32
EVENT_CLIENTS = (2, 4)
AUTH_CLIENTS = 32
SETUP_CONCURRENCY = 16
EVENT_TYPE = "llm.completion"
PRODUCT = "llm-chat"
TARGET_EVENTS_PER_S = 20_000
TARGET_AUTH_P99_MS = 15.0
COPY_TABLE = "bench_usage_copy"
COPY_COLUMNS = (
    "customer_id", "event_id", "event_type", "occurred_at", "received_at", "product_code",
    "version", "asset", "amount", "transaction_id", "data",
)
#: (model, share of calls, input µUSD per token, output µUSD per token, vendor, vendor cost share)
MODELS = (
    ("gpt-4o", 0.35, "2.5", "10", "openai", 0.8),
    ("gpt-4o-mini", 0.35, "0.15", "0.6", "openai", 0.8),
    ("claude-sonnet-4", 0.2, "2.5", "10", "anthropic", 0.8),
    ("llama-3.1-70b", 0.1, "2.5", "10", "together", 0.5),
)
PRICES = [
    {"event_type": EVENT_TYPE, "asset": ASSET, "model": "per_unit", "dimensions": {"model": "*"},
     "quantity_field": "input_tokens", "unit_price": "2.5"},
    {"event_type": EVENT_TYPE, "asset": ASSET, "model": "per_unit", "dimensions": {"model": "*"},
     "quantity_field": "output_tokens", "unit_price": "10"},
    {"event_type": EVENT_TYPE, "asset": ASSET, "model": "per_unit",
     "dimensions": {"model": "gpt-4o-mini"}, "quantity_field": "input_tokens", "unit_price": "0.15"},
    {"event_type": EVENT_TYPE, "asset": ASSET, "model": "per_unit",
     "dimensions": {"model": "gpt-4o-mini"}, "quantity_field": "output_tokens", "unit_price": "0.6"},
]
PLACEHOLDER = "@B@"  # where a batch's number goes in its event ids
JSON_HEADERS = {"content-type": "application/json"}

#: One request (or COPY) by one client; returns how many units (events, rows, requests) it did.
Work = Callable[[], Awaitable[int]]
#: A CPU-time sample of the server, the bench database's backends, this process and the machine.
Sampler = Callable[[], tuple[float, ...] | None]


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    events_s: float
    auth_s: float
    workers: int = 2  # API server processes


@dataclass
class Cpu:
    """Cores used during a phase (CPU seconds per wall second), Linux /proc only."""

    server: float
    postgres: float  # the backends connected to the bench database
    load_generator: float
    machine: float  # all of it: the above plus anything else running

    def __str__(self) -> str:
        return (f"server {self.server:.2f}, postgres backends {self.postgres:.2f}, load generator "
                f"{self.load_generator:.2f}, whole machine {self.machine:.2f} of {os.cpu_count()}")


@dataclass
class Phase:
    name: str
    clients: int
    per_s: float
    cpu: Cpu | None


@dataclass
class Latency:
    clients: int
    per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cpu: Cpu | None


@dataclass
class Report:
    timing: Timing
    http: list[Phase]
    baseline: Phase
    auth: Latency
    events_debited: int
    amount_debited: int
    balance_drop: int
    audit: AuditReport

    @property
    def best_http(self) -> Phase:
        return max(self.http, key=lambda p: p.per_s)

    @property
    def ratio(self) -> float:
        return self.best_http.per_s / self.baseline.per_s

    @property
    def correct(self) -> bool:
        return self.amount_debited == self.balance_drop and self.audit.ok

    def figures(self) -> list[dict[str, Any]]:
        best = self.best_http
        return [
            {"figure": f"events/s over HTTP (best: {best.clients} clients)",
             "walletflow": round(best.per_s, 1), "baseline": round(self.baseline.per_s, 1),
             "ratio": round(self.ratio, 4), "target": f">= {TARGET_EVENTS_PER_S:,} events/s",
             "target_met": best.per_s >= TARGET_EVENTS_PER_S},
            {"figure": f"authorization p50 ({self.auth.clients} clients)",
             "walletflow": round(self.auth.p50_ms, 2), "unit": "ms"},
            {"figure": f"authorization p99 ({self.auth.clients} clients)",
             "walletflow": round(self.auth.p99_ms, 2), "unit": "ms",
             "target": f"<= {TARGET_AUTH_P99_MS:g} ms",
             "target_met": self.auth.p99_ms <= TARGET_AUTH_P99_MS},
            {"figure": f"authorizations/s ({self.auth.clients} clients)",
             "walletflow": round(self.auth.per_s, 1)},
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self.timing),
            "figures": self.figures(),
            "http_runs": [asdict(p) for p in self.http],
            "baseline_run": asdict(self.baseline),
            "authorizations": asdict(self.auth),
            "events_debited": self.events_debited,
            "amount_debited": self.amount_debited,
            "balance_drop": self.balance_drop,
            "balance_ok": self.amount_debited == self.balance_drop,
            "audit_ok": self.audit.ok,
            "audit": asdict(self.audit),
        }


# --- CPU accounting (best effort, Linux) ---------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_ticks(stat: str) -> int:
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _cpu_sample(server_pid: int, database: str) -> tuple[float, ...] | None:
    try:
        postgres = 0
        stats: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    stats[int(entry.name)] = stat
                    # a backend's title: "postgres: 15/main: USER DATABASE HOST(PORT) STATE"
                    if "(postgres)" in stat and f" {database} " in (entry / "cmdline").read_text():
                        postgres += _proc_ticks(stat)
                except OSError:
                    continue
        # The server: uvicorn's supervisor and its worker processes (any depth).
        parents = {pid: int(stat[stat.rindex(")") + 2:].split()[1]) for pid, stat in stats.items()}
        tree, grew = {server_pid}, True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in tree} - tree
            tree |= more
            grew = bool(more)
        server = sum(_proc_ticks(stats[pid]) for pid in tree if pid in stats)
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(values[:8]) - values[3] - values[4]  # all but idle and iowait
        return (time.perf_counter(), server / _TICK, postgres / _TICK, time.process_time(),
                busy / _TICK)
    except (OSError, ValueError, IndexError):
        return None


def _cpu_between(before: tuple[float, ...] | None, after: tuple[float, ...] | None) -> Cpu | None:
    if before is None or after is None:
        return None
    wall = after[0] - before[0]
    return Cpu(*[round((a - b) / wall, 2) for a, b in zip(after[1:], before[1:], strict=True)])


# --- workload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One batch of events, serialised once; a batch number makes its ids unique."""

    parts: list[bytes]  # the body, cut where the batch number goes (in every event id)
    expected: int  # the batch's total fee, by the price above
    rows: list[tuple[uuid.UUID, str, dt.datetime, int, str]]  # customer, id suffix, when, fee, data

    def body(self, n: int) -> bytes:
        return str(n).encode().join(self.parts)

    def records(self, n: int, prefix: str, version: int) -> list[tuple[Any, ...]]:
        """The rows ``usage_events`` would get, for the baseline."""
        now = dt.datetime.now(dt.UTC)
        return [
            (customer, f"{prefix}{n}{suffix}", EVENT_TYPE, occurred, now, PRODUCT, version, ASSET,
             fee, None, data)
            for customer, suffix, occurred, fee, data in self.rows
        ]


def _fee(usage: Sequence[tuple[int, str]]) -> int:
    """The event's fee: the exact sum of tokens x rate over its metrics, rounded half up once
    (the pricing engine's rule), in integers."""
    scale = 10 ** max(len(rate.partition(".")[2]) for _, rate in usage)
    exact = sum(tokens * int(Decimal(rate) * scale) for tokens, rate in usage)
    return (2 * exact + scale) // (2 * scale)


def make_templates(customers: Sequence[uuid.UUID], run: str, rng: random.Random) -> list[Template]:
    weights = [m[1] for m in MODELS]
    templates = []
    for t in range(TEMPLATES):
        now = dt.datetime.now(dt.UTC)
        events, rows, expected = [], [], 0
        for i in range(BATCH):
            model, _, rate_in, rate_out, vendor, cost_share = rng.choices(MODELS, weights)[0]
            input_tokens = min(int(rng.lognormvariate(7, 1)), 100_000)  # median ~1,100
            output_tokens = min(int(rng.lognormvariate(5.5, 1)), 16_000)  # median ~250
            fee = _fee([(input_tokens, rate_in), (output_tokens, rate_out)])
            customer = rng.choice(customers)
            occurred = now - dt.timedelta(milliseconds=rng.randrange(60_000))
            data = {"model": model, "input_tokens": input_tokens, "output_tokens": output_tokens}
            suffix = f"-{t}-{i}"
            events.append({
                "id": f"ev-{run}-{PLACEHOLDER}{suffix}", "customer_id": str(customer),
                "event_type": EVENT_TYPE, "occurred_at": occurred.isoformat(), "data": data,
                "costs": [{"vendor": vendor, "asset": ASSET, "amount": int(fee * cost_share)}],
            })
            rows.append((customer, suffix, occurred, fee, json.dumps(data)))
            expected += fee
        parts = json.dumps({"events": events}, separators=(",", ":")).split(PLACEHOLDER)
        assert len(parts) == BATCH + 1
        templates.append(Template([p.encode() for p in parts], expected, rows))
    return templates


class EventSender:
    """The walletflow side: POST /v1/events, checking every result."""

    def __init__(self, templates: list[Template]) -> None:
        self.templates = templates
        self.batches = itertools.count()
        self.events = 0
        self.amount = 0

    def client(self, http: httpx.AsyncClient) -> Work:
        async def send() -> int:
            n = next(self.batches)
            template = self.templates[n % len(self.templates)]
            response = await http.post("/v1/events", content=template.body(n), headers=JSON_HEADERS)
            if response.status_code != 200:
                raise BenchError(f"POST /v1/events: {response.status_code} {response.text[:500]}")
            results = json.loads(response.content)["results"]
            debited = [r for r in results if r["status"] == "debited"]
            if len(debited) != BATCH:
                odd = next(r for r in results if r["status"] != "debited")
                raise BenchError(f"{BATCH - len(debited)} of {BATCH} events not debited, e.g. {odd}")
            amount = sum(r["amount"] for r in debited)
            if amount != template.expected:
                raise BenchError(f"batch {n} debited {amount}, the price says {template.expected}")
            self.events += BATCH
            self.amount += amount
            return BATCH

        return send


def copy_client(conn: asyncpg.Connection, templates: list[Template], batches: itertools.count,
                prefix: str, version: int) -> Work:
    async def copy() -> int:
        n = next(batches)
        records = templates[n % len(templates)].records(n, prefix, version)
        await conn.copy_records_to_table(COPY_TABLE, records=records, columns=COPY_COLUMNS)
        return BATCH

    return copy


class RawHttp:
    """One keep-alive HTTP/1.1 connection with one request in flight: the leanest honest client.

    The authorization phase sends small requests from 32 clients; through httpx the load
    generator used about as much CPU per request as the server (2.6 ms, bench output), on the
    same two cores, so it inflated the latency it measured. This writes the request bytes and
    reads the status line, the headers and the body (Content-Length or chunked) itself."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), self.head, len(body), body))
        status = int((await self.reader.readuntil(b"\r\n")).split(b" ", 2)[1])
        length, chunked = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # the empty trailer
        return status, b"".join(parts)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


def auth_client(http: RawHttp, customers: Sequence[uuid.UUID], run: str,
                latencies: list[float], rng: random.Random) -> Work:
    counter = itertools.count()
    tag = uuid.uuid4().hex[:8]  # this client's, so idempotency keys never collide across clients
    bodies = [
        b'{"customer_id":"%s","asset":"%s","amount":%%d,"idempotency_key":"auth-%s-%%s"}'
        % (str(c).encode(), ASSET.encode(), run.encode())
        for c in customers
    ]

    async def authorize() -> int:
        body = rng.choice(bodies) % (rng.randint(1, 1_000), f"{tag}-{next(counter)}".encode())
        started = time.perf_counter()
        status, content = await http.post("/v1/authorizations", body)
        latencies.append(time.perf_counter() - started)
        if status != 201 or b'"status":"pending"' not in content:
            raise BenchError(f"POST /v1/authorizations: {status} {content[:500]!r}")
        return 1

    return authorize


# --- measuring (as in bench.ledger) ----------------------------------------------------------------


class BenchError(RuntimeError):
    pass


async def run_clients(work: Sequence[Work], seconds: float) -> tuple[int, float]:
    """One client per work function until ``seconds`` have passed: units done, elapsed time."""
    start = time.perf_counter()
    deadline = start + seconds

    async def client(do: Work) -> int:
        done = 0
        while time.perf_counter() < deadline:
            done += await do()
        return done

    async with asyncio.TaskGroup() as group:  # one failing client cancels the others
        clients = [group.create_task(client(w)) for w in work]
    return sum(c.result() for c in clients), time.perf_counter() - start


async def measure(work: Sequence[Work], warmup_s: float, run_s: float,
                  sample: Sampler) -> tuple[float, Cpu | None]:
    """Warm up, then run: the rate over the run and the CPU used during it."""
    await run_clients(work, warmup_s)
    before = sample()
    done, elapsed = await run_clients(work, run_s)
    return done / elapsed, _cpu_between(before, sample())


@asynccontextmanager
async def http_clients(base_url: str, key: str, n: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``n`` clients, each on one keep-alive connection."""
    clients = [
        httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                          limits=httpx.Limits(max_connections=1), timeout=60.0)
        for _ in range(n)
    ]
    try:
        yield clients
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


# --- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def api_server(url: str, workers: int = 1) -> AsyncIterator[tuple[str, int]]:
    """The real API as a subprocess on ``url``'s database: its base URL and pid."""
    port = free_port()
    env = {**os.environ, "WALLETFLOW_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "walletflow.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning", "--workers", str(workers), env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=1.0) as http:
            for _ in range(300):
                if proc.returncode is not None:
                    raise BenchError(f"the API server exited with status {proc.returncode}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise BenchError("the API server did not answer /healthz within 30 s")
        yield base, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# --- setup through the API -------------------------------------------------------------------------


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any], expect: int = 201) -> Any:
    response = await http.post(path, json=body)
    if response.status_code != expect:
        raise BenchError(f"POST {path}: {response.status_code} {response.text[:500]}")
    return response.json()


async def set_up(base: str, admin_key: str, run: str) -> tuple[list[uuid.UUID], int]:
    """Asset, funded customers and the published product: the customers and the version."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {admin_key}"},
                                 timeout=60.0) as http:
        await post(http, "/v1/assets", {"code": ASSET, "name": "US dollar (micro)", "scale": SCALE,
                                        "kind": "fiat"})
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def customer(i: int) -> uuid.UUID:
            async with gate:
                created = await post(http, "/v1/customers", {"external_id": f"bench-{run}-{i}"})
                await post(http, f"/v1/customers/{created['id']}/adjustments", {
                    "idempotency_key": f"fund-{run}-{i}", "asset": ASSET, "amount": FUNDING,
                    "reason": "external_topup",
                })
                return uuid.UUID(created["id"])

        customers = list(await asyncio.gather(*(customer(i) for i in range(CUSTOMERS))))
        await post(http, "/v1/products", {"code": PRODUCT, "name": "LLM chat"})
        version = (await post(http, f"/v1/products/{PRODUCT}/versions", {"prices": PRICES}))["version"]
        await post(http, f"/v1/products/{PRODUCT}/versions/{version}/publish", {}, expect=200)
        return customers, version


async def posted_total(conn: asyncpg.Connection, customers: Sequence[uuid.UUID]) -> int:
    total = await conn.fetchval(
        "SELECT coalesce(sum(posted), 0) FROM accounts WHERE customer_id = ANY($1) AND asset = $2",
        list(customers), ASSET,
    )
    return int(total)


# --- the run ---------------------------------------------------------------------------------------


async def benchmark(url: str, timing: Timing) -> Report:
    await upgrade_async(url)
    dsn = with_driver(url, "postgresql")
    run = uuid.uuid4().hex[:8]
    engine = create_engine(url, pool_size=2)
    try:
        keys = ApiKeys(engine)
        admin_key = (await keys.create("bench admin", "admin"))[1]
        ingest_key = (await keys.create("bench ingest", "ingest"))[1]
        async with api_server(url, timing.workers) as (base, pid):
            sample = functools.partial(_cpu_sample, pid, make_url(url).database or "")
            started = time.perf_counter()
            customers, version = await set_up(base, admin_key, run)
            log(f"setup: {CUSTOMERS:,} funded customers and the product in "
                f"{time.perf_counter() - started:.1f}s")
            rng = random.Random(run)
            templates = make_templates(customers, run, rng)
            conn = await asyncpg.connect(dsn)
            try:
                funded = await posted_total(conn, customers)
                if funded != CUSTOMERS * FUNDING:
                    raise BenchError(f"funded {funded}, expected {CUSTOMERS * FUNDING}")

                sender = EventSender(templates)
                http_runs = []
                for clients in EVENT_CLIENTS:
                    log(f"running: events over HTTP, {clients} clients")
                    async with http_clients(base, ingest_key, clients) as https:
                        rate, cpu = await measure([sender.client(h) for h in https],
                                                  timing.warmup_s, timing.events_s, sample)
                    http_runs.append(Phase("events over HTTP", clients, rate, cpu))
                    log(f"  {rate:,.0f} events/s; cpu: {cpu}")

                best = max(http_runs, key=lambda p: p.per_s)
                log(f"running: baseline COPY, {best.clients} connections")
                await conn.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
                await conn.execute(
                    f"CREATE TABLE {COPY_TABLE} (LIKE usage_events INCLUDING DEFAULTS)"
                )
                copiers = await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(best.clients)))
                try:
                    batches = itertools.count()
                    rate, cpu = await measure(
                        [copy_client(c, templates, batches, f"ev-{run}-copy-", version)
                         for c in copiers],
                        timing.warmup_s, timing.events_s, sample,
                    )
                finally:
                    await asyncio.gather(*(c.close() for c in copiers))
                    await conn.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
                baseline = Phase("baseline COPY", best.clients, rate, cpu)
                log(f"  {rate:,.0f} rows/s; cpu: {cpu}")

                log(f"running: authorizations over HTTP, {AUTH_CLIENTS} clients")
                latencies: list[float] = []
                where = httpx.URL(base)
                raws = [RawHttp(where.host, where.port or 80, ingest_key) for _ in range(AUTH_CLIENTS)]
                try:
                    auth_rng = random.Random(run + "auth")
                    work = [auth_client(h, customers, run, latencies, auth_rng) for h in raws]
                    await run_clients(work, timing.warmup_s)
                    latencies.clear()
                    before = sample()
                    done, elapsed = await run_clients(work, timing.auth_s)
                    cpu = _cpu_between(before, sample())
                finally:
                    await asyncio.gather(*(h.aclose() for h in raws))
                ms = sorted(x * 1000 for x in latencies)
                auth = Latency(AUTH_CLIENTS, done / elapsed, ms[len(ms) // 2],
                               ms[min(len(ms) - 1, int(len(ms) * 0.99))], statistics.fmean(ms), cpu)
                log(f"  {auth.per_s:,.0f} requests/s, p50 {auth.p50_ms:.1f} ms, "
                    f"p99 {auth.p99_ms:.1f} ms; cpu: {cpu}")
                drop = funded - await posted_total(conn, customers)
            finally:
                await conn.close()
        log("auditing the ledger")
        audit = await Ledger(engine).audit()
        return Report(timing, http_runs, baseline, auth, sender.events, sender.amount, drop, audit)
    finally:
        await dispose(engine)


async def run(timing: Timing) -> Report:
    async with fresh_database() as url:
        return await benchmark(url, timing)


# --- output ----------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(report: Report) -> str:
    rows: list[tuple[str, ...]] = [("figure", "walletflow", "baseline", "ratio", "target")]
    for f in report.figures():
        unit = f.get("unit")
        value = f"{f['walletflow']:,.2f} {unit}" if unit else f"{f['walletflow']:,.0f}"
        baseline = f"{f['baseline']:,.0f} (COPY)" if "baseline" in f else "-"
        ratio = f"{f['ratio']:.3f}" if "ratio" in f else "-"
        target = f"{f['target']}: {'met' if f['target_met'] else 'MISSED'}" if "target" in f else "-"
        rows.append((f["figure"], value, baseline, ratio, target))
    lines = table(rows)
    t = report.timing
    tried = ", ".join(f"{p.clients} clients {p.per_s:,.0f}/s" for p in report.http)
    cpu = [f"  {p.name}, {p.clients} clients: {p.cpu}" for p in [*report.http, report.baseline]]
    cpu.append(f"  authorizations, {report.auth.clients} clients: {report.auth.cpu}")
    balance = (f"{report.amount_debited:,} debited over {report.events_debited:,} events, "
               f"posted balance dropped {report.balance_drop:,}: "
               + ("ok" if report.amount_debited == report.balance_drop else "MISMATCH"))
    audit = "ok" if report.audit.ok else f"FAILED {report.audit}"
    return "\n".join([
        *lines,
        "",
        f"events over HTTP tried: {tried}; baseline with {report.baseline.clients} connections",
        f"authorization mean {report.auth.mean_ms:.2f} ms",
        (f"{t.events_s:g} s per event run, {t.auth_s:g} s of authorizations, each after a "
         f"{t.warmup_s:g} s warm-up; API server: {t.workers} worker process(es)"),
        "cores used (CPU s per s):",
        *cpu,
        f"balance: {balance}",
        f"audit: {audit}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="2 s per event run and 1 s of authorizations instead of 10 s and 5 s")
    parser.add_argument("--workers", type=int, default=2,
                        help="API server processes (uvicorn --workers, as walletflow api --workers)")
    args = parser.parse_args()
    timing = (Timing(warmup_s=0.3, events_s=2.0, auth_s=1.0, workers=args.workers) if args.quick
              else Timing(warmup_s=1.0, events_s=10.0, auth_s=5.0, workers=args.workers))
    try:
        import uvloop
    except ImportError:  # the load generator then runs on the default loop
        report = asyncio.run(run(timing))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(run(timing))
    print(json.dumps(report.as_json(), indent=2, default=str) if args.json else render(report))
    sys.exit(0 if report.correct else 1)


if __name__ == "__main__":
    main()
