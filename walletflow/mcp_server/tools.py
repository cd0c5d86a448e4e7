"""The MCP tools. Each one calls the walletflow HTTP API through :mod:`walletflow.client`.

The descriptions are written for an assistant that has never seen walletflow: what the tool
does, when to use it, what it returns, and that every amount is an integer in the asset's
minor unit. A test checks that every tool and parameter has one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from walletflow.client import AsyncWalletflow, WalletflowAPIError, WalletflowConnectionError
from walletflow.client.models import Model

#: Gives the tools a client for the current request (the API key depends on the transport).
ClientFactory = Callable[[Context], AsyncWalletflow]

AMOUNT_NOTE = "an integer in the asset's minor unit (for USD, cents: 2000 means $20.00)"


class Tier(BaseModel):
    """One tier of a tiered or volume price."""

    model_config = ConfigDict(extra="forbid")

    up_to: int | None = Field(
        None, description="Last quantity (inclusive) this tier covers; null for the last, open-ended tier."
    )
    unit_price: str = Field(
        description="Price per unit inside this tier, as a decimal string in the asset's minor units "
        '(e.g. "0.5" = half a cent per unit for USD).'
    )
    flat_amount: int | None = Field(
        None, description=f"Fixed fee added once when any unit falls in this tier, {AMOUNT_NOTE}."
    )


class PriceSpec(BaseModel):
    """How one metric of one event type is charged."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(
        description='The usage event type this price applies to, e.g. "llm.tokens". Your application sends '
        "events of this type; an event type belongs to one product."
    )
    asset: str = Field(description='Asset code the price is charged in, e.g. "USD" (see list_assets).')
    model: Literal["per_unit", "package", "tiered", "volume", "percentage"] = Field(
        description="per_unit: quantity x unit_price. package: unit_price per package_size units, prorated "
        "(1,500 tokens at 250 per 1,000,000 cost 0.375 minor units). tiered: graduated, each tier prices the "
        "units inside it. volume: every unit at the rate of the tier the total falls in. percentage: "
        "percentage % of the quantity, or of the event's vendor costs (cost-plus)."
    )
    unit_price: str | None = Field(
        None, description="Decimal string in the asset's minor units per unit (for package: per whole package), "
        'e.g. "0.0002" or "250". Required for per_unit and package; omit for the other models.'
    )
    package_size: int | None = Field(
        None, description="Units per package (e.g. 1000000 for per-1M-token pricing). Required for package only."
    )
    tiers: list[Tier] | None = Field(
        None, description="Required for tiered and volume: tiers in increasing up_to, the last with up_to null."
    )
    percentage: str | None = Field(
        None, description='Required for percentage: a decimal string, "120" charges 120 % (cost plus 20 %).'
    )
    quantity_field: str | None = Field(
        None, description='Name of the event data field holding the quantity, e.g. "input_tokens". Omit to '
        "count 1 per event (for percentage: the event's vendor costs in this asset). Prices on different "
        "fields add up (input and output tokens)."
    )
    dimensions: dict[str, str] | None = Field(
        None, description='Event data values this price is limited to, e.g. {"model": "gpt-4o"}; "*" matches '
        "any value. Among prices on the same quantity_field, the most specific match wins."
    )
    min_amount: int | None = Field(None, description=f"Lowest charge for this price per event, {AMOUNT_NOTE}.")
    max_amount: int | None = Field(None, description=f"Highest charge for this price per event, {AMOUNT_NOTE}.")


class VendorCost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor: str = Field(description='Who charged you for the work, e.g. "openai".')
    asset: str = Field(description='Asset code of the cost, e.g. "USD".')
    amount: int = Field(description=f"What the vendor charged, {AMOUNT_NOTE}.")


class SampleEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(description='The event type, e.g. "llm.tokens".')
    data: dict[str, Any] = Field(
        default_factory=dict, description='The event data, e.g. {"model": "gpt-4o", "input_tokens": 1200}.'
    )
    costs: list[VendorCost] | None = Field(None, description="Vendor costs, used by percentage prices.")


def _json(value: Any) -> Any:
    if isinstance(value, Model):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


