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



# --- Stripe-to-wallet migration (tests/migration) ------------------------------------------------
# localstripe 1.15 lacks the customer credit balance (``customer.balance``, its balance
# transactions), billing credit grants and their balance summary, billing meters and Prices (it
# only has legacy Plans). Added here with Stripe's shapes and semantics, as far as the migration
# reads them: a negative ``balance`` is credit the customer can spend; credit grants carry
# ``amount.monetary``, ``category``, ``priority`` (0-100, default 50), ``effective_at``,
# ``expires_at`` and ``voided_at``; a Price is also registered as a Plan with the same id so
# subscriptions can use it (``items[0][plan]=price_...``). ``POST /_test/rate_limit`` makes the
# next N API calls answer 429 as Stripe does when a client goes over its rate.

_customer_currency = resources.Customer.currency


def _currency(self: Any) -> Any:
    # Stripe sets a customer's currency with its first balance transaction (or invoice); stock
    # localstripe answers "eur" for everyone.
    return getattr(self, "_balance_currency", None) or _customer_currency.fget(self)


resources.Customer.currency = property(_currency)  # type: ignore[method-assign,assignment]
resources.Customer.balance = property(lambda self: -self.account_balance)  # type: ignore[attr-defined]


class CustomerBalanceTransaction(resources.StripeObject):
    object = "customer_balance_transaction"
    _id_prefix = "cbtxn_"

    def __init__(self, customer: Any = None, amount: Any = None, currency: Any = None, description: Any = None,
                 metadata: Any = None, type: str = "adjustment", **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        amount = resources.try_convert_to_int(amount)
        try:
            assert isinstance(amount, int) and amount != 0
            assert isinstance(currency, str) and len(currency) == 3
        except AssertionError:
            raise UserError(400, "Bad request") from None
        cus = resources.Customer._api_retrieve(customer)
        existing = getattr(cus, "_balance_currency", None)
        if existing and existing != currency.lower():
            raise UserError(400, f"Customer currency is {existing}")
        super().__init__()
        cus._balance_currency = currency.lower()
        self.customer = customer
        self.amount = amount
        self.currency = currency.lower()
        self.description = description
        self.metadata = metadata or {}
        self.type = type
        self.ending_balance = cus.balance + amount
        cus.account_balance = -self.ending_balance

    @classmethod
    def _api_create_for(cls, id: str, **data: Any) -> Any:
        return cls(customer=id, **data)

    @classmethod
    def _api_list_for(cls, id: str, limit: Any = None, starting_after: Any = None, **kwargs: Any) -> Any:
        resources.Customer._api_retrieve(id)
        listed = resources.List(f"/v1/customers/{id}/balance_transactions", limit=limit, starting_after=starting_after)
        # Newest first, as Stripe lists them.
        listed._list = [v for k, v in resources.store.items()
                        if k.startswith(cls.object + ":") and v.customer == id][::-1]
        return listed


class BillingMeter(resources.StripeObject):
    object = "billing.meter"
    _id_prefix = "mtr_"

    def __init__(self, display_name: Any = None, event_name: Any = None, default_aggregation: Any = None,
                 customer_mapping: Any = None, value_settings: Any = None, event_time_window: Any = None,
                 **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        try:
            assert isinstance(display_name, str) and isinstance(event_name, str) and event_name
            assert isinstance(default_aggregation, dict)
            assert default_aggregation.get("formula") in ("sum", "count", "last")
        except AssertionError:
            raise UserError(400, "Bad request") from None
        super().__init__()
        self.display_name = display_name
        self.event_name = event_name
        self.default_aggregation = default_aggregation
        self.customer_mapping = customer_mapping or {"event_payload_key": "stripe_customer_id", "type": "by_id"}
        self.value_settings = value_settings or {"event_payload_key": "value"}
        self.status = "active"


class Price(resources.StripeObject):
    """A Price (Stripe's current name for a Plan); a Plan with the same id backs subscriptions."""

    object = "price"
    _id_prefix = "price_"

    def __init__(self, currency: Any = None, product: Any = None, product_data: Any = None, unit_amount: Any = None,
                 unit_amount_decimal: Any = None, recurring: Any = None, billing_scheme: str = "per_unit",
                 tiers: Any = None, tiers_mode: Any = None, transform_quantity: Any = None, nickname: Any = None,
                 lookup_key: Any = None, metadata: Any = None, active: Any = True, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        unit_amount = resources.try_convert_to_int(unit_amount)
        try:
            assert isinstance(currency, str) and len(currency) == 3
            assert billing_scheme in ("per_unit", "tiered")
            if billing_scheme == "tiered":
                assert tiers_mode in ("graduated", "volume") and isinstance(tiers, list) and tiers
            if recurring is not None:
                assert recurring.get("interval") in ("day", "week", "month", "year")
                assert recurring.get("usage_type", "licensed") in ("licensed", "metered")
        except (AssertionError, AttributeError):
            raise UserError(400, "Bad request") from None
        if product is None:
            product = resources.Product(name=(product_data or {}).get("name") or "product").id
        else:
            resources.Product._api_retrieve(product)
        if recurring and recurring.get("meter"):
            BillingMeter._api_retrieve(recurring["meter"])
        super().__init__()
        self.currency = currency.lower()
        self.product = product
        self.active = str(active).lower() != "false"
        self.billing_scheme = billing_scheme
        if unit_amount_decimal is None and unit_amount is not None:
            unit_amount_decimal = str(unit_amount)
        self.unit_amount = unit_amount
        self.unit_amount_decimal = unit_amount_decimal
        self.tiers_mode = tiers_mode
        self.tiers = None
        if tiers:
            self.tiers = []
            for t in tiers:
                up_to = None if t.get("up_to") in (None, "inf") else int(t["up_to"])
                unit = t.get("unit_amount_decimal") or (str(t["unit_amount"]) if t.get("unit_amount") is not None else None)
                flat = resources.try_convert_to_int(t.get("flat_amount"))
                self.tiers.append({"up_to": up_to, "unit_amount": resources.try_convert_to_int(t.get("unit_amount")),
                                   "unit_amount_decimal": unit, "flat_amount": flat,
                                   "flat_amount_decimal": str(flat) if flat is not None else None})
        self.transform_quantity = transform_quantity
        self.nickname = nickname
        self.lookup_key = lookup_key
        self.metadata = metadata or {}
        self.type = "recurring" if recurring else "one_time"
        self.recurring = None
        if recurring:
            self.recurring = {"interval": recurring["interval"],
                              "interval_count": int(recurring.get("interval_count", 1)),
                              "usage_type": recurring.get("usage_type", "licensed"),
                              "meter": recurring.get("meter"), "aggregate_usage": None}
            plan_tiers = None
            if tiers:
                plan_tiers = [{"up_to": "inf" if t["up_to"] is None else t["up_to"],
                               "unit_amount": t["unit_amount"] or 0, "flat_amount": t["flat_amount"] or 0}
                              for t in self.tiers or []]
            resources.Plan(id=self.id, product=product, currency=self.currency, interval=recurring["interval"],
                           usage_type=self.recurring["usage_type"], billing_scheme=billing_scheme,
                           amount=int(float(unit_amount_decimal or 0)) if billing_scheme == "per_unit" else None,
                           tiers=plan_tiers, tiers_mode=tiers_mode)


class CreditGrant(resources.StripeObject):
    object = "billing.credit_grant"
    _id_prefix = "credgr_"

    def __init__(self, customer: Any = None, amount: Any = None, applicability_config: Any = None,
                 category: Any = None, effective_at: Any = None, expires_at: Any = None, name: Any = None,
                 priority: Any = None, metadata: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        priority = 50 if priority is None else resources.try_convert_to_int(priority)
        try:
            assert isinstance(customer, str)
            assert isinstance(amount, dict) and amount.get("type") == "monetary"
            value = resources.try_convert_to_int(amount["monetary"]["value"])
            assert isinstance(value, int) and value > 0
            assert isinstance(amount["monetary"]["currency"], str)
            assert category in ("paid", "promotional")
            assert isinstance(priority, int) and 0 <= priority <= 100
        except (AssertionError, KeyError, TypeError):
            raise UserError(400, "Bad request") from None
        resources.Customer._api_retrieve(customer)
        super().__init__()
        self.customer = customer
        self.amount = {"type": "monetary", "monetary": {"value": value, "currency": amount["monetary"]["currency"].lower()}}
        self.applicability_config = applicability_config or {"scope": {"price_type": "metered"}}
        self.category = category
        self.effective_at = resources.try_convert_to_int(effective_at) or self.created
        self.expires_at = resources.try_convert_to_int(expires_at)
        self.name = name
        self.priority = priority
        self.metadata = metadata or {}
        self.voided_at = None
        self._consumed = 0

    @classmethod
    def _api_list_all(cls, url: str, customer: Any = None, limit: Any = None, starting_after: Any = None,
                      **kwargs: Any) -> Any:
        listed = resources.StripeObject._api_list_all.__func__(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        if customer is not None:
            listed._list = [g for g in listed._list if g.customer == customer]
        return listed

    @classmethod
    def _api_void(cls, id: str, **kwargs: Any) -> Any:
        grant = cls._api_retrieve(id)
        grant.voided_at = grant.voided_at or int(resources.time.time())
        return grant

    @classmethod
    def _api_consume(cls, id: str, amount: Any = None, **kwargs: Any) -> Any:
        """Test-only: usage drew ``amount`` from the grant (Stripe does this on invoicing)."""
        grant = cls._api_retrieve(id)
        grant._consumed = min(grant.amount["monetary"]["value"], grant._consumed + int(amount))
        return grant


class CreditBalanceSummary(resources.StripeObject):
    """``GET /v1/billing/credit_balance_summary``: what is left of a customer's grants."""

    object = "billing.credit_balance_summary"

    def __init__(self, customer: str, balances: list[dict[str, Any]]) -> None:
        self.customer = customer
        self.balances = balances
        self.livemode = False

    @classmethod
    def _api_summary(cls, customer: Any = None, filter: Any = None, **kwargs: Any) -> Any:
        if not isinstance(customer, str) or not isinstance(filter, dict) or kwargs:
            raise UserError(400, "Bad request")
        now = int(resources.time.time())
        grants = [g for k, g in resources.store.items() if k.startswith("billing.credit_grant:") and g.customer == customer]
        if filter.get("type") == "credit_grant":
            grants = [g for g in grants if g.id == filter.get("credit_grant")]
            if not grants:
                raise UserError(404, "Not Found")
        per_currency: dict[str, int] = {}
        for g in grants:
            live = g.voided_at is None and (g.expires_at is None or g.expires_at > now) and g.effective_at <= now
            value = g.amount["monetary"]["value"] - g._consumed if live else 0
            cur = g.amount["monetary"]["currency"]
            per_currency[cur] = per_currency.get(cur, 0) + value
        balances = [{"available_balance": {"type": "monetary", "monetary": {"currency": c, "value": v}},
                     "ledger_balance": {"type": "monetary", "monetary": {"currency": c, "value": v}}}
                    for c, v in sorted(per_currency.items())]
        return cls(customer, balances)


class _RateLimit:
    remaining = 0
    served = 0


async def _rate_limit_config(request: Any) -> Any:
    from aiohttp import web

    if request.method == "POST":
        _RateLimit.remaining = int((await request.json())["count"])
        _RateLimit.served = 0
    return web.json_response({"remaining": _RateLimit.remaining, "served": _RateLimit.served})


def _rate_limit_middleware() -> Any:
    from aiohttp import web

    @web.middleware
    async def middleware(request: Any, handler: Any) -> Any:
        if _RateLimit.remaining > 0 and request.path.startswith("/v1/"):
            _RateLimit.remaining -= 1
            _RateLimit.served += 1
            return web.json_response(
                {"error": {"type": "invalid_request_error", "code": "rate_limit",
                           "message": "Too many requests hit the API too quickly."}}, status=429)
        return await handler(request)

    return middleware


resources.extra_apis.extend([
    ("GET", "/v1/billing/credit_balance_summary", CreditBalanceSummary._api_summary),
    ("POST", "/v1/billing/credit_grants/{id}/void", CreditGrant._api_void),
    ("POST", "/_test/billing/credit_grants/{id}/consume", CreditGrant._api_consume),
    ("POST", "/v1/customers/{id}/balance_transactions", CustomerBalanceTransaction._api_create_for),
    ("GET", "/v1/customers/{id}/balance_transactions", CustomerBalanceTransaction._api_list_for),
])


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
    ("POST", "/v1/billing/meters", api_create(BillingMeter, "/v1/billing/meters")),
    ("GET", "/v1/billing/meters/{id}", api_retrieve(BillingMeter, "")),
    ("GET", "/v1/billing/meters", api_list_all(BillingMeter, "/v1/billing/meters")),
    ("POST", "/v1/prices", api_create(Price, "/v1/prices")),
    ("GET", "/v1/prices/{id}", api_retrieve(Price, "")),
    ("GET", "/v1/prices", api_list_all(Price, "/v1/prices")),
    ("POST", "/v1/billing/credit_grants", api_create(CreditGrant, "/v1/billing/credit_grants")),
    ("GET", "/v1/billing/credit_grants/{id}", api_retrieve(CreditGrant, "")),
    ("GET", "/v1/billing/credit_grants", api_list_all(CreditGrant, "/v1/billing/credit_grants")),
):
    app.router.add_route(_method, _url, _route)
app.router.add_route("GET", "/_test/rate_limit", _rate_limit_config)
app.router.add_route("POST", "/_test/rate_limit", _rate_limit_config)
app.middlewares.insert(0, _rate_limit_middleware())


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
