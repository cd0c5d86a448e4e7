"""walletflow.client against the real API (uvicorn over each backend's database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio

from tests.client.conftest import LiveApi
from walletflow.client import (
    AlreadyExists,
    AsyncWalletflow,
    AuthenticationError,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    PermissionDenied,
    ValidationError,
    Walletflow,
    WalletflowConnectionError,
    WalletFrozen,
)
from walletflow.client.models import Page


def code(prefix: str = "C") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


@pytest_asyncio.fixture(loop_scope="session")
async def wf(live_api: LiveApi) -> AsyncIterator[AsyncWalletflow]:
    async with AsyncWalletflow(live_api.url, live_api.admin_key, timeout=10) as client:
        yield client


async def new_customer(wf: AsyncWalletflow) -> uuid.UUID:
    return (await wf.create_customer(f"acme-{uuid.uuid4().hex}")).id


async def test_assets_rates_and_products_page_through_every_item(wf: AsyncWalletflow) -> None:
    prefix = code("P")[:6]
    created = sorted(f"{prefix}{i}" for i in range(5))
    for asset in created:
        made = await wf.create_asset(asset, f"Credits {asset}", 0, "custom")
        assert (made.code, made.scale, made.kind) == (asset, 0, "custom")
    again = await wf.create_asset(created[0], f"Credits {created[0]}", 0, "custom")  # identical: a no-op
    assert again.code == created[0]
    with pytest.raises(AlreadyExists) as exc:
        await wf.create_asset(created[0], "something else", 2, "custom")
    assert exc.value.status == 409 and exc.value.code == "already_exists"

    first = await wf.list_assets(limit=2)
    assert isinstance(first, Page) and len(first.data) == 2 and first.next_cursor
    every = [a.code async for a in wf.paginate(wf.list_assets, limit=2)]
    assert every == sorted(every) and len(every) == len(set(every))
    assert [c for c in every if c.startswith(prefix)] == created

    fiat = code("F")
    await wf.create_asset(fiat, "Fiat", 2, "fiat")
    rate = await wf.add_asset_rate(created[0], fiat, Decimal("0.002"), valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert (rate.asset, rate.currency, rate.rate) == (created[0], fiat, "0.002")
    assert [r.rate for r in await wf.list_asset_rates(created[0])] == ["0.002"]
    assert (await wf.get_asset(created[1])).name == f"Credits {created[1]}"

    products = [code("p").lower() for _ in range(3)]
    for product in products:
        await wf.create_product(product, product.upper())
    listed = [p.code async for p in wf.paginate(wf.list_products, limit=1)]
    assert set(products) <= set(listed) and listed == sorted(listed)
    assert (await wf.get_product(products[0])).name == products[0].upper()


async def test_customers_wallets_history_and_grants(wf: AsyncWalletflow) -> None:
    asset = code("U")
    await wf.create_asset(asset, "Test dollars", 2, "fiat")
    external = f"acme-{uuid.uuid4().hex}"
    customer = await wf.create_customer(external, name="Acme", email="billing@acme.com", metadata={"plan": "pro"})
    assert customer.external_id == external and customer.metadata == {"plan": "pro"}
    assert (await wf.get_customer(customer.id)).email == "billing@acme.com"
    found = await wf.find_customer(external)
    assert found is not None and found.id == customer.id
    assert await wf.find_customer(f"nobody-{uuid.uuid4().hex}") is None

    for i in range(5):
        await wf.create_adjustment(customer.id, asset, 1000 + i, "external_topup", idempotency_key=f"{external}-{i}")
    gift = await wf.create_adjustment(customer.id, asset, 500, "gift", idempotency_key=f"{external}-gift",
                                      expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC), priority=5)
    assert gift.grant_id is not None and not gift.replayed
    wallet = await wf.get_wallet(customer.id)
    assert wallet.account(asset).posted == sum(1000 + i for i in range(5)) + 500
    assert wallet.account("NOPE").available == 0

    history = [t async for t in wf.paginate(wf.list_transactions, customer.id, limit=2)]
    assert len(history) == 6 and sum(t.amount for t in history) == wallet.account(asset).posted
    assert history[0].idempotency_key == f"{external}-gift"  # newest first
    grants = await wf.list_grants(customer.id)
    assert sorted(g.source for g in grants) == ["paid"] * 5 + ["promotional"]

    patched = await wf.update_customer(customer.id, insufficient_balance="overdraft", overdraft_limit=300)
    assert (patched.insufficient_balance, patched.overdraft_limit, patched.name) == ("overdraft", 300, "Acme")
    assert (await wf.freeze_customer(customer.id)).status == "frozen"
    with pytest.raises(WalletFrozen) as frozen:
        await wf.create_authorization(customer.id, asset, 100)
    assert frozen.value.status == 409 and frozen.value.code == "wallet_frozen"
    assert (await wf.unfreeze_customer(customer.id)).status == "active"


async def test_pricing_usage_and_margins(wf: AsyncWalletflow) -> None:
    asset = code("U")
    await wf.create_asset(asset, "Test dollars", 2, "fiat")
    product = code("chat").lower()
    event_type = f"llm.{uuid.uuid4().hex[:8]}"
    await wf.create_product(product, "Chat")
    draft = await wf.create_price_version(product, [
        {"event_type": event_type, "asset": asset, "model": "package", "quantity_field": "input_tokens",
         "package_size": 1_000_000, "unit_price": "250", "dimensions": {"model": "*"}},
        {"event_type": event_type, "asset": asset, "model": "package", "quantity_field": "output_tokens",
         "package_size": 1_000_000, "unit_price": Decimal(1000), "dimensions": {"model": "*"}},
    ])
    assert (draft.status, draft.version) == ("draft", 1)
    assert draft.prices[1]["unit_price"] == "1000"
    data = {"model": "gpt-4o", "input_tokens": 120_000, "output_tokens": 30_000}
    [fee] = await wf.simulate(product, 1, [{"event_type": event_type, "data": data}])
    assert (fee.status, fee.asset, fee.amount) == ("priced", asset, 60)
    assert [c.exact_amount for c in fee.components] == ["30", "30"]
    assert (await wf.publish_price_version(product, 1)).status == "published"
    assert [v.status for v in await wf.list_price_versions(product)] == ["published"]
    assert (await wf.get_price_version(product, 1)).published_at is not None

    customer = await new_customer(wf)
    await wf.subscribe(customer, product, 1)
    await wf.create_adjustment(customer, asset, 2000, "external_topup")
    now = dt.datetime.now(dt.UTC)
    event = {"id": f"evt-{uuid.uuid4().hex}", "customer_id": customer, "event_type": event_type, "occurred_at": now,
             "data": data, "costs": [{"vendor": "openai", "asset": asset, "amount": 40}]}
    [result] = await wf.ingest_events([event])
    assert (result.status, result.amount, result.asset) == ("debited", 60, asset)
    [again] = await wf.ingest_events([event])
    assert (again.status, again.transaction_id) == ("duplicate", result.transaction_id)
    assert (await wf.get_wallet(customer)).account(asset).posted == 1940

    report = await wf.margin_report(now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=5),
                                    group_by="customer", currency=asset)
    row = next(r for r in report.data if r.key == str(customer))
    assert (row.revenue, row.cost, row.margin) == (60, 40, 20)
    assert report.currency == asset and report.from_ < report.to


async def test_authorizations_hold_capture_and_void(wf: AsyncWalletflow) -> None:
    asset = code("U")
    await wf.create_asset(asset, "Test dollars", 2, "fiat")
    customer = await new_customer(wf)
    await wf.create_adjustment(customer, asset, 1000, "external_topup")
    hold = await wf.create_authorization(customer, asset, 500, expires_in_s=600)
    assert hold.status == "pending" and hold.idempotency_key.startswith("wf-")
    assert (await wf.get_wallet(customer)).account(asset).held == 500
    captured = await wf.capture_authorization(hold.id, 320)
    assert (captured.status, captured.captured_amount) == ("captured", 320)
    assert (await wf.get_authorization(hold.id)).status == "captured"
    other = await wf.create_authorization(customer, asset, 100)
    assert (await wf.void_authorization(other.id)).status == "voided"
    assert (await wf.void_authorization(other.id)).status == "voided"  # voiding again changes nothing
    with pytest.raises(HoldNotPending) as not_pending:
        await wf.capture_authorization(other.id, 50)
    assert (not_pending.value.status, not_pending.value.code) == (409, "hold_not_pending")
    account = (await wf.get_wallet(customer)).account(asset)
    assert (account.posted, account.held, account.available) == (680, 0, 680)


async def test_problems_become_typed_errors(wf: AsyncWalletflow, live_api: LiveApi) -> None:
    asset = code("U")
    await wf.create_asset(asset, "Test dollars", 2, "fiat")
    customer = await new_customer(wf)

    with pytest.raises(NotFound) as missing:
        await wf.get_customer(uuid.uuid4())
    assert (missing.value.status, missing.value.code) == (404, "not_found") and "not found" in missing.value.detail

    await wf.create_adjustment(customer, asset, 700, "external_topup", idempotency_key="same-key-" + str(customer))
    with pytest.raises(IdempotencyConflict) as conflict:
        await wf.create_adjustment(customer, asset, 701, "external_topup", idempotency_key="same-key-" + str(customer))
    assert (conflict.value.status, conflict.value.code) == (409, "idempotency_conflict")

    with pytest.raises(InsufficientFunds) as short:
        await wf.create_authorization(customer, asset, 701)
    assert (short.value.status, short.value.code) == (402, "insufficient_funds")

    with pytest.raises(ValidationError) as bad:
        await wf.create_asset("lower-case", "x", 2, "fiat")
    assert (bad.value.status, bad.value.code) == (422, "validation_error") and bad.value.detail
    with pytest.raises(ValidationError) as bad_price:
        await wf.create_price_version("any", [{"event_type": "x", "asset": asset, "model": "per_unit"}])
    assert "unit_price" in bad_price.value.detail and bad_price.value.body["errors"]

    async with AsyncWalletflow(live_api.url, "wf_not_a_key") as stranger:
        with pytest.raises(AuthenticationError) as unauthorized:
            await stranger.list_assets()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    async with AsyncWalletflow(live_api.url, live_api.read_key) as reader:
        assert (await reader.get_wallet(customer)).account(asset).posted == 700
        with pytest.raises(PermissionDenied) as forbidden:
            await reader.create_asset(code("U"), "x", 2, "fiat")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    # Nothing was written by the refused calls.
    assert (await wf.get_wallet(customer)).account(asset).posted == 700


class LoseFirstAnswer(httpx.AsyncBaseTransport):
    """Delivers each request to the server, but the first answer is lost (a read timeout):
    exactly the case where the caller cannot know whether money moved."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if len(self.sent) == 1:
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


