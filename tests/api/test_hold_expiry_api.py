"""An expired authorization stops reserving money even before any sweep runs."""

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
