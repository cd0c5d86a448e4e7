"""Bad input of every kind: a clear 4xx problem+json and no write. Plus the read endpoints."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import httpx

from tests.api.conftest import (
    Keys,
    bearer,
    funded,
    make_asset,
    make_customer,
    new_id,
    publish_product,
    wallet_of,
)


def now(offset: dt.timedelta = dt.timedelta(0)) -> str:
    return (dt.datetime.now(dt.UTC) + offset).isoformat()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"https://walletflow.dev/problems/{code}"
    assert body["title"] and body["detail"]
    return body


async def state(client: httpx.AsyncClient, customer: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Everything a write could change for ``customer``: wallet, history and grants."""
    wallet = await client.get(f"/v1/customers/{customer}/wallet")
    history = await client.get(f"/v1/customers/{customer}/transactions", params={"limit": 500})
    grants = await client.get(f"/v1/customers/{customer}/grants")
    return wallet.json()["accounts"], history.json()["data"], grants.json()["data"]


def cursor_of(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode()


# --- malformed bodies ------------------------------------------------------------------------------


async def test_malformed_json_is_400_and_writes_nothing(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    before = await state(client, customer)
    headers = {"content-type": "application/json"}
    for path, body in (
        (f"/v1/customers/{customer}/adjustments", b'{"asset": "' + usd.encode() + b'", "amount": 5,'),
        ("/v1/events", b'{"events": [{"id": "x"]}'),
        ("/v1/authorizations", b"{'single': 'quotes'}"),
        ("/v1/customers", b"not json at all"),
    ):
        body_out = assert_problem(await client.post(path, content=body, headers=headers), 400, "malformed_json")
        assert body_out["title"] == "Malformed JSON"
    assert await state(client, customer) == before


async def test_body_that_is_not_utf8_is_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/customers", content=b'{"external_id": "\xff\xfe"}',
                                 headers={"content-type": "application/json"})
    assert_problem(response, 400, "malformed_json")


async def test_missing_and_mistyped_fields_are_422(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    before = await state(client, customer)
    adjust = f"/v1/customers/{customer}/adjustments"
    base = {"idempotency_key": new_id("adj"), "asset": usd, "amount": 100, "reason": "gift"}
    cases = [
        (adjust, {k: v for k, v in base.items() if k != "asset"}),   # missing asset
        (adjust, {k: v for k, v in base.items() if k != "amount"}),  # missing amount
        (adjust, {**base, "reason": "because"}),                     # not a reason
        (adjust, {**base, "amount": 10.0}),                          # a float, even a whole one
        (adjust, {**base, "amount": 0.5}),
        (adjust, {**base, "amount": "100"}),                         # a string
        (adjust, {**base, "amount": True}),                          # a boolean
        (adjust, {**base, "amount": 10**15 + 1}),                    # above MAX_AMOUNT
        (adjust, {**base, "amount": -(10**15) - 1}),
        (adjust, {**base, "amount": 10**30}),                        # beyond 64 bits
        (adjust, {**base, "expires_at": "2030-01-01T00:00:00"}),     # no time zone
        (adjust, {**base, "priority": 1001}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": -5}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 0}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 1.5}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd,
                                "amount": 10**15 + 1}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": "not-a-uuid", "asset": usd, "amount": 5}),
        ("/v1/authorizations", {"idempotency_key": new_id("h"), "customer_id": customer, "asset": usd, "amount": 5,
                                "expires_in_s": 0}),
        ("/v1/events", {"events": []}),
        ("/v1/events", {"events": "nope"}),
        ("/v1/events", [1, 2]),
        ("/v1/customers", {"name": "no external id"}),
        ("/v1/customers", {"external_id": new_id("c"), "email": "not-an-email"}),
    ]
    for path, body in cases:
        problem = assert_problem(await client.post(path, json=body), 422, "validation_error")
        assert problem["errors"], (body, problem)
    assert await state(client, customer) == before


async def test_patch_customer_refuses_bad_policies(client: httpx.AsyncClient) -> None:
    _usd, customer = await funded(client)
    original = (await client.get(f"/v1/customers/{customer}")).json()
    for body in ({"overdraft_limit": -1}, {"overdraft_limit": 10**15 + 1}, {"overdraft_limit": 5.0},
                 {"insufficient_balance": "borrow"}, {"billing_mode": "free"}, {"metadata": None},
                 {"insufficient_balance": None}):
        assert_problem(await client.patch(f"/v1/customers/{customer}", json=body), 422, "validation_error")
    assert (await client.get(f"/v1/customers/{customer}")).json() == original


async def test_nul_characters_are_refused_not_a_500(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    before = await state(client, customer)
    event_type = new_id("call")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "1"}])
    for path, body in (
        ("/v1/customers", {"external_id": "nul\u0000here"}),
        (f"/v1/customers/{customer}/adjustments",
         {"idempotency_key": "k\u0000", "asset": usd, "amount": 5, "reason": "gift"}),
        ("/v1/events", {"events": [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type,
                                    "occurred_at": now(), "data": {"note": "a\u0000b"}}]}),
    ):
        assert_problem(await client.post(path, json=body), 422, "validation_error")
    assert await state(client, customer) == before