async def test_a_retry_after_a_lost_answer_reuses_the_key_and_moves_money_once(
    wf: AsyncWalletflow, live_api: LiveApi
) -> None:
    asset = code("U")
    await wf.create_asset(asset, "Test dollars", 2, "fiat")
    customer = await new_customer(wf)
    transport = LoseFirstAnswer(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as http:
        flaky = AsyncWalletflow(live_api.url, live_api.admin_key, http=http)
        credit = await flaky.create_adjustment(customer, asset, 1500, "external_topup")  # no key given
    assert len(transport.sent) == 2
    keys = {__import__("json").loads(r.content)["idempotency_key"] for r in transport.sent}
    assert keys == {credit.idempotency_key} and credit.replayed  # the retry got the original answer
    assert (await wf.get_wallet(customer)).account(asset).posted == 1500

    # Two calls without a key are two operations: each gets its own fresh key.
    first = await wf.create_adjustment(customer, asset, 100, "gift")
    second = await wf.create_adjustment(customer, asset, 100, "gift")
    assert first.idempotency_key != second.idempotency_key and not second.replayed
    assert (await wf.get_wallet(customer)).account(asset).posted == 1700

    # A create that is not idempotent is not resent after a lost answer: the caller decides.
    product = code("p").lower()
    await wf.create_product(product, "P")
    transport = LoseFirstAnswer(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as http:
        flaky = AsyncWalletflow(live_api.url, live_api.admin_key, http=http)
        with pytest.raises(WalletflowConnectionError):
            await flaky.create_price_version(product, [{"event_type": f"e.{product}", "asset": asset,
                                                        "model": "per_unit", "unit_price": "1"}])
    assert len(transport.sent) == 1 and len(await wf.list_price_versions(product)) == 1


async def test_webhook_endpoints_and_their_delivery_log(wf: AsyncWalletflow) -> None:
    endpoint = await wf.create_webhook_endpoint("https://platform.example/hooks", ["top_up.succeeded"],
                                                description="billing")
    assert endpoint.secret and endpoint.secret.startswith("whsec_") and endpoint.enabled
    read = await wf.get_webhook_endpoint(endpoint.id)
    assert read.secret is None and read.events == ["top_up.succeeded"]
    assert endpoint.id in [e.id async for e in wf.paginate(wf.list_webhook_endpoints, limit=1)]
    deliveries = await wf.list_webhook_deliveries(endpoint.id, status="failed")
    assert deliveries.data == [] and deliveries.next_cursor is None
    assert not (await wf.disable_webhook_endpoint(endpoint.id)).enabled
    assert (await wf.enable_webhook_endpoint(endpoint.id)).enabled
    rotated = await wf.rotate_webhook_secret(endpoint.id)
    assert rotated.secret and rotated.secret != endpoint.secret
    with pytest.raises(ValidationError):
        await wf.create_webhook_endpoint("ftp://nope", ["top_up.succeeded"])
    with pytest.raises(NotFound):
        await wf.retry_webhook_delivery(endpoint.id, uuid.uuid4())


async def test_the_sync_client(live_api: LiveApi) -> None:
    asset = code("U")

    def work() -> tuple[int, list[str], str]:
        with Walletflow(live_api.url, live_api.admin_key, timeout=10) as wf:
            wf.create_asset(asset, "Test dollars", 2, "fiat")
            customer = wf.create_customer(f"sync-{uuid.uuid4().hex}")
            for i in range(3):
                wf.create_adjustment(customer.id, asset, 100 * (i + 1), "external_topup")
            history = [t.kind for t in wf.paginate(wf.list_transactions, customer.id, limit=1)]
            try:
                wf.get_top_up(uuid.uuid4())
            except NotFound as exc:
                error = exc.code
            return wf.get_wallet(customer.id).account(asset).posted, history, error

    # The server runs on this event loop: the blocking client must run on another thread.
    posted, history, error = await asyncio.to_thread(work)
    assert (posted, history, error) == (600, ["adjustment"] * 3, "not_found")
