"""The Stripe calls of auto-recharge, on top of the top-ups' ``StripeGateway`` (kept apart so the
top-up module stays untouched): saving the card on the customer, and the off-session charge.

Stripe keeps idempotency keys for 24 hours and localstripe ignores them, so the key sent here
is a second line of defence: the charge activity first looks for a PaymentIntent an earlier
attempt created (our database, then Stripe's records by the top-up id in its metadata).
"""

from __future__ import annotations

import uuid

import stripe

from walletflow.errors import ValidationError, WalletflowError
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import TOP_UP_METADATA_KEY, PaymentIntentInfo, StripeGateway, _intent_info

#: Set on every auto-recharge PaymentIntent: which recharge workflow made it.
AUTO_RECHARGE_METADATA_KEY = "walletflow_auto_recharge"


class PaymentMethodRefused(WalletflowError):
    code = "payment_method_refused"
    status = 422
    title = "Stripe refused the payment method"


async def save_payment_method(gateway: StripeGateway, stripe_customer: str, payment_method_id: str) -> None:
    """Attach the card to the customer's Stripe customer (off-session charges need that), unless
    it already is. A card attached to another customer is refused."""
    try:
        method = await gateway.client.v1.payment_methods.retrieve_async(payment_method_id)
    except stripe.InvalidRequestError as exc:
        raise ValidationError(f"payment method {payment_method_id} not found at Stripe",
                              field="payment_method_id") from exc
    owner = method.to_dict().get("customer")
    if owner == stripe_customer:
        return
    if owner:
        raise ValidationError("the payment method belongs to another Stripe customer", field="payment_method_id")
    try:
        await gateway.client.v1.payment_methods.attach_async(payment_method_id, params={"customer": stripe_customer})
    except stripe.CardError as exc:
        raise PaymentMethodRefused(f"Stripe refused to save the card: {exc.code or 'card_error'}",
                                   field="payment_method_id") from exc


async def charge_off_session(
    gateway: StripeGateway, *, amount: int, currency: str, stripe_customer: str, payment_method_id: str,
    top_up_id: str, workflow_id: str, idempotency_key: str,
) -> PaymentIntentInfo | None:
    """Create and confirm an off-session PaymentIntent on the saved card.

    Returns it as Stripe left it (``succeeded``, ``requires_action`` for 3-D Secure,
    ``requires_payment_method`` with the decline), or None if Stripe declined before answering
    with one (the caller then looks it up by metadata).
    """
    try:
        intent = await gateway.client.v1.payment_intents.create_async(
            params={
                "amount": amount, "currency": currency.lower(), "customer": stripe_customer,
                "payment_method": payment_method_id, "off_session": True, "confirm": True,
                "metadata": {TOP_UP_METADATA_KEY: top_up_id, AUTO_RECHARGE_METADATA_KEY: workflow_id},
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError:
        # A decline answers 402; the PaymentIntent exists at Stripe with the error on it.
        return None
    return _intent_info(intent)


async def ensure_stripe_customer(top_ups: TopUps, gateway: StripeGateway, customer_id: uuid.UUID) -> str:
    """The customer's Stripe customer, created and linked on first need (as a first top-up does)."""
    linked = await top_ups.stripe_customer_id(customer_id)
    if linked is not None:
        return linked
    created = await gateway.create_customer(str(customer_id), idempotency_key=f"customer-{customer_id}:stripe")
    return await top_ups.link_stripe_customer(customer_id, created)