# --- unknown things --------------------------------------------------------------------------------


async def test_unknown_customer_asset_product_and_version(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    before = await state(client, customer)
    ghost = str(uuid.uuid4())
    adjustment = {"idempotency_key": new_id("adj"), "asset": usd, "amount": 5, "reason": "gift"}
    assert_problem(await client.post(f"/v1/customers/{ghost}/adjustments", json=adjustment), 404, "not_found")
    assert_problem(await client.post(f"/v1/customers/{customer}/adjustments", json={**adjustment, "asset": "NOPE"}),
                   404, "not_found")
    assert_problem(await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("h"), "customer_id": ghost, "asset": usd, "amount": 5}), 404, "not_found")
    assert_problem(await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("h"), "customer_id": customer, "asset": "NOPE", "amount": 5}), 404, "not_found")
    for path in (f"/v1/customers/{ghost}", f"/v1/customers/{ghost}/wallet", f"/v1/customers/{ghost}/transactions",
                 f"/v1/customers/{ghost}/grants", "/v1/assets/NOPE", f"/v1/products/{new_id('nope')}",
                 f"/v1/products/{new_id('nope')}/versions"):
        assert_problem(await client.get(path), 404, "not_found")
    assert_problem(await client.post(f"/v1/customers/{ghost}/freeze"), 404, "not_found")

    price = {"event_type": new_id("call"), "asset": usd, "model": "per_unit", "unit_price": "1"}
    assert_problem(await client.post(f"/v1/products/{new_id('nope')}/versions", json={"prices": [price]}),
                   404, "not_found")
    product = await publish_product(client, [price])
    assert_problem(await client.post(f"/v1/products/{product}/versions/5/publish"), 404, "not_found")
    assert_problem(await client.get(f"/v1/products/{product}/versions/5"), 404, "not_found")
    assert_problem(await client.post(f"/v1/products/{product}/versions", json={"prices": [{**price, "asset": "NOPE"}]}),
                   404, "not_found")
    assert_problem(await client.get(f"/v1/customers/{customer}/wallet".replace(customer, "not-a-uuid")),
                   422, "validation_error")

    # an unknown event type is a per-event outcome, not an error
    response = await client.post("/v1/events", json={"events": [
        {"id": new_id("ev"), "customer_id": customer, "event_type": new_id("unknown"), "occurred_at": now()}]})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "unmatched"
    assert await state(client, customer) == before


# --- authentication and scopes ---------------------------------------------------------------------


