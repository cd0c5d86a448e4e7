"""Exceptions of the Python client.

Every answer of the API that is not a success is ``application/problem+json`` with a stable
machine ``code``; it becomes a :class:`WalletflowAPIError` (or the subclass for its code) that
carries ``code``, ``status``, ``title`` and ``detail``. Catch the subclass for the cases a program
handles (``InsufficientFunds``: ask the customer to top up) and the base class for the rest.
"""

from __future__ import annotations

from typing import Any


class WalletflowClientError(Exception):
    """Base of everything this client raises."""


class WalletflowConnectionError(WalletflowClientError):
    """The API could not be reached (or did not answer in time) after the client's retries.

    A money-moving call may or may not have happened: call it again with the **same**
    idempotency key (``exc.idempotency_key``) to learn its outcome without doing it twice.
    """

    def __init__(self, message: str, idempotency_key: str | None = None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class WalletflowAPIError(WalletflowClientError):
    """The API answered with a problem (``application/problem+json``)."""

    def __init__(self, status: int, code: str, title: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        #: The whole problem document (e.g. ``errors`` for a 422, ``top_up_id`` for a 503).
        self.body = body


class BadRequest(WalletflowAPIError):
    """400, e.g. ``malformed_json``."""


class AuthenticationError(WalletflowAPIError):
    """401 ``unauthorized``: no API key, or not a valid one."""


class PermissionDenied(WalletflowAPIError):
    """403 ``forbidden``: the key's scope does not allow this call."""


class NotFound(WalletflowAPIError):
    """404 ``not_found``."""


class InsufficientFunds(WalletflowAPIError):
    """402 ``insufficient_funds``: the wallet's available balance (plus any overdraft) is short."""


class Conflict(WalletflowAPIError):
    """409: the request clashes with the current state (see ``code``)."""


class AlreadyExists(Conflict):
    """409 ``already_exists``."""


class IdempotencyConflict(Conflict):
    """409 ``idempotency_conflict``: this idempotency key was used before with another request."""


class HoldNotPending(Conflict):
    """409 ``hold_not_pending``: the authorization was already captured, voided or expired."""


class WalletFrozen(Conflict):
    """409 ``wallet_frozen``."""


class ValidationError(WalletflowAPIError):
    """422 ``validation_error``: bad input; nothing was written. ``body["errors"]`` lists fields."""


class ServiceUnavailable(WalletflowAPIError):
    """503, e.g. ``temporal_unavailable``: recorded but not started; retry with the same key."""


_BY_CODE: dict[str, type[WalletflowAPIError]] = {
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDenied,
    "not_found": NotFound,
    "insufficient_funds": InsufficientFunds,
    "already_exists": AlreadyExists,
    "idempotency_conflict": IdempotencyConflict,
    "hold_not_pending": HoldNotPending,
    "wallet_frozen": WalletFrozen,
    "validation_error": ValidationError,
}
_BY_STATUS: dict[int, type[WalletflowAPIError]] = {
    400: BadRequest, 401: AuthenticationError, 402: InsufficientFunds, 403: PermissionDenied, 404: NotFound,
    409: Conflict, 422: ValidationError, 503: ServiceUnavailable,
}


def error_from_response(status: int, body: Any, text: str) -> WalletflowAPIError:
    """The exception for an error answer; a body that is not a problem still gives a typed error."""
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or f"http_{status}")
    title = str(body.get("title") or "")
    detail = str(body.get("detail") or text[:500] or title or f"HTTP {status}")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or WalletflowAPIError
    return cls(status, code, title, detail, body)
