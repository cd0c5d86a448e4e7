"""Creating and checking API keys.

Keys look like ``wf_<scope>_<43 random chars>``. They are printed once at creation and only their
SHA-256 is stored. Checks are cached for a few seconds per process so the hot ingest path does not
query the database on every request; revocation therefore takes effect within ``CACHE_TTL_S``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.auth.models import ApiKey
from walletflow.db.types import utcnow
from walletflow.errors import ValidationError

SCOPES = ("admin", "ingest", "read")
#: What each scope may do. Endpoints ask for one capability; admin may do everything.
CAPABILITIES = {"admin": {"admin", "ingest", "read"}, "ingest": {"ingest"}, "read": {"read"}}
CACHE_TTL_S = 10.0
api_keys = ApiKey.__table__


@dataclass(frozen=True)
class ApiKeyInfo:
    id: uuid.UUID
    name: str
    scope: str
    prefix: str
    created_at: dt.datetime

    def allows(self, capability: str) -> bool:
        return capability in CAPABILITIES[self.scope]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._cache: dict[str, tuple[float, ApiKeyInfo | None]] = {}

    async def create(self, name: str, scope: str) -> tuple[ApiKeyInfo, str]:
        """Create a key; returns its info and the plaintext key, which is never stored."""
        if scope not in SCOPES:
            raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ValidationError("name must be 1 to 100 characters", field="name")
        key = f"wf_{scope}_{secrets.token_urlsafe(32)}"
        info = ApiKeyInfo(uuid.uuid4(), name, scope, key[: len(scope) + 8], utcnow())
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=info.id, name=name, scope=scope, prefix=info.prefix, key_hash=hash_key(key),
                    created_at=info.created_at,
                )
            )
        return info, key

    async def authenticate(self, key: str) -> ApiKeyInfo | None:
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
                )
            ).first()
        info = ApiKeyInfo(row.id, row.name, row.scope, row.prefix, row.created_at) if row else None
        if len(self._cache) > 10_000:  # bounded: a flood of bad keys cannot grow memory forever
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + CACHE_TTL_S, info)
        return info