async def test_wrong_scope_or_key_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    usd, customer = await funded(client)
    before = await state(client, customer)
    event_type = new_id("call")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "1"}])
    events = {"events": [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type, "occurred_at": now()}]}
    adjustment = {"idempotency_key": new_id("adj"), "asset": usd, "amount": 5, "reason": "gift"}

    assert_problem(await client.post("/v1/events", json=events, headers=bearer(keys.read)), 403, "forbidden")
    assert_problem(await client.post(f"/v1/customers/{customer}/adjustments", json=adjustment,
                                     headers=bearer(keys.read)), 403, "forbidden")
    assert_problem(await client.post(f"/v1/customers/{customer}/adjustments", json=adjustment,
                                     headers=bearer(keys.ingest)), 403, "forbidden")
    assert_problem(await client.post("/v1/customers", json={"external_id": new_id("c")}, headers=bearer(keys.ingest)),
                   403, "forbidden")
    assert_problem(await client.get(f"/v1/customers/{customer}/wallet", headers=bearer(keys.ingest)), 403, "forbidden")
    assert_problem(await client.post("/v1/assets", json={"code": "NEWCOIN", "name": "x", "scale": 0, "kind": "custom"},
                                     headers=bearer(keys.read)), 403, "forbidden")

    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wf_admin_not-a-real-key"},
                    {"Authorization": f"Basic {keys.admin}"}, {"Authorization": "Bearer "}):
        assert_problem(await client.post("/v1/events", json=events, headers=headers), 401, "unauthorized")
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as anonymous:
        assert_problem(await anonymous.post("/v1/events", json=events), 401, "unauthorized")
        assert_problem(await anonymous.get(f"/v1/customers/{customer}"), 401, "unauthorized")
    assert await state(client, customer) == before

    # the right scope works: the read key reads, the ingest key ingests
    assert (await client.get(f"/v1/customers/{customer}/wallet", headers=bearer(keys.read))).status_code == 200
    ingested = await client.post("/v1/events", json=events, headers=bearer(keys.ingest))
    assert ingested.json()["results"][0]["status"] == "debited"


# --- adjustments --------------------------------------------------------------------------------------


