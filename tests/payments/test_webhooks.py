"""``POST /v1/stripe/webhooks``: signature checked, each event stored once, forgeries refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.services import WEBHOOK_SECRET, Stack, start
from walletflow.payments.repository import stripe_events

pytestmark = pytest.mark.asyncio(loop_scope="session")


def signed(payload: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """The headers Stripe sends: ``t=<unix time>,v1=HMAC-SHA256(secret, "t.payload")``."""
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={timestamp},v1={digest}", "Content-Type": "application/json"}


async def stored(stack: Stack, event_id: str) -> int:
    async with stack.engine.connect() as conn:
        query = select(func.count()).select_from(stripe_events).where(stripe_events.c.id == event_id)
        return int((await conn.execute(query)).scalar_one())


async def delivered_event(stack: Stack, payment_intent_id: str) -> dict[str, Any]:
    """The payment_intent.succeeded event localstripe delivered for this PaymentIntent."""
    async with stack.engine.connect() as conn:
        rows = (await conn.execute(
            select(stripe_events.c.payload).where(stripe_events.c.type == "payment_intent.succeeded")
        )).scalars().all()
    return next(p for p in rows if p["data"]["object"]["id"] == payment_intent_id)


async def test_an_event_delivered_twice_is_stored_once_and_credits_once(stack: Stack) -> None:
    customer = await stack.new_customer()
    top_up = await start(stack, customer, 3100)
    await stack.pay(top_up["payment_intent_id"])
    await stack.wait_for(top_up["id"], "succeeded")

    # localstripe delivered the real event (signed with the registered secret); Stripe may
    # deliver it again at any time, and a fresh event id must be stored exactly once.
    event = await delivered_event(stack, top_up["payment_intent_id"])
    assert await stored(stack, event["id"]) == 1
    redelivered = json.dumps(event).encode()
    for _ in range(2):
        response = await stack.http.post("/v1/stripe/webhooks", content=redelivered, headers=signed(redelivered))
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "duplicate": True}

    fresh = json.dumps({**event, "id": f"evt_{uuid.uuid4().hex}"}).encode()
    answers = [
        (await stack.http.post("/v1/stripe/webhooks", content=fresh, headers=signed(fresh))).json()["duplicate"]
        for _ in range(2)
    ]
    assert answers == [False, True]
    assert await stored(stack, json.loads(fresh)["id"]) == 1
    assert await stack.balance(customer) == 3100
    assert await stack.credits_for(top_up["id"]) == 1


async def test_forged_and_unsigned_events_are_refused_and_not_stored(stack: Stack) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = json.dumps({"id": event_id, "object": "event", "type": "payment_intent.succeeded",
                          "data": {"object": {"id": "pi_forged", "object": "payment_intent"}}}).encode()

    wrong_secret = await stack.http.post("/v1/stripe/webhooks", content=payload, headers=signed(payload, "whsec_other"))
    assert wrong_secret.status_code == 400 and wrong_secret.json()["code"] == "invalid_signature"

    tampered = payload.replace(b"pi_forged", b"pi_tampered")
    replayed_signature = await stack.http.post("/v1/stripe/webhooks", content=tampered, headers=signed(payload))
    assert replayed_signature.status_code == 400 and replayed_signature.json()["code"] == "invalid_signature"

    unsigned = await stack.http.post("/v1/stripe/webhooks", content=payload, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400 and unsigned.json()["code"] == "invalid_signature"
    assert await stored(stack, event_id) == 0


async def test_without_a_webhook_secret_the_endpoint_is_disabled(stack: Stack) -> None:
    payload = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded"}).encode()
    async with stack.http_for(stack.app_with(stripe_webhook_secret="")) as http:
        response = await http.post("/v1/stripe/webhooks", content=payload, headers=signed(payload))
    assert response.status_code == 503 and response.json()["code"] == "webhooks_disabled"
    assert await stored(stack, json.loads(payload)["id"]) == 0
