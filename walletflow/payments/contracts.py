"""The data the top-up workflow and its activities exchange (pydantic, through Temporal's
pydantic data converter). Plain models with no I/O, so the workflow sandbox can import them.

Models only ever gain optional fields: a running workflow's history must still decode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

PaymentState = Literal["pending", "succeeded", "failed", "canceled"]


class TopUpWorkflowInput(BaseModel):
    """The one input of ``TopUpWorkflow``; timings are fixed at start so replays agree."""

    top_up_id: str
    customer_id: str
    payment_deadline_s: int
    review_deadline_s: int
    poll_interval_s: int
    call_timeout_s: int = 30


class TopUpRef(BaseModel):
    top_up_id: str


class PaymentCreated(BaseModel):
    """The top-up's PaymentIntent (mode ``payment_intent``) or Checkout Session (mode
    ``checkout``; its PaymentIntent exists only once the customer has paid). Deliberately without
    the client secret: whatever a workflow returns lands in Temporal's history, and secrets never
    go there. Callers that must hand the secret to Stripe.js read it from Stripe
    (``client_secret_for``)."""

    payment_intent_id: str | None = None
    checkout_session_id: str | None = None


class PaymentCheck(BaseModel):
    """The payment as Stripe reports it, checked against the top-up."""

    #: None while a Checkout Session is unpaid (or expired unpaid).
    payment_intent_id: str | None
    state: PaymentState
    #: Why a payment that is not pending did not succeed (``card_declined``, ``amount_mismatch``).
    reason: str | None = None


class RiskOutcome(BaseModel):
    score: int
    decision: Literal["approve", "review", "reject"]
    reasons: list[str]


class MarkStatus(BaseModel):
    top_up_id: str
    status: Literal["awaiting_payment", "scoring", "in_review", "rejected", "failed"]
    reason: str | None = None


class RefundRequest(BaseModel):
    top_up_id: str
    reason: str


class RefundOutcome(BaseModel):
    #: ``refunded``: Stripe refunded it; ``already_credited``: the credit won, nothing was refunded.
    outcome: Literal["refunded", "already_credited"]
    refund_id: str | None = None


class CreditOutcome(BaseModel):
    #: ``credited``; ``already_refunded``: a refund claimed the top-up first, nothing was credited.
    outcome: Literal["credited", "already_refunded"]
    transaction_id: str | None = None


class PaymentSignal(BaseModel):
    """Sent by the webhook endpoint: a hint to look at Stripe now, not trusted as the result."""

    stripe_event_id: str
    event_type: str
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None


class ReviewDecision(BaseModel):
    approve: bool
    note: str | None = None


class TopUpProgress(BaseModel):
    """What the ``status`` query answers."""

    status: str
    payment_intent_id: str | None = None
    payment_state: PaymentState | None = None
    #: How the payment's outcome was learned: ``webhook``, ``poll`` or ``deadline``.
    learned_via: str | None = None
    webhook_signals: int = 0
    risk: RiskOutcome | None = None
    reason: str | None = None
    #: The operator's note with a review decision.
    review_note: str | None = None


class RefundRef(BaseModel):
    """Input of ``TopUpRefundWorkflow`` (``topup-refund-{refund_id}``)."""

    refund_id: str


class RefundFailure(BaseModel):
    refund_id: str
    reason: str


class RefundProgress(BaseModel):
    #: ``succeeded``: Stripe refunded it; ``failed``: Stripe refused and the wallet got the money back.
    status: Literal["pending", "succeeded", "failed"]
    stripe_refund_id: str | None = None
    failure_reason: str | None = None


class DisputeInput(BaseModel):
    """Input of ``DisputeWorkflow`` (``dispute-{dispute_id}``), from a ``charge.dispute.created`` event."""

    dispute_id: str
    top_up_id: str
    amount: int
    currency: str
    reason: str | None = None


class DisputeOutcome(BaseModel):
    clawed_back: int
    unrecovered: int
    transaction_id: str | None = None


class PaymentsSweepInput(BaseModel):
    """Input of ``PaymentsSweepWorkflow``; empty from its schedule (the settings decide)."""

    grace_s: int | None = None
    limit: int | None = None


class PaymentsSweepResult(BaseModel):
    top_ups_started: int = 0
    refunds_started: int = 0
