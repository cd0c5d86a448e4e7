"""Opaque cursors for ``?limit=&cursor=`` lists: base64 of the last row's sort key."""

from __future__ import annotations

import base64
import json
from typing import Any

from walletflow.errors import ValidationError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([str(k) for k in key]).encode()).decode()


def decode_cursor(cursor: str | None, parts: int) -> list[str] | None:
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise ValidationError("cursor is not one this API returned", field="cursor") from exc
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(k, str) for k in key):
        raise ValidationError("cursor is not one this API returned", field="cursor")
    return key
