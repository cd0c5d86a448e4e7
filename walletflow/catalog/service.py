"""The catalog: exchange rates, products, price versions, pins, and the price books ingestion uses.

Published versions never change, so their compiled :class:`PriceBook` is cached for the life of
the process. Which version is a product's default (the newest published) is read from the
database on every ingestion batch (one small query), so a publish on any replica takes effect
at once everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from walletflow.catalog.models import AssetRate, PriceVersion, Product, Subscription
from walletflow.db.engine import in_transaction
from walletflow.db.filters import one_of
from walletflow.db.types import utcnow
from walletflow.errors import AlreadyExists, NotFound, ValidationError
from walletflow.ledger import repository as ledger_repo
from walletflow.pricing.engine import EventFee, PriceBook, PricedEventInput
from walletflow.pricing.schemas import Price, validate_prices

rates = AssetRate.__table__
products = Product.__table__
versions = PriceVersion.__table__
subscriptions = Subscription.__table__

PRODUCT_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_PRICES_PER_VERSION = 500
_prices_adapter = TypeAdapter(list[Price])


@dataclass(frozen=True)
class RateInfo:
    asset: str
    currency: str
    rate: str
    valid_from: dt.datetime


@dataclass(frozen=True)
class ProductInfo:
    code: str
    name: str
    created_at: dt.datetime


@dataclass(frozen=True)
class VersionInfo:
    product_code: str
    version: int
    status: str
    prices: list[dict[str, Any]]
    created_at: dt.datetime
    published_at: dt.datetime | None


@dataclass(frozen=True)
class Pricing:
    """What an event of a customer is priced with: product, version and its book."""

    product_code: str
    version: int
    book: PriceBook


@dataclass
class CatalogSnapshot:
    """The catalog as one ingestion batch sees it."""

    books: dict[tuple[str, int], PriceBook]
    defaults: dict[str, int]
    owner_of_event_type: dict[str, str]
    pins: dict[uuid.UUID, dict[str, int]] = field(default_factory=dict)

    def pricing_for(self, customer_id: uuid.UUID, event_type: str) -> Pricing | None:
        product = self.owner_of_event_type.get(event_type)
        if product is None:
            return None
        version = self.pins.get(customer_id, {}).get(product, self.defaults.get(product))
        if version is None:
            return None
        book = self.books.get((product, version))
        return Pricing(product, version, book) if book is not None else None


def parse_prices(raw: Sequence[Any]) -> list[Price]:
    """Validate a version's prices (each alone, then together)."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PRICES_PER_VERSION:
        raise ValidationError(f"prices must be a list of 1 to {MAX_PRICES_PER_VERSION} prices", field="prices")
    try:
        prices = _prices_adapter.validate_python(raw)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationError(f"prices.{where}: {first['msg']}", field="prices") from exc
    validate_prices(prices)
    return prices


def _version_info(row: Row[Any]) -> VersionInfo:
    return VersionInfo(row.product_code, row.version, row.status, row.prices, row.created_at, row.published_at)


