"""The billing portal: ``POST /v1/portal/sessions`` (admin key) hands out a signed link; the
link's page (``/portal/{token}``) and its small JSON API (``/portal/{token}/api/...``) admit
that token alone, for exactly the customer it names, until it expires.

The page is rendered on the server (Jinja2) and needs one small script (``portal.js``) for the
top-up form: Stripe.js confirms the card payment in the browser with the PaymentIntent's client
secret; the wallet is credited by the same top-up workflow as ``POST /v1/top-ups``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from walletflow import temporal_client as temporal
from walletflow.api.deps import ServicesDep, require
from walletflow.api.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor
from walletflow.api.routers.topups import TemporalUnavailable, temporal_client
from walletflow.db.types import utcnow
from walletflow.errors import NotFound, ValidationError
from walletflow.ledger import reads
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.portal import auto_recharge, chart, tokens, views
from walletflow.portal.tokens import InvalidPortalToken, PortalSession
from walletflow.recharge.service import Recharges

log = logging.getLogger(__name__)
PORTAL_DIR = Path(__file__).resolve().parents[2] / "portal"
STATIC_DIR = PORTAL_DIR / "static"
templates = Jinja2Templates(directory=str(PORTAL_DIR / "templates"))
templates.env.filters["money"] = views.format_amount

api = APIRouter(tags=["portal"])
pages = APIRouter(include_in_schema=False)
HTTP_URL = re.compile(r"^https?://[^\s]{1,1990}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
#: Top-up statuses after which the page stops polling.
FINAL = ("succeeded", "failed", "rejected", "refunded", "in_review")


class SessionIn(BaseModel):
    customer_id: uuid.UUID
    return_url: str | None = Field(default=None, max_length=2000, description="An http(s) link back to the platform.")


class SessionOut(BaseModel):
    url: str
    expires_at: dt.datetime


def _check_return_url(url: str | None) -> None:
    if url is None:
        return
    if not HTTP_URL.match(url) or not urlsplit(url).netloc:
        raise ValidationError("return_url must be an absolute http or https URL", field="return_url")


@api.post("/portal/sessions", status_code=status.HTTP_201_CREATED, dependencies=[require("admin")])
async def create_session(body: SessionIn, services: ServicesDep) -> SessionOut:
    """A link to the customer's billing portal, signed, that expires (10 minutes by default)."""
    _check_return_url(body.return_url)
    await services.ledger.get_customer(body.customer_id)  # 404 for an unknown customer
    settings = services.settings
    expires_at = (utcnow() + dt.timedelta(seconds=settings.portal_session_ttl_s)).replace(microsecond=0)
    token = tokens.issue(tokens.portal_secret(settings), body.customer_id, expires_at, body.return_url)
    return SessionOut(url=f"{settings.portal_base_url.rstrip('/')}/portal/{token}", expires_at=expires_at)


# --- the page ----------------------------------------------------------------------------------


def _session(services: ServicesDep, token: str) -> PortalSession:
    return tokens.verify(tokens.portal_secret(services.settings), token, utcnow())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _secure(response: Response, services: ServicesDep) -> Response:
    """Headers for every portal answer: the token is in the URL, so no Referer may carry it
    away and nothing may cache it; scripts only from here and Stripe."""
    stripe = _origin(services.settings.stripe_js_url)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Stripe's documented CSP for Stripe.js (card element frames, 3-D Secure) plus the configured
    # Stripe.js origin (localstripe in dev and tests).
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {stripe} https://*.js.stripe.com; "
        f"connect-src 'self' {stripe} https://api.stripe.com; "
        f"frame-src {stripe} https://*.js.stripe.com https://hooks.stripe.com; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https://*.stripe.com; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return response


def _refused(request: Request, services: ServicesDep) -> Response:
    page = templates.TemplateResponse(request, "refused.html", {}, status_code=status.HTTP_403_FORBIDDEN)
    return _secure(page, services)


@pages.get("/portal/{token}", response_class=HTMLResponse)
async def portal_page(request: Request, token: str, services: ServicesDep, cursor: str | None = Query(None, max_length=500)) -> Response:
    try:
        session = _session(services, token)
    except InvalidPortalToken:
        return _refused(request, services)
    ledger, now = services.ledger, utcnow()
    try:
        customer = await ledger.get_customer(session.customer_id)
    except NotFound:
        return _refused(request, services)  # the customer is gone: the link opens nothing
    balances = await views.balances(ledger, customer.id)
    charts = []
    for b in balances:
        days = await views.daily_spend(services.engine, customer.id, b.asset, now)
        charts.append({"asset": b.asset, "svg": Markup(chart.svg(days, b.scale, b.asset)),  # built from escaped parts
                       "total": sum(d.amount for d in days), "scale": b.scale})
    after = _cursor(cursor)
    rows = await reads.customer_transactions(services.engine, customer.id, DEFAULT_LIMIT, after)
    scale_of = {b.asset: b.scale for b in balances}
    next_cursor = encode_cursor(rows[-1].created_at.isoformat(), rows[-1].id) if len(rows) == DEFAULT_LIMIT else None
    context: dict[str, Any] = {
        "customer": customer, "session": session, "token": token, "balances": balances, "charts": charts,
        "transactions": rows, "scale_of": scale_of, "next_cursor": next_cursor, "paged": cursor is not None,
        "grants": await views.grants(ledger, customer.id),
        # Card top-ups pay in a currency: fiat wallet assets with an ISO code.
        "fiat_assets": [b for b in balances if CURRENCY.match(b.asset) and (await ledger.get_asset(b.asset)).kind == "fiat"],
        "recharge_policies": [
            auto_recharge.view(p, (await ledger.get_asset(p.asset)).scale)
            for p in await Recharges(services.engine).list_policies(customer.id)
        ],
        "stripe_js_url": services.settings.stripe_js_url,
        "stripe_publishable_key": services.settings.stripe_publishable_key,
        "api_base": f"/portal/{token}/api",
    }
    return _secure(templates.TemplateResponse(request, "portal.html", context), services)


