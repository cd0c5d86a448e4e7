"""``walletflow recharge set|show|disable`` as separate processes, configured only through
WALLETFLOW_* variables, driving the same stack as the API."""

from __future__ import annotations

import pytest

from tests.payments.test_cli_topups import walletflow
from tests.recharge.helpers import funded_customer, settled_charges
from tests.services import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_cli_sets_shows_and_disables_a_policy(stack: Stack) -> None:
    customer = await funded_customer(stack, 300)  # already under the threshold
    card = await stack.card("4242424242424242")
    saved = await walletflow(
        stack, "recharge", "set", "--customer-id", str(customer), "--asset", "USD", "--threshold", "1000",
        "--target", "4000", "--payment-method", card, "--daily-cap", "10000", "--monthly-cap", "20000",
        "--consent-method", "signed_terms", "--consent-at", "2026-11-02T08:00:00+00:00",
        "--consent-text", "I agree to automatic refills.",
    )
    assert (saved["enabled"], saved["threshold"], saved["target"]) == (True, 1000, 4000)
    assert saved["consent"]["method"] == "signed_terms"
    assert saved["consent"]["at"].startswith("2026-11-02 08:00:00")
    [charge] = await settled_charges(stack, customer, 1)
    assert (charge.status, charge.amount) == ("succeeded", 3700)

    shown = await walletflow(stack, "recharge", "show", str(customer))
    assert [p["asset"] for p in shown] == ["USD"] and shown[0]["last_charge_at"] is not None
    disabled = await walletflow(stack, "recharge", "disable", str(customer), "--asset", "USD")
    assert disabled["enabled"] is False
    api_view = (await stack.http.get(f"/v1/customers/{customer}/auto-recharge/USD")).json()
    assert api_view["enabled"] is False and api_view["disabled_reason"] is None