async def test_adjustment_key_replay_and_conflict(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    body = {"idempotency_key": new_id("adj"), "asset": usd, "amount": 700, "reason": "external_topup",
            "metadata": {"order": "A-1"}}
    first = await client.post(f"/v1/customers/{customer}/adjustments", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["replayed"] is False

    again = await client.post(f"/v1/customers/{customer}/adjustments", json=body)
    assert again.status_code == 201, again.text
    assert again.json()["replayed"] is True
    assert again.json()["transaction_id"] == first.json()["transaction_id"]
    assert again.json()["grant_id"] == first.json()["grant_id"]
    before = await state(client, customer)
    assert before[0][0]["posted"] == 700  # credited once

    for different in ({**body, "amount": 701}, {**body, "reason": "gift"}, {**body, "metadata": {"order": "A-2"}}):
        assert_problem(await client.post(f"/v1/customers/{customer}/adjustments", json=different),
                       409, "idempotency_conflict")
    other_customer = await make_customer(client)
    assert_problem(await client.post(f"/v1/customers/{other_customer}/adjustments", json=body),
                   409, "idempotency_conflict")
    assert await state(client, customer) == before

    # the header works as well as the body field
    header_key = new_id("adj")
    no_key = {k: v for k, v in body.items() if k != "idempotency_key"}
    via_header = await client.post(f"/v1/customers/{customer}/adjustments", json=no_key,
                                   headers={"Idempotency-Key": header_key})
    assert (via_header.status_code, via_header.json()["idempotency_key"]) == (201, header_key)
    assert_problem(await client.post(f"/v1/customers/{customer}/adjustments", json=no_key), 422, "validation_error")


async def test_adjustment_key_reused_from_debit_to_credit_is_a_conflict(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client, 100)
    key = new_id("adj")
    refund = await client.post(f"/v1/customers/{customer}/adjustments",
                               json={"idempotency_key": key, "asset": usd, "amount": -30, "reason": "external_refund"})
    assert refund.status_code == 201, refund.text
    before = await state(client, customer)
    response = await client.post(f"/v1/customers/{customer}/adjustments",
                                 json={"idempotency_key": key, "asset": usd, "amount": 30, "reason": "gift"})
    assert_problem(response, 409, "idempotency_conflict")
    assert await state(client, customer) == before


async def test_adjustment_amount_and_reason_rules(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client, 100)
    before = await state(client, customer)
    adjust = f"/v1/customers/{customer}/adjustments"
    for body in (
        {"asset": usd, "amount": 0, "reason": "other"},
        {"asset": usd, "amount": 50, "reason": "external_refund"},   # a refund takes money out
        {"asset": usd, "amount": -50, "reason": "gift"},             # a gift puts money in
        {"asset": usd, "amount": -50, "reason": "external_topup"},
        {"asset": usd, "amount": -50, "reason": "other", "priority": 3},
        {"asset": usd, "amount": 50, "reason": "gift", "expires_at": now(-dt.timedelta(hours=1))},  # already expired
    ):
        response = await client.post(adjust, json={"idempotency_key": new_id("adj"), **body})
        assert_problem(response, 422, "validation_error")
    assert "must not be 0" in (await client.post(adjust, json={
        "idempotency_key": new_id("adj"), "asset": usd, "amount": 0, "reason": "other"})).json()["detail"]
    overdraw = await client.post(adjust, json={"idempotency_key": new_id("adj"), "asset": usd, "amount": -101,
                                               "reason": "external_refund"})
    assert_problem(overdraw, 402, "insufficient_funds")
    assert await state(client, customer) == before


# --- catalog input ----------------------------------------------------------------------------------


async def test_invalid_price_definitions_are_422_and_create_no_version(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    product = new_id("prod")
    assert (await client.post("/v1/products", json={"code": product, "name": product})).status_code == 201
    event_type = new_id("call")
    per_unit = {"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "1"}
    tiered = {"event_type": event_type, "asset": usd, "model": "tiered",
              "tiers": [{"up_to": 100, "unit_price": "1"}, {"up_to": 50, "unit_price": "0.5"},
                        {"up_to": None, "unit_price": "0.1"}]}
    other_asset = await make_asset(client)
    invalid: list[tuple[list[dict], str]] = [
        ([{k: v for k, v in per_unit.items() if k != "unit_price"}], "requires unit_price"),
        ([{**per_unit, "unit_price": 0.0002}], "not a float"),
        ([{**per_unit, "unit_price": "-1"}], "not a non-negative decimal string"),
        ([{**per_unit, "unit_price": "1e-4"}], "not a non-negative decimal string"),
        ([{**per_unit, "unit_price": "abc"}], "not a non-negative decimal string"),
        ([tiered], "tiers[1].up_to (50) must be greater than the previous tier's (100)"),
        ([{**tiered, "tiers": [{"up_to": 100, "unit_price": "1"}]}], "the last tier (tiers[0]) must have up_to null"),
        ([{**per_unit, "model": "package"}], "requires package_size"),
        ([{**per_unit, "percentage": "120"}], "percentage does not apply to model 'per_unit'"),
        ([{**per_unit, "model": "magic"}], "model"),
        ([{**per_unit, "min_amount": 10, "max_amount": 5}], "must not exceed max_amount"),
        ([{**per_unit, "min_amount": -1}], "min_amount"),
        ([{**per_unit, "asset": "lowercase"}], "asset"),
        ([{**per_unit, "colour": "red"}], "colour"),
        ([per_unit, {**per_unit, "unit_price": "2"}], "ambiguous"),  # same type, field and dimensions
        ([per_unit, {**per_unit, "dimensions": {"model": "*"}}], "ambiguous"),  # "*" constrains nothing
        ([per_unit, {**per_unit, "quantity_field": "n", "asset": other_asset}], "must use one asset"),
        ([], "prices"),
    ]
    for prices, reason in invalid:
        response = await client.post(f"/v1/products/{product}/versions", json={"prices": prices})
        problem = assert_problem(response, 422, "validation_error")
        assert reason in json.dumps(problem), (reason, problem)
    assert (await client.get(f"/v1/products/{product}/versions")).json()["data"] == []

    created = await client.post(f"/v1/products/{product}/versions", json={"prices": [per_unit]})
    assert (created.status_code, created.json()["version"]) == (201, 1)  # numbering did not skip


async def test_bad_product_and_asset_definitions(client: httpx.AsyncClient) -> None:
    for body in ({"code": "Upper", "name": "x"}, {"code": "", "name": "x"}, {"code": "ok-code"}):
        assert_problem(await client.post("/v1/products", json=body), 422, "validation_error")
    for body in ({"code": "lower", "name": "x", "scale": 2, "kind": "fiat"},
                 {"code": "AB", "name": "x", "scale": 19, "kind": "fiat"},
                 {"code": "AB", "name": "x", "scale": 2.0, "kind": "fiat"},
                 {"code": "AB", "name": "x", "scale": 2, "kind": "points"}):
        assert_problem(await client.post("/v1/assets", json=body), 422, "validation_error")
    usd = await make_asset(client)
    clash = await client.post("/v1/assets", json={"code": usd, "name": usd, "scale": 3, "kind": "fiat"})
    assert_problem(clash, 409, "already_exists")


# --- pagination and reads -------------------------------------------------------------------------------


async def test_bad_cursor_is_422(client: httpx.AsyncClient) -> None:
    _usd, customer = await funded(client)
    for cursor in ("!!!", "bm90IGpzb24=", cursor_of("only-one"), cursor_of(1, 2),
                   cursor_of("yesterday", str(uuid.uuid4())), cursor_of(now(), "not-a-uuid")):
        assert_problem(await client.get(f"/v1/customers/{customer}/transactions", params={"cursor": cursor}),
                       422, "validation_error")
        assert_problem(await client.get("/v1/customers", params={"cursor": cursor}), 422, "validation_error")
    for limit in (0, -1, 501, "ten"):
        assert_problem(await client.get(f"/v1/customers/{customer}/transactions", params={"limit": limit}),
                       422, "validation_error")


async def test_cursor_with_a_naive_timestamp_is_422(client: httpx.AsyncClient) -> None:
    _usd, customer = await funded(client)
    cursor = cursor_of("2026-01-01T00:00:00", str(uuid.uuid4()))
    assert_problem(await client.get(f"/v1/customers/{customer}/transactions", params={"cursor": cursor}),
                   422, "validation_error")
    assert_problem(await client.get("/v1/customers", params={"cursor": cursor}), 422, "validation_error")


async def test_find_customer_by_external_id(client: httpx.AsyncClient) -> None:
    external_id = new_id("ext")
    created = await client.post("/v1/customers", json={"external_id": external_id, "name": "Ada",
                                                      "email": "ada@example.com", "metadata": {"plan": "pro"}})
    assert created.status_code == 201, created.text
    await make_customer(client)  # someone else

    found = await client.get("/v1/customers", params={"external_id": external_id})
    assert found.status_code == 200, found.text
    assert found.json()["next_cursor"] is None
    [customer] = found.json()["data"]
    assert customer == created.json()
    assert (customer["name"], customer["email"], customer["metadata"], customer["status"]) == (
        "Ada", "ada@example.com", {"plan": "pro"}, "active")
    assert (customer["billing_mode"], customer["insufficient_balance"], customer["overdraft_limit"]) == (
        "prepaid", "reject", 0)

    none = await client.get("/v1/customers", params={"external_id": new_id("ghost")})
    assert none.json() == {"data": [], "next_cursor": None}
    # creating the same customer again returns it; with different fields it is a conflict
    same = await client.post("/v1/customers", json={"external_id": external_id, "name": "Ada",
                                                   "email": "ada@example.com", "metadata": {"plan": "pro"}})
    assert same.json()["id"] == customer["id"]
    assert_problem(await client.post("/v1/customers", json={"external_id": external_id, "name": "Bob"}),
                   409, "already_exists")


async def test_transactions_are_signed_and_paginate_without_gaps(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    adjust = f"/v1/customers/{customer}/adjustments"
    for amount, reason in ((1000, "external_topup"), (200, "gift"), (-150, "external_refund"), (-25, "other")):
        response = await client.post(adjust, json={"idempotency_key": new_id("adj"), "asset": usd,
                                                   "amount": amount, "reason": reason})
        assert response.status_code == 201, response.text
    event_type = new_id("call")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit",
                                    "quantity_field": "n", "unit_price": "1"}])
    # one batch: three debits written at the same instant (ties on created_at)
    events = [{"id": new_id("ev"), "customer_id": customer, "event_type": event_type, "occurred_at": now(),
               "data": {"n": n}} for n in (11, 12, 13)]
    assert [r["status"] for r in (await client.post("/v1/events", json={"events": events})).json()["results"]] == [
        "debited"] * 3
    hold = await client.post("/v1/authorizations", json={"idempotency_key": new_id("h"), "customer_id": customer,
                                                         "asset": usd, "amount": 100})
    assert (await client.post(f"/v1/authorizations/{hold.json()['id']}/capture", json={"amount": 40})).status_code == 200

    everything = (await client.get(f"/v1/customers/{customer}/transactions", params={"limit": 500})).json()["data"]
    assert len(everything) == 8
    assert sorted((t["kind"], t["amount"]) for t in everything) == sorted([
        ("adjustment", 1000), ("adjustment", 200), ("adjustment", -150), ("adjustment", -25),
        ("usage", -11), ("usage", -12), ("usage", -13), ("capture", -40)])
    assert {t["asset"] for t in everything} == {usd}
    # signed effects add up to the balance
    posted = (await wallet_of(client, customer, usd))["posted"]
    assert posted == sum(t["amount"] for t in everything) == 1000 + 200 - 150 - 25 - 11 - 12 - 13 - 40
    assert [t["created_at"] for t in everything] == sorted((t["created_at"] for t in everything), reverse=True)

    pages: list[list[dict]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = await client.get(f"/v1/customers/{customer}/transactions", params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json()["data"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert all(len(p) <= 2 for p in pages)
    walked = [t for p in pages for t in p]
    assert [t["id"] for t in walked] == [t["id"] for t in everything]  # same order, no duplicates, no gaps
    assert len({t["id"] for t in walked}) == 8


async def test_grants_show_source_priority_remaining_and_expiry(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    customer = await make_customer(client)
    expires_at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    adjust = f"/v1/customers/{customer}/adjustments"
    paid = await client.post(adjust, json={"idempotency_key": new_id("adj"), "asset": usd, "amount": 500,
                                           "reason": "external_topup", "priority": 5})
    gift = await client.post(adjust, json={"idempotency_key": new_id("adj"), "asset": usd, "amount": 300,
                                           "reason": "gift", "priority": 1, "expires_at": expires_at.isoformat()})
    assert paid.status_code == gift.status_code == 201
    assert None not in (paid.json()["grant_id"], gift.json()["grant_id"])

    # a debit draws the lowest priority number first: 120 from the gift
    event_type = new_id("call")
    await publish_product(client, [{"event_type": event_type, "asset": usd, "model": "per_unit", "unit_price": "120"}])
    response = await client.post("/v1/events", json={"events": [
        {"id": new_id("ev"), "customer_id": customer, "event_type": event_type, "occurred_at": now()}]})
    assert response.json()["results"][0]["status"] == "debited"

    listed = await client.get(f"/v1/customers/{customer}/grants")
    assert listed.status_code == 200, listed.text
    grants = {g["id"]: g for g in listed.json()["data"]}
    assert set(grants) == {paid.json()["grant_id"], gift.json()["grant_id"]}
    g = grants[gift.json()["grant_id"]]
    assert (g["asset"], g["source"], g["priority"], g["amount"], g["remaining"], g["status"]) == (
        usd, "promotional", 1, 300, 180, "active")
    assert dt.datetime.fromisoformat(g["expires_at"]) == expires_at
    p = grants[paid.json()["grant_id"]]
    assert (p["source"], p["priority"], p["amount"], p["remaining"], p["expires_at"], p["status"]) == (
        "paid", 5, 500, 500, None, "active")
    assert (await wallet_of(client, customer, usd))["posted"] == 800 - 120
