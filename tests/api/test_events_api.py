"""POST /v1/events: per-event outcomes, idempotency, balance policies, costs and concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product, wallet_of
from walletflow.ledger.repository import entries as ledger_entries


def now(offset: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.UTC) + offset).isoformat()


def event(customer: str, event_type: str, event_id: str | None = None, **data: Any) -> dict[str, Any]:
    return {"id": event_id or new_id("ev"), "customer_id": customer, "event_type": event_type,
            "occurred_at": now(), "data": data}


async def ingest(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> list[dict]:
    response = await client.post("/v1/events", json={"events": events})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def outcomes(results: list[dict]) -> list[tuple[str, int]]:
    return [(r["status"], r["amount"]) for r in results]


async def setup(client: httpx.AsyncClient, funded: int, unit_price: str = "1") -> tuple[str, str, str]:
    """A fresh asset, a customer funded with ``funded`` and an event type costing ``unit_price``
    per unit of ``data.n``. Returns (asset, customer, event_type)."""
    usd = await make_asset(client)
    event_type = new_id("call")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit",
                                    "quantity_field": "n", "unit_price": unit_price}])
    customer = await make_customer(client)
    if funded:
        await fund(client, customer, usd, funded)
    return usd, customer, event_type


async def transactions(client: httpx.AsyncClient, customer: str) -> list[dict]:
    response = await client.get(f"/v1/customers/{customer}/transactions", params={"limit": 500})
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["data"]


# --- idempotency ----------------------------------------------------------------------------------


async def test_retried_batch_debits_nothing_twice(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    batch = [event(customer, event_type, n=30), event(customer, event_type, n=45)]
    first = await ingest(client, batch)
    assert outcomes(first) == [("debited", 30), ("debited", 45)]
    assert all(r["transaction_id"] for r in first)
    assert first[0]["transaction_id"] != first[1]["transaction_id"]

    again = await ingest(client, batch)
    assert [(r["id"], r["status"], r["amount"], r["transaction_id"]) for r in again] == [
        (batch[0]["id"], "duplicate", 30, first[0]["transaction_id"]),
        (batch[1]["id"], "duplicate", 45, first[1]["transaction_id"]),
    ]
    assert (await wallet_of(client, customer, usd))["posted"] == 1000 - 75
    usage = [t for t in await transactions(client, customer) if t["kind"] == "usage"]
    assert sorted(t["amount"] for t in usage) == [-45, -30]


async def test_duplicate_reports_the_original_fee_even_if_the_retry_differs(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    original = event(customer, event_type, n=30)
    [first] = await ingest(client, [original])
    [retry] = await ingest(client, [{**original, "data": {"n": 99}}])
    assert (retry["status"], retry["amount"], retry["transaction_id"]) == ("duplicate", 30, first["transaction_id"])
    assert (await wallet_of(client, customer, usd))["posted"] == 970


async def test_batch_mixing_stored_and_new_ids(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    stored = event(customer, event_type, n=10)
    [first] = await ingest(client, [stored])
    fresh_a, fresh_b = event(customer, event_type, n=20), event(customer, event_type, n=40)

    results = await ingest(client, [fresh_a, stored, fresh_b])
    assert [r["id"] for r in results] == [fresh_a["id"], stored["id"], fresh_b["id"]]
    assert outcomes(results) == [("debited", 20), ("duplicate", 10), ("debited", 40)]
    assert results[1]["transaction_id"] == first["transaction_id"]
    assert None not in (results[0]["transaction_id"], results[2]["transaction_id"])
    assert (await wallet_of(client, customer, usd))["posted"] == 1000 - 10 - 20 - 40


async def test_same_id_twice_in_one_batch_is_debited_once(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    twice = event(customer, event_type, n=12)
    results = await ingest(client, [twice, twice, event(customer, event_type, n=1)])
    assert outcomes(results) == [("debited", 12), ("duplicate", 12), ("debited", 1)]
    assert (await wallet_of(client, customer, usd))["posted"] == 1000 - 12 - 1


async def test_same_id_twice_in_one_batch_reports_the_original(client: httpx.AsyncClient) -> None:
    _usd, customer, event_type = await setup(client, 1000)
    original = event(customer, event_type, n=12)
    first, second = await ingest(client, [original, {**original, "data": {"n": 50}}])
    assert (first["status"], first["amount"]) == ("debited", 12)
    assert (second["status"], second["amount"], second["transaction_id"]) == ("duplicate", 12, first["transaction_id"])


async def test_repeat_of_a_refused_event_in_one_batch_is_not_a_duplicate(client: httpx.AsyncClient) -> None:
    _usd, customer, event_type = await setup(client, 10)
    too_big = event(customer, event_type, n=30)
    results = await ingest(client, [too_big, too_big])
    assert outcomes(results) == [("insufficient_funds", 30), ("insufficient_funds", 30)]


async def test_event_ids_are_scoped_per_customer(client: httpx.AsyncClient) -> None:
    usd, alice, event_type = await setup(client, 100)
    bob = await make_customer(client)
    await fund(client, bob, usd, 100)
    shared_id = new_id("ev")
    results = await ingest(client, [event(alice, event_type, shared_id, n=5), event(bob, event_type, shared_id, n=7)])
    assert outcomes(results) == [("debited", 5), ("debited", 7)]
    assert (await wallet_of(client, alice, usd))["posted"] == 95
    assert (await wallet_of(client, bob, usd))["posted"] == 93


# --- per-event refusals ------------------------------------------------------------------------


async def test_malformed_events_are_rejected_one_by_one(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    good_1, good_2 = event(customer, event_type, n=3), event(customer, event_type, n=4)
    no_id = {k: v for k, v in event(customer, event_type, n=100).items() if k != "id"}
    bad_time = {**event(customer, event_type, n=100), "occurred_at": "yesterday"}
    naive_time = {**event(customer, event_type, n=100), "occurred_at": "2026-01-01T00:00:00"}
    future = {**event(customer, event_type, n=100), "occurred_at": now(dt.timedelta(hours=1))}
    both_refs = {**event(customer, event_type, n=100), "external_customer_id": "someone"}
    no_ref = {k: v for k, v in event(customer, event_type, n=100).items() if k != "customer_id"}
    unknown_field = {**event(customer, event_type, n=100), "colour": "red"}
    batch = [good_1, no_id, bad_time, naive_time, future, both_refs, no_ref, unknown_field, good_2]

    results = await ingest(client, batch)
    assert [r["status"] for r in results] == ["debited"] + ["rejected"] * 7 + ["debited"]
    assert [r["id"] for r in results] == [e.get("id", "") for e in batch]
    assert (results[0]["amount"], results[-1]["amount"]) == (3, 4)
    for refused in results[1:-1]:
        assert refused["error"], refused
        assert (refused["amount"], refused["transaction_id"]) == (0, None)
    assert "id" in results[1]["error"]
    assert "occurred_at" in results[2]["error"]
    assert "future" in results[4]["error"]
    assert "exactly one of customer_id and external_customer_id" in results[5]["error"]
    assert "exactly one of customer_id and external_customer_id" in results[6]["error"]
    assert (await wallet_of(client, customer, usd))["posted"] == 1000 - 7

    # a rejected id was not consumed: fixed, it is debited
    [fixed] = await ingest(client, [{**bad_time, "occurred_at": now()}])
    assert (fixed["status"], fixed["amount"]) == ("debited", 100)


async def test_unknown_customer_is_rejected_and_external_id_resolves(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    external_id = (await client.get(f"/v1/customers/{customer}")).json()["external_id"]
    by_external = {**event(customer, event_type, n=2), "external_customer_id": external_id}
    del by_external["customer_id"]
    unknown_external = {**by_external, "id": new_id("ev"), "external_customer_id": new_id("ghost")}
    unknown_id = event("00000000-0000-4000-8000-000000000000", event_type, n=2)

    results = await ingest(client, [by_external, unknown_external, unknown_id])
    assert outcomes(results) == [("debited", 2), ("rejected", 0), ("rejected", 0)]
    assert results[1]["error"] == results[2]["error"] == "unknown customer"
    assert (await wallet_of(client, customer, usd))["posted"] == 998


async def test_unknown_event_type_is_unmatched(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 1000)
    results = await ingest(client, [event(customer, new_id("never-priced"), n=5), event(customer, event_type, n=5)])
    assert outcomes(results) == [("unmatched", 0), ("debited", 5)]
    assert results[0]["asset"] is None and results[0]["transaction_id"] is None
    assert "no price" in results[0]["error"]
    assert (await wallet_of(client, customer, usd))["posted"] == 995


async def test_insufficient_funds_debits_nothing_and_keeps_the_id_free(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 10)
    short = event(customer, event_type, n=15)
    [result] = await ingest(client, [short])
    assert (result["status"], result["amount"], result["asset"], result["transaction_id"]) == (
        "insufficient_funds", 15, usd, None)
    assert (await wallet_of(client, customer, usd))["posted"] == 10
    assert [t["kind"] for t in await transactions(client, customer)] == ["adjustment"]

    await fund(client, customer, usd, 10)
    [retry] = await ingest(client, [short])
    assert (retry["status"], retry["amount"]) == ("debited", 15)
    assert (await wallet_of(client, customer, usd))["posted"] == 20 - 15


async def test_overdraft_policy_allows_negative_down_to_the_limit(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 100)
    patched = await client.patch(f"/v1/customers/{customer}",
                                 json={"insufficient_balance": "overdraft", "overdraft_limit": 50})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["insufficient_balance"], patched.json()["overdraft_limit"]) == ("overdraft", 50)
    assert (await wallet_of(client, customer, usd))["overdraft_limit"] == 50

    results = await ingest(client, [
        event(customer, event_type, n=120),  # 100 - 120 = -20: within -50
        event(customer, event_type, n=40),   # -20 - 40 = -60: beyond -50, refused
        event(customer, event_type, n=30),   # -20 - 30 = -50: exactly the limit
        event(customer, event_type, n=1),    # -51: refused
    ])
    assert outcomes(results) == [("debited", 120), ("insufficient_funds", 40), ("debited", 30), ("insufficient_funds", 1)]
    account = await wallet_of(client, customer, usd)
    assert (account["posted"], account["available"]) == (-50, -50)

    await fund(client, customer, usd, 80)  # repays the overdraft first
    assert (await wallet_of(client, customer, usd))["posted"] == 30


async def test_without_overdraft_policy_the_limit_is_ignored(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 100)
    patched = await client.patch(f"/v1/customers/{customer}", json={"overdraft_limit": 50})
    assert patched.status_code == 200, patched.text
    assert patched.json()["insufficient_balance"] == "reject"
    [result] = await ingest(client, [event(customer, event_type, n=101)])
    assert (result["status"], result["amount"]) == ("insufficient_funds", 101)
    assert (await wallet_of(client, customer, usd))["posted"] == 100


async def test_debits_of_one_batch_draw_the_wallets_grants_in_consumption_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Several debits of one wallet in one batch share its grants: each takes the next slice."""
    usd, customer, event_type = await setup(client, 0)
    grants = {}
    for name, amount, priority in (("second", 50, 2), ("first", 30, 1), ("third", 40, 3)):
        response = await client.post(f"/v1/customers/{customer}/adjustments", json={
            "idempotency_key": new_id("grant"), "asset": usd, "amount": amount, "reason": "gift",
            "priority": priority})
        assert response.status_code == 201, response.text
        grants[response.json()["grant_id"]] = name

    results = await ingest(client, [event(customer, event_type, n=n) for n in (20, 25, 30, 200, 10)])
    assert outcomes(results) == [("debited", 20), ("debited", 25), ("debited", 30), ("insufficient_funds", 200),
                                 ("debited", 10)]
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(ledger_entries.c.transaction_id, ledger_entries.c.grant_id, ledger_entries.c.amount)
            .where(ledger_entries.c.transaction_id.in_([uuid.UUID(r["transaction_id"]) for r in results
                                                       if r["transaction_id"]]),
                   ledger_entries.c.amount < 0)
        )).all()
    draws: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for tx, grant, amount in rows:
        draws[str(tx)].add((grants[str(grant)], -amount))
    assert [draws[r["transaction_id"]] for r in results if r["transaction_id"]] == [
        {("first", 20)}, {("first", 10), ("second", 15)}, {("second", 30)}, {("second", 5), ("third", 5)},
    ]
    remaining = (await client.get(f"/v1/customers/{customer}/grants")).json()["data"]
    assert sorted((grants[g["id"]], g["remaining"]) for g in remaining) == [("first", 0), ("second", 0), ("third", 35)]


