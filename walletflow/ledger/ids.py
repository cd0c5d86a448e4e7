"""Time-ordered ids (UUID version 7, RFC 9562) for the rows the ledger appends without end:
transactions and holds.

Why: a random (version 4) id lands on a random leaf of every B-tree index keyed by it
(``ledger_transactions``' primary key, the transaction id indexes of ``ledger_entries`` and
``usage_events``, ``holds``' primary key), so once those indexes outgrow PostgreSQL's buffer cache
nearly every insert reads a leaf page back in and writes a dirty one out. In ``bench.ingest`` that
was most of the database's time per usage batch. Ids that start with the time go to the right-hand
edge of each index, which stays in memory however large the ledger grows.

The layout: 48 bits of Unix time in milliseconds, the version (7), 12 random bits, the variant,
62 random bits. 74 random bits keep ids unguessable; ids made in the same millisecond are in no
particular order among themselves, which nothing relies on (entries are ordered by their own
sequence, transactions by ``created_at``). The usage batch functions make the same layout in SQL
(migration 0024).
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 7 << 76
_VARIANT = 0b10 << 62
_RANDOM = ((1 << 76) - 1) & ~(0b11 << 62)  # bits 0-75 but the variant's two: 74 random bits


def time_ordered_id() -> uuid.UUID:
    """A new UUIDv7 for the current time."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10)) & _RANDOM
    return uuid.UUID(int=millis << 80 | _VERSION | _VARIANT | random_bits)
