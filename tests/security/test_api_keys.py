"""Every ``/v1`` endpoint refuses a missing, wrong or under-scoped API key, before it reads
anything. The list of endpoints comes from the app itself, so a new endpoint is covered (and
must declare the capability it needs) without editing this file."""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.api.app import create_app
from walletflow.auth.service import CAPABILITIES, SCOPES

#: Authenticated otherwise: Stripe signs its webhooks (tests/payments/test_webhooks.py).
NOT_BY_API_KEY = {"/v1/stripe/webhooks"}


def required_capability(route: APIRoute) -> str | None:
    """The capability the route's ``require(...)`` dependency asks for (None: no such dependency)."""
    for dependency in route.dependant.dependencies:
        call = dependency.call
        if call is not None and call.__qualname__ == "require.<locals>.check":
            return inspect.getclosurevars(call).nonlocals["capability"]
    return None


def concrete(path: str) -> str:
    """The path with made-up values for its parameters (numbers where a number is expected)."""
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "version" else str(uuid.uuid4()), path)


def api_routes(routes: list, prefix: str = "") -> list[tuple[str, APIRoute]]:
    """(full path, route) for every API route, also inside included routers (FastAPI >= 0.165
    keeps an included router as one entry that carries its prefix)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
        elif (context := getattr(route, "include_context", None)) is not None:
            found += api_routes(context.included_router.routes, prefix + context.prefix)
    return found


def endpoints() -> list[tuple[str, str, str]]:
    app = create_app(engine=None)
    found = []
    for path, route in api_routes(app.routes):
        if path.startswith("/v1") and path not in NOT_BY_API_KEY:
            capability = required_capability(route)
            for method in sorted(route.methods):
                found.append((method, path, capability or "NONE"))
    return found


ENDPOINTS = endpoints()


@pytest_asyncio.fixture(loop_scope="session")
async def keys_and_http(engine: AsyncEngine) -> AsyncIterator[tuple[dict[str, str], httpx.AsyncClient]]:
    app = create_app(engine)
    keys = {scope: (await app.state.services.keys.create(f"security-{scope}", scope))[1] for scope in SCOPES}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://walletflow.test") as http:
        yield keys, http


def test_every_endpoint_declares_the_capability_it_needs() -> None:
    assert len(ENDPOINTS) > 30
    undeclared = [(m, p) for m, p, c in ENDPOINTS if c == "NONE"]
    assert undeclared == [], "every /v1 endpoint must depend on require(...)"


@pytest.mark.parametrize(("method", "path", "capability"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
async def test_missing_wrong_and_under_scoped_keys_are_refused(
    keys_and_http: tuple[dict[str, str], httpx.AsyncClient], method: str, path: str, capability: str
) -> None:
    keys, http = keys_and_http
    url = concrete(path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    attempts = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {keys['admin']}"},
        "wrong": {"Authorization": "Bearer wf_admin_" + "x" * 43},
        "truncated": {"Authorization": f"Bearer {keys['admin'][:-1]}"},
    }
    for what, headers in attempts.items():
        response = await http.request(method, url, json=body, headers=headers)
        assert response.status_code == 401, (what, response.text)
        assert response.json()["code"] == "unauthorized"
    for scope in SCOPES:
        if capability in CAPABILITIES[scope]:
            continue
        response = await http.request(method, url, json=body, headers={"Authorization": f"Bearer {keys[scope]}"})
        assert response.status_code == 403, (scope, response.text)
        assert response.json()["code"] == "forbidden"
