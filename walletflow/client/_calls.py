"""What each API call sends and how its answer is read, written once for both clients.

Each function here builds a :class:`Call`; :class:`~walletflow.client.AsyncWalletflow` awaits
it over ``httpx.AsyncClient`` and :class:`~walletflow.client.Walletflow` runs it over
``httpx.Client``, so the two clients can never disagree about a path or a field. Paths and
fields follow the routers in ``walletflow/api/routers/``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import TypeAdapter

from walletflow.client import models as m

T = TypeVar("T")
Id = uuid.UUID | str
Reason = Literal["external_topup", "external_refund", "gift", "other"]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and the reader of its answer.

    ``retry_safe``: sending it twice cannot do anything twice (a read, a request carrying an
    idempotency key, or a create that answers the same for the same values), so the client may
    resend it after a timeout. Any call is resent after a failure to connect, which means
    the request never left.
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    retry_safe: bool = False
    idempotency_key: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def _reader(model: Any) -> Callable[[Any], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return adapter.validate_python


def _new_key(key: str | None) -> str:
    """The caller's key, or a fresh one for this call (every retry of the call reuses it)."""
    return key if key is not None else f"wf-{uuid.uuid4()}"


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _time(value: dt.datetime | str | None) -> str | None:
    """A time for a query string (bodies are serialised whole, see ``_core._body``)."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _page(params: Mapping[str, Any]) -> dict[str, Any]:
    return _compact(params)


# --- assets -----------------------------------------------------------------------------------


def create_asset(code: str, name: str, scale: int, kind: Literal["fiat", "custom"]) -> Call[m.Asset]:
    """Create an asset (``scale``: digits after the point, USD 2). Creating an identical one again
    is a no-op; a different definition under the same code is ``AlreadyExists``."""
    body = {"code": code, "name": name, "scale": scale, "kind": kind}
    return Call("POST", "/v1/assets", _reader(m.Asset), json=body, retry_safe=True)


def get_asset(code: str) -> Call[m.Asset]:
    """One asset by code."""
    return Call("GET", f"/v1/assets/{code}", _reader(m.Asset), retry_safe=True)


def list_assets(limit: int | None = None, cursor: str | None = None) -> Call[m.Page[m.Asset]]:
    """One page of assets, by code."""
    return Call("GET", "/v1/assets", _reader(m.Page[m.Asset]), params=_page({"limit": limit, "cursor": cursor}),
                retry_safe=True)


def add_asset_rate(
    code: str, currency: str, rate: str | Decimal, valid_from: dt.datetime | str | None = None
) -> Call[m.Rate]:
    """Record the fiat price of one whole unit of ``code`` (a decimal string) from ``valid_from``
    (default now)."""
    body = _compact({"currency": currency, "rate": rate, "valid_from": _time(valid_from)})
    return Call("POST", f"/v1/assets/{code}/rates", _reader(m.Rate), json=body)


def list_asset_rates(code: str) -> Call[list[m.Rate]]:
    """All of an asset's rates, oldest first."""
    return Call("GET", f"/v1/assets/{code}/rates", lambda body: _reader(list[m.Rate])(body["data"]),
                retry_safe=True)


# --- customers --------------------------------------------------------------------------------


def create_customer(
    external_id: str, name: str | None = None, email: str | None = None, metadata: dict[str, Any] | None = None
) -> Call[m.Customer]:
    """Create a customer (``external_id``: your own id). The same values again answer the same
    customer; other values under the same ``external_id`` are ``AlreadyExists``."""
    body = _compact({"external_id": external_id, "name": name, "email": email, "metadata": metadata})
    return Call("POST", "/v1/customers", _reader(m.Customer), json=body, retry_safe=True)


def get_customer(customer_id: Id) -> Call[m.Customer]:
    """One customer by walletflow id."""
    return Call("GET", f"/v1/customers/{customer_id}", _reader(m.Customer), retry_safe=True)


