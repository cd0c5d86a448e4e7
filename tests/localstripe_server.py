"""localstripe with test-only extensions: ``GET /v1/payment_intents?customer=``, standalone
invoices (create, items attached to a draft, finalize) and an in-memory store.

Real Stripe filters PaymentIntents by customer; localstripe 1.15 answers 400 "Unexpected
customer". The gateway relies on the filter to find a PaymentIntent an interrupted attempt
created, so the tests add it here, with Stripe's semantics, instead of weakening the gateway.

Run as ``python -m tests.localstripe_server --port N --from-scratch``. Stock
localstripe pickles its whole store to the fixed path ``/tmp/localstripe.pickle`` on every
write: two servers would overwrite each other's store, and each call slows down as the store
grows. The tests never restart it, so the store is kept in memory only.
"""

from __future__ import annotations

from typing import Any

from localstripe import resources


def _list_payment_intents(cls: Any, url: str, customer: str | None = None, limit: Any = None,
                          starting_after: str | None = None, **kwargs: Any) -> Any:
    listed = resources.StripeObject._api_list_all.__func__(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    if customer is not None:
        listed._list = [intent for intent in listed._list if intent.customer == customer]
    return listed


resources.PaymentIntent._api_list_all = classmethod(_list_payment_intents)  # type: ignore[method-assign,assignment]


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
resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]
resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]

# Imported after the patch: the server binds each route to the class method at import time.
from localstripe.server import start

if __name__ == "__main__":
    start()
