"""PostgreSQL restarted in the middle of event ingestion, while clients retry each batch with the
same event ids until it is accepted: no event is lost and none is debited twice.

Runs on a private PostgreSQL cluster made for this test (Debian's pg_createcluster, the server's
own binaries), so restarting it disturbs nothing else; a machine without those tools fails here.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from tests.api.conftest import fund, make_asset, make_customer, publish_product, wallet_of
from tests.services import free_port
from walletflow.api.app import create_app
from walletflow.db.engine import create_engine, dispose
from walletflow.db.migrate import upgrade_async
from walletflow.ledger.service import Ledger
from walletflow.usage.models import UsageEvent

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLIENTS = 12
BATCHES_PER_CLIENT = 12
EVENTS_PER_BATCH = 25
PRICE = 3


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[tuple[str, str, str]]:
    """(SQLAlchemy URL, version, cluster name) of a fresh, private PostgreSQL cluster."""
    for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} (Debian's postgresql-common) is required for this test")
    version = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.split()[0]
    name, port = f"wfrestart{uuid.uuid4().hex[:6]}", free_port()
    _run("pg_createcluster", version, name, "-p", str(port), "--", "--auth=trust")
    try:
        _run("pg_ctlcluster", version, name, "start")
        _run("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "CREATE DATABASE walletflow")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/walletflow", version, name
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120)


@pytest_asyncio.fixture(loop_scope="session")
async def restart_app(private_postgres: tuple[str, str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, Ledger, object]]:
    url, _, _ = private_postgres
    await upgrade_async(url)
    engine = create_engine(url, pool_size=10)
    app = create_app(engine)
    _, key = await app.state.services.keys.create("restart", "admin")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://walletflow.test",
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        yield http, Ledger(engine), engine
    await dispose(engine)


async def post_until_accepted(http: httpx.AsyncClient, body: dict, log: list[int]) -> list[dict]:
    """What a well-behaved client does: the same batch again, until it is answered."""
    for _ in range(600):
        try:
            response = await http.post("/v1/events", json=body)
        except httpx.TransportError:
            log.append(0)
        else:
            if response.status_code == 200:
                return response.json()["results"]
            log.append(response.status_code)
            assert response.status_code == 503 and response.json()["code"] == "database_unavailable", response.text
            assert response.headers["retry-after"] == "1"
        await asyncio.sleep(0.05)
    raise AssertionError("the batch was never accepted")


async def test_restarting_postgresql_during_ingestion_loses_and_doubles_nothing(
    restart_app: tuple[httpx.AsyncClient, Ledger, object], private_postgres: tuple[str, str, str]
) -> None:
    http, ledger, engine = restart_app
    _, version, name = private_postgres
    asset = await make_asset(http)
    product = await publish_product(http, [{"event_type": "restart.call", "asset": asset, "model": "per_unit",
                                            "unit_price": str(PRICE)}])
    customer = await make_customer(http)
    await http.post(f"/v1/customers/{customer}/subscriptions", json={"product_code": product})
    total = CLIENTS * BATCHES_PER_CLIENT * EVENTS_PER_BATCH
    await fund(http, customer, asset, total * PRICE)

    refused: list[int] = []
    debited: list[str] = []

    async def client(n: int) -> None:
        for b in range(BATCHES_PER_CLIENT):
            events = [{"id": f"r-{n}-{b}-{i}", "customer_id": customer, "event_type": "restart.call",
                       "occurred_at": "2026-11-27T12:00:00Z", "data": {}} for i in range(EVENTS_PER_BATCH)]
            results = await post_until_accepted(http, {"events": events}, refused)
            debited.extend(r["id"] for r in results if r["status"] == "debited")
            assert all(r["status"] in ("debited", "duplicate") for r in results), results

    async def restart_midway() -> None:
        while len(debited) < total // 3:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(_run, "pg_ctlcluster", version, name, "restart", "-m", "fast")

    await asyncio.gather(restart_midway(), *(client(n) for n in range(CLIENTS)))

    print(f"refused while restarting: {sorted(set(refused))} x{len(refused)}")
    assert refused, "the restart should have refused some requests (else it proved nothing)"
    assert len(debited) == len(set(debited))  # never told "debited" twice for one event
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        stored = (await conn.execute(
            select(func.count()).select_from(UsageEvent.__table__).where(UsageEvent.__table__.c.customer_id == uuid.UUID(customer))
        )).scalar_one()
    assert stored == total  # none lost
    wallet = await wallet_of(http, customer, asset)
    assert wallet["posted"] == 0  # every event debited exactly once: funding was exactly enough
    assert (await ledger.audit()).ok
