"""Signatures on outbound webhooks, and the public check a receiver runs.

Every delivery carries ``Walletflow-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256, keyed with the endpoint's whole secret (``whsec_...``), of ``f"{t}.{raw body}"``.
The timestamp is signed too, so a captured request cannot be replayed after ``tolerance_s``.
A receiver verifies with :func:`verify` before it parses the body::

    from walletflow.webhooks.signing import SignatureVerificationError, verify

    try:
        event = verify(raw_body, request.headers["Walletflow-Signature"], secret)
    except SignatureVerificationError:
        return 400

This module has no dependency beyond the standard library and walletflow's error base, so a
receiver can copy it as is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from walletflow.errors import WalletflowError

SIGNATURE_HEADER = "Walletflow-Signature"
EVENT_ID_HEADER = "Walletflow-Event-Id"
EVENT_TYPE_HEADER = "Walletflow-Event-Type"
DELIVERY_ID_HEADER = "Walletflow-Delivery-Id"
SECRET_PREFIX = "whsec_"
#: How far a signature's timestamp may be from the receiver's clock, either way (seconds).
DEFAULT_TOLERANCE_S = 300


class SignatureVerificationError(WalletflowError):
    """The signature is missing, malformed, does not match the body, or is too old.

    ``reason`` is one of ``malformed``, ``mismatch`` or ``expired``.
    """

    code = "invalid_signature"
    status = 400
    title = "Webhook signature does not verify"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and 32 random bytes, base64url."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{payload}"`` keyed with ``secret``."""
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Walletflow-Signature`` header value for ``payload`` (``timestamp`` default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(payload, secret, t)}"


def verify(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery's signature and return its decoded event.

    Args:
        payload: the raw request body, exactly as received (before any JSON parsing).
        header: the ``Walletflow-Signature`` header.
        secret: the endpoint's secret (``whsec_...``) as shown when the endpoint was created.
        tolerance_s: the most the signed timestamp may differ from ``now`` (replay window).
        now: the receiver's clock in unix seconds (default: ``time.time()``).

    Raises:
        SignatureVerificationError: malformed header, no ``v1`` matching the body, or a
            timestamp outside the tolerance. Nothing in the body should be trusted then.
    """
    raw = payload.encode() if isinstance(payload, str) else payload
    if not header:
        raise SignatureVerificationError("the Walletflow-Signature header is missing", "malformed")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureVerificationError("the signature timestamp is not an integer", "malformed") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureVerificationError("the signature header needs t= and v1=", "malformed")
    expected = compute_signature(raw, secret, timestamp)
    # Constant-time comparison against every v1 (several may be sent while a secret rotates).
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureVerificationError("no v1 signature matches the payload", "mismatch")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        raise SignatureVerificationError(
            f"the signature timestamp is more than {tolerance_s} s away from now", "expired"
        )
    try:
        event = json.loads(raw)
    except ValueError:
        raise SignatureVerificationError("the signed payload is not JSON", "malformed") from None
    if not isinstance(event, dict):
        raise SignatureVerificationError("the signed payload is not an event object", "malformed")
    return event