class Catalog:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        #: Compiled books of published (hence immutable) versions, with the event types they price.
        self._books: dict[uuid.UUID, tuple[PriceBook, frozenset[str]]] = {}

    # --- rates --------------------------------------------------------------------------------

    async def add_rate(
        self, asset: str, currency: str, rate: str, valid_from: dt.datetime | None = None
    ) -> RateInfo:
        """Record the fiat price of one whole ``asset`` unit in ``currency`` from ``valid_from``."""
        try:
            value = Decimal(rate) if isinstance(rate, str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0 or len(rate) > 40:
            raise ValidationError("rate must be a positive decimal string such as \"0.001\"", field="rate")
        starts = valid_from or self.clock()

        async def work(conn: AsyncConnection) -> RateInfo:
            base = await ledger_repo.get_asset(conn, asset)
            quote = await ledger_repo.get_asset(conn, currency)
            if base is None or quote is None:
                raise NotFound(f"asset {asset if base is None else currency} not found")
            if quote.kind != "fiat":
                raise ValidationError(f"currency {currency} must be a fiat asset", field="currency")
            if asset == currency:
                raise ValidationError("an asset's rate to itself is always 1", field="currency")
            existing = (
                await conn.execute(
                    select(rates).where(rates.c.asset == asset, rates.c.currency == currency, rates.c.valid_from == starts)
                )
            ).first()
            if existing is not None:
                if Decimal(existing.rate) != value:
                    raise AlreadyExists(f"a different {asset}/{currency} rate already starts at {starts.isoformat()}")
            else:
                await conn.execute(
                    insert(rates).values(
                        id=uuid.uuid4(), asset=asset, currency=currency, rate=str(value),
                        valid_from=starts, created_at=self.clock(),
                    )
                )
            return RateInfo(asset, currency, str(value), starts)

        return await in_transaction(self.engine, work)

    async def list_rates(self, asset: str) -> list[RateInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(rates).where(rates.c.asset == asset).order_by(rates.c.valid_from))).all()
        return [RateInfo(r.asset, r.currency, r.rate, r.valid_from) for r in rows]

    # --- products and versions ----------------------------------------------------------------

    async def create_product(self, code: str, name: str) -> ProductInfo:
        if not isinstance(code, str) or not PRODUCT_CODE.match(code):
            raise ValidationError("code must be 1-64 lower-case letters, digits, '_', '.' or '-'", field="code")
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise ValidationError("name must be 1 to 200 characters", field="name")

        async def work(conn: AsyncConnection) -> ProductInfo:
            row = (await conn.execute(select(products).where(products.c.code == code))).first()
            if row is None:
                await conn.execute(insert(products).values(code=code, name=name, created_at=self.clock()))
                row = (await conn.execute(select(products).where(products.c.code == code))).one()
            elif row.name != name:
                raise AlreadyExists(f"product {code} already exists")
            return ProductInfo(row.code, row.name, row.created_at)

        return await self._run(work)

    async def get_product(self, code: str) -> ProductInfo:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(products).where(products.c.code == code))).first()
        if row is None:
            raise NotFound(f"product {code} not found")
        return ProductInfo(row.code, row.name, row.created_at)

    async def list_products(self, limit: int, after_code: str | None = None) -> list[ProductInfo]:
        """Products by code; ``after_code`` is the last code of the previous page."""
        query = select(products).order_by(products.c.code).limit(limit)
        if after_code is not None:
            query = query.where(products.c.code > after_code)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ProductInfo(r.code, r.name, r.created_at) for r in rows]

    async def create_version(self, product_code: str, raw_prices: Sequence[Any]) -> VersionInfo:
        """Add a draft version (numbered after the newest) with validated prices."""
        prices = parse_prices(raw_prices)
        stored = [p.model_dump(mode="json", exclude_none=True) for p in prices]

        async def work(conn: AsyncConnection) -> VersionInfo:
            if (await conn.execute(select(products.c.code).where(products.c.code == product_code))).first() is None:
                raise NotFound(f"product {product_code} not found")
            for asset in sorted({p.asset for p in prices}):
                if await ledger_repo.get_asset(conn, asset) is None:
                    raise NotFound(f"asset {asset} not found", field="prices")
            newest = (
                await conn.execute(select(func.max(versions.c.version)).where(versions.c.product_code == product_code))
            ).scalar()
            await conn.execute(
                insert(versions).values(
                    id=uuid.uuid4(), product_code=product_code, version=(newest or 0) + 1, status="draft",
                    prices=stored, created_at=self.clock(),
                )
            )
            return _version_info(await self._version_row(conn, product_code, (newest or 0) + 1))

        return await self._run(work)

    async def get_version(self, product_code: str, version: int) -> VersionInfo:
        async with self.engine.connect() as conn:
            return _version_info(await self._version_row(conn, product_code, version))

    async def list_versions(self, product_code: str) -> list[VersionInfo]:
        async with self.engine.connect() as conn:
            await self._require_product(conn, product_code)
            query = select(versions).where(versions.c.product_code == product_code).order_by(versions.c.version)
            return [_version_info(r) for r in (await conn.execute(query)).all()]

    async def publish(self, product_code: str, version: int) -> VersionInfo:
        """Publish a draft; it becomes the default. Publishing a published version is a no-op.

        An event type belongs to one product: publishing prices for an event type that another
        product already prices is refused, so every event has exactly one price source.
        """

        async def work(conn: AsyncConnection) -> VersionInfo:
            row = await self._version_row(conn, product_code, version)
            if row.status == "published":
                return _version_info(row)
            if row.status == "archived":
                raise ValidationError(f"version {version} of {product_code} is archived")
            event_types = {p["event_type"] for p in row.prices}
            others = await conn.execute(
                select(versions.c.product_code, versions.c.prices).where(
                    versions.c.product_code != product_code, versions.c.status.in_(("published", "archived"))
                )
            )
            for other in others:
                clash = event_types & {p["event_type"] for p in other.prices}
                if clash:
                    raise AlreadyExists(
                        f"event type {sorted(clash)[0]!r} is already priced by product {other.product_code}"
                    )
            await conn.execute(
                update(versions).where(versions.c.id == row.id).values(status="published", published_at=self.clock())
            )
            return _version_info(await self._version_row(conn, product_code, version))

        return await self._run(work)

    async def archive(self, product_code: str, version: int) -> VersionInfo:
        """Archive a published version: it stops being a default or pinnable; customers pinned to
        it keep it. Drafts cannot be archived (they were never live); archiving twice is a no-op."""

        async def work(conn: AsyncConnection) -> VersionInfo:
            row = await self._version_row(conn, product_code, version)
            if row.status == "draft":
                raise ValidationError(f"version {version} of {product_code} is a draft; only published versions are archived")
            await conn.execute(update(versions).where(versions.c.id == row.id).values(status="archived"))
            return _version_info(await self._version_row(conn, product_code, version))

        return await self._run(work)

    async def simulate(
        self, product_code: str, version: int, events: Sequence[PricedEventInput]
    ) -> list[EventFee]:
        """Price sample events against any version (drafts too) without touching a wallet."""
        async with self.engine.connect() as conn:
            row = await self._version_row(conn, product_code, version)
        book = PriceBook(_prices_adapter.validate_python(row.prices))
        return [book.price(event) for event in events]

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, customer_id: uuid.UUID, product_code: str, version: int | None) -> dict[str, Any]:
        """Pin a customer to a published version of a product, or (``None``) follow the default."""

        async def work(conn: AsyncConnection) -> dict[str, Any]:
            if await ledger_repo.get_customer(conn, customer_id) is None:
                raise NotFound(f"customer {customer_id} not found")
            await self._require_product(conn, product_code)
            if version is not None:
                row = await self._version_row(conn, product_code, version)
                if row.status != "published":
                    raise ValidationError(f"version {version} of {product_code} is {row.status}; pin a published one")
            now = self.clock()
            key = and_(subscriptions.c.customer_id == customer_id, subscriptions.c.product_code == product_code)
            existing = (await conn.execute(select(subscriptions).where(key))).first()
            if existing is None:
                await conn.execute(
                    insert(subscriptions).values(
                        customer_id=customer_id, product_code=product_code, version=version,
                        created_at=now, updated_at=now,
                    )
                )
            else:
                await conn.execute(update(subscriptions).where(key).values(version=version, updated_at=now))
            return {"customer_id": customer_id, "product_code": product_code, "version": version}

        return await self._run(work)

    # --- ingestion ----------------------------------------------------------------------------

    async def snapshot(self, conn: AsyncConnection, customer_ids: Sequence[uuid.UUID]) -> CatalogSnapshot:
        """Price books, defaults and pins for one batch of events (three small queries)."""
        live = (
            await conn.execute(
                select(versions.c.id, versions.c.product_code, versions.c.version, versions.c.status).where(
                    versions.c.status.in_(("published", "archived"))
                )
            )
        ).all()
        missing = [r.id for r in live if r.id not in self._books]
        if missing:
            rows = await conn.execute(select(versions.c.id, versions.c.prices).where(versions.c.id.in_(missing)))
            for row in rows:
                prices = _prices_adapter.validate_python(row.prices)
                self._books[row.id] = (PriceBook(prices), frozenset(p.event_type for p in prices))
        snapshot = CatalogSnapshot(books={}, defaults={}, owner_of_event_type={})
        for row in live:
            book, event_types = self._books[row.id]
            snapshot.books[(row.product_code, row.version)] = book
            for event_type in event_types:
                snapshot.owner_of_event_type[event_type] = row.product_code
            if row.status == "published" and row.version > snapshot.defaults.get(row.product_code, 0):
                snapshot.defaults[row.product_code] = row.version
        if customer_ids:
            pins = await conn.execute(
                select(subscriptions).where(
                    one_of(subscriptions.c.customer_id, set(customer_ids), conn.dialect.name),
                    subscriptions.c.version.is_not(None),
                )
            )
            for pin in pins:
                snapshot.pins.setdefault(pin.customer_id, {})[pin.product_code] = pin.version
        return snapshot

    # --- helpers ------------------------------------------------------------------------------

    async def _run(self, work: Callable[[AsyncConnection], Any]) -> Any:
        try:
            return await in_transaction(self.engine, work)
        except IntegrityError as exc:  # a concurrent create won the race; the caller may retry
            raise AlreadyExists("a concurrent request created the same resource; retry") from exc

    async def _require_product(self, conn: AsyncConnection, code: str) -> None:
        if (await conn.execute(select(products.c.code).where(products.c.code == code))).first() is None:
            raise NotFound(f"product {code} not found")

    async def _version_row(self, conn: AsyncConnection, product_code: str, version: int) -> Row[Any]:
        row = (
            await conn.execute(
                select(versions).where(versions.c.product_code == product_code, versions.c.version == version)
            )
        ).first()
        if row is None:
            await self._require_product(conn, product_code)
            raise NotFound(f"version {version} of product {product_code} not found")
        return row


async def rate_in_force(conn: AsyncConnection, asset: str, currency: str, at: dt.datetime) -> Decimal | None:
    """The fiat price of one whole ``asset`` in ``currency`` at ``at`` (the newest rate started by then)."""
    query = (
        select(rates.c.rate).where(rates.c.asset == asset, rates.c.currency == currency, rates.c.valid_from <= at)
        .order_by(rates.c.valid_from.desc()).limit(1)
    )
    value = (await conn.execute(query)).scalar()
    return Decimal(value) if value is not None else None
