"""A batch that dies half-way leaves nothing behind, and its retry debits each event once."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product, wallet_of


async def _arm_failure(engine: AsyncEngine, marker: str) -> None:
    """Make the database fail while storing the event whose id starts with ``marker``, as a crash
    in the middle of the batch would (the statement or transaction dies after earlier events)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(
                f"CREATE FUNCTION test_fail_{marker}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.event_id LIKE '{marker}%' THEN RAISE EXCEPTION 'simulated crash'; END IF; "
                f"RETURN NEW; END $$"
            ))
            await conn.execute(text(
                f"CREATE TRIGGER test_fail_{marker} BEFORE INSERT ON usage_events "
                f"FOR EACH ROW EXECUTE FUNCTION test_fail_{marker}()"
            ))
        else:
            await conn.execute(text(
                f"CREATE TRIGGER test_fail_{marker} BEFORE INSERT ON usage_events "
                f"WHEN NEW.event_id LIKE '{marker}%' BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
            ))


async def _disarm(engine: AsyncEngine, marker: str) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"DROP TRIGGER test_fail_{marker} ON usage_events"))
            await conn.execute(text(f"DROP FUNCTION test_fail_{marker}()"))
        else:
            await conn.execute(text(f"DROP TRIGGER test_fail_{marker}"))


async def test_a_batch_that_fails_midway_writes_nothing_and_its_retry_debits_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    usd = await make_asset(client)
    customers = [await make_customer(client) for _ in range(3)]
    for customer in customers:
        await fund(client, customer, usd, 10_000)
    event_type = new_id("job")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit",
                                    "quantity_field": "n", "unit_price": "1"}])
    marker = f"crash{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).isoformat()
    events = [
        {"id": f"{marker if i == 30 else 'ev'}-{i}", "customer_id": customers[i % 3], "event_type": event_type,
         "occurred_at": now, "data": {"n": i + 1}}
        for i in range(60)
    ]

    await _arm_failure(engine, marker)
    try:
        crashed = await client.post("/v1/events", json={"events": events})
        assert crashed.status_code == 500
        for customer in customers:  # nothing of the batch survived, not even the events before #30
            assert (await wallet_of(client, customer, usd))["posted"] == 10_000
    finally:
        await _disarm(engine, marker)

    retried = (await client.post("/v1/events", json={"events": events})).json()["results"]
    assert [r["status"] for r in retried] == ["debited"] * 60
    again = (await client.post("/v1/events", json={"events": events})).json()["results"]
    assert [r["status"] for r in again] == ["duplicate"] * 60
    for c, customer in enumerate(customers):
        # customer c got the events i = c, c+3, ...; event i costs i + 1
        expected = sum(i + 1 for i in range(c, 60, 3))
        assert (await wallet_of(client, customer, usd))["posted"] == 10_000 - expected
