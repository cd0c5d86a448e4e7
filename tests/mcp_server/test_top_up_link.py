"""The top-up tool over stdio, against the real stack (API + worker + Temporal + localstripe)
served over HTTP."""

from __future__ import annotations

import uuid

from mcp import ClientSession
from mcp.client.stdio import stdio_client

from tests.client.conftest import serve
from tests.mcp_server.helpers import call, stdio_params
from tests.services import Stack


async def test_an_assistant_creates_a_checkout_link_for_a_top_up(stack: Stack) -> None:
    customer = await stack.new_customer()
    key = f"mcp-order-{uuid.uuid4().hex}"
    async with serve(stack.app) as api_url, stdio_client(stdio_params(api_url, stack.admin_key)) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        link = await call(session, "create_top_up_link", customer_id=str(customer), amount=2000, currency="usd",
                          return_url="https://platform.example/billing", idempotency_key=key)
        again = await call(session, "create_top_up_link", customer_id=str(customer), amount=2000, currency="usd",
                           return_url="https://platform.example/billing", idempotency_key=key)
    assert link["mode"] == "checkout" and link["checkout_url"].startswith("http")
    assert (link["amount"], link["currency"].lower(), link["credit_amount"]) == (2000, "usd", 2000)
    assert again["id"] == link["id"]  # the same key: the same top-up, not a second one
    stored = await stack.topups.get(uuid.UUID(link["id"]))
    assert stored.status == "awaiting_payment" and stored.stripe_checkout_session_id
