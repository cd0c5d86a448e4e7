"""Signed, expiring portal links.

A portal token is ``<payload>.<signature>``, both base64url without padding. The payload is
compact JSON ``{"c": customer id, "e": expiry (unix seconds), "n": nonce, "r": return url}``;
the signature is HMAC-SHA256 over the payload's base64 text with the portal secret. Nothing is
stored: the token alone proves which customer it opens and until when, so it is a bearer link
(anyone who holds it until it expires sees that customer's portal). The nonce makes every link
distinct even for the same customer and second.

The secret comes from ``WALLETFLOW_PORTAL_SECRET``. When that is empty, a random secret is made
on first use and kept in ``WALLETFLOW_PORTAL_SECRET_FILE`` (mode 0600), which suits one dev
machine; several API replicas must share an explicit secret. The secret is never logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from walletflow.errors import WalletflowError
from walletflow.settings import Settings

MIN_SECRET_CHARS = 32
#: Tokens longer than this are refused before any decoding (a return url is at most 2000).
MAX_TOKEN_CHARS = 4096


class PortalSecretMissing(WalletflowError):
    code = "portal_not_configured"
    status = 503
    title = "The billing portal is not configured"


class InvalidPortalToken(WalletflowError):
    """Forged, malformed or expired: the caller learns nothing about which."""

    code = "invalid_portal_link"
    status = 403
    title = "This portal link is not valid"


@dataclass(frozen=True)
class PortalSession:
    customer_id: uuid.UUID
    expires_at: dt.datetime
    nonce: str
    return_url: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def portal_secret(settings: Settings) -> bytes:
    """The signing key: the setting, else the dev file (created once, race-safe)."""
    if settings.portal_secret:
        if len(settings.portal_secret) < MIN_SECRET_CHARS:
            raise PortalSecretMissing(f"WALLETFLOW_PORTAL_SECRET must be at least {MIN_SECRET_CHARS} characters")
        return settings.portal_secret.encode()
    path = Path(settings.portal_secret_file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PortalSecretMissing("set WALLETFLOW_PORTAL_SECRET (the secret file cannot be created)") from exc
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise PortalSecretMissing("set WALLETFLOW_PORTAL_SECRET (the secret file cannot be read)") from exc
    if len(value) < MIN_SECRET_CHARS:
        # Another process is between creating and writing the file, or it was truncated.
        raise PortalSecretMissing(f"the portal secret file {path} holds no usable secret")
    return value.encode()


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def issue(secret: bytes, customer_id: uuid.UUID, expires_at: dt.datetime, return_url: str | None = None) -> str:
    """A token that opens ``customer_id``'s portal until ``expires_at``."""
    body = {"c": str(customer_id), "e": int(expires_at.timestamp()), "n": secrets.token_urlsafe(12)}
    if return_url is not None:
        body["r"] = return_url
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: bytes, token: str, now: dt.datetime) -> PortalSession:
    """The session a token carries, if its signature holds and it has not expired.

    Raises:
        InvalidPortalToken: malformed, not signed with ``secret``, or expired.
    """
    refused = InvalidPortalToken("the link is invalid or has expired; ask for a new one")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise refused
    payload, signature = token.split(".")
    # Constant-time comparison before anything in the payload is trusted or even parsed.
    if not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
        raise refused
    try:
        body = json.loads(_unb64(payload))
        session = PortalSession(
            customer_id=uuid.UUID(body["c"]),
            expires_at=dt.datetime.fromtimestamp(int(body["e"]), dt.UTC),
            nonce=str(body["n"]),
            return_url=body.get("r"),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise refused from None
    if session.expires_at <= now:
        raise refused
    return session
