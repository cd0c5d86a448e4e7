"""Python client of the walletflow HTTP API, async and sync, with typed answers.

    from walletflow.client import AsyncWalletflow, InsufficientFunds

    async with AsyncWalletflow("http://127.0.0.1:8000", api_key) as wf:
        customer = await wf.create_customer("acme-42", email="billing@acme.com")
        await wf.create_adjustment(customer.id, "USD", 2000, "external_topup", idempotency_key="pi_123")
        print((await wf.get_wallet(customer.id)).account("USD").available)

:class:`Walletflow` has the same methods, blocking. Amounts are integers in the asset's minor
unit. Money-moving calls (``create_adjustment``, ``create_authorization``,
``capture_authorization``, ``create_top_up``, ``refund_top_up``) take an ``idempotency_key``;
without one each call makes a fresh one (``wf-<uuid4>``) that its own retries reuse — pass your
own, derived from your business id, to stay exactly-once across your process restarting.
"""

from walletflow.client import models
from walletflow.client._core import AsyncWalletflow, Walletflow
from walletflow.client.errors import (
    AlreadyExists,
    AuthenticationError,
    BadRequest,
    Conflict,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationError,
    WalletflowAPIError,
    WalletflowClientError,
    WalletflowConnectionError,
    WalletFrozen,
)

__all__ = [
    "AlreadyExists", "AsyncWalletflow", "AuthenticationError", "BadRequest", "Conflict", "HoldNotPending",
    "IdempotencyConflict", "InsufficientFunds", "NotFound", "PermissionDenied", "ServiceUnavailable",
    "ValidationError", "WalletFrozen", "Walletflow", "WalletflowAPIError", "WalletflowClientError",
    "WalletflowConnectionError", "models",
]
