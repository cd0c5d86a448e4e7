"""API key storage. Only a SHA-256 of the key is kept (keys are 256-bit random, so a fast hash
is enough: there is nothing to brute-force)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from walletflow.db.base import Base
from walletflow.db.types import UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))  # admin | ingest | read
    #: The first characters of the key, to recognise it in listings without revealing it.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("scope IN ('admin', 'ingest', 'read')", name="scope_valid"),)