def find_customer(external_id: str) -> Call[m.Customer | None]:
    """The customer with your ``external_id``, or None."""
    def parse(body: Any) -> m.Customer | None:
        page = _reader(m.Page[m.Customer])(body)
        return page.data[0] if page.data else None

    return Call("GET", "/v1/customers", parse, params={"external_id": external_id, "limit": 1}, retry_safe=True)


def list_customers(
    limit: int | None = None, cursor: str | None = None, external_id: str | None = None
) -> Call[m.Page[m.Customer]]:
    """One page of customers, oldest first."""
    params = _page({"limit": limit, "cursor": cursor, "external_id": external_id})
    return Call("GET", "/v1/customers", _reader(m.Page[m.Customer]), params=params, retry_safe=True)


def update_customer(
    customer_id: Id,
    *,
    name: str | None = None,
    email: str | None = None,
    metadata: dict[str, Any] | None = None,
    billing_mode: Literal["prepaid", "postpaid"] | None = None,
    insufficient_balance: Literal["reject", "overdraft"] | None = None,
    overdraft_limit: int | None = None,
) -> Call[m.Customer]:
    """Change the given fields (the others stay). ``overdraft_limit`` is in minor units."""
    body = _compact({
        "name": name, "email": email, "metadata": metadata, "billing_mode": billing_mode,
        "insufficient_balance": insufficient_balance, "overdraft_limit": overdraft_limit,
    })
    return Call("PATCH", f"/v1/customers/{customer_id}", _reader(m.Customer), json=body, retry_safe=True)


def freeze_customer(customer_id: Id) -> Call[m.Customer]:
    """Freeze the wallet: debits and holds are refused (``WalletFrozen``) until unfrozen."""
    return Call("POST", f"/v1/customers/{customer_id}/freeze", _reader(m.Customer), retry_safe=True)


def unfreeze_customer(customer_id: Id) -> Call[m.Customer]:
    """Unfreeze the wallet."""
    return Call("POST", f"/v1/customers/{customer_id}/unfreeze", _reader(m.Customer), retry_safe=True)


def get_wallet(customer_id: Id) -> Call[m.Wallet]:
    """The customer's balance per asset: posted, held (by authorizations) and available."""
    return Call("GET", f"/v1/customers/{customer_id}/wallet", _reader(m.Wallet), retry_safe=True)


def list_transactions(
    customer_id: Id, limit: int | None = None, cursor: str | None = None
) -> Call[m.Page[m.Transaction]]:
    """One page of the customer's ledger history, newest first."""
    return Call("GET", f"/v1/customers/{customer_id}/transactions", _reader(m.Page[m.Transaction]),
                params=_page({"limit": limit, "cursor": cursor}), retry_safe=True)


def list_grants(customer_id: Id) -> Call[list[m.Grant]]:
    """The customer's credit grants in consumption order."""
    return Call("GET", f"/v1/customers/{customer_id}/grants", lambda body: _reader(list[m.Grant])(body["data"]),
                retry_safe=True)


