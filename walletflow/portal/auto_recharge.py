"""The customer's auto-recharge settings as the portal shows and changes them.

The storage and every rule belong to the recharge module (:class:`walletflow.recharge.service.Recharges`):
this only converts between what the customer types (decimal amounts in whole units) and the
policy, keeps the saved card the platform set up, and records the customer's own consent when
they turn recharging on from the portal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from walletflow.errors import ValidationError
from walletflow.portal.views import format_amount, minor_units, plain_amount
from walletflow.recharge.schemas import Consent, PolicyInfo
from walletflow.recharge.service import Recharges

CONSENT_METHOD = "billing_portal"


def consent_text(asset: str, scale: int, threshold: int, target: int, daily_cap: int, monthly_cap: int) -> str:
    """The words the customer agrees to, stored with the policy as the record of consent."""
    def f(value: int) -> str:
        return f"{format_amount(value, scale)} {asset}"

    return (
        f"I authorise charges to my saved card without me being present: when my available {asset} "
        f"balance falls below {f(threshold)}, my card is charged to bring it back to {f(target)}, "
        f"at most {f(daily_cap)} a day and {f(monthly_cap)} a month, until I turn this off."
    )


@dataclass(frozen=True)
class PolicyView:
    """One policy as the page renders it (amounts as the form shows them)."""

    asset: str
    scale: int
    threshold: str
    target: str
    daily_cap: str
    monthly_cap: str
    enabled: bool
    disabled_reason: str | None
    last_failure_reason: str | None
    last_charge_at: dt.datetime | None
    consent_at: dt.datetime
    consent_method: str


def view(policy: PolicyInfo, scale: int) -> PolicyView:
    return PolicyView(
        policy.asset, scale, plain_amount(policy.threshold, scale), plain_amount(policy.target, scale),
        plain_amount(policy.daily_cap, scale), plain_amount(policy.monthly_cap, scale), policy.enabled, policy.disabled_reason, policy.last_failure_reason,
        policy.last_charge_at, policy.consent.at, policy.consent.method,
    )


async def update(
    recharges: Recharges, customer_id: uuid.UUID, asset: str, scale: int, *, threshold: str, target: str,
    daily_cap: str, monthly_cap: str, enabled: bool, consent: bool, now: dt.datetime,
) -> PolicyInfo:
    """Change the customer's existing policy for ``asset``.

    The portal changes a policy the platform set up (with the saved card); it cannot create one,
    because a policy needs a card saved for off-session use. Turning it on (or keeping it on with
    new amounts) needs the customer's consent to exactly these amounts, recorded as given here;
    turning it off keeps the consent on record.

    Raises:
        NotFound: the customer has no policy for ``asset``.
        ValidationError: amounts malformed or inconsistent, or consent missing when enabled.
    """
    current = await recharges.get_policy(customer_id, asset)
    values = {
        "threshold": minor_units(threshold, scale, "threshold", allow_zero=True),
        "target": minor_units(target, scale, "target"),
        "daily_cap": minor_units(daily_cap, scale, "daily_cap"),
        "monthly_cap": minor_units(monthly_cap, scale, "monthly_cap"),
    }
    if enabled:
        if not consent:
            raise ValidationError("tick the box to agree to the charges before turning auto-recharge on", field="consent")
        record = Consent(now, CONSENT_METHOD, consent_text(asset, scale, **values))
    else:
        record = current.consent
    return await recharges.set_policy(
        customer_id, asset=asset, payment_method_id=current.payment_method_id, enabled=enabled, consent=record, **values
    )
