"""Top-ups paid by card through Stripe, the Stripe webhook, and the operator's review queue.

The API records a top-up and starts its workflow (``topup-{id}``); the workflow does the
rest. The webhook stores each verified event once and wakes the workflow, which then asks
Stripe itself: a webhook is a hint, never the source of truth.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, Literal

import stripe
from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from walletflow import temporal_client as temporal
from walletflow.api.deps import IdempotencyHeader, ServicesDep, idempotency_key, require
from walletflow.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from walletflow.errors import ValidationError, WalletflowError
from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.payments.contracts import DisputeInput, PaymentSignal
from walletflow.payments.schemas import TopUpInfo
from walletflow.payments.stripe_gateway import TOP_UP_METADATA_KEY
from walletflow.risk.topups import risk_details

log = logging.getLogger(__name__)
router = APIRouter()


class WebhooksDisabled(WalletflowError):
    code = "webhooks_disabled"
    status = 503
    title = "Stripe webhooks are not configured"


class InvalidSignature(WalletflowError):
    code = "invalid_signature"
    status = 400
    title = "Stripe signature does not verify"


class TemporalUnavailable(WalletflowError):
    code = "temporal_unavailable"
    status = 503
    title = "The workflow service is unreachable"


class TopUpIn(BaseModel):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    customer_id: uuid.UUID
    amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="Minor units of `currency`.")
    currency: str = Field(min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")
    asset: str | None = Field(default=None, min_length=2, max_length=16, description="Wallet asset; default the currency.")
    mode: Literal["payment_intent", "checkout"] = "payment_intent"
    return_url: str | None = Field(default=None, max_length=2000)


class RiskOut(BaseModel):
    score: int
    decision: str
    reasons: list[Any]
    #: Filled in the review queue: one sentence per finding, and the features behind them.
    explanations: list[str] | None = None
    features: dict[str, Any] | None = None
    model_version: str | None = None


class TopUpOut(BaseModel):
    id: uuid.UUID
    status: str
    customer_id: uuid.UUID
    amount: int
    currency: str
    asset: str
    credit_amount: int = Field(description="What the wallet receives, in minor units of `asset`.")
    credit_rate: str | None = Field(default=None, description="When `asset` is not the currency: the rate used.")
    mode: str
    workflow_id: str
    idempotency_key: str
    client_secret: str | None = Field(default=None, description="For Stripe.js; only in the answer to POST.")
    checkout_url: str | None = Field(default=None, description="Mode checkout: Stripe's hosted page; only in the answer to POST.")
    checkout_session_id: str | None = None
    payment_intent_id: str | None
    credit_transaction_id: uuid.UUID | None
    refund_id: str | None
    risk: RiskOut | None
    reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, t: TopUpInfo, client_secret: str | None = None, checkout_url: str | None = None) -> TopUpOut:
        risk = None
        if t.risk_decision is not None:
            risk = RiskOut(score=t.risk_score or 0, decision=t.risk_decision, reasons=t.risk_reasons or [])
        return cls(
            id=t.id, status=t.status, customer_id=t.customer_id, amount=t.amount, currency=t.currency,
            asset=t.asset, credit_amount=t.credited_units, credit_rate=t.credit_rate, mode=t.mode,
            workflow_id=t.workflow_id, idempotency_key=t.idempotency_key,
            client_secret=client_secret, checkout_url=checkout_url, payment_intent_id=t.stripe_payment_intent_id,
            checkout_session_id=t.stripe_checkout_session_id,
            credit_transaction_id=t.credit_transaction_id, refund_id=t.stripe_refund_id, risk=risk,
            reason=t.reason, created_at=t.created_at, updated_at=t.updated_at,
        )


class TopUpPage(BaseModel):
    data: list[TopUpOut]
    next_cursor: str | None


class ReviewIn(BaseModel):
    note: str | None = Field(default=None, max_length=1000)


async def temporal_client(request: Request) -> Client:
    """The app's Temporal client, connected on first use (tests may set one beforehand)."""
    if request.app.state.temporal_client is None:
        async with request.app.state.temporal_lock:
            if request.app.state.temporal_client is None:
                request.app.state.temporal_client = await temporal.connect(request.app.state.services.settings)
    return request.app.state.temporal_client


