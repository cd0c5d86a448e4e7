"""Request dependencies: the process's services, authentication and idempotency keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from walletflow.auth.service import ApiKeyInfo, ApiKeys
from walletflow.catalog.service import Catalog
from walletflow.errors import Forbidden, Unauthorized, ValidationError
from walletflow.ledger.service import Ledger
from walletflow.payments.refunds import Refunds
from walletflow.payments.service import TopUps
from walletflow.settings import Settings
from walletflow.usage.service import Usage

_bearer = HTTPBearer(auto_error=False, description="An API key from `walletflow apikey create`.")


@dataclass
class Services:
    """Everything a request handler may use; built once per process."""

    engine: AsyncEngine
    ledger: Ledger
    keys: ApiKeys
    catalog: Catalog
    usage: Usage
    topups: TopUps
    settings: Settings
    refunds: Refunds


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    # per request that cost authorizations about a fifth of their CPU (py-spy, bench.ingest).
    return request.app.state.services


def require(capability: str):  # type: ignore[no-untyped-def]
    """A dependency that admits keys whose scope allows ``capability`` (admin, ingest or read)."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiKeyInfo:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
        key = await request.app.state.services.keys.authenticate(credentials.credentials)
        if key is None:
            raise Unauthorized("the API key is not valid")
        if not key.allows(capability):
            raise Forbidden(f"a key with scope {key.scope!r} cannot do this (needs {capability})")
        return key

    return Depends(check)


ServicesDep = Annotated[Services, Depends(services)]
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def contains_nul(raw_url: bytes, body: bytes) -> bool:
    """PostgreSQL text cannot hold NUL. JSON can only carry it as the escape \\u0000; URLs as %00."""
    return b"%00" in raw_url or b"\x00" in raw_url or b"\\u0000" in body or b"\x00" in body


def idempotency_key(body_key: str | None, header_key: str | None) -> str:
    """The key from the body or the ``Idempotency-Key`` header; both given must agree."""
    if body_key and header_key and body_key != header_key:
        raise ValidationError("idempotency_key in the body and the Idempotency-Key header differ")
    key = body_key or header_key
    if not key:
        raise ValidationError("idempotency_key is required (body field or Idempotency-Key header)", field="idempotency_key")
    return key
