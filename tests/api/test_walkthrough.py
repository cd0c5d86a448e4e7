"""The README's walk-through, end to end through the real app."""

from __future__ import annotations

import datetime as dt

import httpx

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product, wallet_of


async def test_customer_adjustment_authorise_capture_events_margins(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    await fund(client, customer, usd, 2000)

    hold = await client.post("/v1/authorizations", json={"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 500})
    assert hold.status_code == 201, hold.text
    assert (await wallet_of(client, customer, usd))["available"] == 1500
    captured = await client.post(f"/v1/authorizations/{hold.json()['id']}/capture", json={"amount": 320})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"

    event_type = new_id("llm")
    await publish_product(client, [
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "input_tokens",
         "unit_price": "0.0002", "dimensions": {"model": "*"}},
        {"event_type": event_type, "asset": usd, "model": "per_unit", "quantity_field": "input_tokens",
         "unit_price": "0.001", "dimensions": {"model": "big"}},
    ])
    now = dt.datetime.now(dt.UTC).isoformat()
    events = [
        {"id": "e1", "customer_id": customer, "event_type": event_type, "occurred_at": now,
         "data": {"model": "small", "input_tokens": 100_000}, "costs": [{"vendor": "openai", "asset": usd, "amount": 12}]},
        {"id": "e2", "customer_id": customer, "event_type": event_type, "occurred_at": now,
         "data": {"model": "big", "input_tokens": 100_000}},
    ]
    response = await client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    # 100,000 x 0.0002 = 20 cents; 100,000 x 0.001 = 100 cents
    assert [(r["status"], r["amount"]) for r in results] == [("debited", 20), ("debited", 100)]
    again = (await client.post("/v1/events", json={"events": events})).json()["results"]
    assert [(r["status"], r["amount"], r["transaction_id"]) for r in again] == [
        ("duplicate", 20, results[0]["transaction_id"]), ("duplicate", 100, results[1]["transaction_id"])]
    assert (await wallet_of(client, customer, usd))["posted"] == 2000 - 320 - 120

    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    report = await client.get("/v1/reports/margins", params={"group_by": "customer", "from": start, "to": end, "currency": usd})
    assert report.status_code == 200, report.text
    row = next(r for r in report.json()["data"] if r["key"] == customer)
    assert (row["revenue"], row["cost"], row["margin"], row["margin_pct"]) == (120, 12, 108, "90.00")
