"""A fresh Stripe account (its own localstripe process) per test, seeding through the official
SDK, and a worker and API bound to that account on their own task queue.

The migration pages through *every* customer of the account, so each test needs an account of
its own: the session's shared localstripe holds the other tests' customers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import stripe
from fastapi import FastAPI

from tests.services import Stack, free_port
from walletflow.migration.service import Migrations
from walletflow.settings import Settings
from worker.main import build_worker

KEY = "sk_test_walletflow"
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_localstripe(workdir: Path) -> Iterator[str]:
    port = free_port()
    with open(workdir / f"localstripe-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "walletflow.devtools.localstripe", "--port", str(port), "--from-scratch"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    httpx.get(url + "/v1/customers", headers={"Authorization": f"Bearer {KEY}"}, timeout=1)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("localstripe did not start") from None
                    time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


class Account:
    """Seeds one Stripe account through the official SDK (and localstripe's test-only routes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)

    async def customer(self, *, balance: int = 0, currency: str = "usd", email: str | None = None,
                       card: bool = False, metadata: dict[str, str] | None = None) -> str:
        params: dict[str, Any] = {"email": email or f"{uuid.uuid4().hex[:8]}@example.com"}
        if metadata:
            params["metadata"] = metadata
        cus = await self.client.v1.customers.create_async(params=params)  # type: ignore[arg-type]
        if balance:
            await self.client.v1.customers.balance_transactions.create_async(
                cus.id, params={"amount": balance, "currency": currency})
        if card:
            method = await self.client.v1.payment_methods.create_async(params={
                "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
            await self.client.v1.payment_methods.attach_async(method.id, params={"customer": cus.id})
            await self.client.v1.customers.update_async(
                cus.id, params={"invoice_settings": {"default_payment_method": method.id}})
        return cus.id

    async def grant(self, customer: str, value: int, *, category: str = "paid", priority: int | None = None,
                    expires_at: int | None = None, currency: str = "usd") -> str:
        params: dict[str, Any] = {
            "customer": customer, "category": category,
            "amount": {"type": "monetary", "monetary": {"value": value, "currency": currency}},
            "applicability_config": {"scope": {"price_type": "metered"}},
        }
        if priority is not None:
            params["priority"] = priority
        if expires_at is not None:
            params["expires_at"] = expires_at
        return (await self.client.v1.billing.credit_grants.create_async(params=params)).id  # type: ignore[arg-type]

    async def consume(self, grant: str, amount: int) -> None:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.url}/_test/billing/credit_grants/{grant}/consume", data={"amount": amount},
                                headers={"Authorization": f"Bearer {KEY}"})
            r.raise_for_status()

    async def void(self, grant: str) -> None:
        await self.client.v1.billing.credit_grants.void_grant_async(grant)

    async def meter(self, event_name: str, formula: str = "sum", payload_key: str = "tokens") -> str:
        return (await self.client.v1.billing.meters.create_async(params={
            "display_name": event_name, "event_name": event_name, "default_aggregation": {"formula": formula},
            "value_settings": {"event_payload_key": payload_key}})).id  # type: ignore[arg-type]

    async def price(self, **params: Any) -> dict[str, Any]:
        params.setdefault("currency", "usd")
        return (await self.client.v1.prices.create_async(params=params)).to_dict()  # type: ignore[arg-type]

    async def subscribe(self, customer: str, price: str) -> str:
        return (await self.client.v1.subscriptions.create_async(
            params={"customer": customer, "items": [{"plan": price}]})).id  # type: ignore[typeddict-unknown-key]

    async def rate_limit(self, count: int | None = None) -> dict[str, int]:
        async with httpx.AsyncClient() as http:
            headers = {"Authorization": f"Bearer {KEY}"}
            if count is None:
                r = await http.get(f"{self.url}/_test/rate_limit", headers=headers)
            else:
                r = await http.post(f"{self.url}/_test/rate_limit", json={"count": count}, headers=headers)
            r.raise_for_status()
            return r.json()

    async def snapshot(self) -> dict[str, Any]:
        """Everything the migration could touch at Stripe, to prove a dry run touched nothing."""
        async def every(lister: Any, **params: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            params = {"limit": 100, **params}
            while True:
                page = await lister(params=params)
                out += [x.to_dict() for x in page.data]
                if not page.has_more:
                    return out
                params["starting_after"] = page.data[-1].id

        customers = await every(self.client.v1.customers.list_async)
        return {
            "customers": customers,
            "subscriptions": await every(self.client.v1.subscriptions.list_async),
            "grants": await every(self.client.v1.billing.credit_grants.list_async),
            "invoices": [i for c in customers for i in await every(self.client.v1.invoices.list_async, customer=c["id"])],
            "balance_transactions": [t for c in customers for t in (
                await self.client.v1.customers.balance_transactions.list_async(c["id"], params={"limit": 100})
            ).to_dict()["data"]],
        }


@dataclass
class MigrationStack:
    stack: Stack
    settings: Settings
    app: FastAPI
    http: httpx.AsyncClient
    migrations: Migrations
    account: Account

    async def run(self, *, dry_run: bool, timeout_s: float = 120) -> dict[str, Any]:
        """``POST /v1/migrations/stripe``, then ``GET /v1/migrations/{id}`` until it is done."""
        started = await self.http.post("/v1/migrations/stripe", json={"dry_run": dry_run})
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["workflow_id"] == f"migration-stripe-{body['id']}"
        return await self.wait(body["id"], timeout_s)

    async def wait(self, migration_id: str, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            got = await self.http.get(f"/v1/migrations/{migration_id}")
            assert got.status_code == 200, got.text
            run = got.json()
            if run["status"] != "running":
                assert run["status"] == "completed", run
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"migration still running after {timeout_s} s: {run['customers_done']} done")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def migration_stack(stack: Stack, stripe_url: str, *, worker: bool = True, **overrides: Any) -> AsyncIterator[MigrationStack]:
    settings = stack.settings.model_copy(update={
        "stripe_api_base": stripe_url, "task_queue": f"walletflow-migration-{uuid.uuid4().hex[:8]}",
        "migration_stripe_rps": 500.0, "migration_page_size": 10, "migration_pages_per_run": 2,
        "migration_rate_limit_backoff_s": 0.05, **overrides,
    })
    app = stack.app_with(**{k: getattr(settings, k) for k in (
        "stripe_api_base", "task_queue", "migration_stripe_rps", "migration_page_size", "migration_pages_per_run")})
    async with stack.http_for(app) as http:
        ms = MigrationStack(stack, settings, app, http, Migrations(stack.engine), Account(stripe_url))
        if not worker:
            yield ms
            return
        async with build_worker(stack.client, stack.engine, settings):
            yield ms
