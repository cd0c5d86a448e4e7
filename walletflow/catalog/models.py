"""Catalog tables."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import UTCDateTime, utcnow
from walletflow.ledger.models import Json


class AssetRate(Base):
    """Fiat price of one whole unit of an asset, from ``valid_from`` until the next rate."""

    __tablename__ = "asset_rates"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    asset: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    currency: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    #: Decimal string: exact, and the same on both databases.
    rate: Mapped[str] = mapped_column(String(40))
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("asset", "currency", "valid_from", name="uq_asset_rates_asset_currency_from"),)


class Product(Base):
    __tablename__ = "products"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PriceVersion(Base):
    """A product's prices at one version. Published versions never change; the newest published
    one is the product's default."""

    __tablename__ = "price_versions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # draft | published | archived
    prices: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("product_code", "version", name="uq_price_versions_product_version"),
        CheckConstraint("status IN ('draft', 'published', 'archived')", name="status_valid"),
    )


class Subscription(Base):
    """A customer on a product: pinned to ``version``, or following the default (NULL)."""

    __tablename__ = "subscriptions"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"), primary_key=True)
    version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
