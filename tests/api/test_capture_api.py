"""Authorizations over the API: expiry frees money before any sweep; a capture records its usage."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product, wallet_of


async def test_usage_after_a_hold_expires_is_debited(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    event_type = new_id("job")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "500"}])
    hold = await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 900, "expires_in_s": 1})
    assert hold.status_code == 201, hold.text

    def batch(event_id: str) -> dict:
        return {"events": [{"id": event_id, "customer_id": customer, "event_type": event_type,
                            "occurred_at": dt.datetime.now(dt.UTC).isoformat()}]}

    refused = (await client.post("/v1/events", json=batch("e1"))).json()["results"][0]
    assert (refused["status"], refused["amount"]) == ("insufficient_funds", 500)
    await asyncio.sleep(1.2)
    debited = (await client.post("/v1/events", json=batch("e1"))).json()["results"][0]
    assert (debited["status"], debited["amount"]) == ("debited", 500)
    assert (await client.get(f"/v1/authorizations/{hold.json()['id']}")).json()["status"] == "expired"
    wallet = await wallet_of(client, customer, usd)
    assert (wallet["posted"], wallet["held"]) == (500, 0)


async def test_capture_records_the_usage_event_with_its_cost(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    hold = (await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 400})).json()
    event = {"id": new_id("e"), "event_type": "video.render", "data": {"seconds": 12},
             "costs": [{"vendor": "gpu-cloud", "asset": usd, "amount": 150}]}
    captured = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 250, "event": event})
    assert captured.status_code == 200, captured.text
    again = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 250, "event": event})
    assert again.json()["transaction_id"] == captured.json()["transaction_id"]
    other = await client.post(f"/v1/authorizations/{hold['id']}/capture",
                              json={"amount": 250, "event": {**event, "id": new_id("e")}})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"

    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    report = (await client.get("/v1/reports/margins", params={
        "group_by": "customer", "from": start, "to": end, "currency": usd})).json()
    row = next(r for r in report["data"] if r["key"] == customer)
    # revenue 250 (the capture), cost 150: margin 100 = 40.00 %
    assert (row["revenue"], row["cost"], row["margin"], row["margin_pct"]) == (250, 150, 100, "40.00")
