"""The only module that talks to Stripe: the official SDK's ``StripeClient``, async calls.

Stripe keeps idempotency keys for 24 hours and localstripe ignores them altogether, so keys here
are a second line of defence only: callers look up what they created before (our database, then
Stripe's own records by metadata) before creating anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import stripe
from stripe._base_address import BaseAddresses

from walletflow.settings import Settings

log = logging.getLogger(__name__)

#: The metadata key that ties a Stripe object to its walletflow top-up.
TOP_UP_METADATA_KEY = "walletflow_top_up_id"
#: Bound on how many PaymentIntents of one customer we page through looking for a lost one.
MAX_LOOKUP = 1000

PaymentState = Literal["pending", "succeeded", "failed", "canceled"]


@dataclass(frozen=True)
class PaymentIntentInfo:
    id: str
    #: Stripe's own status (``requires_payment_method``, ``succeeded``, ``canceled``...).
    stripe_status: str
    amount: int
    amount_received: int
    currency: str
    client_secret: str | None
    metadata: dict[str, str]
    #: Machine code of the last failed attempt (``card_declined``), if any.
    last_error_code: str | None

    @property
    def state(self) -> PaymentState:
        """What the top-up cares about.

        A declined attempt leaves a PaymentIntent in ``requires_payment_method`` with its error:
        Stripe would let the customer try another card, but a top-up treats the decline as the
        end and cancels the PaymentIntent, so no later attempt can take money it ignores.
        """
        if self.stripe_status == "succeeded":
            return "succeeded"
        if self.stripe_status == "canceled":
            return "canceled"
        if self.stripe_status == "requires_payment_method" and self.last_error_code:
            return "failed"
        return "pending"


@dataclass(frozen=True)
class RefundInfo:
    id: str
    status: str
    amount: int


class StripeGateway:
    """Stripe calls used by top-ups. Every method is one or a few HTTP calls; no state."""

    def __init__(self, api_key: str, api_base: str | None = None, max_network_retries: int = 2) -> None:
        base: BaseAddresses | None = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=max_network_retries)

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(settings.stripe_api_key, settings.stripe_api_base)

    async def create_customer(self, walletflow_customer_id: str, idempotency_key: str) -> str:
        customer = await self.client.v1.customers.create_async(
            params={"metadata": {"walletflow_customer_id": walletflow_customer_id}},
            options={"idempotency_key": idempotency_key},
        )
        return customer.id

    async def create_payment_intent(
        self, *, amount: int, currency: str, customer: str, top_up_id: str, idempotency_key: str
    ) -> PaymentIntentInfo:
        intent = await self.client.v1.payment_intents.create_async(
            params={
                "amount": amount,
                "currency": currency.lower(),
                "customer": customer,
                "metadata": {TOP_UP_METADATA_KEY: top_up_id},
            },
            options={"idempotency_key": idempotency_key},
        )
        return _intent_info(intent)

    async def find_payment_intent(self, customer: str, top_up_id: str) -> PaymentIntentInfo | None:
        """The customer's PaymentIntent made for ``top_up_id``, if an earlier attempt created one.

        Lists by customer and matches our metadata, because a created-then-crashed attempt left
        no trace in our database and Stripe may have forgotten the idempotency key.
        """
        seen = 0
        page = await self.client.v1.payment_intents.list_async(params={"customer": customer, "limit": 100})
        while True:
            for intent in page.data:
                info = _intent_info(intent)
                if info.metadata.get(TOP_UP_METADATA_KEY) == top_up_id:
                    return info
            seen += len(page.data)
            if not page.has_more or not page.data or seen >= MAX_LOOKUP:
                return None
            page = await self.client.v1.payment_intents.list_async(
                params={"customer": customer, "limit": 100, "starting_after": page.data[-1].id}
            )

    async def client_secret_for(self, payment_intent_id: str) -> str | None:
        """The secret Stripe.js needs to confirm the payment, read from Stripe at the moment it
        is handed out (it is never stored, logged or put in workflow history)."""
        return (await self.retrieve_payment_intent(payment_intent_id)).client_secret

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        return _intent_info(await self.client.v1.payment_intents.retrieve_async(payment_intent_id))

    async def cancel_payment_intent(self, payment_intent_id: str) -> PaymentIntentInfo:
        """Cancel unless it already finished; returns the PaymentIntent as it now stands."""
        current = await self.retrieve_payment_intent(payment_intent_id)
        if current.stripe_status in ("succeeded", "canceled", "processing"):
            return current
        try:
            return _intent_info(await self.client.v1.payment_intents.cancel_async(payment_intent_id))
        except stripe.InvalidRequestError:
            # It changed under us (a payment went through at the last moment): report the truth.
            return await self.retrieve_payment_intent(payment_intent_id)

    async def card_fingerprint(self, payment_intent_id: str) -> str | None:
        """Stripe's fingerprint of the card that paid (the same card number always gives the
        same fingerprint), or None if the payment was not made with a card."""
        intent = (await self.client.v1.payment_intents.retrieve_async(payment_intent_id)).to_dict()
        method_id = intent.get("payment_method")
        if isinstance(method_id, dict):
            method_id = method_id.get("id")
        if not isinstance(method_id, str):
            return None
        method = (await self.client.v1.payment_methods.retrieve_async(method_id)).to_dict()
        fingerprint = (method.get("card") or {}).get("fingerprint")
        return fingerprint if isinstance(fingerprint, str) else None

    async def find_refund(self, payment_intent_id: str) -> RefundInfo | None:
        page = await self.client.v1.refunds.list_async(params={"payment_intent": payment_intent_id, "limit": 100})
        for refund in page.data:
            if refund.status in ("succeeded", "pending", "requires_action"):
                return RefundInfo(refund.id, refund.status, refund.amount)
        return None

    async def refund(self, payment_intent_id: str, idempotency_key: str) -> RefundInfo:
        """Refund a payment in full, unless a refund for it exists already."""
        existing = await self.find_refund(payment_intent_id)
        if existing is not None:
            return existing
        refund = await self.client.v1.refunds.create_async(
            params={"payment_intent": payment_intent_id}, options={"idempotency_key": idempotency_key}
        )
        return RefundInfo(refund.id, refund.status or "pending", refund.amount)


def _intent_info(intent: Any) -> PaymentIntentInfo:
    raw = intent.to_dict()
    error = raw.get("last_payment_error") or None
    return PaymentIntentInfo(
        id=raw["id"],
        stripe_status=raw["status"],
        amount=raw["amount"],
        amount_received=raw.get("amount_received") or 0,
        currency=raw["currency"],
        client_secret=raw.get("client_secret"),
        metadata=dict(raw.get("metadata") or {}),
        last_error_code=(error.get("code") or "payment_failed") if error else None,
    )
