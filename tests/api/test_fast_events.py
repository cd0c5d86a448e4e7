"""``POST /v1/events`` answered by the fast path (walletflow/api/fast_paths.py) is answered exactly
as by the FastAPI route it stands in front of.

Two apps on the same database: the real one, and one built the same way without ``FastEvents``.
A batch that writes cannot be sent to both and read the same (the second copy is a duplicate),
so a written batch is checked by hand and its retries compared; batches that write nothing
(refusals, unmatched, bad input) are compared directly. The real app must have answered every
all-valid batch itself and handed every other request over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import Keys, answered_by, bearer, client_without, new_id, same, wallet_of
from tests.api.test_events_api import event, now, setup
from walletflow.api.fast_paths import FastEvents


@pytest_asyncio.fixture(loop_scope="session")
async def plain(engine: AsyncEngine, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_without(engine, app, FastEvents) as http:
        yield http


async def test_a_written_batch_and_its_retries_read_the_same_from_both(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, app: FastAPI, keys: Keys
) -> None:
    usd, customer, event_type = await setup(client, funded=100)
    repeated = new_id("ev")
    events: list[dict[str, Any]] = [
        {**event(customer, event_type, repeated, n=30),
         "costs": [{"vendor": "openai", "asset": usd, "amount": 12}]},
        event(customer, event_type, n=50),
        event(customer, event_type, repeated, n=30),          # the same id again: a retry of it
        event(customer, event_type, n=40),                    # 20 left: insufficient funds
        event(customer, "no-such-type", n=1),                 # unmatched
        {**event(customer, event_type, n=1), "customer_id": "00000000-0000-4000-8000-000000000000"},
        {**event(customer, event_type, n=1), "customer_id": None, "external_customer_id": "nobody-here"},
    ]
    ingest = bearer(keys.ingest)
    before = answered_by(app, FastEvents)

    first = await client.post("/v1/events", json={"events": events}, headers=ingest)

    assert answered_by(app, FastEvents) == before + 1
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    results = first.json()["results"]
    assert [(r["id"], r["status"], r["amount"]) for r in results] == [
        (events[0]["id"], "debited", 30), (events[1]["id"], "debited", 50), (repeated, "duplicate", 30),
        (events[3]["id"], "insufficient_funds", 40), (events[4]["id"], "unmatched", 0),
        (events[5]["id"], "rejected", 0), (events[6]["id"], "rejected", 0),
    ]
    assert results[0]["transaction_id"] and results[0]["transaction_id"] == results[2]["transaction_id"]
    assert results[3]["transaction_id"] is None and results[3]["asset"] == usd
    assert [r["error"] for r in results[4:]] == [
        "no price for event type 'no-such-type'", "unknown customer", "unknown customer"]
    assert (await wallet_of(client, customer, usd))["posted"] == 20

    retry_plain = await plain.post("/v1/events", json={"events": events}, headers=ingest)
    retry_fast = await client.post("/v1/events", json={"events": events}, headers=ingest)
    same(retry_fast, retry_plain)
    assert [r["status"] for r in retry_fast.json()["results"][:3]] == ["duplicate"] * 3
    assert answered_by(app, FastEvents) == before + 2
    assert (await wallet_of(client, customer, usd))["posted"] == 20


async def test_everything_else_is_handed_to_the_route_and_reads_the_same(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, app: FastAPI, keys: Keys
) -> None:
    usd, customer, event_type = await setup(client, funded=10)
    good = event(customer, event_type, n=1)
    bad_event = {**event(customer, event_type, n=1), "occurred_at": "yesterday"}
    cases: list[tuple[Any, dict[str, str]]] = [
        ({"events": [bad_event, {**good, "data": {"n": 100}}]}, bearer(keys.ingest)),  # one bad event
        ({"events": [{**good, "extra": 1}]}, bearer(keys.ingest)),                    # unknown field
        ({"events": [{**good, "id": ""}]}, bearer(keys.ingest)),                      # empty id
        ({"events": [{**good, "costs": [{"vendor": "x", "asset": usd, "amount": -1}]}]}, bearer(keys.ingest)),
        ({"events": []}, bearer(keys.ingest)),                                        # empty batch
        ({"events": [good] * 1001}, bearer(keys.ingest)),                             # too many
        ({"events": [good]}, bearer(keys.read)),                                      # wrong scope
        ({"events": [good]}, bearer("wf_not_a_key")),                                 # unknown key
        ({"events": [good]}, {"Authorization": ""}),                                  # no key
        ({"events": [{**good, "event_type": "a\u0000b"}]}, bearer(keys.ingest)),      # NUL
        (b"{not json", bearer(keys.ingest)),
    ]
    before = answered_by(app, FastEvents)
    for body, headers in cases:
        send = {"content": body, "headers": {**headers, "content-type": "application/json"}} if isinstance(
            body, bytes) else {"json": body, "headers": headers}
        fast = await client.post("/v1/events", **send)
        slow = await plain.post("/v1/events", **send)
        same(fast, slow)
    assert answered_by(app, FastEvents) == before  # none of them was answered by the fast path
    assert (await wallet_of(client, customer, usd))["posted"] == 10  # nothing written: all refused
    # ... and one well-formed batch in the future is still answered by it, as the route would.
    future = {**good, "id": new_id("ev"), "occurred_at": now(dt.timedelta(hours=1))}
    fast = await client.post("/v1/events", json={"events": [future]}, headers=bearer(keys.ingest))
    slow = await plain.post("/v1/events", json={"events": [future]}, headers=bearer(keys.ingest))
    same(fast, slow)
    assert fast.json()["results"][0]["error"] == "occurred_at is in the future"
    assert answered_by(app, FastEvents) == before + 1
