"""The portal's app over ASGI on each backend, with a known portal secret and API keys."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.services import Stack, free_port
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


# --- the browser tests: the real stack on a port, and headless Chromium ---------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_binary() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not shutil.which(found):
        raise RuntimeError("Debian's chromium is required for the portal tests (apt-get install -y chromium)")
    return found


@dataclass
class Site:
    base_url: str
    app: FastAPI
    http: httpx.AsyncClient  # admin key, over ASGI


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def site(stack: Stack, localstripe_url: str) -> AsyncIterator[Site]:
    """The stack's API on a real port, with the page loading localstripe's Stripe.js."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = stack.app_with(portal_secret=PORTAL_SECRET, portal_base_url=base_url,
                         stripe_js_url=f"{localstripe_url}/js.stripe.com/v3/", stripe_publishable_key="pk_test_portal")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with stack.http_for(app) as http:
        yield Site(base_url, app, http)
    server.should_exit = True
    await task


async def session_url(site: Site, customer: uuid.UUID) -> str:
    """A fresh portal link for ``customer`` from ``POST /v1/portal/sessions``."""
    response = await site.http.post("/v1/portal/sessions", json={"customer_id": str(customer)})
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    assert url.startswith(site.base_url + "/portal/")
    return url


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str], int]:
    """Open ``url`` in a new tab: the page, the console errors it logs, and its HTTP status."""
    page = await browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    response = await page.goto(url)
    assert response is not None
    return page, problems, response.status