async def test_frozen_wallet_rejects_events_until_unfrozen(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 100)
    frozen = await client.post(f"/v1/customers/{customer}/freeze")
    assert (frozen.status_code, frozen.json()["status"]) == (200, "frozen")
    blocked = event(customer, event_type, n=5)
    [result] = await ingest(client, [blocked])
    assert (result["status"], result["error"], result["transaction_id"]) == ("rejected", "wallet_frozen", None)
    assert (await wallet_of(client, customer, usd))["posted"] == 100

    assert (await client.post(f"/v1/customers/{customer}/unfreeze")).json()["status"] == "active"
    [retry] = await ingest(client, [blocked])
    assert (retry["status"], retry["amount"]) == ("debited", 5)
    assert (await wallet_of(client, customer, usd))["posted"] == 95


async def test_batch_over_1000_events_is_refused_whole(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 10_000)
    response = await client.post("/v1/events", json={"events": [event(customer, event_type, n=1) for _ in range(1001)]})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert (await wallet_of(client, customer, usd))["posted"] == 10_000

    # exactly 1000 is accepted (an event type nobody prices keeps the batch cheap: nothing to write)
    exactly_1000 = await ingest(client, [event(customer, new_id("unpriced"), n=1) for _ in range(1000)])
    assert [r["status"] for r in exactly_1000] == ["unmatched"] * 1000


