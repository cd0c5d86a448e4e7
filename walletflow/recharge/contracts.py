"""What the auto-recharge workflows and their activities exchange (pydantic through Temporal's
pydantic data converter). Plain models without I/O, so the workflow sandbox can import them.

Models only ever gain optional fields: a running workflow's history must still decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel


def recharge_workflow_id(customer_id: str, asset: str) -> str:
    """``auto-recharge-{customer_id}-{asset}``: one recharge workflow per wallet (API.md)."""
    return f"auto-recharge-{customer_id}-{asset}"


class AutoRechargeInput(BaseModel):
    customer_id: str
    asset: str
    #: A trigger arrived before this run started (carried over continue-as-new).
    pending: bool = False
    #: Charges made by earlier runs of this workflow id (only for the ``status`` query).
    charges_before: int = 0


class RechargeSignal(BaseModel):
    """Look at the wallet now: ``threshold`` (a debit crossed it), ``sweep`` or ``policy``."""

    source: str
    trigger_id: int | None = None


class WalletRef(BaseModel):
    customer_id: str
    asset: str


class RechargePlan(BaseModel):
    """What to do next, decided in one database transaction under the policy's lock."""

    #: ``charge`` (``top_up_id`` is the charge in flight), ``wait`` (``wait_s``, cooldown or decline
    #: backoff), ``idle`` (nothing to charge, or capped: ``reason``), ``disabled`` (no enabled policy).
    action: Literal["charge", "wait", "idle", "disabled"]
    top_up_id: str | None = None
    amount: int | None = None
    wait_s: float | None = None
    reason: str | None = None
    #: Timings read from the worker's settings (recorded in history, so replays agree).
    payment_deadline_s: int = 600
    poll_interval_s: int = 10
    review_deadline_s: int = 3 * 24 * 3600
    charges_per_run: int = 50
    #: Start-to-close timeout of each database or Stripe call (``WALLETFLOW_TOPUP_CALL_TIMEOUT_S``).
    call_timeout_s: int = 30


class ChargeRef(BaseModel):
    top_up_id: str


class ChargeResult(BaseModel):
    """The off-session PaymentIntent as Stripe reports it."""

    payment_intent_id: str | None = None
    state: Literal["succeeded", "failed", "requires_action", "pending", "canceled"]
    #: ``card_declined``, ``authentication_required``, ``amount_mismatch``...
    reason: str | None = None


class FailureRecord(BaseModel):
    top_up_id: str
    reason: str
    #: 3-D Secure: the customer must act; the policy is paused and nothing is retried.
    requires_action: bool = False
    payment_intent_id: str | None = None


class FailureOutcome(BaseModel):
    consecutive_failures: int
    disabled: bool


class RechargeCredit(BaseModel):
    outcome: Literal["credited", "already_refunded"]
    transaction_id: str | None = None


class RechargeProgress(BaseModel):
    """What the ``status`` query answers."""

    status: str = "idle"
    charges: int = 0
    signals: int = 0
    last_plan: RechargePlan | None = None
    last_top_up_id: str | None = None
    last_outcome: str | None = None


class RelayResult(BaseModel):
    relayed: int = 0
    passes: int = 0


@dataclass
class AutoRechargeRelayInput:
    """Input of ``AutoRechargeRelayWorkflow``; defaults come from the worker's settings."""

    #: Relay activities run before continuing as new.
    runs_per_workflow: int = 50


@dataclass
class AutoRechargeSweepInput:
    """Input of ``AutoRechargeSweepWorkflow`` (scheduled): every default is usable as is."""

    #: At most this many wallets under their threshold are enqueued per run.
    limit: int = 1000


class SweepResult(BaseModel):
    enqueued: int = 0
    relayed: int = 0
