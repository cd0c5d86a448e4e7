"""Auto-recharge policies and the decisions of a recharge, each one database transaction.

The recharge workflow (one per wallet) orchestrates; everything it decides about money is
decided here, under the policy row's lock, so the rules hold even if two workflows ran:

- **in-flight guard**: a charge is a top-up row whose ``workflow_id`` is the wallet's recharge
  workflow; a partial unique index allows one in flight per wallet, and :meth:`plan` resumes
  the one in flight instead of starting another;
- **sizing**: one charge to reach the target (never one per increment), cut to the caps;
- **caps**: the day's and month's recharges, in-flight ones included, never exceed them;
- **cooldown** after a charge that took money, **backoff** after a decline, and the policy
  disabled after N declines in a row, with the platform told through the event outbox in the
  same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.db.engine import in_transaction_after_races
from walletflow.db.types import utcnow
from walletflow.errors import NotFound, ValidationError, WalletflowError
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.rules import request_hash
from walletflow.ledger.schemas import MAX_AMOUNT, Posting
from walletflow.observability import metrics
from walletflow.payments import repository as topup_repo
from walletflow.recharge import repository as repo
from walletflow.recharge.contracts import FailureOutcome, RechargePlan, recharge_workflow_id
from walletflow.recharge.rules import backoff_s, day_start, month_start, size_charge
from walletflow.recharge.schemas import Consent, PendingTrigger, PolicyInfo
from walletflow.webhooks.outbox import emit

CURRENCY = re.compile(r"^[A-Z]{3}$")
PAYMENT_METHOD = re.compile(r"^[A-Za-z0-9_]{3,255}$")


@dataclass(frozen=True)
class Timings:
    """The worker's recharge settings, as the rules need them."""

    cooldown_s: float
    backoff_initial_s: float
    backoff_max_s: float
    max_consecutive_failures: int
    payment_deadline_s: int
    poll_interval_s: int
    review_deadline_s: int
    charges_per_run: int
    #: Each activity's start-to-close timeout (a killed worker's step is retried after it).
    call_timeout_s: int = 30


class PolicyDisabled(WalletflowError):
    code = "auto_recharge_disabled"
    status = 409
    title = "Auto-recharge is disabled"


