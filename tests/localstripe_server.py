"""localstripe with test-only extensions, each with Stripe's semantics: ``GET /v1/payment_intents?customer=``,
refunds refused beyond what is left of the charge, and an in-memory store.

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
from localstripe.errors import UserError


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
resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]
resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]

# Imported after the patch: the server binds each route to the class method at import time.
from localstripe.server import start

if __name__ == "__main__":
    start()