async def _call(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run one API call; a problem becomes a tool error that names its code, for the model to read."""
    try:
        return _json(await make())
    except WalletflowAPIError as exc:
        message = f"{exc.code} (HTTP {exc.status}): {exc.detail}"
        errors = exc.body.get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            message += "; " + "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', []) if p != 'body')}: {e.get('msg')}"
                for e in errors[:10] if isinstance(e, dict)
            )
        raise ToolError(message) from exc
    except WalletflowConnectionError as exc:
        raise ToolError(f"walletflow_unreachable: the walletflow API did not answer ({exc})") from exc


_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
#: Writes that answer the same when repeated with the same values (assets, products, customers, or
#: a money movement under the same idempotency key).
_IDEMPOTENT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
_ANNOTATIONS = {
    "list_assets": _READ, "list_products": _READ, "list_price_versions": _READ, "simulate_prices": _READ,
    "find_customer": _READ, "get_wallet": _READ, "margin_report": _READ,
    "create_asset": _IDEMPOTENT, "create_product": _IDEMPOTENT, "create_customer": _IDEMPOTENT,
    "publish_price_version": _IDEMPOTENT, "post_adjustment": _IDEMPOTENT,
    "add_asset_rate": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                      open_world_hint=False),
    "create_price_version": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                            open_world_hint=False),
    # Talks to Stripe; the same idempotency key answers the same top-up.
    "create_top_up_link": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=True),
}


def register(server: MCPServer, client_for: ClientFactory) -> None:
    """Add every walletflow tool to ``server``."""

    def tool(fn: Callable[..., Any]) -> Callable[..., Any]:
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=_ANNOTATIONS[fn.__name__])
        return fn

    @tool
    async def list_assets(
        ctx: Context,
        cursor: Annotated[str | None, Field(description="next_cursor from a previous answer, for the next page.")] = None,
    ) -> dict[str, Any]:
        """List the assets (currencies and custom credits) wallets can hold, by code.

        Use it first, to learn which asset codes exist before pricing or crediting. Returns
        {"data": [{code, name, scale, kind}], "next_cursor"}: scale is the number of decimal digits
        of the minor unit (USD 2: amounts are in cents), kind is fiat or custom.
        """
        return await _call(lambda: client_for(ctx).list_assets(limit=100, cursor=cursor))

    @tool
    async def create_asset(
        ctx: Context,
        code: Annotated[str, Field(description='2-16 upper-case letters, digits or _, e.g. "USD" or "CREDITS".')],
        name: Annotated[str, Field(description='Human-readable name, e.g. "US dollar".')],
        scale: Annotated[int, Field(description="Decimal digits of the minor unit: 2 for USD (cents), 0 for whole "
                                                "credits, 6 for micro-credits (sub-cent pricing).")],
        kind: Annotated[Literal["fiat", "custom"], Field(description="fiat for a real currency (paid by card, "
                                                                     "used in margin reports), custom for credits.")],
    ) -> dict[str, Any]:
        """Create an asset that wallets can hold and prices can charge in.

        Every amount in walletflow is an integer in an asset's minor unit, so choose the scale
        carefully: it cannot change later. Creating an identical asset again is harmless; the same
        code with another definition fails with already_exists. Returns the asset.
        """
        return await _call(lambda: client_for(ctx).create_asset(code, name, scale, kind))

    @tool
    async def add_asset_rate(
        ctx: Context,
        asset: Annotated[str, Field(description='The custom asset, e.g. "CREDITS".')],
        currency: Annotated[str, Field(description='The fiat asset the rate is expressed in, e.g. "USD".')],
        rate: Annotated[str, Field(description='Price of ONE WHOLE unit of the asset in the currency, as a decimal '
                                               'string: "0.01" means one credit costs $0.01.')],
        valid_from: Annotated[str | None, Field(description="ISO 8601 time with timezone from which the rate "
                                                            "applies; default now.")] = None,
    ) -> dict[str, Any]:
        """Set the exchange rate of a custom asset into a fiat currency.

        Needed to sell custom credits by card (top-ups convert at the rate in force) and to
        report margins in fiat. Returns {asset, currency, rate, valid_from}.
        """
        return await _call(lambda: client_for(ctx).add_asset_rate(asset, currency, rate, valid_from))

    @tool
    async def list_products(
        ctx: Context,
        cursor: Annotated[str | None, Field(description="next_cursor from a previous answer, for the next page.")] = None,
    ) -> dict[str, Any]:
        """List the products (things you bill for, each with numbered price versions), by code.

        Returns {"data": [{code, name, created_at}], "next_cursor"}.
        """
        return await _call(lambda: client_for(ctx).list_products(limit=100, cursor=cursor))

    @tool
    async def create_product(
        ctx: Context,
        code: Annotated[str, Field(description='Lower-case id: letters, digits, "_", "." or "-", e.g. "chat".')],
        name: Annotated[str, Field(description='Human-readable name, e.g. "Chat API".')],
    ) -> dict[str, Any]:
        """Create a product. Its prices live in price versions (create_price_version).

        Returns {code, name, created_at}. Creating the same product again is harmless.
        """
        return await _call(lambda: client_for(ctx).create_product(code, name))

    @tool
    async def list_price_versions(
        ctx: Context,
        product_code: Annotated[str, Field(description='The product, e.g. "chat".')],
    ) -> dict[str, Any]:
        """List a product's price versions with their status (draft, published, archived) and prices.

        The newest published version is the product's default. Returns {"data": [version...]}.
        """
        return {"data": await _call(lambda: client_for(ctx).list_price_versions(product_code))}

    @tool
    async def create_price_version(
        ctx: Context,
        product_code: Annotated[str, Field(description='The product, e.g. "chat".')],
        prices: Annotated[list[PriceSpec], Field(description="The version's prices (at least one).")],
    ) -> dict[str, Any]:
        """Create a draft price version of a product: how usage events are charged.

        Prices say, per event type, what to charge and in which asset. Unit prices are decimal
        strings in the asset's minor units (USD: cents), so $2.50 per 1M tokens is model
        "package", package_size 1000000, unit_price "250". Each event's fee is rounded half up
        to a whole minor unit once. The draft charges nobody until publish_price_version; check
        it first with simulate_prices. Returns {product_code, version, status: "draft", prices}.
        Example prices: [{"event_type": "llm.tokens", "asset": "USD", "model": "package",
        "quantity_field": "input_tokens", "package_size": 1000000, "unit_price": "250"}].
        """
        raw = [p.model_dump(exclude_none=True) for p in prices]
        return await _call(lambda: client_for(ctx).create_price_version(product_code, raw))

    @tool
    async def simulate_prices(
        ctx: Context,
        product_code: Annotated[str, Field(description='The product, e.g. "chat".')],
        version: Annotated[int, Field(description="The version number to test (drafts included).")],
        events: Annotated[list[SampleEvent], Field(description="Sample usage events to price (1 to 1000).")],
    ) -> dict[str, Any]:
        """Price sample events against a price version without touching any wallet.

        Use it to check a draft before publishing. Returns {"fees": [...]}, one per event in
        order: status (priced, unmatched when no price applies, rejected), asset, amount (the
        fee, an integer in the asset's minor unit, e.g. cents) and components with each price's
        exact (unrounded) amount.
        """
        payload = [e.model_dump(exclude_none=True) for e in events]
        return {"fees": await _call(lambda: client_for(ctx).simulate(product_code, version, payload))}

    @tool
    async def publish_price_version(
        ctx: Context,
        product_code: Annotated[str, Field(description='The product, e.g. "chat".')],
        version: Annotated[int, Field(description="The draft version number to publish.")],
    ) -> dict[str, Any]:
        """Publish a draft price version: from now on it prices the product's usage events.

        The newest published version is the default for every customer not pinned to another.
        Published versions never change; to change prices, create and publish a new version.
        Returns the version with status "published".
        """
        return await _call(lambda: client_for(ctx).publish_price_version(product_code, version))

    @tool
    async def create_customer(
        ctx: Context,
        external_id: Annotated[str, Field(description="Your own id for the customer (e.g. your user or org id).")],
        name: Annotated[str | None, Field(description="Display name.")] = None,
        email: Annotated[str | None, Field(description="Billing email address.")] = None,
    ) -> dict[str, Any]:
        """Create a customer, who has a wallet per asset (empty at first).

        Returns the customer; its "id" (a UUID) is what the other tools take as customer_id.
        Creating the same customer again returns it; another customer with the same
        external_id fails with already_exists.
        """
        return await _call(lambda: client_for(ctx).create_customer(external_id, name=name, email=email))

    @tool
    async def find_customer(
        ctx: Context,
        external_id: Annotated[str, Field(description="Your own id for the customer, as given to create_customer.")],
    ) -> dict[str, Any]:
        """Find a customer by your own id (external_id) to learn their walletflow customer id.

        Returns {"customer": the customer or null}.
        """
        return {"customer": await _call(lambda: client_for(ctx).find_customer(external_id))}

    @tool
    async def get_wallet(
        ctx: Context,
        customer_id: Annotated[str, Field(description="The walletflow customer id (UUID) from create_customer.")],
    ) -> dict[str, Any]:
        """Read a customer's wallet: the balance in each asset they hold.

        Returns {customer_id, accounts: [{asset, posted, held, available, overdraft_limit}]},
        every amount an integer in the asset's minor unit (USD: cents). posted is the balance,
        held is reserved by pending authorizations, available = posted - held is what usage can
        spend.
        """
        return await _call(lambda: client_for(ctx).get_wallet(customer_id))

    @tool
    async def post_adjustment(
        ctx: Context,
        customer_id: Annotated[str, Field(description="The walletflow customer id (UUID).")],
        asset: Annotated[str, Field(description='Asset code, e.g. "USD".')],
        amount: Annotated[int, Field(description=f"Signed, {AMOUNT_NOTE}: positive credits the wallet, negative "
                                                 "debits it; never 0.")],
        reason: Annotated[Literal["external_topup", "external_refund", "gift", "other"], Field(
            description="external_topup: money you took with your own payment provider (credit); "
                        "external_refund: money you returned (debit); gift: free promotional credit (credit; "
                        "add expires_at to make it lapse); other: a manual correction (either sign).")],
        idempotency_key: Annotated[str, Field(description="A unique id for THIS adjustment, e.g. your payment id "
                                                          '"pi_123" or "welcome-gift-acme". Calling again with the '
                                                          "same key and values returns the original instead of "
                                                          "moving money twice; with other values it fails "
                                                          "(idempotency_conflict).")],
        expires_at: Annotated[str | None, Field(description="Credits only: ISO 8601 time with timezone when the "
                                                            "unused remainder expires.")] = None,
    ) -> dict[str, Any]:
        """Credit or debit a customer's wallet directly (the push model).

        Use it when the money was taken outside walletflow (your own Stripe account, an invoice),
        for free credits, or for corrections. A debit beyond the available balance fails with
        insufficient_funds. Returns {transaction_id, customer_id, asset, amount, reason,
        grant_id, idempotency_key, replayed}; replayed is true when the key had been used before.
        """
        return await _call(lambda: client_for(ctx).create_adjustment(
            customer_id, asset, amount, reason, idempotency_key=idempotency_key, expires_at=expires_at
        ))

    @tool
    async def create_top_up_link(
        ctx: Context,
        customer_id: Annotated[str, Field(description="The walletflow customer id (UUID).")],
        amount: Annotated[int, Field(description="What the customer pays, an integer in the currency's minor unit "
                                                 "(2000 means $20.00 for usd); positive.")],
        currency: Annotated[str, Field(description='Three-letter currency Stripe charges, e.g. "usd".')],
        return_url: Annotated[str, Field(description="Where Stripe's payment page sends the customer back "
                                                     "after paying, e.g. https://app.example.com/billing.")],
        idempotency_key: Annotated[str, Field(description="A unique id for THIS top-up, e.g. \"order-981\". The "
                                                          "same key and values return the same top-up and link "
                                                          "instead of a second one.")],
        asset: Annotated[str | None, Field(description="Wallet asset to credit; default the currency. A custom "
                                                       "asset is credited at its rate (add_asset_rate).")] = None,
    ) -> dict[str, Any]:
        """Create a card top-up and return a Stripe Checkout link for the customer to pay.

        Send the customer to checkout_url; once Stripe confirms the payment and the risk check
        passes, the wallet is credited (exactly once, or the payment is refunded). Needs Stripe
        and the walletflow worker running. Returns {id, status, checkout_url, amount, currency,
        asset, credit_amount (what the wallet receives, in the asset's minor unit), ...}.
        """
        return await _call(lambda: client_for(ctx).create_top_up(
            customer_id, amount, currency, idempotency_key=idempotency_key, asset=asset, mode="checkout",
            return_url=return_url,
        ))

    @tool
    async def margin_report(
        ctx: Context,
        from_time: Annotated[str, Field(description='Start (inclusive), ISO 8601 with timezone, e.g. '
                                                    '"2026-11-01T00:00:00Z".')],
        to_time: Annotated[str, Field(description="End (exclusive), ISO 8601 with timezone.")],
        group_by: Annotated[Literal["customer", "product", "vendor"], Field(
            description="customer, product or vendor (revenue split in proportion to vendor costs).")] = "customer",
        currency: Annotated[str, Field(description='Fiat asset to report in, e.g. "USD"; custom assets convert '
                                                   "at their rates.")] = "USD",
    ) -> dict[str, Any]:
        """Report revenue, vendor cost and margin of usage in a time range, per group.

        Returns {currency, group_by, from, to, data: [{key, revenue, cost, margin, margin_pct}],
        unconverted}; revenue, cost and margin are integers in the currency's minor unit (USD:
        cents), margin_pct a decimal string. unconverted lists amounts of assets without a rate.
        """
        return await _call(lambda: client_for(ctx).margin_report(from_time, to_time, group_by=group_by,
                                                                  currency=currency))
