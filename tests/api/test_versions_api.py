"""Price versions and pinning: which version prices a customer's next event."""

from __future__ import annotations

import datetime as dt

import httpx

from tests.api.conftest import fund, make_asset, make_customer, new_id, publish_product, wallet_of


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def flat(event_type: str, asset: str, unit_price: str) -> list[dict]:
    """One price: ``unit_price`` per event."""
    return [{"event_type": event_type, "asset": asset, "model": "per_unit", "unit_price": unit_price}]


async def charge(client: httpx.AsyncClient, customer: str, event_type: str) -> tuple[str, int]:
    """Send one event; return (status, amount)."""
    response = await client.post("/v1/events", json={"events": [
        {"id": new_id("ev"), "customer_id": customer, "event_type": event_type, "occurred_at": now()}]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    return result["status"], result["amount"]


async def add_version(client: httpx.AsyncClient, product: str, prices: list[dict]) -> int:
    response = await client.post(f"/v1/products/{product}/versions", json={"prices": prices})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "draft"
    return response.json()["version"]


async def publish(client: httpx.AsyncClient, product: str, version: int) -> dict:
    response = await client.post(f"/v1/products/{product}/versions/{version}/publish")
    assert response.status_code == 200, response.text
    return response.json()


async def pin(client: httpx.AsyncClient, customer: str, product: str, version: int | None) -> httpx.Response:
    return await client.post(f"/v1/customers/{customer}/subscriptions", json={"product_code": product, "version": version})


async def funded_customer(client: httpx.AsyncClient, asset: str, amount: int = 10_000) -> str:
    customer = await make_customer(client)
    await fund(client, customer, asset, amount)
    return customer


async def test_new_published_version_becomes_the_default_for_followers(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    follower = await funded_customer(client, usd)
    assert await charge(client, follower, event_type) == ("debited", 10)  # v1 is the default

    v2 = await add_version(client, product, flat(event_type, usd, "25"))
    assert v2 == 2
    assert await charge(client, follower, event_type) == ("debited", 10)  # a draft changes nothing
    published = await publish(client, product, v2)
    assert (published["version"], published["status"]) == (2, "published")
    assert published["published_at"] is not None

    assert await charge(client, follower, event_type) == ("debited", 25)  # the very next event
    assert (await wallet_of(client, follower, usd))["posted"] == 10_000 - 10 - 10 - 25

    listed = await client.get(f"/v1/products/{product}/versions")
    assert [(v["version"], v["status"]) for v in listed.json()["data"]] == [(1, "published"), (2, "published")]


async def test_pinned_customer_keeps_v1_after_v2_is_published(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    pinned = await funded_customer(client, usd)
    follower = await funded_customer(client, usd)

    response = await pin(client, pinned, product, 1)
    assert response.status_code == 201, response.text
    assert response.json() == {"customer_id": pinned, "product_code": product, "version": 1}

    await publish(client, product, await add_version(client, product, flat(event_type, usd, "25")))
    assert await charge(client, pinned, event_type) == ("debited", 10)
    assert await charge(client, follower, event_type) == ("debited", 25)

    # unpinning (version omitted / null) follows the default again
    response = await client.post(f"/v1/customers/{pinned}/subscriptions", json={"product_code": product})
    assert response.status_code == 201, response.text
    assert response.json()["version"] is None
    assert await charge(client, pinned, event_type) == ("debited", 25)
    assert (await wallet_of(client, pinned, usd))["posted"] == 10_000 - 10 - 25


async def test_pinning_a_draft_is_refused(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    draft = await add_version(client, product, flat(event_type, usd, "1"))
    customer = await funded_customer(client, usd)

    response = await pin(client, customer, product, draft)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert "draft" in response.json()["detail"]
    assert await charge(client, customer, event_type) == ("debited", 10)  # still on the default


async def test_pinning_something_that_does_not_exist_is_404(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    customer = await make_customer(client)
    for response in (
        await pin(client, customer, product, 7),
        await pin(client, customer, new_id("nope"), 1),
        await pin(client, "00000000-0000-4000-8000-000000000000", product, 1),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"


async def test_archived_version_is_not_the_default(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    await publish(client, product, await add_version(client, product, flat(event_type, usd, "25")))
    pinned_to_v2 = await funded_customer(client, usd)
    assert (await pin(client, pinned_to_v2, product, 2)).status_code == 201
    follower = await funded_customer(client, usd)
    assert await charge(client, follower, event_type) == ("debited", 25)

    archived = await client.post(f"/v1/products/{product}/versions/2/archive")
    assert archived.status_code == 200, archived.text
    assert archived.json()["status"] == "archived"

    assert await charge(client, follower, event_type) == ("debited", 10)  # back to v1, the newest published
    assert await charge(client, pinned_to_v2, event_type) == ("debited", 25)  # a pin survives archiving

    late = await funded_customer(client, usd)
    refused = await pin(client, late, product, 2)
    assert (refused.status_code, refused.json()["code"]) == (422, "validation_error")
    republish = await client.post(f"/v1/products/{product}/versions/2/publish")
    assert (republish.status_code, republish.json()["code"]) == (422, "validation_error")


async def test_archiving_every_version_leaves_events_unmatched(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    customer = await funded_customer(client, usd)
    assert (await client.post(f"/v1/products/{product}/versions/1/archive")).status_code == 200
    assert await charge(client, customer, event_type) == ("unmatched", 0)
    assert (await wallet_of(client, customer, usd))["posted"] == 10_000


async def test_event_type_priced_by_another_product_cannot_be_published(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    await publish_product(client, flat(event_type, usd, "10"))

    rival = new_id("prod")
    assert (await client.post("/v1/products", json={"code": rival, "name": rival})).status_code == 201
    version = await add_version(client, rival, flat(event_type, usd, "1"))  # a draft may say anything
    response = await client.post(f"/v1/products/{rival}/versions/{version}/publish")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "already_exists"
    assert event_type in response.json()["detail"]
    assert (await client.get(f"/v1/products/{rival}/versions/{version}")).json()["status"] == "draft"

    customer = await funded_customer(client, usd)
    assert await charge(client, customer, event_type) == ("debited", 10)  # still the first product's price


async def test_draft_version_is_not_used_for_billing(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    only_draft = new_id("call")
    product = new_id("prod")
    assert (await client.post("/v1/products", json={"code": product, "name": product})).status_code == 201
    await add_version(client, product, flat(only_draft, usd, "10"))
    customer = await funded_customer(client, usd)
    assert await charge(client, customer, only_draft) == ("unmatched", 0)

    # published v1 with a newer draft v2: v1 prices
    event_type = new_id("call")
    other = await publish_product(client, flat(event_type, usd, "10"))
    await add_version(client, other, flat(event_type, usd, "99"))
    assert await charge(client, customer, event_type) == ("debited", 10)
    assert (await wallet_of(client, customer, usd))["posted"] == 10_000 - 10


async def test_publishing_twice_is_a_no_op(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    product = await publish_product(client, flat(event_type, usd, "10"))
    first = (await client.get(f"/v1/products/{product}/versions/1")).json()
    again = await publish(client, product, 1)
    assert again == first
    assert again["prices"] == flat(event_type, usd, "10")


async def archive_rival_draft(client: httpx.AsyncClient, event_type: str, asset: str) -> None:
    """Another product drafts a price for ``event_type`` and tries to archive the draft unpublished:
    refused, since a draft was never live (archiving it used to make it count as live)."""
    rival = new_id("prod")
    assert (await client.post("/v1/products", json={"code": rival, "name": rival})).status_code == 201
    version = await add_version(client, rival, flat(event_type, asset, "1"))
    archived = await client.post(f"/v1/products/{rival}/versions/{version}/archive")
    assert (archived.status_code, archived.json()["code"]) == (422, "validation_error"), archived.text


async def test_an_archived_unpublished_draft_does_not_block_publishing(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    await archive_rival_draft(client, event_type, usd)
    product = new_id("prod")
    assert (await client.post("/v1/products", json={"code": product, "name": product})).status_code == 201
    version = await add_version(client, product, flat(event_type, usd, "10"))
    response = await client.post(f"/v1/products/{product}/versions/{version}/publish")
    assert response.status_code == 200, response.text


async def test_archiving_a_rival_draft_does_not_steal_the_event_type(client: httpx.AsyncClient) -> None:
    usd = await make_asset(client)
    event_type = new_id("call")
    await publish_product(client, flat(event_type, usd, "10"))
    await archive_rival_draft(client, event_type, usd)
    customer = await funded_customer(client, usd)
    assert await charge(client, customer, event_type) == ("debited", 10)
