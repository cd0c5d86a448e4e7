"""The customer changes their auto-recharge settings in the portal (the recharge module's policy,
its rules and storage), in headless Chromium and over the page's JSON endpoint."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Browser, expect

from tests.portal.conftest import Site, open_page, session_url
from tests.services import Stack
from walletflow.recharge.service import Recharges


async def _policy(stack: Stack, customer: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    """What the platform does first: save the card and the policy with ``PUT /v1/.../auto-recharge``."""
    body = {
        "asset": "USD", "threshold": 1000, "target": 5000, "payment_method_id": await stack.card("4242424242424242"),
        "daily_cap": 20_000, "monthly_cap": 100_000, "enabled": True,
        "consent": {"at": "2026-11-01T09:30:00Z", "method": "checkbox", "text": "Refill my wallet."}, **overrides,
    }
    response = await stack.http.put(f"/v1/customers/{customer}/auto-recharge", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_customer_changes_and_turns_off_auto_recharge_in_the_page(
    stack: Stack, site: Site, browser: Browser
) -> None:
    customer = await stack.new_customer()
    await stack.ledger.credit(customer, "USD", 8000, f"ar-{uuid.uuid4().hex}")  # above the threshold: no charge
    saved = await _policy(stack, customer)
    page, problems, status = await open_page(browser, await session_url(site, customer))
    try:
        assert status == 200
        form = page.locator('form.recharge-form[data-asset="USD"]')
        await expect(form.locator('[name="threshold"]')).to_have_value("10.00")
        await expect(form.locator('[name="target"]')).to_have_value("50.00")
        await expect(form.locator('[name="daily_cap"]')).to_have_value("200.00")
        await expect(form.locator(".recharge-state strong")).to_have_text("on")

        # New amounts, still on, without ticking consent: refused, nothing changed.
        await form.locator('[name="threshold"]').fill("15.00")
        await form.locator('[name="target"]').fill("60.00")
        await form.locator("button").click()
        await expect(form.locator(".recharge-status")).to_have_attribute("data-state", "error")
        await expect(form.locator(".recharge-status")).to_contain_text("agree")
        unchanged = await Recharges(stack.engine).get_policy(customer, "USD")
        assert (unchanged.threshold, unchanged.target, unchanged.consent.method) == (1000, 5000, "checkbox")

        # With consent: saved, with the customer's consent to exactly these amounts.
        await form.locator('[name="consent"]').check()
        await form.locator("button").click()
        await expect(form.locator(".recharge-status")).to_have_attribute("data-state", "saved")
        policy = await Recharges(stack.engine).get_policy(customer, "USD")
        assert (policy.threshold, policy.target, policy.daily_cap, policy.monthly_cap) == (1500, 6000, 20_000, 100_000)
        assert policy.enabled and policy.consent.method == "billing_portal"
        assert "below 15.00 USD" in (policy.consent.text or "") and "back to 60.00 USD" in (policy.consent.text or "")
        assert policy.payment_method_id == saved["payment_method_id"]  # the platform's saved card is kept

        # Off: no consent needed, the consent on record stays.
        await form.locator('[name="enabled"]').uncheck()
        await form.locator('[name="consent"]').uncheck()
        await form.locator("button").click()
        await expect(form.locator(".recharge-status")).to_have_attribute("data-state", "saved")
        await expect(form.locator(".recharge-state strong")).to_have_text("off")
        off = await Recharges(stack.engine).get_policy(customer, "USD")
        assert not off.enabled and off.consent.method == "billing_portal" and off.threshold == 1500
        # The browser logs the refused save (422) as a failed resource; nothing else went wrong.
        assert len(problems) == 1 and "status of 422" in problems[0], problems
    finally:
        await page.close()


async def test_auto_recharge_settings_are_checked_and_scoped_to_the_customer(stack: Stack, site: Site) -> None:
    customer = await stack.new_customer()
    await stack.ledger.credit(customer, "USD", 8000, f"ar-{uuid.uuid4().hex}")
    await _policy(stack, customer)
    token = (await session_url(site, customer)).rsplit("/", 1)[1]
    good = {"asset": "USD", "threshold": "10.00", "target": "50.00", "daily_cap": "200.00", "monthly_cap": "1000.00",
            "enabled": True, "consent": True}
    for bad in ({"target": "5.00"}, {"threshold": "-1"}, {"daily_cap": "2000.00"}, {"target": "1.001"},
                {"consent": False}, {"asset": "usd"}, {"monthly_cap": "lots"}):
        response = await site.http.put(f"/portal/{token}/api/auto-recharge", json={**good, **bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["code"] == "validation_error"
    policy = await Recharges(stack.engine).get_policy(customer, "USD")
    assert (policy.threshold, policy.target, policy.consent.method) == (1000, 5000, "checkbox")

    # Another customer's link changes nothing here: that customer has no policy to change.
    other = await stack.new_customer()
    other_token = (await session_url(site, other)).rsplit("/", 1)[1]
    response = await site.http.put(f"/portal/{other_token}/api/auto-recharge", json=good)
    assert response.status_code == 404
    assert (await Recharges(stack.engine).get_policy(customer, "USD")).threshold == 1000
    page = await site.http.get(f"/portal/{other_token}")
    assert 'id="no-auto-recharge"' in page.text and "recharge-form" not in page.text
    # A forged link is refused before anything is read.
    forged = await site.http.put(f"/portal/{token[:-2]}xx/api/auto-recharge", json=good)
    assert forged.status_code == 403
