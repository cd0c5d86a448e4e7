"""Pure rules: what a Stripe object becomes in walletflow, or why it cannot be mapped.

Nothing here does I/O, so the rules are unit-tested on Stripe's shapes alone.

Credit:

- Customer balance: Stripe's ``balance`` is negative for credit the customer can spend (and
  positive for money the customer owes). Credit becomes one ``migrated`` grant of ``-balance``,
  priority :data:`BALANCE_PRIORITY`, no expiry. A positive balance is debt: it is **not**
  imported (walletflow would have to put the wallet in overdraft silently); it is listed in the
  report's ``debts`` so the operator settles it at Stripe or posts an adjustment on purpose.
- Billing credit grant: the part still available (Stripe's credit balance summary for the
  grant) becomes one grant keeping ``expires_at``, ``effective_at`` (a future one is scheduled),
  ``priority`` and ``category``: ``paid`` -> source ``paid``, ``promotional`` -> source
  ``promotional``. Stripe's priority is 0-100 where a lower number is used first, which is
  walletflow's order too, so the number is kept as is (Stripe's default 50 included). Voided,
  expired and used-up grants are skipped (reported); non-monetary grants are unmapped.
- Stripe applies credit grants to metered usage before the customer balance touches the
  invoice total, so the balance grant gets priority 101: after every imported grant.

Prices: a recurring ``metered`` Price maps to one walletflow price of its product: the
``event_type`` is the meter's ``event_name``, the quantity the meter's
``value_settings.event_payload_key`` (sum) or 1 per event (count); ``per_unit`` keeps
``unit_amount_decimal`` (already minor units per unit), tiered ``graduated`` -> ``tiered``,
``volume`` -> ``volume`` (tiers keep ``up_to``, unit and flat amounts). Anything else is
unmapped with a reason: licensed prices, one-time prices, metered prices without a meter
(legacy usage records: no event name to key on), ``last`` aggregation, ``transform_quantity``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

#: ISO 4217 currencies without minor units, and with three decimals (Stripe's lists).
ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
BALANCE_PRIORITY = 101
#: Stripe's default credit grant priority.
DEFAULT_GRANT_PRIORITY = 50
_DECIMAL = re.compile(r"^\d{1,16}(\.\d{1,18})?$")


def asset_for(currency: str) -> tuple[str, int]:
    """The walletflow fiat asset for a Stripe currency: upper-case code and its scale."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return code, 0
    if code in THREE_DECIMAL:
        return code, 3
    return code, 2


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), dt.UTC) if value else None


@dataclass(frozen=True)
class PlannedGrant:
    """One grant to create; ``key`` is the ledger idempotency key (from Stripe ids only)."""

    key: str
    asset: str
    amount: int
    source: str
    priority: int
    expires_at: dt.datetime | None
    effective_at: dt.datetime | None
    origin: str  # "balance" or "credit_grant"
    stripe_id: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "asset": self.asset, "amount": self.amount, "source": self.source,
                "priority": self.priority, "origin": self.origin, "stripe_id": self.stripe_id,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "effective_at": self.effective_at.isoformat() if self.effective_at else None}


def balance_key(stripe_customer_id: str) -> str:
    """One key per customer, not per balance transaction: if the balance changed after an import,
    the new amount conflicts with the key (reported as a difference) instead of importing a
    second grant on top of the first."""
    return f"migration:stripe:balance:{stripe_customer_id}"


def credit_grant_key(grant_id: str) -> str:
    return f"migration:stripe:credit_grant:{grant_id}"


def plan_balance(customer: dict[str, Any], latest_txn_id: str | None) -> tuple[PlannedGrant | None, dict[str, Any] | None]:
    """The customer's balance as a planned grant (credit), or as a debt to report."""
    balance = int(customer.get("balance") or 0)
    if balance == 0:
        return None, None
    currency = customer.get("currency")
    if not currency:
        return None, {"reason": "balance without a currency", "balance": balance}
    asset, _ = asset_for(currency)
    if balance > 0:
        return None, {"reason": "debt", "asset": asset, "amount": balance}
    meta = {"stripe_customer_id": customer["id"], "stripe": "customer_balance"}
    if latest_txn_id:
        meta["stripe_balance_transaction"] = latest_txn_id
    return PlannedGrant(balance_key(customer["id"]), asset, -balance, "migrated", BALANCE_PRIORITY, None, None,
                        "balance", customer["id"], meta), None


