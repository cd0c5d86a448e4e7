"""End to end over stdio: the SDK's client spawns ``walletflow mcp`` and sets up billing."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from mcp import ClientSession
from mcp.client.stdio import stdio_client

from tests.client.conftest import LiveApi
from tests.mcp_server.helpers import call, call_error, stdio_params
from walletflow.client import AsyncWalletflow

EXPECTED_TOOLS = {
    "list_assets", "create_asset", "add_asset_rate", "list_products", "create_product", "list_price_versions",
    "create_price_version", "simulate_prices", "publish_price_version", "create_customer", "find_customer",
    "get_wallet", "post_adjustment", "create_top_up_link", "margin_report",
}
#: Parameter names that hold an amount of money: their description must say it is in minor units.
AMOUNT = re.compile(r"(^|_)(amount|amounts)$")


def _properties(schema: dict, defs: dict) -> list[tuple[str, dict]]:
    """Every (name, schema) of the parameters, nested models (price specs, tiers) included."""
    found: list[tuple[str, dict]] = []
    for name, prop in schema.get("properties", {}).items():
        found.append((name, prop))
    for model in defs.values():
        for name, prop in model.get("properties", {}).items():
            found.append((name, prop))
    return found


async def test_the_tools_explain_themselves_to_an_assistant_that_never_saw_walletflow(live_api: LiveApi) -> None:
    async with stdio_client(stdio_params(live_api.url, live_api.admin_key)) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
    assert {t.name for t in tools} == EXPECTED_TOOLS
    for tool in tools:
        description = tool.description or ""
        # At least one whole sentence that says what the tool does, and what it returns.
        assert len(description) >= 60 and re.search(r"[a-z]\.(\s|$)", description), tool.name
        assert "Returns" in description, f"{tool.name} does not say what it returns"
        params = _properties(tool.input_schema, tool.input_schema.get("$defs", {}))
        for name, prop in params:
            text = prop.get("description", "")
            assert len(text) >= 10, f"{tool.name}.{name} has no description"
            if AMOUNT.search(name):
                assert "minor unit" in text, f"{tool.name}.{name} does not say amounts are in minor units"
    # The money-moving tools make the assistant choose an idempotency key.
    by_name = {t.name: t for t in tools}
    for name in ("post_adjustment", "create_top_up_link"):
        assert "idempotency_key" in by_name[name].input_schema["required"]
    assert "minor unit" in (by_name["get_wallet"].description or "")
    # Hints an assistant's client uses to decide what needs the user's confirmation.
    for name in ("list_assets", "list_products", "get_wallet", "simulate_prices", "margin_report", "find_customer"):
        assert by_name[name].annotations is not None and by_name[name].annotations.read_only_hint is True, name
    for name in ("post_adjustment", "create_top_up_link", "create_price_version", "publish_price_version"):
        assert by_name[name].annotations is not None and by_name[name].annotations.read_only_hint is False, name


async def test_an_assistant_prices_a_product_and_funds_a_customer(live_api: LiveApi) -> None:
    asset = f"M{uuid.uuid4().hex[:8].upper()}"
    product = f"chat-{uuid.uuid4().hex[:8]}"
    event_type = f"llm.{uuid.uuid4().hex[:8]}"
    async with stdio_client(stdio_params(live_api.url, live_api.admin_key)) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()

        created = await call(session, "create_asset", code=asset, name="Test dollars", scale=2, kind="fiat")
        assert created["code"] == asset
        assets = await call(session, "list_assets")
        assert asset in [a["code"] for a in assets["data"]] or assets["next_cursor"]

        assert (await call(session, "create_product", code=product, name="Chat API"))["code"] == product
        assert product in [p["code"] for p in (await call(session, "list_products"))["data"]]
        version = await call(session, "create_price_version", product_code=product, prices=[
            {"event_type": event_type, "asset": asset, "model": "package", "quantity_field": "input_tokens",
             "package_size": 1_000_000, "unit_price": "250", "dimensions": {"model": "*"}},
            {"event_type": event_type, "asset": asset, "model": "tiered", "quantity_field": "images",
             "tiers": [{"up_to": 10, "unit_price": "5"}, {"up_to": None, "unit_price": "3", "flat_amount": 100}]},
        ])
        assert (version["status"], version["version"]) == ("draft", 1)

        simulated = await call(session, "simulate_prices", product_code=product, version=1, events=[
            {"event_type": event_type, "data": {"model": "gpt-4o", "input_tokens": 120_000, "images": 12}},
        ])
        # 120k tokens at 250 per 1M = 30; 10 images at 5 + 2 at 3 + 100 flat = 156; total 186.
        [fee] = simulated["fees"]
        assert (fee["status"], fee["asset"], fee["amount"]) == ("priced", asset, 186)

        published = await call(session, "publish_price_version", product_code=product, version=1)
        assert published["status"] == "published"
        assert [v["status"] for v in (await call(session, "list_price_versions", product_code=product))["data"]] \
            == ["published"]

        external = f"acme-{uuid.uuid4().hex}"
        customer = await call(session, "create_customer", external_id=external, email="billing@acme.com")
        assert (await call(session, "find_customer", external_id=external))["customer"]["id"] == customer["id"]
        credit = await call(session, "post_adjustment", customer_id=customer["id"], asset=asset, amount=2000,
                            reason="external_topup", idempotency_key=f"pi-{external}")
        assert (credit["amount"], credit["replayed"]) == (2000, False)
        again = await call(session, "post_adjustment", customer_id=customer["id"], asset=asset, amount=2000,
                           reason="external_topup", idempotency_key=f"pi-{external}")
        assert again["replayed"] is True and again["transaction_id"] == credit["transaction_id"]

        wallet = await call(session, "get_wallet", customer_id=customer["id"])
        [account] = [a for a in wallet["accounts"] if a["asset"] == asset]
        assert (account["posted"], account["available"]) == (2000, 2000)

        # The published price really charges usage (sent by the platform, not the assistant).
        async with AsyncWalletflow(live_api.url, live_api.admin_key) as wf:
            now = dt.datetime.now(dt.UTC)
            [result] = await wf.ingest_events([{
                "id": f"evt-{external}", "customer_id": customer["id"], "event_type": event_type, "occurred_at": now,
                "data": {"model": "gpt-4o", "input_tokens": 120_000, "images": 12},
                "costs": [{"vendor": "openai", "asset": asset, "amount": 86}],
            }])
        assert (result.status, result.amount) == ("debited", 186)
        wallet = await call(session, "get_wallet", customer_id=customer["id"])
        assert [a["posted"] for a in wallet["accounts"] if a["asset"] == asset] == [1814]

        report = await call(session, "margin_report", from_time=(now - dt.timedelta(minutes=5)).isoformat(),
                            to_time=(now + dt.timedelta(minutes=5)).isoformat(), group_by="customer",
                            currency=asset)
        row = next(r for r in report["data"] if r["key"] == customer["id"])
        assert (row["revenue"], row["cost"], row["margin"]) == (186, 86, 100)

        # Errors come back as tool errors that name the problem's code and say why.
        missing = await call_error(session, "publish_price_version", product_code=product, version=7)
        assert "not_found (HTTP 404)" in missing and "version 7" in missing
        short = await call_error(session, "post_adjustment", customer_id=customer["id"], asset=asset,
                                 amount=-5000, reason="external_refund", idempotency_key=f"refund-{external}")
        assert "insufficient_funds (HTTP 402)" in short
        bad = await call_error(session, "create_price_version", product_code=product, prices=[
            {"event_type": event_type, "asset": asset, "model": "per_unit"}])
        assert "validation_error (HTTP 422)" in bad and "unit_price" in bad
        conflict = await call_error(session, "post_adjustment", customer_id=customer["id"], asset=asset,
                                    amount=2001, reason="external_topup", idempotency_key=f"pi-{external}")
        assert "idempotency_conflict (HTTP 409)" in conflict
        wallet = await call(session, "get_wallet", customer_id=customer["id"])
        assert [a["posted"] for a in wallet["accounts"] if a["asset"] == asset] == [1814]  # nothing moved


async def test_stdio_refuses_to_start_without_a_key(live_api: LiveApi) -> None:
    import asyncio
    import subprocess
    import sys

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "walletflow.cli", "mcp", "--transport", "stdio"],
        env={"PATH": "/usr/bin:/bin", "WALLETFLOW_MCP_API_URL": live_api.url, "WALLETFLOW_MCP_API_KEY": ""},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
    )
    assert done.returncode != 0 and "WALLETFLOW_MCP_API_KEY" in done.stderr
