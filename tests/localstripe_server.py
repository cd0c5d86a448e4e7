"""localstripe with test-only extensions: ``GET /v1/payment_intents?customer=`` and an in-memory store.

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
resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]
resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]

# Imported after the patch: the server binds each route to the class method at import time.
from localstripe.server import start

if __name__ == "__main__":
    start()
