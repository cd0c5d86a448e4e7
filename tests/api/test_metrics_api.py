"""``GET /metrics``: Prometheus counters and latency histograms move with real requests, by the
exact amounts the requests caused (a replayed request counts nothing)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product
from tests.api.test_events_api import event
from walletflow.api.app import create_app
from walletflow.settings import Settings


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics", headers={"Authorization": ""})  # no key needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for line in response.text.splitlines():
        if line.startswith("walletflow_"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def moved(before: dict[str, float], after: dict[str, float], series: str) -> float:
    return after.get(series, 0.0) - before.get(series, 0.0)


async def test_metrics_count_events_debits_and_holds_by_outcome(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    event_type = f"calls.{uuid.uuid4().hex[:8]}"
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "5"}])
    before = await scrape(client)

    results = (await client.post("/v1/events", json={"events": [
        event(customer, event_type), event(customer, "nobody.prices.this"), event(customer, event_type, n=1),
    ]})).json()["results"]
    assert [r["status"] for r in results] == ["debited", "unmatched", "debited"]

    async def authorize(amount: int, key: str | None = None) -> httpx.Response:
        return await client.post("/v1/authorizations", json={
            "idempotency_key": key or new_id("hold"), "customer_id": customer, "asset": usd, "amount": amount})

    kept = await authorize(500, "kept-" + uuid.uuid4().hex)
    assert kept.status_code == 201
    assert (await authorize(100_000)).status_code == 402
    released = await authorize(100)
    assert (await client.post(f"/v1/authorizations/{kept.json()['id']}/capture", json={"amount": 300})).status_code == 200
    assert (await client.post(f"/v1/authorizations/{released.json()['id']}/void")).status_code == 200
    replay = await authorize(500, kept.json()["idempotency_key"])
    assert replay.json()["id"] == kept.json()["id"]
    after = await scrape(client)

    assert moved(before, after, 'walletflow_events_ingested_total{status="debited"}') == 2
    assert moved(before, after, 'walletflow_events_ingested_total{status="unmatched"}') == 1
    assert moved(before, after, 'walletflow_debits_total{kind="usage"}') == 2
    assert moved(before, after, 'walletflow_debits_total{kind="capture"}') == 1
    assert moved(before, after, 'walletflow_holds_total{outcome="authorized"}') == 2  # not the replay
    assert moved(before, after, 'walletflow_holds_total{outcome="insufficient_funds"}') == 1
    assert moved(before, after, 'walletflow_holds_total{outcome="captured"}') == 1
    assert moved(before, after, 'walletflow_holds_total{outcome="voided"}') == 1
    # Latency by route template (never the raw path with its ids) and status.
    capture = 'method="POST",route="/v1/authorizations/{hold_id}/capture",status="200"'
    assert moved(before, after, f"walletflow_http_request_duration_seconds_count{{{capture}}}") == 1
    authorize_402 = 'method="POST",route="/v1/authorizations",status="402"'
    assert moved(before, after, f"walletflow_http_request_duration_seconds_count{{{authorize_402}}}") == 1
    assert not any(customer in series or kept.json()["id"] in series for series in after)


async def test_metrics_can_be_turned_off(engine: AsyncEngine) -> None:
    app = create_app(engine, settings=Settings(metrics_enabled=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://walletflow.test") as http:
        assert (await http.get("/metrics")).status_code == 404