# --- vendor costs ------------------------------------------------------------------------------


async def test_vendor_costs_feed_the_margins_report_by_vendor(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("llm")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "percentage", "percentage": "150"}])
    customer = await make_customer(client)
    await fund(client, customer, usd, 1000)
    alpha, beta = new_id("alpha"), new_id("beta")  # vendor names no other test uses
    results = await ingest(client, [
        # costs 7 + 4 = 11, fee 11 x 1.5 = 16.5 -> 17
        {**event(customer, event_type), "costs": [{"vendor": alpha, "asset": usd, "amount": 7},
                                                  {"vendor": beta, "asset": usd, "amount": 4}]},
        # cost 5, fee 7.5 -> 8
        {**event(customer, event_type), "costs": [{"vendor": alpha, "asset": usd, "amount": 5}]},
    ])
    assert outcomes(results) == [("debited", 17), ("debited", 8)]

    window = {"from": now(-dt.timedelta(hours=1)), "to": now(dt.timedelta(hours=1)), "currency": usd}
    report = await client.get("/v1/reports/margins", params={**window, "group_by": "vendor"})
    assert report.status_code == 200, report.text
    rows = {r["key"]: r for r in report.json()["data"] if r["key"] in (alpha, beta)}
    # revenue split in proportion to cost, rounded once per row:
    # alpha: 17 x 7/11 + 8 = 10.8181.. + 8 = 18.8181.. -> 19; cost 7 + 5 = 12; margin 7; 7/19 = 36.84 %
    # beta:  17 x 4/11 = 6.1818.. -> 6; cost 4; margin 2; 2/6 = 33.33 %
    assert {k: (r["revenue"], r["cost"], r["margin"], r["margin_pct"]) for k, r in rows.items()} == {
        alpha: (19, 12, 7, "36.84"),
        beta: (6, 4, 2, "33.33"),
    }

    by_customer = await client.get("/v1/reports/margins", params={**window, "group_by": "customer"})
    [row] = [r for r in by_customer.json()["data"] if r["key"] == customer]
    # revenue 17 + 8 = 25, cost 7 + 4 + 5 = 16, margin 9, 9/25 = 36 %
    assert (row["revenue"], row["cost"], row["margin"], row["margin_pct"]) == (25, 16, 9, "36.00")


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_batches_on_one_wallet_never_overdraw(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 703)
    batches = [[event(customer, event_type, n=7) for _ in range(30)] for _ in range(10)]  # demand 2100

    responses = await asyncio.gather(*[client.post("/v1/events", json={"events": b}) for b in batches])
    assert [r.status_code for r in responses] == [200] * 10
    results = [r for response in responses for r in response.json()["results"]]
    assert {r["status"] for r in results} == {"debited", "insufficient_funds"}
    debited = [r for r in results if r["status"] == "debited"]
    # every event costs 7 and a fitting one is never refused: floor(703 / 7) = 100 debits, 3 left
    assert len(debited) == 100
    account = await wallet_of(client, customer, usd)
    assert account["posted"] == 703 - sum(r["amount"] for r in debited) == 3

    usage = [t for t in await transactions(client, customer) if t["kind"] == "usage"]
    assert sorted(t["id"] for t in usage) == sorted(r["transaction_id"] for r in debited)
    assert {t["amount"] for t in usage} == {-7}


async def test_a_batch_retried_concurrently_with_itself_is_debited_once(client: httpx.AsyncClient) -> None:
    usd, customer, event_type = await setup(client, 10_000)
    batch = [event(customer, event_type, n=i + 1) for i in range(20)]  # fees 1..20, sum 210

    responses = await asyncio.gather(*[client.post("/v1/events", json={"events": batch}) for _ in range(5)])
    assert [r.status_code for r in responses] == [200] * 5
    for position, sent in enumerate(batch):
        copies = [response.json()["results"][position] for response in responses]
        assert sorted(c["status"] for c in copies) == ["debited"] + ["duplicate"] * 4, copies
        assert {c["amount"] for c in copies} == {position + 1}
        assert len({c["transaction_id"] for c in copies}) == 1
        assert all(c["id"] == sent["id"] for c in copies)
    assert (await wallet_of(client, customer, usd))["posted"] == 10_000 - 210
    assert len([t for t in await transactions(client, customer) if t["kind"] == "usage"]) == 20
