"""Auto-recharge activities: adapters from the recharge workflows to the recharge core, the
ledger, Stripe and Temporal itself (the relay signals recharge workflows).

Every activity is safe to run again after a crash at any line: the plan resumes a charge in
flight instead of starting one, the charge looks for the PaymentIntent an earlier attempt made
before creating one, the credit is keyed ``topup-{id}:credit``, and each failure is counted once
(its outbox event's key guards the count).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import stripe
from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from activities.crash_points import crash_pause
from walletflow.errors import WalletflowError
from walletflow.ledger.service import Ledger
from walletflow.payments.schemas import TopUpInfo
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import PaymentIntentInfo, StripeGateway
from walletflow.recharge.contracts import (
    AutoRechargeInput,
    AutoRechargeSweepInput,
    ChargeRef,
    ChargeResult,
    FailureOutcome,
    FailureRecord,
    RechargeCredit,
    RechargePlan,
    RechargeSignal,
    RelayResult,
    SweepResult,
    WalletRef,
    recharge_workflow_id,
)
from walletflow.recharge.schemas import PendingTrigger
from walletflow.recharge.service import ChargeNotCreditable, Recharges, Timings
from walletflow.recharge.stripe_charges import charge_off_session
from walletflow.settings import Settings
from walletflow.temporal_client import CUSTOMER_ID

log = logging.getLogger(__name__)

#: The relay activity never runs longer than this (its workflow's timeout allows for it).
MAX_RELAY_RUN_S = 300.0


def timings_from(settings: Settings) -> Timings:
    return Timings(
        cooldown_s=settings.recharge_cooldown_s,
        backoff_initial_s=settings.recharge_backoff_initial_s,
        backoff_max_s=settings.recharge_backoff_max_s,
        max_consecutive_failures=settings.recharge_max_consecutive_failures,
        payment_deadline_s=settings.recharge_payment_deadline_s,
        poll_interval_s=settings.recharge_poll_interval_s,
        review_deadline_s=settings.topup_review_deadline_s,
        charges_per_run=settings.recharge_charges_per_run,
        call_timeout_s=settings.topup_call_timeout_s,
    )


async def signal_recharge(client: Client, settings: Settings, customer_id: str, asset: str,
                          signal: RechargeSignal) -> None:
    """Signal-with-start ``auto-recharge-{customer}-{asset}``: a running workflow gets the signal
    (and coalesces it with a charge in progress); otherwise a new run starts with it."""
    await client.start_workflow(
        "AutoRechargeWorkflow",
        AutoRechargeInput(customer_id=customer_id, asset=asset),
        id=recharge_workflow_id(customer_id, asset),
        task_queue=settings.task_queue,
        start_signal="trigger",
        start_signal_args=[signal],
        # A run that ended (its policy was disabled) may be started again once re-enabled.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, customer_id)]),
    )


class RechargeActivities:
    """The worker builds one instance with its dependencies and registers its methods."""

    def __init__(
        self, client: Client, recharges: Recharges, top_ups: TopUps, ledger: Ledger, gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        self.client = client
        self.recharges = recharges
        self.top_ups = top_ups
        self.ledger = ledger
        self.gateway = gateway
        self.settings = settings

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan, self.charge, self.credit, self.record_failure, self.relay, self.sweep]

    @activity.defn(name="recharge.plan")
    async def plan(self, wallet: WalletRef) -> RechargePlan:
        async with _business_errors():
            return await self.recharges.plan(uuid.UUID(wallet.customer_id), wallet.asset, timings_from(self.settings))

    @activity.defn(name="recharge.charge")
    async def charge(self, ref: ChargeRef) -> ChargeResult:
        """Charge the saved card off-session for the top-up, or find the charge an earlier
        attempt made."""
        async with _business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            if top_up.stripe_payment_intent_id is not None:
                intent: PaymentIntentInfo | None = await self.gateway.retrieve_payment_intent(
                    top_up.stripe_payment_intent_id
                )
            else:
                stripe_customer = await self.top_ups.stripe_customer_id(top_up.customer_id)
                if stripe_customer is None:
                    return ChargeResult(state="failed", reason="no_saved_card")
                policy = await self.recharges.get_policy(top_up.customer_id, top_up.asset)
                # Our database has no PaymentIntent: a crash may still have left one at Stripe.
                intent = await self.gateway.find_payment_intent(stripe_customer, ref.top_up_id)
                if intent is None:
                    try:
                        intent = await charge_off_session(
                            self.gateway, amount=top_up.amount, currency=top_up.currency,
                            stripe_customer=stripe_customer, payment_method_id=policy.payment_method_id,
                            top_up_id=ref.top_up_id, workflow_id=top_up.workflow_id,
                            idempotency_key=f"{top_up.idempotency_key}:payment_intent",
                        )
                    except stripe.InvalidRequestError as exc:
                        # The saved card is gone or unusable: no PaymentIntent, no money taken.
                        log.warning("off-session charge refused for %s: %s", ref.top_up_id, exc.code)
                        return ChargeResult(state="failed", reason=exc.code or "payment_method_unusable")
                    if intent is None:
                        intent = await self.gateway.find_payment_intent(stripe_customer, ref.top_up_id)
                if intent is None:
                    return ChargeResult(state="failed", reason="card_declined")
                await crash_pause(self.settings, "recharge_after_payment_intent")  # at Stripe, not in our database
                await self.top_ups.set_payment_intent(top_up.id, intent.id)
            if top_up.status == "initiated":
                await self.top_ups.transition(top_up.id, "awaiting_payment")
            return _result(top_up, intent)

    @activity.defn(name="recharge.credit")
    async def credit(self, ref: ChargeRef) -> RechargeCredit:
        """Credit the charge as a ``paid`` grant, once, unless a refund claimed it first; the
        success event and the cooldown are written in the credit's own transaction."""
        await crash_pause(self.settings, "recharge_before_credit")
        async with _business_errors():
            top_up = await self.top_ups.get(uuid.UUID(ref.top_up_id))
            if top_up.credit_transaction_id is not None:
                return RechargeCredit(outcome="credited", transaction_id=str(top_up.credit_transaction_id))
            if await self.top_ups.refund_claimed(top_up.id):
                return RechargeCredit(outcome="already_refunded")
            try:
                posting = await self.ledger.credit(
                    top_up.customer_id, top_up.asset, top_up.amount, f"topup-{top_up.id}:credit",
                    source="paid", kind="topup",
                    metadata={"top_up_id": str(top_up.id), "payment_intent": top_up.stripe_payment_intent_id,
                              "auto_recharge": top_up.workflow_id},
                    also=self.recharges.credit_recorder(top_up.id),
                )
            except ChargeNotCreditable:
                return RechargeCredit(outcome="already_refunded")
        await crash_pause(self.settings, "recharge_after_credit")  # credited; Temporal not yet told
        return RechargeCredit(outcome="credited", transaction_id=str(posting.transaction_id))

    @activity.defn(name="recharge.record_failure")
    async def record_failure(self, record: FailureRecord) -> FailureOutcome:
        async with _business_errors():
            return await self.recharges.record_failure(
                uuid.UUID(record.top_up_id), record.reason, requires_action=record.requires_action,
                max_failures=self.settings.recharge_max_consecutive_failures,
                payment_intent_id=record.payment_intent_id,
            )

    @activity.defn(name="recharge.relay")
    async def relay(self) -> RelayResult:
        """Relay trigger rows to their recharge workflows for a while, then return (the relay
        workflow starts the next run). Reads only the small outbox, through its pending index."""
        loop = asyncio.get_running_loop()
        until = loop.time() + min(self.settings.recharge_relay_run_s, MAX_RELAY_RUN_S)
        result = RelayResult()
        while True:
            result.relayed += await self._relay_pending()
            result.passes += 1
            activity.heartbeat(result.relayed)
            if loop.time() >= until:
                return result
            await asyncio.sleep(self.settings.recharge_relay_poll_s)

    @activity.defn(name="recharge.sweep")
    async def sweep(self, params: AutoRechargeSweepInput) -> SweepResult:
        """Catch what a lost signal or a failed recharge left behind: every enabled wallet under
        its threshold gets a trigger, then all pending triggers are relayed."""
        enqueued = await self.recharges.enqueue_below_threshold(params.limit)
        return SweepResult(enqueued=enqueued, relayed=await self._relay_pending())

    async def _relay_pending(self) -> int:
        relayed = 0
        # Bounded: one pass relays at most a batch; the next pass takes the rest.
        for trigger in await self.recharges.pending_triggers(self.settings.recharge_relay_batch):
            await self._relay_one(trigger)
            relayed += 1
        return relayed

    async def _relay_one(self, trigger: PendingTrigger) -> None:
        # Signal first, then close the row: a crash between the two signals again (harmless,
        # the workflow coalesces), never loses the trigger.
        await signal_recharge(
            self.client, self.settings, str(trigger.customer_id), trigger.asset,
            RechargeSignal(source=trigger.source, trigger_id=trigger.id),
        )
        await self.recharges.mark_relayed(trigger)


