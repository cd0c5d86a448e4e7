"""Stripe calls for postpaid invoices, through the top-ups' ``StripeGateway`` client.

Every object carries the metadata ``walletflow_settlement`` = ``{customer}:{period}:{currency}``
(and each invoice item ``walletflow_line`` = its asset), so a retry after a crash finds what an
earlier attempt created at Stripe instead of creating it again: Stripe keeps idempotency keys for
24 hours only and localstripe not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from walletflow.payments.stripe_gateway import StripeGateway

SETTLEMENT_KEY = "walletflow_settlement"
LINE_KEY = "walletflow_line"
#: Bound on how many of one customer's invoices are paged through looking for a lost one.
MAX_LOOKUP = 1000


@dataclass(frozen=True)
class InvoiceState:
    id: str
    #: Stripe's status: draft, open, paid, void, uncollectible.
    status: str
    amount_due: int
    currency: str


class StripeInvoicing:
    def __init__(self, gateway: StripeGateway) -> None:
        self.client = gateway.client

    async def find_invoice(self, customer: str, settlement_key: str) -> InvoiceState | None:
        seen = 0
        params: dict[str, Any] = {"customer": customer, "limit": 100}
        while True:
            page = await self.client.v1.invoices.list_async(params=params)  # type: ignore[arg-type]
            for invoice in page.data:
                if _metadata(invoice).get(SETTLEMENT_KEY) == settlement_key:
                    return _state(invoice)
            seen += len(page.data)
            if not page.has_more or not page.data or seen >= MAX_LOOKUP:
                return None
            params = {**params, "starting_after": page.data[-1].id}

    async def create_invoice(
        self, *, customer: str, currency: str, settlement_key: str, description: str, collection_method: str,
        days_until_due: int,
    ) -> InvoiceState:
        params: dict[str, Any] = {
            "customer": customer, "currency": currency, "description": description,
            "metadata": {SETTLEMENT_KEY: settlement_key},
            # Only the items made for this invoice: never sweep in other pending items.
            "pending_invoice_items_behavior": "exclude",
            "collection_method": collection_method,
            # We finalise it ourselves, once its lines are all there.
            "auto_advance": False,
        }
        if collection_method == "send_invoice":
            params["days_until_due"] = days_until_due
        invoice = await self.client.v1.invoices.create_async(
            params=params, options={"idempotency_key": f"invoice-{settlement_key}"},  # type: ignore[arg-type]
        )
        return _state(invoice)

    async def line_keys(self, invoice_id: str) -> set[str]:
        """The ``walletflow_line`` of every line already on the invoice."""
        keys: set[str | None] = set()
        params: dict[str, Any] = {"limit": 100}
        for _ in range(MAX_LOOKUP // 100):
            page = await self.client.v1.invoices.line_items.list_async(invoice_id, params=params)  # type: ignore[arg-type]
            keys |= {_metadata(line).get(LINE_KEY) for line in page.data}
            if not page.has_more or not page.data:
                break
            params = {**params, "starting_after": page.data[-1].id}
        keys.discard(None)
        return keys  # type: ignore[return-value]

    async def add_item(
        self, *, customer: str, invoice_id: str, amount: int, currency: str, description: str,
        period: tuple[int, int], settlement_key: str, line_key: str,
    ) -> None:
        await self.client.v1.invoice_items.create_async(
            params={
                "customer": customer, "invoice": invoice_id, "amount": amount, "currency": currency,
                "description": description, "period": {"start": period[0], "end": period[1]},
                "metadata": {SETTLEMENT_KEY: settlement_key, LINE_KEY: line_key},
            },
            options={"idempotency_key": f"invoice-{settlement_key}:{line_key}"},
        )

    async def retrieve(self, invoice_id: str) -> InvoiceState:
        return _state(await self.client.v1.invoices.retrieve_async(invoice_id))

    async def finalize(self, invoice_id: str) -> InvoiceState:
        return _state(await self.client.v1.invoices.finalize_invoice_async(invoice_id))


def _metadata(obj: Any) -> dict[str, Any]:
    return dict(obj.to_dict().get("metadata") or {})


def _state(invoice: Any) -> InvoiceState:
    raw = invoice.to_dict()
    return InvoiceState(raw["id"], raw["status"], int(raw.get("amount_due") or 0), raw.get("currency") or "")
