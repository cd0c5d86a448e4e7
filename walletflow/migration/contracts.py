"""What the migration workflows and activities exchange (pydantic, through Temporal's pydantic
data converter). No I/O and no secrets: ids and cursors only."""

from __future__ import annotations

from pydantic import BaseModel


class MigrationInput(BaseModel):
    """``StripeMigrationWorkflow``'s input; carried over continue-as-new with the cursor."""

    migration_id: str
    cursor: str | None = None
    pages_done: int = 0
    prices_done: bool = False
    #: Pages per workflow run before continue-as-new (``migration_pages_per_run``).
    pages_per_run: int = 20


class PageInput(BaseModel):
    migration_id: str
    cursor: str | None = None
    pages_done: int = 0


class PageResult(BaseModel):
    next_cursor: str | None
    has_more: bool
    customers: int
    stripe_calls: int = 0
    rate_limited: int = 0


class MigrationRef(BaseModel):
    migration_id: str


class MigrationOutcome(BaseModel):
    migration_id: str
    status: str
    customers: int
    differences: int
    unmapped_prices: int


class CutoverInput(BaseModel):
    migration_id: str
    cursor: str | None = None
    pages_done: int = 0


class CutoverPage(BaseModel):
    next_cursor: str | None
    has_more: bool
    subscriptions: list[dict[str, str | None]]