@asynccontextmanager
async def _business_errors() -> AsyncIterator[None]:
    """Typed business failures become non-retryable activity errors; the rest (network,
    database) is retried. Stripe's card errors never get here: the charge reports them."""
    try:
        yield
    except WalletflowError as exc:
        raise ApplicationError(exc.detail, type=type(exc).__name__, non_retryable=True) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise ApplicationError(str(exc.user_message or exc), type=type(exc).__name__, non_retryable=True) from exc


def _result(top_up: TopUpInfo, intent: PaymentIntentInfo) -> ChargeResult:
    status = intent.stripe_status
    if status == "succeeded":
        mismatch = intent.amount != top_up.amount or intent.currency.upper() != top_up.currency
        return ChargeResult(payment_intent_id=intent.id, state="succeeded",
                            reason="amount_mismatch" if mismatch else None)
    if status == "requires_action" or intent.last_error_code == "authentication_required":
        return ChargeResult(payment_intent_id=intent.id, state="requires_action", reason="authentication_required")
    if status == "canceled":
        return ChargeResult(payment_intent_id=intent.id, state="canceled", reason="canceled")
    if status == "requires_payment_method" and intent.last_error_code:
        return ChargeResult(payment_intent_id=intent.id, state="failed", reason=intent.last_error_code)
    return ChargeResult(payment_intent_id=intent.id, state="pending")
