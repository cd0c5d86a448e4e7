"""The real app over ASGI, on each backend, with keys of every scope."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.api.app import create_app


@dataclass
class Keys:
    admin: str
    ingest: str
    read: str


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(engine: AsyncEngine) -> FastAPI:
    return create_app(engine)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def keys(app: FastAPI) -> Keys:
    store = app.state.services.keys
    return Keys(*[(await store.create(f"test-{scope}", scope))[1] for scope in ("admin", "ingest", "read")])


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client; pass other headers per request to act with another scope."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://walletflow.test", headers={"Authorization": f"Bearer {keys.admin}"}
    ) as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_id(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def make_asset(client: httpx.AsyncClient, scale: int = 2, kind: str = "fiat") -> str:
    code = f"A{uuid.uuid4().hex[:8].upper()}"
    response = await client.post("/v1/assets", json={"code": code, "name": code, "scale": scale, "kind": kind})
    assert response.status_code == 201, response.text
    return code


async def make_customer(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/customers", json={"external_id": new_id("cust")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def fund(client: httpx.AsyncClient, customer_id: str, asset: str, amount: int) -> None:
    response = await client.post(
        f"/v1/customers/{customer_id}/adjustments",
        json={"idempotency_key": new_id("fund"), "asset": asset, "amount": amount, "reason": "external_topup"},
    )
    assert response.status_code == 201, response.text


async def funded(client: httpx.AsyncClient, amount: int = 1000) -> tuple[str, str]:
    """A new fiat asset and a new customer funded with ``amount`` of it: (asset, customer)."""
    usd = await make_asset(client)
    customer = await make_customer(client)
    await fund(client, customer, usd, amount)
    return usd, customer


async def publish_product(client: httpx.AsyncClient, prices: list[dict]) -> str:
    code = new_id("prod").lower()
    assert (await client.post("/v1/products", json={"code": code, "name": code})).status_code == 201
    created = await client.post(f"/v1/products/{code}/versions", json={"prices": prices})
    assert created.status_code == 201, created.text
    published = await client.post(f"/v1/products/{code}/versions/{created.json()['version']}/publish")
    assert published.status_code == 200, published.text
    return code


async def wallet_of(client: httpx.AsyncClient, customer_id: str, asset: str) -> dict:
    response = await client.get(f"/v1/customers/{customer_id}/wallet")
    assert response.status_code == 200, response.text
    return next((a for a in response.json()["accounts"] if a["asset"] == asset), {"posted": 0, "held": 0, "available": 0})


@asynccontextmanager
async def client_without(engine: AsyncEngine, app: FastAPI, middleware: type) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built like ``app`` (same database, same keys) but without one fast-path
    middleware (its middleware list is read when it first serves)."""
    without = create_app(engine)
    without.state.services.keys = app.state.services.keys
    without.user_middleware = [m for m in without.user_middleware if m.cls is not middleware]
    transport = httpx.ASGITransport(app=without, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://walletflow.test") as http:
        yield http


def answered_by(app: FastAPI, middleware: type) -> int:
    """How many requests the app's ``middleware`` fast path answered itself."""
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, middleware):
        layer = getattr(layer, "app", None)
    assert layer is not None, f"{middleware.__name__} is not in the app"
    return int(layer.answered)


def same(a: httpx.Response, b: httpx.Response) -> None:
    """Two answers to the same request agree: status, content type and body."""
    assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"]), (a.text, b.text)
    assert a.json() == b.json()
