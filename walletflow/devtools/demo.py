"""``walletflow dev --demo``: seed data so every screen has something to show.

Everything goes through the public HTTP API of the running stack (the same calls the README
walks through), and every step is idempotent, so running ``--demo`` again changes nothing: an
asset, a product with a published price version, a customer subscribed to it, a card top-up paid
through the fake Stripe and carried by its Temporal workflow, and a few usage events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx

from walletflow.payments.stripe_gateway import StripeGateway

CUSTOMER = "demo-acme"
PRODUCT = "demo-chat"
TOP_UP_KEY = "demo-topup-1"
TOP_UP_AMOUNT = 5000
PRICES = [
    {"event_type": "llm.tokens", "asset": "USD", "model": "package", "quantity_field": "input_tokens",
     "package_size": 1_000_000, "unit_price": "250", "dimensions": {"model": "*"}},
    {"event_type": "llm.tokens", "asset": "USD", "model": "package", "quantity_field": "output_tokens",
     "package_size": 1_000_000, "unit_price": "1000", "dimensions": {"model": "*"}},
]
#: (event id, model, input tokens, output tokens)
EVENTS = [
    ("demo-evt-1", "gpt-4o", 120_000, 30_000),
    ("demo-evt-2", "gpt-4o-mini", 800_000, 200_000),
    ("demo-evt-3", "gpt-4o", 40_000, 12_000),
    ("demo-evt-4", "claude-sonnet", 300_000, 90_000),
    ("demo-evt-5", "gpt-4o", 10_000, 2_000),
]


@dataclass
class DemoData:
    customer_id: str
    top_up_id: str
    top_up_status: str
    events: dict[str, int]
    balance: int


class DemoError(RuntimeError):
    pass


async def seed(api_url: str, admin_key: str, gateway: StripeGateway | None, timeout_s: float = 90) -> DemoData:
    """Seed the demo through the API at ``api_url``. ``gateway`` pays the top-up (the fake Stripe);
    without one (real Stripe) the top-up is left for someone to pay in the browser."""
    async with httpx.AsyncClient(base_url=api_url.rstrip("/") + "/v1", timeout=30,
                                 headers={"Authorization": f"Bearer {admin_key}"}) as http:
        await _create(http, "/assets", {"code": "USD", "name": "US dollar", "scale": 2, "kind": "fiat"})
        customer_id = await _customer(http)
        await _product(http)
        await _ok(await http.post(f"/customers/{customer_id}/subscriptions", json={"product_code": PRODUCT}))
        top_up = await _ok(await http.post("/top-ups", json={
            "idempotency_key": TOP_UP_KEY, "customer_id": customer_id, "amount": TOP_UP_AMOUNT,
            "currency": "usd", "mode": "payment_intent",
        }))
        if top_up["status"] == "awaiting_payment" and gateway is not None:
            await _pay(gateway, top_up["payment_intent_id"])
        status = top_up["status"]
        if gateway is not None:
            status = await _wait_for_credit(http, top_up["id"], timeout_s)
        results = await _usage(http, customer_id)
        wallet = await _ok(await http.get(f"/customers/{customer_id}/wallet"))
        balance = next((a["posted"] for a in wallet["accounts"] if a["asset"] == "USD"), 0)
        return DemoData(customer_id, top_up["id"], status, results, balance)


async def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise DemoError(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return response.json()


async def _create(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """POST, treating ``already_exists`` as done (a re-run)."""
    response = await http.post(path, json=body)
    if response.status_code == 409 and response.json().get("code") == "already_exists":
        return None
    return await _ok(response)  # type: ignore[no-any-return]


async def _customer(http: httpx.AsyncClient) -> str:
    await _create(http, "/customers", {"external_id": CUSTOMER, "name": "Acme AI (demo)", "email": "billing@acme.example"})
    found = await _ok(await http.get("/customers", params={"external_id": CUSTOMER}))
    return str(found["data"][0]["id"])


async def _product(http: httpx.AsyncClient) -> None:
    await _create(http, "/products", {"code": PRODUCT, "name": "Chat API (demo)"})
    versions = (await _ok(await http.get(f"/products/{PRODUCT}/versions")))["data"]
    if any(v["status"] == "published" for v in versions):
        return
    draft = next((v for v in versions if v["status"] == "draft"), None)
    if draft is None:
        draft = await _ok(await http.post(f"/products/{PRODUCT}/versions", json={"prices": PRICES}))
    await _ok(await http.post(f"/products/{PRODUCT}/versions/{draft['version']}/publish"))


async def _pay(gateway: StripeGateway, payment_intent_id: str) -> None:
    """What Stripe.js does in the browser with the test card: attach it and confirm (the fake
    Stripe answers 500 to ``confirm(payment_method=...)``, so the method is set first)."""
    intents = gateway.client.v1.payment_intents
    await intents.update_async(payment_intent_id, params={"payment_method": "pm_card_visa"})
    await intents.confirm_async(payment_intent_id)


async def _wait_for_credit(http: httpx.AsyncClient, top_up_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = str((await _ok(await http.get(f"/top-ups/{top_up_id}")))["status"])
        if status in ("succeeded", "failed", "rejected", "refunded", "in_review"):
            return status
        if time.monotonic() > deadline:
            raise DemoError(f"the demo top-up {top_up_id} is still {status} after {timeout_s:.0f} s")
        await asyncio.sleep(0.25)


async def _usage(http: httpx.AsyncClient, customer_id: str) -> dict[str, int]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    events = [
        {"id": event_id, "customer_id": customer_id, "event_type": "llm.tokens",
         "occurred_at": (now - dt.timedelta(minutes=5 * (len(EVENTS) - i))).isoformat(),
         "data": {"model": model, "input_tokens": tokens_in, "output_tokens": tokens_out},
         "costs": [{"vendor": "openai" if model.startswith("gpt") else "anthropic", "asset": "USD",
                    "amount": (tokens_in + tokens_out) // 10_000}]}
        for i, (event_id, model, tokens_in, tokens_out) in enumerate(EVENTS)
    ]
    results = (await _ok(await http.post("/events", json={"events": events})))["results"]
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts
