"""Typed business errors.

Every error carries a stable machine ``code`` and the HTTP status the API answers with, so the
API layer turns any of them into problem details without a lookup table of its own.
"""

from __future__ import annotations

from typing import Any


class WalletflowError(Exception):
    """Base of every expected, typed failure."""

    code = "error"
    status = 400
    title = "Request failed"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationError(WalletflowError):
    code = "validation_error"
    status = 422
    title = "Invalid request"


class NotFound(WalletflowError):
    code = "not_found"
    status = 404
    title = "Not found"


class AlreadyExists(WalletflowError):
    code = "already_exists"
    status = 409
    title = "Already exists"


class InsufficientFunds(WalletflowError):
    code = "insufficient_funds"
    status = 402
    title = "Insufficient funds"


class IdempotencyConflict(WalletflowError):
    code = "idempotency_conflict"
    status = 409
    title = "Idempotency key reused with a different request"


class HoldNotPending(WalletflowError):
    code = "hold_not_pending"
    status = 409
    title = "Authorization is no longer pending"


class WalletFrozen(WalletflowError):
    code = "wallet_frozen"
    status = 409
    title = "Wallet is frozen"


class Unauthorized(WalletflowError):
    code = "unauthorized"
    status = 401
    title = "Missing or invalid API key"


class Forbidden(WalletflowError):
    code = "forbidden"
    status = 403
    title = "API key scope does not allow this"