@router.post("/top-ups", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")], tags=["top-ups"])
async def create_top_up(
    body: TopUpIn, request: Request, services: ServicesDep, header_key: IdempotencyHeader = None
) -> TopUpOut:
    """Record a top-up and start its workflow; answers with the PaymentIntent's client secret.

    The same key and body answers again with the same top-up (and starts nothing new).
    """
    key = idempotency_key(body.idempotency_key, header_key)
    top_up, _ = await services.topups.create(
        key, body.customer_id, body.amount, body.currency, body.asset, body.mode, body.return_url
    )
    try:
        client = await temporal_client(request)
        handle = await temporal.start_top_up(client, top_up, services.settings)
    except (RuntimeError, RPCError) as exc:
        # The top-up is recorded (initiated, no payment yet): the same request again starts it.
        log.warning("could not start %s: %s", top_up.workflow_id, type(exc).__name__)
        raise TemporalUnavailable(
            "the top-up is recorded but its workflow could not start; retry with the same idempotency key",
            top_up_id=str(top_up.id),
        ) from exc
    details = await temporal.payment_details(handle, services.settings.topup_create_wait_s)
    top_up = await services.topups.get(top_up.id)
    secret = checkout_url = None
    if details is not None:
        gateway = StripeGateway.from_settings(services.settings)
        secret, checkout_url = await gateway.handoff(details.payment_intent_id, details.checkout_session_id)
    return TopUpOut.of(top_up, secret, checkout_url)


@router.get("/top-ups/{top_up_id}", dependencies=[require("read")], tags=["top-ups"])
async def get_top_up(top_up_id: uuid.UUID, services: ServicesDep) -> TopUpOut:
    return TopUpOut.of(await services.topups.get(top_up_id))


@router.get("/reviews", dependencies=[require("read")], tags=["reviews"])
async def list_reviews(
    services: ServicesDep, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None
) -> TopUpPage:
    """Top-ups waiting for an operator's decision, oldest first."""
    after = None
    key = decode_cursor(cursor, 2)
    if key is not None:
        try:
            after = (dt.datetime.fromisoformat(key[0]), uuid.UUID(key[1]))
        except ValueError as exc:
            raise ValidationError("cursor is not one this API returned", field="cursor") from exc
    rows = await services.topups.list_in_review(limit + 1, after)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at.isoformat(), page[-1].id) if more else None
    data = [TopUpOut.of(t) for t in page]
    details = await risk_details(services.topups.engine, [t.id for t in page])
    for out in data:
        found = details.get(out.id)
        if out.risk is not None and found:
            out.risk.explanations = found.get("explanations")
            out.risk.features = found.get("features")
            out.risk.model_version = found.get("model_version")
    return TopUpPage(data=data, next_cursor=next_cursor)


@router.post("/reviews/{top_up_id}/approve", status_code=status.HTTP_202_ACCEPTED, dependencies=[require("admin")],
             tags=["reviews"])
async def approve_review(top_up_id: uuid.UUID, request: Request, services: ServicesDep, body: ReviewIn | None = None) -> TopUpOut:
    """Approve a top-up in review: its workflow credits the wallet (202: it happens next)."""
    return await _decide(top_up_id, True, body, request, services)


@router.post("/reviews/{top_up_id}/reject", status_code=status.HTTP_202_ACCEPTED, dependencies=[require("admin")],
             tags=["reviews"])
async def reject_review(top_up_id: uuid.UUID, request: Request, services: ServicesDep, body: ReviewIn | None = None) -> TopUpOut:
    """Reject a top-up in review: its workflow refunds the payment (202: it happens next)."""
    return await _decide(top_up_id, False, body, request, services)


async def _decide(top_up_id: uuid.UUID, approve: bool, body: ReviewIn | None, request: Request,
                  services: ServicesDep) -> TopUpOut:
    top_up = await services.topups.require_in_review(top_up_id)
    try:
        client = await temporal_client(request)
        await temporal.signal_review(client, top_up.id, top_up.workflow_id, approve, body.note if body else None)
    except (RuntimeError, RPCError) as exc:
        raise TemporalUnavailable("the decision could not be delivered; send it again") from exc
    return TopUpOut.of(top_up)


