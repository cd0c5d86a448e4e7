"""The portal in headless Chromium (Debian's ``chromium``, driven by Playwright; no browser is
downloaded), against the real stack: the API served by uvicorn, a worker, Temporal's dev server
and localstripe, whose test Stripe.js the page loads. Each backend runs the same tests."""

from __future__ import annotations

import datetime as dt
import uuid

from playwright.async_api import Browser, expect

from tests.portal.conftest import PORTAL_SECRET, Site, open_page, session_url
from tests.services import Stack
from walletflow.db.types import utcnow
from walletflow.portal import tokens


async def test_the_page_renders_the_customers_real_data(stack: Stack, site: Site, browser: Browser) -> None:
    customer = await stack.new_customer()
    expires = (utcnow() + dt.timedelta(days=20)).replace(microsecond=0)
    await stack.ledger.credit(customer, "USD", 5000, f"b-{uuid.uuid4().hex}")
    await stack.ledger.credit(customer, "USD", 1234, f"b-{uuid.uuid4().hex}", source="promotional", expires_at=expires)
    await stack.ledger.debit(customer, "USD", 789, f"b-{uuid.uuid4().hex}")

    page, problems, status = await open_page(browser, await session_url(site, customer))
    try:
        assert status == 200
        await expect(page.locator('tr.balance[data-asset="USD"] td.available')).to_have_text("54.45")
        await expect(page.locator('tr.balance[data-asset="USD"] td.posted')).to_have_text("54.45")
        grant = page.locator("tr.grant", has_text="promotional")
        # the gift expires first, so the usage drew from it first (consumption order): 12.34 - 7.89
        await expect(grant.locator("td.remaining")).to_have_text("4.45")
        await expect(grant.locator("td.of")).to_have_text("12.34")
        await expect(page.locator("tr.grant", has_text="paid").locator("td.remaining")).to_have_text("50.00")
        await expect(grant.locator("td.expires time")).to_have_attribute("datetime", expires.isoformat())
        await expect(page.locator('tr.transaction[data-kind="usage"] td.amount')).to_have_text("-7.89")
        await expect(page.locator("tr.transaction")).to_have_count(3)
        bars = page.locator('svg.spend-chart[data-asset="USD"] rect.bar')
        await expect(bars).to_have_count(30)
        today = page.locator(f'svg.spend-chart rect.bar[data-day="{utcnow().date().isoformat()}"]')
        await expect(today).to_have_attribute("data-amount", "789")
        assert float(await today.get_attribute("height") or 0) > 0
        # localstripe's Stripe.js loaded (under the page's CSP) and mounted its card fields
        await expect(page.locator('#card-element input[placeholder="number"]')).to_have_count(1)
        assert problems == []
    finally:
        await page.close()


async def test_expired_forged_and_foreign_links_are_refused(stack: Stack, site: Site, browser: Browser) -> None:
    customer = await stack.new_customer()
    await stack.ledger.credit(customer, "USD", 4321, f"b-{uuid.uuid4().hex}")
    valid = (await session_url(site, customer)).rsplit("/", 1)[1]
    secret = PORTAL_SECRET.encode()
    expired = tokens.issue(secret, customer, utcnow() - dt.timedelta(seconds=1))
    forged = tokens.issue(b"some-other-secret-" + b"z" * 32, customer, utcnow() + dt.timedelta(minutes=10))
    for token in (expired, forged, valid[:-3] + "abc"):
        page, _, status = await open_page(browser, f"{site.base_url}/portal/{token}")
        try:
            assert status == 403
            await expect(page.locator("h1")).to_have_text("This link is not valid")
            assert "43.21" not in await page.content()
        finally:
            await page.close()
    # Another customer's link shows only that customer.
    other = await stack.new_customer()
    page, _, status = await open_page(browser, await session_url(site, other))
    try:
        assert status == 200
        await expect(page.locator("tr.balance")).to_have_count(0)
        assert "43.21" not in await page.content()
    finally:
        await page.close()


