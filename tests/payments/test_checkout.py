"""Top-ups in mode ``checkout``: Stripe's hosted Checkout page instead of an embedded form.

localstripe has no Checkout Sessions; walletflow/devtools/localstripe.py adds them with Stripe's shape
(the PaymentIntent appears only once the customer pays), and the test-only
``POST /_test/checkout/sessions/{id}/complete`` plays the customer paying on the hosted page.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.services import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

RETURN_URL = "https://platform.example/wallet?topup=done"


async def start_checkout(stack: Stack, customer: uuid.UUID, amount: int, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
    body = {"idempotency_key": f"co-{uuid.uuid4().hex}", "customer_id": str(customer), "amount": amount,
            "currency": "usd", "mode": "checkout", "return_url": RETURN_URL}
    response = await (http or stack.http).post("/v1/top-ups", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def customer_pays(stack: Stack, session_id: str, payment_method: str = "pm_card_visa") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.settings.stripe_api_base or "") as http:
        response = await http.post(f"/_test/checkout/sessions/{session_id}/complete",
                                   data={"payment_method": payment_method},
                                   headers={"Authorization": f"Bearer {stack.settings.stripe_api_key}"})
        response.raise_for_status()
        return response.json()


async def test_checkout_top_up_is_paid_on_the_hosted_page_and_credited_once(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start_checkout(stack, customer, 4500)
    assert top_up["mode"] == "checkout" and top_up["status"] == "awaiting_payment"
    assert top_up["checkout_url"].startswith("https://") and top_up["client_secret"] is None
    assert top_up["payment_intent_id"] is None  # Stripe creates it when the customer pays

    session = await stack.gateway.retrieve_checkout_session(top_up["checkout_session_id"])
    assert session.status == "open" and session.metadata["walletflow_top_up_id"] == top_up["id"]
    paid = await customer_pays(stack, top_up["checkout_session_id"])
    assert paid["status"] == "complete"

    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded")
    assert done.status == "succeeded"
    assert done.stripe_payment_intent_id == paid["payment_intent"]
    assert await stack.balance(customer) == 4500
    assert await stack.credits_for(top_up["id"]) == 1
    progress = await stack.client.get_workflow_handle(top_up["workflow_id"]).result()
    assert progress["learned_via"] == "webhook" and progress["payment_intent_id"] == paid["payment_intent"]


async def test_an_unpaid_checkout_expires_at_the_deadline_and_can_take_no_money(stack: Stack) -> None:
    customer = await stack.new_customer()
    async with stack.http_for(stack.app_with(topup_payment_deadline_s=2, topup_poll_interval_s=1)) as http:
        top_up = await start_checkout(stack, customer, 700, http=http)
    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded", timeout_s=20)
    assert done.status == "failed" and done.reason == "payment_deadline"
    session = await stack.gateway.retrieve_checkout_session(top_up["checkout_session_id"])
    assert session.status == "expired"
    with pytest.raises(httpx.HTTPStatusError):
        await customer_pays(stack, top_up["checkout_session_id"])  # the page is closed
    assert await stack.balance(customer) == 0


async def test_polling_finds_a_checkout_payment_without_webhooks(stack: Stack) -> None:
    customer = await stack.new_customer()
    stack.switchboard.target = None  # the webhook endpoint answers 503
    try:
        async with stack.http_for(stack.app_with(topup_poll_interval_s=1)) as http:
            top_up = await start_checkout(stack, customer, 1300, http=http)
        await customer_pays(stack, top_up["checkout_session_id"])
        done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded", timeout_s=20)
    finally:
        stack.switchboard.target = stack.app
    assert done.status == "succeeded"
    assert (await stack.client.get_workflow_handle(top_up["workflow_id"]).result())["learned_via"] == "poll"
    assert await stack.balance(customer) == 1300


async def test_the_same_checkout_request_twice_is_one_session(stack: Stack) -> None:
    customer = await stack.new_customer()
    body = {"idempotency_key": f"co-{uuid.uuid4().hex}", "customer_id": str(customer), "amount": 800,
            "currency": "usd", "mode": "checkout", "return_url": RETURN_URL}
    first = (await stack.http.post("/v1/top-ups", json=body)).json()
    second = (await stack.http.post("/v1/top-ups", json=body)).json()
    assert first["id"] == second["id"] and first["checkout_session_id"] == second["checkout_session_id"]
    other_url = await stack.http.post("/v1/top-ups", json={**body, "return_url": "https://elsewhere.example"})
    assert other_url.status_code == 409 and other_url.json()["code"] == "idempotency_conflict"
