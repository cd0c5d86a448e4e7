"""What the migration reads from (and, at cut-over, writes to) Stripe, through the gateway's
official ``StripeClient``: a client-side token bucket keeps to ``migration_stripe_rps`` and a
429 (``stripe.RateLimitError``) is retried with exponential backoff.

The SDK itself never retries a 429 (only 409 and 5xx), and the sandbox allows 25 requests a
second, so a migration that ignored the limit would fail on its first large page.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import stripe

from walletflow.payments.stripe_gateway import StripeGateway

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Attempts of one call under rate limiting before giving up (the activity then retries).
MAX_RATE_LIMIT_ATTEMPTS = 8
#: Bound on grants read per customer and subscriptions per page of a listing.
MAX_GRANTS_PER_CUSTOMER = 1000
MAX_PAGE = 100


class TokenBucket:
    """At most ``rate`` acquisitions a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                # At least a millisecond: a float shortfall of 1e-15 would otherwise spin.
                await asyncio.sleep(max(0.001, (1 - self.tokens) / self.rate))


@dataclass
class CallStats:
    calls: int = 0
    rate_limited: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class StripeSource:
    """Rate-limited reads of a Stripe account, plus the two cut-over writes."""

    def __init__(self, gateway: StripeGateway, rps: float, backoff_s: float = 0.5) -> None:
        self.client = gateway.client
        self.bucket = TokenBucket(rps)
        self.backoff_s = backoff_s
        self.stats = CallStats()

    async def _call(self, kind: str, make: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, MAX_RATE_LIMIT_ATTEMPTS + 1):
            await self.bucket.acquire()
            self.stats.calls += 1
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
            try:
                return await make()
            except stripe.RateLimitError:
                self.stats.rate_limited += 1
                if attempt == MAX_RATE_LIMIT_ATTEMPTS:
                    raise
                delay = min(30.0, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                log.info("stripe rate limit on %s; retrying in %.2f s", kind, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # --- reads ----------------------------------------------------------------------------------

    async def customers_page(self, starting_after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        params: dict[str, Any] = {"limit": min(limit, MAX_PAGE)}
        if starting_after:
            params["starting_after"] = starting_after
        page = await self._call("customers.list", lambda: self.client.v1.customers.list_async(params=params))  # type: ignore[arg-type]
        return [c.to_dict() for c in page.data], bool(page.has_more)

    async def latest_balance_transaction(self, customer: str) -> dict[str, Any] | None:
        page = await self._call("customers.balance_transactions.list", lambda: (
            self.client.v1.customers.balance_transactions.list_async(customer, params={"limit": 1})))
        return page.data[0].to_dict() if page.data else None

    async def credit_grants(self, customer: str) -> list[dict[str, Any]]:
        grants: list[dict[str, Any]] = []
        params: dict[str, Any] = {"customer": customer, "limit": MAX_PAGE}
        while len(grants) < MAX_GRANTS_PER_CUSTOMER:
            page = await self._call("billing.credit_grants.list", lambda p=dict(params): (  # type: ignore[misc]
                self.client.v1.billing.credit_grants.list_async(params=p)))
            grants += [g.to_dict() for g in page.data]
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return grants

    async def grant_available(self, customer: str, grant_id: str) -> dict[str, int]:
        """What is left of one grant, ``{currency: minor units}`` (Stripe's credit balance summary)."""
        summary = await self._call("billing.credit_balance_summary.retrieve", lambda: (
            self.client.v1.billing.credit_balance_summary.retrieve_async(params={
                "customer": customer, "filter": {"type": "credit_grant", "credit_grant": grant_id}})))
        left: dict[str, int] = {}
        for balance in summary.to_dict().get("balances") or []:
            monetary = (balance.get("available_balance") or {}).get("monetary") or {}
            if monetary.get("currency"):
                left[monetary["currency"]] = left.get(monetary["currency"], 0) + int(monetary.get("value") or 0)
        return left

    async def _all(self, kind: str, lister: Callable[[dict[str, Any]], Awaitable[Any]],
                   params: dict[str, Any], bound: int = 100_000) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {**params, "limit": MAX_PAGE}
        while len(items) < bound:
            page = await self._call(kind, lambda p=dict(params): lister(p))  # type: ignore[misc]
            items += [x.to_dict() for x in page.data]
            if not page.has_more or not page.data:
                break
            params["starting_after"] = page.data[-1].id
        return items

    async def prices(self) -> list[dict[str, Any]]:
        return await self._all("prices.list", lambda p: self.client.v1.prices.list_async(params=p), {})  # type: ignore[arg-type]

    async def meters(self) -> list[dict[str, Any]]:
        return await self._all("billing.meters.list", lambda p: self.client.v1.billing.meters.list_async(params=p), {})  # type: ignore[arg-type]

    async def subscriptions_page(self, starting_after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        params: dict[str, Any] = {"limit": min(limit, MAX_PAGE), "status": "active"}
        if starting_after:
            params["starting_after"] = starting_after
        page = await self._call("subscriptions.list", lambda: self.client.v1.subscriptions.list_async(params=params))  # type: ignore[arg-type]
        return [s.to_dict() for s in page.data], bool(page.has_more)

    async def subscription_invoices(self, customer: str, subscription: str) -> list[dict[str, Any]]:
        return await self._all("invoices.list", lambda p: self.client.v1.invoices.list_async(params=p),  # type: ignore[arg-type]
                               {"customer": customer, "subscription": subscription}, bound=1000)

    # --- cut-over writes ------------------------------------------------------------------------

    async def create_final_invoice(self, customer: str, subscription: str, marker: str) -> dict[str, Any]:
        invoice = await self._call("invoices.create", lambda: self.client.v1.invoices.create_async(
            params={"customer": customer, "subscription": subscription,
                    "metadata": {"walletflow_migration_cutover": marker}},
            options={"idempotency_key": f"migration-cutover-{subscription}:invoice"},
        ))
        return invoice.to_dict()

    async def cancel_at_period_end(self, subscription: str) -> dict[str, Any]:
        sub = await self._call("subscriptions.update", lambda: self.client.v1.subscriptions.update_async(
            subscription, params={"cancel_at_period_end": True},
            options={"idempotency_key": f"migration-cutover-{subscription}:cancel"},
        ))
        return sub.to_dict()
