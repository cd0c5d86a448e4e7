"""``POST /v1/authorizations`` answered by the fast path (walletflow/api/fast_paths.py) is
answered exactly as by the FastAPI route it stands in front of.

Two apps on the same database: the real one, and one built the same way but without the fast
path. The same requests go to both; statuses, headers that matter and bodies must agree, and
the real app must actually have answered the well-formed ones itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import Keys, answered_by, bearer, client_without, fund, funded, make_customer, new_id, same
from walletflow.api.fast_paths import FastAuthorizations


@pytest_asyncio.fixture(loop_scope="session")
async def plain(engine: AsyncEngine, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app without the fast path."""
    async with client_without(engine, app, FastAuthorizations) as http:
        yield http


def answered_by_fast_path(app: FastAPI) -> int:
    return answered_by(app, FastAuthorizations)


async def test_a_hold_and_its_replay_read_the_same_from_both(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, app: FastAPI, keys: Keys
) -> None:
    asset, customer = await funded(client, 1_000)
    body = {"customer_id": customer, "asset": asset, "amount": 250, "idempotency_key": new_id("h"),
            "expires_in_s": 600, "metadata": {"model": "gpt-4o", "n": 3}}
    before = answered_by_fast_path(app)

    fast = await client.post("/v1/authorizations", json=body, headers=bearer(keys.ingest))
    replay = await plain.post("/v1/authorizations", json=body, headers=bearer(keys.ingest))

    assert answered_by_fast_path(app) == before + 1
    assert fast.status_code == 201 and fast.json()["status"] == "pending"
    same(fast, replay)  # the route's replay reads the hold back from the database
    again = await client.post("/v1/authorizations", json=body, headers=bearer(keys.ingest))
    same(again, replay)
    # The key in the header instead of the body: also taken by the fast path.
    header_body = {k: v for k, v in body.items() if k != "idempotency_key"}
    headers = {**bearer(keys.ingest), "Idempotency-Key": body["idempotency_key"]}
    same(await client.post("/v1/authorizations", json=header_body, headers=headers), replay)
    assert answered_by_fast_path(app) == before + 3


async def test_refusals_read_the_same_from_both(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, app: FastAPI, keys: Keys
) -> None:
    asset, customer = await funded(client, 100)
    frozen = await make_customer(client)
    await fund(client, frozen, asset, 100)
    assert (await client.post(f"/v1/customers/{frozen}/freeze")).status_code == 200
    used = new_id("h")
    ok = {"customer_id": customer, "asset": asset, "amount": 10, "idempotency_key": used}
    assert (await client.post("/v1/authorizations", json=ok, headers=bearer(keys.ingest))).status_code == 201

    cases: list[tuple[Any, dict[str, str]]] = [
        ({**ok, "amount": 500, "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # insufficient
        ({**ok, "amount": 11}, bearer(keys.ingest)),                                  # key reused: conflict
        ({**ok, "customer_id": frozen, "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # frozen
        ({**ok, "asset": "NOPE", "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # unknown asset
        # Handed over to the FastAPI route, which answers them:
        ({**ok, "idempotency_key": new_id("h")}, bearer(keys.read)),                  # wrong scope
        ({**ok, "idempotency_key": new_id("h")}, bearer("wf_not_a_key")),             # unknown key
        ({**ok, "idempotency_key": new_id("h")}, {"Authorization": ""}),              # no API key
        ({**ok, "amount": -1, "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # out of range
        ({**ok, "amount": "10", "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # not an integer
        ({**ok, "idempotency_key": None}, bearer(keys.ingest)),                       # no idempotency key
        ({**ok, "asset": "A\u0000B", "idempotency_key": new_id("h")}, bearer(keys.ingest)),  # NUL
        ({**ok, "idempotency_key": new_id("h")}, {**bearer(keys.ingest), "Idempotency-Key": "other"}),
        (b"{not json", bearer(keys.ingest)),
    ]
    for body, headers in cases:
        send = {"content": body, "headers": {**headers, "content-type": "application/json"}} if isinstance(
            body, bytes) else {"json": body, "headers": headers}
        fast = await client.post("/v1/authorizations", **send)
        slow = await plain.post("/v1/authorizations", **send)
        assert fast.status_code >= 400, (body, fast.text)
        same(fast, slow)
