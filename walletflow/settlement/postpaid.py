"""Postpaid customers: bill a settled period's usage on a Stripe invoice, exactly once.

The period's usage is the customer's usage debits and captures written in the period, summed
per asset. A fiat asset is billed in its own currency (its code, e.g. ``USD``); a custom asset
(``CREDITS``) is converted to ``invoice_currency`` with the asset's rate valid at the period's
end, rounded half up once per asset and period. An asset that cannot be billed (a custom asset
without a rate, a fiat code Stripe would not know) is left out and listed in ``unbilled``.

Exactly once per (customer, period, currency), even when the activity is retried after a crash
at any line: the ``postpaid_invoices`` row is claimed with the amounts first (a retry bills what
the first attempt decided), the Stripe invoice id is stored as soon as the invoice exists (and
looked up at Stripe by metadata if a crash lost it), each item is added only if the invoice has
no line for its asset yet, and finalising is skipped once Stripe says the invoice is no draft.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.catalog.service import rates
from walletflow.db.engine import in_transaction
from walletflow.db.types import utcnow
from walletflow.ledger import repository as ledger_repo
from walletflow.ledger.repository import _insert_ignore
from walletflow.payments.service import TopUps
from walletflow.payments.stripe_gateway import StripeGateway
from walletflow.pricing.engine import round_minor
from walletflow.settlement.contracts import InvoiceInfo
from walletflow.settlement.invoicing import StripeInvoicing
from walletflow.settlement.models import PostpaidInvoice
from walletflow.settlement.periods import Period
from walletflow.settlement.scoring import USAGE_KINDS

postpaid_invoices = cast(Table, PostpaidInvoice.__table__)
t, e, a, c, assets = (ledger_repo.transactions, ledger_repo.entries, ledger_repo.accounts,
                      ledger_repo.customers, ledger_repo.assets)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass
class Bill:
    """One customer's period, per currency: ``{currency: [line, ...]}`` plus what cannot be billed."""

    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unbilled: list[dict[str, Any]] = field(default_factory=list)