def plan_credit_grant(
    grant: dict[str, Any], available: dict[str, int] | None, now: dt.datetime
) -> tuple[PlannedGrant | None, str | None]:
    """A Stripe billing credit grant as a planned grant, or the reason it is skipped/unmapped.

    ``available`` is what Stripe's credit balance summary says is left of the grant (None: not
    asked because the grant is already void or expired).
    """
    amount = grant.get("amount") or {}
    if amount.get("type") != "monetary" or not (amount.get("monetary") or {}).get("currency"):
        return None, "unmapped: not a monetary grant"
    if grant.get("voided_at"):
        return None, "skipped: voided"
    expires_at = _ts(grant.get("expires_at"))
    if expires_at is not None and expires_at <= now:
        return None, "skipped: expired"
    currency = amount["monetary"]["currency"]
    left = (available or {}).get(currency, 0)
    if left <= 0:
        return None, "skipped: used up"
    category = grant.get("category")
    if category not in ("paid", "promotional"):
        return None, f"unmapped: category {category!r}"
    priority = grant.get("priority")
    priority = DEFAULT_GRANT_PRIORITY if priority is None else int(priority)
    effective_at = _ts(grant.get("effective_at"))
    asset, _ = asset_for(currency)
    meta = {"stripe_credit_grant": grant["id"], "stripe_customer_id": grant.get("customer"),
            "stripe_amount": int(amount["monetary"]["value"]), "stripe_category": category}
    if grant.get("name"):
        meta["stripe_name"] = grant["name"]
    return PlannedGrant(
        credit_grant_key(grant["id"]), asset, left, category, priority, expires_at,
        effective_at if effective_at is not None and effective_at > now else None,
        "credit_grant", grant["id"], meta,
    ), None


def _decimal(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return text if _DECIMAL.match(text) else None


def map_price(price: dict[str, Any], meters: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """A Stripe Price as a walletflow ``Price`` definition, or the reason it cannot be mapped."""
    recurring = price.get("recurring") or None
    if recurring is None:
        return None, "one-time price (not metered)"
    if recurring.get("usage_type") != "metered":
        return None, "licensed price (not metered)"
    if price.get("transform_quantity"):
        return None, "transform_quantity is not supported"
    meter_id = recurring.get("meter")
    if not meter_id:
        return None, "metered price without a billing meter: no event name to map usage to"
    meter = meters.get(meter_id)
    if meter is None:
        return None, f"meter {meter_id} not found"
    formula = (meter.get("default_aggregation") or {}).get("formula")
    if formula not in ("sum", "count"):
        return None, f"meter aggregation {formula!r} is not supported"
    asset, _ = asset_for(price["currency"])
    definition: dict[str, Any] = {"event_type": meter["event_name"], "asset": asset}
    if formula == "sum":
        definition["quantity_field"] = (meter.get("value_settings") or {}).get("event_payload_key") or "value"
    scheme = price.get("billing_scheme") or "per_unit"
    if scheme == "per_unit":
        unit = _decimal(price.get("unit_amount_decimal") if price.get("unit_amount_decimal") is not None
                        else price.get("unit_amount"))
        if unit is None:
            return None, "per-unit price without a usable unit amount"
        definition.update(model="per_unit", unit_price=unit)
        return definition, None
    if scheme != "tiered":
        return None, f"billing scheme {scheme!r} is not supported"
    mode = price.get("tiers_mode")
    if mode not in ("graduated", "volume"):
        return None, f"tiers mode {mode!r} is not supported"
    tiers = []
    for tier in price.get("tiers") or []:
        unit = _decimal(tier.get("unit_amount_decimal") if tier.get("unit_amount_decimal") is not None
                        else tier.get("unit_amount") or 0)
        if unit is None:
            return None, "tier without a usable unit amount"
        out: dict[str, Any] = {"up_to": tier.get("up_to"), "unit_price": unit}
        flat = tier.get("flat_amount")
        if flat is None and tier.get("flat_amount_decimal") not in (None, "0"):
            return None, "fractional flat amount is not supported"
        if flat:
            out["flat_amount"] = int(flat)
        tiers.append(out)
    if not tiers:
        return None, "tiered price without tiers"
    definition.update(model="tiered" if mode == "graduated" else "volume", tiers=tiers)
    return definition, None


def product_code_for(stripe_product_id: str) -> str:
    """walletflow product codes are lower-case (``stripe-prod_abc-1a2b3c`` from ``prod_AbC``); Stripe
    ids are case-sensitive, so a short hash of the exact id keeps two ids from sharing a code."""
    digest = hashlib.sha256(stripe_product_id.encode()).hexdigest()[:6]
    return "stripe-" + re.sub(r"[^a-z0-9_.-]", "-", stripe_product_id.lower())[:50] + "-" + digest
