"""A storm: hundreds of concurrent clients mixing usage events, holds, captures, voids and
adjustments on a few hot wallets, retrying some requests with the same key, for a bounded time;
then every wallet must equal what the clients were told happened, and the full ledger audit
(every invariant, every balance recomputed from its entries) must be clean."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest

from tests.api.conftest import Keys, fund, make_asset, make_customer, publish_product, wallet_of
from walletflow.ledger.service import Ledger

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLIENTS = 200
DURATION_S = 6.0
HOT_WALLETS = 3
FUNDING = 200_000
EVENT_PRICE = 7  # cents per storm.call event


@dataclass
class Expected:
    """What the API told the clients, per wallet."""

    posted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    pending_holds: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    outcomes: Counter[str] = field(default_factory=Counter)


async def client_loop(http: httpx.AsyncClient, wallets: list[str], asset: str, expected: Expected,
                      stop_at: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        customer = rng.choice(wallets)
        op = rng.random()
        if op < 0.45:
            event_id = f"storm-{uuid.uuid4().hex}"
            body = {"events": [{"id": event_id, "customer_id": customer, "event_type": "storm.call",
                                "occurred_at": "2026-11-27T12:00:00Z", "data": {}}]}
            for attempt in range(2 if rng.random() < 0.3 else 1):  # some clients retry the same event
                response = await http.post("/v1/events", json=body)
                assert response.status_code == 200, response.text
                result = response.json()["results"][0]
                expected.outcomes[f"event:{result['status']}"] += 1
                if result["status"] == "debited":
                    assert attempt == 0, "a retried event must never be debited again"
                    expected.posted[customer] -= result["amount"]
                else:
                    assert result["status"] in ("duplicate", "insufficient_funds"), result
        elif op < 0.8:
            amount = rng.randint(1, 60)
            key = f"hold-{uuid.uuid4().hex}"
            response = await http.post("/v1/authorizations", json={
                "idempotency_key": key, "customer_id": customer, "asset": asset, "amount": amount})
            if response.status_code != 201:
                assert response.json()["code"] == "insufficient_funds", response.text
                expected.outcomes["hold:insufficient_funds"] += 1
                continue
            hold_id = response.json()["id"]
            expected.pending_holds[customer][hold_id] = amount
            await asyncio.sleep(rng.random() * 0.05)
            if rng.random() < 0.6:
                captured = rng.randint(0, amount)
                capture = {"amount": captured, "idempotency_key": f"cap-{hold_id}"}
                first = await http.post(f"/v1/authorizations/{hold_id}/capture", json=capture)
                assert first.status_code == 200, first.text
                expected.posted[customer] -= captured
                del expected.pending_holds[customer][hold_id]
                expected.outcomes["hold:captured"] += 1
                if rng.random() < 0.3:  # the capture retried with its key: the same answer, no second debit
                    again = await http.post(f"/v1/authorizations/{hold_id}/capture", json=capture)
                    assert again.status_code == 200 and again.json()["captured_amount"] == captured, again.text
            elif rng.random() < 0.8:
                voided = await http.post(f"/v1/authorizations/{hold_id}/void")
                assert voided.status_code == 200, voided.text
                del expected.pending_holds[customer][hold_id]
                expected.outcomes["hold:voided"] += 1
            # else: left pending (it stays reserved)
        else:
            amount = rng.choice([25, 100, -15])
            key = f"adj-{uuid.uuid4().hex}"
            body = {"idempotency_key": key, "asset": asset, "amount": amount, "reason": "other"}
            response = await http.post(f"/v1/customers/{customer}/adjustments", json=body)
            if response.status_code == 201:
                expected.posted[customer] += amount
                expected.outcomes["adjustment"] += 1
                retry = await http.post(f"/v1/customers/{customer}/adjustments", json=body)
                assert retry.status_code in (200, 201) and retry.json()["transaction_id"] == response.json()["transaction_id"]
            else:
                assert response.json()["code"] == "insufficient_funds", response.text
                expected.outcomes["adjustment:insufficient_funds"] += 1


async def test_a_storm_on_hot_wallets_leaves_every_balance_exact(client: httpx.AsyncClient, keys: Keys,
                                                                  ledger: Ledger) -> None:
    asset = await make_asset(client)
    product = await publish_product(client, [{"event_type": "storm.call", "asset": asset, "model": "per_unit",
                                              "unit_price": str(EVENT_PRICE)}])
    wallets = []
    for _ in range(HOT_WALLETS):
        customer = await make_customer(client)
        assert (await client.post(f"/v1/customers/{customer}/subscriptions", json={"product_code": product})).status_code in (200, 201)
        await fund(client, customer, asset, FUNDING)
        wallets.append(customer)

    expected = Expected()
    stop_at = time.monotonic() + DURATION_S
    await asyncio.gather(*(client_loop(client, wallets, asset, expected, stop_at, seed) for seed in range(CLIENTS)))

    print(f"storm outcomes: {dict(expected.outcomes)}")
    assert expected.outcomes["event:debited"] > 50 and expected.outcomes["hold:captured"] > 20, expected.outcomes
    for customer in wallets:
        wallet = await wallet_of(client, customer, asset)
        assert wallet["posted"] == FUNDING + expected.posted[customer], (customer, expected.outcomes)
        assert wallet["held"] == sum(expected.pending_holds[customer].values())
        assert wallet["available"] >= 0
    audit = await ledger.audit()
    assert audit.ok, audit
