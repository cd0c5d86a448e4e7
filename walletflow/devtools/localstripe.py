"""localstripe (the fake Stripe of the tests and of ``walletflow dev``) with extensions, each with Stripe's semantics: ``GET /v1/payment_intents?customer=``,
refunds refused beyond what is left of the charge, Checkout Sessions (payment mode), standalone
invoices (create, items attached to a draft, finalize), and an in-memory store.

Real Stripe filters PaymentIntents by customer; localstripe 1.15 answers 400 "Unexpected
customer". The gateway relies on the filter to find a PaymentIntent an interrupted attempt
created, so the tests add it here, with Stripe's semantics, instead of weakening the gateway.

Run as ``python -m walletflow.devtools.localstripe --port N [--store FILE]``. Stock
localstripe pickles its whole store to the fixed path ``/tmp/localstripe.pickle`` on every
write: two servers would overwrite each other's store, and each call slows down as the store
grows. The tests never restart it, so the store is kept in memory only; ``walletflow dev``
keeps it in its own file (``--store``) so customers and payments survive a restart.
"""

from __future__ import annotations

import argparse
import os
import pickle
from typing import Any

from localstripe import resources
from localstripe.errors import UserError
from localstripe.webhooks import schedule_webhook


def _list_payment_intents(cls: Any, url: str, customer: str | None = None, limit: Any = None,
                          starting_after: str | None = None, **kwargs: Any) -> Any:
    listed = resources.StripeObject._api_list_all.__func__(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        listed._list = [intent for intent in listed._list if intent.customer == customer]
    return listed


resources.PaymentIntent._api_list_all = classmethod(_list_payment_intents)  # type: ignore[method-assign,assignment]


_create_refund = resources.Refund.__init__


def _refund_within_charge(self: Any, charge: str | None = None, payment_intent: str | None = None,
                          amount: Any = None, metadata: Any = None, **kwargs: Any) -> None:
    """Stripe refuses a refund beyond what is left of the charge; localstripe 1.15 accepts it."""
    charge_id = charge
    if charge_id is None and isinstance(payment_intent, str):
        latest = resources.PaymentIntent._api_retrieve(payment_intent).latest_charge
        charge_id = getattr(latest, "id", latest)
    if isinstance(charge_id, str):
        charge_obj = resources.Charge._api_retrieve(charge_id)
        refunded = sum(r.amount for key, r in resources.store.items() if key.startswith("refund:") and r.charge == charge_id)
        if refunded >= charge_obj.amount:
            raise UserError(400, f"Charge {charge_id} has already been refunded.")
        wanted = int(amount) if amount is not None else charge_obj.amount - refunded
        if wanted > charge_obj.amount - refunded:
            raise UserError(400, f"Refund amount ({wanted}) is greater than unrefunded amount on charge "
                                 f"({charge_obj.amount - refunded})")
        if amount is None:
            amount = charge_obj.amount - refunded  # Stripe refunds what is left, not the whole charge
    _create_refund(self, charge=charge, payment_intent=payment_intent, amount=amount, metadata=metadata, **kwargs)


resources.Refund.__init__ = _refund_within_charge  # type: ignore[method-assign]


# --- invoices for postpaid settlement ----------------------------------------------------------
# localstripe 1.15 only makes invoices for subscriptions (a standalone one answers 404 "No
# upcoming invoices"), always sweeps the customer's pending items in, ignores ``metadata``,
# does not attach an item created with ``invoice=`` to that draft, and has no finalize route.
# Stripe's semantics, added here: create a draft for a customer (pending items excluded unless
# ``pending_invoice_items_behavior=include``), add items to it, finalize it (draft -> open).

_subscription_invoice = resources.Invoice._api_create


def _create_invoice(cls: Any, customer: str | None = None, subscription: str | None = None,
                    currency: str | None = None, metadata: Any = None, description: str | None = None,
                    pending_invoice_items_behavior: str | None = None, collection_method: str | None = None,
                    days_until_due: Any = None, auto_advance: Any = None, **kwargs: Any) -> Any:
    if subscription is not None:
        return _subscription_invoice(customer=customer, subscription=subscription, metadata=metadata,
                                     description=description, **kwargs)
    if kwargs or pending_invoice_items_behavior not in (None, "include", "exclude") \
            or collection_method not in (None, "send_invoice", "charge_automatically"):
        raise resources.UserError(400, "Bad request")
    if collection_method == "send_invoice" and days_until_due is None:
        raise resources.UserError(400, "Missing days_until_due for send_invoice")
    invoice = resources.Invoice(customer=customer, metadata=metadata, description=description)
    if pending_invoice_items_behavior != "include":  # Stripe's default: exclude
        for line in invoice.lines._list:
            resources.InvoiceItem._api_retrieve(line.invoice_item).invoice = None
        invoice.lines._list = []
    if currency:
        invoice.currency = currency.lower()
    invoice.collection_method = collection_method or "charge_automatically"
    invoice.days_until_due = int(days_until_due) if days_until_due is not None else None
    invoice.auto_advance = str(auto_advance).lower() != "false"
    return invoice


_item_init = resources.InvoiceItem.__init__


def _init_item(self: Any, invoice: str | None = None, period: Any = None, **kwargs: Any) -> None:
    if period is not None:  # Stripe's ``period[start]``/``period[end]``
        kwargs["period_start"], kwargs["period_end"] = period.get("start"), period.get("end")
    draft = None
    if invoice is not None:
        draft = resources.Invoice._api_retrieve(invoice)
        if draft.status != "draft":
            raise resources.UserError(400, "Invoice is not a draft")
        if kwargs.get("currency") and kwargs["currency"].lower() != draft.currency:
            raise resources.UserError(400, "Currency does not match the invoice")
    _item_init(self, invoice=invoice, **kwargs)
    if draft is not None:
        draft.lines._list.append(resources.InvoiceLineItem(self))


def _finalize_invoice(id: str, auto_advance: Any = None) -> Any:
    invoice = resources.Invoice._api_retrieve(id)
    if invoice.status != "draft":
        raise resources.UserError(400, "Invoice is not a draft")
    invoice._finalize()
    return invoice


resources.Invoice._api_create = classmethod(_create_invoice)  # type: ignore[method-assign,assignment]
resources.InvoiceItem.__init__ = _init_item  # type: ignore[method-assign]
resources.extra_apis.append(("POST", "/v1/invoices/{id}/finalize", _finalize_invoice))
STORE_PATH: str | None = None  # set by main(): where this server keeps its store, if anywhere


def _load_store(self: Any) -> None:
    if STORE_PATH is not None and os.path.exists(STORE_PATH):
        with open(STORE_PATH, "rb") as f:
            self.update(pickle.load(f))


def _dump_store(self: Any) -> None:
    if STORE_PATH is not None:  # write aside, then rename: a crash never leaves half a store
        with open(STORE_PATH + ".tmp", "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(STORE_PATH + ".tmp", STORE_PATH)


resources.Store.try_load_from_disk = _load_store  # type: ignore[method-assign]
resources.Store.dump_to_disk = _dump_store  # type: ignore[method-assign]



class CheckoutSession(resources.StripeObject):
    """Checkout Sessions in ``payment`` mode, which localstripe 1.15 lacks (404), with Stripe's
    shape: ``payment_intent`` stays null until the customer pays on the hosted page, which the
    tests do through the test-only ``POST /_test/checkout/sessions/{id}/complete``."""

    object = "checkout.session"
    _id_prefix = "cs_test_"

    def __init__(self, mode: Any = None, line_items: Any = None, customer: Any = None, success_url: Any = None,
                 cancel_url: Any = None, client_reference_id: Any = None, metadata: Any = None,
                 payment_intent_data: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        try:
            assert mode == "payment"
            assert isinstance(success_url, str) and success_url.startswith("http")
            assert isinstance(line_items, list) and len(line_items) == 1
            price = line_items[0]["price_data"]
            amount = int(price["unit_amount"]) * int(line_items[0].get("quantity", 1))
            currency = str(price["currency"]).lower()
            assert amount > 0 and len(currency) == 3
            assert customer is None or (isinstance(customer, str) and customer.startswith("cus_"))
        except (AssertionError, KeyError, TypeError, ValueError):
            raise UserError(400, "Bad request") from None
        super().__init__()
        self.mode = mode
        self.customer = customer
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.client_reference_id = client_reference_id
        self.metadata = metadata or {}
        self._payment_intent_metadata = (payment_intent_data or {}).get("metadata") or {}
        self.amount_total = amount
        self.currency = currency
        self.status = "open"
        self.payment_status = "unpaid"
        self.payment_intent = None
        self.url = f"https://checkout.stripe.com/c/pay/{self.id}"
        self.expires_at = self.created + 24 * 3600

    @classmethod
    def _api_list_all(cls, url: str, customer: str | None = None, limit: Any = None,
                      starting_after: str | None = None, **kwargs: Any) -> Any:
        listed = resources.StripeObject._api_list_all.__func__(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        if customer is not None:
            listed._list = [s for s in listed._list if s.customer == customer]
        return listed

    @classmethod
    def _api_expire(cls, id: str, **kwargs: Any) -> Any:
        session = cls._api_retrieve(id)
        if session.status != "open":
            raise UserError(400, f"Only Checkout Sessions with a status of open can be expired; this one is {session.status}.")
        session.status = "expired"
        schedule_webhook(resources.Event("checkout.session.expired", session))
        return session

    @classmethod
    def _api_complete(cls, id: str, payment_method: str = "pm_card_visa", **kwargs: Any) -> Any:
        """What the customer does on the hosted page: pay with a card (test-only)."""
        session = cls._api_retrieve(id)
        if session.status != "open":
            raise UserError(400, f"the session is {session.status}")
        intent = resources.PaymentIntent(
            amount=session.amount_total, currency=session.currency, customer=session.customer,
            payment_method=payment_method, metadata=dict(session._payment_intent_metadata),
        )
        resources.PaymentIntent._api_confirm(intent.id)
        if intent.status == "succeeded":
            session.status, session.payment_status, session.payment_intent = "complete", "paid", intent.id
            schedule_webhook(resources.Event("checkout.session.completed", session))
        return session


# --- Stripe.js confirming a PaymentIntent in the browser ----------------------------------------
# Stripe.js ``confirmCardPayment(clientSecret, {payment_method: {card: element}})`` posts the card
# to ``/v1/payment_intents/{id}/confirm`` with the *publishable* key and the client secret. The
# test Stripe.js of localstripe 1.15 only does the 3-D Secure step of that call, and its server
# answers 500 to a confirm that names a payment method and 401 to a publishable key there.
# Stripe's semantics, added here: a confirm may carry ``payment_method_data`` (a new card) with
# ``client_secret``, and is then allowed with a ``pk_`` key; the served Stripe.js sends it.


def _confirm_in_browser(id: str, client_secret: Any = None, payment_method_data: Any = None,
                        use_stripe_sdk: Any = None, return_url: Any = None, **kwargs: Any) -> Any:
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    intent = resources.PaymentIntent._api_retrieve(id)
    if client_secret is not None and client_secret != intent.client_secret:
        raise UserError(401, "Unauthorized")
    if payment_method_data is not None:
        if not isinstance(payment_method_data, dict) or intent.status != "requires_payment_method":
            raise UserError(400, "Bad request")
        intent.payment_method = resources.PaymentMethod(**payment_method_data).id
    return resources.PaymentIntent._api_confirm(id)


BROWSER_CONFIRM_JS = """
// walletflow tests: confirmCardPayment with a card Element confirms the PaymentIntent with the
// card first (as Stripe.js does), then runs localstripe's own 3-D Secure step only if asked to.
(function () {
  const makeStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = makeStripe(apiKey);
    const authenticate = stripe.confirmCardPayment;
    stripe.confirmCardPayment = async (clientSecret, data) => {
      const element = data && data.payment_method && data.payment_method.card;
      if (!element || !element.value) return authenticate(clientSecret, data);
      const pi = clientSecret.match(/^(pi_\\w+)_secret_/)[1];
      const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/payment_intents/${pi}/confirm`, {
        method: 'POST',
        body: JSON.stringify({key: apiKey, client_secret: clientSecret,
                              payment_method_data: {type: 'card', card: element.value.card}}),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status !== 200 || body.error) return {error: body.error || {message: 'declined'}};
      if (body.status === 'requires_action') return authenticate(clientSecret, data);
      if (body.status === 'succeeded' || body.status === 'processing' || body.status === 'requires_capture') {
        return {paymentIntent: body};
      }
      return {error: (body.last_payment_error || {message: `payment_intent has status ${body.status}`})};
    };
    return stripe;
  };
})();
"""


# Imported after the patches: the server binds each route to the class method at import time.
from aiohttp import web
from localstripe.server import (
    api_create,
    api_extra,
    api_list_all,
    api_retrieve,
    app,
    get_post_data,
    json_response,
    localstripe_js,
)


@web.middleware
async def _browser_confirm(request: web.Request, handler: Any) -> web.StreamResponse:
    """Publishable-key confirms from Stripe.js, and the Stripe.js that sends them."""
    if request.method == "GET" and request.path == "/js.stripe.com/v3/":
        original = localstripe_js(request)
        return web.Response(text=original.text + BROWSER_CONFIRM_JS, content_type="application/javascript")
    parts = request.path.split("/")
    if (request.method == "POST" and len(parts) == 5 and parts[1:3] == ["v1", "payment_intents"]
            and parts[4] == "confirm" and "Authorization" not in request.headers):
        data = await get_post_data(request, remove_auth=False) or {}
        if not (isinstance(data.get("key"), str) and data["key"].startswith("pk_") and data.get("client_secret")):
            raise UserError(401, "Unauthorized")
        data.pop("key")
        return json_response(_confirm_in_browser(parts[3], **data)._export())
    return await handler(request)


app.middlewares.insert(1, _browser_confirm)  # after the error middleware, before auth

for _method, _url, _route in (
    ("POST", "/v1/checkout/sessions/{id}/expire", api_extra(CheckoutSession._api_expire, "")),
    ("POST", "/_test/checkout/sessions/{id}/complete", api_extra(CheckoutSession._api_complete, "")),
    ("POST", "/v1/checkout/sessions", api_create(CheckoutSession, "/v1/checkout/sessions")),
    ("GET", "/v1/checkout/sessions/{id}", api_retrieve(CheckoutSession, "")),
    ("GET", "/v1/checkout/sessions", api_list_all(CheckoutSession, "/v1/checkout/sessions")),
):
    app.router.add_route(_method, _url, _route)


def main(argv: list[str] | None = None) -> None:
    """Serve on ``--host`` (loopback by default, unlike stock localstripe's every interface)."""
    global STORE_PATH
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", default=None, help="keep the store in this file (default: memory only)")
    parser.add_argument("--from-scratch", action="store_true", help="ignore a stored store")
    args = parser.parse_args(argv)
    STORE_PATH = args.store
    if not args.from_scratch:
        resources.store.try_load_from_disk()
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
