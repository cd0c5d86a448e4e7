"""Pure ledger rules: no I/O, so they are easy to test and to mirror in SQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

from walletflow.errors import ValidationError
from walletflow.ledger.schemas import MAX_AMOUNT, Draw


def request_hash(operation: str, **fields: Any) -> str:
    """SHA-256 of the canonical request, to tell a retry from a reused idempotency key."""
    canonical = json.dumps({"op": operation, **fields}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_amount(amount: object, *, allow_zero: bool = False, name: str = "amount") -> int:
    """Validate a money amount in minor units: an int (never a float or bool), within bounds."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationError(f"{name} must be an integer number of minor units", field=name)
    low = 0 if allow_zero else 1
    if not low <= amount <= MAX_AMOUNT:
        raise ValidationError(f"{name} must be between {low} and {MAX_AMOUNT}", field=name)
    return amount


def check_key(key: object) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        raise ValidationError("idempotency_key must be a string of 1 to 255 characters", field="idempotency_key")
    return key


def allocate_draws(grants: Iterable[tuple[uuid.UUID, int]], amount: int) -> tuple[Draw, ...]:
    """Split ``amount`` over grants already sorted in consumption order.

    Whatever the grants cannot cover is drawn from the overdraft (``grant_id`` None); the caller
    has already checked that the overdraft limit allows it.
    """
    draws: list[Draw] = []
    left = amount
    for grant_id, remaining in grants:
        if left == 0:
            break
        take = min(left, remaining)
        if take > 0:
            draws.append(Draw(grant_id, take))
            left -= take
    if left:
        draws.append(Draw(None, left))
    return tuple(draws)


def expirable_amount(remaining: int, posted: int, held: int) -> int:
    """How much of an expired grant can go to breakage now.

    Money reserved by pending holds is kept back (the platform already did the work those holds
    authorised); the kept-back part is drawn first by captures and expired by a later sweep.
    """
    return max(0, min(remaining, posted - held))