async def postpaid_customers_with_usage(
    engine: AsyncEngine, period: Period, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    """Postpaid customers with usage in ``period``, by id, after ``after`` (keyset pages)."""
    query = (
        select(a.c.customer_id)
        .join(c, c.c.id == a.c.customer_id)
        .join(e, e.c.account_id == a.c.id)
        .join(t, t.c.id == e.c.transaction_id)
        .where(c.c.billing_mode == "postpaid", t.c.kind.in_(USAGE_KINDS),
               t.c.created_at >= period.start, t.c.created_at < period.end)
        .group_by(a.c.customer_id)
        .order_by(a.c.customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(a.c.customer_id > after)
    async with engine.connect() as conn:
        return [r.customer_id for r in await conn.execute(query)]


async def bill_for(engine: AsyncEngine, customer_id: uuid.UUID, period: Period, invoice_currency: str) -> Bill:
    """The customer's usage in ``period``, as invoice lines per currency."""
    query = (
        select(e.c.asset, assets.c.kind, assets.c.scale, (-func.sum(e.c.amount)).label("usage"))
        .join(a, a.c.id == e.c.account_id)
        .join(t, t.c.id == e.c.transaction_id)
        .join(assets, assets.c.code == e.c.asset)
        .where(a.c.customer_id == customer_id, t.c.kind.in_(USAGE_KINDS),
               t.c.created_at >= period.start, t.c.created_at < period.end)
        .group_by(e.c.asset, assets.c.kind, assets.c.scale)
        .order_by(e.c.asset)
    )
    bill = Bill()
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            usage = int(row.usage or 0)
            if usage <= 0:
                continue
            if row.kind == "fiat":
                if not _CURRENCY.match(row.asset):
                    bill.unbilled.append({"asset": row.asset, "usage": usage, "reason": "not an ISO currency code"})
                    continue
                line = {"asset": row.asset, "usage": usage, "amount": usage, "rate": "1"}
                bill.lines.setdefault(row.asset.lower(), []).append(line)
                continue
            converted = await _convert(conn, row.asset, row.scale, usage, invoice_currency, period.end)
            if converted is None:
                bill.unbilled.append({"asset": row.asset, "usage": usage,
                                      "reason": f"no {row.asset}/{invoice_currency} rate"})
                continue
            amount, rate = converted
            if amount > 0:
                line = {"asset": row.asset, "usage": usage, "amount": amount, "rate": rate}
                bill.lines.setdefault(invoice_currency.lower(), []).append(line)
    return bill


async def _convert(
    conn: AsyncConnection, asset: str, scale: int, usage: int, currency: str, at: dt.datetime
) -> tuple[int, str] | None:
    """``usage`` minor units of ``asset`` in minor units of ``currency`` at the rate valid at ``at``."""
    rate_row = (await conn.execute(
        select(rates.c.rate).where(rates.c.asset == asset, rates.c.currency == currency, rates.c.valid_from <= at)
        .order_by(rates.c.valid_from.desc()).limit(1)
    )).first()
    currency_scale = (await conn.execute(select(assets.c.scale).where(assets.c.code == currency))).scalar_one_or_none()
    if rate_row is None or currency_scale is None:
        return None
    rate = Decimal(rate_row.rate)
    exact = Decimal(usage) / (Decimal(10) ** scale) * rate * (Decimal(10) ** currency_scale)
    return round_minor(exact), str(rate)


class PostpaidBilling:
    """Bills one customer's period; the activity calls :meth:`invoice` for each customer."""

    def __init__(
        self, engine: AsyncEngine, gateway: StripeGateway, *, invoice_currency: str, collection_method: str,
        days_until_due: int, clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.stripe = StripeInvoicing(gateway)
        self.top_ups = TopUps(engine)
        self.invoice_currency = invoice_currency
        self.collection_method = collection_method
        self.days_until_due = days_until_due
        self.clock = clock

    async def invoice(self, customer_id: uuid.UUID, period: Period) -> list[InvoiceInfo]:
        bill = await bill_for(self.engine, customer_id, period, self.invoice_currency)
        done = []
        for currency, lines in sorted(bill.lines.items()):
            row = await self._claim(customer_id, period, currency, lines)
            if row.status != "finalized":
                row = await self._send(row, period)
            done.append(InvoiceInfo(customer_id=str(customer_id), currency=row.currency, amount=row.amount,
                                    stripe_invoice_id=row.stripe_invoice_id, status=row.status))
        return done

    async def _claim(self, customer_id: uuid.UUID, period: Period, currency: str, lines: list[dict[str, Any]]) -> Any:
        async def work(conn: AsyncConnection) -> Any:
            await conn.execute(_insert_ignore(conn, postpaid_invoices).values(
                id=uuid.uuid4(), customer_id=customer_id, period=period.key, currency=currency,
                amount=sum(line["amount"] for line in lines), lines=lines, stripe_invoice_id=None,
                status="claimed", created_at=self.clock(), finalized_at=None,
            ))
            return (await conn.execute(select(postpaid_invoices).where(
                postpaid_invoices.c.customer_id == customer_id, postpaid_invoices.c.period == period.key,
                postpaid_invoices.c.currency == currency,
            ))).one()

        return await in_transaction(self.engine, work)

    async def _send(self, row: Any, period: Period) -> Any:
        customer = await self._stripe_customer(row.customer_id)
        key = f"{row.customer_id}:{row.period}:{row.currency}"
        invoice_id = row.stripe_invoice_id
        if invoice_id is None:
            found = await self.stripe.find_invoice(customer, key)
            invoice = found or await self.stripe.create_invoice(
                customer=customer, currency=row.currency, settlement_key=key,
                description=f"Usage {row.period}", collection_method=self.collection_method,
                days_until_due=self.days_until_due,
            )
            invoice_id = invoice.id
            await self._update(row.id, stripe_invoice_id=invoice_id, status="draft")
        state = await self.stripe.retrieve(invoice_id)
        if state.status == "draft":
            present = await self.stripe.line_keys(invoice_id)
            span = (int(period.start.timestamp()), int(period.end.timestamp()))
            for line in row.lines:
                if line["asset"] in present:
                    continue
                await self.stripe.add_item(
                    customer=customer, invoice_id=invoice_id, amount=line["amount"], currency=row.currency,
                    description=f"{line['asset']} usage {row.period}", period=span, settlement_key=key,
                    line_key=line["asset"],
                )
            state = await self.stripe.finalize(invoice_id)
        await self._update(row.id, status="finalized", finalized_at=self.clock())
        return await self._get(row.id)

    async def _stripe_customer(self, customer_id: uuid.UUID) -> str:
        """The customer's Stripe customer, created and linked the way top-ups do it."""
        linked = await self.top_ups.stripe_customer_id(customer_id)
        if linked is not None:
            return linked
        created = await self.gateway.create_customer(str(customer_id), idempotency_key=f"customer-{customer_id}:stripe")
        return await self.top_ups.link_stripe_customer(customer_id, created)

    async def _update(self, row_id: uuid.UUID, **values: Any) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(update(postpaid_invoices).where(
                and_(postpaid_invoices.c.id == row_id, postpaid_invoices.c.status != "finalized")
            ).values(**values))

        await in_transaction(self.engine, work)

    async def _get(self, row_id: uuid.UUID) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(postpaid_invoices).where(postpaid_invoices.c.id == row_id))).one()
