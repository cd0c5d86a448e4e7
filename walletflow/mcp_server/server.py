"""Build and run the walletflow MCP server over stdio or streamable HTTP.

Over **stdio** the assistant's MCP client starts ``walletflow mcp`` itself, so the API key comes
from the environment (``WALLETFLOW_MCP_API_KEY``) or ``--api-key``. Over **streamable HTTP**
anyone who can reach the port could connect, so every request must carry
``Authorization: Bearer <walletflow API key>``: the key is checked against the walletflow API
before the request reaches the MCP session, and the tools then act with that same key (and its
scope). The server holds no key of its own in HTTP mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from walletflow import __version__
from walletflow.client import (
    AsyncWalletflow,
    AuthenticationError,
    WalletflowAPIError,
    WalletflowConnectionError,
)
from walletflow.mcp_server import tools

INSTRUCTIONS = """\
walletflow is a prepaid wallet billing engine: customers hold wallets (one balance per asset),
usage events are priced by a product's published price version and debited at once.
Every amount is an integer in the asset's minor unit (USD: cents). A typical setup: list_assets
(create_asset if needed), create_product, create_price_version, simulate_prices, then
publish_price_version; create_customer, then fund the wallet with post_adjustment or a card
payment link (create_top_up_link); get_wallet shows balances, margin_report the margins.
Errors name a stable code (validation_error, not_found, insufficient_funds, ...) and the reason."""
#: How long a key the API accepted is trusted before it is checked again (a revoked key stops
#: working within this time).
KEY_CHECK_TTL_S = 60.0


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def build_server(api_url: str, api_key: str | None, http: httpx.AsyncClient, timeout_s: float = 30.0) -> MCPServer:
    """The MCP server with every tool. ``api_key`` None: each request brings its own (HTTP)."""
    # WARNING: the SDK logs every request at INFO (and httpx every call), which buries real problems.
    server: MCPServer = MCPServer(name="walletflow", version=__version__, instructions=INSTRUCTIONS,
                                  log_level="WARNING")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    fixed = AsyncWalletflow(api_url, api_key, timeout=timeout_s, http=http) if api_key else None

    def client_for(ctx: Context) -> AsyncWalletflow:
        if fixed is not None:
            return fixed
        key = bearer_key((ctx.headers or {}).get("authorization"))
        if key is None:  # the HTTP guard refuses such requests before they get here
            raise ToolError("unauthorized: send your walletflow API key as 'Authorization: Bearer <key>'")
        return AsyncWalletflow(api_url, key, timeout=timeout_s, http=http)

    tools.register(server, client_for)
    return server


class RequireApiKey:
    """ASGI guard in front of the streamable HTTP app: refuses (401) a request without a bearer
    key the walletflow API accepts. A key whose scope is too small for a tool still connects;
    that tool then answers ``forbidden``."""

    def __init__(self, app: ASGIApp, api_url: str, http: httpx.AsyncClient) -> None:
        self.app = app
        self.api_url = api_url
        self.http = http
        self._accepted: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = bearer_key(Headers(scope=scope).get("authorization"))
        if key is None:
            await _refuse(send, 401, "unauthorized", "send your walletflow API key as 'Authorization: Bearer <key>'")
            return
        verdict = await self._check(key)
        if verdict == "invalid":
            await _refuse(send, 401, "unauthorized", "the walletflow API does not accept this API key")
            return
        if verdict == "unreachable":
            await _refuse(send, 502, "walletflow_unreachable", "the walletflow API could not check the key")
            return
        await self.app(scope, receive, send)

    async def _check(self, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        if self._accepted.get(digest, 0.0) > now:
            return "valid"
        try:
            await AsyncWalletflow(self.api_url, key, http=self.http, max_retries=1).list_assets(limit=1)
        except AuthenticationError:
            return "invalid"
        except WalletflowAPIError as exc:
            if exc.status >= 500:
                return "unreachable"
            # Authenticated, e.g. forbidden to read: the key is real.
        except WalletflowConnectionError:
            return "unreachable"
        if len(self._accepted) > 10_000:  # bounded: drop the lot rather than grow forever
            self._accepted.clear()
        self._accepted[digest] = now + KEY_CHECK_TTL_S
        return "valid"


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"type": f"https://walletflow.dev/problems/{code}", "title": detail, "status": status,
                       "detail": detail, "code": code}).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/problem+json"),
                                          (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="walletflow"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def http_app(api_url: str, host: str = "127.0.0.1", timeout_s: float = 30.0) -> Any:
    """The streamable HTTP app (endpoint ``/mcp``) behind the API-key guard."""
    http = httpx.AsyncClient(timeout=timeout_s)
    server = build_server(api_url, None, http, timeout_s)
    return RequireApiKey(server.streamable_http_app(host=host), api_url, http)


def run(transport: str, api_url: str, api_key: str | None, host: str, port: int) -> None:
    """Serve until stopped (stdio: until the client closes the pipe)."""
    if transport == "stdio":
        if not api_key:
            raise ValueError("stdio needs an API key: set WALLETFLOW_MCP_API_KEY or pass --api-key")
        build_server(api_url, api_key, httpx.AsyncClient()).run("stdio")
        return
    if transport == "http":
        import uvicorn

        uvicorn.run(http_app(api_url, host), host=host, port=port, log_level="warning")
        return
    raise ValueError(f"unknown transport {transport!r}: use stdio or http")