@router.post("/stripe/webhooks", tags=["stripe"])
async def stripe_webhook(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Stripe events, signature verified. Each event is stored once by its id, then the top-up
    it concerns is woken up. An empty webhook secret disables this endpoint (503)."""
    secret = services.settings.stripe_webhook_secret
    if not secret:
        raise WebhooksDisabled("set WALLETFLOW_STRIPE_WEBHOOK_SECRET to accept Stripe webhooks")
    payload = await request.body()
    signature = request.headers.get("stripe-signature")
    if not signature:
        raise InvalidSignature("the Stripe-Signature header is missing")
    try:
        stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature("the Stripe-Signature header does not match the payload") from exc
    except ValueError as exc:
        raise ValidationError("the webhook payload is not a Stripe event") from exc
    event = json.loads(payload)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise ValidationError("the webhook payload is not a Stripe event")
    new = await services.topups.store_event(event["id"], event["type"], event)
    if new and event["type"].startswith("payment_intent."):
        await _wake_top_up(request, services, event)
    if new and event["type"].startswith("checkout.session."):
        await _wake_checkout(request, services, event)
    if event["type"] == "charge.dispute.created":
        # Also for a redelivered event: if the first delivery could not start the claw-back,
        # answering 503 below made Stripe deliver it again, and starting is idempotent.
        await _start_dispute(request, services, event)
    return {"received": True, "duplicate": not new}


async def _wake_checkout(request: Request, services: ServicesDep, event: dict[str, Any]) -> None:
    session = (event.get("data") or {}).get("object") or {}
    session_id = session.get("id")
    if not isinstance(session_id, str):
        return
    top_up = await services.topups.find_by_checkout_session(session_id)
    if top_up is None:
        raw_id = (session.get("metadata") or {}).get(TOP_UP_METADATA_KEY)
        try:
            top_up = await services.topups.get(uuid.UUID(str(raw_id))) if raw_id else None
        except (ValueError, WalletflowError):
            top_up = None
    if top_up is None:
        return
    intent = session.get("payment_intent")
    signal = PaymentSignal(stripe_event_id=event["id"], event_type=event["type"], checkout_session_id=session_id,
                           payment_intent_id=intent if isinstance(intent, str) else None)
    try:
        client = await temporal_client(request)
        await temporal.signal_payment(client, top_up.workflow_id, signal)
    except Exception:
        log.exception("could not signal %s about %s", top_up.workflow_id, event["id"])


async def _start_dispute(request: Request, services: ServicesDep, event: dict[str, Any]) -> None:
    dispute = (event.get("data") or {}).get("object") or {}
    intent_id, dispute_id, amount = dispute.get("payment_intent"), dispute.get("id"), dispute.get("amount")
    if not (isinstance(intent_id, str) and isinstance(dispute_id, str) and isinstance(amount, int) and amount > 0):
        log.warning("dispute event %s lacks its payment_intent, id or amount; ignored", event["id"])
        return
    top_up = await services.topups.find_by_payment_intent(intent_id)
    if top_up is None:
        return  # a payment that is not a walletflow top-up
    params = DisputeInput(
        dispute_id=dispute_id, top_up_id=str(top_up.id), amount=amount,
        currency=str(dispute.get("currency") or top_up.currency), reason=dispute.get("reason"),
    )
    try:
        client = await temporal_client(request)
        await temporal.start_dispute(client, params, top_up.customer_id, services.settings)
    except (RuntimeError, RPCError) as exc:
        # Unlike a payment, a dispute has no polling fallback: make Stripe deliver it again.
        raise TemporalUnavailable("the dispute could not be handled now; Stripe will retry") from exc


async def _wake_top_up(request: Request, services: ServicesDep, event: dict[str, Any]) -> None:
    intent = (event.get("data") or {}).get("object") or {}
    intent_id = intent.get("id")
    if not isinstance(intent_id, str):
        return
    top_up = await services.topups.find_by_payment_intent(intent_id)
    if top_up is None:
        # The event may beat our own record of the PaymentIntent: fall back to its metadata.
        raw_id = (intent.get("metadata") or {}).get(TOP_UP_METADATA_KEY)
        try:
            top_up = await services.topups.get(uuid.UUID(str(raw_id))) if raw_id else None
        except (ValueError, WalletflowError):
            top_up = None
    if top_up is None:
        return  # not one of ours (another integration on the same Stripe account)
    signal = PaymentSignal(stripe_event_id=event["id"], event_type=event["type"], payment_intent_id=intent_id)
    try:
        client = await temporal_client(request)
        await temporal.signal_payment(client, top_up.workflow_id, signal)
    except Exception:
        # Stored already, so Stripe's redelivery would be a duplicate: the workflow's own
        # polling picks the payment up instead. Answer 200 so Stripe stops retrying.
        log.exception("could not signal %s about %s", top_up.workflow_id, event["id"])