def create_adjustment(
    customer_id: Id,
    asset: str,
    amount: int,
    reason: Reason,
    *,
    idempotency_key: str | None = None,
    expires_at: dt.datetime | str | None = None,
    priority: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call[m.Adjustment]:
    """Credit (positive ``amount``) or debit (negative) the wallet for money the platform took or
    gave back itself; ``amount`` in minor units. Pass an ``idempotency_key`` made from your own
    payment id to make the credit exactly once across crashes; without one the call gets a fresh
    key that its own retries reuse."""
    key = _new_key(idempotency_key)
    body = _compact({
        "idempotency_key": key, "asset": asset, "amount": amount, "reason": reason,
        "expires_at": _time(expires_at), "priority": priority, "metadata": metadata,
    })
    return Call("POST", f"/v1/customers/{customer_id}/adjustments", _reader(m.Adjustment), json=body,
                retry_safe=True, idempotency_key=key)


def subscribe(customer_id: Id, product_code: str, version: int | None = None) -> Call[m.Subscription]:
    """Pin the customer to a version of a product, or (``version=None``) make them follow its
    default (newest published) version."""
    body = {"product_code": product_code, "version": version}
    return Call("POST", f"/v1/customers/{customer_id}/subscriptions", _reader(m.Subscription), json=body,
                retry_safe=True)


# --- products and price versions --------------------------------------------------------------


def create_product(code: str, name: str) -> Call[m.Product]:
    """Create a product (``code``: lower-case letters, digits, ``_.-``)."""
    return Call("POST", "/v1/products", _reader(m.Product), json={"code": code, "name": name}, retry_safe=True)


def get_product(code: str) -> Call[m.Product]:
    """One product by code."""
    return Call("GET", f"/v1/products/{code}", _reader(m.Product), retry_safe=True)


def list_products(limit: int | None = None, cursor: str | None = None) -> Call[m.Page[m.Product]]:
    """One page of products, by code."""
    return Call("GET", "/v1/products", _reader(m.Page[m.Product]), params=_page({"limit": limit, "cursor": cursor}),
                retry_safe=True)


def create_price_version(product_code: str, prices: Sequence[Mapping[str, Any]]) -> Call[m.PriceVersion]:
    """Add a draft version with ``prices`` (the Price shape of API.md). Not retried after a
    timeout: a second call would add a second draft."""
    return Call("POST", f"/v1/products/{product_code}/versions", _reader(m.PriceVersion),
                json={"prices": list(prices)})


def list_price_versions(product_code: str) -> Call[list[m.PriceVersion]]:
    """Every version of a product."""
    return Call("GET", f"/v1/products/{product_code}/versions",
                lambda body: _reader(list[m.PriceVersion])(body["data"]), retry_safe=True)


def get_price_version(product_code: str, version: int) -> Call[m.PriceVersion]:
    """One version of a product."""
    return Call("GET", f"/v1/products/{product_code}/versions/{version}", _reader(m.PriceVersion), retry_safe=True)


def publish_price_version(product_code: str, version: int) -> Call[m.PriceVersion]:
    """Publish a draft; the newest published version is the product's default."""
    return Call("POST", f"/v1/products/{product_code}/versions/{version}/publish", _reader(m.PriceVersion),
                retry_safe=True)


def archive_price_version(product_code: str, version: int) -> Call[m.PriceVersion]:
    """Archive a version."""
    return Call("POST", f"/v1/products/{product_code}/versions/{version}/archive", _reader(m.PriceVersion),
                retry_safe=True)


def simulate(product_code: str, version: int, events: Sequence[Mapping[str, Any]]) -> Call[list[m.Fee]]:
    """Price sample events (``{event_type, data, costs?}``) against any version, drafts included,
    touching no wallet. One :class:`Fee` per event, in order."""
    return Call("POST", f"/v1/products/{product_code}/versions/{version}/simulate",
                lambda body: _reader(list[m.Fee])(body["data"]), json={"events": list(events)}, retry_safe=True)


# --- usage events and authorizations ----------------------------------------------------------


def ingest_events(events: Sequence[Mapping[str, Any]]) -> Call[list[m.EventResult]]:
    """Send up to 1,000 usage events; one result per event, in order. Each event's ``id`` is its
    idempotency key forever, so a resent batch debits nothing twice."""
    return Call("POST", "/v1/events", lambda body: _reader(list[m.EventResult])(body["results"]),
                json={"events": list(events)}, retry_safe=True)


def create_authorization(
    customer_id: Id,
    asset: str,
    amount: int,
    *,
    idempotency_key: str | None = None,
    expires_in_s: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call[m.Authorization]:
    """Hold ``amount`` (minor units) before the work runs. Raises ``InsufficientFunds`` when the
    wallet cannot cover it."""
    key = _new_key(idempotency_key)
    body = _compact({
        "idempotency_key": key, "customer_id": customer_id, "asset": asset, "amount": amount,
        "expires_in_s": expires_in_s, "metadata": metadata,
    })
    return Call("POST", "/v1/authorizations", _reader(m.Authorization), json=body, retry_safe=True,
                idempotency_key=key)


def get_authorization(authorization_id: Id) -> Call[m.Authorization]:
    """One authorization."""
    return Call("GET", f"/v1/authorizations/{authorization_id}", _reader(m.Authorization), retry_safe=True)


def capture_authorization(
    authorization_id: Id,
    amount: int,
    *,
    event: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call[m.Authorization]:
    """Debit the final ``amount`` (minor units, at most the hold) and release the rest; ``event``
    (``{id, event_type, data, costs?}``) records the usage it paid for."""
    key = _new_key(idempotency_key)
    body = _compact({"amount": amount, "idempotency_key": key, "metadata": metadata,
                     "event": dict(event) if event is not None else None})
    return Call("POST", f"/v1/authorizations/{authorization_id}/capture", _reader(m.Authorization), json=body,
                retry_safe=True, idempotency_key=key)


def void_authorization(authorization_id: Id) -> Call[m.Authorization]:
    """Release the whole hold (voiding a voided hold again answers it unchanged)."""
    return Call("POST", f"/v1/authorizations/{authorization_id}/void", _reader(m.Authorization), retry_safe=True)


# --- top-ups, refunds and reviews -------------------------------------------------------------


def create_top_up(
    customer_id: Id,
    amount: int,
    currency: str,
    *,
    idempotency_key: str | None = None,
    asset: str | None = None,
    mode: Literal["payment_intent", "checkout"] = "payment_intent",
    return_url: str | None = None,
) -> Call[m.TopUp]:
    """Start a card top-up of ``amount`` minor units of ``currency``. Mode ``payment_intent``
    answers a ``client_secret`` for Stripe.js; mode ``checkout`` (with ``return_url``) answers
    a ``checkout_url``, Stripe's hosted payment page."""
    key = _new_key(idempotency_key)
    body = _compact({
        "idempotency_key": key, "customer_id": customer_id, "amount": amount, "currency": currency,
        "asset": asset, "mode": mode, "return_url": return_url,
    })
    return Call("POST", "/v1/top-ups", _reader(m.TopUp), json=body, retry_safe=True, idempotency_key=key)


def get_top_up(top_up_id: Id) -> Call[m.TopUp]:
    """One top-up and its status."""
    return Call("GET", f"/v1/top-ups/{top_up_id}", _reader(m.TopUp), retry_safe=True)


def refund_top_up(
    top_up_id: Id, *, amount: int | None = None, reason: str | None = None, idempotency_key: str | None = None
) -> Call[m.Refund]:
    """Refund all (``amount=None``) or part of a credited top-up: the wallet is debited now and
    Stripe pays back next."""
    key = _new_key(idempotency_key)
    body = _compact({"idempotency_key": key, "amount": amount, "reason": reason})
    return Call("POST", f"/v1/top-ups/{top_up_id}/refund", _reader(m.Refund), json=body, retry_safe=True,
                idempotency_key=key)


def list_refunds(top_up_id: Id) -> Call[list[m.Refund]]:
    """Every refund of a top-up, oldest first."""
    return Call("GET", f"/v1/top-ups/{top_up_id}/refunds", lambda body: _reader(list[m.Refund])(body["data"]),
                retry_safe=True)


def get_refund(refund_id: Id) -> Call[m.Refund]:
    """One refund."""
    return Call("GET", f"/v1/refunds/{refund_id}", _reader(m.Refund), retry_safe=True)


def list_reviews(limit: int | None = None, cursor: str | None = None) -> Call[m.Page[m.TopUp]]:
    """One page of top-ups waiting for an operator's decision, oldest first."""
    return Call("GET", "/v1/reviews", _reader(m.Page[m.TopUp]), params=_page({"limit": limit, "cursor": cursor}),
                retry_safe=True)


def approve_review(top_up_id: Id, note: str | None = None) -> Call[m.TopUp]:
    """Approve a top-up in review: its workflow credits the wallet next."""
    return Call("POST", f"/v1/reviews/{top_up_id}/approve", _reader(m.TopUp), json=_compact({"note": note}))


def reject_review(top_up_id: Id, note: str | None = None) -> Call[m.TopUp]:
    """Reject a top-up in review: its workflow refunds the payment next."""
    return Call("POST", f"/v1/reviews/{top_up_id}/reject", _reader(m.TopUp), json=_compact({"note": note}))


# --- outbound webhook endpoints ---------------------------------------------------------------


def create_webhook_endpoint(url: str, events: Sequence[str], description: str | None = None) -> Call[m.WebhookEndpoint]:
    """Register a receiver; the answer's ``secret`` (shown only here) verifies signatures."""
    body = _compact({"url": url, "events": list(events), "description": description})
    return Call("POST", "/v1/webhook-endpoints", _reader(m.WebhookEndpoint), json=body)


def list_webhook_endpoints(limit: int | None = None, cursor: str | None = None) -> Call[m.Page[m.WebhookEndpoint]]:
    """One page of endpoints, oldest first (never their secrets)."""
    return Call("GET", "/v1/webhook-endpoints", _reader(m.Page[m.WebhookEndpoint]),
                params=_page({"limit": limit, "cursor": cursor}), retry_safe=True)


def get_webhook_endpoint(endpoint_id: Id) -> Call[m.WebhookEndpoint]:
    """One endpoint."""
    return Call("GET", f"/v1/webhook-endpoints/{endpoint_id}", _reader(m.WebhookEndpoint), retry_safe=True)


def disable_webhook_endpoint(endpoint_id: Id) -> Call[m.WebhookEndpoint]:
    """Disable an endpoint (its log stays)."""
    return Call("DELETE", f"/v1/webhook-endpoints/{endpoint_id}", _reader(m.WebhookEndpoint), retry_safe=True)


def enable_webhook_endpoint(endpoint_id: Id) -> Call[m.WebhookEndpoint]:
    """Enable a disabled endpoint again."""
    return Call("POST", f"/v1/webhook-endpoints/{endpoint_id}/enable", _reader(m.WebhookEndpoint), retry_safe=True)


def rotate_webhook_secret(endpoint_id: Id) -> Call[m.WebhookEndpoint]:
    """A new signing secret, in the answer's ``secret`` only."""
    return Call("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret", _reader(m.WebhookEndpoint))


def list_webhook_deliveries(
    endpoint_id: Id, limit: int | None = None, cursor: str | None = None, status: str | None = None
) -> Call[m.Page[m.WebhookDelivery]]:
    """One page of an endpoint's deliveries, newest first (``status``: pending, delivered,
    failed or canceled)."""
    params = _page({"limit": limit, "cursor": cursor, "status": status})
    return Call("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries", _reader(m.Page[m.WebhookDelivery]),
                params=params, retry_safe=True)


def retry_webhook_delivery(endpoint_id: Id, delivery_id: Id) -> Call[m.WebhookDelivery]:
    """Send a failed or canceled delivery again."""
    return Call("POST", f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
                _reader(m.WebhookDelivery))


# --- reports ----------------------------------------------------------------------------------


def margin_report(
    from_: dt.datetime | str,
    to: dt.datetime | str,
    *,
    group_by: Literal["customer", "product", "vendor"] = "customer",
    currency: str = "USD",
) -> Call[m.MarginReport]:
    """Revenue, vendor cost and margin in ``currency`` minor units for [from_, to), per group."""
    params = {"from": _time(from_), "to": _time(to), "group_by": group_by, "currency": currency}
    return Call("GET", "/v1/reports/margins", _reader(m.MarginReport), params=params, retry_safe=True)