class Recharges:
    """Auto-recharge over one database (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    # --- policies -----------------------------------------------------------------------------

    async def set_policy(
        self,
        customer_id: uuid.UUID,
        *,
        asset: str,
        threshold: int,
        target: int,
        payment_method_id: str,
        daily_cap: int,
        monthly_cap: int,
        enabled: bool,
        consent: Consent | None,
    ) -> PolicyInfo:
        """Create or replace the policy of one wallet.

        Enabling needs the customer's consent (when and how they agreed to off-session charges).
        Setting (or re-enabling) a policy clears walletflow's own disable and the decline count,
        and, if the wallet is already under the threshold, enqueues a trigger in the same
        transaction so the recharge starts without waiting for the next debit.
        """
        _check_money(threshold, "threshold", allow_zero=True)
        _check_money(target, "target")
        _check_money(daily_cap, "daily_cap")
        _check_money(monthly_cap, "monthly_cap")
        if target <= threshold:
            raise ValidationError("target must be above threshold", field="target")
        if daily_cap > monthly_cap:
            raise ValidationError("daily_cap cannot exceed monthly_cap", field="daily_cap")
        if not isinstance(payment_method_id, str) or not PAYMENT_METHOD.match(payment_method_id):
            raise ValidationError("payment_method_id must be a Stripe PaymentMethod id", field="payment_method_id")
        if consent is None:
            raise ValidationError(
                "consent is required: when and how the customer agreed to off-session charges", field="consent"
            )
        now = self.clock()
        if consent.at > now + dt.timedelta(minutes=5):
            raise ValidationError("consent.at is in the future", field="consent.at")
        if not consent.method or len(consent.method) > 64:
            raise ValidationError("consent.method must be 1 to 64 characters", field="consent.method")
        if consent.text is not None and len(consent.text) > 10_000:
            raise ValidationError("consent.text is at most 10000 characters", field="consent.text")

        async def work(conn: AsyncConnection) -> PolicyInfo:
            if await ledger_repo.get_customer(conn, customer_id) is None:
                raise NotFound(f"customer {customer_id} not found")
            found = await ledger_repo.get_asset(conn, asset)
            if found is None:
                raise NotFound(f"asset {asset} not found", field="asset")
            if found.kind != "fiat" or not CURRENCY.match(asset):
                # A card is charged in a currency; crediting another asset needs an exchange rate.
                raise ValidationError("auto-recharge credits a fiat asset named by its currency code", field="asset")
            values = {
                "threshold": threshold, "target": target, "payment_method_id": payment_method_id,
                "daily_cap": daily_cap, "monthly_cap": monthly_cap, "enabled": enabled,
                "disabled_reason": None, "consent_at": consent.at, "consent_method": consent.method,
                "consent_text": consent.text, "updated_at": now,
            }
            await repo.lock_wallet(conn, customer_id, asset)
            existing = await repo.get_policy(conn, customer_id, asset, lock=True)
            if existing is None:
                await repo.insert_policy(
                    conn,
                    {"customer_id": customer_id, "asset": asset, "consecutive_failures": 0, "charge_seq": 0,
                     "created_at": now, **values},
                )
            else:
                if enabled and not existing.enabled:
                    values["consecutive_failures"] = 0  # a fresh start after walletflow or someone disabled it
                await repo.update_policy(conn, customer_id, asset, **values)
            await repo.set_account_threshold(conn, customer_id, asset, threshold if enabled else None, now)
            if enabled:
                available = await repo.available(conn, customer_id, asset)
                if available < threshold:
                    await repo.insert_trigger(conn, customer_id, asset, available, "policy", now)
            row = await repo.get_policy(conn, customer_id, asset)
            assert row is not None
            return policy_info(row)

        return await self._run(work)

    async def get_policy(self, customer_id: uuid.UUID, asset: str) -> PolicyInfo:
        async with self.engine.connect() as conn:
            row = await repo.get_policy(conn, customer_id, asset)
        if row is None:
            raise NotFound(f"customer {customer_id} has no auto-recharge policy for {asset}")
        return policy_info(row)

    async def list_policies(self, customer_id: uuid.UUID) -> list[PolicyInfo]:
        async with self.engine.connect() as conn:
            if await ledger_repo.get_customer(conn, customer_id) is None:
                raise NotFound(f"customer {customer_id} not found")
            return [policy_info(r) for r in await repo.list_policies(conn, customer_id)]

    async def disable(self, customer_id: uuid.UUID, asset: str) -> PolicyInfo:
        """Turn the policy off (the platform's or customer's choice). A charge already in flight
        finishes; none starts after it."""

        async def work(conn: AsyncConnection) -> PolicyInfo:
            await repo.lock_wallet(conn, customer_id, asset)
            if await repo.get_policy(conn, customer_id, asset, lock=True) is None:
                raise NotFound(f"customer {customer_id} has no auto-recharge policy for {asset}")
            await repo.update_policy(conn, customer_id, asset, enabled=False, updated_at=self.clock())
            await repo.set_account_threshold(conn, customer_id, asset, None, self.clock())
            return policy_info(await repo.get_policy(conn, customer_id, asset))  # type: ignore[arg-type]

        return await self._run(work)

    # --- the recharge's decisions --------------------------------------------------------------

    async def plan(self, customer_id: uuid.UUID, asset: str, timings: Timings) -> RechargePlan:
        """Decide the next step and, for a charge, record it (the top-up row) in the same
        transaction; a retry after that commit finds the charge in flight and resumes it."""
        workflow_id = recharge_workflow_id(str(customer_id), asset)
        common = {
            "payment_deadline_s": timings.payment_deadline_s, "poll_interval_s": timings.poll_interval_s,
            "review_deadline_s": timings.review_deadline_s, "charges_per_run": timings.charges_per_run,
            "call_timeout_s": timings.call_timeout_s,
        }

        async def work(conn: AsyncConnection) -> RechargePlan:
            now = self.clock()
            policy = await repo.get_policy(conn, customer_id, asset, lock=True)
            in_flight = await repo.in_flight_charge(conn, workflow_id)
            if in_flight is not None:
                # A charge started earlier (a run that died mid-way): finish it, even if the
                # policy has been disabled since, so money taken is credited or refunded.
                return RechargePlan(action="charge", top_up_id=str(in_flight.id), amount=in_flight.amount,
                                    reason="resumed", **common)
            if policy is None or not policy.enabled:
                return RechargePlan(action="disabled", reason=policy.disabled_reason if policy else "no_policy",
                                    **common)
            available = await repo.available(conn, customer_id, asset)
            if available >= policy.threshold:
                return RechargePlan(action="idle", reason="above_threshold", **common)
            if policy.consecutive_failures and policy.last_failure_at is not None:
                until = policy.last_failure_at + dt.timedelta(seconds=backoff_s(
                    policy.consecutive_failures, timings.backoff_initial_s, timings.backoff_max_s))
                if until > now:
                    return RechargePlan(action="wait", wait_s=(until - now).total_seconds(), reason="backoff", **common)
            if policy.last_charge_at is not None:
                until = policy.last_charge_at + dt.timedelta(seconds=timings.cooldown_s)
                if until > now:
                    return RechargePlan(action="wait", wait_s=(until - now).total_seconds(), reason="cooldown", **common)
            sizing = size_charge(
                available=available, threshold=policy.threshold, target=policy.target,
                daily_cap=policy.daily_cap, monthly_cap=policy.monthly_cap,
                charged_today=await repo.charged_since(conn, workflow_id, day_start(now)),
                charged_this_month=await repo.charged_since(conn, workflow_id, month_start(now)),
            )
            if sizing.amount == 0:
                # Told once per cap period, not once per debit.
                period = now.strftime("%Y-%m-%d" if sizing.limited_by == "daily_cap_reached" else "%Y-%m")
                await emit(
                    conn, "auto_recharge.failed",
                    {"customer_id": str(customer_id), "asset": asset, "reason": sizing.limited_by,
                     "available": available, "threshold": policy.threshold},
                    f"{workflow_id}:{sizing.limited_by}:{period}", customer_id=customer_id, now=now,
                )
                return RechargePlan(action="idle", reason=sizing.limited_by, **common)
            seq = policy.charge_seq + 1
            key = f"{workflow_id}:{seq}"
            top_up_id = uuid.uuid4()
            await topup_repo.insert_top_up(
                conn,
                {"id": top_up_id, "customer_id": customer_id, "amount": sizing.amount, "currency": asset,
                 "asset": asset, "mode": "payment_intent", "status": "initiated", "idempotency_key": key,
                 "request_hash": request_hash("auto_recharge", customer_id=customer_id, asset=asset,
                                              amount=sizing.amount, seq=seq),
                 "workflow_id": workflow_id, "created_at": now, "updated_at": now},
            )
            await repo.update_policy(conn, customer_id, asset, charge_seq=seq, updated_at=now)
            return RechargePlan(action="charge", top_up_id=str(top_up_id), amount=sizing.amount,
                                reason=sizing.limited_by, **common)

        return await self._run(work)

    def credit_recorder(self, top_up_id: uuid.UUID) -> Callable[[AsyncConnection, Posting], Awaitable[None]]:
        """The ``also`` hook of the recharge's ledger credit: in the credit's own transaction,
        mark the top-up credited (refused if a refund claimed it), start the cooldown, clear the
        decline count and tell the platform."""

        async def record(conn: AsyncConnection, posting: Posting) -> None:
            now = self.clock()
            if not await topup_repo.mark_credited(conn, top_up_id, posting.transaction_id, now):
                raise ChargeNotCreditable(f"top-up {top_up_id} was refunded or is not ready to credit")
            top_up = await topup_repo.get(conn, top_up_id)
            assert top_up is not None
            await repo.update_policy(
                conn, top_up.customer_id, top_up.asset, consecutive_failures=0, last_charge_at=now, updated_at=now
            )
            metrics.RECHARGES.labels("succeeded").inc()
            await emit(
                conn, "auto_recharge.succeeded",
                {"customer_id": str(top_up.customer_id), "asset": top_up.asset, "amount": top_up.amount,
                 "top_up_id": str(top_up_id), "payment_intent_id": top_up.stripe_payment_intent_id,
                 "transaction_id": str(posting.transaction_id)},
                f"auto-recharge:{top_up_id}:succeeded", customer_id=top_up.customer_id, now=now,
            )

        return record

    async def record_failure(
        self, top_up_id: uuid.UUID, reason: str, *, requires_action: bool, max_failures: int,
        payment_intent_id: str | None = None,
    ) -> FailureOutcome:
        """A charge that took no money (declined, 3-D Secure, refunded after the risk gate).

        Counted once per top-up (the event's key guards the count against activity retries).
        3-D Secure pauses the policy at once (the customer must act on-session; retrying off
        session would fail the same way); declines disable it after ``max_failures`` in a row.
        """

        async def work(conn: AsyncConnection) -> FailureOutcome:
            now = self.clock()
            top_up = await topup_repo.get(conn, top_up_id)
            if top_up is None:
                raise NotFound(f"top-up {top_up_id} not found")
            await repo.lock_wallet(conn, top_up.customer_id, top_up.asset)
            policy = await repo.get_policy(conn, top_up.customer_id, top_up.asset, lock=True)
            assert policy is not None
            await topup_repo.transition(
                conn, top_up_id, "failed", ("initiated", "awaiting_payment"), now, reason=reason
            )
            data = {"customer_id": str(top_up.customer_id), "asset": top_up.asset, "amount": top_up.amount,
                    "top_up_id": str(top_up_id), "payment_intent_id": payment_intent_id, "reason": reason}
            first_time = await emit(conn, "auto_recharge.failed", data, f"auto-recharge:{top_up_id}:failed",
                                    customer_id=top_up.customer_id, now=now)
            if not first_time:
                return FailureOutcome(consecutive_failures=policy.consecutive_failures, disabled=not policy.enabled)
            metrics.RECHARGES.labels("requires_action" if requires_action else "failed").inc()
            failures = policy.consecutive_failures + (0 if requires_action else 1)
            values: dict[str, Any] = {"consecutive_failures": failures, "last_failure_at": now,
                                      "last_failure_reason": reason, "updated_at": now}
            disable_reason = None
            if requires_action:
                disable_reason = "requires_action"
                await emit(conn, "auto_recharge.requires_action", data, f"auto-recharge:{top_up_id}:requires_action",
                           customer_id=top_up.customer_id, now=now)
            elif failures >= max_failures:
                disable_reason = "consecutive_declines"
                metrics.RECHARGES.labels("disabled").inc()
                await emit(
                    conn, "auto_recharge.disabled",
                    {**data, "reason": disable_reason, "consecutive_failures": failures},
                    f"auto-recharge:{top_up_id}:disabled", customer_id=top_up.customer_id, now=now,
                )
            if disable_reason is not None and policy.enabled:
                values.update(enabled=False, disabled_reason=disable_reason)
                await repo.set_account_threshold(conn, top_up.customer_id, top_up.asset, None, now)
            await repo.update_policy(conn, top_up.customer_id, top_up.asset, **values)
            return FailureOutcome(consecutive_failures=failures, disabled=disable_reason is not None or not policy.enabled)

        return await self._run(work)

    # --- the trigger outbox --------------------------------------------------------------------

    async def pending_triggers(self, limit: int) -> list[PendingTrigger]:
        async with self.engine.connect() as conn:
            rows = await repo.pending_triggers(conn, limit)
        return [PendingTrigger(r.id, r.customer_id, r.asset, r.available, r.source) for r in rows]

    async def mark_relayed(self, trigger: PendingTrigger) -> None:
        """The workflow has been signalled: close the row, and for a threshold crossing tell the
        platform the balance is low (in the same transaction, once per row)."""

        async def work(conn: AsyncConnection) -> None:
            now = self.clock()
            if not await repo.mark_relayed(conn, trigger.id, now):
                return
            if trigger.source == "threshold":
                policy = await repo.get_policy(conn, trigger.customer_id, trigger.asset)
                await emit(
                    conn, "balance.low",
                    {"customer_id": str(trigger.customer_id), "asset": trigger.asset, "available": trigger.available,
                     "threshold": policy.threshold if policy else None, "auto_recharge": True},
                    f"recharge-trigger:{trigger.id}:balance.low", customer_id=trigger.customer_id, now=now,
                )

        await self._run(work)

    async def enqueue_below_threshold(self, limit: int) -> int:
        """The sweep's half: a trigger for every enabled wallet under its threshold that has none."""

        async def work(conn: AsyncConnection) -> int:
            return await repo.enqueue_below_threshold(conn, self.clock(), limit)

        return await self._run(work)

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        # A lost race on a unique key (two writers of one policy) re-runs ``work``, which then
        # sees the winner's row.
        return await in_transaction_after_races(self.engine, work)


class ChargeNotCreditable(WalletflowError):
    code = "invalid_status_transition"
    status = 409
    title = "Charge cannot be credited"


def _check_money(value: Any, field: str, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1) or value > MAX_AMOUNT:
        low = 0 if allow_zero else 1
        raise ValidationError(f"{field} must be an integer from {low} to {MAX_AMOUNT} (minor units)", field=field)


def policy_info(row: Row[Any]) -> PolicyInfo:
    return PolicyInfo(
        row.customer_id, row.asset, row.threshold, row.target, row.payment_method_id, row.daily_cap,
        row.monthly_cap, row.enabled, row.disabled_reason,
        Consent(row.consent_at, row.consent_method, row.consent_text), row.consecutive_failures,
        row.last_failure_at, row.last_failure_reason, row.last_charge_at, row.charge_seq,
        recharge_workflow_id(str(row.customer_id), row.asset), row.created_at, row.updated_at,
    )
