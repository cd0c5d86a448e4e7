"""The only module that talks to Stripe: the official SDK's ``StripeClient``, async calls.

Stripe keeps idempotency keys for 24 hours and localstripe ignores them altogether, so keys here
are a second line of defence only: callers look up what they created before (our database, then
Stripe's own records by metadata) before creating anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import stripe
from stripe._base_address import BaseAddresses

from walletflow.settings import Settings

log = logging.getLogger(__name__)

#: The metadata key that ties a Stripe object to its walletflow top-up.
TOP_UP_METADATA_KEY = "walletflow_top_up_id"
#: The metadata key that ties a Stripe refund to its walletflow refund (refunds of credited top-ups).
REFUND_METADATA_KEY = "walletflow_refund_id"
#: Bound on how many PaymentIntents of one customer we page through looking for a lost one.
MAX_LOOKUP = 1000

T = TypeVar("T")

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
class CheckoutInfo:
    id: str
    #: ``open``, ``complete`` or ``expired``.
    status: str
    #: ``unpaid`` or ``paid``.
    payment_status: str
    #: Known once the customer has paid (Stripe creates it lazily).
    payment_intent_id: str | None
    url: str | None
    metadata: dict[str, str]


@dataclass(frozen=True)
class RefundInfo:
    id: str
    status: str
    amount: int


class StripeGateway:
    """Stripe calls used by top-ups. Every method is one or a few HTTP calls; no state."""

    def __init__(
        self, api_key: str, api_base: str | None = None, max_network_retries: int = 2, timeout_s: float = 30.0
    ) -> None:
        base: BaseAddresses | None = {"api": api_base} if api_base else None
        # A call that hangs is abandoned after ``timeout_s`` (the SDK's own default is 80 s) and
        # retried: every create here is looked up before it is made again.
        http = stripe.RequestsClient(timeout=timeout_s, async_fallback_client=stripe.HTTPXClient(timeout=timeout_s))
        self.client = stripe.StripeClient(
            api_key, base_addresses=base, max_network_retries=max_network_retries, http_client=http
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(settings.stripe_api_key, settings.stripe_api_base, timeout_s=settings.stripe_timeout_s)

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

    async def create_checkout_session(
        self, *, amount: int, currency: str, customer: str, top_up_id: str, return_url: str, idempotency_key: str
    ) -> CheckoutInfo:
        """A hosted payment page for the top-up; its PaymentIntent carries the top-up id too."""
        session = await self.client.v1.checkout.sessions.create_async(
            params={
                "mode": "payment",
                "customer": customer,
                "line_items": [{
                    "price_data": {"currency": currency.lower(), "unit_amount": amount,
                                   "product_data": {"name": "Wallet top-up"}},
                    "quantity": 1,
                }],
                "success_url": return_url,
                "cancel_url": return_url,
                "client_reference_id": top_up_id,
                "metadata": {TOP_UP_METADATA_KEY: top_up_id},
                "payment_intent_data": {"metadata": {TOP_UP_METADATA_KEY: top_up_id}},
            },
            options={"idempotency_key": idempotency_key},
        )
        return _checkout_info(session)

    async def find_checkout_session(self, customer: str, top_up_id: str) -> CheckoutInfo | None:
        """The customer's Checkout Session made for ``top_up_id`` by an interrupted attempt, if any."""
        page = await self.client.v1.checkout.sessions.list_async(params={"customer": customer, "limit": 100})
        for session in page.data:
            info = _checkout_info(session)
            if info.metadata.get(TOP_UP_METADATA_KEY) == top_up_id:
                return info
        return None

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutInfo:
        return _checkout_info(await self.client.v1.checkout.sessions.retrieve_async(session_id))

    async def expire_checkout_session(self, session_id: str) -> CheckoutInfo:
        """Close the hosted page so it can take no money; returns the session as it now stands."""
        current = await self.retrieve_checkout_session(session_id)
        if current.status != "open":
            return current
        try:
            return _checkout_info(await self.client.v1.checkout.sessions.expire_async(session_id))
        except stripe.InvalidRequestError:
            # Paid at the last moment: report the truth.
            return await self.retrieve_checkout_session(session_id)

    async def handoff(self, payment_intent_id: str | None, checkout_session_id: str | None) -> tuple[str | None, str | None]:
        """What the payer needs, read from Stripe at the moment it is handed out (never stored,
        logged or put in workflow history): the PaymentIntent's client secret for Stripe.js, or
        the open Checkout Session's URL."""
        # The payment exists already: a Stripe hiccup here must not fail the request, so these
        # reads (safe to repeat) get a few more tries than the SDK's own.
        secret = url = None
        if payment_intent_id:
            secret = await _read_with_retries(lambda: self.client_secret_for(payment_intent_id))
        if checkout_session_id:
            session = await _read_with_retries(lambda: self.retrieve_checkout_session(checkout_session_id))
            url = session.url if session.status == "open" else None
        return secret, url

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

    async def refund_part(self, payment_intent_id: str, amount: int, refund_id: str, idempotency_key: str) -> RefundInfo:
        """Refund ``amount`` of a payment for walletflow refund ``refund_id``, unless Stripe already
        has a refund carrying that id (an earlier attempt that crashed before we recorded it)."""
        page = await self.client.v1.refunds.list_async(params={"payment_intent": payment_intent_id, "limit": 100})
        for refund in page.data:
            raw = refund.to_dict()
            if (raw.get("metadata") or {}).get(REFUND_METADATA_KEY) == refund_id and raw.get("status") != "failed":
                return RefundInfo(raw["id"], raw.get("status") or "pending", raw["amount"])
        refund = await self.client.v1.refunds.create_async(
            params={"payment_intent": payment_intent_id, "amount": amount, "metadata": {REFUND_METADATA_KEY: refund_id}},
            options={"idempotency_key": idempotency_key},
        )
        return RefundInfo(refund.id, refund.status or "pending", refund.amount)


#: Stripe errors worth another try: the request may simply not have got through.
TRANSIENT_STRIPE_ERRORS = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)


async def _read_with_retries(read: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return await read()
        except TRANSIENT_STRIPE_ERRORS:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.25 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _checkout_info(session: Any) -> CheckoutInfo:
    raw = session.to_dict()
    intent = raw.get("payment_intent")
    return CheckoutInfo(
        id=raw["id"], status=raw.get("status") or "open", payment_status=raw.get("payment_status") or "unpaid",
        payment_intent_id=intent.get("id") if isinstance(intent, dict) else intent,
        url=raw.get("url"), metadata=dict(raw.get("metadata") or {}),
    )


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
