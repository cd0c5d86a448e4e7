"""Top-ups end to end: API -> Temporal workflow -> localstripe -> webhook -> risk -> ledger."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid

import pytest

from tests.services import Stack, free_port, start
from walletflow.payments import repository
from workflows.topup import TopUpWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _decoded(node: object) -> str:
    """All of a workflow history as text, with every payload's base64 ``data`` decoded."""
    if isinstance(node, dict):
        parts = [_decoded(v) for v in node.values()]
        data = node.get("data")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):
                parts.append(base64.b64decode(data).decode("utf-8", "replace"))
        return "\n".join(parts)
    if isinstance(node, list):
        return "\n".join(_decoded(v) for v in node)
    return str(node)


async def test_paid_top_up_is_credited_exactly_once_via_the_webhook(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 2500)
    assert top_up["status"] == "awaiting_payment"
    assert top_up["client_secret"] and top_up["payment_intent_id"]
    assert top_up["workflow_id"] == f"topup-{top_up['id']}"

    await stack.pay(top_up["payment_intent_id"])
    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded")

    assert done.status == "succeeded"
    assert done.risk_decision == "approve"
    assert await stack.balance(customer) == 2500
    assert await stack.credits_for(top_up["id"]) == 1
    progress = await stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"]).result()
    assert progress.learned_via == "webhook" and progress.webhook_signals >= 1
    grants = await stack.ledger.grants(customer)
    assert [(g.source, g.amount) for g in grants] == [("paid", 2500)]
    assert await stack.events(customer) == ["top_up.succeeded"]  # told to the platform, once

    fetched = (await stack.http.get(f"/v1/top-ups/{top_up['id']}")).json()
    assert fetched["status"] == "succeeded" and fetched["credit_transaction_id"] == str(done.credit_transaction_id)
    assert fetched["client_secret"] is None  # only the answer to POST carries it

    # Operators find a customer's money movements in the Temporal UI by this search attribute
    # (visibility is eventually consistent, hence the short wait).
    query = f'WalletflowCustomerId="{customer}"'
    found: list[str] = []
    for _ in range(50):
        found = [wf.id async for wf in stack.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [top_up["workflow_id"]]

    # No secret ever reaches workflow history: not the PaymentIntent's client secret, nor keys.
    history = await stack.client.get_workflow_handle(top_up["workflow_id"]).fetch_history()
    recorded = _decoded(json.loads(history.to_json()))
    assert top_up["payment_intent_id"] in recorded  # the payloads were read: the payment is there
    for secret in (top_up["client_secret"], stack.settings.stripe_api_key, stack.admin_key):
        assert secret not in recorded


async def test_the_same_request_twice_is_one_top_up_and_one_payment(stack: Stack) -> None:
    customer = await stack.new_customer()
    key = f"tu-{uuid.uuid4().hex}"
    first = await start(stack, customer, 1200, key)
    again = await start(stack, customer, 1200, key)
    assert again["id"] == first["id"]
    assert again["payment_intent_id"] == first["payment_intent_id"]
    assert again["client_secret"] == first["client_secret"]

    conflict = await stack.http.post(
        "/v1/top-ups",
        json={"idempotency_key": key, "customer_id": str(customer), "amount": 1300, "currency": "usd"},
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    # Cancel the unpaid payment so the workflow ends instead of waiting for its deadline.
    handle = stack.client.get_workflow_handle(first["workflow_id"])
    await handle.terminate("test done")


async def test_declined_card_fails_the_top_up_and_credits_nothing(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 1800)
    declining = await stack.card("4000000000000341")  # attaches, then declines when charged
    with pytest.raises(Exception, match="declined"):
        await stack.pay(top_up["payment_intent_id"], declining)

    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded")
    assert done.status == "failed" and done.reason == "card_declined"
    assert await stack.events(customer) == ["top_up.failed"]
    assert await stack.balance(customer) == 0
    assert await stack.credits_for(top_up["id"]) == 0
    # Cancelled, so no later attempt on this PaymentIntent can take money the top-up ignores.
    intent = await stack.gateway.retrieve_payment_intent(top_up["payment_intent_id"])
    assert intent.stripe_status == "canceled"


async def test_no_payment_before_the_deadline_cancels_the_payment_intent(stack: Stack) -> None:
    customer = await stack.new_customer()
    async with stack.http_for(stack.app_with(topup_payment_deadline_s=2, topup_poll_interval_s=1)) as http:
        top_up = await start(stack, customer, 900, http=http)

    done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded", timeout_s=20)
    assert done.status == "failed" and done.reason == "payment_deadline"
    intent = await stack.gateway.retrieve_payment_intent(top_up["payment_intent_id"])
    assert intent.stripe_status == "canceled"
    assert await stack.balance(customer) == 0


async def test_polling_finds_the_payment_when_no_webhook_arrives(stack: Stack) -> None:
    customer = await stack.new_customer()
    stack.switchboard.target = None  # the endpoint answers 503: no event reaches walletflow
    try:
        async with stack.http_for(stack.app_with(topup_poll_interval_s=1)) as http:
            top_up = await start(stack, customer, 700, http=http)
        await stack.pay(top_up["payment_intent_id"])
        done = await stack.wait_for(top_up["id"], "succeeded", "failed", "refunded")
        progress = await stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"]).result()
    finally:
        stack.switchboard.target = stack.app
    assert done.status == "succeeded"
    assert progress.learned_via == "poll" and progress.webhook_signals == 0
    assert await stack.balance(customer) == 700
    assert await stack.credits_for(top_up["id"]) == 1


async def test_review_approved_by_an_operator_is_credited(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 60_000)  # over the review amount (50_000)
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "in_review")

    queue = (await stack.http.get("/v1/reviews", params={"limit": 500})).json()
    assert top_up["id"] in [t["id"] for t in queue["data"]]
    listed = next(t for t in queue["data"] if t["id"] == top_up["id"])
    assert listed["risk"]["decision"] == "review" and "amount_over_review_limit" in listed["risk"]["reasons"]
    assert await stack.balance(customer) == 0  # nothing before the decision

    approved = await stack.http.post(f"/v1/reviews/{top_up['id']}/approve", json={"note": "known customer"})
    assert approved.status_code == 202, approved.text
    done = await stack.wait_for(top_up["id"], "succeeded", "refunded", "failed")
    assert done.status == "succeeded"
    assert await stack.balance(customer) == 60_000
    assert await stack.credits_for(top_up["id"]) == 1
    progress = await stack.client.get_workflow_handle_for(TopUpWorkflow.run, top_up["workflow_id"]).result()
    assert progress.review_note == "known customer"
    assert await stack.events(customer) == ["review.required", "top_up.succeeded"]

    again = await stack.http.post(f"/v1/reviews/{top_up['id']}/approve")
    assert again.status_code == 409 and again.json()["code"] == "top_up_not_in_review"


async def test_review_rejected_by_an_operator_is_refunded_through_stripe(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 70_000)
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "in_review")

    rejected = await stack.http.post(f"/v1/reviews/{top_up['id']}/reject")
    assert rejected.status_code == 202, rejected.text
    done = await stack.wait_for(top_up["id"], "succeeded", "refunded", "failed")
    assert done.status == "refunded" and done.reason == "review_rejected"
    assert done.credit_transaction_id is None and done.stripe_refund_id
    refund = await stack.gateway.find_refund(top_up["payment_intent_id"])
    assert refund is not None and refund.id == done.stripe_refund_id and refund.amount == 70_000
    assert await stack.events(customer) == ["review.required", "top_up.refunded"]
    assert await stack.balance(customer) == 0
    assert await stack.credits_for(top_up["id"]) == 0


