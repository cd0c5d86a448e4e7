"""Authorizations (holds) through the API: idempotent creation, capture, void and their races."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.api.conftest import Keys, bearer, funded, new_id, wallet_of


async def authorize(client: httpx.AsyncClient, customer: str, asset: str, amount: int, **extra: object) -> dict:
    body = {"idempotency_key": new_id("hold"), "customer_id": customer, "asset": asset, "amount": amount, **extra}
    response = await client.post("/v1/authorizations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def balances(account: dict) -> tuple[int, int, int]:
    return account["posted"], account["held"], account["available"]


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"].endswith(code) and body["title"] and body["detail"]


async def test_create_with_key_in_body(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    key = new_id("hold")
    response = await client.post("/v1/authorizations", json={
        "idempotency_key": key, "customer_id": customer, "asset": usd, "amount": 400})
    assert response.status_code == 201, response.text
    hold = response.json()
    assert (hold["status"], hold["amount"], hold["customer_id"], hold["asset"], hold["idempotency_key"]) == (
        "pending", 400, customer, usd, key)
    assert (hold["captured_amount"], hold["transaction_id"]) == (None, None)
    assert balances(await wallet_of(client, customer, usd)) == (1000, 400, 600)
    fetched = await client.get(f"/v1/authorizations/{hold['id']}")
    assert fetched.json()["status"] == "pending"


async def test_create_with_key_in_header_and_replay(client: httpx.AsyncClient, keys: Keys) -> None:
    usd, customer = await funded(client)
    key = new_id("hold")
    body = {"customer_id": customer, "asset": usd, "amount": 250}
    headers = {**bearer(keys.ingest), "Idempotency-Key": key}  # the ingest scope manages holds
    first = await client.post("/v1/authorizations", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["idempotency_key"] == key

    again = await client.post("/v1/authorizations", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    # the same key in the body is the same request
    in_body = await client.post("/v1/authorizations", json={**body, "idempotency_key": key})
    assert in_body.json()["id"] == first.json()["id"]
    assert balances(await wallet_of(client, customer, usd)) == (1000, 250, 750)  # held once


async def test_same_key_different_body_is_a_conflict(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 300)
    response = await client.post("/v1/authorizations", json={
        "idempotency_key": hold["idempotency_key"], "customer_id": customer, "asset": usd, "amount": 301})
    assert_problem(response, 409, "idempotency_conflict")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 300, 700)


async def test_key_is_required_and_body_and_header_must_agree(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    body = {"customer_id": customer, "asset": usd, "amount": 10}
    assert_problem(await client.post("/v1/authorizations", json=body), 422, "validation_error")
    disagree = await client.post("/v1/authorizations", json={**body, "idempotency_key": "a"},
                                 headers={"Idempotency-Key": "b"})
    assert_problem(disagree, 422, "validation_error")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 0, 1000)


async def test_partial_capture_releases_the_rest_and_replays(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 500)
    captured = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 320})
    assert captured.status_code == 200, captured.text
    result = captured.json()
    assert (result["status"], result["amount"], result["captured_amount"]) == ("captured", 500, 320)
    assert result["transaction_id"] is not None
    assert balances(await wallet_of(client, customer, usd)) == (680, 0, 680)

    again = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 320})
    assert again.status_code == 200, again.text
    assert again.json() == result
    assert balances(await wallet_of(client, customer, usd)) == (680, 0, 680)

    history = (await client.get(f"/v1/customers/{customer}/transactions")).json()["data"]
    assert [(t["kind"], t["amount"]) for t in history] == [("capture", -320), ("adjustment", 1000)]
    assert history[0]["id"] == result["transaction_id"]


async def test_capture_of_a_different_amount_after_capture_is_refused(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 500)
    assert (await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 100})).status_code == 200
    response = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 200})
    assert response.status_code == 409, response.text
    assert response.json()["code"] in ("hold_not_pending", "idempotency_conflict")
    assert balances(await wallet_of(client, customer, usd)) == (900, 0, 900)


async def test_capture_more_than_authorized_is_refused(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 500)
    assert_problem(await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 501}),
                   422, "validation_error")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 500, 500)


async def test_void_after_capture_is_refused(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 500)
    assert (await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 500})).status_code == 200
    assert_problem(await client.post(f"/v1/authorizations/{hold['id']}/void"), 409, "hold_not_pending")
    assert balances(await wallet_of(client, customer, usd)) == (500, 0, 500)


async def test_capture_after_void_is_refused(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client)
    hold = await authorize(client, customer, usd, 500)
    voided = await client.post(f"/v1/authorizations/{hold['id']}/void")
    assert (voided.status_code, voided.json()["status"]) == (200, "voided")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 0, 1000)
    again = await client.post(f"/v1/authorizations/{hold['id']}/void")  # voiding twice is harmless
    assert (again.status_code, again.json()["status"]) == (200, "voided")
    assert_problem(await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 100}),
                   409, "hold_not_pending")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 0, 1000)


async def test_unknown_authorization_is_404(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    assert_problem(await client.post(f"/v1/authorizations/{missing}/capture", json={"amount": 1}), 404, "not_found")
    assert_problem(await client.post(f"/v1/authorizations/{missing}/void"), 404, "not_found")
    assert_problem(await client.get(f"/v1/authorizations/{missing}"), 404, "not_found")


async def test_racing_captures_and_voids_resolve_the_hold_once(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client, 3000)
    for _ in range(3):
        hold = await authorize(client, customer, usd, 500)
        before = (await wallet_of(client, customer, usd))["posted"]
        calls = [client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 300}) for _ in range(10)]
        calls += [client.post(f"/v1/authorizations/{hold['id']}/void") for _ in range(10)]
        responses = await asyncio.gather(*calls)
        captures, voids = responses[:10], responses[10:]
        assert {r.status_code for r in responses} <= {200, 409}, [r.text for r in responses]
        assert all(r.json()["code"] == "hold_not_pending" for r in responses if r.status_code == 409)

        final = (await client.get(f"/v1/authorizations/{hold['id']}")).json()
        if final["status"] == "captured":
            # every capture saw the same single capture; every void was refused
            assert [r.status_code for r in captures] == [200] * 10
            assert {r.json()["transaction_id"] for r in captures} == {final["transaction_id"]}
            assert [r.status_code for r in voids] == [409] * 10
            assert (await wallet_of(client, customer, usd))["posted"] == before - 300
        else:
            assert final["status"] == "voided"
            assert [r.status_code for r in voids] == [200] * 10
            assert [r.status_code for r in captures] == [409] * 10
            assert (await wallet_of(client, customer, usd))["posted"] == before
        assert (await wallet_of(client, customer, usd))["held"] == 0


async def test_insufficient_funds_is_a_402_problem(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client, 100)
    await authorize(client, customer, usd, 60)
    response = await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("hold"), "customer_id": customer, "asset": usd, "amount": 41})  # 40 available
    assert_problem(response, 402, "insufficient_funds")
    assert (response.json()["available"], response.json()["requested"]) == (40, 41)
    assert balances(await wallet_of(client, customer, usd)) == (100, 60, 40)
    await authorize(client, customer, usd, 40)  # exactly what is left


async def test_frozen_wallet_refuses_holds_but_allows_capture(client: httpx.AsyncClient) -> None:
    usd, customer = await funded(client, 100)
    hold = await authorize(client, customer, usd, 30)
    assert (await client.post(f"/v1/customers/{customer}/freeze")).status_code == 200
    response = await client.post("/v1/authorizations", json={
        "idempotency_key": new_id("hold"), "customer_id": customer, "asset": usd, "amount": 10})
    assert_problem(response, 409, "wallet_frozen")
    assert balances(await wallet_of(client, customer, usd)) == (100, 30, 70)
    # a hold granted before the freeze can still be captured: the work was done
    captured = await client.post(f"/v1/authorizations/{hold['id']}/capture", json={"amount": 30})
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")
    assert balances(await wallet_of(client, customer, usd)) == (70, 0, 70)


async def test_read_key_cannot_authorize(client: httpx.AsyncClient, keys: Keys) -> None:
    usd, customer = await funded(client)
    response = await client.post("/v1/authorizations", headers=bearer(keys.read), json={
        "idempotency_key": new_id("hold"), "customer_id": customer, "asset": usd, "amount": 10})
    assert_problem(response, 403, "forbidden")
    assert balances(await wallet_of(client, customer, usd)) == (1000, 0, 1000)
