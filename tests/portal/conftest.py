"""The portal's app over ASGI on each backend, with a known portal secret and API keys."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.api.app import create_app
from walletflow.settings import Settings

PORTAL_SECRET = "portal-test-secret-" + "x" * 32


@dataclass
class PortalClient:
    app: FastAPI
    http: httpx.AsyncClient  # admin key
    read_key: str

    async def session(self, customer_id: uuid.UUID | str, **extra: object) -> dict[str, str]:
        response = await self.http.post("/v1/portal/sessions", json={"customer_id": str(customer_id), **extra})
        assert response.status_code == 201, response.text
        return response.json()


def token_of(url: str) -> str:
    match = re.fullmatch(r"http://portal\.test/portal/([A-Za-z0-9_.-]+)", url)
    assert match, url
    return match.group(1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def portal(engine: AsyncEngine, database_url: str) -> AsyncIterator[PortalClient]:
    settings = Settings(database_url=database_url, portal_secret=PORTAL_SECRET, portal_base_url="http://portal.test",
                        stripe_js_url="http://stripe.test/js.stripe.com/v3/")
    app = create_app(engine, settings=settings)
    _, admin = await app.state.services.keys.create("portal-admin", "admin")
    _, read = await app.state.services.keys.create("portal-read", "read")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test",
                                 headers={"Authorization": f"Bearer {admin}"}) as http:
        yield PortalClient(app, http, read)