def _cursor(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        return dt.datetime.fromisoformat(key[0]), uuid.UUID(key[1])
    except ValueError as exc:
        raise ValidationError("cursor is not one this page made", field="cursor") from exc


# --- the page's JSON API -----------------------------------------------------------------------


class PortalBalance(BaseModel):
    asset: str
    scale: int
    posted: int
    held: int
    available: int
    available_display: str


class PortalTopUpIn(BaseModel):
    idempotency_key: str = Field(min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                                 description="Made by the page once per attempt, so a retried click starts nothing new.")
    asset: str = Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$", description="A fiat wallet asset.")
    amount: str = Field(min_length=1, max_length=32, description="Decimal, in whole units of the asset: '20.00'.")


class PortalTopUpOut(BaseModel):
    id: uuid.UUID
    status: str
    asset: str
    amount: int
    client_secret: str | None = None
    final: bool


@pages.get("/portal/{token}/api/wallet")
async def portal_wallet(token: str, services: ServicesDep, response: Response) -> list[PortalBalance]:
    session = _session(services, token)
    _secure(response, services)
    return [PortalBalance(asset=b.asset, scale=b.scale, posted=b.posted, held=b.held, available=b.available,
                          available_display=views.format_amount(b.available, b.scale))
            for b in await views.balances(services.ledger, session.customer_id)]


@pages.post("/portal/{token}/api/top-ups", status_code=status.HTTP_201_CREATED)
async def portal_top_up(token: str, body: PortalTopUpIn, request: Request, services: ServicesDep,
                        response: Response) -> PortalTopUpOut:
    """Start a card top-up for the session's customer (the same service and workflow as
    ``POST /v1/top-ups``) and hand the PaymentIntent's client secret to Stripe.js."""
    session = _session(services, token)
    _secure(response, services)
    asset = await services.ledger.get_asset(body.asset)
    if asset.kind != "fiat":
        raise ValidationError("only a fiat asset can be paid by card", field="asset")
    amount = views.minor_units(body.amount, asset.scale, "amount")
    # Namespaced so a page's key can never meet a key the platform chose for its own top-ups.
    key = f"portal:{session.customer_id}:{body.idempotency_key}"
    top_up, _ = await services.topups.create(key, session.customer_id, amount, asset.code, asset.code)
    try:
        client = await temporal_client(request)
        handle = await temporal.start_top_up(client, top_up, services.settings)
    except (RuntimeError, RPCError) as exc:
        log.warning("could not start %s: %s", top_up.workflow_id, type(exc).__name__)
        raise TemporalUnavailable("the top-up could not start; try again") from exc
    details = await temporal.payment_details(handle, services.settings.topup_create_wait_s)
    top_up = await services.topups.get(top_up.id)
    secret = None
    if details is not None:
        secret, _ = await StripeGateway.from_settings(services.settings).handoff(details.payment_intent_id, None)
    if secret is None and top_up.status not in FINAL:
        raise TemporalUnavailable("the payment is not ready yet; try again")
    return PortalTopUpOut(id=top_up.id, status=top_up.status, asset=top_up.asset, amount=top_up.amount,
                          client_secret=secret, final=top_up.status in FINAL)


@pages.get("/portal/{token}/api/top-ups/{top_up_id}")
async def portal_top_up_status(token: str, top_up_id: uuid.UUID, services: ServicesDep, response: Response) -> PortalTopUpOut:
    session = _session(services, token)
    _secure(response, services)
    top_up = await services.topups.get(top_up_id)
    if top_up.customer_id != session.customer_id:
        raise NotFound(f"top-up {top_up_id} not found")  # the same answer as a top-up that does not exist
    return PortalTopUpOut(id=top_up.id, status=top_up.status, asset=top_up.asset, amount=top_up.amount,
                          final=top_up.status in FINAL)


class PortalRechargeIn(BaseModel):
    asset: str = Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$")
    threshold: str = Field(min_length=1, max_length=32, description="Decimal, whole units: recharge below this.")
    target: str = Field(min_length=1, max_length=32, description="Decimal, whole units: refill to this.")
    daily_cap: str = Field(min_length=1, max_length=32)
    monthly_cap: str = Field(min_length=1, max_length=32)
    enabled: bool
    consent: bool = Field(default=False, description="The customer ticked the consent box (needed to turn it on).")


class PortalRechargeOut(BaseModel):
    asset: str
    threshold: int
    target: int
    daily_cap: int
    monthly_cap: int
    enabled: bool
    consent_method: str


@pages.put("/portal/{token}/api/auto-recharge")
async def portal_auto_recharge(token: str, body: PortalRechargeIn, services: ServicesDep, response: Response) -> PortalRechargeOut:
    """Change the customer's auto-recharge policy (the recharge module's, with its rules)."""
    session = _session(services, token)
    _secure(response, services)
    scale = (await services.ledger.get_asset(body.asset)).scale
    policy = await auto_recharge.update(
        Recharges(services.engine), session.customer_id, body.asset, scale, threshold=body.threshold,
        target=body.target, daily_cap=body.daily_cap, monthly_cap=body.monthly_cap, enabled=body.enabled,
        consent=body.consent, now=utcnow(),
    )
    return PortalRechargeOut(asset=policy.asset, threshold=policy.threshold, target=policy.target,
                             daily_cap=policy.daily_cap, monthly_cap=policy.monthly_cap, enabled=policy.enabled,
                             consent_method=policy.consent.method)
