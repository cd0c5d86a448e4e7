"""``/v1/webhook-endpoints``: register (secret shown once), read, list, disable, rotate; bad
input is a 422 problem and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.api.app import create_app
from walletflow.webhooks.repository import endpoints

pytestmark = pytest.mark.asyncio(loop_scope="session")
URL = "https://platform.example.com/walletflow/hooks"


@pytest_asyncio.fixture(loop_scope="session")
async def api(engine: AsyncEngine) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An admin client, and a read-only key."""
    app = create_app(engine)
    keys = app.state.services.keys
    _, admin = await keys.create("wh-admin", "admin")
    _, read = await keys.create("wh-read", "read")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://walletflow.test",
        headers={"Authorization": f"Bearer {admin}"},
    ) as http:
        yield http, read


async def count_endpoints(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(endpoints))).scalar_one())


async def test_register_shows_the_secret_once(api: tuple[httpx.AsyncClient, str]) -> None:
    http, read = api
    created = await http.post("/v1/webhook-endpoints", json={"url": URL, "events": ["top_up.succeeded", "balance.low"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["top_up.succeeded", "balance.low"] and body["enabled"] is True

    fetched = await http.get(f"/v1/webhook-endpoints/{body['id']}", headers={"Authorization": f"Bearer {read}"})
    assert fetched.status_code == 200
    assert "secret" not in fetched.json() and body["secret"] not in fetched.text
    listed = await http.get("/v1/webhook-endpoints", params={"limit": 500})
    assert body["secret"] not in listed.text

    rotated = await http.post(f"/v1/webhook-endpoints/{body['id']}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != body["secret"]


async def test_star_subscribes_to_everything_and_duplicates_collapse(api: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = api
    star = await http.post("/v1/webhook-endpoints", json={"url": URL, "events": ["*", "balance.low"]})
    assert star.status_code == 201 and star.json()["events"] == ["*"]
    dup = await http.post("/v1/webhook-endpoints", json={"url": URL, "events": ["grant.expired", "grant.expired"]})
    assert dup.status_code == 201 and dup.json()["events"] == ["grant.expired"]


@pytest.mark.parametrize("body", [
    {"url": "ftp://platform.example.com/hooks", "events": ["balance.low"]},
    {"url": "javascript:alert(1)", "events": ["balance.low"]},
    {"url": "https://", "events": ["balance.low"]},
    {"url": "platform.example.com/hooks", "events": ["balance.low"]},
    {"url": "https://platform.example.com/a b", "events": ["balance.low"]},
    {"url": "https://platform.example.com:99999/", "events": ["balance.low"]},
    {"url": URL, "events": ["balance.lowish"]},
    {"url": URL, "events": ["balance.low", "top_up.exploded"]},
    {"url": URL, "events": []},
    {"url": URL, "events": "balance.low"},
    {"url": URL},
    {"events": ["balance.low"]},
    {"url": "https://x.example/" + "a" * 2100, "events": ["balance.low"]},
])
async def test_bad_input_is_422_and_writes_nothing(
    api: tuple[httpx.AsyncClient, str], engine: AsyncEngine, body: dict
) -> None:
    http, _ = api
    before = await count_endpoints(engine)
    response = await http.post("/v1/webhook-endpoints", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_error"
    assert await count_endpoints(engine) == before


async def test_read_keys_cannot_register(api: tuple[httpx.AsyncClient, str], engine: AsyncEngine) -> None:
    http, read = api
    before = await count_endpoints(engine)
    response = await http.post(
        "/v1/webhook-endpoints", json={"url": URL, "events": ["*"]}, headers={"Authorization": f"Bearer {read}"}
    )
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert await count_endpoints(engine) == before


async def test_list_is_cursor_paginated(api: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = api
    mine = []
    for _ in range(3):
        created = await http.post("/v1/webhook-endpoints", json={"url": URL, "events": ["hold.expired"]})
        mine.append(created.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/webhook-endpoints", params=params)).json()
        assert len(page["data"]) <= 2
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert set(mine) <= set(seen)
    bad = await http.get("/v1/webhook-endpoints", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_disable_and_unknown_ids(api: tuple[httpx.AsyncClient, str]) -> None:
    http, _ = api
    created = (await http.post("/v1/webhook-endpoints", json={"url": URL, "events": ["wallet.frozen"]})).json()
    disabled = await http.delete(f"/v1/webhook-endpoints/{created['id']}")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert (await http.get(f"/v1/webhook-endpoints/{created['id']}")).json()["enabled"] is False
    enabled = await http.post(f"/v1/webhook-endpoints/{created['id']}/enable")
    assert enabled.json()["enabled"] is True
    log = await http.get(f"/v1/webhook-endpoints/{created['id']}/deliveries")
    assert log.status_code == 200 and log.json() == {"data": [], "next_cursor": None}
    bad_status = await http.get(f"/v1/webhook-endpoints/{created['id']}/deliveries", params={"status": "lost"})
    assert bad_status.status_code == 422
    missing = "00000000-0000-4000-8000-000000000000"
    for response in (
        await http.get(f"/v1/webhook-endpoints/{missing}"),
        await http.delete(f"/v1/webhook-endpoints/{missing}"),
        await http.get(f"/v1/webhook-endpoints/{missing}/deliveries"),
        await http.post(f"/v1/webhook-endpoints/{missing}/rotate-secret"),
    ):
        assert response.status_code == 404 and response.json()["code"] == "not_found"