async def test_review_without_a_decision_before_its_deadline_is_refunded(stack: Stack) -> None:
    customer = await stack.new_customer()
    async with stack.http_for(stack.app_with(topup_review_deadline_s=2)) as http:
        top_up = await start(stack, customer, 55_000, http=http)
    await stack.pay(top_up["payment_intent_id"])
    done = await stack.wait_for(top_up["id"], "succeeded", "refunded", "failed")
    assert done.status == "refunded" and done.reason == "review_expired"
    assert await stack.balance(customer) == 0


async def test_a_payment_the_rules_reject_is_refunded_and_never_credited(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 950_000)  # over the reject amount (900_000)
    await stack.pay(top_up["payment_intent_id"])
    done = await stack.wait_for(top_up["id"], "succeeded", "refunded", "failed")
    assert done.status == "refunded" and done.risk_decision == "reject" and done.reason == "risk_rejected"
    assert await stack.gateway.find_refund(top_up["payment_intent_id"]) is not None
    assert await stack.balance(customer) == 0
    assert await stack.credits_for(top_up["id"]) == 0


async def test_without_temporal_the_top_up_is_kept_and_the_same_request_later_starts_it(stack: Stack) -> None:
    customer = await stack.new_customer()
    key = f"tu-{uuid.uuid4().hex}"
    body = {"idempotency_key": key, "customer_id": str(customer), "amount": 800, "currency": "usd"}
    down = stack.app_with(temporal_address=f"127.0.0.1:{free_port()}")
    down.state.temporal_client = None  # connect on first use, to a port nobody listens on
    async with stack.http_for(down) as http:
        refused = await http.post("/v1/top-ups", json=body)
    assert refused.status_code == 503 and refused.json()["code"] == "temporal_unavailable"
    stored = await stack.topups.get(uuid.UUID(refused.json()["top_up_id"]))
    assert stored.status == "initiated" and stored.stripe_payment_intent_id is None

    retried = await stack.http.post("/v1/top-ups", json=body)
    assert retried.status_code == 201 and retried.json()["id"] == str(stored.id)
    assert retried.json()["status"] == "awaiting_payment" and retried.json()["client_secret"]
    await stack.client.get_workflow_handle(stored.workflow_id).terminate("test done")


async def test_bad_top_up_requests_are_problems_and_write_nothing(stack: Stack) -> None:
    customer = str(await stack.new_customer())
    cases = [
        ({"amount": 12.5, "currency": "usd"}, 422, "validation_error"),
        ({"amount": 0, "currency": "usd"}, 422, "validation_error"),
        ({"amount": 500, "currency": "dollars"}, 422, "validation_error"),
        ({"amount": 500, "currency": "usd", "mode": "checkout"}, 422, "validation_error"),  # no return_url
        ({"amount": 500, "currency": "usd", "mode": "checkout", "return_url": "ftp://shop"}, 422, "validation_error"),
        ({"amount": 500, "currency": "usd", "asset": "NOSUCHASSET"}, 404, "not_found"),
        ({"amount": 500, "currency": "xqz"}, 404, "not_found"),
    ]
    for fields, status, code in cases:
        key = f"bad-{uuid.uuid4().hex}"
        response = await stack.http.post("/v1/top-ups", json={"idempotency_key": key, "customer_id": customer, **fields})
        assert (response.status_code, response.json()["code"]) == (status, code), (fields, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        async with stack.engine.connect() as conn:
            assert await repository.get_by_key(conn, key) is None
    unknown = await stack.http.post(
        "/v1/top-ups", json={"idempotency_key": f"bad-{uuid.uuid4().hex}", "customer_id": str(uuid.uuid4()), "amount": 5,
              "currency": "usd"}
    )
    assert unknown.status_code == 404
