"""End to end over streamable HTTP: ``walletflow mcp --transport http`` as its own process,
driven by the SDK's ``streamable_http_client``; every request needs a walletflow API key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.client.conftest import LiveApi
from tests.mcp_server.helpers import call, call_error
from tests.services import free_port

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest_asyncio.fixture(loop_scope="session")
async def mcp_url(live_api: LiveApi) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "WALLETFLOW_MCP_API_URL": live_api.url, "WALLETFLOW_MCP_API_KEY": ""}
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block; it runs beside the test)
        [sys.executable, "-m", "walletflow.cli", "mcp", "--transport", "http", "--port", str(port)], env=env,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    await http.get(url, timeout=1)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("walletflow mcp --transport http did not start") from None
                    await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_a_client_with_a_key_uses_the_tools_with_that_keys_rights(live_api: LiveApi, mcp_url: str) -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {live_api.admin_key}"})
    async with http, streamable_http_client(mcp_url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        assert len((await session.list_tools()).tools) >= 14
        customer = await call(session, "create_customer", external_id=f"http-{uuid.uuid4().hex}")
        wallet = await call(session, "get_wallet", customer_id=customer["id"])
        assert wallet == {"customer_id": customer["id"], "accounts": []}

    # A read-only key connects, reads, and is refused writes by the API itself.
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {live_api.read_key}"})
    async with http, streamable_http_client(mcp_url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        assert (await call(session, "get_wallet", customer_id=customer["id"]))["accounts"] == []
        refused = await call_error(session, "create_asset", code="ZZREAD", name="x", scale=2, kind="fiat")
        assert "forbidden (HTTP 403)" in refused


@pytest.mark.parametrize("authorization", [None, "Bearer wf_not_a_real_key", "Basic dXNlcjpwYXNz"])
async def test_without_a_valid_key_nothing_reaches_the_mcp_session(
    mcp_url: str, authorization: str | None
) -> None:
    headers = dict(MCP_HEADERS)
    if authorization:
        headers["Authorization"] = authorization
    async with httpx.AsyncClient() as http:
        response = await http.post(mcp_url, json=INITIALIZE, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")

    # The SDK's client cannot even initialize a session.
    client_headers = {"Authorization": authorization} if authorization else {}
    http_client = create_mcp_http_client(headers=client_headers)
    initialized = False
    with pytest.raises(BaseExceptionGroup) as refused:  # the SDK raises from its task groups
        async with http_client, streamable_http_client(mcp_url, http_client=http_client) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            initialized = True
    assert not initialized
    assert refused.value.subgroup(MCPError) is not None, repr(refused.value)
