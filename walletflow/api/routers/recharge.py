"""Auto-recharge policies: ``PUT /v1/customers/{id}/auto-recharge`` and reading them back.

Saving a policy also saves the card for off-session use (attached to the customer's Stripe
customer, created on first need) and records the customer's consent. The recharge itself runs
in the wallet's workflow, ``auto-recharge-{customer_id}-{asset}``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import stripe
from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from walletflow.api.deps import ServicesDep, require
from walletflow.errors import WalletflowError
from walletflow.ledger.schemas import MAX_AMOUNT
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.recharge.schemas import Consent, PolicyInfo
from walletflow.recharge.service import Recharges
from walletflow.recharge.stripe_charges import ensure_stripe_customer, save_payment_method

log = logging.getLogger(__name__)
router = APIRouter(tags=["auto-recharge"])


class StripeUnavailable(WalletflowError):
    code = "stripe_unavailable"
    status = 503
    title = "Stripe could not be reached"


class ConsentIn(BaseModel):
    at: dt.datetime = Field(description="When the customer agreed to off-session charges (with a time zone).")
    method: str = Field(min_length=1, max_length=64, description="How: `checkbox`, `signed_terms`, `api`...")
    text: str | None = Field(default=None, max_length=10_000, description="The words the customer agreed to.")

    @model_validator(mode="after")
    def aware(self) -> ConsentIn:
        if self.at.tzinfo is None:
            raise ValueError("consent.at needs a time zone (e.g. 2026-11-27T10:00:00Z)")
        return self


class AutoRechargeIn(BaseModel):
    asset: str = Field(min_length=2, max_length=16, description="The fiat wallet to refill (its currency code).")
    threshold: int = Field(ge=0, le=MAX_AMOUNT, strict=True, description="Recharge below this available balance.")
    target: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="Each recharge refills to this, in one charge.")
    payment_method_id: str = Field(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_]+$",
                                   description="Stripe PaymentMethod (`pm_...`) to charge off-session.")
    daily_cap: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="At most this much charged per UTC day.")
    monthly_cap: int = Field(gt=0, le=MAX_AMOUNT, strict=True, description="At most this much per UTC month.")
    enabled: bool = True
    consent: ConsentIn | None = Field(default=None, description="Required: the customer's consent.")

    @model_validator(mode="after")
    def consistent(self) -> AutoRechargeIn:
        if self.target <= self.threshold:
            raise ValueError("target must be above threshold")
        if self.daily_cap > self.monthly_cap:
            raise ValueError("daily_cap cannot exceed monthly_cap")
        return self


class ConsentOut(BaseModel):
    at: dt.datetime
    method: str
    text: str | None


class AutoRechargeOut(BaseModel):
    customer_id: uuid.UUID
    asset: str
    threshold: int
    target: int
    payment_method_id: str
    daily_cap: int
    monthly_cap: int
    enabled: bool
    #: Why walletflow turned it off: ``consecutive_declines`` or ``requires_action``.
    disabled_reason: str | None
    consent: ConsentOut
    consecutive_failures: int
    last_failure_at: dt.datetime | None
    last_failure_reason: str | None
    last_charge_at: dt.datetime | None
    workflow_id: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, p: PolicyInfo) -> AutoRechargeOut:
        return cls(
            customer_id=p.customer_id, asset=p.asset, threshold=p.threshold, target=p.target,
            payment_method_id=p.payment_method_id, daily_cap=p.daily_cap, monthly_cap=p.monthly_cap,
            enabled=p.enabled, disabled_reason=p.disabled_reason,
            consent=ConsentOut(at=p.consent.at, method=p.consent.method, text=p.consent.text),
            consecutive_failures=p.consecutive_failures, last_failure_at=p.last_failure_at,
            last_failure_reason=p.last_failure_reason, last_charge_at=p.last_charge_at,
            workflow_id=p.workflow_id, created_at=p.created_at, updated_at=p.updated_at,
        )


class AutoRechargeList(BaseModel):
    data: list[AutoRechargeOut]
    next_cursor: str | None = None


@router.put("/customers/{customer_id}/auto-recharge", dependencies=[require("admin")])
async def put_auto_recharge(customer_id: uuid.UUID, body: AutoRechargeIn, services: ServicesDep) -> AutoRechargeOut:
    """Create or replace the wallet's policy. Enabling (or re-enabling) clears walletflow's own
    disable; a wallet already under the threshold starts recharging at once."""
    recharges = Recharges(services.engine)
    await recharges.list_policies(customer_id)  # 404 for an unknown customer, before Stripe
    await services.ledger.get_asset(body.asset)  # 404 for an unknown asset, before Stripe
    consent = Consent(body.consent.at, body.consent.method, body.consent.text) if body.consent else None
    if consent is not None:
        gateway = StripeGateway.from_settings(services.settings)
        try:
            stripe_customer = await ensure_stripe_customer(services.topups, gateway, customer_id)
            await save_payment_method(gateway, stripe_customer, body.payment_method_id)
        except stripe.StripeError as exc:
            # Not the card's fault (those are typed above): Stripe is down or misconfigured.
            log.warning("saving the card for %s failed: %s", customer_id, type(exc).__name__)
            raise StripeUnavailable("the card could not be saved at Stripe; nothing was changed, try again") from exc
    policy = await recharges.set_policy(
        customer_id, asset=body.asset, threshold=body.threshold, target=body.target,
        payment_method_id=body.payment_method_id, daily_cap=body.daily_cap, monthly_cap=body.monthly_cap,
        enabled=body.enabled, consent=consent,
    )
    return AutoRechargeOut.of(policy)


@router.get("/customers/{customer_id}/auto-recharge", dependencies=[require("read")])
async def list_auto_recharge(customer_id: uuid.UUID, services: ServicesDep) -> AutoRechargeList:
    """The customer's policies, one per asset."""
    policies = await Recharges(services.engine).list_policies(customer_id)
    return AutoRechargeList(data=[AutoRechargeOut.of(p) for p in policies])


@router.get("/customers/{customer_id}/auto-recharge/{asset}", dependencies=[require("read")])
async def get_auto_recharge(customer_id: uuid.UUID, asset: str, services: ServicesDep) -> AutoRechargeOut:
    return AutoRechargeOut.of(await Recharges(services.engine).get_policy(customer_id, asset))