async def test_a_top_up_through_the_page_credits_the_wallet_once(stack: Stack, site: Site, browser: Browser) -> None:
    customer = await stack.new_customer()
    await stack.ledger.credit(customer, "USD", 1000, f"b-{uuid.uuid4().hex}")  # so the wallet shows USD
    page, problems, status = await open_page(browser, await session_url(site, customer))
    try:
        assert status == 200
        await expect(page.locator('tr.balance[data-asset="USD"] td.available')).to_have_text("10.00")
        await page.fill("#topup-amount", "25.00")
        await page.select_option("#topup-asset", "USD")
        card = page.locator("#card-element")
        await card.locator('input[placeholder="number"]').fill("4242424242424242")
        await card.locator('input[placeholder="exp_month"]').fill("12")
        await card.locator('input[placeholder="exp_year"]').fill("34")
        await card.locator('input[placeholder="cvc"]').fill("123")
        await card.locator('input[placeholder="postal_code"]').fill("10001")
        await page.click("#topup-button")
        await expect(page.locator("#topup-status")).to_have_attribute("data-state", "succeeded", timeout=60_000)
        await expect(page.locator('tr.balance[data-asset="USD"] td.available')).to_have_text("35.00")
        assert problems == []
    finally:
        await page.close()

    assert await stack.balance(customer) == 3500
    async with stack.engine.connect() as conn:
        from sqlalchemy import select

        from walletflow.payments import repository as payments_repo

        t = payments_repo.top_ups
        rows = (await conn.execute(select(t.c.id, t.c.status, t.c.amount, t.c.idempotency_key)
                                   .where(t.c.customer_id == customer))).all()
    assert len(rows) == 1
    top_up = rows[0]
    assert (top_up.status, top_up.amount) == ("succeeded", 2500)
    assert top_up.idempotency_key.startswith(f"portal:{customer}:")
    assert await stack.credits_for(top_up.id) == 1
    # The payment really went through Stripe (localstripe): the PaymentIntent succeeded.
    info = await stack.topups.get(top_up.id)
    assert info.stripe_payment_intent_id is not None
    intent = await stack.gateway.retrieve_payment_intent(info.stripe_payment_intent_id)
    assert intent.stripe_status == "succeeded"


async def test_a_declined_card_credits_nothing(stack: Stack, site: Site, browser: Browser) -> None:
    customer = await stack.new_customer()
    await stack.ledger.credit(customer, "USD", 1000, f"b-{uuid.uuid4().hex}")
    page, _, status = await open_page(browser, await session_url(site, customer))
    try:
        assert status == 200
        await page.fill("#topup-amount", "30.00")
        card = page.locator("#card-element")
        await card.locator('input[placeholder="number"]').fill("4000000000000341")  # attaches, declines on charge
        await card.locator('input[placeholder="exp_month"]').fill("12")
        await card.locator('input[placeholder="exp_year"]').fill("34")
        await card.locator('input[placeholder="cvc"]').fill("123")
        await page.click("#topup-button")
        await expect(page.locator("#topup-status")).to_have_attribute("data-state", "error", timeout=30_000)
        await expect(page.locator('tr.balance[data-asset="USD"] td.available')).to_have_text("10.00")
    finally:
        await page.close()
    async with stack.engine.connect() as conn:
        from sqlalchemy import select

        from walletflow.payments import repository as payments_repo

        t = payments_repo.top_ups
        ids = (await conn.execute(select(t.c.id).where(t.c.customer_id == customer))).scalars().all()
    assert len(ids) == 1
    await stack.wait_for(ids[0], "failed", timeout_s=30)  # the decline webhook ends it
    assert await stack.credits_for(ids[0]) == 0
    assert await stack.balance(customer) == 1000


async def test_the_pages_top_up_endpoint_is_idempotent_per_attempt(stack: Stack, site: Site) -> None:
    """A retried request (same key the page made) answers with the same top-up and the same
    client secret; the same key with another amount is a conflict; nothing is paid twice."""
    customer = await stack.new_customer()
    token = (await session_url(site, customer)).rsplit("/", 1)[1]
    body = {"idempotency_key": uuid.uuid4().hex, "asset": "USD", "amount": "12.50"}
    first = await site.http.post(f"/portal/{token}/api/top-ups", json=body, headers={"Authorization": ""})
    assert first.status_code == 201, first.text
    again = await site.http.post(f"/portal/{token}/api/top-ups", json=body, headers={"Authorization": ""})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["client_secret"] == first.json()["client_secret"]
    assert first.json()["amount"] == 1250 and first.json()["client_secret"].startswith("pi_")
    conflict = await site.http.post(f"/portal/{token}/api/top-ups", json={**body, "amount": "13.00"})
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    # Paid once (as Stripe.js would), credited once.
    info = await stack.topups.get(uuid.UUID(first.json()["id"]))
    assert info.stripe_payment_intent_id is not None
    await stack.pay(info.stripe_payment_intent_id)
    await stack.wait_for(info.id, "succeeded")
    assert await stack.credits_for(info.id) == 1
    assert await stack.balance(customer) == 1250
    status = await site.http.get(f"/portal/{token}/api/top-ups/{info.id}")
    assert status.json()["status"] == "succeeded" and status.json()["final"] is True
